"""What the leader fence costs on PostgreSQL: task submits with and without the write fence.

On PostgreSQL every write transaction of the metadata store first reads the leader lease row
``FOR SHARE`` (``storage/leader_lease.install_fence``): one more round trip per transaction. This runs
the real app and service in this process (HTTP through httpx's ASGI transport, the in-memory runner
with no slots, so every submitted task stays PENDING and no peon adds noise) and times N sequential
``POST /druid/indexer/v1/task`` submits, each on a fresh database, fenced (the product) and unfenced
(``install_fence`` replaced by a no-op), alternating, ``--rounds`` times. A second figure times the
store alone: N ``insert_task`` transactions on one engine with and without the hook.

Reference: the same submits without the fence, in the same run; the ratio is the fence's cost.

Usage: python benchmarks/fence_cost.py [--submits 500] [--rounds 3] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from overlord import service as service_module  # noqa: E402
from overlord.api.app import create_app  # noqa: E402
from overlord.config import load_settings  # noqa: E402
from overlord.core.task import RunnerState, StatusCode, TaskRecord  # noqa: E402
from overlord.service import Service  # noqa: E402
from overlord.storage.leader_lease import SqlLeaseStore, install_fence  # noqa: E402
from overlord.storage.metadata import MetadataStore  # noqa: E402
from overlord.testing.runner import InMemoryTaskRunner  # noqa: E402

API = "/druid/indexer/v1"


@contextlib.contextmanager
def fresh_database(admin: sa.Engine) -> Iterator[str]:
    name = f"overlord_fence_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


BLOCK = 25  # submits or inserts in a row before switching sides: both sides see the same load on the machine


@contextlib.asynccontextmanager
async def in_process(url: str, tmp: Path, *, fenced: bool) -> AsyncIterator[httpx.AsyncClient]:
    """The app and service on ``url`` in this process, leading; the fence replaced by a no-op when not ``fenced``."""
    settings = load_settings(
        environ={},
        overrides={"data_dir": tmp / "var", "worker_capacity": 1, "start_dir": tmp, "metadata_url": url},
    )
    original = service_module.install_fence
    if not fenced:
        service_module.install_fence = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        service = Service(
            settings, runner_factory=lambda svc: InMemoryTaskRunner(0, on_exit=lambda e: svc.queue.on_runner_exit(e))
        )
    finally:
        service_module.install_fence = original
    app = create_app(service)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o")
    async with app.router.lifespan_context(app), client as http:
        while (await http.get(f"{API}/isLeader")).status_code != 200:
            await asyncio.sleep(0.05)
        for i in range(20):  # warm-up: connections, caches
            await http.post(f"{API}/task", json={"type": "noop", "id": f"warm-{i}"})
        yield http


async def http_seconds(fenced_url: str, unfenced_url: str, n: int) -> dict[bool, float]:
    """Seconds for N sequential submits to each of two services (fenced, unfenced), in alternating blocks."""
    spent = {True: 0.0, False: 0.0}
    with tempfile.TemporaryDirectory(prefix="overlord-fence-") as tmp:
        async with (
            in_process(fenced_url, Path(tmp) / "f", fenced=True) as fenced,
            in_process(unfenced_url, Path(tmp) / "u", fenced=False) as unfenced,
        ):
            for start in range(0, n, BLOCK):
                for is_fenced, http in ((True, fenced), (False, unfenced)):
                    began = time.perf_counter()
                    for i in range(start, min(n, start + BLOCK)):
                        r = await http.post(f"{API}/task", json={"type": "noop", "id": f"t-{i}"})
                        assert r.status_code == 200, r.text
                        await asyncio.sleep(0)  # a server's socket I/O lets the lease renewal's timer run
                    spent[is_fenced] += time.perf_counter() - began
    return spent


class _Leader:
    """A fence that always names the lease this script took."""

    def __init__(self, token: tuple[str, int]) -> None:
        self.token = token

    def fence_token(self) -> tuple[str, int] | None:
        return self.token

    def fenced(self, reason: str) -> None:
        raise AssertionError(reason)


def store_seconds(url: str, n: int) -> dict[bool, float]:
    """Seconds for N insert_task transactions on each of two stores on one database, one with the fence hook
    on its engine, in alternating blocks."""
    stores = {True: MetadataStore.from_url(url), False: MetadataStore.from_url(url)}
    lease = SqlLeaseStore(url)
    spent = {True: 0.0, False: 0.0}
    try:
        view = lease.campaign("bench", "http://127.0.0.1:1", 600_000)
        install_fence(stores[True].engine, _Leader(("bench", view.epoch)), idle_in_transaction_ms=60_000)
        now = int(time.time() * 1000)

        def rec(name: str) -> TaskRecord:
            return TaskRecord(id=name, type="noop", group_id=name, datasource="none", created_ms=now,
                              queue_insertion_ms=now, status_code=StatusCode.RUNNING,
                              runner_state=RunnerState.WAITING, payload={"type": "noop"})  # fmt: skip

        for fenced, store in stores.items():
            for i in range(20):
                store.insert_task(rec(f"warm-{fenced}-{i}"))
        for start in range(0, n, BLOCK):
            for fenced, store in stores.items():
                began = time.perf_counter()
                for i in range(start, min(n, start + BLOCK)):
                    store.insert_task(rec(f"s-{fenced}-{i}"))
                spent[fenced] += time.perf_counter() - began
        return spent
    finally:
        for store in stores.values():
            store.close()
        lease.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pg", default=os.environ.get("OVERLORD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    admin = sa.create_engine(
        sa.make_url(args.pg.replace("postgresql://", "postgresql+psycopg://", 1)), isolation_level="AUTOCOMMIT"
    )
    calls = {"HTTP submit": args.submits, "store insert_task": args.submits * 2}
    results: dict[str, list[dict[bool, float]]] = {label: [] for label in calls}
    try:
        for r in range(args.rounds):
            with fresh_database(admin) as fenced_url, fresh_database(admin) as unfenced_url:
                results["HTTP submit"].append(asyncio.run(http_seconds(fenced_url, unfenced_url, args.submits)))
            with fresh_database(admin) as url:
                results["store insert_task"].append(store_seconds(url, calls["store insert_task"]))
            line = "; ".join(
                f"{label} {calls[label] / runs[-1][True]:.0f}/s fenced, {calls[label] / runs[-1][False]:.0f}/s unfenced"
                for label, runs in results.items()
            )
            print(f"round {r + 1}: {line}", flush=True)
    finally:
        admin.dispose()
    for label, runs in results.items():
        ratios = [run[True] / run[False] for run in runs]
        fenced_ms = statistics.median(run[True] for run in runs) / calls[label] * 1000
        unfenced_ms = statistics.median(run[False] for run in runs) / calls[label] * 1000
        print(f"{label}: {fenced_ms:.2f} ms fenced, {unfenced_ms:.2f} ms unfenced per call (medians of "
              f"{args.rounds}); fenced/unfenced time {statistics.median(ratios):.2f} "
              f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
