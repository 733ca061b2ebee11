"""Row stats, Dropwizard moving averages on a manual clock, parse-exception handling, reports."""

from __future__ import annotations

import math

import pytest

from overlord.clock import ManualClock
from overlord.errors import ParseExceptionLimit
from overlord.ingest.rowstats import (
    IngestionState,
    Meter,
    ParseExceptionHandler,
    RowMeters,
    RowStats,
    completion_report,
    live_report,
    row_stats_payload,
)


def test_meter_matches_dropwizard() -> None:
    clock = ManualClock()
    m = Meter(clock)
    m.mark(100)
    assert m.rates() == {"1m": 0.0, "5m": 0.0, "15m": 0.0}  # no tick yet
    clock.advance(6)
    assert m.rates() == pytest.approx({"1m": 20.0, "5m": 20.0, "15m": 20.0})
    clock.advance(5)
    r = m.rates()
    assert r["1m"] == pytest.approx(20 * math.exp(-5 / 60))
    assert r["5m"] == pytest.approx(20 * math.exp(-5 / 300))
    assert r["15m"] == pytest.approx(20 * math.exp(-5 / 900))
    m.mark(50)
    clock.advance(5)
    one = 20 * math.exp(-5 / 60)
    assert m.rates()["1m"] == pytest.approx(one + (1 - math.exp(-5 / 60)) * (10 - one))
    clock.advance(15 * 60)
    assert m.rates()["1m"] < 1e-4


def test_row_meters_totals_and_averages() -> None:
    clock = ManualClock()
    rm = RowMeters(clock)
    rm.add(processed=10, processed_bytes=1000, thrown_away=2)
    clock.advance(5.5)
    avg = rm.moving_averages()
    assert list(avg) == ["1m", "5m", "15m"]
    assert avg["1m"] == {
        "processed": 2.0,
        "processedBytes": 200.0,
        "processedWithError": 0.0,
        "unparseable": 0.0,
        "thrownAway": 0.4,
    }
    assert rm.totals.to_dict() == {
        "processed": 10,
        "processedBytes": 1000,
        "processedWithError": 0,
        "thrownAway": 2,
        "unparseable": 0,
    }
    payload = row_stats_payload({"buildSegments": rm})
    assert set(payload) == {"movingAverages", "totals"}
    assert payload["totals"]["buildSegments"]["processed"] == 10


def test_parse_exception_handler_limit_and_saving() -> None:
    clock = ManualClock(now_ms=123)
    rm = RowMeters(clock)
    h = ParseExceptionHandler(rm, clock, max_parse_exceptions=2, max_saved=1)
    h.handle("unparseable", "{bad", "Unable to parse row [{bad]")
    h.handle("processedWithError", "{}", "oops")
    assert [e.to_dict() for e in h.saved] == [
        {
            "input": "{bad",
            "errorType": "unparseable",
            "details": ["Unable to parse row [{bad]"],
            "timeOfExceptionMillis": 123,
        }
    ]
    with pytest.raises(ParseExceptionLimit, match=r"^Max parse exceptions\[2\] exceeded$"):
        h.handle("unparseable", "x", "y")
    assert rm.totals.unparseable == 2 and rm.totals.processed_with_error == 1


def test_report_shapes() -> None:
    stats = {"buildSegments": RowStats(5, 50, 1, 2, 3)}
    rep = completion_report("t1", IngestionState.COMPLETED, stats, None, None, {"forceTimeChunkLock": True})
    assert rep == {
        "ingestionStatsAndErrors": {
            "taskId": "t1",
            "payload": {
                "ingestionState": "COMPLETED",
                "unparseableEvents": {},
                "rowStats": {
                    "determinePartitions": {
                        "processed": 0,
                        "processedBytes": 0,
                        "processedWithError": 0,
                        "thrownAway": 0,
                        "unparseable": 0,
                    },
                    "buildSegments": {
                        "processed": 5,
                        "processedBytes": 50,
                        "processedWithError": 1,
                        "thrownAway": 2,
                        "unparseable": 3,
                    },
                },
                "segmentAvailabilityConfirmed": False,
                "segmentAvailabilityWaitTimeMs": 0,
                "recordsProcessed": None,
                "errorMsg": None,
            },
            "type": "ingestionStatsAndErrors",
        },
        "taskContext": {"type": "taskContext", "taskId": "t1", "payload": {"forceTimeChunkLock": True}},
    }
    live = live_report(
        "t1",
        IngestionState.BUILD_SEGMENTS,
        {"buildSegments": RowMeters(ManualClock())},
        {"determinePartitions": [], "buildSegments": []},
    )
    payload = live["ingestionStatsAndErrors"]["payload"]
    assert payload["ingestionState"] == "BUILD_SEGMENTS"
    assert payload["unparseableEvents"] == {"determinePartitions": [], "buildSegments": []}
    assert set(payload["rowStats"]) == {"movingAverages", "totals"}
    assert payload["errorMsg"] is None
