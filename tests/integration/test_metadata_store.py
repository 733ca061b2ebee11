"""The metadata-store contract, run on every backend: SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.core.task import Location, RunnerState, StatusCode, TaskRecord
from overlord.errors import AlreadyExists
from overlord.storage.metadata import MetadataStore, task_number


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        s = MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    else:
        url = request.getfixturevalue("pg_url")
        s = MetadataStore.from_url(url)
    yield s
    s.close()


def _rec(task_id: str, created: int, **kw) -> TaskRecord:
    base = dict(
        id=task_id,
        group_id=task_id,
        type="noop",
        datasource="ds",
        created_ms=created,
        queue_insertion_ms=created,
        payload={"type": "noop", "id": task_id},
        headers={"X-Opaque-Id": "abc"},
    )
    base.update(kw)
    return TaskRecord(**base)


def test_insert_get_and_duplicate(store):
    store.insert_task(_rec("t1", 1000))
    got = store.get_task("t1", with_payload=True)
    assert got is not None and got.payload == {"type": "noop", "id": "t1"} and got.headers == {"X-Opaque-Id": "abc"}
    assert got.status_code is StatusCode.RUNNING and got.runner_state is RunnerState.WAITING and got.active
    assert store.get_task("t1").payload is None
    with pytest.raises(AlreadyExists, match=r"Task\[t1\] already exists"):
        store.insert_task(_rec("t1", 2000))
    assert store.get_task("missing") is None
    assert store.get_task_by_number(task_number("t1")).id == "t1"


def test_update_and_complete(store):
    store.insert_task(_rec("t1", 1000))
    store.update_task(
        "t1",
        runner_state=RunnerState.RUNNING,
        location=Location("h", 8090, -1),
        runner_handle='{"pid": 42}',
        token_hash="ab" * 32,
    )
    got = store.get_task("t1")
    assert got.runner_state is RunnerState.RUNNING and got.location == Location("h", 8090, -1)
    assert got.runner_handle == '{"pid": 42}' and got.token_hash == "ab" * 32
    assert [r.id for r in store.list_active()] == ["t1"]
    store.update_task(
        "t1", status_code=StatusCode.FAILED, runner_state=RunnerState.NONE, duration=5, error_msg="x", completed_ms=9
    )
    got = store.get_task("t1")
    assert not got.active and got.error_msg == "x" and got.duration == 5
    assert store.list_active() == []


def test_list_complete_order_filters_and_limit(store):
    for i in range(5):
        store.insert_task(_rec(f"t{i}", 1000 + i, datasource="a" if i % 2 else "b", type="noop" if i < 4 else "kill"))
        store.update_task(f"t{i}", status_code=StatusCode.SUCCESS, runner_state=RunnerState.NONE, duration=1)
    store.insert_task(_rec("active", 5000))
    assert [r.id for r in store.list_complete()] == ["t4", "t3", "t2", "t1", "t0"]
    assert [r.id for r in store.list_complete(limit=2)] == ["t4", "t3"]
    assert [r.id for r in store.list_complete(datasource="a")] == ["t3", "t1"]
    assert [r.id for r in store.list_complete(task_type="kill")] == ["t4"]
    assert [r.id for r in store.list_complete(created_after_ms=1001, created_before_ms=1003)] == ["t2", "t1"]
    assert {r.id for r in store.get_tasks(["t1", "active", "nope"])} == {"t1", "active"}


def test_retention_deletes_only_old_completed(store):
    store.insert_task(_rec("old", 1000))
    store.update_task("old", status_code=StatusCode.SUCCESS, runner_state=RunnerState.NONE)
    store.insert_task(_rec("old-active", 1000))
    store.insert_task(_rec("new", 9000))
    store.update_task("new", status_code=StatusCode.SUCCESS, runner_state=RunnerState.NONE)
    assert store.delete_complete_before(5000) == ["old"]
    assert store.get_task("old") is None and store.get_task("old-active") is not None


def test_bulk_insert_and_count(store):
    store.bulk_insert_tasks(_rec(f"b{i}", i) for i in range(1200))
    assert store.count_tasks() == 1200


def test_delete_pending_segments_counts(store):
    from overlord.storage.metadata import pending_segments

    with store.engine.begin() as conn:
        for i, ds in enumerate(["a", "a", "b"]):
            conn.execute(
                pending_segments.insert().values(
                    id=f"p{i}", datasource=ds, created_ms=0, start_ms=0, end_ms=1, sequence_name="s",
                    sequence_prev_id="", payload="{}",
                )
            )  # fmt: skip
    assert store.delete_pending_segments("a") == 2
    assert store.delete_pending_segments("a") == 0
