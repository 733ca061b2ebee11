import pytest

from overlord.core.auto_compaction import CompactionConfig, find_candidates, run_duty
from overlord.core.data_segment import DataSegment, ShardSpec
from overlord.errors import InvalidInput
from overlord.isotime import Interval

DAY = 86_400_000


def seg(day: int, part: int, parts: int, state: dict | None = None) -> DataSegment:
    return DataSegment(
        "wiki", Interval(day * DAY, (day + 1) * DAY), "v1", ShardSpec.numbered(part, parts),
        last_compaction_state=state,
    )  # fmt: skip


def test_config_parse_and_errors():
    c = CompactionConfig.parse({"dataSource": "wiki", "skipOffsetFromLatest": "PT0S", "maxRowsPerSegment": 10})
    assert c.skip_offset_ms == 0 and c.max_rows_per_segment == 10 and c.task_priority == 25
    c = CompactionConfig.parse({"dataSource": "w", "tuningConfig": {"partitionsSpec": {"maxRowsPerSegment": 7}}})
    assert c.max_rows_per_segment == 7 and c.skip_offset_ms == DAY
    for bad, field in [
        ({}, "dataSource"),
        ({"dataSource": "w", "bogus": 1}, "bogus"),
        ({"dataSource": "w", "taskPriority": "x"}, "taskPriority"),
        ({"dataSource": "w", "skipOffsetFromLatest": "soon"}, "skipOffsetFromLatest"),
        ({"dataSource": "w", "maxRowsPerSegment": 0}, "maxRowsPerSegment"),
        ({"dataSource": "w", "taskContext": []}, "taskContext"),
    ]:
        with pytest.raises(InvalidInput, match=field):
            CompactionConfig.parse(bad)


def test_candidates_are_fragmented_uncompacted_chunks_before_the_offset():
    config = CompactionConfig.parse({"dataSource": "wiki", "skipOffsetFromLatest": "P1D", "maxRowsPerSegment": 10})
    compacted = {"partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 10}}
    segments = [
        seg(0, 0, 2), seg(0, 1, 2),  # fragmented, not compacted: a candidate
        seg(1, 0, 1),  # one segment: nothing to gain
        seg(2, 0, 2, compacted), seg(2, 1, 2, compacted),  # already compacted to this config
        seg(3, 0, 2), seg(3, 1, 2),  # inside skipOffsetFromLatest of the newest data: skipped
    ]  # fmt: skip
    assert find_candidates(segments, config) == [Interval(0, DAY)]
    other = CompactionConfig.parse({"dataSource": "wiki", "skipOffsetFromLatest": "PT0S", "maxRowsPerSegment": 99})
    expected = [Interval(0, DAY), Interval(2 * DAY, 3 * DAY), Interval(3 * DAY, 4 * DAY)]
    assert find_candidates(segments, other) == expected


def test_duty_skips_busy_chunks_and_submits_one_per_datasource():
    config = CompactionConfig.parse({"dataSource": "wiki", "skipOffsetFromLatest": "PT0S", "taskContext": {"a": 1}})
    segments = [seg(0, 0, 2), seg(0, 1, 2), seg(1, 0, 2), seg(1, 1, 2)]
    submitted: list[dict] = []
    result = run_duty(
        [config],
        visible_segments=lambda ds: segments,
        busy_intervals=lambda ds: [Interval(0, DAY)],
        submit=lambda spec: submitted.append(spec) or f"t{len(submitted)}",
    )
    assert result.skipped_locked == [Interval(0, DAY)] and result.submitted == ["t1"]
    spec = submitted[0]
    assert spec["type"] == "compact" and spec["ioConfig"]["inputSpec"]["interval"] == str(Interval(DAY, 2 * DAY))
    assert spec["context"] == {"a": 1, "priority": 25}
