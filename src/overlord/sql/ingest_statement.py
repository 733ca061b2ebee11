"""Druid's SQL-based ingestion statements, parsed: ``INSERT``/``REPLACE`` over ``TABLE(EXTERN(...))``.

Only the statement's frame is parsed here (target, ``OVERWRITE``, ``PARTITIONED BY``, ``CLUSTERED BY``,
the ``EXTERN`` call and the outer SELECT list); the SELECT itself is left as text for the SQL engine,
with the ``EXTERN`` call replaced by the table name ``EXTERN_TABLE``. Errors are ``SqlError``
(a 400) naming the line and column, as Druid's planner does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from overlord.core import granularity as granularities
from overlord.core.granularity import Granularity
from overlord.errors import InvalidGranularity, SqlError
from overlord.isotime import Interval
from overlord.sql.sql_tokens import (
    Token,
    bind_parameters,
    fail,
    ident_value,
    matching,
    split_commas,
    string_value,
    tokenize,
    top_level,
)
from overlord.sql.time_condition import ALL_TIME, TIME, overwrite_intervals

EXTERN_TABLE = "__extern"
SUPPORTED_SOURCES = ("local", "inline")
SUPPORTED_FORMATS = ("json", "csv", "tsv")

# Aggregates whose partial results combine into the final one with the given function.
COMBINABLE = {"SUM": "sum", "COUNT": "sum", "MIN": "min", "MAX": "max"}
AGGREGATES = frozenset(
    {
        *COMBINABLE,
        "AVG",
        "ANY_VALUE",
        "APPROX_COUNT_DISTINCT",
        "APPROX_COUNT_DISTINCT_BUILTIN",
        "APPROX_COUNT_DISTINCT_DS_HLL",
        "APPROX_COUNT_DISTINCT_DS_THETA",
        "APPROX_QUANTILE",
        "APPROX_QUANTILE_DS",
        "ARRAY_AGG",
        "BIT_AND",
        "BIT_OR",
        "BIT_XOR",
        "BLOOM_FILTER",
        "DS_HLL",
        "DS_THETA",
        "DS_QUANTILES_SKETCH",
        "EARLIEST",
        "EARLIEST_BY",
        "LATEST",
        "LATEST_BY",
        "STDDEV",
        "STDDEV_POP",
        "STDDEV_SAMP",
        "STRING_AGG",
        "LISTAGG",
        "VARIANCE",
        "VAR_POP",
        "VAR_SAMP",
        "GROUPING",
    }
)
_SQL_TYPES = {
    "VARCHAR": "string",
    "CHAR": "string",
    "STRING": "string",
    "BIGINT": "long",
    "INTEGER": "long",
    "INT": "long",
    "SMALLINT": "long",
    "TINYINT": "long",
    "BOOLEAN": "long",
    "DOUBLE": "double",
    "DECIMAL": "double",
    "FLOAT": "float",
    "REAL": "float",
}
_SIGNATURE_TYPES = {"string": "string", "long": "long", "double": "double", "float": "float", "complex<json>": "string"}
_NOT_ALIASES = frozenset({"NULL", "TRUE", "FALSE", "END", "UNKNOWN"})
_PARTITION_WORDS = {
    "HOUR": "hour",
    "DAY": "day",
    "WEEK": "week",
    "MONTH": "month",
    "QUARTER": "quarter",
    "YEAR": "year",
}


@dataclass(frozen=True)
class ExternSpec:
    """What ``EXTERN`` reads: Druid's inputSource and inputFormat JSON and the columns' types."""

    input_source: dict[str, Any]
    input_format: dict[str, Any]
    signature: tuple[tuple[str, str], ...]  # (column, Druid type: string/long/double/float)

    def to_json(self) -> dict[str, Any]:
        """As the report's stage input (Druid's ``external`` input spec)."""
        return {
            "type": "external",
            "inputSource": self.input_source,
            "inputFormat": self.input_format,
            "signature": [{"name": n, "type": t.upper()} for n, t in self.signature],
        }


@dataclass(frozen=True)
class SelectItem:
    """One column of the outer SELECT; ``aggregate`` is the combining function, ``"other"`` when the
    column aggregates but partial results cannot be combined, None for a grouping column."""

    name: str | None
    expr: str
    aggregate: str | None


@dataclass(frozen=True)
class IngestStatement:
    mode: str  # INSERT or REPLACE
    data_source: str
    query: str  # the SELECT, reading EXTERN_TABLE
    extern: ExternSpec
    partitioned_by: str
    segment_granularity: Granularity
    clustered_by: tuple[str, ...]
    replace_intervals: tuple[Interval, ...] | None  # REPLACE only; OVERWRITE ALL: one eternity interval
    items: tuple[SelectItem, ...]
    group_by: bool
    filter_count_query: str | None  # counts rows passing the WHERE, when the SELECT reads EXTERN directly

    @property
    def replace_all(self) -> bool:
        return self.replace_intervals == (ALL_TIME,)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.items if i.aggregate is not None and i.name)

    @property
    def combinable(self) -> bool:
        """Whether partial results of several workers can be rolled up into the exact final rows."""
        return all(i.aggregate in (None, "sum", "min", "max") for i in self.items)


class _Cursor:
    def __init__(self, sql: str, toks: list[Token]) -> None:
        self.sql, self.toks, self.i = sql, toks, 0

    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self, expected: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise fail(self.sql, len(self.sql), f"Unexpected end of statement: expected {expected}")
        self.i += 1
        return tok

    def word(self, *words: str) -> Token:
        tok = self.next(" or ".join(words))
        if not tok.is_(*words):
            raise fail(self.sql, tok.start, f"Received an unexpected token [{tok.text}]; expected {' or '.join(words)}")
        return tok

    def op(self, text: str) -> Token:
        tok = self.next(f"[{text}]")
        if tok.text != text:
            raise fail(self.sql, tok.start, f"Received an unexpected token [{tok.text}]; expected [{text}]")
        return tok

    def error(self, message: str, tok: Token | None = None) -> SqlError:
        tok = tok or self.peek()
        return fail(self.sql, tok.start if tok else len(self.sql), message)


def parse(sql: str, parameters: list[Any] | None = None) -> IngestStatement:
    """Parse an INSERT or REPLACE statement; anything else (or anything unsupported) is a 400."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("query: the SQL statement is empty", field="query")
    sql = bind_parameters(sql, parameters) if parameters else sql
    toks = tokenize(sql)
    while toks and toks[-1].text == ";":
        toks.pop()
    if any(t.text == ";" for t in toks):
        raise fail(sql, next(t.start for t in toks if t.text == ";"), "Only one statement may be submitted")
    if any(t.kind == "op" and t.text == "?" for t in toks):
        raise fail(
            sql,
            next(t.start for t in toks if t.text == "?"),
            "The statement has dynamic parameters (?) but no parameters were given",
        )
    cur = _Cursor(sql, toks)
    first = cur.next("INSERT or REPLACE")
    if first.is_("SELECT", "WITH", "EXPLAIN", "VALUES"):
        raise cur.error(
            "SQL-based ingestion runs INSERT and REPLACE statements; send SELECT queries to /druid/v2/sql", first
        )
    if not first.is_("INSERT", "REPLACE"):
        raise cur.error(f"Received an unexpected token [{first.text}]; expected INSERT or REPLACE", first)
    mode = first.upper
    cur.word("INTO")
    data_source = _table_name(cur)
    replace: tuple[Interval, ...] | None = None
    overwrite_tokens: list[Token] = []
    nxt = cur.peek()
    if nxt is not None and nxt.text == "(":
        raise cur.error(f"Operation [{mode}] cannot be run with a target column list", nxt)
    if mode == "REPLACE":
        cur.word("OVERWRITE")
        tok = cur.next("ALL or WHERE")
        if tok.is_("ALL"):
            replace = (ALL_TIME,)
        elif tok.is_("WHERE"):
            while (t := cur.peek()) is not None and not t.is_("SELECT", "WITH"):
                overwrite_tokens.append(cur.next("condition"))
            if not overwrite_tokens:
                raise cur.error("OVERWRITE WHERE needs a condition on __time")
        else:
            raise cur.error(f"Received an unexpected token [{tok.text}]; expected ALL or WHERE", tok)
    elif nxt is not None and nxt.is_("OVERWRITE"):
        raise cur.error("OVERWRITE is only valid in REPLACE statements", nxt)
    q_start = cur.i
    if cur.peek() is None or not cur.peek().is_("SELECT", "WITH"):  # type: ignore[union-attr]
        raise cur.error(f"{mode} INTO {data_source} must be followed by a SELECT query")
    top = top_level(toks, q_start)
    part = next((j for j in top if toks[j].is_("PARTITIONED")), None)
    if part is None:
        raise fail(
            sql, None, f"Operation [{mode}] requires a PARTITIONED BY to be explicitly defined, but none was found"
        )
    clus = next((j for j in top if j > part and toks[j].is_("CLUSTERED")), None)
    for j in top:
        if q_start <= j < part and toks[j].is_("ORDER") and j + 1 < len(toks) and toks[j + 1].is_("BY"):
            raise fail(
                sql,
                toks[j].start,
                f"Cannot use an ORDER BY clause on a Query of type [{mode}], use CLUSTERED BY instead",
            )
    query_toks = toks[q_start:part]
    cur.i = part
    cur.word("PARTITIONED")
    cur.word("BY")
    partitioned_by, gran = _partitioned_by(cur, clus if clus is not None else len(toks))
    clustered: list[Token] = []
    if clus is not None:
        cur.i = clus
        cur.word("CLUSTERED")
        cur.word("BY")
        clustered = toks[cur.i :]
        if not clustered:
            raise cur.error("CLUSTERED BY needs at least one column")
        cur.i = len(toks)
    if cur.peek() is not None:
        raise cur.error(f"Received an unexpected token [{cur.peek().text}]")  # type: ignore[union-attr]
    query, extern = _replace_extern(sql, query_toks, query_toks[0].start)
    items, group_by, where = _outer_select(query)
    clustered_by = _clustered_by(sql, clustered, items)
    if overwrite_tokens:
        replace = overwrite_intervals(sql, overwrite_tokens, gran)
    return IngestStatement(
        mode=mode,
        data_source=data_source,
        query=query,
        extern=extern,
        partitioned_by=partitioned_by,
        segment_granularity=gran,
        clustered_by=clustered_by,
        replace_intervals=replace,
        items=items,
        group_by=group_by,
        filter_count_query=where,
    )


def _table_name(cur: _Cursor) -> str:
    tok = cur.next("a table name")
    if tok.kind not in ("word", "qident"):
        raise cur.error(f"Received an unexpected token [{tok.text}]; expected a table name", tok)
    name = ident_value(tok)
    nxt = cur.peek()
    if nxt is not None and nxt.text == ".":
        if name.lower() != "druid":
            raise cur.error(f"Cannot {('write to')} schema [{name}]: only the [druid] schema holds data sources", tok)
        cur.next(".")
        tok = cur.next("a table name")
        if tok.kind not in ("word", "qident"):
            raise cur.error(f"Received an unexpected token [{tok.text}]; expected a table name", tok)
        name = ident_value(tok)
    return name


def _partitioned_by(cur: _Cursor, end: int) -> tuple[str, Granularity]:
    toks = cur.toks[cur.i : end]
    if not toks:
        raise cur.error("PARTITIONED BY needs a granularity")
    text = cur.sql[toks[0].start : toks[-1].end]
    cur.i = end
    value: str | None = None
    if len(toks) == 1 and toks[0].kind == "string":
        value = string_value(toks[0])
    elif len(toks) == 1 and toks[0].kind == "word":
        w = toks[0].upper
        value = "all" if w == "ALL" else _PARTITION_WORDS.get(w, toks[0].text)
    elif [t.upper for t in toks] == ["ALL", "TIME"]:
        value = "all"
    elif toks[0].is_("TIME_FLOOR") and len(toks) == 6 and toks[4].kind == "string" and ident_value(toks[2]) == TIME:
        value = string_value(toks[4])
    elif toks[0].is_("FLOOR") and len(toks) == 6 and toks[3].is_("TO") and ident_value(toks[2]) == TIME:
        value = _PARTITION_WORDS.get(toks[4].upper)
    if value is None:
        raise fail(
            cur.sql,
            toks[0].start,
            f"Invalid granularity [{text}] after PARTITIONED BY: expected HOUR, DAY, MONTH, YEAR, ALL, ALL TIME, "
            "an ISO-8601 period string, TIME_FLOOR(__time, 'period') or FLOOR(__time TO unit)",
        )
    try:
        gran = granularities.parse(value)
    except InvalidGranularity as exc:
        raise fail(
            cur.sql, toks[0].start, f"Invalid granularity [{text}] after PARTITIONED BY: {exc.message}"
        ) from None
    if gran.is_none:
        raise fail(cur.sql, toks[0].start, "PARTITIONED BY granularity cannot be NONE")
    return text, gran


def _string_arg(sql: str, tok: Token, what: str) -> Any:
    if tok.kind != "string":
        raise fail(sql, tok.start, f"EXTERN: {what} must be a string literal holding JSON")
    try:
        return orjson.loads(string_value(tok))
    except orjson.JSONDecodeError as exc:
        raise fail(sql, tok.start, f"EXTERN: {what} is not valid JSON: {exc}") from None


def _extern_args(sql: str, toks: list[Token]) -> dict[str, Token]:
    """EXTERN's arguments, positional or named (``inputSource => '...'``)."""
    groups = split_commas(toks)
    names = ("inputSource", "inputFormat", "signature")
    out: dict[str, Token] = {}
    for i, g in enumerate(groups):
        if len(g) == 3 and g[1].text == "=>":
            name = ident_value(g[0])
            if name not in names:
                raise fail(sql, g[0].start, f"EXTERN has no parameter [{name}]; its parameters are {list(names)}")
            out[name] = g[2]
        elif len(g) == 1 and i < len(names):
            out[names[i]] = g[0]
        else:
            where = g[0].start if g else (toks[0].start if toks else None)
            raise fail(sql, where, "EXTERN expects (inputSource, inputFormat[, signature]) as string literals")
    return out


def _signature(sql: str, tok: Token) -> list[tuple[str, str]]:
    raw = _string_arg(sql, tok, "signature")
    if not isinstance(raw, list) or not raw:
        raise fail(sql, tok.start, 'EXTERN: signature must be a non-empty JSON list of {"name", "type"}')
    out = []
    for col in raw:
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            raise fail(sql, tok.start, 'EXTERN: each signature column must be {"name": ..., "type": ...}')
        kind = _SIGNATURE_TYPES.get(str(col.get("type", "string")).lower())
        if kind is None:
            raise fail(sql, tok.start, f"EXTERN: column [{col['name']}] has unsupported type [{col.get('type')}]")
        out.append((col["name"], kind))
    return out


def _extend(sql: str, toks: list[Token]) -> list[tuple[str, str]]:
    """``EXTEND (name TYPE, ...)`` column declarations."""
    out = []
    groups = split_commas(toks)
    for g in groups:
        if len(g) < 2 or g[0].kind not in ("word", "qident"):
            raise fail(sql, g[0].start if g else None, "EXTEND expects (column TYPE, ...)")
        sql_type = " ".join(t.upper or t.text for t in g[1:])
        kind = _SQL_TYPES.get(sql_type)
        if kind is None:
            raise fail(sql, g[1].start, f"EXTEND: column [{ident_value(g[0])}] has unsupported type [{sql_type}]")
        out.append((ident_value(g[0]), kind))
    return out


def _replace_extern(sql: str, toks: list[Token], base: int) -> tuple[str, ExternSpec]:
    """The query with its one ``TABLE(EXTERN(...)) [EXTEND (...)]`` replaced by EXTERN_TABLE."""
    spans: list[tuple[int, int, ExternSpec]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if (
            t.is_("TABLE")
            and i + 3 < len(toks)
            and toks[i + 1].text == "("
            and toks[i + 2].kind == "word"
            and toks[i + 3].text == "("
        ):
            fn = toks[i + 2].upper
            if fn != "EXTERN":
                raise fail(sql, toks[i + 2].start, f"Table function [{toks[i + 2].text}] is not supported; use EXTERN")
            close_fn = matching(toks, i + 3)
            close_tbl = close_fn + 1
            if close_fn < 0 or close_tbl >= len(toks) or toks[close_tbl].text != ")":
                raise fail(sql, t.start, "Unbalanced parentheses in TABLE(EXTERN(...))")
            args = _extern_args(sql, toks[i + 4 : close_fn])
            if "inputSource" not in args or "inputFormat" not in args:
                raise fail(sql, t.start, "EXTERN needs inputSource and inputFormat")
            source = _string_arg(sql, args["inputSource"], "inputSource")
            fmt = _string_arg(sql, args["inputFormat"], "inputFormat")
            _check_source(sql, args["inputSource"], source, fmt, args["inputFormat"])
            end = close_tbl
            j = close_tbl + 1
            extend: list[tuple[str, str]] | None = None
            if j < len(toks) and toks[j].is_("EXTEND"):
                j += 1
            if j < len(toks) and toks[j].text == "(":
                close_ext = matching(toks, j)
                if close_ext < 0:
                    raise fail(sql, toks[j].start, "Unbalanced parentheses in EXTEND")
                extend = _extend(sql, toks[j + 1 : close_ext])
                end = close_ext
            if extend is not None and "signature" in args:
                raise fail(sql, t.start, "EXTERN takes either a signature or EXTEND columns, not both")
            if extend is None and "signature" not in args:
                raise fail(sql, t.start, "EXTERN needs a signature (third argument) or EXTEND (column TYPE, ...)")
            sig = extend if extend is not None else _signature(sql, args["signature"])
            spans.append((t.start, toks[end].end, ExternSpec(source, fmt, tuple(sig))))
            i = end + 1
            continue
        i += 1
    if not spans:
        raise fail(
            sql,
            None,
            "SQL-based ingestion here reads external data only: the query must read FROM TABLE(EXTERN(...))",
        )
    if len(spans) > 1:
        raise fail(sql, spans[1][0], "Only one EXTERN input per statement is supported")
    start, end, spec = spans[0]
    q_end = toks[-1].end
    return sql[base:start] + EXTERN_TABLE + sql[end:q_end], spec


def _check_source(sql: str, tok: Token, source: Any, fmt: Any, fmt_tok: Token) -> None:
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise fail(sql, tok.start, 'EXTERN: inputSource must be a JSON object with a "type"')
    if source["type"] not in SUPPORTED_SOURCES:
        raise fail(
            sql,
            tok.start,
            f"EXTERN: input source type [{source['type']}] is not supported; use one of {list(SUPPORTED_SOURCES)}",
        )
    if not isinstance(fmt, dict) or fmt.get("type") not in SUPPORTED_FORMATS:
        kind = fmt.get("type") if isinstance(fmt, dict) else fmt
        raise fail(
            sql, fmt_tok.start, f"EXTERN: input format [{kind}] is not supported; use one of {list(SUPPORTED_FORMATS)}"
        )


def _outer_select(query: str) -> tuple[tuple[SelectItem, ...], bool, str | None]:
    """The outer SELECT's columns, whether it groups, and its WHERE when it reads EXTERN directly."""
    toks = tokenize(query)
    top = top_level(toks)
    selects = [j for j in top if toks[j].is_("SELECT")]
    if not selects:
        raise fail(query, None, "The query has no SELECT")
    sel = selects[-1]
    frm = next((j for j in top if j > sel and toks[j].is_("FROM")), None)
    if frm is None:
        raise fail(query, toks[sel].start, "The SELECT has no FROM clause")
    stops = ("WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "OFFSET", "UNION", "WINDOW")
    clause_ends = [j for j in top if j > frm and toks[j].is_(*stops)]
    from_end = clause_ends[0] if clause_ends else len(toks)
    group_by = any(toks[j].is_("GROUP") for j in clause_ends)
    where = None
    from_toks = toks[frm + 1 : from_end]
    if from_toks and from_toks[0].text == EXTERN_TABLE and len(from_toks) <= 3:
        w = next((j for j in clause_ends if toks[j].is_("WHERE")), None)
        if w is not None and next((j for j in clause_ends if j > w), len(toks)) > w + 1:
            w_end = next((j for j in clause_ends if j > w), len(toks))
            source = query[from_toks[0].start : from_toks[-1].end]
            where = f"SELECT COUNT(*) FROM {source} WHERE {query[toks[w + 1].start : toks[w_end - 1].end]}"
    start = sel + 1
    if start < frm and toks[start].is_("DISTINCT", "ALL"):
        start += 1
    items = []
    bounds = [start] + [j + 1 for j in top_level(toks, start, frm) if toks[j].text == ","] + [frm + 1]
    for a, b in itertools.pairwise(bounds):
        part = toks[a : b - 1]
        if part:
            items.append(_select_item(query, part))
    return tuple(items), group_by, where


def _select_item(query: str, part: list[Token]) -> SelectItem:
    name: str | None = None
    expr = part
    if len(part) >= 3 and part[-2].is_("AS"):
        name, expr = ident_value(part[-1]), part[:-2]
    elif (
        len(part) >= 2
        and part[-1].kind in ("word", "qident")
        and part[-1].upper not in _NOT_ALIASES
        and part[-2].text != "."
        and (part[-2].kind in ("word", "qident", "string", "number") or part[-2].text == ")")
        and not part[-2].is_("AS", "IS", "NOT", "AND", "OR", "THEN", "ELSE", "WHEN", "CASE", "INTERVAL", "TIMESTAMP")
    ):
        name, expr = ident_value(part[-1]), part[:-1]
    elif part[-1].kind in ("word", "qident") and (len(part) == 1 or part[-2].text == "."):
        name = ident_value(part[-1])
    text = query[expr[0].start : expr[-1].end]
    calls = [t.upper for k, t in enumerate(expr[:-1]) if t.kind == "word" and expr[k + 1].text == "("]
    aggregate: str | None = None
    if any(c in AGGREGATES for c in calls):
        aggregate = "other"
        outer = expr[0].upper
        whole = expr[0].kind == "word" and len(expr) > 1 and expr[1].text == "(" and matching(expr, 1) == len(expr) - 1
        distinct = len(expr) > 2 and expr[2].is_("DISTINCT")
        inner_aggs = [c for c in calls[1:] if c in AGGREGATES]
        if whole and outer in COMBINABLE and not distinct and not inner_aggs:
            aggregate = COMBINABLE[outer]
    return SelectItem(name, text, aggregate)


def _clustered_by(sql: str, toks: list[Token], items: tuple[SelectItem, ...]) -> tuple[str, ...]:
    out: list[str] = []
    if not toks:
        return ()
    groups = split_commas(toks)
    for g in groups:
        if len(g) == 2 and g[1].is_("ASC"):
            g = g[:1]
        if len(g) == 2 and g[1].is_("DESC"):
            raise fail(sql, g[1].start, "CLUSTERED BY does not support descending order")
        if len(g) != 1:
            raise fail(sql, g[0].start if g else None, "CLUSTERED BY takes column names or ordinals of the SELECT")
        tok = g[0]
        if tok.kind == "number":
            k = int(float(tok.text))
            if not 1 <= k <= len(items) or items[k - 1].name is None:
                raise fail(sql, tok.start, f"CLUSTERED BY ordinal [{k}] is out of range of the SELECT list")
            out.append(items[k - 1].name or "")
        elif tok.kind in ("word", "qident"):
            out.append(ident_value(tok))
        else:
            raise fail(sql, tok.start, "CLUSTERED BY takes column names or ordinals of the SELECT")
    return tuple(out)
