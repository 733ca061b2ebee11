"""Task actions: the only way a running task touches locks and segments (Druid's TaskActionClient).

Called by the HTTP layer for ``POST /druid/indexer/v1/action``. Everything runs on the service's
event loop, because the metadata store is used from that thread only; the one action that can
wait, ``lockAcquire``, awaits the lockbox's ``acquire_async`` (an asyncio future, no worker thread),
so any number of waiting tasks holds no thread of the executor. ``segmentAllocate`` calls that
arrive together for the same data source and interval are served by one read and one write of the
store when ``druid.indexer.tasklock.batchSegmentAllocation`` is on.

Trust: the HTTP layer has already checked the caller's task token, so ``task`` IS the caller. What the
handler checks is that the action stays within what that task owns (docs/task-actions.md, "Trust"):
its own data source, intervals under its own non-revoked locks, lock versions chosen here, and load
specs inside deep storage. Refusals are ActionNotPermitted (403); missing or revoked locks LockError (409).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from overlord.clock import Clock
from overlord.core import granularity
from overlord.core.allocation import AllocationState, allocate_in_state
from overlord.core.data_segment import DataSegment, PendingSegment
from overlord.core.granularity import Granularity
from overlord.core.lockpolicy import LockGranularity, TaskLock, TaskLockType
from overlord.core.locks import TaskLockbox
from overlord.core.protocols import DeepStorage, SegmentStore
from overlord.core.task import TaskRecord
from overlord.errors import ActionNotPermitted, InvalidGranularity, InvalidInput, LockError, NotFound
from overlord.isotime import Interval, parse_instant_ms

log = logging.getLogger(__name__)

Handler = Callable[[TaskRecord, dict[str, Any]], Awaitable[Any]]

_DESTRUCTIVE_LOCK_TYPES = frozenset({TaskLockType.EXCLUSIVE, TaskLockType.REPLACE})
"""Lock types under which a task may mark segments unused or nuke them (SHARED is for readers, APPEND
for appenders: neither may take data away from others holding compatible locks)."""


def _interval(action: dict[str, Any], name: str = "interval") -> Interval:
    value = action.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"Missing or invalid field [action.{name}]: expected an ISO-8601 interval")
    return Interval.parse(value, field=f"action.{name}")


def _enum(enum_type: Any, value: Any, name: str, default: Any) -> Any:
    if value is None:
        return default
    try:
        return enum_type(str(value).upper().replace("TIMECHUNK", "TIME_CHUNK"))
    except ValueError:
        choices = ", ".join(m.value for m in enum_type)
        raise InvalidInput(f"Invalid value for field [action.{name}]: [{value}]; expected one of [{choices}]") from None


def _segments(action: dict[str, Any], name: str) -> list[DataSegment]:
    raw = action.get(name) or []
    if not isinstance(raw, list):
        raise InvalidInput(f"Invalid field [action.{name}]: expected a list of segments")
    return [DataSegment.from_json(s) for s in raw]


@dataclass
class _AllocRequest:
    task: TaskRecord
    timestamp_ms: int
    granularity: Granularity
    sequence_name: str
    previous_segment_id: str | None
    lock_granularity: LockGranularity
    lock_type: TaskLockType
    future: asyncio.Future[PendingSegment | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class TaskActionHandler:
    """Performs task actions for active tasks."""

    def __init__(
        self,
        *,
        lockbox: TaskLockbox,
        segments: SegmentStore,
        deep_storage: DeepStorage,
        clock: Clock,
        active: dict[str, TaskRecord],
        force_time_chunk_lock: bool,
        batch_segment_allocation: bool,
        on_locks_changed: Callable[[str], None],
    ) -> None:
        self.lockbox = lockbox
        self.segments = segments
        self.deep_storage = deep_storage
        self.clock = clock
        self.active = active
        self.force_time_chunk_lock = force_time_chunk_lock
        self.batching = batch_segment_allocation
        self.on_locks_changed = on_locks_changed
        self.allocation_passes = 0
        self._open_batches: dict[tuple[Any, ...], list[_AllocRequest]] = {}
        self._handlers: dict[str, Handler] = {
            "lockAcquire": self._lock_acquire,
            "lockTryAcquire": self._lock_try_acquire,
            "lockRelease": self._lock_release,
            "lockList": self._lock_list,
            "segmentAllocate": self._segment_allocate,
            "segmentTransactionalInsert": self._segment_insert,
            "segmentListUsed": self._segment_list_used,
            "retrieveUnusedSegments": self._retrieve_unused,
            "segmentNuke": self._segment_nuke,
            "markSegmentsAsUnused": self._mark_unused,
        }

    async def perform(self, task_id: str, action: Any) -> Any:
        task = self.active.get(task_id)
        if task is None:
            raise NotFound(f"Task[{task_id}] is not active: only running tasks may perform actions", taskId=task_id)
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            raise InvalidInput('Invalid task action: expected {"task": id, "action": {"type": ...}}')
        handler = self._handlers.get(action["type"])
        if handler is None:
            raise InvalidInput(
                f"Unknown task action type [{action['type']}]; supported: [{', '.join(sorted(self._handlers))}]"
            )
        return await handler(task, action)

    def _lock_granularity(self, task: TaskRecord, requested: LockGranularity) -> LockGranularity:
        """Time-chunk locks are forced when the task's context or the server says so (either one)."""
        ctx = (task.payload or {}).get("context") or {}
        if ctx.get("forceTimeChunkLock") is True or self.force_time_chunk_lock:
            return LockGranularity.TIME_CHUNK
        return requested

    # -- ownership -------------------------------------------------------------------------------

    @staticmethod
    def _own_datasource(task: TaskRecord, data_source: object, action_type: str) -> str:
        """The task's data source; ActionNotPermitted when the action names another one."""
        if not task.datasource:
            raise ActionNotPermitted(
                f"Task[{task.id}] has no dataSource, so it may not perform [{action_type}]", taskId=task.id
            )
        if data_source is not None and data_source != task.datasource:
            raise ActionNotPermitted(
                f"Task[{task.id}] of dataSource[{task.datasource}] may not perform [{action_type}] on "
                f"dataSource[{data_source}]: a task acts on its own data source only",
                taskId=task.id,
            )
        return task.datasource

    def _require_locks(
        self,
        task: TaskRecord,
        action_type: str,
        wanted: Sequence[tuple[Interval, int | None]],
        lock_types: frozenset[TaskLockType] | None = None,
    ) -> list[TaskLock]:
        """Each (interval, partition) must be covered by a non-revoked lock of the task (of ``lock_types``
        when given): a time-chunk lock containing the interval, or a segment lock on exactly that
        interval and partition (``None``: a whole interval, which only time-chunk locks cover)."""
        revoked = self.lockbox.revocation_message(task.id)
        locks = [lk for lk in self.lockbox.find_locks(task.id) if not lk.revoked]
        for interval, partition in wanted:
            covering = [lk for lk in locks if _covers(lk, interval, partition)]
            if not covering and revoked is not None:
                raise LockError(revoked, task_id=task.id)
            if lock_types is not None and covering and not any(lk.lock_type in lock_types for lk in covering):
                kinds = "/".join(sorted(t.value for t in lock_types))
                raise ActionNotPermitted(
                    f"Task[{task.id}] may perform [{action_type}] on interval[{interval}] only under an "
                    f"{kinds} lock; it holds {sorted({lk.lock_type.value for lk in covering})}",
                    taskId=task.id,
                )
            if not covering:
                raise LockError(
                    f"Task[{task.id}] holds no lock covering interval[{interval}]"
                    + (f" partition[{partition}]" if partition is not None else "")
                    + f", which [{action_type}] needs",
                    task_id=task.id,
                )
        return locks

    # -- locks -----------------------------------------------------------------------------------

    def _lock_request(
        self, task: TaskRecord, action: dict[str, Any]
    ) -> tuple[Interval, TaskLockType, LockGranularity, int | None, str | None]:
        """Parse a lock request; the version is never the caller's (see ``_segment_lock_version``)."""
        self._own_datasource(task, action.get("dataSource"), str(action["type"]))
        interval = _interval(action)
        lock_type = _enum(TaskLockType, action.get("lockType"), "lockType", TaskLockType.EXCLUSIVE)
        lock_granularity = self._lock_granularity(
            task, _enum(LockGranularity, action.get("granularity"), "granularity", LockGranularity.TIME_CHUNK)
        )
        partition_id = action.get("partitionId")
        if partition_id is not None and (isinstance(partition_id, bool) or not isinstance(partition_id, int)):
            raise InvalidInput(f"Invalid field [action.partitionId]: [{partition_id}]; expected an integer")
        version = None
        if lock_granularity == LockGranularity.SEGMENT:
            version = self._segment_lock_version(task, interval, partition_id, action.get("version"))
        elif action.get("version") is not None:
            raise InvalidInput(
                f"Invalid field [action.version]: [{action['version']}]; the Overlord chooses the version of a "
                "time-chunk lock (a caller-chosen version could overshadow newer data)"
            )
        return interval, lock_type, lock_granularity, partition_id, version

    def _segment_lock_version(
        self, task: TaskRecord, interval: Interval, partition_id: int | None, requested: object
    ) -> str:
        """A segment lock locks an existing used segment, so its version is that segment's (as in
        Druid's SegmentLockAcquireAction); a ``version`` naming anything else is refused."""
        if partition_id is None:
            raise InvalidInput("Missing field [action.partitionId]: a segment lock needs one")
        versions = sorted(
            s.version
            for s in self.segments.used_segments(task.datasource or "", interval)
            if s.interval == interval and s.partition_num == partition_id
        )
        if not versions:
            raise InvalidInput(
                f"Invalid segment lock: no used segment of dataSource[{task.datasource}] with interval[{interval}] "
                f"and partitionId[{partition_id}]"
            )
        if requested is None:
            return versions[-1]
        if requested not in versions:
            raise InvalidInput(
                f"Invalid field [action.version]: [{requested}] is not the version of the used segment with "
                f"interval[{interval}] and partitionId[{partition_id}]"
            )
        return str(requested)

    async def _lock_acquire(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        interval, lock_type, granularity, partition_id, version = self._lock_request(task, action)
        timeout = action.get("timeoutMs")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
            raise InvalidInput(f"Invalid field [action.timeoutMs]: [{timeout}]; expected a non-negative integer")
        try:
            lock = await self.lockbox.acquire_async(
                task.id,
                interval,
                lock_type,
                granularity,
                partition_id=partition_id,
                version=version,
                timeout_ms=timeout,
            )
        finally:
            self.on_locks_changed(task.id)
        return lock.to_json()

    async def _lock_try_acquire(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        interval, lock_type, granularity, partition_id, version = self._lock_request(task, action)
        result = self.lockbox.try_acquire(
            task.id, interval, lock_type, granularity, partition_id=partition_id, version=version
        )
        self.on_locks_changed(task.id)
        return result.lock.to_json() if result.ok and result.lock is not None else None

    async def _lock_release(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        """Releases only the caller's own hold: a lock shared with group mates stays theirs."""
        self.lockbox.release(task.id, _interval(action), action.get("partitionId"))
        self.on_locks_changed(task.id)
        return None

    async def _lock_list(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        return [lock.to_json() for lock in self.lockbox.find_locks(task.id)]

    # -- segment allocation ----------------------------------------------------------------------

    async def _segment_allocate(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        data_source = self._own_datasource(task, action.get("dataSource"), "segmentAllocate")
        try:
            timestamp = parse_instant_ms(str(action["timestamp"]))
        except (KeyError, ValueError):
            raise InvalidInput("Missing or invalid field [action.timestamp]: expected an ISO-8601 instant") from None
        raw = action.get("preferredSegmentGranularity")
        try:
            gran = granularity.parse("DAY" if raw is None else raw)
        except InvalidGranularity as exc:
            raise InvalidInput(f"Invalid field [action.preferredSegmentGranularity]: [{raw}]: {exc.message}") from None
        if gran.is_none:
            raise InvalidInput(
                "Invalid field [action.preferredSegmentGranularity]: [NONE] is not a segment granularity"
            )
        bucket = gran.bucket(timestamp)
        request = _AllocRequest(
            task=task,
            timestamp_ms=timestamp,
            granularity=gran,
            sequence_name=str(action.get("sequenceName") or task.id),
            previous_segment_id=action.get("previousSegmentId") or None,
            lock_granularity=self._lock_granularity(
                task,
                _enum(LockGranularity, action.get("lockGranularity"), "lockGranularity", LockGranularity.TIME_CHUNK),
            ),
            lock_type=_enum(TaskLockType, action.get("taskLockType"), "taskLockType", TaskLockType.EXCLUSIVE),
        )
        key = (data_source, bucket, gran, request.lock_granularity, request.lock_type)
        if self.batching:
            batch = self._open_batches.setdefault(key, [])
            batch.append(request)
            if len(batch) == 1:  # the first of a batch: serve everything that arrived by the next turn
                asyncio.get_running_loop().call_soon(self._run_batch, key)
        else:
            self._allocate(data_source, bucket, [request])
        pending = await request.future
        self.on_locks_changed(task.id)
        if pending is None:
            return None
        return {
            "dataSource": pending.id.data_source,
            "interval": str(pending.id.interval),
            "version": pending.id.version,
            "shardSpec": pending.shard_spec.to_json(),
        }

    def _run_batch(self, key: tuple[Any, ...]) -> None:
        batch = self._open_batches.pop(key, [])
        if batch:
            self._allocate(key[0], key[1], batch)

    def _allocate(self, data_source: str, interval: Interval, batch: list[_AllocRequest]) -> None:
        """One pass: read used and pending segments once, allocate each request, write once."""
        self.allocation_passes += 1
        try:
            state = AllocationState(
                data_source,
                self.segments.used_segments(data_source, interval),
                self.segments.pending_segments(data_source, interval),
            )
            created: list[PendingSegment] = []
            results: list[PendingSegment | BaseException | None] = []
            for r in batch:
                try:
                    got = allocate_in_state(
                        self.lockbox, state, r.task.id, r.timestamp_ms, r.granularity,
                        r.previous_segment_id, r.sequence_name, r.lock_granularity, r.lock_type,
                    )  # fmt: skip
                except (LockError, InvalidInput) as exc:
                    results.append(exc)
                    continue
                results.append(got)
                if got is not None and state.add(got):
                    created.append(got)
            groups = {r.task.id: r.task.group_id for r in batch}
            self.segments.insert_pending(created, groups, self.clock.now_ms())
        except Exception as exc:
            results = [exc] * len(batch)
        for r, outcome in zip(batch, results, strict=True):
            if isinstance(outcome, BaseException):
                r.future.set_exception(outcome)
            else:
                r.future.set_result(outcome)

    # -- publishing and segment management ------------------------------------------------------

    async def _segment_insert(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        new = _segments(action, "segments")
        drop = _segments(action, "segmentsToBeDropped")
        for seg in [*new, *drop]:
            self._own_datasource(task, seg.data_source, "segmentTransactionalInsert")
        for seg in new:
            if not self.deep_storage.contains(dict(seg.load_spec)):
                raise ActionNotPermitted(
                    f"Task[{task.id}] may not publish segment[{seg.identifier}]: its loadSpec "
                    f"{dict(seg.load_spec)} does not point inside deep storage",
                    taskId=task.id,
                )
        dropped = [(s.interval, s.partition_num) for s in drop]
        self._require_locks(task, "segmentTransactionalInsert", dropped, _DESTRUCTIVE_LOCK_TYPES)
        drop = self._stored(task, drop, used=True)
        intervals = [s.interval for s in [*new, *drop]]
        with self.lockbox.critical_section(task.id, intervals):
            self._check_versions(task, new)
            marked = self.segments.publish(new, drop, self.clock.now_ms())
        log.info(
            "Task[%s] published %d segments, marked %d unused", task.id, len(new), len(marked),
            extra={"task_id": task.id, "action": "segmentTransactionalInsert"},
        )  # fmt: skip
        return {"success": True, "segments": [s.to_json() for s in new]}

    def _stored(self, task: TaskRecord, segs: list[DataSegment], *, used: bool) -> list[DataSegment]:
        """The stored (used or unused) segments of the task's data source among ``segs``.

        The store marks and deletes by identifier, and an identifier (``ds_start_end_version``) of one
        data source can be spelled as another's with a crafted interval and version; matching against
        the rows of the task's own data source keeps those calls to its own segments.
        """
        found: list[DataSegment] = []
        for interval in sorted({s.interval for s in segs}):
            rows = (
                self.segments.used_segments(task.datasource or "", interval)
                if used
                else self.segments.unused_segments(task.datasource or "", interval)
            )
            ids = {r.identifier: r for r in rows if r.data_source == task.datasource}
            found.extend(ids[s.identifier] for s in segs if s.interval == interval and s.identifier in ids)
        return found

    def _check_versions(self, task: TaskRecord, new: list[DataSegment]) -> None:
        """A segment must carry the version of a lock the task holds on its interval (or an older one,
        for an append to existing data); a segment lock covers only its own partition."""
        locks = [lock for lock in self.lockbox.find_locks(task.id) if not lock.revoked]
        for seg in new:
            covering = [lock for lock in locks if _covers(lock, seg.interval, seg.partition_num)]
            if not any(seg.version <= lock.version for lock in covering):
                raise LockError(
                    f"Task[{task.id}] holds no lock covering segment[{seg.identifier}] with version >= [{seg.version}]"
                )

    async def _segment_list_used(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        ds = self._own_datasource(task, action.get("dataSource"), "segmentListUsed")
        raw = action.get("intervals") or ([action["interval"]] if "interval" in action else [])
        intervals = [Interval.parse(str(i), field="action.intervals") for i in raw]
        return [s.to_json() for s in self.segments.visible_segments(ds, intervals or None)]

    async def _retrieve_unused(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        ds = self._own_datasource(task, action.get("dataSource"), "retrieveUnusedSegments")
        return [s.to_json() for s in self.segments.unused_segments(ds, _interval(action))]

    async def _segment_nuke(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        segs = _segments(action, "segments")
        for seg in segs:
            self._own_datasource(task, seg.data_source, "segmentNuke")
        nuked = [(s.interval, s.partition_num) for s in segs]
        self._require_locks(task, "segmentNuke", nuked, _DESTRUCTIVE_LOCK_TYPES)
        segs = self._stored(task, segs, used=False)
        with self.lockbox.critical_section(task.id, [s.interval for s in segs]):
            deleted = self.segments.nuke(segs)
        return {"numDeleted": deleted}

    async def _mark_unused(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        ds = self._own_datasource(task, action.get("dataSource"), "markSegmentsAsUnused")
        interval = _interval(action)
        self._require_locks(task, "markSegmentsAsUnused", [(interval, None)], _DESTRUCTIVE_LOCK_TYPES)
        with self.lockbox.critical_section(task.id, [interval]):
            changed = self.segments.mark_unused(ds, interval, self.clock.now_ms())
        return {"numChangedSegments": changed}


def _covers(lock: TaskLock, interval: Interval, partition: int | None) -> bool:
    """A time-chunk lock covers what lies inside its interval; a segment lock only its own segment."""
    if lock.granularity == LockGranularity.TIME_CHUNK:
        return lock.interval.contains(interval)
    return partition is not None and lock.interval == interval and lock.partition_id == partition
