"""Expression language and filters."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from overlord.ingest import expressions, filters
from overlord.ingest.expressions import ExprError, evaluate
from overlord.isotime import parse_instant_ms

T = parse_instant_ms("2015-09-12T13:45:30.123Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7.0 / 2", 3.5),
        ("7 % 3", 1),
        ("2 ^ 3 ^ 2", 512),
        ("2 ^ 0.5", math.sqrt(2)),
        ("-2 + 5", 3),
        ("1 < 2", 1),
        ("'a' < 'b'", 1),
        ("3 == 3.0", 1),
        ("1 && 0", 0),
        ("1 || 0", 1),
        ("!0", 1),
        ("'a' + 'b'", "ab"),
        ("'n' + 1", "n1"),
        ("concat('a', 'b', 'c')", "abc"),
        ("lower('AbC')", "abc"),
        ("upper('abc')", "ABC"),
        ("strlen('hello')", 5),
        ("substring('hello', 1, 3)", "ell"),
        ("replace('a-b-c', '-', '+')", "a+b+c"),
        ("trim('  x  ')", "x"),
        ("ltrim('  x  ')", "x  "),
        ("rtrim('  x  ')", "  x"),
        ("strpos('hello', 'l')", 2),
        ("strpos('hello', 'z')", -1),
        ("like('hello', 'he%')", 1),
        ("like('hello', 'h_x%')", 0),
        ("nvl(null, 'd')", "d"),
        ("if(1 > 2, 'y', 'n')", "n"),
        ("case_searched(0, 'a', 1, 'b', 'c')", "b"),
        ("case_searched(0, 'a', 'c')", "c"),
        ("cast('12', 'LONG') + 1", 13),
        ("cast(12, 'DOUBLE')", 12.0),
        ("cast(12, 'STRING')", "12"),
        ("null + 1", None),
        ("7 / 0", None),
        (f"timestamp_floor({T}, 'PT1H')", parse_instant_ms("2015-09-12T13:00Z")),
        (f"timestamp_extract({T}, 'HOUR')", 13),
        (f"timestamp_extract({T}, 'DOW')", 6),
        (f"timestamp_format({T})", "2015-09-12T13:45:30.123Z"),
        (f"timestamp_format({T}, 'yyyy-MM-dd')", "2015-09-12"),
        ("timestamp_parse('2015-09-12T13:45:30.123Z')", T),
        ("timestamp_parse('12/09/2015', 'dd/MM/yyyy')", parse_instant_ms("2015-09-12")),
        ("timestamp('2015-09-12T13:45:30.123Z')", T),
        ("timestamp_parse('garbage')", None),
    ],
)
def test_evaluate(text: str, expected: object) -> None:
    assert evaluate(text) == expected


def test_identifiers_and_rows() -> None:
    e = expressions.parse('concat(page, "the user", added * 2)')
    assert e.identifiers == {"page", "the user", "added"}
    assert e({"page": "P", "the user": "-u-", "added": 21}) == "P-u-42"
    assert expressions.parse("added + deleted")({"added": 1.5, "deleted": 1}) == 2.5
    assert expressions.parse("missing")({}) is None


@pytest.mark.parametrize(
    "text",
    [
        "1 +",
        "foo(1)",
        "concat('a'",
        "'unterminated",
        "1 2",
        "",
        "timestamp_floor(x, 'PT1Q')",
        "timestamp_extract(x, 'EON')",
    ],
)
def test_bad_expressions(text: str) -> None:
    with pytest.raises(ExprError):
        expressions.parse(text)


TABLE = pa.table(
    {
        "dim": ["a", "b", None, "abc", "10"],
        "num": [1, 5, 10, None, 20],
        "txt": ["2", "10", "3", "x", None],
    }
)


def _mask(spec: dict) -> list[bool]:
    f = filters.parse_filter(spec)
    return f.mask(filters.table_getter(TABLE), TABLE.num_rows).tolist()


def test_selector_in_not() -> None:
    assert _mask({"type": "selector", "dimension": "dim", "value": "a"}) == [True, False, False, False, False]
    assert _mask({"type": "selector", "dimension": "dim", "value": None}) == [False, False, True, False, False]
    assert _mask({"type": "selector", "dimension": "num", "value": "5"}) == [False, True, False, False, False]
    assert _mask({"type": "in", "dimension": "dim", "values": ["a", "abc"]}) == [True, False, False, True, False]
    assert _mask({"type": "not", "field": {"type": "selector", "dimension": "dim", "value": "a"}}) == [
        False,
        True,
        True,
        True,
        True,
    ]
    assert _mask({"type": "selector", "dimension": "nope", "value": "a"}) == [False] * 5


def test_bound_orderings() -> None:
    lex = {"type": "bound", "dimension": "txt", "lower": "2", "upper": "3"}
    assert _mask(lex) == [True, False, True, False, False]
    num = {"type": "bound", "dimension": "txt", "lower": "2", "upper": "10", "ordering": "numeric"}
    assert _mask(num) == [True, True, True, False, False]
    strict = {
        "type": "bound",
        "dimension": "num",
        "lower": "1",
        "lowerStrict": True,
        "upper": "20",
        "upperStrict": True,
        "ordering": "numeric",
    }
    assert _mask(strict) == [False, True, True, False, False]


def test_and_or_like_regex_interval() -> None:
    both = {
        "type": "and",
        "fields": [
            {"type": "like", "dimension": "dim", "pattern": "a%"},
            {"type": "not", "field": {"type": "selector", "dimension": "dim", "value": "a"}},
        ],
    }
    assert _mask(both) == [False, False, False, True, False]
    either = {
        "type": "or",
        "fields": [
            {"type": "regex", "dimension": "dim", "pattern": "^b"},
            {"type": "selector", "dimension": "dim", "value": "10"},
        ],
    }
    assert _mask(either) == [False, True, False, False, True]
    iv = filters.parse_filter({"type": "interval", "dimension": "__time", "intervals": ["2015-09-12/2015-09-13"]})
    get = filters.table_getter(TABLE, {"__time": pa.array([T, 0, T, 0, T])})
    assert iv.mask(get, 5).tolist() == [True, False, True, False, True]
    assert isinstance(filters.parse_filter({"type": "true"}).mask(get, 5), np.ndarray)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "nope"}, "filter.type"),
        ({"type": "selector", "value": "x"}, "filter.dimension"),
        ({"type": "and", "fields": [{"type": "selector", "dimension": "d", "bogus": 1}]}, "filter.fields[0].bogus"),
        ({"type": "bound", "dimension": "d", "lower": "x", "ordering": "numeric"}, "filter.lower"),
        ({"type": "regex", "dimension": "d", "pattern": "("}, "filter.pattern"),
    ],
)
def test_filter_errors_name_field(spec: dict, path: str) -> None:
    with pytest.raises(filters.FilterError) as info:
        filters.parse_filter(spec)
    assert info.value.path == path
