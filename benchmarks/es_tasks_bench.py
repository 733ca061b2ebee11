"""Latency of ``GET /_tasks?detailed`` with 1,000 active tasks, with and without 100,000 finished ones.

Listing must cost the same whatever the number of finished tasks (Elasticsearch's ``_tasks`` lists
running tasks only; the store keeps finished ones for ``GET /_tasks/{id}``). The script stores the
finished tasks straight through ``MetadataStore.bulk_insert_tasks``, starts a real service with one
worker slot, submits one long-running noop task and 999 more that wait behind it, then times the
listing. Target: median and p99 under 50 ms, and a ratio near 1.0 between the two runs.

    python benchmarks/es_tasks_bench.py [--active 1000] [--completed 100000] [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _service import running_service, seed_completed


def run(completed: int, active: int, requests: int) -> list[float]:
    """Latencies (ms) of ``requests`` listings with ``active`` waiting/running and ``completed`` finished tasks."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        started = time.perf_counter()
        seed_completed(data_dir, 0, completed)
        print(f"  stored {completed} completed tasks in {time.perf_counter() - started:.1f}s", flush=True)
        with running_service(data_dir, capacity=1) as url, httpx.Client(base_url=url, timeout=60) as client:
            for i in range(active):
                spec = {"type": "noop", "runTime": 600_000, "id": f"bench_active_{i}"}
                client.post("/druid/indexer/v1/task", json=spec).raise_for_status()
            listed = client.get("/_tasks?detailed&actions=indexer:*&group_by=none").json()["tasks"]
            states = [t["status"]["runner_status_code"] for t in listed]
            print(f"  listing holds {len(listed)} tasks: {states.count('RUNNING')} running, "
                  f"{states.count('PENDING') + states.count('WAITING')} waiting", flush=True)  # fmt: skip
            for _ in range(20):
                client.get("/_tasks?detailed").raise_for_status()
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = client.get("/_tasks?detailed")
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
            client.post("/_tasks/_cancel?actions=*noop*&wait_for_completion").raise_for_status()
            return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--completed", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(f"GET /_tasks?detailed, {args.active} active tasks, {args.requests} requests, cpus={os.cpu_count()}")
    results = {}
    for completed in (0, args.completed):
        print(f"run with {completed} completed tasks stored:", flush=True)
        results[completed] = summary(run(completed, args.active, args.requests))
        med, p99 = results[completed]
        print(f"  median {med:.2f} ms   p99 {p99:.2f} ms   (target < 50 ms)", flush=True)
    base, big = results[0][0], results[args.completed][0]
    print(f"median ratio {args.completed} completed / 0 completed: {big / base:.2f} (target ~1.0: no scaling)")


if __name__ == "__main__":
    main()
