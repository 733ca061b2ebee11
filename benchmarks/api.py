"""API benchmark: the service in one process, the load from another, on loopback.

Prints, for this machine:
  (1) GET /task/{id}/status requests/s with 10,000 tasks stored          (target >= 3,000 req/s)
  (2) GET /tasks?state=complete&max=100 median latency, 100,000 stored   (target <= 20 ms)
  (3) noop tasks end to end (submit -> SUCCESS) per second with 2 slots,
      and p50/p99 latency                                                 (target >= 50/s, p50 <= 100 ms)
  (4) GET /_tasks?detailed latency with 1,000 running or waiting tasks and
      100,000 completed ones (target < 50 ms; must not grow with the completed ones)
Reference, measured in the same run: a bare Starlette app on the same uvicorn settings answering a
constant JSON body, i.e. the ceiling any endpoint of ours can reach; the ratio says what our work costs.

Usage: python benchmarks/api.py [--seconds 5] [--tasks 300] [--skip-es]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _service import SERVICE_PIDS, cpu_seconds, free_port, running_service, seed_completed, wait_up  # noqa: E402
from es_tasks_bench import run as es_listing_run  # noqa: E402
from es_tasks_bench import summary as es_summary  # noqa: E402

API = "/druid/indexer/v1"

BARE_APP = """
import sys, orjson, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
BODY = orjson.dumps({"task": "x", "status": {"id": "x", "statusCode": "SUCCESS"}})
async def ok(request):
    return Response(BODY, media_type="application/json")
app = Starlette(routes=[Route("/druid/indexer/v1/task/{task_id}/status", ok)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


def load(
    url: str, paths: list[str], connections: int, seconds: float, workdir: Path, pid: int | None = None
) -> dict[str, float]:
    """Run the load generator (_load.py) in its own process (seconds=0: each path once). With the
    server's ``pid``, also the server's CPU time per request: unlike req/s, it hardly moves when other
    processes load the machine, so it compares runs made at different moments."""
    paths_file = workdir / "paths.txt"
    paths_file.write_text("\n".join(paths))
    cpu0 = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(
        [sys.executable, str(HERE / "_load.py"), url, str(paths_file), str(connections), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    if pid is not None:
        result["server_cpu_us"] = (cpu_seconds(pid) - cpu0) / result["requests"] * 1e6
    return result


def bare_reference(paths: list[str], connections: int, seconds: float, workdir: Path) -> dict[str, float]:
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url, f"{API}/task/x/status")
        return load(url, paths, connections, seconds, workdir, bare.pid)
    finally:
        bare.terminate()
        bare.wait(30)


def end_to_end(url: str, tasks: int, concurrency: int) -> dict[str, float]:
    """Closed loop: ``concurrency`` clients each submit a noop task and poll until SUCCESS."""

    async def client(http: httpx.AsyncClient, n: int, latencies: list[float]) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            r = await http.post(f"{API}/task", json={"type": "noop", "runTime": 0, "logLines": 0})
            task_id = r.json()["task"]
            while True:
                st = (await http.get(f"{API}/task/{task_id}/status")).json()["status"]
                if st["statusCode"] != "RUNNING":
                    assert st["statusCode"] == "SUCCESS", st
                    break
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - t0)

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await client(http, 5, [])  # warm-up
            t0 = time.perf_counter()
            await asyncio.gather(*(client(http, tasks // concurrency, latencies) for _ in range(concurrency)))
            elapsed = time.perf_counter() - t0
        latencies.sort()
        return {
            "tasks_per_s": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        }

    return asyncio.run(main())


def print_status(r1: dict[str, float], r1_cold: dict[str, float], ref: dict[str, float], connections: int) -> None:
    print(
        f"(1) GET /task/{{id}}/status, 10,000 tasks stored: {r1['rps']:,.0f} req/s steady polling "
        f"(p50 {r1['p50_ms']:.2f} ms, p99 {r1['p99_ms']:.2f} ms)   target >= 3,000 req/s"
    )
    print(
        f"    first read of each of the 10,000 (store, no cache):  {r1_cold['rps']:,.0f} req/s "
        f"(p50 {r1_cold['p50_ms']:.2f} ms)   target >= 5,000 req/s"
    )
    print(
        f"    reference, bare Starlette constant body:     {ref['rps']:,.0f} req/s  "
        f"-> steady {r1['rps'] / ref['rps']:.0%}, first reads {r1_cold['rps'] / ref['rps']:.0%} of that ceiling"
    )
    cold_us, steady_us, bare_us = r1_cold["server_cpu_us"], r1["server_cpu_us"], ref["server_cpu_us"]
    print(
        f"    server CPU per request: first reads {cold_us:.0f} us, steady {steady_us:.0f} us, bare {bare_us:.0f} us "
        f"-> with a core to itself {1e6 / cold_us:,.0f} / {1e6 / steady_us:,.0f} / {1e6 / bare_us:,.0f} req/s; "
        f"first reads {bare_us / cold_us:.0%}, steady {bare_us / steady_us:.0%} of the bare app"
    )
    print(
        f"    load: _load.py, asyncio protocols on uvloop, {connections} keep-alive connections, one request in "
        f"flight each; it used {r1_cold['client_cpu_s'] / r1_cold['elapsed_s']:.0%} of a core during the first reads"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--skip-es", action="store_true", help="skip (4), the slowest to set up")
    parser.add_argument("--status-only", action="store_true", help="only (1) and its reference")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = work / "var"
        ids = seed_completed(data_dir, 0, 10_000)
        status_paths = [f"{API}/task/{ids[(i * 7919) % len(ids)]}/status" for i in range(len(ids))]
        ref = bare_reference(status_paths, args.connections, args.seconds, work)
        with running_service(data_dir) as url:
            pid = SERVICE_PIDS[url]
            # each task once: every read hits the store
            r1_cold = load(url, status_paths, args.connections, 0, work, pid)
            r1 = load(url, status_paths, args.connections, args.seconds, work, pid)  # steady polling
        if args.status_only:
            print_status(r1, r1_cold, ref, args.connections)
            return
        seed_completed(data_dir, 10_000, 90_000)
        with running_service(data_dir) as url:
            r2 = load(url, [f"{API}/tasks?state=complete&max=100"], 1, args.seconds, work)
            r3 = end_to_end(url, args.tasks, 2)
            r3_4 = end_to_end(url, args.tasks, 4)
    es = None if args.skip_es else {n: es_summary(es_listing_run(n, 1000, 200)) for n in (0, 100_000)}

    print_status(r1, r1_cold, ref, args.connections)
    print(
        f"(2) GET /tasks?state=complete&max=100, 100,000 stored: median {r2['p50_ms']:.2f} ms "
        f"(p99 {r2['p99_ms']:.2f} ms)   target <= 20 ms"
    )
    print(
        f"(3) noop end to end, 2 slots, 2 clients: {r3['tasks_per_s']:.1f} tasks/s, "
        f"p50 {r3['p50_ms']:.1f} ms, p99 {r3['p99_ms']:.1f} ms   target >= 50/s, p50 <= 100 ms"
    )
    print(
        f"    with 4 clients (tasks queue for the 2 slots): {r3_4['tasks_per_s']:.1f} tasks/s, "
        f"p50 {r3_4['p50_ms']:.1f} ms, p99 {r3_4['p99_ms']:.1f} ms"
    )
    if es is not None:
        (m0, p0), (m1, p1) = es[0], es[100_000]
        print(
            f"(4) GET /_tasks?detailed, 1,000 active: median {m1:.1f} ms (p99 {p1:.1f} ms) with 100,000 completed; "
            f"{m0:.1f} ms (p99 {p0:.1f} ms) with none -> ratio {m1 / m0:.2f}   target < 50 ms, ratio ~1"
        )
    print(f"    machine: {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
