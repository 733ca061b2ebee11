"""Timestamp parsing the way Druid's ``timestampSpec`` does it, to epoch millis UTC.

Two paths share one meaning: ``parse_value`` handles a single value (the exact, per-row path and
the expression language), ``parse_column`` converts a whole Arrow column at once (the fast path)
and falls back to ``parse_value`` per element only when the vectorised cast cannot decide.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overlord.isotime import parse_instant_ms

NAMED_FORMATS = ("iso", "auto", "millis", "posix", "micro", "nano", "ruby")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Joda pattern letters -> strptime directives (longest run first).
_JODA = [
    ("yyyy", "%Y"),
    ("YYYY", "%Y"),
    ("yy", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("M", "%m"),
    ("dd", "%d"),
    ("d", "%d"),
    ("HH", "%H"),
    ("H", "%H"),
    ("hh", "%I"),
    ("h", "%I"),
    ("mm", "%M"),
    ("m", "%M"),
    ("ss", "%S"),
    ("s", "%S"),
    ("SSSSSS", "%f"),
    ("SSS", "%f"),
    ("SS", "%f"),
    ("S", "%f"),
    ("ZZ", "%z"),
    ("Z", "%z"),
    ("EEEE", "%A"),
    ("EEE", "%a"),
    ("a", "%p"),
    ("DDD", "%j"),
    ("D", "%j"),
    ("z", "%Z"),
    ("XXX", "%z"),
    ("X", "%z"),
]
_JODA_LETTERS = set("GyYxwWeEuDdMLkKhHmsSaAzZX")


class TimestampError(ValueError):
    """A value cannot be read as a timestamp with the configured format."""


def joda_to_strptime(pattern: str) -> str:
    """Translate a Joda-Time pattern (``yyyy-MM-dd'T'HH:mm:ss.SSSZ``) to a strptime format."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            if end == -1:
                raise ValueError(f"unterminated quote in pattern '{pattern}'")
            literal = pattern[i + 1 : end] if end > i + 1 else "'"
            out.append(literal.replace("%", "%%"))
            i = end + 1
            continue
        if ch in _JODA_LETTERS:
            for token, directive in _JODA:
                if pattern.startswith(token, i):
                    out.append(directive)
                    i += len(token)
                    break
            else:
                raise ValueError(f"unsupported pattern letter '{ch}' in pattern '{pattern}'")
            continue
        if ch.isalpha():
            raise ValueError(f"unsupported pattern letter '{ch}' in pattern '{pattern}'")
        out.append("%%" if ch == "%" else ch)
        i += 1
    return "".join(out)


def _dt_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _number(value: object) -> float | int:
    if isinstance(value, bool):
        raise TimestampError(f"not a number: {value!r}")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise TimestampError(f"not a number: {value!r}") from None


_DIGITS = re.compile(r"^-?\d+$")


def make_parser(fmt: str) -> Callable[[object], int]:
    """Return a function turning one raw value into epoch millis; raises TimestampError."""
    f = fmt.lower() if fmt.lower() in NAMED_FORMATS else fmt
    if f == "millis":
        return lambda v: int(_number(v))
    if f == "posix":
        return lambda v: int(_number(v) * 1000)
    if f == "micro":
        return lambda v: int(_number(v) // 1000)
    if f == "nano":
        return lambda v: int(_number(v) // 1_000_000)
    if f == "ruby":
        return lambda v: int(_number(v) * 1000)
    if f in ("iso", "auto"):
        auto = f == "auto"

        def parse_iso(v: object) -> int:
            if isinstance(v, bool):
                raise TimestampError(f"not a timestamp: {v!r}")
            if isinstance(v, int | float):
                if auto:
                    return int(v)
                raise TimestampError(f"not an ISO timestamp: {v!r}")
            text = str(v).strip()
            if auto and _DIGITS.match(text):
                return int(text)
            try:
                return parse_instant_ms(text)
            except ValueError as exc:
                raise TimestampError(str(exc)) from None

        return parse_iso
    directive = joda_to_strptime(fmt)

    def parse_pattern(v: object) -> int:
        text = str(v).strip()
        try:
            return _dt_to_ms(datetime.strptime(text, directive))
        except ValueError as exc:
            raise TimestampError(str(exc)) from None

    return parse_pattern


def validate_format(fmt: str) -> None:
    """Raise ValueError when ``fmt`` is neither a named format nor a usable Joda pattern."""
    if fmt.lower() in NAMED_FORMATS:
        return
    if not any(c in _JODA_LETTERS for c in fmt):
        raise ValueError(f"unknown format '{fmt}'")
    joda_to_strptime(fmt)


def parse_value(value: object, fmt: str) -> int:
    """Parse one value; raises TimestampError (also for null)."""
    if value is None or value == "":
        raise TimestampError("null timestamp")
    return make_parser(fmt)(value)


_TS_MS_UTC = pa.timestamp("ms", tz="UTC")


def _vector_cast(arr: pa.Array, fmt: str) -> pa.Array | None:
    """Try the whole column at once; None when some value needs the exact path."""
    f = fmt.lower()
    t = arr.type
    try:
        if f in ("iso", "auto") and pa.types.is_string(t) | pa.types.is_large_string(t):
            if f == "auto" and pc.any(pc.match_substring_regex(arr, r"^-?\d+$")).as_py():
                return None
            return pc.cast(pc.cast(arr, _TS_MS_UTC), pa.int64())
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
        if numeric and f in ("auto", "millis"):
            return pc.cast(arr, pa.int64(), safe=False)
        if numeric and f in ("posix", "ruby"):
            return pc.cast(pc.multiply(pc.cast(arr, pa.float64()), 1000.0), pa.int64(), safe=False)
        if pa.types.is_integer(t) and f == "micro":
            return _floordiv(arr, 1000)
        if pa.types.is_integer(t) and f == "nano":
            return _floordiv(arr, 1_000_000)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def _floordiv(arr: pa.Array, d: int) -> pa.Array:
    np_arr = arr.to_numpy(zero_copy_only=False)
    mask = arr.is_null().to_numpy(zero_copy_only=False)
    vals = np.floor_divide(np.where(mask, 0, np_arr).astype(np.int64), d)
    return pa.array(vals, type=pa.int64(), mask=mask)


def parse_column(arr: pa.Array, fmt: str) -> tuple[pa.Array, np.ndarray]:
    """Parse a column to int64 millis; returns (values, bad) where ``bad`` marks unparseable rows.

    Nulls are returned as null and flagged bad so the caller can apply ``missingValue``.
    """
    if isinstance(arr, pa.ChunkedArray) and arr.num_chunks == 1:
        arr = arr.chunk(0)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.int64()), np.ones(len(arr), dtype=bool)
    fast = _vector_cast(arr, fmt)
    if fast is not None:
        bad = fast.is_null().to_numpy(zero_copy_only=False)
        return fast, bad
    parser = make_parser(fmt)
    out: list[int | None] = []
    for v in arr.to_pylist():
        if v is None or v == "":
            out.append(None)
            continue
        try:
            out.append(parser(v))
        except (TimestampError, ValueError, OverflowError):
            out.append(None)
    res = pa.array(out, type=pa.int64())
    return res, res.is_null().to_numpy(zero_copy_only=False)
