"""The work of SQL-based ingestion: read EXTERN input, run the SELECT in DuckDB, cut segments.

Input is read with native ingestion's parsers (``ingest.formats``), so unparseable lines are found
and counted the same way, and typed by the EXTERN signature. The SELECT runs in DuckDB over that
Arrow table (Druid's dialect and functions come from ``overlord.sql.dialect`` and
``overlord.sql.functions``). The result is bucketed by the PARTITIONED BY granularity, sorted by
``__time`` and the CLUSTERED BY columns and written as Parquet segments in native ingestion's layout
(``ingest.segment_files``), so queries and compaction read them like any other segment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overlord.errors import InvalidInput, OverlordError, TaskFailure
from overlord.ingest import columns, segment_files
from overlord.ingest.formats import make_parser
from overlord.ingest.segment_files import SegmentDescriptor
from overlord.ingest.sources import InputSplit, iter_chunks, list_input_splits, open_split
from overlord.ingest.spec import IndexSpec, validate_index_spec
from overlord.isotime import Interval
from overlord.sql.ingest_statement import ALL_TIME, EXTERN_TABLE, TIME, IngestStatement

DEFAULT_ROWS_PER_SEGMENT = 3_000_000  # Druid's MSQ default
_ARROW = {"string": pa.string(), "long": pa.int64(), "double": pa.float64(), "float": pa.float32()}


def fault(code: str, message: str) -> TaskFailure:
    """A query failure with Druid's MSQ fault code (``errorCode`` in the report's errorReport)."""
    return TaskFailure(f"{code}: {message}", errorCode=code, errorMessage=message)


def fault_of(exc: BaseException) -> dict[str, Any]:
    """The MSQ fault (``{"errorCode", "errorMessage"}``) an error stands for."""
    ctx = getattr(exc, "context", None) or {}
    if "errorCode" in ctx:
        return {"errorCode": ctx["errorCode"], "errorMessage": ctx.get("errorMessage")}
    if isinstance(exc, OverlordError):
        return {"errorCode": "UnknownError", "errorMessage": exc.message}
    if isinstance(exc, Exception):
        return {"errorCode": "UnknownError", "errorMessage": str(exc) or type(exc).__name__}
    return {"errorCode": "Canceled", "errorMessage": "Query canceled by user or by task shutdown."}


def input_spec(stmt: IngestStatement, allowed_dirs: Iterable[Path | str]) -> IndexSpec:
    """EXTERN's input source and format, validated as native ingestion validates them (allowedDirs included)."""
    payload = {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": stmt.data_source,
                "timestampSpec": {"column": TIME, "format": "millis", "missingValue": "1970-01-01"},
                "dimensionsSpec": {"dimensions": []},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": stmt.extern.input_source,
                "inputFormat": stmt.extern.input_format,
            },
        },
    }
    dirs = [Path(p) for p in allowed_dirs] or [Path("/")]
    try:
        return validate_index_spec(payload, allowed_dirs=dirs)
    except InvalidInput as exc:
        raise _as_extern_error(exc) from None


def _as_extern_error(exc: InvalidInput) -> InvalidInput:
    msg = re.sub(r"spec\.ioConfig\.(input\w+)", r"EXTERN \1", exc.message)
    out = type(exc)(
        msg, **{k: re.sub(r"spec\.ioConfig\.(input\w+)", r"EXTERN \1", str(v)) for k, v in exc.context.items()}
    )
    return out


def splits_of(spec: IndexSpec) -> list[InputSplit]:
    """Every input file (or the inline data); a path outside allowedDirs is a ForbiddenPath naming EXTERN."""
    try:
        splits = list_input_splits(spec)
    except InvalidInput as exc:
        raise _as_extern_error(exc) from None
    if not splits:
        raise InvalidInput("EXTERN inputSource: no input files found", field="EXTERN inputSource")
    return splits


@dataclass
class InputCounters:
    """What reading the input found, in Druid's row-statistics terms."""

    rows: int = 0  # parseable rows read
    bytes: int = 0
    files: int = 0
    unparseable: int = 0
    processed_with_error: int = 0
    thrown_away: int = 0
    samples: list[str] = field(default_factory=list)  # the first unparseable lines

    @property
    def processed(self) -> int:
        return self.rows - self.thrown_away

    def row_stats(self) -> dict[str, int]:
        """Druid's RowIngestionMetersTotals for this input."""
        return {
            "processed": self.processed,
            "processedBytes": self.bytes,
            "processedWithError": self.processed_with_error,
            "thrownAway": self.thrown_away,
            "unparseable": self.unparseable,
        }


def _typed(col: pa.ChunkedArray | None, kind: str, n: int) -> tuple[pa.Array | pa.ChunkedArray, int]:
    """A column as its signature type, and how many non-null values could not be converted (now null)."""
    want = _ARROW[kind]
    if col is None:
        return pa.nulls(n, want), 0
    if col.type == want:
        return col, 0
    if pa.types.is_timestamp(col.type):  # the JSON reader saw ISO text: give it back as ISO text
        ms = col.cast(pa.timestamp("ms", tz="UTC"))
        if kind == "string":
            return pc.strftime(ms, format="%Y-%m-%dT%H:%M:%SZ"), 0
        return ms.cast(pa.int64()).cast(want), 0
    if kind == "string":
        return columns.to_string(col), 0
    try:
        return col.cast(want), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    values = []
    bad = 0
    for v in col.to_pylist():
        try:
            values.append(None if v is None else (int(float(v)) if kind == "long" else float(v)))
        except (TypeError, ValueError):
            values.append(None)
            bad += 1
    return pa.array(values, want), bad


def read_input(
    stmt: IngestStatement,
    spec: IndexSpec,
    splits: list[InputSplit],
    max_parse_exceptions: int,
    on_progress: Callable[[InputCounters], None] | None = None,
) -> tuple[pa.Table, InputCounters]:
    """The splits' rows typed by the EXTERN signature; past ``max_parse_exceptions`` unparseable rows the
    query fails with Druid's TooManyWarnings fault (the default, 0, fails on the first).
    ``on_progress`` sees the counters after every chunk (for live reports)."""
    counters = InputCounters()
    sig = stmt.extern.signature
    tables = []
    for split in splits:
        parser = make_parser(spec.io_config.input_format)
        counters.files += 1
        with open_split(split) as stream:
            first = True
            for chunk in iter_chunks(stream):
                batch = parser.parse(chunk, first)
                first = False
                counters.bytes += batch.nbytes
                if batch.bad:
                    counters.unparseable += len(batch.bad)
                    counters.samples.extend(raw for _, raw, _ in batch.bad[: max(0, 5 - len(counters.samples))])
                    if counters.unparseable > max_parse_exceptions:
                        raise fault(
                            "TooManyWarnings",
                            "Too many warnings of type CannotParseExternalData generated "
                            f"(max = {max_parse_exceptions}): unable to parse row [{counters.samples[0]}] "
                            f"in input [{split.name}]",
                        )
                t = batch.table
                n = t.num_rows
                cols = {}
                for name, kind in sig:
                    col, bad = _typed(t.column(name) if name in t.column_names else None, kind, n)
                    counters.processed_with_error += bad
                    cols[name] = col
                tables.append(pa.table(cols))
                counters.rows += n
                if on_progress is not None:
                    on_progress(counters)
    if not tables:
        return pa.table({name: pa.array([], _ARROW[kind]) for name, kind in sig}), counters
    return pa.concat_tables(tables), counters


def _duckdb_sql(query: str) -> str:
    from overlord.sql import dialect  # sqlglot: imported when first needed, never at service start-up

    return dialect.to_duckdb(query)


def check_translates(stmt: IngestStatement) -> None:
    """At submit: the SELECT is Druid SQL the engine can run (an unsupported function is a 400 naming it)."""
    _duckdb_sql(stmt.query)


def run_select(stmt: IngestStatement, table: pa.Table, counters: InputCounters) -> pa.Table:
    """The SELECT over the input rows (Druid SQL translated for DuckDB); counts rows its WHERE drops."""
    import duckdb  # imported in the worker that runs a query, never at service start-up

    from overlord.sql import functions

    conn = duckdb.connect()
    try:
        functions.register(conn)
        conn.register(EXTERN_TABLE, table)
        try:
            if stmt.filter_count_query is not None:
                kept = conn.query(_duckdb_sql(stmt.filter_count_query)).to_arrow_table().column(0)[0].as_py()
                counters.thrown_away = table.num_rows - int(kept or 0)
            return conn.query(_duckdb_sql(stmt.query)).to_arrow_table()
        except duckdb.Error as exc:
            raise fault("UnknownError", f"Query failed in the SQL engine: {exc}") from None
    finally:
        conn.close()


def _time_ms(col: pa.ChunkedArray) -> np.ndarray:
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_date(t):
            col = col.cast(pa.timestamp("ms"))
        ms = col.cast(pa.timestamp("ms", tz=getattr(col.type, "tz", None))).cast(pa.int64())
    elif pa.types.is_integer(t):
        ms = col.cast(pa.int64())
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            ms = pc.cast(pc.strptime(col, format="%Y-%m-%dT%H:%M:%S", unit="ms", error_is_null=False), pa.int64())
        except pa.ArrowInvalid:
            raise fault("UnknownError", f"Incorrect type for [{TIME}]: expected a TIMESTAMP, got strings") from None
    else:
        raise fault("UnknownError", f"Incorrect type for [{TIME}]: expected a TIMESTAMP, got [{t}]")
    if ms.null_count:
        raise fault(
            "InsertTimeNull", f"Null timestamp ({TIME}) encountered in {ms.null_count} rows of the query's output"
        )
    return np.asarray(ms.to_numpy(zero_copy_only=False), dtype=np.int64)


def _column(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """A result column as a segment column: strings, longs, doubles or floats (Druid's column types)."""
    t = col.type
    if pa.types.is_string(t) or t in (pa.int64(), pa.float64(), pa.float32()):
        return col
    if pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return col.cast(pa.string())
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return col.cast(pa.int64())
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return col.cast(pa.float64())
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return col.cast(pa.timestamp("ms") if pa.types.is_date(t) else pa.timestamp("ms", tz=t.tz)).cast(pa.int64())
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.string())
    return columns.to_string(col)


@dataclass(frozen=True)
class Shaped:
    """The query's output as segment rows: ``__time`` first (timestamp[ms, UTC]), then dimensions, then metrics."""

    table: pa.Table
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]


def shape(stmt: IngestStatement, result: pa.Table) -> Shaped:
    """Type and order the output columns; no ``__time`` column means every row is at 1970-01-01."""
    names = result.column_names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise fault("UnknownError", f"Duplicate output column [{dup}]: give each SELECT column a distinct name")
    n = result.num_rows
    ms = _time_ms(result.column(TIME)) if TIME in names else np.zeros(n, dtype=np.int64)
    metric_set = set(stmt.metrics)
    cluster = [c for c in stmt.clustered_by if c in names and c != TIME]
    missing = [c for c in stmt.clustered_by if c not in names]
    if missing:
        raise fault("UnknownError", f"CLUSTERED BY column [{missing[0]}] is not a column of the query's output")
    dims = cluster + [c for c in names if c != TIME and c not in metric_set and c not in cluster]
    metrics = [c for c in names if c in metric_set and c != TIME]
    cols: dict[str, Any] = {TIME: pa.array(ms, pa.int64())}
    for c in (*dims, *metrics):
        cols[c] = _column(result.column(c))
    return Shaped(pa.table(cols), tuple(dims), tuple(metrics))


def bucket_of(stmt: IngestStatement, ms: np.ndarray) -> np.ndarray:
    gran = stmt.segment_granularity
    if gran.is_all:
        return np.full(len(ms), ALL_TIME.start, dtype=np.int64)
    return gran.truncate_array(ms)


def bucket_interval(stmt: IngestStatement, start: int) -> Interval:
    return ALL_TIME if stmt.segment_granularity.is_all else stmt.segment_granularity.bucket(start)


def check_bounds(stmt: IngestStatement, intervals: Iterable[Interval]) -> None:
    """Every time chunk inside ALL_TIME and, for REPLACE, inside the replaced time (Druid's faults)."""
    bounds = stmt.replace_intervals or (ALL_TIME,)
    for iv in intervals:
        if not any(b.contains(iv) for b in bounds):
            where = ", ".join(str(b) for b in bounds)
            raise fault(
                "InsertTimeOutOfBounds",
                f"Inserted data contains time chunk[{iv}] outside of bounds specified by replaceTimeChunks[{where}]"
                if stmt.replace_intervals
                else f"Inserted data contains time chunk[{iv}] outside of the supported time range [{ALL_TIME}]",
            )


def split_chunks(stmt: IngestStatement, shaped: Shaped) -> dict[Interval, pa.Table]:
    """Rows per time chunk, each chunk inside the statement's bounds."""
    t = shaped.table
    if t.num_rows == 0:
        return {}
    ms = t.column(TIME).to_numpy()
    buckets = bucket_of(stmt, ms)
    out: dict[Interval, pa.Table] = {}
    if (buckets == buckets[0]).all():  # one time chunk (the usual daily file): no copy
        out[bucket_interval(stmt, int(buckets[0]))] = t
        check_bounds(stmt, out)
        return out
    for b in np.unique(buckets):
        iv = bucket_interval(stmt, int(b))
        out[iv] = t.filter(pa.array(buckets == b))
    check_bounds(stmt, out)
    return out


def rollup_partials(stmt: IngestStatement, tables: list[pa.Table], dims: tuple[str, ...]) -> pa.Table:
    """Combine several workers' GROUP BY output for one time chunk into the exact final rows."""
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    combine = {i.name: i.aggregate for i in stmt.items if i.name and i.aggregate}
    metrics = [c for c in table.column_names if c in combine]
    keys = [TIME, *[d for d in dims if d in table.column_names]]
    grouped = table.group_by(keys, use_threads=False).aggregate([(m, str(combine[m])) for m in metrics])
    renamed = {f"{m}_{combine[m]}": m for m in metrics}
    grouped = grouped.rename_columns([renamed.get(c, c) for c in grouped.column_names])
    return grouped.select([c for c in table.column_names if c in grouped.column_names])


def sort_rows(stmt: IngestStatement, table: pa.Table) -> pa.Table:
    keys = [
        (TIME, "ascending"),
        *[(c, "ascending") for c in stmt.clustered_by if c in table.column_names and c != TIME],
    ]
    return table.take(pc.sort_indices(table, sort_keys=keys))


def write_chunk(
    stmt: IngestStatement,
    out_dir: Path,
    iv: Interval,
    table: pa.Table,
    dims: tuple[str, ...],
    metrics: tuple[str, ...],
    version: str,
    rows_per_segment: int,
) -> list[SegmentDescriptor]:
    """One time chunk as segments of at most ``rows_per_segment`` rows.

    With CLUSTERED BY, the chunk is ordered by the clustered columns first, so each segment holds a
    contiguous range of them (Druid's range partitioning); each segment is then sorted by ``__time``.
    """
    cluster = [c for c in stmt.clustered_by if c in table.column_names and c != TIME]
    if cluster and table.num_rows > rows_per_segment:
        table = table.take(pc.sort_indices(table, sort_keys=[(c, "ascending") for c in [*cluster, TIME]]))
    count = max(1, math.ceil(table.num_rows / rows_per_segment))
    out = []
    for pn in range(count):
        part = sort_rows(stmt, table.slice(pn * rows_per_segment, rows_per_segment))
        part = part.set_column(0, TIME, part.column(TIME).cast(pa.timestamp("ms", tz="UTC")))
        rel = segment_files.segment_relpath(stmt.data_source, iv, version, pn)
        size = segment_files.write_segment(out_dir, rel, part)
        spec = {"type": "numbered", "partitionNum": pn, "partitions": count}
        out.append(SegmentDescriptor(stmt.data_source, iv, version, pn, rel, size, part.num_rows, dims, metrics, spec))
    return out


@dataclass(frozen=True)
class QueryContext:
    """The MSQ context parameters this engine honours (Druid's names and defaults)."""

    max_num_tasks: int = 2  # the controller counts as one
    rows_per_segment: int = DEFAULT_ROWS_PER_SEGMENT
    max_parse_exceptions: int = 0

    @classmethod
    def of(cls, context: dict[str, Any] | None) -> QueryContext:
        """Validated; a wrong value is a 400 naming ``context.<key>``."""
        ctx = context or {}

        def number(key: str, default: int, minimum: int) -> int:
            v = ctx.get(key, default)
            if isinstance(v, str) and v.lstrip("-").isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidInput(f"context.{key}: expected an integer, got [{v}]", field=f"context.{key}")
            if key == "maxParseExceptions" and v == -1:
                return 2**62  # Druid: -1 means no limit
            if v < minimum:
                raise InvalidInput(f"context.{key}: [{v}] must be at least {minimum}", field=f"context.{key}")
            return v

        return cls(
            number("maxNumTasks", 2, 2),
            number("rowsPerSegment", DEFAULT_ROWS_PER_SEGMENT, 1),
            number("maxParseExceptions", 0, 0),
        )
