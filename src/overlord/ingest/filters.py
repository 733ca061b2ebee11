"""Druid ``transformSpec.filter`` filters, evaluated over a whole Arrow table at once.

Druid compares dimension values as strings (selector, in, like, regex, lexicographic bound)
or as numbers (numeric bound); values are read from the row after transforms, so a filter may
name any input column, not only dimensions. Null matches only a null ``value`` (SQL-compatible
null handling, Druid's default since 28).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overlord.ingest import columns
from overlord.isotime import Interval

ColumnGetter = Callable[[str], pa.Array]


class FilterError(ValueError):
    """A filter definition is invalid; ``path`` is relative to the filter object."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Filter:
    """Base: ``mask(get, n)`` returns a boolean numpy array of rows that pass."""

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def columns(self) -> set[str]:
        return set()


def _bools(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(bool)


@dataclass(frozen=True)
class Selector(Filter):
    dimension: str
    value: str | None

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        col = columns.to_string(get(self.dimension))
        if self.value is None:
            return col.is_null().to_numpy(zero_copy_only=False)
        return _bools(pc.equal(col, self.value))

    def columns(self) -> set[str]:
        return {self.dimension}


@dataclass(frozen=True)
class In(Filter):
    dimension: str
    values: tuple[str | None, ...]

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        col = columns.to_string(get(self.dimension))
        present = [v for v in self.values if v is not None]
        out = _bools(pc.is_in(col, value_set=pa.array(present, pa.string()))) if present else np.zeros(n, bool)
        if None in self.values:
            out |= col.is_null().to_numpy(zero_copy_only=False)
        return out

    def columns(self) -> set[str]:
        return {self.dimension}


@dataclass(frozen=True)
class Bound(Filter):
    dimension: str
    lower: str | None
    upper: str | None
    lower_strict: bool
    upper_strict: bool
    numeric: bool

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        raw = get(self.dimension)
        lo: Any
        hi: Any
        if self.numeric:
            col, _ = columns.to_double(raw)
            lo = float(self.lower) if self.lower is not None else None
            hi = float(self.upper) if self.upper is not None else None
        else:
            col = columns.to_string(raw)
            lo, hi = self.lower, self.upper
        out = ~col.is_null().to_numpy(zero_copy_only=False)
        if lo is not None:
            out &= _bools(pc.greater(col, lo) if self.lower_strict else pc.greater_equal(col, lo))
        if hi is not None:
            out &= _bools(pc.less(col, hi) if self.upper_strict else pc.less_equal(col, hi))
        return out

    def columns(self) -> set[str]:
        return {self.dimension}


@dataclass(frozen=True)
class Like(Filter):
    dimension: str
    pattern: str
    escape: str | None

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        col = columns.to_string(get(self.dimension))
        return _bools(pc.match_substring_regex(col, like_to_regex(self.pattern, self.escape)))

    def columns(self) -> set[str]:
        return {self.dimension}


@dataclass(frozen=True)
class Regex(Filter):
    dimension: str
    pattern: str

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        col = columns.to_string(get(self.dimension))
        return _bools(pc.match_substring_regex(col, self.pattern))

    def columns(self) -> set[str]:
        return {self.dimension}


@dataclass(frozen=True)
class IntervalFilter(Filter):
    dimension: str
    intervals: tuple[Interval, ...]

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        col, _ = columns.to_long(get(self.dimension))
        vals = col.to_numpy(zero_copy_only=False)
        valid = ~col.is_null().to_numpy(zero_copy_only=False)
        vals = np.where(valid, vals, 0).astype(np.int64)
        out = np.zeros(n, dtype=bool)
        for iv in self.intervals:
            out |= (vals >= iv.start) & (vals < iv.end)
        return out & valid

    def columns(self) -> set[str]:
        return {self.dimension}


@dataclass(frozen=True)
class And(Filter):
    fields: tuple[Filter, ...]

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        out = np.ones(n, dtype=bool)
        for f in self.fields:
            out &= f.mask(get, n)
        return out

    def columns(self) -> set[str]:
        return set().union(*(f.columns() for f in self.fields))


@dataclass(frozen=True)
class Or(Filter):
    fields: tuple[Filter, ...]

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for f in self.fields:
            out |= f.mask(get, n)
        return out

    def columns(self) -> set[str]:
        return set().union(*(f.columns() for f in self.fields))


@dataclass(frozen=True)
class Not(Filter):
    field: Filter

    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        return ~self.field.mask(get, n)

    def columns(self) -> set[str]:
        return self.field.columns()


@dataclass(frozen=True)
class TrueFilter(Filter):
    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        return np.ones(n, dtype=bool)


@dataclass(frozen=True)
class FalseFilter(Filter):
    def mask(self, get: ColumnGetter, n: int) -> np.ndarray:
        return np.zeros(n, dtype=bool)


def like_to_regex(pattern: str, escape: str | None = None) -> str:
    """Translate an SQL LIKE pattern (% and _) to an anchored regular expression."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    out.append("$")
    return "(?s)" + "".join(out)


def _str_or_none(value: object, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise FilterError(f"expected a string, got {type(value).__name__}", path)


def _require_dim(d: dict, path: str) -> str:
    dim = d.get("dimension")
    if not isinstance(dim, str) or not dim:
        raise FilterError("missing or empty 'dimension'", f"{path}.dimension")
    return dim


_ALLOWED = {
    "selector": {"type", "dimension", "value", "extractionFn"},
    "equals": {"type", "column", "matchValue", "matchValueType"},
    "in": {"type", "dimension", "values", "extractionFn"},
    "bound": {"type", "dimension", "lower", "upper", "lowerStrict", "upperStrict", "ordering", "extractionFn"},
    "like": {"type", "dimension", "pattern", "escape", "extractionFn"},
    "regex": {"type", "dimension", "pattern", "extractionFn"},
    "interval": {"type", "dimension", "intervals", "extractionFn"},
    "and": {"type", "fields"},
    "or": {"type", "fields"},
    "not": {"type", "field"},
    "true": {"type"},
    "false": {"type"},
}


def parse_filter(d: object, path: str = "filter") -> Filter:
    """Build a Filter from Druid JSON; raises FilterError naming the offending sub-field."""
    if not isinstance(d, dict):
        raise FilterError("expected an object", path)
    kind = d.get("type")
    if kind not in _ALLOWED:
        raise FilterError(f"unknown filter type '{kind}'", f"{path}.type")
    for key in d:
        if key not in _ALLOWED[kind]:
            raise FilterError(f"unknown field '{key}' for filter type '{kind}'", f"{path}.{key}")
    if d.get("extractionFn") is not None:
        raise FilterError("extractionFn is not supported", f"{path}.extractionFn")
    if kind == "selector":
        return Selector(_require_dim(d, path), _str_or_none(d.get("value"), f"{path}.value"))
    if kind == "equals":
        col = d.get("column")
        if not isinstance(col, str) or not col:
            raise FilterError("missing or empty 'column'", f"{path}.column")
        return Selector(col, _str_or_none(d.get("matchValue"), f"{path}.matchValue"))
    if kind == "in":
        values = d.get("values")
        if not isinstance(values, list):
            raise FilterError("'values' must be a list", f"{path}.values")
        vals = tuple(_str_or_none(v, f"{path}.values[{i}]") for i, v in enumerate(values))
        return In(_require_dim(d, path), vals)
    if kind == "bound":
        ordering = d.get("ordering", "lexicographic")
        if isinstance(ordering, dict):
            ordering = ordering.get("type")
        if ordering not in ("lexicographic", "numeric", "alphanumeric", "strlen", "version"):
            raise FilterError(f"unknown ordering '{ordering}'", f"{path}.ordering")
        if ordering not in ("lexicographic", "numeric"):
            raise FilterError(f"ordering '{ordering}' is not supported", f"{path}.ordering")
        lower = _str_or_none(d.get("lower"), f"{path}.lower")
        upper = _str_or_none(d.get("upper"), f"{path}.upper")
        if ordering == "numeric":
            for name, v in (("lower", lower), ("upper", upper)):
                if v is not None:
                    try:
                        float(v)
                    except ValueError:
                        raise FilterError(f"'{v}' is not a number", f"{path}.{name}") from None
        return Bound(
            _require_dim(d, path),
            lower,
            upper,
            bool(d.get("lowerStrict", False)),
            bool(d.get("upperStrict", False)),
            ordering == "numeric",
        )
    if kind == "like":
        pattern = d.get("pattern")
        if not isinstance(pattern, str):
            raise FilterError("'pattern' must be a string", f"{path}.pattern")
        escape = d.get("escape")
        if escape is not None and (not isinstance(escape, str) or len(escape) != 1):
            raise FilterError("'escape' must be a single character", f"{path}.escape")
        return Like(_require_dim(d, path), pattern, escape)
    if kind == "regex":
        pattern = d.get("pattern")
        if not isinstance(pattern, str):
            raise FilterError("'pattern' must be a string", f"{path}.pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise FilterError(f"invalid regex: {exc}", f"{path}.pattern") from None
        return Regex(_require_dim(d, path), pattern)
    if kind == "interval":
        ivs = d.get("intervals")
        if not isinstance(ivs, list) or not ivs:
            raise FilterError("'intervals' must be a non-empty list", f"{path}.intervals")
        parsed = []
        for i, text in enumerate(ivs):
            try:
                parsed.append(Interval.parse(str(text)))
            except Exception as exc:
                raise FilterError(str(exc), f"{path}.intervals[{i}]") from None
        return IntervalFilter(_require_dim(d, path), tuple(parsed))
    if kind in ("and", "or"):
        fields = d.get("fields")
        if not isinstance(fields, list) or not fields:
            raise FilterError("'fields' must be a non-empty list", f"{path}.fields")
        parsed_f = tuple(parse_filter(f, f"{path}.fields[{i}]") for i, f in enumerate(fields))
        return And(parsed_f) if kind == "and" else Or(parsed_f)
    if kind == "not":
        return Not(parse_filter(d.get("field"), f"{path}.field"))
    return TrueFilter() if kind == "true" else FalseFilter()


def table_getter(table: pa.Table, extra: dict[str, pa.Array] | None = None) -> ColumnGetter:
    """Column lookup for ``Filter.mask``: transformed columns first, missing columns are all-null."""
    n = table.num_rows

    def get(name: str) -> pa.Array:
        if extra and name in extra:
            return extra[name]
        if name in table.column_names:
            return table.column(name)
        return pa.nulls(n, pa.string())

    return get
