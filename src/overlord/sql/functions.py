"""Druid SQL functions on a DuckDB connection: the macros and functions the dialect's rewrites call.

``register(conn)`` must run on every connection that executes rewritten SQL. Most of Druid's
functions become plain DuckDB expressions in ``dialect.py``; what lives here is what needs a body:
period bucketing from the epoch (Druid's origin), and Druid's lenient ISO-8601/SQL timestamp parser.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.func import FunctionNullHandling, PythonUDFType

_ISOISH = re.compile(
    r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?"
    r"(?:[T ](\d{1,2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$"
)

MACROS = (
    # Start of a fixed-length bucket of n ms counted from origin_ms (Druid's truncateMillisPeriod).
    "CREATE OR REPLACE MACRO __druid_floor_ms(ts, n, origin_ms) AS "
    "epoch_ms(epoch_ms(ts) - (((epoch_ms(ts) - origin_ms) % n) + n) % n)",
    # Start of a bucket of n calendar months counted from January 1970 (floor division, also before 1970).
    "CREATE OR REPLACE MACRO __druid_month_start(m) AS "
    "make_timestamp(1970 + CAST(floor(CAST(m AS DOUBLE) / 12) AS BIGINT), "
    "m - CAST(floor(CAST(m AS DOUBLE) / 12) AS BIGINT) * 12 + 1, 1, 0, 0, 0)",
    # Joda's monthsBetween: calendar months, minus one when the end's offset into its month is smaller.
    "CREATE OR REPLACE MACRO __druid_months_between(a, b) AS "
    "((year(b) - year(a)) * 12 + month(b) - month(a)) + CASE "
    "WHEN (year(b) - year(a)) * 12 + month(b) - month(a) > 0 "
    "AND b - date_trunc('month', b) < a - date_trunc('month', a) THEN -1 "
    "WHEN (year(b) - year(a)) * 12 + month(b) - month(a) < 0 "
    "AND b - date_trunc('month', b) > a - date_trunc('month', a) THEN 1 ELSE 0 END",
    "CREATE OR REPLACE MACRO __druid_floor_months(ts, n) AS "
    "__druid_month_start(CAST(floor(CAST((year(ts) - 1970) * 12 + month(ts) - 1 AS DOUBLE) / n) AS BIGINT) * n)",
)


def parse_timestamp(value: str | None) -> datetime | None:
    """Druid's default TIME_PARSE: ISO-8601 or SQL format, optional offset (UTC if none); None if unreadable."""
    if value is None:
        return None
    m = _ISOISH.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        dt = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "0")[:3].ljust(3, "0")) * 1000,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset_min = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        return dt.replace(tzinfo=None) - sign * timedelta(minutes=offset_min)
    return dt.replace(tzinfo=None)


_PLAIN_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$"


def parse_timestamps(values: pa.Array) -> pa.Array:
    """``parse_timestamp`` over a column: Arrow's cast when every value is plain ISO UTC (what ingested
    data mostly holds; 20x faster than a call per row), else ``parse_timestamp`` value by value."""
    if pc.all(pc.match_substring_regex(values, _PLAIN_ISO)).as_py() is not False:
        return pc.cast(values, pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
    return pa.array([parse_timestamp(v) for v in values.to_pylist()], pa.timestamp("us"))


def register(conn: duckdb.DuckDBPyConnection) -> None:
    """Install the macros and functions, and the session settings Druid's semantics need (UTC, integer
    division of integers)."""
    conn.execute("SET GLOBAL TimeZone = 'UTC'")  # global: every cursor of this database inherits them
    conn.execute("SET GLOBAL integer_division = true")  # Calcite's typing: BIGINT / BIGINT is a BIGINT
    for macro in MACROS:
        conn.execute(macro)
    conn.create_function(
        "__druid_time_parse",
        parse_timestamps,
        ["varchar"],
        "timestamp",
        type=PythonUDFType.ARROW,
        null_handling=FunctionNullHandling.SPECIAL,
        side_effects=False,
    )
