"""Druid granularities: truncate a timestamp and find its bucket, per value or for a whole column.

All arithmetic is UTC. Fixed-length granularities are plain floor division; calendar ones
(month, quarter, year) go through numpy's datetime64 so a column is truncated without a loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from overlord.isotime import Interval

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK_ORIGIN = 4 * _DAY  # 1970-01-05 was a Monday; Druid's weeks start on Monday

_FIXED = {
    "second": _SECOND,
    "minute": _MINUTE,
    "five_minute": 5 * _MINUTE,
    "ten_minute": 10 * _MINUTE,
    "fifteen_minute": 15 * _MINUTE,
    "thirty_minute": 30 * _MINUTE,
    "hour": _HOUR,
    "six_hour": 6 * _HOUR,
    "eight_hour": 8 * _HOUR,
    "day": _DAY,
    "week": 7 * _DAY,
}
_CALENDAR = {"month": 1, "quarter": 3, "year": 12}
NAMES = ("none", "all", *_FIXED, *_CALENDAR)

_PERIOD = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)

_MIN_MS = -(2**62)
_MAX_MS = 2**62


@dataclass(frozen=True)
class Granularity:
    """A granularity: ``fixed_ms`` for fixed-length buckets, ``months`` for calendar ones."""

    name: str
    fixed_ms: int = 0
    months: int = 0
    origin_ms: int = 0

    @property
    def is_none(self) -> bool:
        return self.name == "none"

    @property
    def is_all(self) -> bool:
        return self.name == "all"

    def truncate(self, ms: int) -> int:
        """Start of the bucket holding ``ms``."""
        if self.is_none:
            return ms
        if self.is_all:
            return _MIN_MS
        if self.fixed_ms:
            return (ms - self.origin_ms) // self.fixed_ms * self.fixed_ms + self.origin_ms
        month = int(np.array(ms, dtype="datetime64[ms]").astype("datetime64[M]").astype(np.int64))
        month = month // self.months * self.months
        return int(np.array(month, dtype="datetime64[M]").astype("datetime64[ms]").astype(np.int64))

    def next(self, start_ms: int) -> int:
        """End of the bucket starting at ``start_ms``."""
        if self.is_none:
            return start_ms + 1
        if self.is_all:
            return _MAX_MS
        if self.fixed_ms:
            return start_ms + self.fixed_ms
        month = int(np.array(start_ms, dtype="datetime64[ms]").astype("datetime64[M]").astype(np.int64))
        return int(np.array(month + self.months, dtype="datetime64[M]").astype("datetime64[ms]").astype(np.int64))

    def bucket(self, ms: int) -> Interval:
        """The interval of the bucket holding ``ms``."""
        start = self.truncate(ms)
        return Interval(start, self.next(start))

    def truncate_array(self, ms: np.ndarray) -> np.ndarray:
        """Vectorised ``truncate`` over an int64 array."""
        if self.is_none:
            return ms
        if self.is_all:
            return np.full_like(ms, _MIN_MS)
        if self.fixed_ms:
            return (ms - self.origin_ms) // self.fixed_ms * self.fixed_ms + self.origin_ms
        months = ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
        months = months // self.months * self.months
        return months.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)

    def iter_buckets(self, interval: Interval) -> list[Interval]:
        """Buckets overlapping ``interval`` (used to expand granularitySpec intervals)."""
        if self.is_all or self.is_none:
            return [interval]
        out = []
        start = self.truncate(interval.start)
        while start < interval.end:
            end = self.next(start)
            out.append(Interval(start, end))
            start = end
        return out


def parse_period_ms(period: str) -> tuple[int, int]:
    """Parse an ISO-8601 period into (fixed millis, months); exactly one is non-zero."""
    m = _PERIOD.match(period.upper() if period.startswith("p") else period)
    if not m or period in ("P", "PT"):
        raise ValueError(f"invalid period '{period}'")
    g = {k: int(v) if v else 0 for k, v in m.groupdict().items()}
    months = g["Y"] * 12 + g["M"]
    fixed = g["W"] * 7 * _DAY + g["D"] * _DAY + g["h"] * _HOUR + g["m"] * _MINUTE + g["s"] * _SECOND
    if months and fixed:
        raise ValueError(f"period '{period}' mixes months and days/hours, which is not supported")
    if not months and not fixed:
        raise ValueError(f"invalid period '{period}'")
    return fixed, months


def from_period(period: str, origin_ms: int = 0) -> Granularity:
    fixed, months = parse_period_ms(period)
    if fixed == 7 * _DAY and not origin_ms:
        origin_ms = _WEEK_ORIGIN
    return Granularity(period, fixed_ms=fixed, months=months, origin_ms=origin_ms)


def parse(value: object) -> Granularity:
    """Parse a granularity given as a name or as ``{"type": "period", "period": ...}``.

    Raises ValueError with a message suitable for InvalidSpec.
    """
    if isinstance(value, str):
        name = value.lower()
        if name in ("none", "all"):
            return Granularity(name)
        if name in _FIXED:
            return Granularity(name, fixed_ms=_FIXED[name], origin_ms=_WEEK_ORIGIN if name == "week" else 0)
        if name in _CALENDAR:
            return Granularity(name, months=_CALENDAR[name])
        if value.upper().startswith("P"):
            return from_period(value.upper())
        raise ValueError(f"unknown granularity '{value}'")
    if isinstance(value, dict):
        kind = value.get("type")
        if kind in ("none", "all") or kind in _FIXED or kind in _CALENDAR:
            return parse(kind)
        if kind == "period":
            period = value.get("period")
            if not isinstance(period, str):
                raise ValueError("period granularity needs a 'period' string")
            tz = value.get("timeZone")
            if tz not in (None, "UTC", "Etc/UTC", "Z"):
                raise ValueError(f"timeZone '{tz}' is not supported (only UTC)")
            origin = value.get("origin")
            from overlord.isotime import parse_instant_ms

            return from_period(period, parse_instant_ms(origin) if origin else 0)
        if kind == "duration":
            duration = value.get("duration")
            if not isinstance(duration, int) or duration <= 0:
                raise ValueError("duration granularity needs a positive 'duration' in millis")
            return Granularity(f"duration:{duration}", fixed_ms=duration)
        raise ValueError(f"unknown granularity type '{kind}'")
    raise ValueError(f"invalid granularity {value!r}")
