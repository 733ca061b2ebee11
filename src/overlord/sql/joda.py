"""Joda-Time patterns (what Druid's TIME_FORMAT and TIME_PARSE take) as DuckDB strftime/strptime formats.

Only the pattern letters with an exact strftime equivalent are translated; any other letter is an
SqlUnsupported error naming it, so a pattern never prints something Druid would not. Times are UTC,
so the offset letters print a fixed ``+0000`` / ``+00:00``.
"""

from __future__ import annotations

from overlord.errors import SqlError, SqlUnsupported
from overlord.isotime import parse_instant_ms as _parse_instant_ms

ISO_STRFTIME = "%Y-%m-%dT%H:%M:%S.%gZ"
"""Druid's default TIME_FORMAT output: ISO-8601 with milliseconds, ``Z`` for UTC."""

_TOKENS = {
    "yyyy": "%Y",
    "YYYY": "%Y",
    "yy": "%y",
    "YY": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "M": "%-m",
    "dd": "%d",
    "d": "%-d",
    "DDD": "%j",
    "HH": "%H",
    "H": "%-H",
    "hh": "%I",
    "h": "%-I",
    "mm": "%M",
    "m": "%-M",
    "ss": "%S",
    "s": "%-S",
    "SSS": "%g",
    "SSSSSS": "%f",
    "a": "%p",
    "EEEE": "%A",
    "EEE": "%a",
    "E": "%a",
    "ZZ": "+00:00",
    "Z": "+0000",
}


def to_strftime(pattern: str, function: str) -> str:
    """A strftime format printing (or reading) what a Joda pattern does."""
    if not isinstance(pattern, str) or not pattern:
        raise SqlError(f"{function} needs a non-empty pattern")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                raise SqlError(f"{function}: unterminated quote in pattern [{pattern}]")
            literal = pattern[i + 1 : end] or "'"
            out.append(literal.replace("%", "%%"))
            i = end + 1
            continue
        if c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            token = pattern[i:j]
            if token not in _TOKENS:
                raise SqlUnsupported(f"{function}: pattern letter(s) [{token}] in [{pattern}] are not supported")
            out.append(_TOKENS[token])
            i = j
            continue
        out.append("%%" if c == "%" else c)
        i += 1
    return "".join(out)


def parse_instant_ms(text: str, function: str) -> int:
    """An ISO-8601 instant argument (an origin), or an error naming the function."""
    try:
        return _parse_instant_ms(text)
    except ValueError:
        raise SqlError(f"{function}: [{text}] is not an ISO-8601 timestamp") from None
