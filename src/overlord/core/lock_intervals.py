"""Which intervals a task must lock before it may run (Druid's ``isReady``).

Each task type says so through its ``lock_intervals`` hook; batch tasks that name their intervals
lock them up front (bucketed to the segment granularity, condensed) and stay WAITING until the
lockbox grants all of them, while tasks that do not (an ``index_parallel`` without
``granularitySpec.intervals``) lock as they run, through task actions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from overlord.core.granularity import Granularity
from overlord.core.task import find_task_type
from overlord.errors import InvalidInput, InvalidSpec
from overlord.isotime import Interval


def condense(intervals: Iterable[Interval]) -> list[Interval]:
    """Merge overlapping and abutting intervals, as Druid's JodaUtils.condenseIntervals."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(iv)
    return out


def bucketed(intervals: Iterable[Interval], granularity: Granularity) -> list[Interval]:
    """Widen each interval to whole segment-granularity buckets, then condense."""
    return condense(granularity.widen(iv) for iv in intervals)


def declared_lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    """The time chunks a stored task spec says it will write or read; empty when it decides as it runs."""
    task_type = find_task_type(str(payload.get("type")))
    if task_type is None or task_type.lock_intervals is None:
        return []
    try:
        return condense(task_type.lock_intervals(payload))
    except (InvalidInput, InvalidSpec):
        return []  # validated at submit; a spec that no longer parses locks as it runs
