"""The body limit on the real server (uvicorn): a 100 MB body is refused with a 413 before it is
read in full, with or without Content-Length, and neither blocks nor bloats the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

API = "/druid/indexer/v1"
MIB = 1 << 20


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100_mb_body_is_413_and_costs_no_memory(shared_service, chunked: bool) -> None:  # type: ignore[no-untyped-def]
    assert shared_service.proc is not None
    before = _peak_rss_kib(shared_service.proc.pid)

    def body() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * MIB

    headers = {"content-type": "application/json"}
    if not chunked:
        headers["content-length"] = str(100 * MIB)
    with httpx.Client(base_url=shared_service.url, timeout=30) as client:
        r = client.post(f"{API}/task", content=body(), headers=headers)
    assert r.status_code == 413, r.text
    assert r.json()["errorCode"] == "requestTooLarge" and "maxRequestBodySize" in r.json()["errorMessage"]
    assert shared_service.http.get("/status/health").json() is True
    assert _peak_rss_kib(shared_service.proc.pid) - before < 40 * 1024  # today's bodies took 6.6 times their size
