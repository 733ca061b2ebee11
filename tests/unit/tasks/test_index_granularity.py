"""An index task with a period segment granularity, appending, against the REAL task-action handler.

A fake Overlord that re-implemented allocation hid a bug: ``segmentGranularity: "PT6H"`` with
``appendToExisting: true`` failed in ``segmentAllocate`` with "Invalid field
[action.preferredSegmentGranularity]". The harness runs the real handler behind the real route.
"""

from __future__ import annotations

from typing import Any

import pytest
from overlord_harness import OverlordHarness

from overlord.isotime import Interval
from overlord.tasks import index

ROWS = [
    '{"ts":"2020-01-01T01:00:00Z","dim":"a","v":1}',
    '{"ts":"2020-01-01T07:00:00Z","dim":"b","v":2}',
]
FIRST = "2020-01-01T00:00:00.000Z/2020-01-01T06:00:00.000Z"
SECOND = "2020-01-01T06:00:00.000Z/2020-01-01T12:00:00.000Z"


def used(overlord: OverlordHarness) -> list[tuple[str, str, int]]:
    segs = overlord.segments.used_segments("ds", Interval.parse("2020-01-01/2020-01-02"))
    return sorted((str(s.interval), s.version, s.partition_num) for s in segs)


def spec(task_id: str, rows: list[str], granularity: object, append: bool) -> dict[str, Any]:
    return {
        "type": "index_parallel",
        "id": task_id,
        "spec": {
            "dataSchema": {
                "dataSource": "ds",
                "timestampSpec": {"column": "ts", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["dim"]},
                "metricsSpec": [{"type": "count", "name": "count"}],
                "granularitySpec": {"segmentGranularity": granularity, "queryGranularity": "none"},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "inline", "data": "\n".join(rows)},
                "inputFormat": {"type": "json"},
                "appendToExisting": append,
            },
            "tuningConfig": {"type": "index_parallel"},
        },
    }


@pytest.mark.parametrize("granularity", ["PT6H", {"type": "period", "period": "PT6H"}])
def test_append_with_a_six_hour_period_adds_partitions(overlord: OverlordHarness, granularity: object) -> None:
    assert overlord.run(index.run, spec("first", ROWS, granularity, append=False)).success
    (first, v1, p1), (second, v2, p2) = used(overlord)
    assert (first, p1, second, p2) == (FIRST, 0, SECOND, 0)

    assert overlord.run(index.run, spec("append", ROWS[1:], granularity, append=True)).success
    allocs = [a for a in overlord.actions if a["type"] == "segmentAllocate"]
    assert allocs, "appending allocates its segments"
    assert used(overlord) == [(FIRST, v1, 0), (SECOND, v2, 0), (SECOND, v2, 1)]  # appended to the existing version
