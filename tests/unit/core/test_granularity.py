"""The one granularity module: Druid's JSON forms, buckets, widening, and the client agreeing with it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from overlord.client.specs import GranularitySpec
from overlord.core import granularity
from overlord.core.granularity import Granularity
from overlord.errors import InvalidGranularity, InvalidInput
from overlord.isotime import Interval, parse_instant_ms

TS = parse_instant_ms("2019-03-05T07:30:00Z")


def iv(text: str) -> Interval:
    return Interval.parse(text)


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        ("HOUR", "2019-03-05T07:00Z/2019-03-05T08:00Z"),
        ("day", "2019-03-05/2019-03-06"),
        ("DAY", "2019-03-05/2019-03-06"),
        ("SIX_HOUR", "2019-03-05T06:00Z/2019-03-05T12:00Z"),
        ("WEEK", "2019-03-04/2019-03-11"),
        ("MONTH", "2019-03-01/2019-04-01"),
        ("QUARTER", "2019-01-01/2019-04-01"),
        ("YEAR", "2019-01-01/2020-01-01"),
        ("PT6H", "2019-03-05T06:00Z/2019-03-05T12:00Z"),
        ("pt6h", "2019-03-05T06:00Z/2019-03-05T12:00Z"),
        ({"type": "period", "period": "PT6H"}, "2019-03-05T06:00Z/2019-03-05T12:00Z"),
        (
            {"type": "period", "period": "PT6H", "timeZone": "UTC", "origin": None},
            "2019-03-05T06:00Z/2019-03-05T12:00Z",
        ),
        ({"type": "period", "period": "PT6H", "origin": "1970-01-01T01:00Z"}, "2019-03-05T07:00Z/2019-03-05T13:00Z"),
        ({"type": "period", "period": "P1W"}, "2019-03-04/2019-03-11"),
        ({"type": "period", "period": "P3M"}, "2019-01-01/2019-04-01"),
        ({"type": "duration", "duration": 21_600_000}, "2019-03-05T06:00Z/2019-03-05T12:00Z"),
        (
            {"type": "duration", "duration": 3_600_000, "origin": "2000-01-01T00:30Z"},
            "2019-03-05T07:30Z/2019-03-05T08:30Z",
        ),
        ({"type": "day"}, "2019-03-05/2019-03-06"),
    ],
)
def test_every_druid_form_buckets_alike(value: object, bucket: str) -> None:
    g = granularity.parse(value)
    assert g.bucket(TS) == iv(bucket)
    assert granularity.parse(g.to_json()) == g  # Druid's JSON round-trips
    assert granularity.parse(g) is g


def test_json_forms() -> None:
    assert granularity.parse("day").to_json() == "DAY"
    assert granularity.parse("PT6H").to_json() == {"type": "period", "period": "PT6H", "timeZone": "UTC"}
    assert granularity.parse({"type": "duration", "duration": 60_000}).to_json() == {
        "type": "duration",
        "duration": 60_000,
    }
    origin = {"type": "period", "period": "PT6H", "origin": "2000-01-01T01:00:00.000Z"}
    assert granularity.parse(origin).to_json() == {**origin, "timeZone": "UTC"}


def test_all_none_and_widen() -> None:
    assert granularity.parse("ALL").bucket(TS).contains_ms(TS)
    assert granularity.parse("none").truncate(TS) == TS
    six = granularity.parse("PT6H")
    assert six.widen(iv("2019-03-05T07:00Z/2019-03-05T13:00Z")) == iv("2019-03-05T06:00Z/2019-03-05T18:00Z")
    assert six.widen(iv("2019-03-05T06:00Z/2019-03-05T12:00Z")) == iv("2019-03-05T06:00Z/2019-03-05T12:00Z")


@pytest.mark.parametrize(
    "value",
    [
        "FORTNIGHT",
        "P",
        "PT",
        "P1M1D",
        {"type": "period"},
        {"type": "period", "period": "P1D", "timeZone": "America/New_York"},
        {"type": "period", "period": "P1D", "origin": "yesterday"},
        {"type": "duration", "duration": 0},
        {"type": "duration", "duration": True},
        {"type": "bogus"},
        42,
    ],
)
def test_invalid_granularities_are_invalid_input_and_value_errors(value: object) -> None:
    with pytest.raises(InvalidGranularity) as info:
        granularity.parse(value)
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)


def test_client_accepts_what_the_server_accepts() -> None:
    assert GranularitySpec(segment_granularity="PT6H").segment_granularity == "PT6H"
    period = {"type": "period", "period": "PT6H"}
    assert GranularitySpec.model_validate({"segmentGranularity": period}).segment_granularity == period
    with pytest.raises(ValidationError, match="unknown granularity 'fortnight'"):
        GranularitySpec(segment_granularity="fortnight")
    with pytest.raises(ValidationError, match="timeZone"):
        GranularitySpec(segment_granularity={"type": "period", "period": "P1D", "timeZone": "Asia/Tokyo"})


def test_simple_names_equal_their_periods_bucket_for_bucket() -> None:
    pairs = [("hour", "PT1H"), ("six_hour", "PT6H"), ("day", "P1D"), ("week", "P1W"), ("month", "P1M"), ("year", "P1Y")]
    for name, period in pairs:
        a, b = granularity.parse(name), granularity.parse(period)
        assert isinstance(a, Granularity)
        for ts in (TS, parse_instant_ms("1969-12-31T23:59:59Z"), parse_instant_ms("2024-02-29T12:00Z")):
            assert a.bucket(ts) == b.bucket(ts), (name, ts)
