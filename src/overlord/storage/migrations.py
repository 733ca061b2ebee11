"""Versioned schema migrations of the metadata store: a data directory written by an earlier release
starts with its tasks intact.

Version 1 (the first release) kept the local runner's slot, pid, pid start time and task directory in
four task columns; version 2 keeps one opaque runner handle (the same facts as JSON, for the local
runner) and the hash of the task's action token. Migrations run in one transaction at start-up.
"""

from __future__ import annotations

import logging

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
VERSION_TABLE = "overlord_schema_version"
_V1_RUNNER_COLUMNS = ("slot", "pid", "pid_start", "task_dir")


def _version_table(metadata: sa.MetaData) -> sa.Table:
    existing = metadata.tables.get(VERSION_TABLE)
    if existing is not None:
        return existing
    return sa.Table(VERSION_TABLE, metadata, sa.Column("version", sa.Integer, nullable=False))


def current_version(conn: Connection) -> int | None:
    """None for an empty database; 1 for a first-release one (tasks table, no version table)."""
    tables = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        row = conn.execute(sa.text(f"SELECT max(version) FROM {VERSION_TABLE}")).first()
        return int(row[0]) if row and row[0] is not None else 1
    return 1 if "overlord_tasks" in tables else None


def migrate(engine: Engine, metadata: sa.MetaData) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    version_table = _version_table(metadata)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # one migrating Overlord at a time
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7243101)"))
        found = current_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise RuntimeError(
                f"The metadata store has schema version {found}, newer than this release's {SCHEMA_VERSION}"
            )
        if found == 1:
            _v1_to_v2(conn)
        metadata.create_all(conn)
        if found != SCHEMA_VERSION:
            conn.execute(version_table.delete())
            conn.execute(version_table.insert().values(version=SCHEMA_VERSION))
    if found is not None and found != SCHEMA_VERSION:
        log.info("Migrated the metadata store from schema version %d to %d", found, SCHEMA_VERSION)
    return found or SCHEMA_VERSION


def _v1_to_v2(conn: Connection) -> None:
    columns = {c["name"] for c in sa.inspect(conn).get_columns("overlord_tasks")}
    if "runner_handle" not in columns:
        conn.execute(sa.text("ALTER TABLE overlord_tasks ADD COLUMN runner_handle TEXT"))
    if "token_hash" not in columns:
        conn.execute(sa.text("ALTER TABLE overlord_tasks ADD COLUMN token_hash VARCHAR(64)"))
    if not set(_V1_RUNNER_COLUMNS) <= columns:
        return
    rows = conn.execute(
        sa.text(
            "SELECT id, slot, pid, pid_start, task_dir FROM overlord_tasks "
            "WHERE active = :active AND (pid IS NOT NULL OR task_dir IS NOT NULL)"
        ),
        {"active": True},
    ).all()
    for task_id, slot, pid, pid_start, task_dir in rows:
        handle = {"slot": slot, "pid": pid, "pidStart": pid_start, "taskDir": task_dir}
        conn.execute(
            sa.text("UPDATE overlord_tasks SET runner_handle = :h WHERE id = :id"),
            {"h": orjson.dumps(handle).decode(), "id": task_id},
        )
    for name in _V1_RUNNER_COLUMNS:
        conn.execute(sa.text(f"ALTER TABLE overlord_tasks DROP COLUMN {name}"))
