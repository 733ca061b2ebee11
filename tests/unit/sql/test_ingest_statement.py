"""The INSERT / REPLACE statement parser of SQL-based ingestion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from overlord.errors import SqlError
from overlord.isotime import Interval, parse_instant_ms
from overlord.sql.ingest_statement import ALL_TIME, EXTERN_TABLE, parse

SOURCE = {"type": "inline", "data": '{"t": "2024-01-01T00:00:00Z", "a": 1}\n'}
SIG = [{"name": "t", "type": "string"}, {"name": "a", "type": "long"}, {"name": "c", "type": "string"}]


def lit(v: Any) -> str:
    return "'" + json.dumps(v).replace("'", "''") + "'"


EXTERN = f"TABLE(EXTERN({lit(SOURCE)}, {lit({'type': 'json'})}, {lit(SIG)}))"


def day(text: str) -> int:
    return parse_instant_ms(text)


def test_insert_with_group_by_reads_the_frame_and_leaves_the_select_as_text() -> None:
    st = parse(
        f"""INSERT INTO "wiki"
        SELECT TIME_FLOOR(TIME_PARSE(t), 'PT1H') AS __time, c, SUM(a) AS total, COUNT(*) cnt,
               APPROX_COUNT_DISTINCT(c) AS uniq
        FROM {EXTERN} WHERE c <> 'x'
        GROUP BY 1, 2
        PARTITIONED BY DAY
        CLUSTERED BY 2, total;"""
    )
    assert (st.mode, st.data_source, st.partitioned_by) == ("INSERT", "wiki", "DAY")
    assert st.segment_granularity.name == "day" and st.replace_intervals is None
    assert st.extern.input_source == SOURCE and st.extern.input_format == {"type": "json"}
    assert st.extern.signature == (("t", "string"), ("a", "long"), ("c", "string"))
    assert f"FROM {EXTERN_TABLE} WHERE" in st.query and "EXTERN" not in st.query and "PARTITIONED" not in st.query
    assert [(i.name, i.aggregate) for i in st.items] == [
        ("__time", None),
        ("c", None),
        ("total", "sum"),
        ("cnt", "sum"),
        ("uniq", "other"),
    ]
    assert st.group_by and not st.combinable and st.metrics == ("total", "cnt", "uniq")
    assert st.clustered_by == ("c", "total")
    assert st.filter_count_query == f"SELECT COUNT(*) FROM {EXTERN_TABLE} WHERE c <> 'x'"


def test_combinable_aggregates_and_plain_selects() -> None:
    st = parse(f"INSERT INTO w SELECT t, MIN(a) lo, MAX(a) AS hi FROM {EXTERN} GROUP BY t PARTITIONED BY ALL")
    assert st.combinable and st.segment_granularity.is_all
    st = parse(f"INSERT INTO w SELECT COUNT(DISTINCT c) AS d, SUM(a) + 1 AS s FROM {EXTERN} PARTITIONED BY ALL TIME")
    assert [i.aggregate for i in st.items] == ["other", "other"]
    st = parse(f"INSERT INTO w SELECT * FROM {EXTERN} AS e PARTITIONED BY HOUR")
    assert not st.group_by and st.metrics == () and st.filter_count_query is None


def test_extend_form_and_named_arguments() -> None:
    st = parse(
        f"INSERT INTO w SELECT * FROM TABLE(EXTERN({lit(SOURCE)}, {lit({'type': 'json'})})) "
        "EXTEND (t VARCHAR, a BIGINT, d DOUBLE, f REAL) PARTITIONED BY DAY"
    )
    assert st.extern.signature == (("t", "string"), ("a", "long"), ("d", "double"), ("f", "float"))
    st = parse(
        "INSERT INTO w SELECT * FROM TABLE(EXTERN(inputFormat => "
        f"{lit({'type': 'json'})}, inputSource => {lit(SOURCE)}, signature => {lit(SIG)})) PARTITIONED BY DAY"
    )
    assert st.extern.input_source == SOURCE and len(st.extern.signature) == 3


@pytest.mark.parametrize(
    ("clause", "name"),
    [
        ("DAY", "day"),
        ("'PT6H'", "PT6H"),
        ("TIME_FLOOR(__time, 'P1M')", "P1M"),
        ("FLOOR(__time TO MONTH)", "month"),
        ("ALL TIME", "all"),
        ("year", "year"),
    ],
)
def test_partitioned_by_forms(clause: str, name: str) -> None:
    assert parse(f"INSERT INTO w SELECT * FROM {EXTERN} PARTITIONED BY {clause}").segment_granularity.name == name


def test_replace_overwrite_all_and_where() -> None:
    st = parse(f"REPLACE INTO druid.w OVERWRITE ALL SELECT * FROM {EXTERN} PARTITIONED BY DAY")
    assert st.mode == "REPLACE" and st.data_source == "w" and st.replace_all
    assert st.replace_intervals == (ALL_TIME,)
    st = parse(
        "REPLACE INTO w OVERWRITE WHERE (__time >= TIMESTAMP '2024-01-01' AND __time < '2024-01-03') "
        "OR __time BETWEEN TIMESTAMP '2024-02-01 00:00:00' AND TIMESTAMP '2024-02-01 23:59:59.999' "
        f"SELECT * FROM {EXTERN} PARTITIONED BY DAY"
    )
    assert st.replace_intervals == (
        Interval(day("2024-01-01"), day("2024-01-03")),
        Interval(day("2024-02-01"), day("2024-02-02")),
    )
    st = parse(f"REPLACE INTO w OVERWRITE WHERE __time >= '2024-01-01' SELECT * FROM {EXTERN} PARTITIONED BY DAY")
    assert st.replace_intervals == (Interval(day("2024-01-01"), ALL_TIME.end),)


def test_parameters_are_bound_as_literals() -> None:
    st = parse(
        f"INSERT INTO w SELECT t, ? AS tag, a * ? AS a2 FROM {EXTERN} WHERE c = ? PARTITIONED BY DAY",
        [{"type": "VARCHAR", "value": "it's"}, {"type": "BIGINT", "value": 2}, {"type": "VARCHAR", "value": "x"}],
    )
    assert "'it''s' AS tag" in st.query and "a * 2 AS a2" in st.query and "c = 'x'" in st.query
    with pytest.raises(SqlError, match="2 dynamic parameters"):
        parse(f"INSERT INTO w SELECT ?, ? FROM {EXTERN} PARTITIONED BY DAY", [{"type": "BIGINT", "value": 1}])


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1", "send SELECT queries to /druid/v2/sql"),
        ("DELETE FROM w", "expected INSERT or REPLACE"),
        (f"INSERT INTO w SELECT * FROM {EXTERN}", "requires a PARTITIONED BY"),
        (f"INSERT INTO w SELECT * FROM {EXTERN} ORDER BY t PARTITIONED BY DAY", "use CLUSTERED BY instead"),
        (f"INSERT INTO w (a, b) SELECT * FROM {EXTERN} PARTITIONED BY DAY", "target column list"),
        (f"INSERT INTO w OVERWRITE ALL SELECT * FROM {EXTERN} PARTITIONED BY DAY", "only valid in REPLACE"),
        (f"REPLACE INTO w SELECT * FROM {EXTERN} PARTITIONED BY DAY", "expected OVERWRITE"),
        (f"INSERT INTO w SELECT * FROM {EXTERN} PARTITIONED BY FORTNIGHT", "Invalid granularity [FORTNIGHT]"),
        (f"INSERT INTO w SELECT * FROM {EXTERN} PARTITIONED BY DAY CLUSTERED BY c DESC", "descending"),
        (f"INSERT INTO w SELECT * FROM {EXTERN} PARTITIONED BY DAY CLUSTERED BY 9", "ordinal [9]"),
        ("INSERT INTO w SELECT * FROM wiki PARTITIONED BY DAY", "FROM TABLE(EXTERN(...))"),
        (f"INSERT INTO w SELECT * FROM {EXTERN}, {EXTERN} PARTITIONED BY DAY", "Only one EXTERN"),
        ("INSERT INTO w SELECT * FROM TABLE(http('x')) PARTITIONED BY DAY", "Table function [http]"),
        ("INSERT INTO w SELECT * FROM TABLE(EXTERN('{x', '{}', '[]')) PARTITIONED BY DAY", "not valid JSON"),
        (
            f"INSERT INTO w SELECT * FROM TABLE(EXTERN({lit({'type': 's3', 'uris': []})}, {lit({'type': 'json'})}, "
            f"{lit(SIG)})) PARTITIONED BY DAY",
            "input source type [s3] is not supported",
        ),
        (
            f"INSERT INTO w SELECT * FROM TABLE(EXTERN({lit(SOURCE)}, {lit({'type': 'json'})})) PARTITIONED BY DAY",
            "needs a signature",
        ),
        (
            f"REPLACE INTO w OVERWRITE WHERE __time >= '2024-01-01T01:00:00Z' AND __time < '2024-01-02' "
            f"SELECT * FROM {EXTERN} PARTITIONED BY DAY",
            "not aligned with PARTITIONED BY granularity [DAY]",
        ),
        (
            f"REPLACE INTO w OVERWRITE WHERE c = 'x' SELECT * FROM {EXTERN} PARTITIONED BY DAY",
            "only comparisons of __time",
        ),
        (f"INSERT INTO w SELECT * FROM {EXTERN} PARTITIONED BY DAY; SELECT 1", "Only one statement"),
        ("INSERT INTO w SELECT 'open", "Unterminated string literal"),
    ],
)
def test_errors_name_what_is_wrong(sql: str, message: str) -> None:
    with pytest.raises(SqlError) as info:
        parse(sql)
    assert message in info.value.message
    assert info.value.http_status == 400 and info.value.context["sourceType"] == "sql"


def test_errors_carry_line_and_column() -> None:
    with pytest.raises(SqlError) as info:
        parse("INSERT INTO w\nSELECT *\n  FROM TABLE(nope('x')) PARTITIONED BY DAY")
    assert (info.value.context["line"], info.value.context["column"]) == (3, 14)
