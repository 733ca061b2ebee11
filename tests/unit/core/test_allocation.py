"""segmentAllocate: versions, numbering, idempotency, append vs overwrite, batching."""

from __future__ import annotations

import threading

import pytest

from overlord.clock import ManualClock
from overlord.core.allocation import (
    AllocateRequest,
    InMemorySegmentStore,
    SegmentAllocationQueue,
    allocate_overwrite_segment,
    allocate_segment,
)
from overlord.core.data_segment import DataSegment, PendingSegment, ShardSpec
from overlord.core.lockpolicy import LockGranularity
from overlord.core.locks import TaskLockbox
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.errors import LockError
from overlord.isotime import Interval, parse_instant_ms

DS = "wiki"
DAY = Interval(parse_instant_ms("2019-01-01"), parse_instant_ms("2019-01-02"))
TS = parse_instant_ms("2019-01-01T05:00:00Z")
OLD = "2019-01-05T00:00:00.000Z"
SEG = LockGranularity.SEGMENT


@pytest.fixture
def box() -> TaskLockbox:
    b = TaskLockbox(ManualClock())
    for t in ("t", "u", "ow", "ap", "cmp"):
        b.add_task(t, t, "index", 50, DS)
    return b


def existing(n: int = 2) -> list[DataSegment]:
    return [DataSegment(DS, DAY, OLD, ShardSpec.numbered(p, n)) for p in range(n)]


def alloc(
    box: TaskLockbox,
    task: str,
    seq: str,
    used: list[DataSegment],
    pending: list[PendingSegment],
    prev: str | None = None,
    **kw: object,
) -> PendingSegment | None:
    return allocate_segment(box, task, DS, TS, "DAY", prev, seq, used, pending, **kw)  # type: ignore[arg-type]


def test_empty_chunk_uses_lock_version_and_counts_from_zero(box: TaskLockbox) -> None:
    pending: list[PendingSegment] = []
    first = alloc(box, "t", "s0", [], pending)
    assert first is not None and first.id.interval == DAY and first.id.partition_num == 0
    assert first.id.version == box.find_locks("t")[0].version
    assert first.shard_spec == ShardSpec.numbered(0, 0)
    pending.append(first)
    second = alloc(box, "t", "s1", [], pending)
    assert second is not None and second.id.partition_num == 1 and second.id.version == first.id.version


def test_appends_to_existing_version_after_max_of_used_and_pending(box: TaskLockbox) -> None:
    used = existing(3)
    pending: list[PendingSegment] = []
    for expected in (3, 4, 5):
        p = alloc(box, "t", f"s{expected}", used, pending)
        assert p is not None and p.id.version == OLD and p.id.partition_num == expected
        assert p.shard_spec.partitions == 3  # appended beyond the 3 core partitions
        pending.append(p)


def test_same_sequence_and_previous_id_is_idempotent(box: TaskLockbox) -> None:
    pending: list[PendingSegment] = []
    a = alloc(box, "t", "seq", [], pending, prev=None)
    assert a is not None
    pending.append(a)
    assert alloc(box, "t", "seq", [], pending, prev="") is a
    b = alloc(box, "t", "seq", [], pending, prev=str(a.id))
    assert b is not None and b != a and b.previous_segment_id == str(a.id)


def test_refuses_when_locked_by_other_or_newer_data_or_granularity_clash(box: TaskLockbox) -> None:
    assert alloc(box, "t", "s", [], []) is not None
    assert alloc(box, "u", "s", [], []) is None  # "t" holds the chunk
    newer = [DataSegment(DS, DAY, "2999-01-01T00:00:00.000Z")]
    assert alloc(box, "t", "s2", newer, []) is None
    hour = Interval(parse_instant_ms("2019-01-01T09:00:00Z"), parse_instant_ms("2019-01-01T10:00:00Z"))
    assert alloc(box, "t", "s3", [DataSegment(DS, hour, OLD)], []) is None
    inside = Interval(parse_instant_ms("2019-01-01T05:00:00Z"), parse_instant_ms("2019-01-01T06:00:00Z"))
    box.remove_task("t")
    p = alloc(box, "u", "s4", [DataSegment(DS, inside, OLD)], [])
    assert p is not None and p.id.interval == inside and p.id.partition_num == 1


def test_overwrite_time_chunk_lock_gets_new_major_version(box: TaskLockbox) -> None:
    old = existing(2)
    lock = box.try_acquire("ow", DAY).lock
    assert lock is not None and lock.version > OLD
    new = DataSegment(DS, DAY, lock.version, ShardSpec.numbered(0, 1))
    assert new.minor_version == 0
    tl = VersionedIntervalTimeline([*old, new])
    assert tl.visible_segments(DAY) == {new}
    assert tl.find_overshadowed() == set(old)


def test_segment_locks_append_and_overwrite_in_the_same_chunk(box: TaskLockbox) -> None:
    """The reference's example: an appending and an overwriting task write one time chunk at once."""
    old = existing(2)
    pending: list[PendingSegment] = []
    for seg in old:  # compaction locks the segments it reads
        assert box.try_acquire("cmp", DAY, granularity=SEG, version=OLD, partition_id=seg.partition_num).ok
    appended = alloc(box, "ap", "kafka-0", old, pending, lock_granularity=SEG)
    assert appended is not None
    assert (appended.id.version, appended.id.partition_num) == (OLD, 2)  # same major version
    assert box.find_locks("ap")[0].partition_id == 2
    pending.append(appended)
    compacted = allocate_overwrite_segment(box, "cmp", old, old, pending, "cmp-0")
    assert compacted.id.version == OLD and compacted.shard_spec.minor_version == 1
    assert compacted.shard_spec.root_range == (0, 2) and compacted.id.partition_num == 32768

    app_seg = DataSegment(DS, DAY, OLD, appended.shard_spec)
    cmp_seg = DataSegment(DS, DAY, OLD, compacted.shard_spec)
    tl = VersionedIntervalTimeline([*old, app_seg, cmp_seg])
    assert tl.visible_segments(DAY) == {app_seg, cmp_seg}
    assert tl.find_overshadowed() == set(old)

    again = allocate_overwrite_segment(box, "cmp", [cmp_seg], [*old, app_seg, cmp_seg], [], "cmp-1")
    assert again.shard_spec.minor_version == 2 and again.id.partition_num == 32769


def test_overwrite_needs_segment_locks(box: TaskLockbox) -> None:
    with pytest.raises(LockError, match="no segment lock"):
        allocate_overwrite_segment(box, "cmp", existing(1), existing(1), [], "s")


def test_segment_lock_allocation_conflicts_with_time_chunk_lock(box: TaskLockbox) -> None:
    assert box.try_acquire("ow", DAY).ok
    assert alloc(box, "ap", "s", existing(1), [], lock_granularity=SEG) is None


# --- the queue ---------------------------------------------------------------------------------------


class GatedStore(InMemorySegmentStore):
    """Blocks the first read until released, so a test can pile requests up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def used_segments(self, data_source: str, interval: Interval) -> list[DataSegment]:
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(5)
        return super().used_segments(data_source, interval)


def request(i: int, task: str = "t") -> AllocateRequest:
    return AllocateRequest(task, DS, TS, "DAY", f"seq-{i}")


def test_batching_serves_queued_calls_in_one_pass(box: TaskLockbox) -> None:
    store = GatedStore()
    q = SegmentAllocationQueue(box, store, batching=True)
    results: dict[int, PendingSegment | None] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, q.allocate(request(i)))) for i in range(6)]
    threads[0].start()
    assert store.entered.wait(5)
    for t in threads[1:]:
        t.start()
    assert q.await_queued(5)
    store.gate.set()
    for t in threads:
        t.join(5)
    assert q.batches_run == 2 and store.calls == 6  # two passes of (read used, read pending, insert)
    parts = sorted(r.id.partition_num for r in results.values() if r is not None)
    assert parts == list(range(6))
    assert len(store.pending) == 6


def test_without_batching_each_call_is_a_pass(box: TaskLockbox) -> None:
    store = InMemorySegmentStore()
    q = SegmentAllocationQueue(box, store, batching=False)
    ids = [q.allocate(request(i)) for i in range(4)]
    assert [p.id.partition_num for p in ids if p] == [0, 1, 2, 3]
    assert store.calls == 12 and q.batches_run == 4
    assert q.allocate(request(2)) == ids[2]  # idempotent retry
    assert len(store.pending) == 4


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_allocations_never_collide(batching: bool) -> None:
    box = TaskLockbox(ManualClock())
    for i in range(16):
        box.add_task(f"k{i}", "supervisor", "index_kafka", None, DS)
    store = InMemorySegmentStore()
    q = SegmentAllocationQueue(box, store, batching=batching)
    start = threading.Barrier(16)
    out: list[PendingSegment | None] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        start.wait()
        for j in range(20):
            p = q.allocate(AllocateRequest(f"k{i}", DS, TS, "DAY", f"k{i}-{j}"))
            with lock:
                out.append(p)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(p is not None for p in out)
    assert sorted(p.id.partition_num for p in out if p) == list(range(320))
    assert len({p.id.version for p in out if p}) == 1


def test_store_failure_fails_the_whole_pass(box: TaskLockbox) -> None:
    class Broken(InMemorySegmentStore):
        def pending_segments(self, data_source: str, interval: Interval) -> list[PendingSegment]:
            raise RuntimeError("db down")

    q = SegmentAllocationQueue(box, Broken(), batching=True)
    with pytest.raises(RuntimeError, match="db down"):
        q.allocate(request(0))
    with pytest.raises(RuntimeError, match="db down"):  # the key is not stuck
        q.allocate(request(1))
