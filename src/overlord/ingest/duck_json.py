"""The fast path for newline-delimited JSON files: DuckDB splits and parses, Arrow types the values.

DuckDB parses a file on every core faster than pyarrow's JSON reader, but its typed columns coerce
silently (a late ``1.5`` in a BIGINT column becomes 2, a number in a VARCHAR column its text). So
it is asked for each top-level value as JSON text (``maximum_depth=1``): that keeps its key-set
detection (a key outside the detected set is an error) and hands back what was written.
``typed_column`` then types a batch the way pyarrow's reader types a chunk (strings, int64,
double, bool, null). Anything this cannot reproduce exactly raises ``NotFastPath``: malformed or
non-object lines, a key missing from the first line, nested or mixed-type values; the caller then
reads the input again on the exact path. Only plain local files qualify.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from overlord.ingest.formats import RawBatch
from overlord.ingest.sources import InputSplit
from overlord.ingest.spec import IndexSpec

BATCH_ROWS = 1 << 16
# Date detection off (a format that never matches): every value stays the text that was written.
_OPTIONS = (
    "format='newline_delimited', records=true, maximum_depth=1, "
    "dateformat='~~never~~%Y', timestampformat='~~never~~%Y', map_inference_threshold=-1"
)
_FIRST_LINE_MAX = 1 << 20


class NotFastPath(Exception):
    """The input needs the exact path (the reason is the message); nothing of this attempt is kept."""


def eligible(spec: IndexSpec, splits: list[InputSplit]) -> bool:
    """JSON input from plain (not gzipped) local files."""
    if spec.io_config.input_format.type != "json" or not splits:
        return False
    return all(s.path is not None and s.path.suffix != ".gz" and s.path.is_file() for s in splits)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_keys(path: Path) -> tuple[list[str], int] | None:
    """Keys of the file's first non-blank line in order, and its length; None if not a JSON object."""
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            if len(line) > _FIRST_LINE_MAX:
                return None
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                return None
            return (list(value), len(line)) if isinstance(value, dict) else None
    return None


def _has_backslash(arr: pa.Array) -> bool:
    """Any backslash in the values' bytes (a whole-buffer scan; bytes outside the values only cost time)."""
    data = arr.buffers()[2]
    return data is not None and bool((np.frombuffer(data, dtype=np.uint8) == 0x5C).any())


def _decode_strings(arr: pa.Array) -> pa.Array:
    """JSON string texts (each starting with a quote) -> their values."""
    if not _has_backslash(arr):
        return pc.binary_slice(arr.view(pa.binary()), 1, -1).view(pa.string())
    return pa.array([None if v is None else orjson.loads(v) for v in arr.to_pylist()], pa.string())


_DIGIT_OR_MINUS = set("-0123456789")
_FRACTION = np.frombuffer(b".eE", dtype=np.uint8)


def _first_bytes(arr: pa.Array) -> set[str]:
    """The distinct first characters of the non-empty values (JSON texts are ASCII-led)."""
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    starts = offsets[:-1][offsets[1:] > offsets[:-1]]
    if data is None or not len(starts):
        return set()
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8)[starts], minlength=256)
    return {chr(b) for b in np.flatnonzero(counts)}


def typed_column(arr: pa.Array) -> pa.Array:
    """A column of JSON value texts typed as pyarrow's JSON reader types a chunk; NotFastPath otherwise."""
    n = len(arr)
    if arr.null_count == n:
        return pa.nulls(n)
    firsts = _first_bytes(arr)
    if firsts == {'"'}:
        return _decode_strings(arr)
    if firsts <= {"t", "f"}:
        return pc.equal(arr, "true")
    if firsts <= _DIGIT_OR_MINUS:
        data = arr.buffers()[2]
        fractional = data is not None and bool(np.isin(np.frombuffer(data, dtype=np.uint8), _FRACTION).any())
        if not fractional:
            try:
                return pc.cast(arr, pa.int64())
            except pa.ArrowInvalid:
                raise NotFastPath("an integer beyond int64") from None
        return pc.cast(arr, pa.float64())
    raise NotFastPath("a column holds nested values or mixes value types")


def _typed_batch(batch: pa.RecordBatch) -> pa.Table:
    cols = [batch.column(i) for i in range(batch.num_columns)]
    return pa.table({name: typed_column(col) for name, col in zip(batch.schema.names, cols, strict=True)})


def batches(split: InputSplit, threads: int, batch_rows: int = BATCH_ROWS) -> Iterator[RawBatch]:
    """Typed batches of one file, in file order; ``nbytes`` of all batches sum to the file size."""
    path = split.path
    assert path is not None, "eligible() admits files only"
    first = _first_keys(path)
    if first is None:
        raise NotFastPath("the first line is not a JSON object")
    size = os.path.getsize(path)
    con = duckdb.connect(config={"threads": max(1, threads), "preserve_insertion_order": True})
    try:
        try:
            rel = con.sql(f"SELECT * FROM read_json({_sql_text(str(path))}, {_OPTIONS})")
            keys, row_bytes = first
            if rel.columns != keys:
                raise NotFastPath("the first line does not hold every key, in order")
            reader = rel.to_arrow_reader(batch_rows)
            pending: RawBatch | None = None
            given = 0
            for rb in reader:
                if rb.num_rows == 0:
                    continue
                if pending is not None:
                    given += pending.nbytes
                    yield pending
                table = _typed_batch(rb)
                # bytes are known for the whole file only: a batch is credited an estimate
                # (first line's length per row), the last batch the rest, so the total is exact
                pending = RawBatch(table, min(size - given, table.num_rows * row_bytes))
        except duckdb.Error as exc:
            raise NotFastPath(f"DuckDB: {str(exc).splitlines()[0]}") from exc
        if pending is None:
            raise NotFastPath("no rows")
        pending.nbytes = size - given
        yield pending
    finally:
        con.close()
