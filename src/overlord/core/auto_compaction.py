"""Automatic compaction: per-data-source configs and the duty that submits ``compact`` tasks.

Like Druid's Coordinator duty: for each configured data source, time chunks older than
``skipOffsetFromLatest`` (measured from the end of the newest segment) that hold more than one
segment and are not yet compacted to the config are candidates; a chunk that any lock or active
compaction touches is skipped rather than waited on, so ingestion never collides with compaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from overlord.config import parse_duration_ms
from overlord.core.data_segment import DataSegment
from overlord.core.ids import validate_id
from overlord.errors import ConfigError, InvalidInput
from overlord.isotime import Interval

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 5_000_000
_FIELDS = {
    "dataSource", "taskPriority", "skipOffsetFromLatest", "maxRowsPerSegment", "tuningConfig",
    "taskContext", "granularitySpec", "inputSegmentSizeBytes", "engine",
}  # fmt: skip


@dataclass(frozen=True)
class CompactionConfig:
    """One data source's automatic-compaction config (Druid's DataSourceCompactionConfig subset)."""

    data_source: str
    task_priority: int = 25
    skip_offset_ms: int = 86_400_000
    max_rows_per_segment: int = DEFAULT_MAX_ROWS
    task_context: dict[str, Any] = field(default_factory=dict)
    granularity_spec: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: Any) -> CompactionConfig:
        """Validate a config as posted; errors name the field."""
        if not isinstance(body, dict):
            raise InvalidInput("The compaction config must be a JSON object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidInput(f"Unknown field [{unknown[0]}] in compaction config")
        ds = body.get("dataSource")
        if not isinstance(ds, str) or not ds:
            raise InvalidInput("Missing required field [dataSource] in compaction config")
        validate_id(ds, "dataSource")  # it becomes the dataSource of the compact tasks submitted for it
        priority = body.get("taskPriority", 25)
        if isinstance(priority, bool) or not isinstance(priority, int) or not -(2**31) <= priority < 2**31:
            raise InvalidInput("Invalid value for field [taskPriority]: must be an integer")
        try:
            skip = parse_duration_ms(body.get("skipOffsetFromLatest", "P1D"))
        except ConfigError as exc:
            raise InvalidInput(f"Invalid value for field [skipOffsetFromLatest]: {exc.message}") from None
        tuning = body.get("tuningConfig") or {}
        if not isinstance(tuning, dict):
            raise InvalidInput("Invalid value for field [tuningConfig]: must be an object")
        if "maxRowsPerSegment" in body:
            max_rows = body["maxRowsPerSegment"]
        else:
            max_rows = (tuning.get("partitionsSpec") or {}).get("maxRowsPerSegment", DEFAULT_MAX_ROWS)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise InvalidInput("Invalid value for field [maxRowsPerSegment]: must be a positive integer")
        context = body.get("taskContext", {})
        if not isinstance(context, dict):
            raise InvalidInput("Invalid value for field [taskContext]: must be an object")
        gspec = body.get("granularitySpec")
        if gspec is not None and not isinstance(gspec, dict):
            raise InvalidInput("Invalid value for field [granularitySpec]: must be an object")
        return cls(ds, priority, skip, max_rows, context, gspec, dict(body))

    def to_json(self) -> dict[str, Any]:
        return {
            **self.raw,
            "dataSource": self.data_source,
            "taskPriority": self.task_priority,
            "skipOffsetFromLatest": self.raw.get("skipOffsetFromLatest", "P1D"),
            "maxRowsPerSegment": self.max_rows_per_segment,
            "taskContext": self.task_context,
        }

    def task_spec(self, interval: Interval) -> dict[str, Any]:
        """The ``compact`` task this config asks for, for one time chunk."""
        spec: dict[str, Any] = {
            "type": "compact",
            "dataSource": self.data_source,
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": str(interval)}},
            "tuningConfig": {
                "type": "index_parallel",
                "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": self.max_rows_per_segment},
            },
            "context": {**self.task_context, "priority": self.task_priority},
        }
        if self.granularity_spec:
            spec["granularitySpec"] = self.granularity_spec
        return spec


def is_compacted(segment: DataSegment, config: CompactionConfig) -> bool:
    state = segment.last_compaction_state
    if not state:
        return False
    rows = (state.get("partitionsSpec") or {}).get("maxRowsPerSegment")
    return rows is None or rows == config.max_rows_per_segment


def find_candidates(segments: Iterable[DataSegment], config: CompactionConfig) -> list[Interval]:
    """Time chunks that need compaction under ``config``, oldest first."""
    segs = list(segments)
    if not segs:
        return []
    cutoff = max(s.interval.end for s in segs) - config.skip_offset_ms
    chunks: dict[Interval, list[DataSegment]] = {}
    for seg in segs:
        chunks.setdefault(seg.interval, []).append(seg)
    return sorted(
        iv
        for iv, members in chunks.items()
        if iv.end <= cutoff and len(members) > 1 and not all(is_compacted(s, config) for s in members)
    )


@dataclass
class DutyResult:
    submitted: list[str] = field(default_factory=list)
    skipped_locked: list[Interval] = field(default_factory=list)


def run_duty(
    configs: Iterable[CompactionConfig],
    *,
    visible_segments: Callable[[str], list[DataSegment]],
    busy_intervals: Callable[[str], list[Interval]],
    submit: Callable[[dict[str, Any]], str],
) -> DutyResult:
    """One pass: at most one new compaction task per data source, never on a busy chunk."""
    result = DutyResult()
    for config in configs:
        busy = busy_intervals(config.data_source)
        for interval in find_candidates(visible_segments(config.data_source), config):
            if any(interval.overlaps(b) for b in busy):
                result.skipped_locked.append(interval)
                continue
            task_id = submit(config.task_spec(interval))
            log.info("Auto-compaction submitted task[%s] for %s %s", task_id, config.data_source, interval)
            result.submitted.append(task_id)
            break
    return result
