"""Druid's granularities, in one place: segment allocation, lock intervals, publishing, ingestion and
the client all bucket time through this module, so a granularity one of them accepts the others do too.

Druid's JSON forms are accepted: a simple name (``"DAY"``, ``"six_hour"``, ``"all"``, ``"none"``), an
ISO-8601 period string (``"PT6H"``), ``{"type": "period", "period": "PT6H", "timeZone": "UTC",
"origin": "..."}``, ``{"type": "duration", "duration": 21600000, "origin": "..."}`` and
``{"type": "<simple name>"}``. All arithmetic is UTC (other time zones are refused, naming the field
value). Fixed-length granularities are plain floor division from their origin; calendar ones (month,
quarter, year, ``P1M``...) go through numpy's datetime64 so a column is truncated without a loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from overlord.errors import InvalidGranularity
from overlord.isotime import Interval, format_ms, parse_instant_ms

if TYPE_CHECKING:  # numpy loads only where month buckets are computed: the CLI never pays for it
    import numpy as np

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
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
    "week": _WEEK,
}
_CALENDAR = {"month": 1, "quarter": 3, "year": 12}
NAMES = ("none", "all", *_FIXED, *_CALENDAR)
"""Druid's simple granularity names (lower case; any case is accepted)."""

_UTC_ZONES = (None, "UTC", "Etc/UTC", "Z", "GMT", "Etc/GMT", "+00:00")

_PERIOD = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)

MIN_MS = -(2**62)
MAX_MS = 2**62


@dataclass(frozen=True)
class Granularity:
    """A granularity: ``fixed_ms`` for fixed-length buckets, ``months`` for calendar ones.

    ``name`` is the simple name (lower case), the ISO period (``PT6H``) or ``duration:<ms>``.
    """

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

    @property
    def is_period(self) -> bool:
        return self.name.startswith("P")

    @property
    def is_duration(self) -> bool:
        return self.name.startswith("duration:")

    def truncate(self, ms: int) -> int:
        """Start of the bucket holding ``ms``."""
        if self.is_none:
            return ms
        if self.is_all:
            return MIN_MS
        if self.fixed_ms:
            return (ms - self.origin_ms) // self.fixed_ms * self.fixed_ms + self.origin_ms
        import numpy as np

        month = int(np.array(ms, dtype="datetime64[ms]").astype("datetime64[M]").astype(np.int64))
        month = month // self.months * self.months
        return int(np.array(month, dtype="datetime64[M]").astype("datetime64[ms]").astype(np.int64))

    def next(self, start_ms: int) -> int:
        """End of the bucket starting at ``start_ms``."""
        if self.is_none:
            return start_ms + 1
        if self.is_all:
            return MAX_MS
        if self.fixed_ms:
            return start_ms + self.fixed_ms
        import numpy as np

        month = int(np.array(start_ms, dtype="datetime64[ms]").astype("datetime64[M]").astype(np.int64))
        return int(np.array(month + self.months, dtype="datetime64[M]").astype("datetime64[ms]").astype(np.int64))

    def bucket(self, ms: int) -> Interval:
        """The interval of the bucket holding ``ms`` (a segment's time chunk)."""
        start = self.truncate(ms)
        return Interval(start, self.next(start))

    def widen(self, interval: Interval) -> Interval:
        """``interval`` grown to whole buckets (what a task must lock to write it)."""
        if self.is_all or self.is_none:
            return interval
        start = self.truncate(interval.start)
        end_floor = self.truncate(interval.end)
        return Interval(start, interval.end if end_floor == interval.end else self.next(end_floor))

    def truncate_array(self, ms: np.ndarray) -> np.ndarray:
        """Vectorised ``truncate`` over an int64 array."""
        import numpy as np

        if self.is_none:
            return ms
        if self.is_all:
            return np.full_like(ms, MIN_MS)
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

    def to_json(self) -> str | dict[str, Any]:
        """Druid's JSON form; ``parse(g.to_json()) == g``."""
        if self.is_duration:
            out: dict[str, Any] = {"type": "duration", "duration": self.fixed_ms}
        elif self.is_period:
            out = {"type": "period", "period": self.name, "timeZone": "UTC"}
        else:
            return self.name.upper()
        if self.origin_ms and not (self.fixed_ms == _WEEK and self.origin_ms == _WEEK_ORIGIN):
            out["origin"] = format_ms(self.origin_ms)
        return out


def parse_period_ms(period: str) -> tuple[int, int]:
    """Parse an ISO-8601 period into (fixed millis, months); exactly one is non-zero."""
    m = _PERIOD.match(period.upper())
    if not m or period.upper() in ("P", "PT") or period.upper().endswith("T"):
        raise InvalidGranularity(f"invalid period '{period}'")
    g = {k: int(v) if v else 0 for k, v in m.groupdict().items()}
    months = g["Y"] * 12 + g["M"]
    fixed = g["W"] * _WEEK + g["D"] * _DAY + g["h"] * _HOUR + g["m"] * _MINUTE + g["s"] * _SECOND
    if months and fixed:
        raise InvalidGranularity(f"period '{period}' mixes months and days/hours, which is not supported")
    if not months and not fixed:
        raise InvalidGranularity(f"invalid period '{period}'")
    return fixed, months


def from_period(period: str, origin_ms: int | None = None) -> Granularity:
    """A period granularity; without an origin, weeks start on Monday as in Druid."""
    fixed, months = parse_period_ms(period)
    if origin_ms is None:
        origin_ms = _WEEK_ORIGIN if fixed == _WEEK else 0
    return Granularity(period.upper(), fixed_ms=fixed, months=months, origin_ms=origin_ms)


def _origin(value: Mapping[str, Any]) -> int | None:
    origin = value.get("origin")
    if origin is None:
        return None
    if isinstance(origin, bool) or not isinstance(origin, str | int):
        raise InvalidGranularity(f"invalid origin {origin!r}: expected an ISO-8601 instant")
    if isinstance(origin, int):
        return origin
    try:
        return parse_instant_ms(origin)
    except ValueError:
        raise InvalidGranularity(f"invalid origin '{origin}': expected an ISO-8601 instant") from None


def parse(value: object) -> Granularity:
    """A granularity from any of Druid's JSON forms (see the module docstring), or one already parsed.

    Raises InvalidGranularity (an InvalidInput and a ValueError) with a message naming the value.
    """
    if isinstance(value, Granularity):
        return value
    if isinstance(value, str):
        name = value.lower()
        if name in ("none", "all"):
            return Granularity(name)
        if name in _FIXED:
            return Granularity(name, fixed_ms=_FIXED[name], origin_ms=_WEEK_ORIGIN if name == "week" else 0)
        if name in _CALENDAR:
            return Granularity(name, months=_CALENDAR[name])
        if name.startswith("p"):
            return from_period(value)
        raise InvalidGranularity(f"unknown granularity '{value}'; one of {', '.join(NAMES)} or an ISO-8601 period")
    if isinstance(value, Mapping):
        kind = value.get("type")
        if isinstance(kind, str) and kind.lower() in NAMES:
            return parse(kind)
        if kind == "period":
            period = value.get("period")
            if not isinstance(period, str):
                raise InvalidGranularity("period granularity needs a 'period' string")
            tz = value.get("timeZone")
            if tz not in _UTC_ZONES:
                raise InvalidGranularity(f"timeZone '{tz}' is not supported (only UTC)")
            return from_period(period, _origin(value))
        if kind == "duration":
            duration = value.get("duration")
            if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
                raise InvalidGranularity("duration granularity needs a positive 'duration' in millis")
            return Granularity(f"duration:{duration}", fixed_ms=duration, origin_ms=_origin(value) or 0)
        raise InvalidGranularity(f"unknown granularity type '{kind}'")
    raise InvalidGranularity(f"invalid granularity {value!r}")
