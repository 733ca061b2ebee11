"""Row statistics, Druid-exact moving averages, parse-exception handling and report payloads.

Moving averages reproduce Druid's ``DropwizardRowIngestionMeters``: one Dropwizard ``Meter`` per
counter, i.e. exponentially weighted 1/5/15-minute rates per second, ticked every 5 seconds.
Time comes from an injected Clock so tests can step it exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from overlord.clock import Clock
from overlord.errors import ParseExceptionLimit

DETERMINE_PARTITIONS = "determinePartitions"
BUILD_SEGMENTS = "buildSegments"
PHASES = (DETERMINE_PARTITIONS, BUILD_SEGMENTS)
FIELDS = ("processed", "processedBytes", "processedWithError", "thrownAway", "unparseable")


class IngestionState(StrEnum):
    NOT_STARTED = "NOT_STARTED"  # no row read yet
    DETERMINE_PARTITIONS = "DETERMINE_PARTITIONS"  # first pass choosing shard counts (hashed)
    BUILD_SEGMENTS = "BUILD_SEGMENTS"  # reading rows and writing segments
    SEGMENT_AVAILABILITY_WAIT = "SEGMENT_AVAILABILITY_WAIT"  # published, waiting for query nodes
    COMPLETED = "COMPLETED"  # done, successfully or not


@dataclass
class RowStats:
    """The five row counters of one phase (Druid's ``RowIngestionMetersTotals``)."""

    processed: int = 0
    processed_bytes: int = 0
    processed_with_error: int = 0
    thrown_away: int = 0
    unparseable: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "processedBytes": self.processed_bytes,
            "processedWithError": self.processed_with_error,
            "thrownAway": self.thrown_away,
            "unparseable": self.unparseable,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RowStats:
        return cls(
            d.get("processed", 0),
            d.get("processedBytes", 0),
            d.get("processedWithError", 0),
            d.get("thrownAway", 0),
            d.get("unparseable", 0),
        )

    def __add__(self, other: RowStats) -> RowStats:
        return RowStats(
            self.processed + other.processed,
            self.processed_bytes + other.processed_bytes,
            self.processed_with_error + other.processed_with_error,
            self.thrown_away + other.thrown_away,
            self.unparseable + other.unparseable,
        )


_TICK_NS = 5_000_000_000
_ALPHAS = {"1m": 1 - math.exp(-5 / 60 / 1), "5m": 1 - math.exp(-5 / 60 / 5), "15m": 1 - math.exp(-5 / 60 / 15)}


class _Ewma:
    """Dropwizard's ExponentialMovingAverage: rate in events per nanosecond."""

    __slots__ = ("alpha", "initialized", "rate", "uncounted")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.rate = 0.0
        self.initialized = False
        self.uncounted = 0

    def tick(self) -> None:
        count, self.uncounted = self.uncounted, 0
        instant = count / _TICK_NS
        if self.initialized:
            self.rate += self.alpha * (instant - self.rate)
        else:
            self.rate = instant
            self.initialized = True


class Meter:
    """Dropwizard's Meter (1, 5, 15-minute rates) on an injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last_tick = self._now()
        self._ewmas = {k: _Ewma(a) for k, a in _ALPHAS.items()}
        self.count = 0

    def _now(self) -> int:
        return round(self._clock.monotonic() * 1e9)

    def _tick_if_necessary(self) -> None:
        now = self._now()
        age = now - self._last_tick
        if age > _TICK_NS:
            self._last_tick = now - age % _TICK_NS
            for _ in range(min(age // _TICK_NS, 10_000)):
                for e in self._ewmas.values():
                    e.tick()

    def mark(self, n: int = 1) -> None:
        self._tick_if_necessary()
        self.count += n
        for e in self._ewmas.values():
            e.uncounted += n

    def rates(self) -> dict[str, float]:
        """Per-second rates keyed "1m", "5m", "15m"."""
        self._tick_if_necessary()
        return {k: e.rate * 1e9 for k, e in self._ewmas.items()}


class RowMeters:
    """Totals plus moving averages for one phase (Druid's DropwizardRowIngestionMeters)."""

    def __init__(self, clock: Clock) -> None:
        self.totals = RowStats()
        self._meters = {f: Meter(clock) for f in FIELDS}

    def add(
        self,
        *,
        processed: int = 0,
        processed_bytes: int = 0,
        processed_with_error: int = 0,
        thrown_away: int = 0,
        unparseable: int = 0,
    ) -> None:
        t = self.totals
        for name, attr, n in (
            ("processed", "processed", processed),
            ("processedBytes", "processed_bytes", processed_bytes),
            ("processedWithError", "processed_with_error", processed_with_error),
            ("thrownAway", "thrown_away", thrown_away),
            ("unparseable", "unparseable", unparseable),
        ):
            if n:
                setattr(t, attr, getattr(t, attr) + n)
                self._meters[name].mark(n)

    def moving_averages(self) -> dict[str, dict[str, float]]:
        rates = {f: self._meters[f].rates() for f in FIELDS}
        order = ("processed", "processedBytes", "processedWithError", "unparseable", "thrownAway")
        return {w: {f: rates[f][w] for f in order} for w in ("1m", "5m", "15m")}


@dataclass(frozen=True)
class ParseExceptionReport:
    """One saved unparseable event, shaped like Druid's ParseExceptionReport."""

    input: str | None
    error_type: str  # "unparseable" or "processedWithError"
    details: tuple[str, ...]
    time_of_exception_millis: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "errorType": self.error_type,
            "details": list(self.details),
            "timeOfExceptionMillis": self.time_of_exception_millis,
        }


@dataclass
class ParseExceptionHandler:
    """Counts, saves, logs parse exceptions and enforces maxParseExceptions (Druid's handler)."""

    meters: RowMeters
    clock: Clock
    max_parse_exceptions: int
    max_saved: int
    log_exceptions: bool = False
    log: logging.Logger | None = None
    saved: list[ParseExceptionReport] = field(default_factory=list)

    def handle(self, error_type: str, raw: str | None, message: str) -> None:
        if error_type == "unparseable":
            self.meters.add(unparseable=1)
        else:
            self.meters.add(processed_with_error=1)
        if self.log_exceptions and self.log is not None:
            self.log.error("Encountered parse exception: %s", message, extra={"row": raw})
        if len(self.saved) < self.max_saved:
            self.saved.append(ParseExceptionReport(raw, error_type, (message,), self.clock.now_ms()))
        t = self.meters.totals
        if t.unparseable + t.processed_with_error > self.max_parse_exceptions:
            raise ParseExceptionLimit(f"Max parse exceptions[{self.max_parse_exceptions}] exceeded")

    def room(self) -> int:
        """How many more exceptions are allowed before the limit is exceeded."""
        t = self.meters.totals
        return self.max_parse_exceptions - (t.unparseable + t.processed_with_error)


# ---- report payloads ------------------------------------------------------------------------


def unparseable_events_payload(events: dict[str, list[ParseExceptionReport]] | None) -> dict[str, Any]:
    """Druid lists both phases when saving is on (maxSavedParseExceptions > 0), else ``{}``."""
    if events is None:
        return {}
    return {phase: [e.to_dict() for e in events.get(phase, [])] for phase in PHASES}


def row_stats_payload(meters: dict[str, RowMeters]) -> dict[str, Any]:
    """``/rowStats`` body: movingAverages and totals for every phase that has started."""
    return {
        "movingAverages": {phase: m.moving_averages() for phase, m in meters.items()},
        "totals": {phase: m.totals.to_dict() for phase, m in meters.items()},
    }


def live_report(
    task_id: str,
    state: IngestionState | str,
    meters: dict[str, RowMeters],
    events: dict[str, list[ParseExceptionReport]] | None,
    error_msg: str | None = None,
) -> dict:
    """The running task's report at ``/task/{id}/reports`` (Druid's live report shape)."""
    return {
        "ingestionStatsAndErrors": {
            "taskId": task_id,
            "payload": {
                "ingestionState": str(state),
                "unparseableEvents": unparseable_events_payload(events),
                "rowStats": row_stats_payload(meters),
                "errorMsg": error_msg,
            },
            "type": "ingestionStatsAndErrors",
        }
    }


def completion_report(
    task_id: str,
    state: IngestionState | str,
    totals: dict[str, RowStats],
    events: dict[str, list[ParseExceptionReport]] | None,
    error_msg: str | None,
    task_context: dict[str, Any] | None = None,
) -> dict:
    """The finished task's report, exactly Druid's ``ingestionStatsAndErrors`` + ``taskContext``."""
    return {
        "ingestionStatsAndErrors": {
            "taskId": task_id,
            "payload": {
                "ingestionState": str(state),
                "unparseableEvents": unparseable_events_payload(events),
                "rowStats": {phase: totals.get(phase, RowStats()).to_dict() for phase in PHASES},
                "segmentAvailabilityConfirmed": False,
                "segmentAvailabilityWaitTimeMs": 0,
                "recordsProcessed": None,
                "errorMsg": error_msg,
            },
            "type": "ingestionStatsAndErrors",
        },
        "taskContext": {"type": "taskContext", "taskId": task_id, "payload": dict(task_context or {})},
    }
