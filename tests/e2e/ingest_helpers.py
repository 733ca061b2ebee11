"""Helpers for the ingestion end-to-end tests: specs, a module-wide service, segment reading."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tests.conftest import ServiceProcess

API = "/druid/indexer/v1"
COORD = "/druid/coordinator/v1/metadata"


def index_spec(
    ds: str,
    input_source: dict[str, Any],
    input_format: dict[str, Any],
    *,
    dims: list[Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    rollup: bool = False,
    intervals: list[str] | None = None,
    query_granularity: str = "none",
    task_type: str = "index_parallel",
    append: bool = False,
    tuning: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    gran: dict[str, Any] = {"segmentGranularity": "day", "queryGranularity": query_granularity, "rollup": rollup}
    if intervals:
        gran["intervals"] = intervals
    spec: dict[str, Any] = {
        "type": task_type,
        "spec": {
            "dataSchema": {
                "dataSource": ds,
                "timestampSpec": {"column": "ts", "format": "auto"},
                "dimensionsSpec": {"dimensions": dims if dims is not None else []},
                "metricsSpec": metrics or [],
                "granularitySpec": gran,
            },
            "ioConfig": {
                "type": task_type,
                "inputSource": input_source,
                "inputFormat": input_format,
                "appendToExisting": append,
            },
            "tuningConfig": {"type": task_type, "maxSavedParseExceptions": 100, **(tuning or {})},
        },
    }
    if context:
        spec["context"] = context
    return spec


def run_task(svc: ServiceProcess, spec: dict[str, Any], timeout: float = 30.0) -> tuple[dict, dict]:
    """Submit, wait, return (status, completion report)."""
    task_id = svc.submit(spec)
    status = svc.wait_for(task_id, timeout=timeout)
    r = svc.http.get(f"{API}/task/{task_id}/reports")
    return status, (r.json() if r.status_code == 200 else {})


def payload_of(report: dict[str, Any], key: str = "ingestionStatsAndErrors") -> dict[str, Any]:
    return report[key]["payload"]


def segments(svc: ServiceProcess, ds: str) -> list[dict[str, Any]]:
    r = svc.http.get(f"{COORD}/datasources/{ds}/segments", params={"full": ""})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return sorted(r.json(), key=lambda s: (s["interval"], s["shardSpec"].get("partitionNum", 0)))


def read_rows(segs: list[dict[str, Any]], sort_by: tuple[str, ...] = ("__time",)) -> list[dict[str, Any]]:
    tables = [pq.read_table(s["loadSpec"]["path"]) for s in segs]
    if not tables:
        return []
    rows = pa.concat_tables(tables, promote_options="permissive").to_pylist()
    for r in rows:
        r["__time"] = r["__time"].isoformat().replace("+00:00", "Z")
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in sort_by))


def wait_until(pred: Any, timeout: float = 20.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def start_service(base: Path, capacity: int = 3) -> ServiceProcess:
    return ServiceProcess(data_dir=base / "var", capacity=capacity).start()
