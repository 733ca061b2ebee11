"""``segmentAllocate``: hand out pending segment ids under the task's lock, optionally in batches.

Numbering follows Druid's SegmentAllocateAction and metadata coordinator: the interval is the used
segments' interval holding the timestamp when there is one, else the granularity bucket; the version is
that of the existing partition set (appending to it) or, in an empty chunk, the lock's version; the
partition number is one more than the highest used or pending one; and the same (sequence name,
previous segment id) gets the same pending segment back, so a retried call is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from overlord.core.data_segment import (
    NON_ROOT_GEN_START_PARTITION_ID,
    DataSegment,
    PendingSegment,
    SegmentId,
    ShardSpec,
)
from overlord.core.granularity import Granularity
from overlord.core.granularity import parse as parse_granularity
from overlord.core.lockpolicy import LockGranularity, TaskLockType
from overlord.core.locks import TaskLockbox
from overlord.errors import LockError
from overlord.isotime import Interval

log = logging.getLogger(__name__)


def allocate_segment(
    lockbox: TaskLockbox,
    task_id: str,
    data_source: str,
    timestamp_ms: int,
    segment_granularity: Granularity | str,
    previous_segment_id: str | None,
    sequence_name: str,
    existing_used_segments: Sequence[DataSegment],
    pending_segments: Sequence[PendingSegment],
    *,
    lock_granularity: LockGranularity = LockGranularity.TIME_CHUNK,
    lock_type: TaskLockType = TaskLockType.EXCLUSIVE,
) -> PendingSegment | None:
    """A new (or the idempotently repeated) pending segment for a row at ``timestamp_ms``.

    None when Druid would return null: the lock cannot be had now, the timestamp's bucket clashes with
    existing segments of another granularity, or existing data is newer than the lock. The caller
    stores the returned pending segment unless it is one of ``pending_segments``.
    """
    state = AllocationState(data_source, existing_used_segments, pending_segments)
    return _allocate(
        lockbox,
        state,
        task_id,
        timestamp_ms,
        parse_granularity(segment_granularity),
        previous_segment_id,
        sequence_name,
        lock_granularity,
        lock_type,
    )


class AllocationState:
    """Used and pending segments of one data source, indexed once so a batch of allocations costs
    O(1) each instead of a scan of every pending segment."""

    def __init__(self, data_source: str, used: Sequence[DataSegment], pending: Sequence[PendingSegment]) -> None:
        self.data_source = data_source
        self.used = [s for s in used if s.data_source == data_source]
        self.by_sequence: dict[tuple[str, str | None], PendingSegment] = {}
        self.known: set[SegmentId] = set()
        self.pending_versions: dict[Interval, set[str]] = {}
        self.max_pending: dict[tuple[Interval, str], int] = {}
        self.used_version: dict[Interval, str] = {}
        self.max_used: dict[tuple[Interval, str], int] = {}
        self.core: dict[tuple[Interval, str], int] = {}
        for seg in self.used:
            key = (seg.interval, seg.version)
            if seg.version > self.used_version.get(seg.interval, ""):
                self.used_version[seg.interval] = seg.version
            self.core[key] = max(self.core.get(key, 0), seg.shard_spec.core_partitions)
            if not seg.shard_spec.is_overwrite:
                self.max_used[key] = max(self.max_used.get(key, -1), seg.partition_num)
        for p in pending:
            if p.id.data_source == data_source:
                self.add(p)

    def add(self, p: PendingSegment) -> bool:
        """Record a pending segment; False when it was known already."""
        if p.id in self.known:
            return False
        self.known.add(p.id)
        self.by_sequence.setdefault((p.sequence_name, p.previous_segment_id), p)
        self.pending_versions.setdefault(p.id.interval, set()).add(p.id.version)
        if p.id.partition_num < NON_ROOT_GEN_START_PARTITION_ID:
            key = (p.id.interval, p.id.version)
            self.max_pending[key] = max(self.max_pending.get(key, -1), p.id.partition_num)
        return True

    def next_partition(self, interval: Interval, version: str) -> tuple[int, int]:
        """Next root-generation partition id and the core partition count of the existing set."""
        key = (interval, version)
        return max(self.max_used.get(key, -1), self.max_pending.get(key, -1)) + 1, self.core.get(key, 0)


def _allocate(
    lockbox: TaskLockbox,
    state: AllocationState,
    task_id: str,
    timestamp_ms: int,
    segment_granularity: Granularity,
    previous_segment_id: str | None,
    sequence_name: str,
    lock_granularity: LockGranularity,
    lock_type: TaskLockType,
) -> PendingSegment | None:
    prev = previous_segment_id or None
    interval = _choose_interval(state.used, timestamp_ms, segment_granularity)
    if interval is None:
        log.info("segment granularity clash", extra={"task_id": task_id, "action": "segmentAllocate"})
        return None
    same = state.by_sequence.get((sequence_name, prev))
    if same is not None:
        return same if same.id.interval.contains_ms(timestamp_ms) else None

    existing_version = state.used_version.get(interval)
    pending_versions = state.pending_versions.get(interval, set())
    if lock_granularity == LockGranularity.TIME_CHUNK:
        result = lockbox.try_acquire(task_id, interval, lock_type)
        if not result.ok or result.lock is None:
            return None
        version = result.lock.version
        if existing_version is not None:
            if existing_version > version:
                return None
            version = existing_version
        elif pending_versions:
            # an earlier allocation in this chunk (maybe by a group mate) fixed the version already
            version = max((v for v in pending_versions if v <= version), default=version)
        pid, core = state.next_partition(interval, version)
    else:
        version = existing_version or max(pending_versions, default=None) or lockbox.versions.next()
        pid, core = state.next_partition(interval, version)
        result = lockbox.try_acquire(
            task_id, interval, lock_type, LockGranularity.SEGMENT, version=version, partition_id=pid
        )
        if not result.ok:
            return None
    sid = SegmentId(state.data_source, interval, version, pid)
    return PendingSegment(sid, ShardSpec.numbered(pid, core), sequence_name, prev, task_id)


def allocate_overwrite_segment(
    lockbox: TaskLockbox,
    task_id: str,
    overwritten: Sequence[DataSegment],
    existing_used_segments: Sequence[DataSegment],
    pending_segments: Sequence[PendingSegment],
    sequence_name: str,
    previous_segment_id: str | None = None,
    atomic_update_group_size: int = 1,
) -> PendingSegment:
    """A segment that replaces ``overwritten`` (same chunk, same major version) with a higher minor
    version, for a task holding segment locks on all of them (compaction under segment locks).

    Simplification: the caller states the atomic update group size up front; Druid fixes it at publish.
    """
    if not overwritten:
        raise LockError("Nothing to overwrite")
    first = overwritten[0]
    if any(s.interval != first.interval or s.version != first.version for s in overwritten):
        raise LockError("Segments overwritten together must share interval and version")
    held = {
        (lk.interval, lk.version, lk.partition_id)
        for lk in lockbox.find_locks(task_id)
        if lk.granularity == LockGranularity.SEGMENT and not lk.revoked
    }
    missing = [s.identifier for s in overwritten if (s.interval, s.version, s.partition_num) not in held]
    if missing:
        raise LockError(f"Task[{task_id}] holds no segment lock on {missing}", task_id=task_id)
    prev = previous_segment_id or None
    for p in pending_segments:
        if p.sequence_name == sequence_name and p.previous_segment_id == prev:
            return p
    same = [s for s in existing_used_segments if s.interval == first.interval and s.version == first.version]
    start = min(s.shard_spec.root_range[0] for s in overwritten)
    end = max(s.shard_spec.root_range[1] for s in overwritten)
    overlapping = [s for s in same if s.shard_spec.root_range[0] < end and start < s.shard_spec.root_range[1]]
    minor = max([s.minor_version for s in overlapping + list(overwritten)]) + 1
    taken = [s.partition_num for s in same] + [
        p.id.partition_num
        for p in pending_segments
        if p.id.interval == first.interval and p.id.version == first.version
    ]
    pid = max([NON_ROOT_GEN_START_PARTITION_ID - 1, *taken]) + 1
    spec = ShardSpec.overwrite(pid, start, end, minor, atomic_update_group_size)
    got = lockbox.try_acquire(
        task_id, first.interval, granularity=LockGranularity.SEGMENT, version=first.version, partition_id=pid
    )
    if not got.ok:
        raise LockError(got.reason or "Cannot lock the new segment", task_id=task_id)
    sid = SegmentId(first.data_source, first.interval, first.version, pid)
    return PendingSegment(sid, spec, sequence_name, prev, task_id)


def _choose_interval(used: Sequence[DataSegment], timestamp_ms: int, granularity: Granularity) -> Interval | None:
    holding = [s for s in used if s.interval.contains_ms(timestamp_ms)]
    if holding:
        return max(holding, key=lambda s: s.version).interval
    bucket = granularity.bucket(timestamp_ms)
    if any(s.interval.overlaps(bucket) for s in used):
        return None
    return bucket


class SegmentStore(Protocol):
    """The slice of the metadata store allocation needs (the service backs it with SQL)."""

    def used_segments(self, data_source: str, interval: Interval) -> list[DataSegment]:
        """Used segments overlapping ``interval``."""
        ...

    def pending_segments(self, data_source: str, interval: Interval) -> list[PendingSegment]:
        """Pending segments overlapping ``interval``."""
        ...

    def insert_pending(self, segments: Sequence[PendingSegment]) -> None: ...


class InMemorySegmentStore:
    """A SegmentStore in dicts; ``latency_s`` simulates one metadata round trip per call (benchmarks)."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.used: list[DataSegment] = []
        self.pending: list[PendingSegment] = []
        self.calls = 0
        self._latency = latency_s
        self._mutex = threading.Lock()

    def _round_trip(self) -> None:
        self.calls += 1
        if self._latency:
            threading.Event().wait(self._latency)

    def used_segments(self, data_source: str, interval: Interval) -> list[DataSegment]:
        self._round_trip()
        with self._mutex:
            return [s for s in self.used if s.data_source == data_source and s.interval.overlaps(interval)]

    def pending_segments(self, data_source: str, interval: Interval) -> list[PendingSegment]:
        self._round_trip()
        with self._mutex:
            return [p for p in self.pending if p.id.data_source == data_source and p.id.interval.overlaps(interval)]

    def insert_pending(self, segments: Sequence[PendingSegment]) -> None:
        self._round_trip()
        with self._mutex:
            known = {p.id for p in self.pending}
            self.pending.extend(p for p in segments if p.id not in known)


@dataclass(frozen=True)
class AllocateRequest:
    """One ``segmentAllocate`` task action (a granularity name is parsed on the way in)."""

    task_id: str
    data_source: str
    timestamp_ms: int
    segment_granularity: Granularity | str
    sequence_name: str
    previous_segment_id: str | None = None
    lock_granularity: LockGranularity = LockGranularity.TIME_CHUNK
    lock_type: TaskLockType = TaskLockType.EXCLUSIVE


@dataclass
class _Slot:
    request: AllocateRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: PendingSegment | None = None
    error: BaseException | None = None


_Key = tuple[str, Interval, Granularity, LockGranularity, TaskLockType]


class SegmentAllocationQueue:
    """Runs ``segmentAllocate`` calls; with ``batching`` (druid.indexer.tasklock.batchSegmentAllocation)
    concurrent calls for the same data source and interval share one read and one write of the store.

    No background thread: the first caller for a key becomes the leader and processes batches until
    the key's queue is empty; the others wait for their slot. Per data source, one pass at a time, so
    partition numbers never collide.
    """

    def __init__(self, lockbox: TaskLockbox, store: SegmentStore, *, batching: bool = True) -> None:
        self.lockbox = lockbox
        self.store = store
        self.batching = batching
        self.batches_run = 0
        self._mutex = threading.Condition()
        self._open: dict[_Key, list[_Slot]] = {}
        self._leading: set[_Key] = set()
        self._ds_locks: dict[str, threading.Lock] = {}

    def allocate(self, request: AllocateRequest) -> PendingSegment | None:
        slot = _Slot(request)
        if not self.batching:
            gran = parse_granularity(request.segment_granularity)
            self._run(request.data_source, gran.bucket(request.timestamp_ms), [slot])
            return self._outcome(slot)
        key = self._key(request)
        with self._mutex:
            self._open.setdefault(key, []).append(slot)
            leader = key not in self._leading
            if leader:
                self._leading.add(key)
            self._mutex.notify_all()
        if leader:
            self._lead(key)
        slot.done.wait()
        return self._outcome(slot)

    def queued(self) -> int:
        """Requests waiting for a pass (not yet taken by a leader)."""
        with self._mutex:
            return sum(len(v) for v in self._open.values())

    def await_queued(self, n: int, timeout_s: float = 5.0) -> bool:
        """Block until at least ``n`` requests wait; lets tests build a batch without sleeping."""
        with self._mutex:
            return self._mutex.wait_for(lambda: sum(len(v) for v in self._open.values()) >= n, timeout_s)

    def _key(self, r: AllocateRequest) -> _Key:
        gran = parse_granularity(r.segment_granularity)
        return (r.data_source, gran.bucket(r.timestamp_ms), gran, r.lock_granularity, r.lock_type)

    def _lead(self, key: _Key) -> None:
        while True:
            with self._mutex:
                slots = self._open.pop(key, None)
                if not slots:
                    self._leading.discard(key)
                    return
            self._run(key[0], key[1], slots)

    def _run(self, data_source: str, interval: Interval, slots: list[_Slot]) -> None:
        """One pass: read used and pending once, allocate every slot in order, write new ones once."""
        with self._mutex:
            ds_lock = self._ds_locks.setdefault(data_source, threading.Lock())
        try:
            with ds_lock:
                self.batches_run += 1
                state = AllocationState(
                    data_source,
                    self.store.used_segments(data_source, interval),
                    self.store.pending_segments(data_source, interval),
                )
                created: list[PendingSegment] = []
                for slot in slots:
                    r = slot.request
                    try:
                        slot.result = _allocate(
                            self.lockbox,
                            state,
                            r.task_id,
                            r.timestamp_ms,
                            parse_granularity(r.segment_granularity),
                            r.previous_segment_id,
                            r.sequence_name,
                            r.lock_granularity,
                            r.lock_type,
                        )
                    except Exception as exc:
                        slot.error = exc
                        continue
                    if slot.result is not None and state.add(slot.result):
                        created.append(slot.result)
                if created:
                    self.store.insert_pending(created)
        except Exception as exc:  # a store failure fails every call of the pass, never the leader alone
            for slot in slots:
                if slot.error is None:
                    slot.error, slot.result = exc, None
        finally:
            for slot in slots:
                slot.done.set()

    @staticmethod
    def _outcome(slot: _Slot) -> PendingSegment | None:
        if slot.error is not None:
            raise slot.error
        return slot.result


allocate_in_state = _allocate
"""Allocate against an AllocationState the caller shares across a batch (the service's asyncio batching)."""
