"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams (httpx is the bottleneck otherwise).

Run in its own process so that the service and the load each have a core: ``python _load.py URL PATH
CONNECTIONS SECONDS`` (0 seconds: each path once) prints JSON with requests/s and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


async def _connection(host: str, port: int, paths: list[str], deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    i = 0
    try:
        while time.perf_counter() < deadline if deadline > 0 else i < len(paths):
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
            latencies.append(time.perf_counter() - t0)
            done += 1
    finally:
        writer.close()
    return done


async def run(url: str, paths: list[str], connections: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds if seconds > 0 else 0.0  # 0: every path exactly once
    counts = await asyncio.gather(
        *(_connection(host, port, paths[c::connections] or paths, deadline, latencies) for c in range(connections))
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": sum(counts),
        "rps": sum(counts) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


if __name__ == "__main__":
    url, paths_file, connections, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(paths_file) as f:
        path_list = [line.strip() for line in f if line.strip()]
    print(json.dumps(asyncio.run(run(url, path_list, connections, seconds))))
