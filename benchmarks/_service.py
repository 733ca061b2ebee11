"""Shared by the benchmarks: a real service in a subprocess, and completed tasks seeded in its store."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from overlord.core.task import RunnerState, StatusCode, TaskRecord  # noqa: E402
from overlord.storage.metadata import MetadataStore  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, path: str = "/status/health", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=1).status_code in (200, 404):
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


SERVICE_PIDS: dict[str, int] = {}  # url -> pid of each service running_service started (CPU accounting)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_service(
    data_dir: Path, *, capacity: int = 2, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``overlord start`` on a free port; yields its URL and stops it (SIGTERM) afterwards."""
    port = free_port()
    log_path = data_dir.parent / f"service-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overlord", "start", "--port", str(port), "--data-dir", str(data_dir),
             "--capacity", str(capacity), "--log-level", "warning"],
            cwd=cwd or data_dir.parent, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        SERVICE_PIDS[url] = proc.pid
        try:
            wait_up(url)
            yield url
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def seed_completed(data_dir: Path, start: int, count: int) -> list[str]:
    """Store ``count`` completed noop tasks (created over the last minutes) straight into the metadata store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    now = int(time.time() * 1000)
    store = MetadataStore.from_url(f"sqlite:///{(data_dir / 'metadata.db').resolve()}")
    ids = [f"noop_bench_{i:07d}" for i in range(start, start + count)]
    try:
        store.bulk_insert_tasks(
            TaskRecord(
                id=task_id,
                group_id=task_id,
                type="noop",
                datasource=f"ds{i % 10}",
                created_ms=now - (count - i) * 10,
                queue_insertion_ms=now - (count - i) * 10,
                status_code=StatusCode.SUCCESS,
                runner_state=RunnerState.NONE,
                duration=5,
                payload={"type": "noop", "id": task_id},
            )
            for i, task_id in enumerate(ids)
        )
    finally:
        store.close()
    return ids


def processed_rows(report: dict[str, Any]) -> int:
    """Rows processed, from an ingestion report of either shape: a single task's ``buildSegments`` or
    a parallel supervisor's ``totals`` (Druid's two shapes)."""
    stats = report["ingestionStatsAndErrors"]["payload"]["rowStats"]
    phases = stats.get("totals", stats)  # the parallel shape nests the phases under "totals"
    return int(phases.get("buildSegments", {}).get("processed", 0))
