"""Druid's ``sys`` tables and INFORMATION_SCHEMA as Arrow tables, built from the service's read model.

Columns and values follow Druid's SystemSchema, so the web console's views work unchanged:

- ``sys.tasks`` is the Tasks API's listing (active tasks plus recently finished ones, what
  ``GET /druid/indexer/v1/tasks`` answers): ``status`` is RUNNING/SUCCESS/FAILED and
  ``runner_status`` WAITING/PENDING/RUNNING (NONE once complete), ``duration`` 0 when unknown.
- ``sys.segments`` lists every used (published) segment; ``is_overshadowed`` comes from the
  timeline, ``is_active`` = published and not overshadowed. Realtime segments do not exist here.
- This one process plays every Druid role a console asks about: it is the overlord and the
  coordinator (both leaders), the broker answering SQL, and the one historical that "serves" every
  published, non-overshadowed segment (``num_replicas`` 1, ``sys.server_segments`` one row each).
- ``sys.supervisors`` is empty: there is no streaming ingestion yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from overlord.core.data_segment import DataSegment
from overlord.core.task import TaskRecord
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.isotime import format_ms
from overlord.sql.types import druid_type

S = pa.string()
L = pa.int64()

TASKS = pa.schema(
    [
        ("task_id", S),
        ("group_id", S),
        ("type", S),
        ("datasource", S),
        ("created_time", S),
        ("queue_insertion_time", S),
        ("status", S),
        ("runner_status", S),
        ("duration", L),
        ("location", S),
        ("host", S),
        ("plaintext_port", L),
        ("tls_port", L),
        ("error_msg", S),
    ]
)
SEGMENTS = pa.schema(
    [
        ("segment_id", S),
        ("datasource", S),
        ("start", S),
        ("end", S),
        ("size", L),
        ("version", S),
        ("partition_num", L),
        ("num_replicas", L),
        ("num_rows", L),
        ("is_active", L),
        ("is_published", L),
        ("is_available", L),
        ("is_realtime", L),
        ("is_overshadowed", L),
        ("shard_spec", S),
        ("dimensions", S),
        ("metrics", S),
        ("projections", S),
        ("last_compaction_state", S),
        ("replication_factor", L),
    ]
)
SERVERS = pa.schema(
    [
        ("server", S),
        ("host", S),
        ("plaintext_port", L),
        ("tls_port", L),
        ("server_type", S),
        ("tier", S),
        ("curr_size", L),
        ("max_size", L),
        ("is_leader", L),
        ("start_time", S),
        ("version", S),
        ("labels", S),
    ]
)
SERVER_SEGMENTS = pa.schema([("server", S), ("segment_id", S)])
SUPERVISORS = pa.schema(
    [
        ("supervisor_id", S),
        ("datasource", S),
        ("state", S),
        ("detailed_state", S),
        ("healthy", L),
        ("type", S),
        ("source", S),
        ("suspended", L),
        ("spec", S),
    ]
)
SYS_TABLES: dict[str, pa.Schema] = {
    "tasks": TASKS,
    "segments": SEGMENTS,
    "servers": SERVERS,
    "server_segments": SERVER_SEGMENTS,
    "supervisors": SUPERVISORS,
}

SCHEMATA = pa.schema(
    [
        ("CATALOG_NAME", S),
        ("SCHEMA_NAME", S),
        ("SCHEMA_OWNER", S),
        ("DEFAULT_CHARACTER_SET_CATALOG", S),
        ("DEFAULT_CHARACTER_SET_SCHEMA", S),
        ("DEFAULT_CHARACTER_SET_NAME", S),
        ("SQL_PATH", S),
    ]
)
TABLES = pa.schema(
    [
        ("TABLE_CATALOG", S),
        ("TABLE_SCHEMA", S),
        ("TABLE_NAME", S),
        ("TABLE_TYPE", S),
        ("IS_JOINABLE", S),
        ("IS_BROADCAST", S),
    ]
)
COLUMNS = pa.schema(
    [
        ("TABLE_CATALOG", S),
        ("TABLE_SCHEMA", S),
        ("TABLE_NAME", S),
        ("COLUMN_NAME", S),
        ("ORDINAL_POSITION", L),
        ("COLUMN_DEFAULT", S),
        ("IS_NULLABLE", S),
        ("DATA_TYPE", S),
        ("CHARACTER_MAXIMUM_LENGTH", L),
        ("CHARACTER_OCTET_LENGTH", L),
        ("NUMERIC_PRECISION", L),
        ("NUMERIC_PRECISION_RADIX", L),
        ("NUMERIC_SCALE", L),
        ("DATETIME_PRECISION", L),
        ("CHARACTER_SET_NAME", S),
        ("COLLATION_NAME", S),
        ("JDBC_TYPE", L),
    ]
)
INFO_TABLES: dict[str, pa.Schema] = {"SCHEMATA": SCHEMATA, "TABLES": TABLES, "COLUMNS": COLUMNS}
CATALOG = "druid"


def _table(schema: pa.Schema, rows: Iterable[Sequence[Any]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else []
    if not cols:
        return schema.empty_table()
    return pa.table([pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)], schema=schema)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@dataclass(frozen=True)
class ServerInfo:
    """This process as Druid's node discovery would describe it."""

    host: str
    port: int
    version: str
    start_time_ms: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def tasks_table(records: Iterable[TaskRecord]) -> pa.Table:
    rows = []
    for r in records:
        loc = r.location
        port = loc.tls_port if loc.tls_port >= 0 else loc.port  # Druid's TaskLocation prefers the TLS port
        location = None if loc.host is None else (f"{loc.host}:{port}" if port >= 0 else loc.host)
        rows.append(
            (
                r.id,
                r.group_id,
                r.type,
                r.datasource,
                format_ms(r.created_ms),
                format_ms(r.queue_insertion_ms),
                r.status_code.value,
                r.runner_state.value,
                r.duration if r.duration is not None else 0,
                location,
                loc.host,
                loc.port,
                loc.tls_port,
                r.error_msg,
            )
        )
    return _table(TASKS, rows)


@dataclass(frozen=True)
class SegmentRow:
    segment: DataSegment
    overshadowed: bool
    num_rows: int


def segment_rows(used: Sequence[DataSegment], num_rows: Callable[[DataSegment], int]) -> list[SegmentRow]:
    """One data source's used segments, each marked overshadowed or not as the timeline decides."""
    hidden = VersionedIntervalTimeline(used).find_overshadowed()
    return [SegmentRow(s, s in hidden, num_rows(s)) for s in used]


def segments_table(rows: Iterable[SegmentRow]) -> pa.Table:
    out = []
    for row in rows:
        s = row.segment
        active = 0 if row.overshadowed else 1
        out.append(
            (
                s.identifier,
                s.data_source,
                format_ms(s.interval.start),
                format_ms(s.interval.end),
                s.size,
                s.version,
                s.partition_num,
                active,  # this process serves every active segment once
                row.num_rows,
                active,
                1,
                active,
                0,
                1 - active,
                _json(s.shard_spec.to_json()),
                _json(list(s.dimensions)),
                _json(list(s.metrics)),
                None,
                _json(dict(s.last_compaction_state)) if s.last_compaction_state else None,
                1,
            )
        )
    return _table(SEGMENTS, out)


def server_segments_table(server: ServerInfo, rows: Iterable[SegmentRow]) -> pa.Table:
    return _table(SERVER_SEGMENTS, [(server.name, r.segment.identifier) for r in rows if not r.overshadowed])


def servers_table(server: ServerInfo, served_bytes: int) -> pa.Table:
    start = format_ms(server.start_time_ms)
    base = (server.name, server.host, server.port, -1)
    rows = [
        (*base, "coordinator", None, 0, 0, 1, start, server.version, None),
        (*base, "overlord", None, 0, 0, 1, start, server.version, None),
        (*base, "broker", None, 0, 0, None, start, server.version, None),
        (*base, "historical", "_default_tier", served_bytes, 0, None, start, server.version, None),
    ]
    return _table(SERVERS, rows)


def supervisors_table() -> pa.Table:
    return SUPERVISORS.empty_table()


def schemata_table() -> pa.Table:
    names = ["druid", "sys", "INFORMATION_SCHEMA", "lookup", "view"]
    return _table(SCHEMATA, [(CATALOG, n, None, None, None, None, None) for n in names])


def tables_table(datasources: Iterable[str]) -> pa.Table:
    rows = [(CATALOG, "druid", ds, "TABLE", "NO", "NO") for ds in datasources]
    rows += [(CATALOG, "sys", t, "SYSTEM_TABLE", "NO", "NO") for t in SYS_TABLES]
    rows += [(CATALOG, "INFORMATION_SCHEMA", t, "SYSTEM_TABLE", "NO", "NO") for t in INFO_TABLES]
    return _table(TABLES, rows)


def _column_rows(schema_name: str, table: str, schema: pa.Schema) -> list[tuple[Any, ...]]:
    rows = []
    for i, f in enumerate(schema, start=1):
        t = druid_type(f.type)
        nullable = "NO" if (schema_name == "druid" and f.name == "__time") else "YES"
        unknown = (None,) * 8  # lengths, precisions and character sets: Druid leaves them null too
        rows.append((CATALOG, schema_name, table, f.name, i, None, nullable, t.sql, *unknown, t.jdbc))
    return rows


def columns_table(datasource_schemas: dict[str, pa.Schema]) -> pa.Table:
    rows: list[tuple[Any, ...]] = []
    for ds, schema in datasource_schemas.items():
        rows += _column_rows("druid", ds, schema)
    for name, schema in SYS_TABLES.items():
        rows += _column_rows("sys", name, schema)
    for name, schema in INFO_TABLES.items():
        rows += _column_rows("INFORMATION_SCHEMA", name, schema)
    return _table(COLUMNS, rows)
