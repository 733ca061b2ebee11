"""Lockbox and segmentAllocate throughput (in-memory), for sizing the Overlord's task-action path.

1. Lock acquire/release ops/s with 1,000 tasks over 100 hourly intervals of one data source: at steady
   state every interval is held by one task; each step the holder releases and the next task of that
   interval's rotation acquires (plus one refused, conflicting attempt per step, counted separately).
2. segmentAllocate throughput with 16 concurrent tasks (threads of one supervisor group) allocating in
   the same day, with and without druid.indexer.tasklock.batchSegmentAllocation; the store simulates
   one metadata round trip per call (``--latency-ms``, default 1 ms, like a nearby PostgreSQL), and
   the run is repeated with no latency to show the pure in-memory cost. Reference: the unbatched path.
"""

from __future__ import annotations

import argparse
import threading
import time

from overlord.clock import SystemClock
from overlord.core.allocation import AllocateRequest, InMemorySegmentStore, SegmentAllocationQueue
from overlord.core.locks import TaskLockbox
from overlord.isotime import Interval, parse_instant_ms

DS = "wikipedia"
H = 3_600_000
T0 = parse_instant_ms("2024-01-01")


def bench_locks(n_tasks: int, n_intervals: int, steps: int) -> tuple[float, float]:
    box = TaskLockbox(SystemClock())
    for t in range(n_tasks):
        box.add_task(f"task-{t}", f"task-{t}", "index", None, DS)
    intervals = [Interval(T0 + i * H, T0 + (i + 1) * H) for i in range(n_intervals)]
    per = n_tasks // n_intervals
    holder = [i for i in range(n_intervals)]  # task index currently holding interval i
    for i in range(n_intervals):
        assert box.try_acquire(f"task-{holder[i]}", intervals[i]).ok
    ops = refused = 0
    start = time.perf_counter()
    for k in range(steps):
        i = k % n_intervals
        iv = intervals[i]
        cur = holder[i]
        nxt = (cur + n_intervals) % (per * n_intervals)
        other = (nxt + n_intervals) % (per * n_intervals)
        if not box.try_acquire(f"task-{other}", iv).ok:  # conflicting, equal priority: refused
            refused += 1
        box.release(f"task-{cur}", iv)
        if not box.try_acquire(f"task-{nxt}", iv).ok:
            raise AssertionError("rotation acquire failed")
        holder[i] = nxt
        ops += 3
    elapsed = time.perf_counter() - start
    assert refused == steps
    return ops / elapsed, elapsed


def bench_allocate(threads: int, per_thread: int, batching: bool, latency_s: float) -> tuple[float, int]:
    box = TaskLockbox(SystemClock())
    for i in range(threads):
        box.add_task(f"kafka-{i}", "supervisor", "index_kafka", None, DS)
    store = InMemorySegmentStore(latency_s=latency_s)
    queue = SegmentAllocationQueue(box, store, batching=batching)
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            for j in range(per_thread):
                req = AllocateRequest(f"kafka-{i}", DS, T0 + j * 1000, "DAY", f"kafka-{i}-{j}")
                if queue.allocate(req) is None:
                    raise AssertionError("allocation refused")
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    parts = sorted(p.id.partition_num for p in store.pending)
    assert parts == list(range(threads * per_thread)), "partition numbers collided"
    return threads * per_thread / elapsed, queue.batches_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--intervals", type=int, default=100)
    parser.add_argument("--lock-steps", type=int, default=30_000)
    parser.add_argument("--alloc-threads", type=int, default=16)
    parser.add_argument("--alloc-per-thread", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    args = parser.parse_args()
    wall = time.perf_counter()

    rate, secs = bench_locks(args.tasks, args.intervals, args.lock_steps)
    print(
        f"locks: {args.tasks} tasks over {args.intervals} intervals: {rate:,.0f} ops/s "
        f"(try_acquire granted / refused + release; {args.lock_steps * 3:,} ops in {secs:.2f} s)"
    )

    n = args.alloc_threads * args.alloc_per_thread
    for latency_ms in (args.latency_ms, 0.0):
        plain, plain_passes = bench_allocate(args.alloc_threads, args.alloc_per_thread, False, latency_ms / 1000)
        batched, passes = bench_allocate(args.alloc_threads, args.alloc_per_thread, True, latency_ms / 1000)
        print(
            f"segmentAllocate, {args.alloc_threads} concurrent tasks, {n} allocations, "
            f"store round trip {latency_ms:g} ms:\n"
            f"  without batching: {plain:,.0f} allocations/s ({plain_passes} passes)\n"
            f"  with batching:    {batched:,.0f} allocations/s ({passes} passes, "
            f"{n / passes:.1f} per pass)\n"
            f"  ratio batched/unbatched: {batched / plain:.2f}x"
        )
    print(f"total wall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
