"""A metadata store written by the first release (schema version 1) opens with its tasks intact."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from overlord.core.task import RunnerState, StatusCode
from overlord.storage.metadata import MetadataStore
from overlord.storage.migrations import SCHEMA_VERSION, current_version

V1 = sa.MetaData()
V1_TASKS = sa.Table(  # the first release's task table, column for column
    "overlord_tasks",
    V1,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("group_id", sa.String(255), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("datasource", sa.String(255)),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("queue_insertion_ms", sa.BigInteger, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("status_code", sa.String(16), nullable=False),
    sa.Column("runner_state", sa.String(16), nullable=False),
    sa.Column("duration", sa.BigInteger, nullable=False),
    sa.Column("error_msg", sa.Text),
    sa.Column("location_host", sa.String(255)),
    sa.Column("location_port", sa.Integer, nullable=False),
    sa.Column("location_tls_port", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("slot", sa.Integer),
    sa.Column("pid", sa.Integer),
    sa.Column("pid_start", sa.String(64)),
    sa.Column("task_dir", sa.Text),
    sa.Column("completed_ms", sa.BigInteger),
    sa.Column("number", sa.BigInteger, nullable=False, unique=True),
    sa.Index("ix_overlord_tasks_active_created", "active", "created_ms"),
)


def _row(task_id: str, number: int, *, active: bool, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": task_id, "group_id": task_id, "type": "noop", "datasource": "ds", "created_ms": 1000 + number,
        "queue_insertion_ms": 1000 + number, "active": active, "status_code": "RUNNING" if active else "SUCCESS",
        "runner_state": "RUNNING" if active else "NONE", "duration": -1 if active else 5, "error_msg": None,
        "location_host": "h", "location_port": 8090, "location_tls_port": -1, "priority": 0, "headers": "{}",
        "payload": orjson.dumps({"type": "noop", "id": task_id}).decode(), "slot": None, "pid": None,
        "pid_start": None, "task_dir": None, "completed_ms": None if active else 2000, "number": number,
    }  # fmt: skip
    row.update(kw)
    return row


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_a_first_release_store_migrates_and_keeps_its_tasks(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    existing = sa.MetaData()
    existing.reflect(engine)  # a PostgreSQL test database is cloned from a template with today's schema
    existing.drop_all(engine)
    V1.create_all(engine)
    with engine.begin() as conn:
        conn.execute(V1_TASKS.insert(), [
            _row("running", 1, active=True, slot=1, pid=4242, pid_start="777", task_dir="/var/task/running"),
            _row("waiting", 2, active=True, runner_state="WAITING"),
            _row("done", 3, active=False),
        ])  # fmt: skip
        assert current_version(conn) == 1
    engine.dispose()

    store = MetadataStore.from_url(url)
    try:
        active = {r.id: r for r in store.list_active(with_payload=True)}
        assert set(active) == {"running", "waiting"}
        handle = orjson.loads(active["running"].runner_handle or "null")
        assert handle == {"slot": 1, "pid": 4242, "pidStart": "777", "taskDir": "/var/task/running"}
        assert active["running"].runner_state is RunnerState.RUNNING and active["running"].token_hash is None
        assert active["waiting"].runner_handle is None
        done = store.get_task("done")
        assert done is not None and done.status_code is StatusCode.SUCCESS and done.duration == 5
        with store.engine.connect() as conn:
            assert current_version(conn) == SCHEMA_VERSION
            columns = {c["name"] for c in sa.inspect(conn).get_columns("overlord_tasks")}
        assert not {"slot", "pid", "pid_start", "task_dir"} & columns
    finally:
        store.close()
    again = MetadataStore.from_url(url)  # opening a migrated store again changes nothing
    try:
        assert {r.id for r in again.list_active()} == {"running", "waiting"}
    finally:
        again.close()
