"""The Druid-to-DuckDB layer: each rewrite checked by running it on DuckDB against Druid's documented answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pytest

from overlord.errors import SqlError, SqlUnsupported
from overlord.sql import dialect, functions


@pytest.fixture(scope="module")
def conn() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    functions.register(c)
    return c


def one(conn: duckdb.DuckDBPyConnection, expr: str, parameters: list[dict[str, Any]] | None = None) -> Any:
    row = conn.execute(dialect.to_duckdb(f"SELECT {expr}", parameters)).fetchone()
    assert row is not None
    return row[0]


T = "TIMESTAMP '2016-06-27 13:45:12.345'"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (f"TIME_FLOOR({T}, 'PT1H')", datetime(2016, 6, 27, 13)),
        (f"TIME_FLOOR({T}, 'PT15M')", datetime(2016, 6, 27, 13, 45)),
        (f"TIME_FLOOR({T}, 'P1D')", datetime(2016, 6, 27)),
        (f"TIME_FLOOR({T}, 'P1W')", datetime(2016, 6, 27)),  # a Monday
        (f"TIME_FLOOR({T}, 'P1M')", datetime(2016, 6, 1)),
        (f"TIME_FLOOR({T}, 'P3M')", datetime(2016, 4, 1)),
        (f"TIME_FLOOR({T}, 'P1Y')", datetime(2016, 1, 1)),
        ("TIME_FLOOR(TIMESTAMP '1969-06-27 13:00:00', 'P2D')", datetime(1969, 6, 27)),  # from the epoch
        ("TIME_FLOOR(TIMESTAMP '1968-03-31 23:00:00', 'P5M')", datetime(1967, 12, 1)),  # Druid rounds down
        (f"TIME_FLOOR({T}, 'PT5M', TIMESTAMP '2016-06-27 00:02:00')", datetime(2016, 6, 27, 13, 42)),
        (f"TIME_CEIL({T}, 'P1D')", datetime(2016, 6, 28)),
        ("TIME_CEIL(TIMESTAMP '2016-06-27 00:00:00', 'P1D')", datetime(2016, 6, 27)),
        ("TIME_SHIFT(TIMESTAMP '2016-01-31 00:00:00', 'P1M', 1)", datetime(2016, 2, 29)),
        ("TIME_SHIFT(TIMESTAMP '2016-01-31 00:00:00', 'PT1H', -2)", datetime(2016, 1, 30, 22)),
        (f"TIME_EXTRACT({T}, 'HOUR')", 13),
        ("TIME_EXTRACT(TIMESTAMP '2016-06-26 00:00:00', 'DOW')", 7),  # Sunday is 7 in Joda
        (f"TIME_EXTRACT({T}, 'MILLISECOND')", 345),
        (f"TIME_EXTRACT({T}, 'EPOCH')", 1467035112),
        (f"TIME_EXTRACT({T}, 'QUARTER')", 2),
        ("EXTRACT(DOW FROM TIMESTAMP '2016-06-26 00:00:00')", 7),
        (f"EXTRACT(YEAR FROM {T})", 2016),
        ("TIME_PARSE('2016-06-27T01:00:00+02:00')", datetime(2016, 6, 26, 23)),
        ("TIME_PARSE('2016-06-27 01:00:00.5')", datetime(2016, 6, 27, 1, 0, 0, 500000)),
        ("TIME_PARSE('2016-06-27')", datetime(2016, 6, 27)),
        ("TIME_PARSE('not a time')", None),
        ("TIME_PARSE('27/06/2016 13', 'dd/MM/yyyy HH')", datetime(2016, 6, 27, 13)),
        (f"TIME_FORMAT({T})", "2016-06-27T13:45:12.345Z"),
        (f"TIME_FORMAT({T}, 'yyyy-MM-dd''T''HH')", "2016-06-27T13"),
        ("MILLIS_TO_TIMESTAMP(1467035112345)", datetime(2016, 6, 27, 13, 45, 12, 345000)),
        (f"TIMESTAMP_TO_MILLIS({T})", 1467035112345),
        (f"TIME_IN_INTERVAL({T}, '2016-06-27/2016-06-28')", True),
        (f"TIME_IN_INTERVAL({T}, '2016-06-28/2016-06-29')", False),
        (f"FLOOR({T} TO HOUR)", datetime(2016, 6, 27, 13)),
        (f"CEIL({T} TO DAY)", datetime(2016, 6, 28)),
        (f"TIMESTAMPADD(QUARTER, 1, {T})", datetime(2016, 9, 27, 13, 45, 12, 345000)),
        ("TIMESTAMPDIFF(HOUR, TIMESTAMP '2016-06-27 00:00:00', TIMESTAMP '2016-06-27 05:59:00')", 5),
        ("TIMESTAMPDIFF(MONTH, TIMESTAMP '2016-01-31 00:00:00', TIMESTAMP '2016-02-29 00:00:00')", 0),
        ("7 / 2", 3),  # BIGINT / BIGINT stays integral, as in Druid
        ("7.0 / 2", 3.5),
        ("LOG(EXP(1))", 1.0),  # natural logarithm, as in Druid
        ("STRLEN('abc')", 3),
        ("CONTAINS_STRING('Hello', 'ell')", True),
        ("ICONTAINS_STRING('Hello', 'ELL')", True),
        ("REGEXP_EXTRACT('foo123', '[0-9]+')", "123"),
        ("REGEXP_EXTRACT('foo', '[0-9]+')", None),
        ("NVL(NULL, 'x')", "x"),
        ("PARSE_LONG('42')", 42),
    ],
)
def test_druid_functions_answer_as_druid_does(conn: duckdb.DuckDBPyConnection, expr: str, expected: Any) -> None:
    assert one(conn, expr) == expected


def test_aggregates_latest_earliest_approx(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "CREATE OR REPLACE TABLE t AS "
        "SELECT epoch_ms(x * 1000) AS __time, x % 3 AS k, 'v' || x AS s FROM range(10) r(x)"
    )
    sql = dialect.to_duckdb(
        "SELECT LATEST(s), EARLIEST(s, 100), LATEST_BY(s, MILLIS_TO_TIMESTAMP(0 - TIMESTAMP_TO_MILLIS(__time))), "
        "APPROX_COUNT_DISTINCT(k), APPROX_QUANTILE(k, 0.5) FROM t"
    )
    assert conn.execute(sql).fetchone() == ("v9", "v0", "v0", 3, 1)


def test_parameters_bind_as_typed_literals(conn: duckdb.DuckDBPyConnection) -> None:
    params = [{"type": "VARCHAR", "value": "PT1H"}, {"type": "INTEGER", "value": 2}]
    assert one(conn, f"TIME_SHIFT(TIME_FLOOR({T}, ?), 'PT1H', ?)", params) == datetime(2016, 6, 27, 15)
    with pytest.raises(SqlError, match="parameter"):
        dialect.to_duckdb("SELECT ?", [])


def test_information_schema_is_mapped_to_our_schema() -> None:
    assert dialect.INFO_SCHEMA in dialect.to_duckdb("SELECT * FROM INFORMATION_SCHEMA.TABLES")


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT LOOKUP(x, 'lk') FROM t", "LOOKUP"),
        ("SELECT DS_HLL(x) FROM t", "DS_HLL"),
        ("SELECT TIME_FLOOR(__time, 'PT1H', NULL, 'America/Los_Angeles') FROM t", "America/Los_Angeles"),
        ("SELECT TIME_FLOOR(__time, 'P1M1D') FROM t", "P1M1D"),
        ("SELECT TIME_FLOOR(__time, 'hourly') FROM t", "hourly"),
        ("SELECT TIME_FORMAT(__time, 'yyyy QQ') FROM t", "QQ"),
        ("SELECT TIME_EXTRACT(__time, 'MICROSECOND') FROM t", "MICROSECOND"),
        ("SELECT * FROM lookup.lk", "lk"),
    ],
)
def test_unsupported_is_an_error_naming_it(sql: str, named: str) -> None:
    with pytest.raises(SqlUnsupported, match=named):
        dialect.to_duckdb(sql)


def test_syntax_error_carries_line_and_column() -> None:
    with pytest.raises(SqlError) as info:
        dialect.parse("SELECT FROM WHERE")
    assert info.value.context["sourceType"] == "sql"
    with pytest.raises(SqlError, match="one statement"):
        dialect.parse("SELECT 1; SELECT 2")


def test_insert_is_refused_on_the_query_path() -> None:
    with pytest.raises(SqlError, match="sql/task"):
        dialect.check_query(dialect.parse("INSERT INTO w SELECT * FROM t"))
    dialect.check_query(dialect.parse("SELECT 1337"))
