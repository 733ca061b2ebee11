"""Failure classification and the maxNumConcurrentSubTasks suggestion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from client_fakes import final_report

from overlord.client import TaskStatus, classify_failure, explain_failure, suggest_max_num_concurrent_sub_tasks


def _failed(msg: str | None) -> TaskStatus:
    return TaskStatus(id="t", status_code="FAILED", error_msg=msg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "kind", "reason"),
    [
        ("Max parse exceptions[0] exceeded, terminating task...", "structural", "parse_exceptions"),
        ("Invalid timestampSpec: column [ts] missing", "structural", "invalid_spec"),
        ("Cannot construct instance of dimensionsSpec", "structural", "invalid_spec"),
        ("No such file: /data/x.json", "structural", "input"),
        ("Worker lost while running the task", "transient", "worker_lost"),
        ("Peon process exited with code 137", "transient", "exit"),
        ("Task killed by signal 9", "transient", "exit"),
        ("Lock revoked by a higher-priority task", "transient", "lock"),
        ("Shutdown request from user", "transient", "shutdown"),
        ("Task timed out after 3600000 ms", "transient", "timeout"),
        ("S3 SlowDown: please reduce your request rate", "transient", "io"),
        ("Something odd happened", "structural", "unknown"),
        (None, "structural", "unknown"),
    ],
)
def test_classify_from_status(message: str | None, kind: str, reason: str) -> None:
    verdict = explain_failure(_failed(message))
    assert (verdict.kind, verdict.reason) == (kind, reason)
    assert classify_failure(_failed(message)) == kind


def test_parse_limit_in_report_wins_over_transient_words() -> None:
    report = final_report("t", 5, error="Max parse exceptions exceeded, terminating task")
    assert classify_failure(_failed("Task was shut down"), report) == "structural"
    assert classify_failure(None, final_report("t", 5, error="worker lost")) == "transient"


def _worker(capacity: int, used: int, blacklisted: str | None = None) -> dict[str, object]:
    return {
        "worker": {"scheme": "http", "host": "h", "ip": "h", "capacity": capacity, "version": "0", "category": "_"},
        "currCapacityUsed": used,
        "blacklistedUntil": blacklisted,
    }


def test_suggest_sub_tasks_from_free_capacity() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    workers = [
        _worker(4, 1),
        _worker(2, 2),
        _worker(8, 0, "2024-01-02T00:00:00.000Z"),
        _worker(3, 0, "2023-01-01T00:00:00Z"),
    ]
    assert suggest_max_num_concurrent_sub_tasks(workers, now=now) == 3 + 0 + 3 - 1
    assert suggest_max_num_concurrent_sub_tasks(workers, now=now, cap=2) == 2
    assert suggest_max_num_concurrent_sub_tasks([_worker(1, 1)], now=now) == 1
    assert suggest_max_num_concurrent_sub_tasks([], now=now) == 1
