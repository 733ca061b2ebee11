"""Timestamp formats and granularities."""

from __future__ import annotations

import pyarrow as pa
import pytest

from overlord.core import granularity
from overlord.ingest import timestamps
from overlord.isotime import Interval, parse_instant_ms

T = parse_instant_ms("2015-09-12T13:45:30.123Z")


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2015-09-12T13:45:30.123Z", "iso", T),
        ("2015-09-12T15:45:30.123+02:00", "iso", T),
        ("2015-09-12", "iso", parse_instant_ms("2015-09-12")),
        ("2015-09-12T13:45:30.123Z", "auto", T),
        (str(T), "auto", T),
        (T, "auto", T),
        (T, "millis", T),
        (str(T), "millis", T),
        (T // 1000, "posix", T - 123),
        (T * 1000, "micro", T),
        (T * 1_000_000, "nano", T),
        ("2015-09-12 13:45:30", "yyyy-MM-dd HH:mm:ss", T - 123),
        ("12/09/2015 13:45:30.123", "dd/MM/yyyy HH:mm:ss.SSS", T),
        ("2015-09-12T13:45:30.123+0000", "yyyy-MM-dd'T'HH:mm:ss.SSSZ", T),
        ("Sat, 12 Sep 2015 13:45:30", "EEE, dd MMM yyyy HH:mm:ss", T - 123),
        ("20150912", "yyyyMMdd", parse_instant_ms("2015-09-12")),
    ],
)
def test_parse_value(value: object, fmt: str, expected: int) -> None:
    assert timestamps.parse_value(value, fmt) == expected


@pytest.mark.parametrize(
    ("value", "fmt"), [("abc", "iso"), ("abc", "millis"), (None, "auto"), ("", "iso"), ("2015-13-45", "yyyy-MM-dd")]
)
def test_parse_value_errors(value: object, fmt: str) -> None:
    with pytest.raises(timestamps.TimestampError):
        timestamps.parse_value(value, fmt)


def test_validate_format() -> None:
    timestamps.validate_format("yyyy-MM-dd'T'HH:mm")
    with pytest.raises(ValueError, match="unknown format 'foo'"):
        timestamps.validate_format("foo")


def test_parse_column_fast_and_fallback() -> None:
    vals, bad = timestamps.parse_column(pa.array(["2015-09-12T13:45:30.123Z", None]), "iso")
    assert vals.to_pylist() == [T, None] and bad.tolist() == [False, True]
    vals, bad = timestamps.parse_column(pa.array(["2015-09-12T13:45:30.123Z", "nope", "2015-09-12"]), "iso")
    assert vals.to_pylist() == [T, None, parse_instant_ms("2015-09-12")]
    assert bad.tolist() == [False, True, False]
    vals, _ = timestamps.parse_column(pa.array([str(T), "2015-09-12T13:45:30.123Z"]), "auto")
    assert vals.to_pylist() == [T, T]
    vals, _ = timestamps.parse_column(pa.array([T // 1000, None]), "posix")
    assert vals.to_pylist() == [T - 123, None]
    vals, _ = timestamps.parse_column(pa.array([T * 1000]), "micro")
    assert vals.to_pylist() == [T]


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("second", "2015-09-12T13:45:30Z", "2015-09-12T13:45:31Z"),
        ("minute", "2015-09-12T13:45Z", "2015-09-12T13:46Z"),
        ("five_minute", "2015-09-12T13:45Z", "2015-09-12T13:50Z"),
        ("ten_minute", "2015-09-12T13:40Z", "2015-09-12T13:50Z"),
        ("fifteen_minute", "2015-09-12T13:45Z", "2015-09-12T14:00Z"),
        ("thirty_minute", "2015-09-12T13:30Z", "2015-09-12T14:00Z"),
        ("hour", "2015-09-12T13:00Z", "2015-09-12T14:00Z"),
        ("six_hour", "2015-09-12T12:00Z", "2015-09-12T18:00Z"),
        ("eight_hour", "2015-09-12T08:00Z", "2015-09-12T16:00Z"),
        ("day", "2015-09-12", "2015-09-13"),
        ("week", "2015-09-07", "2015-09-14"),
        ("month", "2015-09-01", "2015-10-01"),
        ("quarter", "2015-07-01", "2015-10-01"),
        ("year", "2015-01-01", "2016-01-01"),
    ],
)
def test_granularity_buckets(name: str, start: str, end: str) -> None:
    g = granularity.parse(name)
    iv = Interval(parse_instant_ms(start), parse_instant_ms(end))
    assert g.bucket(T) == iv
    assert int(g.truncate_array(__import__("numpy").array([T]))[0]) == iv.start


def test_granularity_none_all_and_period() -> None:
    assert granularity.parse("none").truncate(T) == T
    assert granularity.parse("all").bucket(T).contains_ms(T)
    g = granularity.parse({"type": "period", "period": "PT1H"})
    assert g.truncate(T) == parse_instant_ms("2015-09-12T13:00Z")
    assert granularity.parse("P1M").bucket(T).start == parse_instant_ms("2015-09-01")
    assert granularity.parse({"type": "period", "period": "P1W"}).truncate(T) == parse_instant_ms("2015-09-07")
    with pytest.raises(ValueError, match="unknown granularity 'fortnight'"):
        granularity.parse("fortnight")
    with pytest.raises(ValueError, match="timeZone"):
        granularity.parse({"type": "period", "period": "P1D", "timeZone": "America/New_York"})


def test_iter_buckets() -> None:
    g = granularity.parse("day")
    iv = Interval(parse_instant_ms("2015-09-12"), parse_instant_ms("2015-09-14"))
    assert [b.start for b in g.iter_buckets(iv)] == [parse_instant_ms("2015-09-12"), parse_instant_ms("2015-09-13")]
