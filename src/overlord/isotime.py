"""ISO-8601 instants and intervals the way Druid writes and reads them (UTC, millisecond precision)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from overlord.errors import InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_ms(epoch_ms: int) -> str:
    """Format epoch millis as Druid does: ``2023-06-23T21:07:28.226Z``."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_format_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=8192)
def _format_second(epoch_s: int) -> str:
    """Whole-second prefix, cached: status listings format many timestamps from the same seconds."""
    return (_EPOCH + timedelta(seconds=epoch_s)).strftime("%Y-%m-%dT%H:%M:%S")


_DATE_ONLY = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def parse_instant_ms(text: str) -> int:
    """Parse an ISO-8601 instant (date, date-time, optional zone; UTC when none) to epoch millis."""
    s = text.strip()
    if not s:
        raise ValueError("empty instant")
    if _DATE_ONLY.match(s):
        parts = [int(p) for p in s.split("-")]
        while len(parts) < 3:
            parts.append(1)
        dt = datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
    else:
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open time interval [start, end) in epoch millis."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{format_ms(self.start)}/{format_ms(self.end)}"

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end

    def contains_ms(self, t: int) -> bool:
        return self.start <= t < self.end

    @classmethod
    def parse(cls, text: str, *, separator: str = "/", field: str = "interval") -> Interval:
        """Parse ``start/end`` (Druid's query-string form uses ``_``); the error names ``field``."""
        pieces = text.split(separator)
        if len(pieces) != 2:
            raise InvalidInput(f"Invalid {field}[{text}]: expected <start>{separator}<end> in ISO-8601")
        try:
            start, end = parse_instant_ms(pieces[0]), parse_instant_ms(pieces[1])
        except ValueError as exc:
            raise InvalidInput(f"Invalid {field}[{text}]: {exc}") from None
        if end < start:
            raise InvalidInput(f"Invalid {field}[{text}]: end is before start")
        return cls(start, end)
