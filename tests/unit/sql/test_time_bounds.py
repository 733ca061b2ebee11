"""Which ``__time`` range a query's WHERE allows: the segments it may skip depend on it being right."""

from __future__ import annotations

import pytest
from sqlglot import exp

from overlord.isotime import Interval, parse_instant_ms
from overlord.sql import dialect
from overlord.sql.datasource_tables import ALL_TIME, hull, reference_window


def window(sql: str) -> Interval | None:
    tree = dialect.parse(sql)
    tables = [t for t in tree.find_all(exp.Table) if t.name == "t"]
    return hull([reference_window(t) for t in tables])


def ms(text: str) -> int:
    return parse_instant_ms(text)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("__time >= '2016-06-27' AND __time < '2016-06-28'", (ms("2016-06-27"), ms("2016-06-28") + 1)),
        ("__time >= TIMESTAMP '2016-06-27 00:00:00' AND x = 1", (ms("2016-06-27"), ALL_TIME.end)),
        ("__time <= '2016-06-27'", (ALL_TIME.start, ms("2016-06-27") + 1)),
        ("'2016-06-27' < __time", (ms("2016-06-27"), ALL_TIME.end)),
        ("__time BETWEEN '2016-06-27' AND '2016-06-28'", (ms("2016-06-27"), ms("2016-06-28") + 1)),
        ("TIME_IN_INTERVAL(__time, '2016-06-27/2016-06-28')", (ms("2016-06-27"), ms("2016-06-28"))),
        ("__time = MILLIS_TO_TIMESTAMP(1000)", (1000, 1001)),
        (
            "(__time >= '2016-06-27') AND (__time < '2016-07-01' AND __time < '2016-06-29')",
            (ms("2016-06-27"), ms("2016-06-29") + 1),
        ),
    ],
)
def test_bounds_from_anded_literal_comparisons(where: str, expected: tuple[int, int]) -> None:
    assert window(f"SELECT COUNT(*) FROM t WHERE {where}") == Interval(*expected)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM t",
        "SELECT COUNT(*) FROM t WHERE __time >= '2016-06-27' OR x = 1",  # OR: anything may match
        "SELECT COUNT(*) FROM t WHERE __time >= CURRENT_TIMESTAMP - INTERVAL '1' DAY",  # not a literal
        "SELECT COUNT(*) FROM t JOIN u ON t.k = u.k WHERE __time >= '2016-06-27'",  # whose __time?
        "SELECT * FROM (SELECT * FROM t) WHERE __time >= '2016-06-27'",  # the filter is outside t's SELECT
        "SELECT COUNT(*) FROM t WHERE __time >= '2016-06-27' UNION ALL SELECT COUNT(*) FROM t",  # one reads all
    ],
)
def test_no_bounds_when_the_filter_does_not_bound_every_read(sql: str) -> None:
    assert window(sql) is None
