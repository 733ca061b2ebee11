"""API benchmark: the service in one process, the load from another, on loopback.

Prints, for this machine:
  (1) GET /task/{id}/status requests/s with 10,000 tasks stored, first read of each from the store
      (target >= 5,000 req/s) and steady polling (target >= 3,000 req/s)
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
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def bare_app() -> Iterator[tuple[str, int]]:
    """The reference server: yields its URL and pid."""
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url, f"{API}/task/x/status")
        yield url, bare.pid
    finally:
        bare.terminate()
        bare.wait(30)


def status_side_by_side(
    data_dir: Path, ids: list[str], connections: int, seconds: float, workdir: Path, bursts: int = 10
) -> dict[str, dict[str, float]]:
    """(1) with its anchor: the service and the bare app run at once and the load alternates between
    them in short bursts, so both meet the same background load (other processes on the machine).
    First reads: ``bursts`` bursts of distinct ids, each id read once (every read goes to the store);
    then steady polling over all ids (served from the rendered bytes). Medians over the bursts, and
    the median of the per-pair ratios."""
    paths = [f"{API}/task/{ids[(i * 7919) % len(ids)]}/status" for i in range(len(ids))]
    share = len(paths) // bursts
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "steady": [], "bare_cold": [], "bare_steady": []}
    with bare_app() as (bare_url, bare_pid), running_service(data_dir) as url:
        pid = SERVICE_PIDS[url]
        for phase, each in (("cold", 0.0), ("steady", seconds / bursts)):
            for i in range(bursts):
                chunk = paths[i * share : (i + 1) * share] if phase == "cold" else paths
                pair = [(phase, url, pid), (f"bare_{phase}", bare_url, bare_pid)]
                for name, target, target_pid in pair if i % 2 == 0 else reversed(pair):
                    runs[name].append(load(target, chunk, connections, each, workdir, target_pid))
    out: dict[str, dict[str, float]] = {}
    for name, results in runs.items():
        out[name] = {k: statistics.median(r[k] for r in results) for k in ("rps", "p50_ms", "p99_ms", "server_cpu_us")}
    for phase in ("cold", "steady"):
        pairs = list(zip(runs[phase], runs[f"bare_{phase}"], strict=True))
        out[phase]["rps_ratio"] = statistics.median(ours["rps"] / bare["rps"] for ours, bare in pairs)
        out[phase]["cpu_ratio"] = statistics.median(
            bare["server_cpu_us"] / ours["server_cpu_us"] for ours, bare in pairs
        )
    return out


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


def print_status(r: dict[str, dict[str, float]], connections: int) -> None:
    cold, steady, bare = r["cold"], r["steady"], r["bare_cold"]
    print(
        f"(1) GET /task/{{id}}/status, 10,000 tasks stored, first read of each (store, no cache): "
        f"{cold['rps']:,.0f} req/s (p50 {cold['p50_ms']:.2f} ms, p99 {cold['p99_ms']:.2f} ms)   target >= 5,000 req/s"
    )
    print(
        f"    steady polling (rendered bytes kept): {steady['rps']:,.0f} req/s "
        f"(p50 {steady['p50_ms']:.2f} ms, p99 {steady['p99_ms']:.2f} ms)   target >= 3,000 req/s"
    )
    print(
        f"    reference, bare Starlette constant body, same bursts: {bare['rps']:,.0f} req/s "
        f"-> first reads {cold['rps_ratio']:.0%}, steady {steady['rps_ratio']:.0%} of that ceiling"
    )
    print(
        f"    server CPU per request: first reads {cold['server_cpu_us']:.0f} us, "
        f"steady {steady['server_cpu_us']:.0f} us, bare {bare['server_cpu_us']:.0f} us -> the bare app's is "
        f"{cold['cpu_ratio']:.0%} / {steady['cpu_ratio']:.0%} of ours (a core to itself would serve "
        f"{1e6 / cold['server_cpu_us']:,.0f} / {1e6 / steady['server_cpu_us']:,.0f} req/s)"
    )
    print(
        f"    load: _load.py (asyncio protocols on uvloop), {connections} keep-alive connections, one request "
        "in flight each; bursts alternate between the two servers, run at once; medians of 10 bursts"
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
        r1 = status_side_by_side(data_dir, ids, args.connections, args.seconds, work)
        if args.status_only:
            print_status(r1, args.connections)
            return
        seed_completed(data_dir, 10_000, 90_000)
        with running_service(data_dir) as url:
            r2 = load(url, [f"{API}/tasks?state=complete&max=100"], 1, args.seconds, work)
            r3 = end_to_end(url, args.tasks, 2)
            r3_4 = end_to_end(url, args.tasks, 4)
    es = None if args.skip_es else {n: es_summary(es_listing_run(n, 1000, 200)) for n in (0, 100_000)}

    print_status(r1, args.connections)
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
