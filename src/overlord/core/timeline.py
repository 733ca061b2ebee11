"""Which segments are visible: Druid's VersionedIntervalTimeline for one data source.

Rules (Druid's, from the reference's "Overshadowing" section):

* Segments are grouped into *partition sets* keyed by (interval, major version).
* Between partition sets, at every instant the visible set is the *complete* one with the highest
  major version among those whose interval contains the instant (version strings compare as strings).
  A higher version covering part of a lower one's interval hides only that part; the lower set stays
  visible elsewhere. Incomplete sets are never visible and never hide anything.
* Within a partition set (same interval and major version), segments form *atomic update groups*:
  each root-generation segment (``numbered``/``linear``...) is a group of one, minor version 0, root
  range [p, p+1); ``numbered_overwrite`` segments with the same (root range, minor version) form one
  group that is complete when it has ``atomicUpdateGroupSize`` members. A group is overshadowed when a
  complete group with a higher minor version has a root range containing its own; visible groups are
  complete ones that are not overshadowed (Druid's OvershadowableManager, simplified: no "standby"
  bookkeeping, the states are recomputed from the members each time).
* A partition set is complete when it has a visible segment and every core root partition
  [0, partitions) of its ``numbered`` segments is covered by a visible group.
* Equal major versions with different, overlapping intervals: the set added first wins, as in Druid.

``find_overshadowed`` reports segments in complete sets that are visible nowhere, plus segments
overshadowed inside a set by a higher minor version; segments of incomplete sets are not reported
(they may still be being published).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from overlord.core.data_segment import DataSegment, SegmentId
from overlord.isotime import Interval


@dataclass(frozen=True)
class TimelineObjectHolder:
    """One stretch of the visible timeline: ``interval`` is the trimmed piece, ``true_interval`` the set's."""

    interval: Interval
    true_interval: Interval
    version: str
    segments: tuple[DataSegment, ...]


class PartitionHolder:
    """The segments of one (interval, major version); works out visibility by minor version."""

    def __init__(self, interval: Interval, version: str, seq: int) -> None:
        self.interval = interval
        self.version = version
        self.seq = seq
        self.segments: dict[SegmentId, DataSegment] = {}
        self._state: tuple[bool, tuple[DataSegment, ...], frozenset[DataSegment]] | None = None

    def add(self, segment: DataSegment) -> bool:
        if segment.id in self.segments:
            return False
        self.segments[segment.id] = segment
        self._state = None
        return True

    def remove(self, segment: DataSegment) -> bool:
        if self.segments.pop(segment.id, None) is None:
            return False
        self._state = None
        return True

    @property
    def complete(self) -> bool:
        return self._compute()[0]

    @property
    def visible(self) -> tuple[DataSegment, ...]:
        """Segments of the visible atomic update groups, by partition number."""
        return self._compute()[1]

    @property
    def overshadowed(self) -> frozenset[DataSegment]:
        """Segments hidden by a complete group of a higher minor version in this set."""
        return self._compute()[2]

    def _compute(self) -> tuple[bool, tuple[DataSegment, ...], frozenset[DataSegment]]:
        if self._state is None:
            self._state = _evaluate(self.segments.values())
        return self._state


def _evaluate(segments: Iterable[DataSegment]) -> tuple[bool, tuple[DataSegment, ...], frozenset[DataSegment]]:
    groups: dict[tuple[int, int, int], list[DataSegment]] = {}
    group_size: dict[tuple[int, int, int], int] = {}
    core = 0
    for seg in segments:
        spec = seg.shard_spec
        start, end = spec.root_range
        key = (start, end, spec.minor_version if spec.is_overwrite else 0)
        groups.setdefault(key, []).append(seg)
        group_size[key] = spec.atomic_update_group_size if spec.is_overwrite else 1
        core = max(core, spec.core_partitions)
    complete_keys = [k for k, members in groups.items() if len(members) >= group_size[k]]

    def hidden(key: tuple[int, int, int]) -> bool:
        return any(o[2] > key[2] and o[0] <= key[0] and key[1] <= o[1] for o in complete_keys)

    visible: list[DataSegment] = []
    overshadowed: set[DataSegment] = set()
    covered: set[int] = set()
    for key, members in groups.items():
        if hidden(key):
            overshadowed.update(members)
        elif key in complete_keys:
            visible.extend(members)
            covered.update(range(key[0], min(key[1], core)))
    complete = bool(visible) and len(covered) >= core
    visible.sort(key=lambda s: s.partition_num)
    return complete, tuple(visible), frozenset(overshadowed)


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    holder: PartitionHolder


class VersionedIntervalTimeline:
    """The segments of one data source and what a query over an interval would read.

    Thread-safe; the visible timeline is recomputed lazily (one sweep, O(n log n)) after changes.
    """

    def __init__(self, segments: Iterable[DataSegment] = ()) -> None:
        self._holders: dict[tuple[Interval, str], PartitionHolder] = {}
        self._seq = 0
        self._mutex = threading.RLock()
        self._pieces: list[_Piece] | None = None
        self._starts: list[int] = []
        self.add_all(segments)

    def add(self, segment: DataSegment) -> bool:
        """Add a segment; False when a segment with the same id is already there."""
        with self._mutex:
            key = (segment.interval, segment.version)
            holder = self._holders.get(key)
            if holder is None:
                self._seq += 1
                holder = self._holders[key] = PartitionHolder(segment.interval, segment.version, self._seq)
            added = holder.add(segment)
            if added:
                self._pieces = None
            return added

    def add_all(self, segments: Iterable[DataSegment]) -> None:
        with self._mutex:
            for segment in segments:
                self.add(segment)

    def remove(self, segment: DataSegment) -> bool:
        """Remove a segment (marked unused or dropped); False when it was not there."""
        with self._mutex:
            key = (segment.interval, segment.version)
            holder = self._holders.get(key)
            if holder is None or not holder.remove(segment):
                return False
            if not holder.segments:
                del self._holders[key]
            self._pieces = None
            return True

    def __contains__(self, segment: object) -> bool:
        if not isinstance(segment, DataSegment):
            return False
        with self._mutex:
            holder = self._holders.get((segment.interval, segment.version))
            return holder is not None and segment.id in holder.segments

    def __len__(self) -> int:
        with self._mutex:
            return sum(len(h.segments) for h in self._holders.values())

    def segments(self) -> list[DataSegment]:
        with self._mutex:
            return [s for h in self._holders.values() for s in h.segments.values()]

    def holders(self, interval: Interval | None = None) -> list[PartitionHolder]:
        """All partition sets (complete or not) overlapping ``interval``; used by segment allocation."""
        with self._mutex:
            return [h for h in self._holders.values() if interval is None or h.interval.overlaps(interval)]

    def lookup(self, interval: Interval) -> list[TimelineObjectHolder]:
        """The visible partition sets over ``interval``, in time order, trimmed to it."""
        with self._mutex:
            pieces = self._visible_pieces()
            out: list[TimelineObjectHolder] = []
            i = max(bisect.bisect_right(self._starts, interval.start) - 1, 0)
            for piece in pieces[i:]:
                if piece.start >= interval.end:
                    break
                if piece.end <= interval.start:
                    continue
                h = piece.holder
                trimmed = Interval(max(piece.start, interval.start), min(piece.end, interval.end))
                out.append(TimelineObjectHolder(trimmed, h.interval, h.version, h.visible))
            return out

    def visible_segments(self, interval: Interval | None = None) -> set[DataSegment]:
        """The segments a query over ``interval`` (everything when None) reads."""
        if interval is None:
            with self._mutex:
                return {s for p in self._visible_pieces() for s in p.holder.visible}
        return {s for holder in self.lookup(interval) for s in holder.segments}

    def find_overshadowed(self) -> set[DataSegment]:
        """Segments that are fully overshadowed and can be marked unused."""
        with self._mutex:
            shown = {id(p.holder) for p in self._visible_pieces()}
            out: set[DataSegment] = set()
            for holder in self._holders.values():
                if holder.complete and id(holder) not in shown:
                    out.update(holder.segments.values())
                else:
                    out.update(holder.overshadowed)
            return out

    def is_overshadowed(self, segment: DataSegment) -> bool:
        return segment in self.find_overshadowed()

    def _visible_pieces(self) -> list[_Piece]:
        if self._pieces is None:
            self._pieces = _sweep([h for h in self._holders.values() if h.complete])
            self._starts = [p.start for p in self._pieces]
        return self._pieces


def _sweep(holders: list[PartitionHolder]) -> list[_Piece]:
    """Split time at every boundary and keep, per stretch, the winning set; merge equal neighbours."""
    if not holders:
        return []
    ranks = {v: i for i, v in enumerate(sorted({h.version for h in holders}))}
    by_start = sorted(holders, key=lambda h: h.interval.start)
    bounds = sorted({h.interval.start for h in holders} | {h.interval.end for h in holders})
    heap: list[tuple[int, int, PartitionHolder]] = []
    pieces: list[_Piece] = []
    j = 0
    for lo, hi in itertools.pairwise(bounds):
        while j < len(by_start) and by_start[j].interval.start <= lo:
            h = by_start[j]
            heapq.heappush(heap, (-ranks[h.version], h.seq, h))
            j += 1
        while heap and heap[0][2].interval.end <= lo:
            heapq.heappop(heap)
        if not heap:
            continue
        winner = heap[0][2]
        if pieces and pieces[-1].holder is winner and pieces[-1].end == lo:
            pieces[-1] = _Piece(pieces[-1].start, hi, winner)
        else:
            pieces.append(_Piece(lo, hi, winner))
    return pieces
