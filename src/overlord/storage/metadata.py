"""The metadata store: tasks (and, as they land, locks and segments) in SQLite or PostgreSQL.

SQLAlchemy Core keeps one code path for both backends. Every write is its own short
transaction, committed before the caller answers anyone, so a kill -9 loses nothing
that was acknowledged. SQLite runs in WAL mode with ``synchronous=NORMAL``: durable
against a process crash (what the service promises), cheaper than an fsync per commit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from overlord.core.protocols import StatusRow
from overlord.core.task import UNKNOWN_LOCATION, Location, RunnerState, StatusCode, TaskRecord, task_number
from overlord.errors import AlreadyExists

log = logging.getLogger(__name__)

metadata_obj = sa.MetaData()

tasks = sa.Table(
    "overlord_tasks",
    metadata_obj,
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
    sa.Column("runner_handle", sa.Text),
    sa.Column("token_hash", sa.String(64)),
    sa.Column("completed_ms", sa.BigInteger),
    sa.Column("number", sa.BigInteger, nullable=False, unique=True),
    sa.Index("ix_overlord_tasks_active_created", "active", "created_ms"),
    sa.Index("ix_overlord_tasks_ds_active_created", "datasource", "active", "created_ms"),
    sa.Index("ix_overlord_tasks_completed", "completed_ms"),
)

pending_segments = sa.Table(
    "overlord_pending_segments",
    metadata_obj,
    sa.Column("id", sa.String(512), primary_key=True),
    sa.Column("datasource", sa.String(255), nullable=False, index=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("sequence_name", sa.String(255), nullable=False),
    sa.Column("sequence_prev_id", sa.String(512), nullable=False),
    sa.Column("task_group", sa.String(255)),
    sa.Column("task_id", sa.String(255), index=True),
    sa.Column("payload", sa.Text, nullable=False),
)

segments = sa.Table(
    "overlord_segments",
    metadata_obj,
    sa.Column("id", sa.String(512), primary_key=True),
    sa.Column("datasource", sa.String(255), nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("partition_num", sa.Integer, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("used_status_last_updated_ms", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_overlord_segments_ds_used_time", "datasource", "used", "start_ms", "end_ms"),
)

task_locks = sa.Table(
    "overlord_task_locks",
    metadata_obj,
    sa.Column("task_id", sa.String(255), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("task_id", "seq"),
)

compaction_configs = sa.Table(
    "overlord_compaction_configs",
    metadata_obj,
    sa.Column("datasource", sa.String(255), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
)

_STATUS_COLUMNS = [c for c in tasks.c if c.name not in ("payload",)]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_ALL_COLUMNS = [*_STATUS_COLUMNS, tasks.c.payload]  # payload last: one unpacking serves both widths
_N_STATUS = len(_STATUS_COLUMNS)
assert [c.name for c in _STATUS_COLUMNS] == [
    "id", "group_id", "type", "datasource", "created_ms", "queue_insertion_ms", "active", "status_code",
    "runner_state", "duration", "error_msg", "location_host", "location_port", "location_tls_port", "priority",
    "headers", "runner_handle", "token_hash", "completed_ms", "number",
], "_row_to_record unpacks the columns in this order"  # fmt: skip
_STATUS_ROW_COLUMNS = [
    tasks.c[name]
    for name in ("id", "group_id", "type", "datasource", "created_ms", "queue_insertion_ms", "status_code",
                 "runner_state", "duration", "error_msg", "location_host", "location_port", "location_tls_port")
]  # fmt: skip
"""``StatusRow``'s columns, in its order."""
_STATUS_CODES = {c.value: c for c in StatusCode}  # a dict lookup is several times cheaper than StatusCode(v)
_RUNNER_STATES = {s.value: s for s in RunnerState}
_EMPTY_HEADERS = "{}"


def _row_to_record(row: Sequence[Any], with_payload: bool) -> TaskRecord:
    """A stored row as a record; on every status read, so it unpacks once and looks enums up in dicts."""
    (task_id, group_id, task_type, datasource, created_ms, queue_insertion_ms, _active, status_code, runner_state,
     duration, error_msg, host, port, tls_port, priority, headers, runner_handle, token_hash, completed_ms,
     _number) = row[:_N_STATUS]  # fmt: skip
    return TaskRecord(
        id=task_id,
        group_id=group_id,
        type=task_type,
        datasource=datasource,
        created_ms=created_ms,
        queue_insertion_ms=queue_insertion_ms,
        status_code=_STATUS_CODES[status_code],
        runner_state=_RUNNER_STATES[runner_state],
        duration=duration,
        error_msg=error_msg,
        location=UNKNOWN_LOCATION if host is None and port == -1 and tls_port == -1 else Location(host, port, tls_port),
        priority=priority,
        headers={} if headers == _EMPTY_HEADERS else orjson.loads(headers),
        payload=orjson.loads(row[_N_STATUS]) if with_payload else None,
        runner_handle=runner_handle,
        token_hash=token_hash,
        completed_ms=completed_ms,
    )


def _record_values(rec: TaskRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "group_id": rec.group_id,
        "type": rec.type,
        "datasource": rec.datasource,
        "created_ms": rec.created_ms,
        "queue_insertion_ms": rec.queue_insertion_ms,
        "active": rec.active,
        "status_code": rec.status_code.value,
        "runner_state": rec.runner_state.value,
        "duration": rec.duration,
        "error_msg": rec.error_msg,
        "location_host": rec.location.host,
        "location_port": rec.location.port,
        "location_tls_port": rec.location.tls_port,
        "priority": rec.priority,
        "headers": _dumps(rec.headers),
        "payload": _dumps(rec.payload or {}),
        "runner_handle": rec.runner_handle,
        "token_hash": rec.token_hash,
        "completed_ms": rec.completed_ms,
        "number": task_number(rec.id),
    }


_INSERT_TASK = tasks.insert()  # values as execute() parameters: compiled once, not per call as .values() would be
_UPDATES: dict[frozenset[str], sa.Update] = {}


def _update_statement(columns: frozenset[str]) -> sa.Update:
    """One statement per set of columns written, with bound parameters, so SQLAlchemy compiles it once
    (a task's writes use three sets: launch, requeue and completion)."""
    stmt = _UPDATES.get(columns)
    if stmt is None:
        stmt = _UPDATES[columns] = (
            tasks.update()
            .where(tasks.c.id == sa.bindparam("_task_id"))
            .values({name: sa.bindparam(name) for name in sorted(columns)})
        )
    return stmt


def create_engine(url: str, *, readers: bool = False) -> Engine:
    """An engine tuned per backend; SQLite gets WAL and a single shared connection (``readers``: a small
    pool of read connections instead, for listings computed off the event loop; WAL lets them read
    committed data while the writer writes)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **({"pool_size": 4, "max_overflow": 0} if readers else {"poolclass": StaticPool}),  # type: ignore[arg-type]
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


class MetadataStore:
    """Task rows and pending segments; the Overlord is the only writer."""

    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine  # listings: any thread, never the writer's connection
        self._reader: Any = None  # the pool's connection, returned on close
        self._reader_driver: Any = None  # its sqlite3 / psycopg connection, whose execute() skips the pool's wrapper
        self._reader_lock = threading.Lock()
        self._writer: Any = None  # SQLite: the pool's one connection, for the task writes (see _write_raw)
        self._raw_sql: dict[object, tuple[str, tuple[str, ...]]] = {}  # statement key -> (SQL, parameter order)
        by_id = tasks.c.id == sa.bindparam("id")
        self._get_sql_status = self._positional_sql(sa.select(*_STATUS_COLUMNS).where(by_id))
        self._get_sql_full = self._positional_sql(sa.select(*_ALL_COLUMNS).where(by_id))
        self._get_sql_status_row = self._positional_sql(sa.select(*_STATUS_ROW_COLUMNS).where(by_id))

    def _positional_sql(self, stmt: sa.Select[Any]) -> str:
        """Compile once for this dialect with one positional parameter, for raw DBAPI execution."""
        dialect = self.engine.dialect
        sql = str(stmt.compile(dialect=dialect))
        if dialect.paramstyle == "pyformat":
            sql = sql.replace("%(id)s", "%s")
        elif dialect.paramstyle == "named":
            sql = sql.replace(":id", "?")
        return sql

    @classmethod
    def from_url(cls, url: str) -> MetadataStore:
        engine = create_engine(url)
        store = cls(engine, create_engine(url, readers=True) if url.startswith("sqlite") else engine)
        store.create_schema()
        return store

    def create_schema(self) -> None:
        """Create missing tables and bring an older data directory's schema up to date."""
        from overlord.storage import (
            config_audit,  # noqa: F401  (the dynamic configs and their audit trail)
            leader_lease,  # noqa: F401  (the leader lease and the list of live Overlords)
            schema_segments,  # noqa: F401  (registers its tables on metadata_obj)
        )
        from overlord.storage.migrations import migrate

        migrate(self.engine, metadata_obj)

    def close(self) -> None:
        with self._reader_lock:
            self._drop_reader()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    # -- tasks -----------------------------------------------------------------------------------

    def _raw_writable(self) -> bool:
        """SQLite with no listener on its statements (a write fence, a test's hook): the task writes may
        skip SQLAlchemy's execution path (~0.25 ms a write against ~0.03 ms on the driver)."""
        return self.engine.dialect.name == "sqlite" and not self.engine.dispatch.before_cursor_execute

    def _write_raw(self, key: object, stmt: Any, values: dict[str, Any]) -> None:
        """One statement in its own committed transaction on the writer's driver connection (the one
        connection SQLite's StaticPool hands out, used on the event loop like every other write)."""
        compiled = self._raw_sql.get(key)
        if compiled is None:
            c = stmt.compile(dialect=self.engine.dialect)
            compiled = self._raw_sql[key] = (str(c), tuple(c.positiontup or ()))
        if self._writer is None:
            self._writer = self.engine.raw_connection()
        driver = self._writer.driver_connection
        sql, order = compiled
        try:
            driver.execute(sql, tuple(values[name] for name in order))
            driver.commit()
        except BaseException:
            driver.rollback()
            raise

    def insert_task(self, rec: TaskRecord) -> None:
        """Store a new task; a duplicate id raises AlreadyExists with Druid's message."""
        try:
            if self._raw_writable():
                self._write_raw("insert", _INSERT_TASK, _record_values(rec))
                return
            with self.engine.begin() as conn:
                conn.execute(_INSERT_TASK, _record_values(rec))
        except (IntegrityError, sqlite3.IntegrityError):
            raise AlreadyExists(f"Task[{rec.id}] already exists", taskId=rec.id) from None

    def update_task(self, task_id: str, **changes: Any) -> None:
        """Write the given fields of one task (names as in TaskRecord)."""
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "location":
                values.update(location_host=value.host, location_port=value.port, location_tls_port=value.tls_port)
            elif key in ("status_code", "runner_state"):
                values[key] = value.value
                if key == "status_code":
                    values["active"] = not value.is_complete
            else:
                values[key] = value
        columns = frozenset(values)
        if self._raw_writable():
            self._write_raw(columns, _update_statement(columns), {**values, "_task_id": task_id})
            return
        with self.engine.begin() as conn:
            conn.execute(_update_statement(columns), {**values, "_task_id": task_id})

    def get_task(self, task_id: str, *, with_payload: bool = False) -> TaskRecord | None:
        """One task by id. The hottest read (status polls), so it skips SQLAlchemy's per-call work:
        the SQL is compiled once and run on a dedicated DBAPI connection (~20 us instead of ~300 us).
        On SQLite that connection is one of the readers, not the writer's: it sees committed rows only
        and never waits behind a write transaction (WAL)."""
        row = self._read_by_id(self._get_sql_full if with_payload else self._get_sql_status, task_id)
        return _row_to_record(row, with_payload) if row is not None else None

    def get_status_row(self, task_id: str) -> StatusRow | None:
        """A status poll's read: the driver's row as it comes, on the reader connection as ``get_task``."""
        return self._read_by_id(self._get_sql_status_row, task_id)  # type: ignore[return-value]

    def _read_by_id(self, sql: str, task_id: str) -> Sequence[Any] | None:
        with self._reader_lock:
            try:
                return self._read_one(sql, task_id)
            except Exception:
                self._drop_reader()  # a broken connection (e.g. PostgreSQL restarted): retry once afresh
                return self._read_one(sql, task_id)

    def _read_one(self, sql: str, param: object) -> Sequence[Any] | None:
        if self._reader is None:
            self._reader = self.read_engine.raw_connection()
            self._reader_driver = self._reader.driver_connection
            if self.engine.dialect.name == "postgresql":
                self._reader_driver.autocommit = True
        cur = self._reader_driver.execute(sql, (param,))
        try:
            return cur.fetchone()  # type: ignore[no-any-return]
        finally:
            cur.close()

    def _drop_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.invalidate() if self.engine.dialect.name == "postgresql" else self._reader.close()
            self._reader = None
            self._reader_driver = None

    def get_task_by_number(self, number: int, *, with_payload: bool = False) -> TaskRecord | None:
        cols = _ALL_COLUMNS if with_payload else _STATUS_COLUMNS
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*cols).where(tasks.c.number == number)).first()
        return _row_to_record(row, with_payload) if row is not None else None

    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        out: list[TaskRecord] = []
        with self.engine.connect() as conn:
            for start in range(0, len(task_ids), 500):
                chunk = list(task_ids[start : start + 500])
                rows = conn.execute(sa.select(*_STATUS_COLUMNS).where(tasks.c.id.in_(chunk)))
                out.extend(_row_to_record(r, False) for r in rows)
        return out

    def list_active(self, *, with_payload: bool = False) -> list[TaskRecord]:
        cols = _ALL_COLUMNS if with_payload else _STATUS_COLUMNS
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(*cols).where(tasks.c.active.is_(True)).order_by(tasks.c.queue_insertion_ms, tasks.c.id)
            )
            return [_row_to_record(r, with_payload) for r in rows]

    def list_complete(
        self,
        *,
        datasource: str | None = None,
        task_type: str | None = None,
        created_after_ms: int | None = None,
        created_before_ms: int | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        """Completed tasks, newest first, as Druid lists them."""
        q = sa.select(*_STATUS_COLUMNS).where(tasks.c.active.is_(False))
        if datasource is not None:
            q = q.where(tasks.c.datasource == datasource)
        if task_type is not None:
            q = q.where(tasks.c.type == task_type)
        if created_after_ms is not None:
            q = q.where(tasks.c.created_ms >= created_after_ms)
        if created_before_ms is not None:
            q = q.where(tasks.c.created_ms < created_before_ms)
        q = q.order_by(tasks.c.created_ms.desc(), tasks.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.read_engine.connect() as conn:
            return [_row_to_record(r, False) for r in conn.execute(q)]

    def delete_complete_before(self, cutoff_ms: int) -> list[str]:
        """Remove completed-task rows created before cutoff (log retention); returns their ids."""
        cond = sa.and_(tasks.c.active.is_(False), tasks.c.created_ms < cutoff_ms)
        with self.engine.begin() as conn:
            ids = [r[0] for r in conn.execute(sa.select(tasks.c.id).where(cond))]
            if ids:
                conn.execute(tasks.delete().where(cond))
        return ids

    def count_tasks(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one())

    def bulk_insert_tasks(self, records: Iterable[TaskRecord]) -> None:
        """Fast path for benchmarks and imports: many rows in one transaction."""
        rows = [_record_values(r) for r in records]
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(tasks.insert(), rows[start : start + 5000])

    # -- pending segments -----------------------------------------------------------------------

    def delete_pending_segments(self, datasource: str) -> int:
        """Kept for the ``DELETE /pendingSegments`` route until it calls the segment store, which owns these deletes."""
        from overlord.storage.segment_store import delete_pending_where

        return delete_pending_where(self.engine, pending_segments.c.datasource == datasource)
