"""The TaskStore contract, run on every implementation: SQLite, PostgreSQL and the in-memory twin.

The runner's bookkeeping is an opaque handle (and the token's hash): stored and returned as given.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from overlord.core.protocols import TaskStore
from overlord.core.task import Location, RunnerState, StatusCode, TaskRecord, task_number
from overlord.errors import AlreadyExists
from overlord.testing.stores import InMemoryTaskStore
from tests.integration.backends import ALL_BACKENDS, open_sql_store


@pytest.fixture(params=ALL_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    s: TaskStore = (
        InMemoryTaskStore() if request.param == "memory" else open_sql_store(request.param, request, tmp_path)
    )
    assert isinstance(s, TaskStore)
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


def _complete(store: TaskStore, task_id: str, code: StatusCode = StatusCode.SUCCESS) -> None:
    store.update_task(task_id, status_code=code, runner_state=RunnerState.NONE, duration=1)


def test_insert_get_and_duplicate(store):
    store.insert_task(_rec("t1", 1000, priority=25))
    got = store.get_task("t1", with_payload=True)
    assert got is not None and got.payload == {"type": "noop", "id": "t1"} and got.headers == {"X-Opaque-Id": "abc"}
    assert got.status_code is StatusCode.RUNNING and got.runner_state is RunnerState.WAITING and got.active
    assert (got.group_id, got.type, got.datasource, got.priority) == ("t1", "noop", "ds", 25)
    assert (got.created_ms, got.queue_insertion_ms, got.duration, got.location) == (1000, 1000, -1, Location())
    assert store.get_task("t1").payload is None
    with pytest.raises(AlreadyExists, match=r"Task\[t1\] already exists"):
        store.insert_task(_rec("t1", 2000))
    assert store.get_task("t1", with_payload=True).created_ms == 1000
    assert store.get_task("missing") is None
    assert store.get_task_by_number(task_number("t1")).id == "t1"
    assert store.get_task_by_number(task_number("t1"), with_payload=True).payload["id"] == "t1"
    assert store.get_task_by_number(task_number("missing")) is None


def test_stored_values_are_copies(store):
    rec = _rec("t1", 1000)
    store.insert_task(rec)
    rec.payload["type"] = "changed after insert"
    got = store.get_task("t1", with_payload=True)
    got.payload["type"] = "changed after read"
    got.headers["X-Opaque-Id"] = "changed"
    again = store.get_task("t1", with_payload=True)
    assert again.payload == {"type": "noop", "id": "t1"} and again.headers == {"X-Opaque-Id": "abc"}


def test_update_and_complete(store):
    store.insert_task(_rec("t1", 1000))
    store.update_task("t1", runner_state=RunnerState.PENDING)
    store.update_task(
        "t1",
        runner_state=RunnerState.RUNNING,
        location=Location("h", 8090, -1),
        runner_handle='{"pid": 42}',
        token_hash="ab" * 32,
    )
    got = store.get_task("t1")
    assert got.runner_state is RunnerState.RUNNING and got.location == Location("h", 8090, -1) and got.active
    assert got.runner_handle == '{"pid": 42}' and got.token_hash == "ab" * 32
    assert [r.id for r in store.list_active()] == ["t1"]
    store.update_task(
        "t1", status_code=StatusCode.FAILED, runner_state=RunnerState.NONE, duration=5, error_msg="x", completed_ms=9
    )
    got = store.get_task("t1")
    assert not got.active and got.status_code is StatusCode.FAILED and got.runner_state is RunnerState.NONE
    assert (got.error_msg, got.duration, got.completed_ms) == ("x", 5, 9)
    assert store.list_active() == []
    store.update_task("missing", duration=3)  # an unknown id changes nothing and is no error
    assert store.count_tasks() == 1


def test_list_active_order_and_payload(store):
    store.insert_task(_rec("b", 1000, queue_insertion_ms=2000))
    store.insert_task(_rec("a", 1000, queue_insertion_ms=2000))
    store.insert_task(_rec("c", 3000, queue_insertion_ms=1000))
    store.insert_task(_rec("done", 500))
    _complete(store, "done")
    assert [r.id for r in store.list_active()] == ["c", "a", "b"]
    assert all(r.payload is None for r in store.list_active())
    assert [r.payload["id"] for r in store.list_active(with_payload=True)] == ["c", "a", "b"]


def test_list_complete_order_filters_and_limit(store):
    for i in range(5):
        store.insert_task(_rec(f"t{i}", 1000 + i, datasource="a" if i % 2 else "b", type="noop" if i < 4 else "kill"))
        _complete(store, f"t{i}", StatusCode.SUCCESS if i % 2 else StatusCode.FAILED)
    store.insert_task(_rec("active", 5000))
    store.insert_task(_rec("same-time", 1004))
    _complete(store, "same-time")
    assert [r.id for r in store.list_complete()] == ["t4", "same-time", "t3", "t2", "t1", "t0"]
    assert [r.id for r in store.list_complete(limit=2)] == ["t4", "same-time"]
    assert [r.id for r in store.list_complete(datasource="a")] == ["t3", "t1"]
    assert [r.id for r in store.list_complete(task_type="kill")] == ["t4"]
    assert [r.id for r in store.list_complete(created_after_ms=1001, created_before_ms=1003)] == ["t2", "t1"]
    assert [r.id for r in store.list_complete(datasource="b", task_type="noop", limit=1)] == ["t2"]
    assert all(r.payload is None and not r.active for r in store.list_complete())
    assert {r.id for r in store.get_tasks(["t1", "active", "nope"])} == {"t1", "active"}
    assert store.get_tasks([]) == []


def test_bulk_insert_count_and_get_many(store):
    store.bulk_insert_tasks(_rec(f"b{i}", i) for i in range(1200))  # not in the protocol: imports and benchmarks
    assert store.count_tasks() == 1200
    assert store.get_task("b1199", with_payload=True).payload["id"] == "b1199"
    wanted = [f"b{i}" for i in range(0, 1200, 2)]
    assert sorted(r.id for r in store.get_tasks(wanted)) == sorted(wanted)


def test_retention_deletes_only_old_completed(store):
    store.insert_task(_rec("old", 1000))
    _complete(store, "old")
    store.insert_task(_rec("old2", 2000))
    _complete(store, "old2", StatusCode.FAILED)
    store.insert_task(_rec("old-active", 1000))
    store.insert_task(_rec("new", 9000))
    _complete(store, "new")
    assert sorted(store.delete_complete_before(5000)) == ["old", "old2"]
    assert store.get_task("old") is None and store.get_task("old-active") is not None
    assert store.delete_complete_before(5000) == []
    assert store.count_tasks() == 2


def test_sqlite_task_writes_pass_statement_listeners_when_there_are_any(tmp_path: Path) -> None:
    """Task writes on SQLite take a short path past SQLAlchemy only while nothing listens to statements
    (a write fence does): with a listener, each write reaches it, and a refusal stops the write."""
    import sqlalchemy as sa

    from overlord.storage.metadata import MetadataStore

    store = MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    store.insert_task(_rec("fast", 1))
    seen: list[str] = []
    refuse = False

    def listener(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement.split()[0].upper())
        if refuse:
            raise RuntimeError("fenced")

    sa.event.listen(store.engine, "before_cursor_execute", listener)
    store.insert_task(_rec("watched", 2))
    store.update_task("watched", error_msg="x")
    assert seen == ["INSERT", "UPDATE"]
    refuse = True
    with pytest.raises(Exception, match="fenced"):
        store.update_task("fast", error_msg="not written")
    sa.event.remove(store.engine, "before_cursor_execute", listener)
    store.update_task("fast", error_msg="written")
    assert [store.get_task(t).error_msg for t in ("fast", "watched")] == ["written", "x"]  # type: ignore[union-attr]
    store.close()
