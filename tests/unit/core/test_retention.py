"""Log retention over the protocols: a real SQLite task store and the in-memory task logs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlord.clock import ManualClock
from overlord.core.protocols import TaskStore
from overlord.core.retention import LogRetention
from overlord.core.task import RunnerState, StatusCode, TaskRecord
from overlord.storage.metadata import MetadataStore
from overlord.testing import InMemoryTaskLogs

DAY_MS = 86_400_000
NOW_MS = 1_700_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TaskStore]:
    s = MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    yield s
    s.close()


def add(store: TaskStore, task_id: str, created_ms: int, *, complete: bool) -> None:
    store.insert_task(
        TaskRecord(
            id=task_id, group_id=task_id, type="noop", datasource="ds", created_ms=created_ms,
            queue_insertion_ms=created_ms, payload={"type": "noop", "id": task_id},
        )
    )  # fmt: skip
    if complete:
        store.update_task(task_id, status_code=StatusCode.SUCCESS, runner_state=RunnerState.NONE)


def test_removes_old_logs_and_old_completed_tasks_only(store: TaskStore) -> None:
    clock = ManualClock(now_ms=NOW_MS - 10 * DAY_MS)
    logs = InMemoryTaskLogs(clock)
    add(store, "old", clock.now_ms(), complete=True)
    add(store, "old-running", clock.now_ms(), complete=False)
    for task_id in ("old", "old-running"):
        logs.push_log(task_id, io.BytesIO(b"log"))
    logs.push_report("old", b"{}")
    clock.advance(9 * 86_400)
    add(store, "recent", clock.now_ms(), complete=True)
    logs.push_log("recent", io.BytesIO(b"log"))
    clock.advance(86_400)

    result = LogRetention(store, logs, clock, duration_to_retain_ms=5 * DAY_MS).run_once()

    assert result.tasks_deleted == ["old"]
    assert result.logs_deleted == 3  # old's log and report, old-running's log
    assert store.get_task("old") is None
    assert store.get_task("old-running") is not None and store.get_task("recent") is not None
    assert logs.read_log("old") is None and logs.read_report("old") is None
    assert logs.read_log("recent") is not None
    assert LogRetention(store, logs, clock, 5 * DAY_MS).run_once().tasks_deleted == []


def test_completed_task_row_takes_its_fresh_log_with_it(store: TaskStore) -> None:
    """A row past retention whose log was pushed late still loses its log (no orphans)."""
    clock = ManualClock(now_ms=NOW_MS)
    logs = InMemoryTaskLogs(clock)
    add(store, "t", NOW_MS - 30 * DAY_MS, complete=True)
    logs.push_log("t", io.BytesIO(b"log"))
    result = LogRetention(store, logs, clock, 5 * DAY_MS).run_once()
    assert result == type(result)(0, ["t"])
    assert logs.read_log("t") is None
