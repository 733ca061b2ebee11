"""Segment value types: Druid's JSON shape and identifiers, version strings, granularity buckets."""

from __future__ import annotations

import pytest

from overlord.clock import ManualClock
from overlord.core.data_segment import (
    DataSegment,
    PendingSegment,
    SegmentId,
    ShardSpec,
    VersionGenerator,
)
from overlord.errors import InvalidInput
from overlord.isotime import Interval, parse_instant_ms

DAY = Interval(parse_instant_ms("2019-01-01"), parse_instant_ms("2019-01-02"))


def test_identifier_as_druid_forms_it() -> None:
    sid = SegmentId("wiki_edits", DAY, "2019-05-01T00:00:00.000Z")
    assert str(sid) == "wiki_edits_2019-01-01T00:00:00.000Z_2019-01-02T00:00:00.000Z_2019-05-01T00:00:00.000Z"
    sid3 = SegmentId("wiki_edits", DAY, "v_1", 3)
    assert str(sid3).endswith("_v_1_3")
    assert SegmentId.parse(str(sid3), "wiki_edits") == sid3
    assert SegmentId.parse(str(sid), "wiki_edits") == sid
    with pytest.raises(InvalidInput):
        SegmentId.parse(str(sid), "other")


def test_data_segment_json_round_trip() -> None:
    seg = DataSegment(
        "wiki",
        DAY,
        "2019-05-01T00:00:00.000Z",
        ShardSpec.numbered(2, 3),
        {"type": "local", "path": "/x/index.zip"},
        ("page", "user"),
        ("count", "added"),
        size=1234,
    )
    js = seg.to_json()
    assert js["dimensions"] == "page,user" and js["metrics"] == "count,added"
    assert js["interval"] == "2019-01-01T00:00:00.000Z/2019-01-02T00:00:00.000Z"
    assert js["shardSpec"] == {"type": "numbered", "partitionNum": 2, "partitions": 3}
    assert js["binaryVersion"] == 9 and js["identifier"] == seg.identifier and js["identifier"].endswith("_2")
    back = DataSegment.from_json(js)
    assert back == seg and back.to_json() == js
    assert DataSegment.from_json({**js, "dimensions": ["page", "user"]}).dimensions == ("page", "user")
    with pytest.raises(InvalidInput, match="dataSource"):
        DataSegment.from_json({"interval": js["interval"]})


@pytest.mark.parametrize(
    "spec",
    [
        ShardSpec("none"),
        ShardSpec("linear", 4),
        ShardSpec.overwrite(32768, 0, 2, 1, 2),
        ShardSpec.from_json({"type": "hashed", "partitionNum": 1, "numCorePartitions": 2, "partitionDimensions": []}),
    ],
)
def test_shard_spec_round_trip(spec: ShardSpec) -> None:
    again = ShardSpec.from_json(spec.to_json())
    assert again == spec and again.to_json() == spec.to_json()


def test_pending_segment_round_trip() -> None:
    p = PendingSegment(SegmentId("wiki", DAY, "v", 1), ShardSpec.numbered(1), "seq", "prev", "task")
    assert PendingSegment.from_json(p.to_json()) == p


def test_versions_strictly_increase_within_one_ms_and_backwards_clock() -> None:
    clock = ManualClock(now_ms=parse_instant_ms("2024-01-01T00:00:00.000Z"))
    gen = VersionGenerator(clock)
    a, b, c = gen.next(), gen.next(), gen.next()
    assert a == "2024-01-01T00:00:00.000Z" and a < b < c
    clock.advance(-10)
    assert gen.next() > c
    assert gen.next(after="2030-01-01T00:00:00.000Z") == "2030-01-01T00:00:00.001Z"
    gen.observe("2040-01-01T00:00:00.000Z")
    assert gen.next() > "2040"
