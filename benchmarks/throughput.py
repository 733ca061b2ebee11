"""Task throughput end to end against Celery (issue 11): no-op tasks, submit -> SUCCESS, 2 slots.

In one run:
  (a) the service (``overlord start``, capacity 2, SQLite): N ``{"type":"noop","runTime":0}`` tasks,
      all submitted, then all waited for (bulk ``POST /taskStatus`` polls for the ones not done yet);
  (b) Celery (a worker this script starts: prefork, concurrency 2, Redis broker and result backend on
      127.0.0.1:6379): N no-op tasks, ``delay()`` for all, then ``get()`` for all;
  (c) p50/p99 submit -> SUCCESS latency with tasks offered open loop at a fixed rate (50/s), ours and
      Celery's, each task's completion seen by a poller every few milliseconds.
Prints tasks/s and the ratio ours / Celery. Without Redis (or Celery: ``pip install -e '.[bench]'``) the
Celery part is skipped with a message saying why.

    .venv/bin/python benchmarks/throughput.py [--tasks 500] [--rate 50] [--latency-tasks 250] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import SERVICE_PIDS, running_service, stop_process

API = "/druid/indexer/v1"
NOOP = {"type": "noop", "runTime": 0}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CELERY_PIDS: list[int] = []  # the worker this script started (CPU accounting)
POLL_S = 0.005  # how often completions are looked for in the latency run (its resolution)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- ours -----------------------------------------------------------------------------------------


async def _submit(http: httpx.AsyncClient) -> str:
    r = await http.post(f"{API}/task", json=NOOP)
    r.raise_for_status()
    return str(r.json()["task"])


async def _poll_done(http: httpx.AsyncClient, ids: list[str]) -> dict[str, str]:
    """Status of each of ``ids`` that has completed (bulk status, at most 1000 ids a call)."""
    done: dict[str, str] = {}
    for start in range(0, len(ids), 1000):
        r = await http.post(f"{API}/taskStatus", json=ids[start : start + 1000])
        r.raise_for_status()
        for task_id, status in r.json().items():
            if status["status"] in ("SUCCESS", "FAILED"):
                done[task_id] = status["status"]
    return done


def ours_throughput(url: str, tasks: int, submitters: int = 4) -> dict[str, float]:
    """Submit ``tasks`` noops (``submitters`` connections), then wait until every one has completed."""

    async def main() -> dict[str, float]:
        limits = httpx.Limits(max_connections=submitters + 1)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            start = time.perf_counter()
            counter = iter(range(tasks))
            ids: list[str] = []

            async def submitter() -> None:
                for _ in counter:
                    ids.append(await _submit(http))

            await asyncio.gather(*(submitter() for _ in range(submitters)))
            submitted = time.perf_counter() - start
            outstanding = list(ids)
            failed = 0
            while outstanding:
                await asyncio.sleep(0.05)
                done = await _poll_done(http, outstanding)
                failed += sum(1 for s in done.values() if s != "SUCCESS")
                outstanding = [i for i in outstanding if i not in done]
            elapsed = time.perf_counter() - start
        if failed:
            raise RuntimeError(f"{failed} of {tasks} noop tasks FAILED")
        return {"tasks_per_s": tasks / elapsed, "elapsed_s": elapsed, "submit_s": submitted}

    return asyncio.run(main())


def ours_latency(url: str, rate: float, tasks: int) -> dict[str, float]:
    """Open loop: a submit every 1/rate s whatever happens; each task's submit -> SUCCESS time."""

    async def main() -> dict[str, float]:
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=16)) as http:
            sent: dict[str, float] = {}
            latencies: list[float] = []
            finished = asyncio.Event()

            async def one(at: float) -> None:
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                t0 = time.perf_counter()
                sent[await _submit(http)] = t0

            async def poller() -> None:
                while not finished.is_set() or sent:
                    await asyncio.sleep(POLL_S)
                    if not sent:
                        continue
                    now = time.perf_counter()
                    done = await _poll_done(http, list(sent))
                    for task_id, status in done.items():
                        if status != "SUCCESS":
                            raise RuntimeError(f"task {task_id} ended {status}")
                        latencies.append(now - sent.pop(task_id))

            watcher = asyncio.create_task(poller())
            t_start = time.perf_counter() + 0.05
            await asyncio.gather(*(one(t_start + i / rate) for i in range(tasks)))
            finished.set()
            await watcher
        return _latency_figures(latencies)

    return asyncio.run(main())


def _latency_figures(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "n": len(latencies),
    }


# -- CPU accounting ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, list[str]] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    return name, raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def cpu_split(service_pid: int) -> dict[str, float]:
    """CPU seconds so far: the service's own; each direct child's own (the fork servers, the resource
    tracker, live peons); and what the children have reaped (peons, counted when their fork server reaps them)."""
    tick = os.sysconf("SC_CLK_TCK")
    split = {"service": 0.0, "fork servers": 0.0, "peons": 0.0}
    stat = _stat(service_pid)
    if stat is None:
        return split
    split["service"] = (int(stat[1][11]) + int(stat[1][12])) / tick
    for child in _children(service_pid):
        child_stat = _stat(child)
        if child_stat is None:
            continue
        fields = child_stat[1]
        own = (int(fields[11]) + int(fields[12])) / tick
        reaped = (int(fields[13]) + int(fields[14])) / tick
        if _children(child) or reaped:  # a fork server: its own CPU is the forking
            split["fork servers"] += own
            split["peons"] += reaped
        else:
            split["peons"] += own
    return split


def per_task_ms(before: dict[str, float], after: dict[str, float], tasks: int) -> str:
    parts = [f"{k} {(after[k] - before[k]) * 1000 / tasks:.1f}" for k in before]
    total = sum(after.values()) - sum(before.values())
    return f"CPU ms/task: {', '.join(parts)}, total {total * 1000 / tasks:.1f}"


# -- Celery ----------------------------------------------------------------------------------------


def redis_reachable() -> str | None:
    """None if Redis answers PING on 127.0.0.1:6379, else why not."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as s:
            s.sendall(b"PING\r\n")
            answer = s.recv(64)
    except OSError as exc:
        return f"Redis is not reachable on {REDIS_HOST}:{REDIS_PORT} ({exc})"
    return None if answer.startswith(b"+PONG") else f"Redis on {REDIS_HOST}:{REDIS_PORT} answered {answer!r}"


@contextlib.contextmanager
def celery_worker(workdir: Path) -> Iterator[Any]:
    """A prefork worker with 2 processes on the benchmark's queue; yields the app's noop task."""
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import _celery_app

    _celery_app.app.control.purge()
    log = (workdir / "celery.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "_celery_app", "worker", "--pool", "prefork", "--concurrency", "2",
         "--loglevel", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-Q", _celery_app.QUEUE, "-n", f"bench-{os.getpid()}@127.0.0.1"],
        cwd=here, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    CELERY_PIDS.append(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while not _celery_app.app.control.ping(timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start: see {workdir / 'celery.log'}")
        _celery_app.noop.delay().get(timeout=30)  # warm: the pool's processes are up
        yield _celery_app.noop
    finally:
        stop_process(proc)
        log.close()


def celery_throughput(noop: Any, tasks: int) -> dict[str, float]:
    start = time.perf_counter()
    results = [noop.delay() for _ in range(tasks)]
    submitted = time.perf_counter() - start
    for result in results:
        if result.get(timeout=120) != "SUCCESS":
            raise RuntimeError("a Celery noop did not succeed")
    elapsed = time.perf_counter() - start
    return {"tasks_per_s": tasks / elapsed, "elapsed_s": elapsed, "submit_s": submitted}


def celery_latency(noop: Any, rate: float, tasks: int) -> dict[str, float]:
    """Open loop like ``ours_latency``: results are looked for with ``ready()`` every few ms."""
    pending: dict[Any, float] = {}
    latencies: list[float] = []
    t_start = time.perf_counter() + 0.05
    sent = 0
    while sent < tasks or pending:
        now = time.perf_counter()
        while sent < tasks and t_start + sent / rate <= now:
            pending[noop.delay()] = time.perf_counter()
            sent += 1
        for result in [r for r in pending if r.ready()]:
            latencies.append(time.perf_counter() - pending.pop(result))
        time.sleep(POLL_S)
    return _latency_figures(latencies)


# -- the run ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="tasks/s offered in the latency run")
    parser.add_argument("--latency-tasks", type=int, default=250)
    parser.add_argument("--capacity", type=int, default=2)
    parser.add_argument("--no-celery", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="overlord-throughput-") as tmp:
        work = Path(tmp)
        with running_service(work / "data", capacity=args.capacity) as url:
            ours_throughput(url, 20)  # warm: the fork server, the store, the HTTP paths
            cpu_before = cpu_split(SERVICE_PIDS[url])
            ours = ours_throughput(url, args.tasks)
            cpu = per_task_ms(cpu_before, cpu_split(SERVICE_PIDS[url]), args.tasks)
            ours_lat = ours_latency(url, args.rate, args.latency_tasks)
        print(f"ours:   {args.tasks} noop tasks, {args.capacity} slots: {ours['tasks_per_s']:.1f} tasks/s "
              f"({ours['elapsed_s']:.2f} s, submits took {ours['submit_s']:.2f} s)")  # fmt: skip
        print(f"ours:   {cpu}")
        print(f"ours:   latency at {args.rate:g} tasks/s offered: p50 {ours_lat['p50_ms']:.1f} ms, "
              f"p99 {ours_lat['p99_ms']:.1f} ms ({ours_lat['n']} tasks)   goal p50 <= 30 ms")  # fmt: skip

        why_not = "skipped (--no-celery)" if args.no_celery else redis_reachable()
        if why_not is None:
            try:
                import celery  # noqa: F401
            except ImportError:
                why_not = "Celery is not installed: pip install -e '.[bench]'"
        if why_not is not None:
            print(f"celery: SKIPPED: {why_not}")
            return
        with celery_worker(work) as noop:
            cel_before = sum(cpu_split(CELERY_PIDS[-1]).values())
            cel = celery_throughput(noop, args.tasks)
            cel_cpu = (sum(cpu_split(CELERY_PIDS[-1]).values()) - cel_before) * 1000 / args.tasks
            cel_lat = celery_latency(noop, args.rate, args.latency_tasks)
        print(f"celery: {args.tasks} noop tasks, prefork 2, Redis: {cel['tasks_per_s']:.1f} tasks/s "
              f"({cel['elapsed_s']:.2f} s, delay() took {cel['submit_s']:.2f} s)")  # fmt: skip
        print(f"celery: CPU ms/task (worker and its pool): {cel_cpu:.1f}")
        print(f"celery: latency at {args.rate:g} tasks/s offered: p50 {cel_lat['p50_ms']:.1f} ms, "
              f"p99 {cel_lat['p99_ms']:.1f} ms ({cel_lat['n']} tasks)")  # fmt: skip
        print(f"ratio ours/celery tasks/s: {ours['tasks_per_s'] / cel['tasks_per_s']:.2f}   goal >= 0.5")


if __name__ == "__main__":
    main()
