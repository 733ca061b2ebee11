"""TaskLockbox: Druid's time-chunk and segment locks with priorities, preemption and group sharing.

The lockbox is the one place that decides who may write which time chunk of which data source. It is
in-memory and thread-safe (one Condition); the service persists ``snapshot()`` in its metadata store
and calls ``restore()`` after a restart. Waiting comes in two forms: ``acquire`` blocks a thread on the
Condition, ``acquire_async`` waits on an asyncio future (no thread held), which is what the service's
``lockAcquire`` uses so that many waiting tasks never tie up the executor.

Rules, from the reference's "Task lock system" section:

* Requests conflict when they overlap in time on the same data source, come from different groups and
  their types are incompatible (SHARED+SHARED, APPEND+APPEND and APPEND+REPLACE time-chunk locks are
  compatible; segment locks conflict only on the same partition).
* Equal priority: the holder keeps its lock, the requester waits. A lower-priority requester waits
  too. A higher-priority requester *preempts*: the holder's locks are marked revoked (with the
  revoking task id, so the holder fails with a message naming it), unless a holder is in the
  publishing critical section, in which case the requester waits until it leaves.
* Tasks of the same groupId share locks (index_parallel sub-tasks, a supervisor's Kafka tasks).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from overlord.clock import SYSTEM_CLOCK, Clock
from overlord.core.data_segment import VersionGenerator
from overlord.core.lockindex import LockIndex, LockPosse
from overlord.core.lockpolicy import (
    COMPATIBLE_TYPES,
    DEFAULT_LOCK_TIMEOUT_MS,
    LockGranularity,
    TaskLock,
    TaskLockType,
    choose_lock_granularity,
    default_priority,
    effective_priority,
    force_time_chunk_lock,
    lock_timeout_ms,
    validate_lock_timeout,
)
from overlord.errors import LockError
from overlord.isotime import Interval

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_MS",
    "LockGranularity",
    "LockResult",
    "LockboxTask",
    "RestoreResult",
    "TaskLock",
    "TaskLockType",
    "TaskLockbox",
    "choose_lock_granularity",
    "default_priority",
    "effective_priority",
    "force_time_chunk_lock",
    "lock_timeout_ms",
    "validate_lock_timeout",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockResult:
    """What ``try_acquire`` answers: the lock, or why not (``revoked`` means: give up, do not wait)."""

    lock: TaskLock | None
    revoked: bool = False
    reason: str | None = None
    blockers: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lock is not None and not self.revoked


@dataclass
class LockboxTask:
    """What the lockbox needs to know about an active task."""

    task_id: str
    group_id: str
    task_type: str
    priority: int
    data_source: str
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS


@dataclass(frozen=True)
class RestoreResult:
    restored: list[tuple[str, TaskLock]]
    released: list[tuple[str, TaskLock]]  # the task is gone: its lock is dropped
    failed: list[tuple[str, TaskLock, str]]  # conflicted with a restored lock: fail the task


@dataclass(frozen=True)
class _Plan:
    """The outcome of checking one request, before anything changes."""

    result: LockResult
    join: LockPosse | None = None
    revoke: tuple[LockPosse, ...] = ()


RevocationListener = Callable[[str, TaskLock], None]


@dataclass(eq=False)
class _AsyncWaiter:
    """A coroutine waiting in ``acquire_async``: its place in line and the future that wakes it."""

    seq: int
    priority: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] | None = None

    @property
    def order(self) -> tuple[int, int]:
        """Higher priority first, then first come first served."""
        return (-self.priority, self.seq)


def _wake_all(futures: list[asyncio.Future[None]]) -> None:
    """Resolve in the given order, so the waiters resume (and re-check) in that order."""
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


class TaskLockbox:
    """Locks of all active tasks. Every method is thread-safe; ``acquire`` blocks on a Condition,
    ``acquire_async`` awaits a future that every release, removal or critical-section exit resolves.

    Waiting uses the injected clock for its deadline and re-checks at least every ``poll_interval_s``
    of real time; with a ManualClock, tests move the clock and call ``wake_waiters()``.
    """

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        versions: VersionGenerator | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.clock = clock
        self.versions = versions or VersionGenerator(clock)
        self._poll = poll_interval_s
        self._cond = threading.Condition(threading.RLock())
        self._tasks: dict[str, LockboxTask] = {}
        self._posses: dict[str, LockIndex] = {}
        self._held: dict[str, list[LockPosse]] = {}
        self._critical: dict[str, int] = {}
        self._waiting: dict[str, str] = {}
        self._listeners: list[RevocationListener] = []
        self._async_waiters: dict[int, _AsyncWaiter] = {}
        self._waiter_seq = itertools.count()

    # --- tasks --------------------------------------------------------------------------------------

    def add_task(
        self,
        task_id: str,
        group_id: str,
        task_type: str,
        priority: int | None = None,
        data_source: str = "",
        *,
        context: Mapping[str, Any] | None = None,
    ) -> LockboxTask:
        """Register an active task; ``priority`` None means context.priority or the type default."""
        if priority is None:
            priority = effective_priority(task_type, context)
        task = LockboxTask(task_id, group_id, task_type, priority, data_source, lock_timeout_ms(context))
        with self._cond:
            self._tasks[task_id] = task
        return task

    def remove_task(self, task_id: str) -> list[TaskLock]:
        """Forget a finished task, releasing all its locks and waking waiters; returns what it held."""
        with self._cond:
            released = [p.lock for p in self._held.get(task_id, ())]
            for p in list(self._held.get(task_id, ())):
                self._unhold(task_id, p)
            self._tasks.pop(task_id, None)
            self._critical.pop(task_id, None)
            self._notify()
        if released:
            log.info("released locks of task", extra={"task_id": task_id, "action": "remove_task"})
        return released

    def task(self, task_id: str) -> LockboxTask | None:
        with self._cond:
            return self._tasks.get(task_id)

    def add_revocation_listener(self, listener: RevocationListener) -> None:
        """Call ``listener(task_id, revoked_lock)`` (outside the lockbox's lock) on every revocation,
        so the queue can fail the preempted task at once."""
        self._listeners.append(listener)

    # --- acquiring ----------------------------------------------------------------------------------

    def try_acquire(
        self,
        task_id: str,
        interval: Interval,
        lock_type: TaskLockType = TaskLockType.EXCLUSIVE,
        granularity: LockGranularity = LockGranularity.TIME_CHUNK,
        *,
        version: str | None = None,
        partition_id: int | None = None,
    ) -> LockResult:
        """Grant now (preempting lower priorities if needed) or answer why not; never waits.

        ``version`` is the preferred version of a new time-chunk lock, or the existing segment's
        version for a segment lock; ``partition_id`` is required for segment locks.
        """
        events: list[tuple[str, TaskLock]] = []
        with self._cond:
            plan = self._plan(task_id, interval, lock_type, granularity, version, partition_id)
            result = self._apply(task_id, plan, interval, lock_type, granularity, version, partition_id, events)
        self._fire(events)
        return result

    def acquire(
        self,
        task_id: str,
        interval: Interval,
        lock_type: TaskLockType = TaskLockType.EXCLUSIVE,
        granularity: LockGranularity = LockGranularity.TIME_CHUNK,
        *,
        version: str | None = None,
        partition_id: int | None = None,
        timeout_ms: int | None = None,
    ) -> TaskLock:
        """Wait until granted; LockError when revoked, removed, or after ``timeout_ms``
        (default: the task's taskLockTimeout)."""
        events: list[tuple[str, TaskLock]] = []
        try:
            with self._cond:
                task = self._require(task_id)
                timeout = task.lock_timeout_ms if timeout_ms is None else timeout_ms
                deadline = self.clock.monotonic() + timeout / 1000.0
                while True:
                    plan = self._plan(task_id, interval, lock_type, granularity, version, partition_id)
                    result = self._apply(task_id, plan, interval, lock_type, granularity, version, partition_id, events)
                    if result.ok and result.lock is not None:
                        return result.lock
                    if result.revoked:
                        raise LockError(result.reason, task_id=task_id)
                    remaining = deadline - self.clock.monotonic()
                    if remaining <= 0:
                        raise _timed_out(task, timeout, granularity, lock_type, interval, result.reason)
                    self._waiting[task_id] = result.reason or "waiting"
                    self._cond.notify_all()
                    try:
                        self._cond.wait(min(remaining, self._poll))
                    finally:
                        self._waiting.pop(task_id, None)
                    if task_id not in self._tasks:
                        raise LockError(f"Task[{task_id}] was removed while waiting for a lock")
        finally:
            self._fire(events)

    async def acquire_async(
        self,
        task_id: str,
        interval: Interval,
        lock_type: TaskLockType = TaskLockType.EXCLUSIVE,
        granularity: LockGranularity = LockGranularity.TIME_CHUNK,
        *,
        version: str | None = None,
        partition_id: int | None = None,
        timeout_ms: int | None = None,
    ) -> TaskLock:
        """``acquire`` for the event loop: the same rules, deadline and errors, but the wait is a future
        resolved by the next release (waiters re-check highest priority first, then in arrival order),
        so no thread is held; cancelling the caller withdraws the request. A grant that preempted
        others yields once after telling the revocation listeners, so listeners that hop to the loop
        (the service's) have run before the caller hears of its lock, as with the threaded wait."""
        loop = asyncio.get_running_loop()
        events: list[tuple[str, TaskLock]] = []
        waiter: _AsyncWaiter | None = None
        granted: TaskLock | None = None
        try:
            with self._cond:
                task = self._require(task_id)
                timeout = task.lock_timeout_ms if timeout_ms is None else timeout_ms
                deadline = self.clock.monotonic() + timeout / 1000.0
            while True:
                with self._cond:
                    if waiter is not None and task_id not in self._tasks:
                        raise LockError(f"Task[{task_id}] was removed while waiting for a lock")
                    plan = self._plan(task_id, interval, lock_type, granularity, version, partition_id)
                    result = self._apply(task_id, plan, interval, lock_type, granularity, version, partition_id, events)
                    if result.ok and result.lock is not None:
                        granted = result.lock
                        break
                    if result.revoked:
                        raise LockError(result.reason, task_id=task_id)
                    remaining = deadline - self.clock.monotonic()
                    if remaining <= 0:
                        raise _timed_out(task, timeout, granularity, lock_type, interval, result.reason)
                    if waiter is None:
                        waiter = _AsyncWaiter(next(self._waiter_seq), task.priority, loop)
                        self._async_waiters[waiter.seq] = waiter
                    woken = waiter.future = loop.create_future()
                    self._waiting[task_id] = result.reason or "waiting"
                    self._cond.notify_all()  # for await_waiting
                await asyncio.wait((woken,), timeout=min(remaining, self._poll))
        finally:
            with self._cond:
                if waiter is not None:
                    self._async_waiters.pop(waiter.seq, None)
                    self._waiting.pop(task_id, None)
            self._fire(events)
        if events:
            await asyncio.sleep(0)
        return granted

    def try_acquire_all(
        self,
        task_id: str,
        intervals: Iterable[Interval],
        lock_type: TaskLockType = TaskLockType.EXCLUSIVE,
        granularity: LockGranularity = LockGranularity.TIME_CHUNK,
    ) -> LockResult:
        """All-or-nothing time-chunk locks for a task's input intervals (what ``isReady`` does)."""
        events: list[tuple[str, TaskLock]] = []
        with self._cond:
            ivs = list(intervals)
            plans = [self._plan(task_id, iv, lock_type, granularity, None, None) for iv in ivs]
            bad = next((p.result for p in plans if not p.result.ok), None)
            if bad is not None:
                return bad
            last = LockResult(None)
            for iv in ivs:
                # re-plan: an interval granted a moment ago may now be joined instead of created
                plan = self._plan(task_id, iv, lock_type, granularity, None, None)
                last = self._apply(task_id, plan, iv, lock_type, granularity, None, None, events)
        self._fire(events)
        return last

    def is_ready(
        self,
        task_id: str,
        intervals: Iterable[Interval],
        lock_type: TaskLockType = TaskLockType.EXCLUSIVE,
        granularity: LockGranularity = LockGranularity.TIME_CHUNK,
    ) -> bool:
        """Could the task get (or does it hold) locks on all intervals now? Changes nothing."""
        with self._cond:
            return all(self._plan(task_id, iv, lock_type, granularity, None, None).result.ok for iv in intervals)

    # --- releasing and inspecting -------------------------------------------------------------------

    def release(self, task_id: str, interval: Interval, partition_id: int | None = None) -> list[TaskLock]:
        """Release the task's locks on exactly ``interval`` (one partition when given); wakes waiters."""
        released: list[TaskLock] = []
        with self._cond:
            for p in list(self._held.get(task_id, ())):
                lock = p.lock
                if lock.interval == interval and (partition_id is None or lock.partition_id == partition_id):
                    self._unhold(task_id, p)
                    released.append(lock)
            self._notify()
        return released

    def find_locks(self, task_id: str) -> list[TaskLock]:
        """Every lock the task holds, revoked ones included (``lockList``)."""
        with self._cond:
            return [p.lock for p in self._held.get(task_id, ())]

    def all_locks(self, data_source: str | None = None) -> list[tuple[frozenset[str], TaskLock]]:
        with self._cond:
            return [
                (frozenset(p.task_ids), p.lock)
                for ds, index in self._posses.items()
                if data_source is None or ds == data_source
                for p in index
            ]

    def revoked_locks(self, task_id: str) -> list[TaskLock]:
        return [lock for lock in self.find_locks(task_id) if lock.revoked]

    def revocation_message(self, task_id: str) -> str | None:
        """The errorMsg for a preempted task, naming the task that revoked its lock; None if none."""
        revoked = self.revoked_locks(task_id)
        return _revoked_message(task_id, revoked[0]) if revoked else None

    def waiting_tasks(self) -> dict[str, str]:
        """Tasks blocked in ``acquire`` and why (shown as WAITING by the API)."""
        with self._cond:
            return dict(self._waiting)

    def await_waiting(self, task_id: str, timeout_s: float = 5.0) -> bool:
        """Block until ``task_id`` waits in ``acquire``; lets tests order threads without sleeping."""
        with self._cond:
            return self._cond.wait_for(lambda: task_id in self._waiting, timeout_s)

    def wake_waiters(self) -> None:
        """Make waiters re-check (after a ManualClock moved, or an outside change)."""
        with self._cond:
            self._notify()

    # --- publishing critical section ----------------------------------------------------------------

    def enter_critical_section(self, task_id: str, intervals: Iterable[Interval] = ()) -> None:
        """Mark the task as publishing so it cannot be preempted; LockError if its locks on the
        intervals are revoked or missing (it must not publish then)."""
        with self._cond:
            self._require(task_id)
            locks = [p.lock for p in self._held.get(task_id, ())]
            wanted = list(intervals)
            for lock in locks:
                if lock.revoked and (not wanted or any(lock.interval.overlaps(iv) for iv in wanted)):
                    raise LockError(_revoked_message(task_id, lock), task_id=task_id)
            for iv in wanted:
                if not any(lock.interval.contains(iv) for lock in locks):
                    raise LockError(f"Task[{task_id}] holds no lock covering interval[{iv}]", task_id=task_id)
            self._critical[task_id] = self._critical.get(task_id, 0) + 1

    def exit_critical_section(self, task_id: str) -> None:
        """Leave publishing; locks become preemptible again and waiters re-check."""
        with self._cond:
            depth = self._critical.get(task_id, 0) - 1
            if depth > 0:
                self._critical[task_id] = depth
            else:
                self._critical.pop(task_id, None)
            self._notify()

    @contextmanager
    def critical_section(self, task_id: str, intervals: Iterable[Interval] = ()) -> Iterator[None]:
        self.enter_critical_section(task_id, intervals)
        try:
            yield
        finally:
            self.exit_critical_section(task_id)

    def in_critical_section(self, task_id: str) -> bool:
        with self._cond:
            return task_id in self._critical

    # --- persistence --------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Plain dicts, one per (task, lock), for the metadata store."""
        with self._cond:
            out: list[dict[str, Any]] = []
            for p in self._iter_posses():
                for tid in sorted(p.task_ids):
                    t = self._tasks.get(tid)
                    out.append(
                        {
                            "taskId": tid,
                            "groupId": p.lock.group_id,
                            "taskType": t.task_type if t else "",
                            "priority": t.priority if t else p.lock.priority,
                            "dataSource": p.lock.data_source,
                            "taskLockTimeout": t.lock_timeout_ms if t else DEFAULT_LOCK_TIMEOUT_MS,
                            "lock": p.lock.to_json(),
                        }
                    )
            return out

    def restore(self, entries: Iterable[Mapping[str, Any]], alive_task_ids: Collection[str]) -> RestoreResult:
        """Re-create stored locks of tasks still alive (registering them if needed); drop the others.

        A stored lock that conflicts with one already restored is not granted (the caller should
        fail that task, as Druid does when it cannot re-acquire a lock at startup).
        """
        restored: list[tuple[str, TaskLock]] = []
        released: list[tuple[str, TaskLock]] = []
        failed: list[tuple[str, TaskLock, str]] = []
        with self._cond:
            for entry in entries:
                tid = str(entry["taskId"])
                lock = TaskLock.from_json(entry["lock"])
                if tid not in alive_task_ids:
                    released.append((tid, lock))
                    continue
                if tid not in self._tasks:
                    self._tasks[tid] = LockboxTask(
                        tid,
                        str(entry.get("groupId", lock.group_id)),
                        str(entry.get("taskType", "")),
                        int(entry.get("priority", lock.priority)),
                        str(entry.get("dataSource", lock.data_source)),
                        int(entry.get("taskLockTimeout", DEFAULT_LOCK_TIMEOUT_MS)),
                    )
                self.versions.observe(lock.version)
                index = self._posses.setdefault(lock.data_source, LockIndex())
                same = next((p for p in index.overlapping(lock.interval) if p.lock == lock), None)
                if same is not None:
                    self._hold(tid, same)
                    restored.append((tid, lock))
                    continue
                clash = [p for p in self._conflicts(lock) if not lock.revoked]
                if clash:
                    holders = sorted(t for p in clash for t in p.task_ids)
                    failed.append((tid, lock, f"conflicts with restored locks of tasks {holders}"))
                    continue
                self._new_posse(lock, tid)
                restored.append((tid, lock))
            self._notify()
        return RestoreResult(restored, released, failed)

    # --- internals ----------------------------------------------------------------------------------

    def _require(self, task_id: str) -> LockboxTask:
        task = self._tasks.get(task_id)
        if task is None:
            raise LockError(f"Unable to grant lock to inactive task[{task_id}]", task_id=task_id)
        return task

    def _iter_posses(self) -> Iterator[LockPosse]:
        for posses in self._posses.values():
            yield from posses

    def _hold(self, task_id: str, posse: LockPosse) -> None:
        if task_id not in posse.task_ids:
            posse.task_ids.add(task_id)
            self._held.setdefault(task_id, []).append(posse)

    def _new_posse(self, lock: TaskLock, task_id: str) -> None:
        posse = LockPosse(lock)
        self._posses.setdefault(lock.data_source, LockIndex()).add(posse)
        self._hold(task_id, posse)

    def _unhold(self, task_id: str, posse: LockPosse) -> None:
        posse.task_ids.discard(task_id)
        held = self._held.get(task_id, [])
        if posse in held:
            held.remove(posse)
        if not held:
            self._held.pop(task_id, None)
        if not posse.task_ids:
            index = self._posses[posse.lock.data_source]
            index.remove(posse)
            if not index.keys:
                del self._posses[posse.lock.data_source]

    def _conflicts(self, lock: TaskLock) -> list[LockPosse]:
        """Live posses of other groups that cannot coexist with ``lock``."""
        out = []
        index = self._posses.get(lock.data_source)
        for p in index.overlapping(lock.interval) if index else ():
            held = p.lock
            if held.revoked or held.group_id == lock.group_id or not held.interval.overlaps(lock.interval):
                continue
            if held.granularity == lock.granularity == LockGranularity.SEGMENT:
                if held.partition_id != lock.partition_id or held.interval != lock.interval:
                    continue
            elif frozenset({held.lock_type, lock.lock_type}) in COMPATIBLE_TYPES:
                continue
            out.append(p)
        return out

    def _plan(
        self,
        task_id: str,
        interval: Interval,
        lock_type: TaskLockType,
        granularity: LockGranularity,
        version: str | None,
        partition_id: int | None,
    ) -> _Plan:
        task = self._require(task_id)
        if granularity == LockGranularity.SEGMENT and partition_id is None:
            raise LockError("A segment lock needs a partitionId", task_id=task_id)
        index = self._posses.get(task.data_source)
        ds_posses = index.overlapping(interval) if index else []
        for p in ds_posses:
            if task_id in p.task_ids and p.lock.revoked and p.lock.interval.overlaps(interval):
                return _Plan(LockResult(p.lock, True, _revoked_message(task_id, p.lock)))
        for p in ds_posses:
            held = p.lock
            if held.revoked or held.group_id != task.group_id or held.granularity != granularity:
                continue
            if held.lock_type != lock_type:
                continue
            if granularity == LockGranularity.TIME_CHUNK and held.interval.contains(interval):
                return _Plan(LockResult(held), join=p)
            if held.interval == interval and held.partition_id == partition_id:
                return _Plan(LockResult(held), join=p)
        probe = TaskLock(
            granularity, lock_type, task.group_id, task.data_source, interval, "", task.priority, partition_id
        )
        conflicts = self._conflicts(probe)
        if not conflicts:
            return _Plan(LockResult(probe))
        blockers = tuple(sorted({t for p in conflicts for t in p.task_ids}))
        stronger = [p for p in conflicts if p.lock.priority >= task.priority]
        if stronger:
            who = sorted({t for p in stronger for t in p.task_ids})
            return _Plan(
                LockResult(
                    None,
                    reason=f"conflicts with locks held by tasks {who} of priority >= {task.priority}",
                    blockers=blockers,
                )
            )
        publishing = sorted({t for p in conflicts for t in p.task_ids if t in self._critical})
        if publishing:
            return _Plan(
                LockResult(None, reason=f"waiting for tasks {publishing} to finish publishing", blockers=blockers)
            )
        return _Plan(LockResult(probe, blockers=blockers), revoke=tuple(conflicts))

    def _apply(
        self,
        task_id: str,
        plan: _Plan,
        interval: Interval,
        lock_type: TaskLockType,
        granularity: LockGranularity,
        version: str | None,
        partition_id: int | None,
        events: list[tuple[str, TaskLock]],
    ) -> LockResult:
        """Carry out a plan made under the same hold of the Condition."""
        if not plan.result.ok:
            return plan.result
        if plan.join is not None:
            self._hold(task_id, plan.join)
            return LockResult(plan.join.lock)
        task = self._tasks[task_id]
        for p in plan.revoke:
            p.lock = replace(p.lock, revoked=True, revoked_by=task_id)
            for holder in p.task_ids:
                events.append((holder, p.lock))
            log.warning(
                "lock revoked",
                extra={"task_id": sorted(p.task_ids), "action": "revoke", "revoked_by": task_id},
            )
        if version is None:
            version = self.versions.next()
        lock = TaskLock(
            granularity, lock_type, task.group_id, task.data_source, interval, version, task.priority, partition_id
        )
        self._new_posse(lock, task_id)
        log.info("lock granted", extra={"task_id": task_id, "action": "lock", "lock": lock.to_json()})
        return LockResult(lock)

    def _notify(self) -> None:
        """Under the Condition: wake thread waiters, and resolve async waiters' futures in their order
        (directly on their own loop's thread, through ``call_soon_threadsafe`` from any other)."""
        self._cond.notify_all()
        if not self._async_waiters:
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for w in sorted(self._async_waiters.values(), key=lambda w: w.order):
            if w.future is not None and not w.future.done():
                by_loop.setdefault(w.loop, []).append(w.future)
        for loop, futures in by_loop.items():
            if loop is here:
                _wake_all(futures)
            else:
                with suppress(RuntimeError):  # that loop is closed: its waiters are gone with it
                    loop.call_soon_threadsafe(_wake_all, futures)

    def _fire(self, events: list[tuple[str, TaskLock]]) -> None:
        for task_id, lock in events:
            for listener in self._listeners:
                listener(task_id, lock)


def _revoked_message(task_id: str, lock: TaskLock) -> str:
    by = f" by task[{lock.revoked_by}]" if lock.revoked_by else ""
    return f"Lock of task[{task_id}] was revoked{by} (a task of higher priority preempted it): {lock.describe()}"


def _timed_out(
    task: LockboxTask,
    timeout_ms: int,
    granularity: LockGranularity,
    lock_type: TaskLockType,
    interval: Interval,
    reason: str | None,
) -> LockError:
    """The one message of a lock wait that ran out (both the threaded and the asyncio wait)."""
    return LockError(
        f"Task[{task.task_id}] timed out after {timeout_ms} ms (taskLockTimeout) waiting for "
        f"a {granularity} {lock_type} lock on dataSource[{task.data_source}] interval[{interval}]: {reason}",
        task_id=task.task_id,
    )
