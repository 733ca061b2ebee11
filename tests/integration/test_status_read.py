"""The store's status reads (``get_status_row`` for every status poll, ``get_task``) see committed rows
only, on every backend: a status read while a write transaction is open must neither see its rows nor
wait for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from overlord.core.protocols import TaskStore
from overlord.core.task import Location, RunnerState, StatusCode, TaskRecord
from overlord.storage.metadata import MetadataStore, tasks
from overlord.testing.stores import InMemoryTaskStore, status_row
from tests.integration.backends import ALL_BACKENDS, open_sql_store


def _record(task_id: str) -> TaskRecord:
    return TaskRecord(
        id=task_id, group_id=task_id, type="noop", datasource="wiki", created_ms=1, queue_insertion_ms=2,
        status_code=StatusCode.SUCCESS, runner_state=RunnerState.NONE, duration=3, payload={"type": "noop"},
    )  # fmt: skip


def test_a_status_read_never_sees_an_uncommitted_write(sql_store: MetadataStore) -> None:
    sql_store.insert_task(_record("t1"))
    assert sql_store.get_task("t1") is not None  # the reader connection is open before the write starts
    with sql_store.engine.connect() as conn:
        txn = conn.begin()
        conn.execute(tasks.update().where(tasks.c.id == "t1").values(error_msg="uncommitted", duration=99))
        conn.execute(tasks.insert().values(**{**_values(sql_store, "t1"), "id": "t2", "number": 2**40}))
        seen = sql_store.get_task("t1")
        assert seen is not None and (seen.error_msg, seen.duration) == (None, 3)
        assert sql_store.get_task("t2") is None
        txn.rollback()
    seen = sql_store.get_task("t1")
    assert seen is not None and seen.error_msg is None and sql_store.get_task("t2") is None


def test_a_committed_write_is_seen_by_the_next_status_read(sql_store: MetadataStore) -> None:
    sql_store.insert_task(_record("t1"))
    assert sql_store.get_task("t1") is not None
    sql_store.update_task("t1", error_msg="now", duration=7)
    seen = sql_store.get_task("t1", with_payload=True)
    assert seen is not None and (seen.error_msg, seen.duration, seen.payload) == ("now", 7, {"type": "noop"})


def _values(store: MetadataStore, task_id: str) -> dict[str, object]:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).mappings().one()
    return dict(row)


@pytest.fixture(params=ALL_BACKENDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    s: TaskStore = (
        InMemoryTaskStore() if request.param == "memory" else open_sql_store(request.param, request, tmp_path)
    )
    yield s
    s.close()


def test_the_status_row_is_the_records_status_columns(any_store: TaskStore) -> None:
    rec = _record("t1").with_(datasource=None, error_msg="ünïcode", headers={"X-Opaque-Id": "o"})
    any_store.insert_task(rec)
    assert any_store.get_status_row("t1") == status_row(rec)
    assert any_store.get_status_row("t1") == (
        "t1", "t1", "noop", None, 1, 2, "SUCCESS", "NONE", 3, "ünïcode", None, -1, -1,
    )  # fmt: skip
    any_store.update_task("t1", location=Location("peon", 8100, 8101), status_code=StatusCode.FAILED, duration=9)
    assert any_store.get_status_row("t1") == status_row(
        rec.with_(location=Location("peon", 8100, 8101), status_code=StatusCode.FAILED, duration=9)
    )
    assert any_store.get_status_row("missing") is None
    assert any_store.get_status_row("T1") is None  # ids compare exactly


def test_a_status_row_read_never_sees_an_uncommitted_write(sql_store: MetadataStore) -> None:
    sql_store.insert_task(_record("t1"))
    assert sql_store.get_status_row("t1") is not None
    with sql_store.engine.connect() as conn:
        txn = conn.begin()
        conn.execute(tasks.update().where(tasks.c.id == "t1").values(error_msg="uncommitted"))
        row = sql_store.get_status_row("t1")
        assert row is not None and row[9] is None
        txn.rollback()
    sql_store.update_task("t1", error_msg="now")
    row = sql_store.get_status_row("t1")
    assert row is not None and row[9] == "now"
