"""Which intervals a task must lock before it may run (Druid's ``isReady``), read from its spec.

Batch tasks that name their intervals lock them up front, bucketed to the segment granularity and
condensed, and stay WAITING until the lockbox grants all of them; tasks that do not (e.g. an
``index_parallel`` without ``granularitySpec.intervals``) lock while they run, through actions.
"""

from __future__ import annotations

from typing import Any

from overlord.errors import InvalidInput, InvalidSpec
from overlord.ingest import granularity as granularities
from overlord.isotime import Interval


def condense(intervals: list[Interval]) -> list[Interval]:
    """Merge overlapping and abutting intervals, as Druid's JodaUtils.condenseIntervals."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(iv)
    return out


def declared_lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    """The time chunks a task spec says it will write or read; empty when it decides as it runs."""
    try:
        spec = payload.get("spec") or payload.get("ingestionSpec")
        if isinstance(spec, dict):
            gspec = (spec.get("dataSchema") or {}).get("granularitySpec") or {}
            raw = gspec.get("intervals") or []
            if not raw:
                return []
            gran = granularities.parse(gspec.get("segmentGranularity", "day"))
            buckets: list[Interval] = []
            for text in raw:
                iv = Interval.parse(str(text))
                if gran.is_all or gran.is_none:
                    buckets.append(iv)
                else:
                    start = gran.truncate(iv.start)
                    end = iv.end if gran.truncate(iv.end) == iv.end else gran.next(gran.truncate(iv.end))
                    buckets.append(Interval(start, end))
            return condense(buckets)
        interval = payload.get("interval")
        if interval is None and isinstance(payload.get("ioConfig"), dict):
            interval = (payload["ioConfig"].get("inputSpec") or {}).get("interval")
        if isinstance(interval, str) and payload.get("type") != "noop":
            return [Interval.parse(interval)]
    except (InvalidInput, InvalidSpec, ValueError):
        return []  # the type's own validation reports a malformed interval
    return []
