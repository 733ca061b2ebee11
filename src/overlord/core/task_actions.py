"""Task actions: the only way a running task touches locks and segments (Druid's TaskActionClient).

Called by the HTTP layer for ``POST /druid/indexer/v1/action``. Everything runs on the service's
event loop, because the metadata store is used from that thread only; the one action that can
wait, ``lockAcquire``, waits in a worker thread on the (thread-safe, in-memory) lockbox and comes
back to the loop to persist what it got. ``segmentAllocate`` calls that arrive together for the same
data source and interval are served by one read and one write of the store when
``druid.indexer.tasklock.batchSegmentAllocation`` is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from overlord.clock import Clock
from overlord.core.allocation import AllocationState, allocate_in_state
from overlord.core.data_segment import DataSegment, PendingSegment, bucket_interval
from overlord.core.lockpolicy import LockGranularity, TaskLockType
from overlord.core.locks import TaskLockbox
from overlord.core.task import TaskRecord
from overlord.errors import InvalidInput, LockError, NotFound
from overlord.isotime import Interval, parse_instant_ms
from overlord.storage.segment_store import SegmentMetadata

log = logging.getLogger(__name__)

Handler = Callable[[TaskRecord, dict[str, Any]], Awaitable[Any]]


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
    granularity: str
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
        segments: SegmentMetadata,
        clock: Clock,
        active: dict[str, TaskRecord],
        force_time_chunk_lock: bool,
        batch_segment_allocation: bool,
        on_locks_changed: Callable[[str], None],
    ) -> None:
        self.lockbox = lockbox
        self.segments = segments
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

    # -- locks -----------------------------------------------------------------------------------

    async def _lock_acquire(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        interval = _interval(action)
        lock_type = _enum(TaskLockType, action.get("lockType"), "lockType", TaskLockType.EXCLUSIVE)
        granularity = self._lock_granularity(
            task, _enum(LockGranularity, action.get("granularity"), "granularity", LockGranularity.TIME_CHUNK)
        )
        timeout = action.get("timeoutMs")
        loop = asyncio.get_running_loop()
        try:
            lock = await loop.run_in_executor(
                None,
                lambda: self.lockbox.acquire(
                    task.id,
                    interval,
                    lock_type,
                    granularity,
                    partition_id=action.get("partitionId"),
                    version=action.get("version"),
                    timeout_ms=int(timeout) if timeout is not None else None,
                ),
            )
        finally:
            self.on_locks_changed(task.id)
        return lock.to_json()

    async def _lock_try_acquire(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        result = self.lockbox.try_acquire(
            task.id,
            _interval(action),
            _enum(TaskLockType, action.get("lockType"), "lockType", TaskLockType.EXCLUSIVE),
            self._lock_granularity(
                task, _enum(LockGranularity, action.get("granularity"), "granularity", LockGranularity.TIME_CHUNK)
            ),
            partition_id=action.get("partitionId"),
            version=action.get("version"),
        )
        self.on_locks_changed(task.id)
        return result.lock.to_json() if result.ok and result.lock is not None else None

    async def _lock_release(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        self.lockbox.release(task.id, _interval(action), action.get("partitionId"))
        self.on_locks_changed(task.id)
        return None

    async def _lock_list(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        return [lock.to_json() for lock in self.lockbox.find_locks(task.id)]

    # -- segment allocation ----------------------------------------------------------------------

    async def _segment_allocate(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        try:
            timestamp = parse_instant_ms(str(action["timestamp"]))
        except (KeyError, ValueError):
            raise InvalidInput("Missing or invalid field [action.timestamp]: expected an ISO-8601 instant") from None
        gran = action.get("preferredSegmentGranularity", "DAY")
        gran_name = gran.get("type", "DAY") if isinstance(gran, dict) else str(gran)
        try:
            bucket = bucket_interval(timestamp, gran_name)
        except InvalidInput:
            raise InvalidInput(f"Invalid field [action.preferredSegmentGranularity]: [{gran}]") from None
        if action.get("dataSource", task.datasource) != task.datasource:
            raise InvalidInput(f"Task[{task.id}] cannot allocate segments of dataSource[{action.get('dataSource')}]")
        request = _AllocRequest(
            task=task,
            timestamp_ms=timestamp,
            granularity=gran_name,
            sequence_name=str(action.get("sequenceName") or task.id),
            previous_segment_id=action.get("previousSegmentId") or None,
            lock_granularity=self._lock_granularity(
                task,
                _enum(LockGranularity, action.get("lockGranularity"), "lockGranularity", LockGranularity.TIME_CHUNK),
            ),
            lock_type=_enum(TaskLockType, action.get("taskLockType"), "taskLockType", TaskLockType.EXCLUSIVE),
        )
        key = (task.datasource, bucket, gran_name.upper(), request.lock_granularity, request.lock_type)
        if self.batching:
            batch = self._open_batches.setdefault(key, [])
            batch.append(request)
            if len(batch) == 1:  # the first of a batch: serve everything that arrived by the next turn
                asyncio.get_running_loop().call_soon(self._run_batch, key)
        else:
            self._allocate(task.datasource or "", bucket, [request])
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
            if seg.data_source != task.datasource:
                raise InvalidInput(f"Task[{task.id}] cannot publish segments of dataSource[{seg.data_source}]")
        intervals = [s.interval for s in [*new, *drop]]
        with self.lockbox.critical_section(task.id, intervals):
            self._check_versions(task, new)
            marked = self.segments.publish(new, drop, self.clock.now_ms())
        log.info(
            "Task[%s] published %d segments, marked %d unused", task.id, len(new), len(marked),
            extra={"task_id": task.id, "action": "segmentTransactionalInsert"},
        )  # fmt: skip
        return {"success": True, "segments": [s.to_json() for s in new]}

    def _check_versions(self, task: TaskRecord, new: list[DataSegment]) -> None:
        """A segment must carry the version of a lock the task holds on its interval (or an older one,
        for an append to existing data)."""
        locks = [lock for lock in self.lockbox.find_locks(task.id) if not lock.revoked]
        for seg in new:
            covering = [lock for lock in locks if lock.interval.contains(seg.interval)]
            if not any(seg.version <= lock.version for lock in covering):
                raise LockError(
                    f"Task[{task.id}] holds no lock covering segment[{seg.identifier}] with version >= [{seg.version}]"
                )

    async def _segment_list_used(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        ds = str(action.get("dataSource") or task.datasource)
        raw = action.get("intervals") or ([action["interval"]] if "interval" in action else [])
        intervals = [Interval.parse(str(i), field="action.intervals") for i in raw]
        return [s.to_json() for s in self.segments.visible_segments(ds, intervals or None)]

    async def _retrieve_unused(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        ds = str(action.get("dataSource") or task.datasource)
        return [s.to_json() for s in self.segments.unused_segments(ds, _interval(action))]

    async def _segment_nuke(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        segs = _segments(action, "segments")
        with self.lockbox.critical_section(task.id, [s.interval for s in segs]):
            deleted = self.segments.nuke(segs)
        return {"numDeleted": deleted}

    async def _mark_unused(self, task: TaskRecord, action: dict[str, Any]) -> Any:
        interval = _interval(action)
        with self.lockbox.critical_section(task.id, [interval]):
            changed = self.segments.mark_unused(str(action.get("dataSource") or task.datasource), interval,
                                                self.clock.now_ms())  # fmt: skip
        return {"numChangedSegments": changed}
