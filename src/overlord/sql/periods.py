"""ISO-8601 periods (``PT1H``, ``P1D``, ``P3M``) as Druid's TIME_FLOOR/TIME_CEIL/TIME_SHIFT read them.

Druid buckets a period from an origin (the epoch, in UTC) with Joda's chronology: fixed-length
periods (weeks, days, hours, minutes, seconds) are multiples of milliseconds from the origin, except
``P1W`` which starts on Monday; months and years count calendar months from January 1970. These
helpers turn a period into DuckDB SQL text with exactly those answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from overlord.errors import SqlUnsupported

_PERIOD = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d{1,3})?)S)?)?$"
)

MS_PER = {"W": 7 * 86_400_000, "D": 86_400_000, "h": 3_600_000, "m": 60_000}


@dataclass(frozen=True)
class Period:
    """A parsed period: calendar months (years folded in) and a fixed part in milliseconds."""

    text: str
    years: int
    months: int
    weeks: int
    fixed_ms: int

    @property
    def total_months(self) -> int:
        return self.years * 12 + self.months

    def interval_sql(self) -> str:
        """A DuckDB INTERVAL for adding this period (calendar-aware for months and years)."""
        parts = []
        if self.total_months:
            parts.append(f"{self.total_months} months")
        if self.fixed_ms:
            parts.append(f"{self.fixed_ms} milliseconds")
        return "INTERVAL '" + (" ".join(parts) or "0 milliseconds") + "'"


def parse_period(text: object, function: str) -> Period:
    """A period literal, or an error naming the function and the text it could not read."""
    if not isinstance(text, str):
        raise SqlUnsupported(f"{function} needs a literal ISO-8601 period such as 'PT1H' or 'P1D'")
    m = _PERIOD.match(text.strip().upper())
    if not m or text.strip().upper() in ("P", "PT"):
        raise SqlUnsupported(f"{function}: [{text}] is not an ISO-8601 period (such as 'PT1H', 'P1D', 'P1M')")
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    fixed = sum(int(g[k]) * ms for k, ms in MS_PER.items() if k in g)
    fixed += round(float(g.get("s", "0")) * 1000)
    period = Period(text, int(g.get("Y", 0)), int(g.get("M", 0)), int(g.get("W", 0)), fixed)
    if period.total_months == 0 and period.fixed_ms == 0:
        raise SqlUnsupported(f"{function}: period [{text}] is zero")
    return period


def floor_sql(ts: str, period: Period, function: str, origin_ms: int | None = None) -> str:
    """DuckDB SQL for the start of the bucket of ``ts`` (a TIMESTAMP expression)."""
    if period.total_months and period.fixed_ms:
        raise SqlUnsupported(f"{function} with a period mixing months or years with other fields ([{period.text}])")
    if period.total_months:
        if origin_ms is not None:
            raise SqlUnsupported(f"{function} with an origin and a period of months or years ([{period.text}])")
        if period.total_months == 1:
            return f"date_trunc('month', {ts})"
        if period.total_months == 12:
            return f"date_trunc('year', {ts})"
        n = period.total_months
        # Calendar months since January 1970, floored to a multiple of n.
        return f"__druid_floor_months({ts}, {n})"
    if period.weeks == 1 and period.fixed_ms == MS_PER["W"] and origin_ms is None:
        return f"date_trunc('week', {ts})"
    return f"__druid_floor_ms({ts}, {period.fixed_ms}, {origin_ms or 0})"
