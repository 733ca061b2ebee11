"""Druid SQL to DuckDB SQL: sqlglot reads Druid's dialect, our rewrites give Druid's answers, DuckDB's writer prints.

The rewrites cover what DuckDB spells or means differently: Druid's time functions (periods,
units and Joda patterns become DuckDB expressions with Druid's bucketing), ``LATEST``/``EARLIEST``,
the sketch-free approximations, integer division, ``LOG`` as the natural logarithm, ``EXTRACT``
units, ``TIMESTAMPDIFF`` counting whole units, and the ``INFORMATION_SCHEMA`` tables (served from
our own schema because DuckDB's carry other columns). A Druid function we cannot answer exactly
raises SqlUnsupported naming it, never a guess. Query parameters (``?``) are bound as typed
literals before the rewrite, so period and pattern arguments may be parameters too.

``parse`` is public for the SQL-based ingestion layer, which walks the same tree (INSERT/REPLACE,
EXTERN) before handing its SELECT to ``to_duckdb``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.druid import Druid
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.parsers.druid import DruidParser

from overlord.errors import SqlError, SqlUnsupported
from overlord.isotime import Interval
from overlord.sql import joda
from overlord.sql.periods import Period, floor_sql, parse_period

INFO_SCHEMA = "druid_information_schema"
"""Where Druid's INFORMATION_SCHEMA tables live in DuckDB (its own information_schema has other columns)."""

TIME = "__time"


# -- parsing -------------------------------------------------------------------------------------


def parse(sql: str) -> exp.Expr:
    """One Druid SQL statement as a sqlglot tree; SqlError with Druid's line/column context otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("Invalid SQL query: the query is empty", field="query")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DruidSQL) if s is not None]
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        context = {k: err[k] for k in ("line", "col") if err.get(k) is not None}
        if "col" in context:
            context["column"] = context.pop("col")
        desc = err.get("description") or str(e)
        where = f" (line [{context['line']}], column [{context['column']}])" if "line" in context else ""
        raise SqlError(f"Incorrect syntax near [{err.get('highlight', '')}]{where}: {desc}", **context) from None
    except SqlglotError as e:
        raise SqlError(f"Invalid SQL query: {e}") from None
    if not statements:
        raise SqlError("Invalid SQL query: the query is empty", field="query")
    if len(statements) > 1:
        raise SqlError("Invalid SQL query: only one statement is allowed per query")
    return statements[0]


# -- parameters ----------------------------------------------------------------------------------

_NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC"}


def _param_literal(i: int, param: Any) -> exp.Expr:
    if not isinstance(param, dict) or "type" not in param:
        raise SqlError(f"Parameter at position [{i}] must be an object with [type] and [value]", field="parameters")
    ptype = str(param["type"]).upper()
    value = param.get("value")
    if value is None:
        return exp.Null()
    if ptype in _NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise SqlError(f"Parameter at position [{i}] of type [{ptype}] has value [{value!r}]", field="parameters")
        try:
            num = float(value) if not isinstance(value, int) else value
        except ValueError:
            raise SqlError(f"Parameter at position [{i}] is not a number: [{value}]", field="parameters") from None
        return exp.Literal.number(num)
    if ptype == "BOOLEAN":
        return exp.Boolean(this=bool(value) if not isinstance(value, str) else value.lower() == "true")
    if ptype in ("TIMESTAMP", "DATE"):
        return exp.Cast(this=exp.Literal.string(str(value)), to=exp.DataType.build(ptype))
    if ptype in ("VARCHAR", "CHAR", "STRING"):
        return exp.Literal.string(str(value))
    raise SqlUnsupported(f"Parameter at position [{i}] has unsupported type [{ptype}]", field="parameters")


def bind_parameters(tree: exp.Expr, parameters: Sequence[Any] | None) -> exp.Expr:
    """Replace each ``?`` by its parameter's literal, in order; a missing or extra parameter is an error."""
    holders = list(tree.find_all(exp.Placeholder, bfs=False))  # depth-first: the order they are written
    params = list(parameters or [])
    if len(holders) > len(params):
        raise SqlError(f"No value bound for parameter (position [{len(params) + 1}])", field="parameters")
    for i, (holder, param) in enumerate(zip(holders, params, strict=False), start=1):
        holder.replace(_param_literal(i, param))
    return tree


# -- rewrites ------------------------------------------------------------------------------------


def _frag(sql: str, **args: exp.Expr) -> exp.Expr:
    """A DuckDB fragment whose ``{name}`` holes take the given (already rewritten) expressions."""
    tree = sqlglot.parse_one(sql.format(**{k: f"__hole_{k}" for k in args}), read="duckdb")
    for col in list(tree.find_all(exp.Column)):
        name = col.name
        if name.startswith("__hole_"):
            col.replace(args[name[len("__hole_") :]].copy())
    return tree


def _literal(node: exp.Expr | None, function: str, what: str) -> Any:
    if node is None:
        return None
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else node.to_py()
    if isinstance(node, exp.Null):
        return None
    raise SqlUnsupported(f"{function} needs a literal {what}")


def _check_tz(args: list[exp.Expr], index: int, function: str) -> None:
    if len(args) > index:
        tz = _literal(args[index], function, "time zone")
        if tz is not None and str(tz).upper() not in ("UTC", "ETC/UTC", "Z", "+00:00", "GMT"):
            raise SqlUnsupported(f"{function} with time zone [{tz}] (only UTC is supported)")


def _origin_ms(node: exp.Expr | None, function: str) -> int | None:
    if node is None or isinstance(node, exp.Null):
        return None
    text = node.this.this if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) else None
    if text is None and isinstance(node, exp.Literal) and node.is_string:
        text = node.this
    if text is None:
        raise SqlUnsupported(f"{function} needs a literal origin timestamp")
    return joda.parse_instant_ms(text, function)


def _nargs(function: str, args: list[exp.Expr], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise SqlError(f"Function [{function}] takes {want} arguments, got [{len(args)}]")


def _period(args: list[exp.Expr], function: str) -> Period:
    return parse_period(_literal(args[1], function, "period"), function)


def _time_floor(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_FLOOR", args, 2, 4)
    _check_tz(args, 3, "TIME_FLOOR")
    origin = _origin_ms(args[2] if len(args) > 2 else None, "TIME_FLOOR")
    return _frag(floor_sql("{ts}", _period(args, "TIME_FLOOR"), "TIME_FLOOR", origin), ts=args[0])


def _time_ceil(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_CEIL", args, 2, 4)
    _check_tz(args, 3, "TIME_CEIL")
    origin = _origin_ms(args[2] if len(args) > 2 else None, "TIME_CEIL")
    period = _period(args, "TIME_CEIL")
    floor = floor_sql("{ts}", period, "TIME_CEIL", origin)
    return _frag(f"CASE WHEN {floor} = {{ts}} THEN {{ts}} ELSE {floor} + {period.interval_sql()} END", ts=args[0])


def _time_shift(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_SHIFT", args, 3, 4)
    _check_tz(args, 3, "TIME_SHIFT")
    period = _period(args, "TIME_SHIFT")
    return _frag(f"{{ts}} + CAST({{step}} AS BIGINT) * {period.interval_sql()}", ts=args[0], step=args[2])


_EXTRACT = {
    "EPOCH": "epoch_ms({ts}) // 1000",
    "MILLISECOND": "millisecond({ts}) % 1000",
    "SECOND": "second({ts})",
    "MINUTE": "minute({ts})",
    "HOUR": "hour({ts})",
    "DAY": "day({ts})",
    "DOW": "isodow({ts})",
    "ISODOW": "isodow({ts})",
    "DOY": "dayofyear({ts})",
    "WEEK": "week({ts})",
    "MONTH": "month({ts})",
    "QUARTER": "quarter({ts})",
    "YEAR": "year({ts})",
    "ISOYEAR": "isoyear({ts})",
    "DECADE": "year({ts}) // 10",
    "CENTURY": "ceil(year({ts}) / 100.0)",
    "MILLENNIUM": "ceil(year({ts}) / 1000.0)",
}


def _extract(unit: object, ts: exp.Expr, function: str) -> exp.Expr:
    key = str(unit).upper()
    if key == "DAYOFWEEK":
        key = "DOW"
    if key not in _EXTRACT:
        raise SqlUnsupported(f"{function} with unit [{unit}] (supported: {', '.join(_EXTRACT)})")
    return _frag(_EXTRACT[key], ts=ts)


def _time_extract(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_EXTRACT", args, 1, 3)
    _check_tz(args, 2, "TIME_EXTRACT")
    unit = _literal(args[1], "TIME_EXTRACT", "unit") if len(args) > 1 else "MILLISECOND"
    return _extract(unit, args[0], "TIME_EXTRACT")


def _time_parse(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_PARSE", args, 1, 3)
    _check_tz(args, 2, "TIME_PARSE")
    pattern = _literal(args[1], "TIME_PARSE", "pattern") if len(args) > 1 else None
    if pattern is None:
        return _frag("__druid_time_parse(CAST({s} AS VARCHAR))", s=args[0])
    fmt = joda.to_strftime(pattern, "TIME_PARSE").replace("'", "''")
    return _frag(f"try_strptime(CAST({{s}} AS VARCHAR), '{fmt}')", s=args[0])


def _time_format(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_FORMAT", args, 1, 3)
    _check_tz(args, 2, "TIME_FORMAT")
    pattern = _literal(args[1], "TIME_FORMAT", "pattern") if len(args) > 1 else None
    fmt = joda.ISO_STRFTIME if pattern is None else joda.to_strftime(pattern, "TIME_FORMAT")
    return _frag(f"strftime({{ts}}, '{fmt.replace(chr(39), chr(39) * 2)}')", ts=args[0])


def _time_in_interval(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIME_IN_INTERVAL", args, 2, 2)
    text = _literal(args[1], "TIME_IN_INTERVAL", "ISO-8601 interval")
    iv = Interval.parse(str(text), field="TIME_IN_INTERVAL interval")
    return _frag(f"({{ts}} >= epoch_ms({iv.start}) AND {{ts}} < epoch_ms({iv.end}))", ts=args[0])


_UNITS = {
    "MICROSECOND": "microsecond",
    "MILLISECOND": "millisecond",
    "SECOND": "second",
    "MINUTE": "minute",
    "HOUR": "hour",
    "DAY": "day",
    "WEEK": "week",
    "MONTH": "month",
    "QUARTER": "quarter",
    "YEAR": "year",
}


def _unit(node: exp.Expr, function: str) -> str:
    name = node.name.upper() if isinstance(node, exp.Column | exp.Var | exp.Identifier) else ""
    if isinstance(node, exp.Literal) and node.is_string:
        name = node.this.upper()
    if name.startswith("SQL_TSI_"):
        name = name[len("SQL_TSI_") :]
    if name not in _UNITS:
        raise SqlUnsupported(f"{function} with unit [{node.sql()}] (supported: {', '.join(_UNITS)})")
    return _UNITS[name]


def _timestampadd(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIMESTAMPADD", args, 3, 3)
    unit = _unit(args[0], "TIMESTAMPADD")
    if unit == "quarter":
        return _frag("{ts} + CAST({n} AS BIGINT) * INTERVAL '3 months'", ts=args[2], n=args[1])
    return _frag(f"{{ts}} + CAST({{n}} AS BIGINT) * INTERVAL '1 {unit}'", ts=args[2], n=args[1])


def _timestampdiff(args: list[exp.Expr]) -> exp.Expr:
    _nargs("TIMESTAMPDIFF", args, 3, 3)
    unit = _unit(args[0], "TIMESTAMPDIFF")
    # Whole units elapsed, as Druid counts them (date_diff would count boundaries crossed); months with
    # Joda's rule that Jan 31 to Feb 29 is not yet a month.
    if unit in ("month", "quarter", "year"):
        per = {"month": 1, "quarter": 3, "year": 12}[unit]
        return _frag(f"trunc(__druid_months_between({{a}}, {{b}}) / {per})", a=args[1], b=args[2])
    return _frag(f"date_sub('{unit}', {{a}}, {{b}})", a=args[1], b=args[2])


def _by_time(function: str, agg: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    def rewrite(args: list[exp.Expr]) -> exp.Expr:
        _nargs(function, args, 1, 2)
        return _frag(f"{agg}({{x}}, {TIME})", x=args[0])

    return rewrite


def _by_column(function: str, agg: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    def rewrite(args: list[exp.Expr]) -> exp.Expr:
        _nargs(function, args, 2, 3)
        return _frag(f"{agg}({{x}}, {{t}})", x=args[0], t=args[1])

    return rewrite


def _simple(function: str, template: str, low: int, high: int) -> Callable[[list[exp.Expr]], exp.Expr]:
    names = ["a", "b", "c"]

    def rewrite(args: list[exp.Expr]) -> exp.Expr:
        _nargs(function, args, low, high)
        return _frag(template, **dict(zip(names, args, strict=False)))

    return rewrite


def _regexp_extract(args: list[exp.Expr]) -> exp.Expr:
    _nargs("REGEXP_EXTRACT", args, 2, 3)
    index = args[2] if len(args) > 2 else exp.Literal.number(0)
    # Druid answers NULL when nothing matches; DuckDB's regexp_extract answers ''.
    return _frag(
        "CASE WHEN regexp_matches({s}, {p}) THEN regexp_extract({s}, {p}, {i}) END", s=args[0], p=args[1], i=index
    )


def _parse_long(args: list[exp.Expr]) -> exp.Expr:
    _nargs("PARSE_LONG", args, 1, 2)
    radix = _literal(args[1], "PARSE_LONG", "radix") if len(args) > 1 else 10
    if radix != 10:
        raise SqlUnsupported(f"PARSE_LONG with radix [{radix}] (only 10 is supported)")
    return _frag("TRY_CAST({s} AS BIGINT)", s=args[0])


def _approx_quantile(function: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    def rewrite(args: list[exp.Expr]) -> exp.Expr:
        _nargs(function, args, 2, 3)
        return _frag("approx_quantile({x}, {p})", x=args[0], p=args[1])

    return rewrite


REWRITES: dict[str, Callable[[list[exp.Expr]], exp.Expr]] = {
    "TIME_FLOOR": _time_floor,
    "TIME_CEIL": _time_ceil,
    "TIME_SHIFT": _time_shift,
    "TIME_EXTRACT": _time_extract,
    "TIME_PARSE": _time_parse,
    "TIME_FORMAT": _time_format,
    "TIME_IN_INTERVAL": _time_in_interval,
    "MILLIS_TO_TIMESTAMP": _simple("MILLIS_TO_TIMESTAMP", "epoch_ms(CAST({a} AS BIGINT))", 1, 1),
    "TIMESTAMP_TO_MILLIS": _simple("TIMESTAMP_TO_MILLIS", "epoch_ms({a})", 1, 1),
    "TIMESTAMPADD": _timestampadd,
    "TIMESTAMPDIFF": _timestampdiff,
    "LATEST": _by_time("LATEST", "arg_max"),
    "EARLIEST": _by_time("EARLIEST", "arg_min"),
    "LATEST_BY": _by_column("LATEST_BY", "arg_max"),
    "EARLIEST_BY": _by_column("EARLIEST_BY", "arg_min"),
    "APPROX_COUNT_DISTINCT": _simple("APPROX_COUNT_DISTINCT", "approx_count_distinct({a})", 1, 1),
    "APPROX_COUNT_DISTINCT_BUILTIN": _simple("APPROX_COUNT_DISTINCT_BUILTIN", "approx_count_distinct({a})", 1, 1),
    "APPROX_COUNT_DISTINCT_DS_HLL": _simple("APPROX_COUNT_DISTINCT_DS_HLL", "approx_count_distinct({a})", 1, 3),
    "APPROX_COUNT_DISTINCT_DS_THETA": _simple("APPROX_COUNT_DISTINCT_DS_THETA", "approx_count_distinct({a})", 1, 2),
    "APPROX_QUANTILE": _approx_quantile("APPROX_QUANTILE"),
    "APPROX_QUANTILE_DS": _approx_quantile("APPROX_QUANTILE_DS"),
    "STRLEN": _simple("STRLEN", "length({a})", 1, 1),
    "CONTAINS_STRING": _simple("CONTAINS_STRING", "contains({a}, {b})", 2, 2),
    "ICONTAINS_STRING": _simple("ICONTAINS_STRING", "contains(lower({a}), lower({b}))", 2, 2),
    "TEXTCAT": _simple("TEXTCAT", "{a} || {b}", 2, 2),
    "REGEXP_LIKE": _simple("REGEXP_LIKE", "regexp_matches({a}, {b})", 2, 2),
    "REGEXP_EXTRACT": _regexp_extract,
    "PARSE_LONG": _parse_long,
    "BITWISE_AND": _simple("BITWISE_AND", "({a} & {b})", 2, 2),
    "BITWISE_OR": _simple("BITWISE_OR", "({a} | {b})", 2, 2),
    "BITWISE_XOR": _simple("BITWISE_XOR", "xor({a}, {b})", 2, 2),
}

UNSUPPORTED_PREFIXES = (
    "DS_",
    "HLL_SKETCH",
    "THETA_SKETCH",
    "BLOOM_FILTER",
    "TDIGEST",
    "QUANTILE",
    "MV_",
    "JSON_",
    "VARIANCE_",
    "STDDEV_",
    "SPATIAL",
    "IPV4_",
)
UNSUPPORTED = {
    "LOOKUP",
    "STRING_FORMAT",
    "ARRAY_TO_MV",
    "STRING_TO_MV",
    "PARSE_JSON",
    "TRY_PARSE_JSON",
    "TO_JSON_STRING",
    "JSON_VALUE",
    "JSON_QUERY",
    "NESTED_AGG",
    "ARRAY_CONCAT_AGG",
    "GROUPING_SETS",
    "HUMAN_READABLE_BINARY_BYTE_FORMAT",
    "HUMAN_READABLE_DECIMAL_BYTE_FORMAT",
    "HUMAN_READABLE_DECIMAL_FORMAT",
    "COMPLEX_DECODE_BASE64",
    "DECODE_BASE64_COMPLEX",
    "BITWISE_CONVERT_DOUBLE_TO_LONG_BITS",
    "BITWISE_CONVERT_LONG_BITS_TO_DOUBLE",
    "BITWISE_COMPLEMENT",
    "BITWISE_SHIFT_LEFT",
    "BITWISE_SHIFT_RIGHT",
}

_FLOOR_UNITS = {
    "SECOND": "PT1S",
    "MINUTE": "PT1M",
    "HOUR": "PT1H",
    "DAY": "P1D",
    "WEEK": "P1W",
    "MONTH": "P1M",
    "QUARTER": "P3M",
    "YEAR": "P1Y",
}


def _anonymous(name: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    return lambda args: exp.Anonymous(this=name, expressions=args)


class DruidSQL(Druid):
    """Druid's dialect with Calcite's typing: integer division stays integral, LOG(x) is ln(x)."""

    TYPED_DIVISION = True
    LOG_BASE_FIRST = True

    class Parser(DruidParser):
        LOG_DEFAULTS_TO_LN = True
        # Every function we rewrite reaches the rewrite as itself, with Druid's argument order, rather
        # than as sqlglot's generic reading of a same-named function (TIMESTAMPDIFF, REGEXP_EXTRACT, ...).
        FUNCTIONS = {**DruidParser.FUNCTIONS, **{name: _anonymous(name) for name in REWRITES}}


def _floor_ceil_to(node: exp.Floor | exp.Ceil) -> exp.Expr:
    function = "FLOOR" if isinstance(node, exp.Floor) else "CEIL"
    unit = node.args["to"].name.upper()
    if unit not in _FLOOR_UNITS:
        raise SqlUnsupported(f"{function}(... TO {unit}) (supported units: {', '.join(_FLOOR_UNITS)})")
    args = [node.this, exp.Literal.string(_FLOOR_UNITS[unit])]
    return _time_floor(args) if function == "FLOOR" else _time_ceil(args)


def _function_name(node: exp.Expr) -> str | None:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    return None


def _rewrite_node(node: exp.Expr) -> exp.Expr:
    name = _function_name(node)
    if name is not None:
        if name in REWRITES:
            return REWRITES[name](list(node.expressions))
        if name in UNSUPPORTED or name.startswith(UNSUPPORTED_PREFIXES):
            raise SqlUnsupported(f"Function [{name}] is not supported")
        return node
    if isinstance(node, exp.Floor | exp.Ceil) and node.args.get("to") is not None:
        return _floor_ceil_to(node)
    if isinstance(node, exp.Extract):
        return _extract(node.this.name, node.expression, "EXTRACT")
    if isinstance(node, exp.CurrentTimestamp):
        # Druid's CURRENT_TIMESTAMP is a TIMESTAMP in UTC; connections run with TimeZone = 'UTC'.
        return exp.Cast(this=node, to=exp.DataType.build("TIMESTAMP"))
    if isinstance(node, exp.Cast) and _is_time_column(node.this) and node.to.is_type(*exp.DataType.INTEGER_TYPES):
        return _frag("epoch_ms({t})", t=node.this)
    if isinstance(node, exp.ApproxDistinct):
        return node
    if isinstance(node, exp.Table):
        return _rewrite_table(node)
    return node


def _is_time_column(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) and node.name == TIME


def _rewrite_table(node: exp.Table) -> exp.Expr:
    db = node.db.lower() if node.db else ""
    if db == "information_schema":
        node.set("db", exp.to_identifier(INFO_SCHEMA))
    elif db == "lookup":
        raise SqlUnsupported(f"Lookup table [{node.name}]: lookups are not supported")
    return node


def rewrite(tree: exp.Expr) -> exp.Expr:
    """Apply the Druid rewrites bottom-up (every node after its arguments)."""
    for node in reversed(list(tree.walk(bfs=False))):
        new = _rewrite_node(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


_INGEST = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(INSERT|REPLACE)\b", re.IGNORECASE | re.DOTALL)


INGEST_ON_QUERY_API = (
    "Cannot execute INSERT or REPLACE on /druid/v2/sql: submit it to /druid/v2/sql/task (SQL-based ingestion)"
)


def is_ingestion(sql: str) -> bool:
    """Whether a statement is SQL-based ingestion (INSERT or REPLACE, after any leading comments)."""
    return _INGEST.match(sql) is not None


def check_query(tree: exp.Expr) -> None:
    """Only queries run on /druid/v2/sql; INSERT and REPLACE belong to /druid/v2/sql/task."""
    if isinstance(tree, exp.Insert) or tree.key in ("replace",):
        raise SqlError(INGEST_ON_QUERY_API)
    if not isinstance(tree, exp.Query):
        raise SqlUnsupported(f"Statement [{tree.key.upper()}] is not supported; only SELECT queries run here")


def to_duckdb(sql: str | exp.Expr, parameters: Sequence[Any] | None = None) -> str:
    """DuckDB SQL answering a Druid SQL query (a string, or a tree from ``parse``)."""
    tree = parse(sql) if isinstance(sql, str) else sql.copy()
    tree = bind_parameters(tree, parameters)
    tree = rewrite(tree)
    return tree.sql(dialect="duckdb")
