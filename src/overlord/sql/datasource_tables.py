"""Data sources as tables: exactly the visible part of each segment, read through deep storage.

A query over a data source reads the timeline's visible pieces (Druid's VersionedIntervalTimeline):
a segment visible over its whole interval is read whole; one partly overshadowed by a newer version
is read only over the stretches where it is visible, so no row is ever counted twice; unused
segments are never read. A ``WHERE __time`` range on the query (see ``time_bounds``) narrows the
timeline lookup, so only the segments overlapping it are opened.

DuckDB reads the Parquet files with its own (parallel) reader, but through ``DeepStorage.open``,
never a local path: ``DeepStorageFiles`` is an fsspec filesystem (``overlord://``) that DuckDB
calls for bytes, so object storage works the same way. Segments are immutable, so their footers
(schema, row count) are cached by segment id, as a Historical keeps what it has loaded.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.spec import AbstractFileSystem
from sqlglot import exp

from overlord.core.data_segment import DataSegment
from overlord.core.protocols import DeepStorage, LoadSpec, SegmentStore
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.isotime import Interval, parse_instant_ms

TIME = "__time"
ALL_TIME = Interval(-(2**62), 2**62)
PROTOCOL = "overlord"
_EPOCH = datetime(2000, 1, 1)


@dataclass(frozen=True)
class SegmentMeta:
    path: str  # overlord://segments/<key>.parquet
    schema: pa.Schema
    num_rows: int

    @property
    def time_is_millis(self) -> bool:
        """``__time`` stored as epoch millis (int64) rather than a UTC timestamp."""
        return TIME in self.schema.names and pa.types.is_integer(self.schema.field(TIME).type)


class DeepStorageFiles(AbstractFileSystem):  # type: ignore[misc]
    """Segment files as ``overlord://segments/<key>.parquet``, opened with ``DeepStorage.open``."""

    protocol = PROTOCOL

    def __init__(self, deep_storage: DeepStorage, capacity: int = 65_536) -> None:
        super().__init__(skip_instance_cache=True)
        self.deep_storage = deep_storage
        self.capacity = capacity
        self._specs: dict[str, LoadSpec] = {}
        self._sizes: dict[str, int] = {}
        self._meta: OrderedDict[str, SegmentMeta] = OrderedDict()
        self._mutex = threading.Lock()

    # -- what the engine asks --------------------------------------------------------------------

    def meta(self, segment: DataSegment) -> SegmentMeta:
        """The segment's path for DuckDB, its columns and row count (its footer, read once)."""
        key = hashlib.sha1(segment.identifier.encode()).hexdigest()
        with self._mutex:
            found = self._meta.get(key)
            if found is not None:
                self._meta.move_to_end(key)
                return found
            self._specs[key] = dict(segment.load_spec)
        with self.deep_storage.open(dict(segment.load_spec)) as fh:
            footer = pq.ParquetFile(fh)
            meta = SegmentMeta(f"{PROTOCOL}://segments/{key}.parquet", footer.schema_arrow, footer.metadata.num_rows)
        with self._mutex:
            self._meta[key] = meta
            while len(self._meta) > self.capacity:
                old, _ = self._meta.popitem(last=False)
                self._specs.pop(old, None)
                self._sizes.pop(old, None)
        return meta

    # -- what DuckDB asks ------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        name = str(self._strip_protocol(path)).rsplit("/", 1)[-1]
        return name.removesuffix(".parquet")

    def _spec(self, path: str) -> LoadSpec:
        with self._mutex:
            spec = self._specs.get(self._key(path))
        if spec is None:
            raise FileNotFoundError(path)
        return spec

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> SharedSegmentFile:
        if "r" not in mode:
            raise PermissionError(f"{path} is read-only")
        return SharedSegmentFile(self.deep_storage.open(self._spec(path)))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        key = self._key(path)
        with self._mutex:
            size = self._sizes.get(key)
        if size is None:
            with self.deep_storage.open(self._spec(path)) as fh:
                size = fh.seek(0, 2)
            with self._mutex:
                self._sizes[key] = size
        return {"name": path, "size": size, "type": "file"}

    def modified(self, path: str) -> datetime:
        return _EPOCH  # segment files never change once published

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return [self.info(path)] if detail else [path]


class SharedSegmentFile:
    """One opened segment file that DuckDB's scan threads share: each thread keeps its own position.

    DuckDB reads a file it scans in parallel through one handle, as ``seek`` then ``read`` from each
    thread; with one shared position two threads interleaving those calls read each other's bytes
    (a 1M-row scan failed on "invalid UTF8"). Positions are per thread, and reads are positional
    (``read_at``) when the file offers them.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._lock = threading.Lock()
        self._local = threading.local()
        self._size = raw.seek(0, 2)
        self._read_at = getattr(raw, "read_at", None)

    def _pos(self) -> int:
        return getattr(self._local, "pos", 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos(), 2: self._size}[whence]
        self._local.pos = max(0, base + offset)
        return self._local.pos

    def tell(self) -> int:
        return self._pos()

    def read(self, size: int = -1) -> bytes:
        pos = self._pos()
        if size is None or size < 0:
            size = self._size - pos
        size = max(0, min(size, self._size - pos))
        if self._read_at is not None:
            data = bytes(self._read_at(size, pos))
        else:
            with self._lock:
                self._raw.seek(pos)
                data = self._raw.read(size)
        self._local.pos = pos + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return bool(getattr(self._raw, "closed", False))

    def __enter__(self) -> SharedSegmentFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class DataSourceScan:
    """What one query reads of one data source: whole segments and partly visible (segment, stretch) pairs."""

    name: str
    schema: pa.Schema
    whole: list[SegmentMeta]
    partial: list[tuple[SegmentMeta, Interval]]

    @property
    def sql_schema(self) -> pa.Schema:
        """The columns as queries see them: ``__time`` a millisecond TIMESTAMP first."""
        rest = [f for f in self.schema if f.name != TIME]
        return pa.schema([pa.field(TIME, pa.timestamp("ms")), *rest])


def _table_schema(metas: list[SegmentMeta]) -> pa.Schema:
    return pa.unify_schemas([m.schema for m in metas], promote_options="permissive")


def scan(
    segments: SegmentStore, files: DeepStorageFiles, data_source: str, interval: Interval | None
) -> DataSourceScan | None:
    """The visible pieces of a data source over ``interval`` (all time when None); None if it has none."""
    window = interval or ALL_TIME
    used = segments.used_segments(data_source, interval)
    if not used:
        return None
    # Stretches trimmed by newer versions only: rows outside the window are the query's own WHERE's to drop.
    cover: dict[str, list[Interval]] = {}
    by_id: dict[str, DataSegment] = {}
    for piece in VersionedIntervalTimeline(used).lookup(ALL_TIME):
        for seg in piece.segments:
            by_id[seg.identifier] = seg
            cover.setdefault(seg.identifier, []).append(piece.interval)
    whole: list[SegmentMeta] = []
    partial: list[tuple[SegmentMeta, Interval]] = []
    for sid, seg in by_id.items():
        stretches = [iv for iv in cover[sid] if iv.overlaps(window)]
        if not stretches:
            continue
        if sum(iv.end - iv.start for iv in cover[sid]) == seg.interval.end - seg.interval.start:
            whole.append(files.meta(seg))
        else:
            partial.extend((files.meta(seg), iv) for iv in stretches)
    if not whole and not partial:
        return None
    schema = _table_schema([*whole, *(m for m, _ in partial)])
    return DataSourceScan(data_source, schema, whole, partial)


def columns_of(segments: SegmentStore, files: DeepStorageFiles, data_source: str) -> pa.Schema | None:
    """A data source's columns as a query would see them (INFORMATION_SCHEMA.COLUMNS)."""
    found = scan(segments, files, data_source, None)
    return found.sql_schema if found else None


# -- time pruning ----------------------------------------------------------------------------------


def _instant(node: exp.Expr) -> int | None:
    """Epoch millis of a literal timestamp expression, or None when it is not one."""
    if isinstance(node, exp.Cast) and node.to.is_type("timestamp", "date"):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            return parse_instant_ms(str(node.this).replace(" ", "T"))
        except ValueError:
            return None
    if isinstance(node, exp.Anonymous) and node.name.upper() == "MILLIS_TO_TIMESTAMP":
        arg = node.expressions[0] if node.expressions else None
        if isinstance(arg, exp.Literal) and not arg.is_string:
            return int(arg.to_py())
    return None


def _is_time(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) and node.name == TIME


def _conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    if node is None:
        return []
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _bounds_of(pred: exp.Expr) -> tuple[int | None, int | None]:
    """(lowest possible __time, first excluded __time) a predicate allows; None where unbounded."""
    if isinstance(pred, exp.Between) and _is_time(pred.this):
        lo, hi = _instant(pred.args["low"]), _instant(pred.args["high"])
        return lo, None if hi is None else hi + 1
    if isinstance(pred, exp.Anonymous) and pred.name.upper() == "TIME_IN_INTERVAL" and len(pred.expressions) == 2:
        col, text = pred.expressions
        if _is_time(col) and isinstance(text, exp.Literal) and text.is_string:
            try:
                iv = Interval.parse(str(text.this))
            except Exception:
                return None, None
            return iv.start, iv.end
    if not isinstance(pred, exp.GT | exp.GTE | exp.LT | exp.LTE | exp.EQ):
        return None, None
    left, right = pred.left, pred.right
    flipped = False
    if _is_time(right) and not _is_time(left):
        left, right, flipped = right, left, True
    if not _is_time(left):
        return None, None
    t = _instant(right)
    if t is None:
        return None, None
    flip: dict[type[exp.Expr], type[exp.Expr]] = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE}
    kind: type[exp.Expr] = type(pred)
    if flipped:
        kind = flip.get(kind, kind)
    if kind is exp.EQ:
        return t, t + 1
    if kind in (exp.GT, exp.GTE):
        return t, None
    return None, t + 1  # also for <: a literal finer than a millisecond was floored to one


def time_bounds(select: exp.Select) -> Interval | None:
    """The ``__time`` range a SELECT's WHERE allows (top-level AND conjuncts only); None if unbounded."""
    where = select.args.get("where")
    lo: int | None = None
    hi: int | None = None
    for pred in _conjuncts(where.this if where is not None else None):
        p_lo, p_hi = _bounds_of(pred)
        if p_lo is not None:
            lo = p_lo if lo is None else max(lo, p_lo)
        if p_hi is not None:
            hi = p_hi if hi is None else min(hi, p_hi)
    if lo is None and hi is None:
        return None
    start = ALL_TIME.start if lo is None else lo
    end = ALL_TIME.end if hi is None else hi
    return Interval(start, max(start, end))


def reference_window(table: exp.Table) -> Interval | None:
    """The time window one reference to a data source may be narrowed to: the bounds of the SELECT
    whose only FROM source it is (no joins, so every ``__time`` there is this table's)."""
    select = table.parent
    if isinstance(select, exp.From):
        select = select.parent
    if not isinstance(select, exp.Select) or select.args.get("joins"):
        return None
    return time_bounds(select)


def hull(windows: list[Interval | None]) -> Interval | None:
    if not windows or any(w is None for w in windows):
        return None
    ivs: list[Any] = windows
    return Interval(min(w.start for w in ivs), max(w.end for w in ivs))
