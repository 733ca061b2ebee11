"""Data sources as tables: exactly the visible part of each segment, read through deep storage.

A query over a data source reads the timeline's visible pieces (Druid's VersionedIntervalTimeline):
a segment visible over its whole interval is read whole; one partly overshadowed by a newer version
is read only over the stretches where it is visible, so no row is ever counted twice; unused
segments are never read. A ``WHERE __time`` range on the query (see ``time_bounds``) narrows the
timeline lookup, so only the segments overlapping it are opened.

Files are opened with ``DeepStorage.open(load_spec)`` (never a local path), so object storage works
too; an opened segment's Arrow fragment is cached by segment id (segments are immutable), as a
Historical keeps the segments it has loaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
from sqlglot import exp

from overlord.core.data_segment import DataSegment
from overlord.core.protocols import DeepStorage, SegmentStore
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.isotime import Interval, parse_instant_ms

TIME = "__time"
ALL_TIME = Interval(-(2**62), 2**62)
_FORMAT = pads.ParquetFileFormat()


@dataclass(frozen=True)
class DataSourceScan:
    """What one query reads of one data source: whole segments and partly visible (segment, stretch) pairs."""

    name: str
    schema: pa.Schema
    whole: list[pads.Fragment]
    partial: list[tuple[pads.Fragment, Interval]]

    def dataset(self, fragments: list[pads.Fragment]) -> pads.Dataset:
        return pads.FileSystemDataset(fragments, self.schema, _FORMAT)

    @property
    def sql_schema(self) -> pa.Schema:
        """The columns as queries see them: ``__time`` a millisecond TIMESTAMP (stored as epoch millis)."""
        return self.schema.set(0, pa.field(TIME, pa.timestamp("ms")))


class SegmentCache:
    """Opened segment fragments by segment id, least recently used dropped beyond ``capacity``."""

    def __init__(self, deep_storage: DeepStorage, capacity: int = 4096) -> None:
        self.deep_storage = deep_storage
        self.capacity = capacity
        self._items: OrderedDict[str, pads.Fragment] = OrderedDict()
        self._mutex = threading.Lock()

    def fragment(self, segment: DataSegment) -> pads.Fragment:
        key = segment.identifier
        with self._mutex:
            frag = self._items.get(key)
            if frag is not None:
                self._items.move_to_end(key)
                return frag
        frag = _FORMAT.make_fragment(self.deep_storage.open(dict(segment.load_spec)))
        with self._mutex:
            self._items[key] = frag
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return frag


def _table_schema(fragments: list[pads.Fragment]) -> pa.Schema:
    """The union of the segments' columns, ``__time`` (epoch millis) first."""
    merged = pa.unify_schemas([f.physical_schema for f in fragments], promote_options="permissive")
    out = [pa.field(TIME, pa.int64())]
    out += [f for f in merged if f.name != TIME]
    return pa.schema(out)


def scan(
    segments: SegmentStore, cache: SegmentCache, data_source: str, interval: Interval | None
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
    whole: list[pads.Fragment] = []
    partial: list[tuple[pads.Fragment, Interval]] = []
    for sid, seg in by_id.items():
        stretches = [iv for iv in cover[sid] if iv.overlaps(window)]
        if not stretches:
            continue
        if sum(iv.end - iv.start for iv in cover[sid]) == seg.interval.end - seg.interval.start:
            whole.append(cache.fragment(seg))
        else:
            partial.extend((cache.fragment(seg), iv) for iv in stretches)
    if not whole and not partial:
        return None
    schema = _table_schema([*whole, *(f for f, _ in partial)])
    return DataSourceScan(data_source, schema, whole, partial)


def columns_of(segments: SegmentStore, cache: SegmentCache, data_source: str) -> pa.Schema | None:
    """A data source's columns as a query would see them (INFORMATION_SCHEMA.COLUMNS)."""
    found = scan(segments, cache, data_source, None)
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
    return None, t + 1  # < and <=: the +1 keeps the bound safe for both


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
