"""The SQL engine: one Druid SQL query in, typed rows out, on DuckDB.

``prepare`` parses and checks a query (cheap; on the event loop, so bad SQL is answered at once);
``execute`` runs it (blocking: call it from a worker thread). Each query gets its own DuckDB
connection (a cursor of one shared in-memory database, where Druid's functions are installed
once); the tables it names are registered on that connection only: data sources as Arrow datasets
over exactly their visible segments, ``sys`` and INFORMATION_SCHEMA tables as Arrow tables built
at that moment from the read model. ``cancel`` interrupts a running query by its id.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from overlord.core.data_segment import DataSegment
from overlord.core.protocols import DeepStorage, SegmentStore
from overlord.errors import QueryCancelled, QueryTimeout, SqlError
from overlord.sql import datasource_tables as dst
from overlord.sql import dialect, functions
from overlord.sql import system_tables as st
from overlord.sql.model import ReadModel, Result

_names = itertools.count()


@dataclass
class Prepared:
    """A parsed, parameter-bound query and what it reads."""

    query_id: str
    tree: exp.Expr
    data_sources: dict[str, list[exp.Table]]
    sys_tables: set[str]
    info_tables: set[str]


class SqlEngine:
    def __init__(
        self, segments: SegmentStore, deep_storage: DeepStorage, *, max_rows: int = 500_000, threads: int = 2
    ) -> None:
        self.segments = segments
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="sql")
        self.files = dst.DeepStorageFiles(deep_storage)
        self.max_rows = max_rows
        self._db = duckdb.connect(":memory:")
        self._db.register_filesystem(self.files)
        functions.register(self._db)
        self._running: dict[str, duckdb.DuckDBPyConnection] = {}
        self._cancelled: set[str] = set()
        self._timed_out: set[str] = set()
        self._abandoned: set[str] = set()
        self._mutex = threading.Lock()

    def close(self) -> None:
        with self._mutex:
            running = list(self._running.values())
        for conn in running:
            conn.interrupt()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._db.close()

    # -- planning ------------------------------------------------------------------------------------

    def prepare(self, sql: str, parameters: Sequence[Any] | None = None, query_id: str | None = None) -> Prepared:
        if dialect.is_ingestion(sql):
            raise SqlError(dialect.INGEST_ON_QUERY_API)
        tree = dialect.parse(sql)
        dialect.check_query(tree)
        tree = dialect.bind_parameters(tree, parameters)
        _name_expressions(tree)
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        data_sources: dict[str, list[exp.Table]] = {}
        sys_tables: set[str] = set()
        info_tables: set[str] = set()
        for table in tree.find_all(exp.Table):
            name, db = table.name, (table.db or "").lower()
            if not name or (not db and name.lower() in ctes) or isinstance(table.this, exp.Func):
                continue
            if db == "sys":
                if name.lower() not in st.SYS_TABLES:
                    raise _not_found(name, "sys")
                sys_tables.add(name.lower())
            elif db == "information_schema":
                if name.upper() not in st.INFO_TABLES:
                    raise _not_found(name, "INFORMATION_SCHEMA")
                info_tables.add(name.upper())
            elif db in ("", "druid"):
                data_sources.setdefault(name, []).append(table)
            else:
                raise _not_found(name, table.db)
        return Prepared(query_id or str(uuid.uuid4()), tree, data_sources, sys_tables, info_tables)

    # -- running -------------------------------------------------------------------------------------

    def execute(self, prepared: Prepared, read_model: ReadModel) -> Result:
        """Run a prepared query (blocking). Raises QueryCancelled when ``cancel`` interrupted it."""
        conn = self._db.cursor()
        with self._mutex:
            if prepared.query_id in self._abandoned:  # timed out while it waited for a thread
                self._abandoned.discard(prepared.query_id)
                conn.close()
                raise QueryTimeout(sqlQueryId=prepared.query_id)
            if prepared.query_id in self._running:
                conn.close()
                raise SqlError(f"A query with sqlQueryId [{prepared.query_id}] is already running")
            self._running[prepared.query_id] = conn
        try:
            tree = prepared.tree.copy()
            self._bind_tables(conn, tree, prepared, read_model)
            sql = dialect.rewrite(tree).sql(dialect="duckdb")
            return self._run(conn, sql, prepared.query_id)
        except duckdb.InterruptException:  # also while the tables were being set up
            raise self._stop_error(prepared.query_id) from None
        finally:
            with self._mutex:
                self._running.pop(prepared.query_id, None)
                self._cancelled.discard(prepared.query_id)
                self._timed_out.discard(prepared.query_id)
            conn.close()

    def cancel(self, query_id: str, *, timed_out: bool = False) -> bool:
        """Interrupt a running query; False when no query with that id is running. A query that timed
        out before a thread took it up is dropped when it would start."""
        with self._mutex:
            conn = self._running.get(query_id)
            if conn is None:
                if timed_out:
                    self._abandoned.add(query_id)
                return False
            (self._timed_out if timed_out else self._cancelled).add(query_id)
        conn.interrupt()
        return True

    def interrupt(self, query_id: str) -> bool:
        """Interrupt again (an interrupt that lands between two statements is lost); False once it ended."""
        with self._mutex:
            conn = self._running.get(query_id)
        if conn is None:
            return False
        conn.interrupt()
        return True

    def _stop_error(self, query_id: str) -> QueryTimeout | QueryCancelled:
        with self._mutex:
            timed_out = query_id in self._timed_out
        if timed_out:
            return QueryTimeout(sqlQueryId=query_id)
        return QueryCancelled(f"Query [{query_id}] was cancelled", sqlQueryId=query_id)

    def _stopped(self, query_id: str) -> bool:
        with self._mutex:
            return query_id in self._cancelled or query_id in self._timed_out

    def is_running(self, query_id: str) -> bool:
        with self._mutex:
            return query_id in self._running

    def _run(self, conn: duckdb.DuckDBPyConnection, sql: str, query_id: str) -> Result:
        try:
            if self._stopped(query_id):
                raise duckdb.InterruptException("interrupted before it started")
            reader = conn.sql(sql).to_arrow_reader(65_536)
            if reader is None:
                raise SqlError("The statement returned no result")
            batches: list[pa.RecordBatch] = []
            count = 0
            for batch in reader:
                count += batch.num_rows
                if count > self.max_rows:
                    raise SqlError(
                        f"Query result exceeds {self.max_rows} rows (overlord.sql.maxResultRows): add a LIMIT",
                        maxResultRows=self.max_rows,
                    )
                batches.append(batch)
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.InterruptException:
            raise self._stop_error(query_id) from None
        except (
            duckdb.ParserException,
            duckdb.BinderException,
            duckdb.CatalogException,
            duckdb.ConversionException,
            duckdb.InvalidInputException,
            duckdb.OutOfRangeException,
            duckdb.NotImplementedException,
            duckdb.TypeMismatchException,
        ) as e:
            raise SqlError(f"Invalid SQL query: {_first_line(e)}") from None
        table = _druid_numbers(table)
        columns = list(table.column_names)
        rows = list(zip(*(c.to_pylist() for c in table.columns), strict=True)) if table.num_rows else []
        return Result(columns, [f.type for f in table.schema], rows)

    # -- tables ----------------------------------------------------------------------------------------

    def _bind_tables(
        self, conn: duckdb.DuckDBPyConnection, tree: exp.Expr, prepared: Prepared, model: ReadModel
    ) -> None:
        copies = [t for t in tree.find_all(exp.Table) if t.name in prepared.data_sources]
        for name in prepared.data_sources:
            refs = [t for t in copies if t.name == name and (t.db or "").lower() in ("", "druid")]
            window = dst.hull([dst.reference_window(t) for t in refs])
            found = dst.scan(self.segments, self.files, name, window)
            if found is not None:
                view = self._register_datasource(conn, found)
            else:
                whole = dst.scan(self.segments, self.files, name, None) if window is not None else None
                if whole is None:
                    raise _not_found(name, "druid")
                view = self._empty_datasource(conn, whole)
            for t in refs:
                _point_at(t, view)
        if prepared.sys_tables or prepared.info_tables:
            self._bind_system(conn, tree, prepared, model)
        for col in tree.find_all(exp.Column):  # sys.servers."server": the schema part is gone with the view
            if col.args.get("db") is not None:
                col.set("db", None)
                col.set("catalog", None)

    def _register_datasource(self, conn: duckdb.DuckDBPyConnection, found: dst.DataSourceScan) -> str:
        """A view of the visible rows: whole segments read together, each partly visible segment limited
        to its visible stretch; ``__time`` a TIMESTAMP whatever its stored form (epoch millis or UTC)."""
        parts: list[str] = []
        for millis in (True, False):  # one read per stored form of __time: DuckDB unifies the rest by name
            group = [m.path for m in found.whole if m.time_is_millis == millis]
            if group:
                parts.append(_select(group, millis))
        for meta, iv in found.partial:
            raw = '"__time"' if meta.time_is_millis else 'epoch_ms("__time")'
            where = f" WHERE {raw} >= {iv.start} AND {raw} < {iv.end}"
            parts.append(_select([meta.path], meta.time_is_millis, where))
        return self._view(conn, " UNION ALL BY NAME ".join(parts))

    def _empty_datasource(self, conn: duckdb.DuckDBPyConnection, found: dst.DataSourceScan) -> str:
        """No segment overlaps the query's window: an empty table with the data source's columns."""
        name = f"__ds_{next(_names)}"
        conn.register(name, found.sql_schema.empty_table())
        return self._view(conn, f'SELECT * FROM "{name}"')

    @staticmethod
    def _view(conn: duckdb.DuckDBPyConnection, rows_sql: str) -> str:
        view = f"__dsv_{next(_names)}"
        conn.execute(f'CREATE TEMP VIEW "{view}" AS {rows_sql}')
        return view

    def _bind_system(self, conn: duckdb.DuckDBPyConnection, tree: exp.Expr, prepared: Prepared, m: ReadModel) -> None:
        tables: dict[tuple[str, str], pa.Table] = {}
        seg_rows: list[st.SegmentRow] | None = None

        def all_segment_rows() -> list[st.SegmentRow]:
            nonlocal seg_rows
            if seg_rows is None:
                seg_rows = []
                for ds in self.segments.datasources():
                    seg_rows += st.segment_rows(self.segments.used_segments(ds), self._num_rows)
            return seg_rows

        for name in prepared.sys_tables:
            if name == "tasks":
                tables[("sys", name)] = st.tasks_table([*m.complete_tasks(), *m.active_tasks])
            elif name == "segments":
                tables[("sys", name)] = st.segments_table(all_segment_rows())
            elif name == "server_segments":
                tables[("sys", name)] = st.server_segments_table(m.server, all_segment_rows())
            elif name == "servers":
                served = sum(r.segment.size for r in all_segment_rows() if not r.overshadowed)
                tables[("sys", name)] = st.servers_table(m.server, served)
            elif name == "supervisors":
                tables[("sys", name)] = st.supervisors_table()
        for name in prepared.info_tables:
            if name == "SCHEMATA":
                tables[("information_schema", name)] = st.schemata_table()
            elif name == "TABLES":
                tables[("information_schema", name)] = st.tables_table(self.segments.datasources())
            else:
                schemas = {}
                for ds in self.segments.datasources():
                    schema = dst.columns_of(self.segments, self.files, ds)
                    if schema is not None:
                        schemas[ds] = schema
                tables[("information_schema", name)] = st.columns_table(schemas)
        views: dict[tuple[str, str], str] = {}
        for key, table in tables.items():
            views[key] = f"__sys_{next(_names)}"
            conn.register(views[key], table)
        for t in tree.find_all(exp.Table):
            db = (t.db or "").lower()
            key = (db, t.name.upper() if db == "information_schema" else t.name.lower())
            if key in views:
                _point_at(t, views[key])

    def _num_rows(self, segment: DataSegment) -> int:
        try:
            return self.files.meta(segment).num_rows
        except Exception:  # a missing file shows as 0 rows in sys.segments, as an unloaded segment does in Druid
            return 0


def _druid_numbers(table: pa.Table) -> pa.Table:
    """DuckDB answers SUM(BIGINT) as a 38-digit DECIMAL and 1.5 as DECIMAL(2,1); Druid as BIGINT and DOUBLE."""
    for i, field in enumerate(table.schema):
        if not pa.types.is_decimal(field.type):
            continue
        column = table.column(i)
        if field.type.scale == 0:
            try:
                column = column.cast(pa.int64())
            except (pa.ArrowInvalid, OverflowError):  # beyond a BIGINT: as a DOUBLE, like an overflowing Druid sum
                column = column.cast(pa.float64(), safe=False)
        else:
            column = column.cast(pa.float64(), safe=False)
        table = table.set_column(i, pa.field(field.name, column.type), column)
    return table


def _select(paths: list[str], millis: bool, where: str = "") -> str:
    """Read segment files with DuckDB's Parquet reader, ``__time`` first as a TIMESTAMP, then every column
    of the data source (NULL where a segment lacks one, as Druid answers for a missing column)."""
    files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
    time = 'epoch_ms("__time")' if millis else 'CAST("__time" AS TIMESTAMP)'
    return f'SELECT {time} AS "__time", * EXCLUDE ("__time") FROM read_parquet({files}, union_by_name = true){where}'


def _name_expressions(tree: exp.Expr) -> None:
    """Unnamed output columns are ``EXPR$<position>``, as Druid (Calcite) names them."""
    if not isinstance(tree, exp.Select):
        return
    for i, e in enumerate(list(tree.expressions)):
        if not isinstance(e, exp.Alias | exp.Column | exp.Star):
            e.replace(exp.alias_(e.copy(), f"EXPR${i}", quoted=True))


def _point_at(table: exp.Table, view: str) -> None:
    """Make a table reference read ``view`` while keeping the name queries use to qualify columns."""
    alias = table.alias or table.name
    table.set("db", None)
    table.set("catalog", None)
    table.set("this", exp.to_identifier(view, quoted=True))
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))


def _not_found(name: str, schema: str) -> SqlError:
    return SqlError(f"Object '{name}' not found within '{schema}'", table=name, schema=schema)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
