"""Leader kill -> new leader serving: two Overlords on one PostgreSQL database, kill -9 the leader N times.

Each try kills the current leader (SIGKILL) while a task runs, and times until the other Overlord
answers ``GET /isLeader`` 200 and then accepts a submit (serving), then restarts the killed one, which
must come back as a follower. Prints every try, the median and the max; the running tasks must all
end SUCCESS, each run once (the peon journal). Default settings: overlord.leader.leaseDuration PT10S,
renewPeriod PT2S.

Usage: python benchmarks/leader_failover.py [--tries 5] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _service import ROOT, free_port, wait_up  # noqa: E402

API = "/druid/indexer/v1"


class Overlord:
    def __init__(self, base: Path, name: str, pg_url: str, shared: dict[str, str]) -> None:
        self.data_dir = base / name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pg_url = pg_url
        self.env = {**os.environ, **shared, "PYTHONPATH": str(ROOT / "src")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "overlord", "start", "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--capacity", "2", "--metadata-url", self.pg_url, "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.data_dir.parent,
        )  # fmt: skip
        wait_up(self.url)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def is_leader(self) -> bool:
        try:
            return httpx.get(f"{self.url}{API}/isLeader", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument(
        "--pg", default=os.environ.get("OVERLORD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    admin_url = sa.make_url(args.pg.replace("postgresql://", "postgresql+psycopg://", 1))
    db = f"overlord_failover_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg_url = admin_url.set(database=db).render_as_string(hide_password=False)
    base = Path(tempfile.mkdtemp(prefix="overlord-failover-"))
    shared = {
        "druid_storage_storageDirectory": str(base / "deep"),
        "druid_indexer_logs_directory": str(base / "logs"),
        "druid_worker_baseTaskDirs": str(base / "tasks"),
        "OVERLORD_PEON_JOURNAL": str(base / "journal"),
    }
    nodes = [Overlord(base, "a", pg_url, shared), Overlord(base, "b", pg_url, shared)]
    times: list[float] = []
    serving: list[float] = []
    tasks: list[str] = []
    try:
        for node in nodes:
            node.start()
        time.sleep(2.5)  # one renewal: the leader's peons know the follower
        for i in range(args.tries):
            leader = next(n for n in nodes if n.is_leader())
            follower = next(n for n in nodes if n is not leader)
            r = httpx.post(f"{leader.url}{API}/task", json={"type": "noop", "runTime": 25000}, timeout=10)
            tasks.append(r.json()["task"])
            time.sleep(1.0)
            killed = time.monotonic()
            leader.kill9()
            while not follower.is_leader():
                time.sleep(0.02)
            elected = time.monotonic() - killed
            r = httpx.post(f"{follower.url}{API}/task", json={"type": "noop", "runTime": 0}, timeout=10)
            assert r.status_code == 200, r.text
            tasks.append(r.json()["task"])
            served = time.monotonic() - killed
            times.append(elected)
            serving.append(served)
            print(f"try {i + 1}: leader after {elected:.2f}s, first submit accepted after {served:.2f}s", flush=True)
            leader.start()
            assert not leader.is_leader(), "the restarted Overlord must come back as a follower"
        survivor = next(n for n in nodes if n.is_leader())
        deadline = time.monotonic() + 120
        pending = set(tasks)
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                body = httpx.get(f"{survivor.url}{API}/task/{task_id}/status", timeout=10).json()["status"]
                if body["statusCode"] != "RUNNING":
                    assert body["statusCode"] == "SUCCESS", body
                    pending.discard(task_id)
            time.sleep(0.5)
        runs = collections.Counter(line.split()[0] for line in (base / "journal").read_text().splitlines() if line)
        twice = [t for t, n in runs.items() if n > 1]
        print(f"\n{args.tries} failovers: leader median {statistics.median(times):.2f}s max {max(times):.2f}s; "
              f"serving median {statistics.median(serving):.2f}s max {max(serving):.2f}s")  # fmt: skip
        print(f"tasks: {len(tasks)} submitted, {len(pending)} not ended, {len(twice)} run twice")
    finally:
        for node in nodes:
            node.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
