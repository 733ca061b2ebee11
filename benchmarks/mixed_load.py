"""Mixed load from issue 9: many status pollers next to clients that list tasks, against a service in its own process.

800 keep-alive clients poll ``GET /druid/indexer/v1/task/{id}/status`` while 200 list ``/druid/indexer/v1/tasks``,
``/runningTasks`` and ``/_tasks?detailed`` in turn, for 30 s, on a service holding --completed finished tasks
(seeded into its store, as benchmarks/api.py does) and --active noop tasks that run or wait for the whole window.
The clients are spread over --procs load processes (raw asyncio streams; httpx would be the bottleneck), and one
lone poller in this process asks for one status every 100 ms on its own connection. Printed: status answers per
second, status p50/p99/max latency, listing p50/p99, errors (non-200 answers and exceptions, by kind) and the
lone poller's worst wait. Goal in the issue: status p99 under 1 s, zero errors.

Usage: python benchmarks/mixed_load.py [--seconds 30] [--pollers 800] [--listers 200] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _service import running_service, seed_completed  # noqa: E402

API = "/druid/indexer/v1"
LISTINGS = [f"{API}/tasks", f"{API}/runningTasks", "/_tasks?detailed"]


@dataclass
class Tally:
    """Latencies (seconds) of answered requests by kind, and errors by kind (``"503"``, ``"TimeoutError"``...)."""

    status: list[float] = field(default_factory=list)
    listing: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    first_start: float = 0.0
    last_answer: float = 0.0
    cpu_s: float = 0.0  # the load processes' own CPU time: near the window's length means they were the bottleneck

    def merge(self, other: Tally) -> None:
        self.status += other.status
        self.listing += other.listing
        self.errors.update(other.errors)
        self.first_start = min(t for t in (self.first_start, other.first_start) if t) if other.first_start else 0.0
        self.last_answer = max(self.last_answer, other.last_answer)
        self.cpu_s += other.cpu_s


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status


async def _client(
    host: str, port: int, paths: list[str], kind: str, deadline: float, timeout: float, tally: Tally
) -> None:
    """One keep-alive connection asking ``paths`` in turn until the deadline; reconnects after an error."""
    sink = tally.status if kind == "status" else tally.listing
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    i = 0
    while time.perf_counter() < deadline:
        path = paths[i % len(paths)]
        i += 1
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            reader, writer = conn
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            code = await asyncio.wait_for(_read_response(reader), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            tally.errors[f"{kind} {type(exc).__name__}"] += 1
            if conn is not None:
                conn[1].close()
                conn = None
            await asyncio.sleep(0.05)
            continue
        tally.last_answer = time.perf_counter()
        if code == 200:
            sink.append(tally.last_answer - t0)
        else:
            tally.errors[f"{kind} HTTP {code}"] += 1
    if conn is not None:
        conn[1].close()


def load_process(
    url: str, status_paths: list[str], pollers: int, listers: int, start_at: float, seconds: float, timeout: float
) -> Tally:
    """A load process's share of the clients; all processes begin at the same wall-clock moment."""

    async def main() -> Tally:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        tally = Tally()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        tally.first_start = time.perf_counter()
        deadline = tally.first_start + seconds
        clients = [
            _client(host, port, status_paths[c::pollers] or status_paths, "status", deadline, timeout, tally)
            for c in range(pollers)
        ]
        clients += [
            _client(host, port, LISTINGS[c % 3 :] + LISTINGS[: c % 3], "listing", deadline, timeout, tally)
            for c in range(listers)
        ]
        cpu0 = time.process_time()
        await asyncio.gather(*clients)
        tally.cpu_s = time.process_time() - cpu0
        return tally

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def lone_poller(
    url: str, path: str, start_at: float, seconds: float, timeout: float, out: list[tuple[float, bool]]
) -> None:
    """One client asking one status every 100 ms; ``out`` gets each (wait, answered 200)."""
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=timeout) as http:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                ok = http.get(path).status_code == 200
            except httpx.HTTPError:
                ok = False
            out.append((time.perf_counter() - t0, ok))
            time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--pollers", type=int, default=800)
    ap.add_argument("--listers", type=int, default=200)
    ap.add_argument("--procs", type=int, default=2, help="load processes")
    ap.add_argument("--completed", type=int, default=10_000, help="finished tasks stored")
    ap.add_argument("--active", type=int, default=50, help="noop tasks running or waiting during the load")
    ap.add_argument("--capacity", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as an error")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        completed = seed_completed(data_dir, 0, args.completed)
        with running_service(data_dir, capacity=args.capacity) as url, httpx.Client(base_url=url, timeout=60) as http:
            run_ms = int((args.seconds + args.timeout + 60) * 1000)
            active = [
                http.post(f"{API}/task", json={"type": "noop", "runTime": run_ms}).json()["task"]
                for _ in range(args.active)
            ]
            ids = active + completed
            status_paths = [f"{API}/task/{ids[(i * 7919) % len(ids)]}/status" for i in range(len(ids))]
            start_at = time.time() + 3.0  # time for the load processes to start
            lone: list[tuple[float, bool]] = []
            lone_thread = threading.Thread(
                target=lone_poller,
                args=(url, f"{API}/task/{completed[0]}/status", start_at, args.seconds, args.timeout, lone),
            )
            lone_thread.start()
            tally = Tally()

            def split(p: int) -> tuple[int, int]:
                """Process ``p``'s share of the pollers and of the listers."""
                n = args.procs
                return args.pollers // n + (p < args.pollers % n), args.listers // n + (p < args.listers % n)

            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(args.procs, mp_context=ctx) as pool:
                shares = [
                    pool.submit(
                        load_process,
                        url,
                        status_paths[p :: args.procs],
                        *split(p),
                        start_at,
                        args.seconds,
                        args.timeout,
                    )
                    for p in range(args.procs)
                ]
                for share in shares:
                    tally.merge(share.result())
            lone_thread.join()
            running = len(http.get(f"{API}/runningTasks").json())
            for task_id in active:
                http.post(f"{API}/task/{task_id}/shutdown")

    window = max(args.seconds, tally.last_answer - tally.first_start)  # requests in flight at the end finish
    errors = sum(tally.errors.values())
    print(
        f"mixed load: {args.pollers} status pollers + {args.listers} listers over {args.procs} load processes, "
        f"{args.seconds:.0f} s; {args.completed:,} completed tasks stored, {args.active} active "
        f"({running} running on {args.capacity} slots at the end)"
    )
    print(
        f"  status : {len(tally.status):8,} answers = {len(tally.status) / window:8,.1f}/s   "
        f"p50 {pct(tally.status, 0.5) * 1000:8.1f} ms  p99 {pct(tally.status, 0.99) * 1000:8.1f} ms  "
        f"max {max(tally.status, default=float('nan')) * 1000:8.1f} ms   goal: p99 < 1,000 ms"
    )
    print(
        f"  listing: {len(tally.listing):8,} answers = {len(tally.listing) / window:8,.1f}/s   "
        f"p50 {pct(tally.listing, 0.5) * 1000:8.1f} ms  p99 {pct(tally.listing, 0.99) * 1000:8.1f} ms"
    )
    print(f"  errors : {errors} (goal 0) {dict(tally.errors) if errors else ''}")
    answered = [w for w, ok in lone if ok]
    print(
        f"  lone poller: {len(lone)} asks, {len(lone) - len(answered)} failed (timeout {args.timeout:.0f} s), "
        f"worst wait {max((w for w, _ in lone), default=float('nan')):.3f} s, median {pct(answered, 0.5) * 1000:.1f} ms"
    )
    print(
        f"  machine: {os.cpu_count()} cores; last answer {tally.last_answer - tally.first_start:.1f} s after start; "
        f"load processes used {tally.cpu_s:.1f} CPU s in all ({tally.cpu_s / window / args.procs:.0%} of their cores)"
    )


if __name__ == "__main__":
    main()
