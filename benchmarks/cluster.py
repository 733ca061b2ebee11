"""Cluster benchmark: the Dask runner (a scheduler and 2 workers on this machine) against the local runner
with the same number of slots.

In one run, for each runner:
  (a) N noop tasks (runTime 0) submitted at once, end to end: wall time to the last SUCCESS, tasks/s;
  (b) an index_parallel task over R wikiticker rows in 4 files (4 sub-tasks): submit to SUCCESS, rows/s.
The reference is the local runner (one machine, fork server): the ratio says what running each peon
as a Dask task costs (scheduling, a fresh interpreter per peon, the gate round trip). Both run on
the same machine, so this measures overhead, not scale-out.

The rows are written once under benchmarks/data/ (git-ignored).

Usage: python benchmarks/cluster.py [--noops 500] [--rows 1000000] [--slots 3]
  (smoke run: --noops 20 --rows 20000)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _service import running_service  # noqa: E402
from ingest import run_task, spec  # noqa: E402
from tests.dask_cluster import DaskCluster  # noqa: E402

from overlord.ingest import wikiticker  # noqa: E402

API = "/druid/indexer/v1"
PARTS = 4


def make_files(rows: int) -> list[Path]:
    files = []
    for i in range(PARTS):
        path = DATA / f"wikiticker-{rows}-part{i}-of-{PARTS}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            wikiticker.write_file(tmp, rows // PARTS, seed=42 + i, gzip_output=False)
            tmp.rename(path)
        files.append(path)
    return files


def noops(url: str, count: int) -> float:
    """Seconds from the first submit to the last SUCCESS of ``count`` noop tasks submitted at once."""
    with httpx.Client(base_url=url, timeout=120) as client:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: client.post(f"{API}/task", json={"type": "noop", "runTime": 0})
                                .json()["task"], range(count)))  # fmt: skip
        pending = set(ids)
        while pending:
            for task_id in list(pending):
                status = client.get(f"{API}/task/{task_id}/status").json()["status"]
                if status["statusCode"] == "FAILED":
                    raise SystemExit(f"noop {task_id} failed: {status.get('errorMsg')}")
                if status["statusCode"] == "SUCCESS":
                    pending.discard(task_id)
            time.sleep(0.1)
        return time.perf_counter() - t0


def measure(url: str, args: argparse.Namespace, files: list[Path]) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=120) as client:  # wait until the runner has its slots
        deadline = time.monotonic() + 60
        while sum(w["worker"]["capacity"] for w in client.get(f"{API}/workers").json()) < 2 * args.slots:
            if time.monotonic() > deadline:
                raise SystemExit("the runner never got its slots")
            time.sleep(0.2)
    noop_s = noops(url, args.noops)
    with httpx.Client(base_url=url, timeout=120) as client:
        ingest_s, processed, _ = run_task(client, spec(f"bench_{int(time.time())}", files, PARTS))
    return {"noop_s": noop_s, "noops_per_s": args.noops / noop_s, "ingest_s": ingest_s, "rows": processed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noops", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--slots", type=int, default=3, help="slots per Dask worker (the local runner gets twice)")
    args = parser.parse_args()
    files = make_files(args.rows)
    allowed = {"overlord_ingest_allowedDirs": str(DATA)}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name in ("local", "dask-svc"):
            (base / name).mkdir()
        with running_service(base / "local" / "var", capacity=2 * args.slots, env=allowed) as url:
            results["local"] = measure(url, args, files)
        cluster = DaskCluster(base / "dask", workers=2, slots=args.slots, threads=args.slots).start()
        try:
            env = {**allowed, "druid_indexer_runner_type": "dask", "overlord_runner_dask_scheduler": cluster.address}
            with running_service(base / "dask-svc" / "var", env=env) as url:
                results["dask"] = measure(url, args, files)
        finally:
            cluster.stop()
    print(f"{args.noops} noop tasks, {2 * args.slots} slots; index_parallel over {args.rows} rows in {PARTS} files")
    print(f"{'runner':8} {'noops s':>9} {'noops/s':>9} {'ingest s':>9} {'rows/s':>10}")
    for name, r in results.items():
        rows_per_s = r["rows"] / r["ingest_s"]
        print(f"{name:8} {r['noop_s']:9.2f} {r['noops_per_s']:9.1f} {r['ingest_s']:9.2f} {rows_per_s:10.0f}")
    local, dask = results["local"], results["dask"]
    print(f"dask / local: noops {dask['noop_s'] / local['noop_s']:.2f}x the time, "
          f"ingest {dask['ingest_s'] / local['ingest_s']:.2f}x the time")  # fmt: skip


if __name__ == "__main__":
    main()
