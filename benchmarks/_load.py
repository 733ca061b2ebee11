"""A small HTTP/1.1 keep-alive load generator: asyncio protocols on uvloop, one request in flight per connection.

Cheap on purpose (the machine's cores are shared with the server under test): no HTTP library, no
stream objects, one ``transport.write`` per request and a minimal response parser (status line and
``Content-Length``; the service never answers this benchmark with chunked bodies). Run in its own
process: ``python _load.py URL PATHS_FILE CONNECTIONS SECONDS`` (0 seconds: each path once) prints JSON
with requests/s, latency percentiles and the generator's own CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]


class _Connection(asyncio.Protocol):
    """Sends the next path as soon as the previous response is complete."""

    def __init__(self, host: str, paths: list[str], deadline: float, latencies: list[float]) -> None:
        self.requests = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
        self.deadline = deadline
        self.latencies = latencies
        self.done = asyncio.get_running_loop().create_future()
        self.count = 0
        self.failure: str | None = None
        self._buf = b""
        self._need = -1  # bytes of the current response still expected; -1: head not complete yet
        self._t0 = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        i = self.count
        if (self.deadline > 0 and time.perf_counter() >= self.deadline) or (
            self.deadline == 0 and i >= len(self.requests)
        ):
            self.transport.close()
            return
        self._t0 = time.perf_counter()
        self.transport.write(self.requests[i % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if self._need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            head = buf[:end]
            if not head.startswith(b"HTTP/1.1 200"):
                self.failure = head.split(b"\r\n", 1)[0].decode("latin-1")
                self.transport.close()
                return
            self._need = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    self._need = int(line[15:])
                    break
            buf = buf[end + 4 :]
        if len(buf) < self._need:
            self._buf = buf
            return
        self._buf = b""
        self._need = -1
        self.latencies.append(time.perf_counter() - self._t0)
        self.count += 1
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(url: str, paths: list[str], connections: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds if seconds > 0 else 0.0  # 0: every path exactly once
    conns = [_Connection(host, paths[c::connections] or paths, deadline, latencies) for c in range(connections)]
    for conn in conns:
        await loop.create_connection(lambda conn=conn: conn, host, port)  # type: ignore[misc]
    await asyncio.gather(*(c.done for c in conns))
    elapsed = time.perf_counter() - start
    failures = [c.failure for c in conns if c.failure]
    if failures:
        raise RuntimeError(f"answered {failures[0]}")
    latencies.sort()
    total = sum(c.count for c in conns)
    return {
        "requests": total,
        "rps": total / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "client_cpu_s": time.process_time() - cpu0,
        "elapsed_s": elapsed,
    }


if __name__ == "__main__":
    url, paths_file, connections, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(paths_file) as f:
        path_list = [line.strip() for line in f if line.strip()]
    main = run(url, path_list, connections, seconds)
    print(json.dumps(uvloop.run(main) if uvloop is not None else asyncio.run(main)))
