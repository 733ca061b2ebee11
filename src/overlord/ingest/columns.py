"""Convert raw input columns (whatever type the JSON/CSV reader inferred) to typed columns.

Druid reads a string ``"12"`` into a long column as 12, a double 1.7 as 1, and ``"abc"`` as
null with a parse error on the row. These converters do that for a whole column and return a
boolean mask of the values that failed, so the caller can count ``processedWithError`` exactly.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

_INT_RE = r"^\s*[+-]?\d{1,18}\s*$"
_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|Infinity|NaN)\s*$"


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Decode dictionaries; chunked columns stay chunked (combining them would copy)."""
    if isinstance(arr, pa.ChunkedArray) and arr.num_chunks == 1:
        arr = arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode() if isinstance(arr, pa.Array) else pc.cast(arr, arr.type.value_type)
    return arr


def _no_errors(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def _json_text(v: object) -> str | None:
    if v is None:
        return None
    return orjson.dumps(v).decode()


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t)


def to_string(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Any column as strings: numbers as text, booleans as true/false, nested values as JSON."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t) or pa.types.is_null(t):
        return arr.cast(pa.string())
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_timestamp(t):
        return pc.cast(pc.cast(arr, pa.int64()), pa.string())
    if _is_nested(t):
        return pa.array([_json_text(v) for v in arr.to_pylist()], pa.string())
    return pc.cast(arr, pa.string())


def to_json(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column for a ``json`` dimension: nested values serialised as JSON text."""
    arr = _plain(arr)
    if pa.types.is_string(arr.type) or pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    return pa.array([_json_text(v) for v in arr.to_pylist()], pa.string())


def _numeric_from_strings(arr: pa.Array, want_int: bool) -> tuple[pa.Array, np.ndarray]:
    n = len(arr)
    stripped = pc.utf8_trim_whitespace(arr)
    empty = pc.fill_null(pc.equal(stripped, ""), True)
    is_int = pc.fill_null(pc.match_substring_regex(arr, _INT_RE), False)
    all_int = pc.all(pc.or_(is_int, empty)).as_py()
    if all_int:
        vals = pc.cast(pc.if_else(empty, None, stripped), pa.int64())
        return (vals if want_int else pc.cast(vals, pa.float64())), _no_errors(n)
    is_float = pc.fill_null(pc.match_substring_regex(arr, _FLOAT_RE), False)
    ok = pc.or_(pc.or_(is_int, is_float), empty)
    errors = ~ok.to_numpy(zero_copy_only=False).astype(bool)
    dbl = pc.cast(pc.if_else(pc.and_(is_float, pc.invert(empty)), stripped, None), pa.float64())
    if not want_int:
        return dbl, errors
    ints = pc.cast(pc.if_else(is_int, stripped, None), pa.int64())
    from_dbl = pc.cast(pc.trunc(dbl), pa.int64(), safe=False)
    return pc.coalesce(ints, from_dbl), errors


def to_long(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(int64 column, errors): doubles truncate toward zero, bad text becomes null + error."""
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_int64(t):
        return arr, _no_errors(n)
    if pa.types.is_integer(t):
        return pc.cast(arr, pa.int64()), _no_errors(n)
    if pa.types.is_floating(t):
        return pc.cast(pc.trunc(arr), pa.int64(), safe=False), _no_errors(n)
    if pa.types.is_boolean(t):
        return pc.cast(arr, pa.int64()), _no_errors(n)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.int64()), _no_errors(n)
    if pa.types.is_timestamp(t):
        return pc.cast(arr, pa.int64()), _no_errors(n)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _numeric_from_strings(arr.cast(pa.string()), True)
    errors = ~arr.is_null().to_numpy(zero_copy_only=False)
    return pa.nulls(n, pa.int64()), errors


def to_double(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(float64 column, errors)."""
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_float64(t):
        return arr, _no_errors(n)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return pc.cast(arr, pa.float64()), _no_errors(n)
    if pa.types.is_null(t):
        return pa.nulls(n, pa.float64()), _no_errors(n)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _numeric_from_strings(arr.cast(pa.string()), False)
    errors = ~arr.is_null().to_numpy(zero_copy_only=False)
    return pa.nulls(n, pa.float64()), errors


def to_float(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """(float32 column, errors)."""
    vals, errors = to_double(arr)
    return pc.cast(vals, pa.float32(), safe=False), errors


def convert(arr: pa.Array | pa.ChunkedArray, kind: str) -> tuple[pa.Array, np.ndarray]:
    """Convert to a Druid column type: string, long, float, double, json."""
    if kind == "long":
        return to_long(arr)
    if kind == "double":
        return to_double(arr)
    if kind == "float":
        return to_float(arr)
    if kind == "json":
        a = to_json(arr)
        return a, _no_errors(len(a))
    a = to_string(arr)
    return a, _no_errors(len(a))


def discover_kind(arr: pa.Array | pa.ChunkedArray) -> str:
    """The Druid type schema discovery would give a raw column (long, double, json or string).

    Booleans become longs 1/0, as Druid 28+ does with strict booleans.
    """
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "long"
    if pa.types.is_floating(t):
        return "double"
    if _is_nested(t):
        return "json"
    return "string"


def widen(a: str, b: str) -> str:
    """The type that holds values of both discovered types (long+double -> double, else string)."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"long", "double"}:
        return "double"
    return "json" if "json" in (a, b) else "string"


ARROW_TYPES = {
    "string": pa.string(),
    "json": pa.string(),
    "long": pa.int64(),
    "double": pa.float64(),
    "float": pa.float32(),
}
