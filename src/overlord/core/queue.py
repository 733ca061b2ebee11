"""TaskQueue: admission, the WAITING -> PENDING -> RUNNING -> complete lifecycle, and shutdown.

Like Druid's TaskQueue, it keeps every active task in memory (the store is written first, so memory
is only ever a cache of committed state) and schedules synchronously on each event: a submit, an
exit, a shutdown, a released lock. It runs on the service's event loop; the metadata store is called
inline because its calls are short, indexed transactions.

Crash safety: a launch is committed (RUNNING, the runner's handle, the token's hash) before the
peon may work, so a restart never starts a second peon for a task; a completion is committed before
any clean-up, and one that cannot be written (full disk, store down) is kept and retried, while
submits answer 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from overlord import failpoints
from overlord.clock import Clock
from overlord.core import task_tokens
from overlord.core.lock_intervals import declared_lock_intervals
from overlord.core.lockpolicy import default_priority, validate_lock_timeout
from overlord.core.locks import TaskLockbox
from overlord.core.protocols import LaunchSpec, RunnerExit, SegmentStore, TaskRunner, TaskStore
from overlord.core.task import (
    UNKNOWN_LOCATION,
    Location,
    RunnerState,
    StatusCode,
    SubmitContext,
    TaskRecord,
    check_transition,
    datasource_of,
    generate_id,
    task_type_for,
    validate_id,
)
from overlord.errors import (
    InvalidSpec,
    NotFound,
    OverlordError,
    QueueFull,
    StoreUnavailable,
    TaskNotFound,
)

log = logging.getLogger(__name__)

USER_SHUTDOWN = "Shutdown request from user"  # Druid's text: its console shows such tasks as CANCELED


@dataclass(frozen=True)
class QueueConfig:
    max_size: int
    force_time_chunk_lock: bool
    default_context: dict[str, Any]
    location: Location
    submit_context: SubmitContext = field(default_factory=SubmitContext)


class TaskQueue:
    """The only writer of task state."""

    def __init__(
        self,
        *,
        store: TaskStore,
        runner: TaskRunner,
        config: QueueConfig,
        clock: Clock,
        lockbox: TaskLockbox,
        segments: SegmentStore,
    ) -> None:
        self.store = store
        self.runner = runner
        self.config = config
        self.clock = clock
        self.lockbox = lockbox
        self.segments = segments
        self.active: dict[str, TaskRecord] = {}
        self._completion_listeners: list[Callable[[TaskRecord], None]] = []
        self.stopping = False
        self._recovering = False
        self._scheduling = False
        self._reported: dict[str, tuple[bool, str | None]] = {}  # status a peon posted, until it exits
        self._unsaved: dict[str, TaskRecord] = {}  # completions the store could not take yet
        self.shutting_down: dict[str, str] = {}  # running tasks asked to stop, and why
        self.completions = 0  # how many tasks completed since start (listings key their shared reads on it)

    # -- start-up --------------------------------------------------------------------------------

    def recover(self) -> None:
        """Rebuild memory from the store after a (possibly unclean) restart; nothing is lost.

        Peons still alive are adopted and keep their locks; exits of the ones that are gone arrive
        as runner exit events; locks of tasks that are gone are released; waiting and pending tasks
        go back to WAITING and take their locks again. One task's bad leftovers fail that task, never
        the start-up.
        """
        self._recovering = True
        handles: dict[str, str] = {}
        alive: set[str] = set()
        try:
            for rec in self.store.list_active(with_payload=True):
                try:
                    if rec.runner_state is RunnerState.RUNNING and rec.runner_handle:
                        handles[rec.id] = rec.runner_handle
                    elif rec.runner_state is RunnerState.RUNNING:
                        rec = rec.with_(runner_state=RunnerState.PENDING)
                        self.active[rec.id] = rec
                        why = "Task was RUNNING without a runner handle after a restart"
                        self._complete(rec, success=False, error_msg=why, duration=0)
                        continue
                    else:
                        rec = rec.with_(runner_state=RunnerState.WAITING, location=UNKNOWN_LOCATION)
                    self.active[rec.id] = rec
                    self._register(rec)
                except Exception as exc:  # one task's bad leftovers fail that task, never the start-up
                    log.exception("Task[%s] could not be recovered", rec.id, extra={"task_id": rec.id})
                    self.active[rec.id] = rec
                    self._complete(rec, success=False, error_msg=f"Task could not be recovered after a restart: {exc}",
                                   duration=0)  # fmt: skip
            alive = self.runner.adopt(handles)
            restored = self.lockbox.restore(self.segments.load_task_locks(), list(alive))
            self.segments.delete_task_locks({tid for tid, _ in restored.released})
            for task_id, _lock, why in restored.failed:
                self.shutdown(task_id, f"Task failed: its lock could not be restored after a restart ({why})")
        finally:
            self._recovering = False
        log.info("Recovered %d active tasks (%d peons adopted)", len(self.active), len(alive))
        self.schedule()

    def _register(self, rec: TaskRecord) -> None:
        ctx = (rec.payload or {}).get("context") or {}
        self.lockbox.add_task(rec.id, rec.group_id, rec.type, rec.priority, rec.datasource or "", context=ctx)

    def persist_locks(self, task_id: str) -> None:
        """Write one task's locks to the store, so they survive a restart of the service."""
        entries = [e for e in self.lockbox.snapshot() if e["taskId"] == task_id]
        self.segments.save_task_locks(task_id, entries)

    def add_completion_listener(self, listener: Callable[[TaskRecord], None]) -> None:
        self._completion_listeners.append(listener)

    # -- submission ------------------------------------------------------------------------------

    def submit(self, payload: Any, headers: dict[str, str] | None = None) -> str:
        """Validate, store (committed before we answer), then schedule. Returns the task id."""
        rec = self.prepare(payload, headers or {})
        if len(self.active) >= self.config.max_size:
            raise QueueFull(
                f"Too many tasks (max = {self.config.max_size}): the task queue is full "
                "(druid.indexer.queue.maxSize); try again later"
            )
        if self._unsaved:
            self.flush_unsaved()
            if self._unsaved:
                raise StoreUnavailable(
                    "The metadata store cannot be written right now (completions are waiting to be saved); "
                    "the task was not stored: try again shortly"
                )
        try:
            self.store.insert_task(rec)
        except OverlordError:
            raise
        except Exception as exc:
            log.warning("Storing task[%s] failed: %s", rec.id, exc, extra={"task_id": rec.id})
            raise StoreUnavailable(
                f"The metadata store cannot be written right now ({type(exc).__name__}); "
                "the task was not stored: try again shortly"
            ) from exc
        self.active[rec.id] = rec
        self._register(rec)
        log.info("Task[%s] of type[%s] submitted", rec.id, rec.type, extra={"task_id": rec.id, "action": "submit"})
        self.schedule()
        return rec.id

    def prepare(self, payload: Any, headers: dict[str, str]) -> TaskRecord:
        """Turn a submitted spec into the record to store, with Druid's defaults filled in."""
        if not isinstance(payload, dict):
            raise InvalidSpec("The task spec must be a JSON object")
        task_type = task_type_for(payload.get("type"))
        payload = dict(payload)
        if task_type.validate is not None:
            payload = task_type.validate(payload, self.config.submit_context)
        now = self.clock.now_ms()
        datasource = datasource_of(payload)
        if datasource is not None:  # it becomes a directory name in deep storage
            validate_id(
                datasource, "dataSource" if payload.get("dataSource") == datasource else "spec.dataSchema.dataSource"
            )
        task_id = payload.get("id")
        task_id = validate_id(task_id if task_id is not None else generate_id(task_type.name, datasource, now))
        group_id = payload.get("groupId")
        group_id = validate_id(group_id, "groupId") if group_id is not None else task_id
        context = payload.get("context") or {}
        if not isinstance(context, dict):
            raise InvalidSpec("Invalid value for field [context]: must be a JSON object", field="context")
        context = dict(context)
        context.setdefault("forceTimeChunkLock", self.config.force_time_chunk_lock)
        for key, value in self.config.default_context.items():
            context.setdefault(key, value)
        context.setdefault("useLineageBasedSegmentAllocation", True)
        priority = context.get("priority", default_priority(task_type.name))
        if isinstance(priority, bool) or not isinstance(priority, int) or not -(2**31) <= priority < 2**31:
            raise InvalidSpec(
                "Invalid value for field [context.priority]: must be an integer", field="context.priority"
            )
        validate_lock_timeout(context, self.config.submit_context.http_max_idle_time_ms)
        payload.update(id=task_id, groupId=group_id, context=context)
        if datasource is not None:
            payload.setdefault("dataSource", datasource)
        payload.setdefault("resource", {"availabilityGroup": task_id, "requiredCapacity": 1})
        return TaskRecord(
            id=task_id,
            group_id=group_id,
            type=task_type.name,
            datasource=datasource,
            created_ms=now,
            queue_insertion_ms=now,
            priority=priority,
            headers=headers,
            payload=payload,
        )

    # -- scheduling ------------------------------------------------------------------------------

    def schedule(self) -> None:
        """Move WAITING tasks whose locks are granted to PENDING, and PENDING ones onto free slots.

        Tasks that declare their intervals lock them here (Druid's isReady); one that has waited
        longer than its taskLockTimeout fails. Re-entrant calls (a completion while scheduling)
        are folded into the running pass.
        """
        if self.stopping or self._recovering or self._scheduling:
            return
        self._scheduling = True
        try:
            now = self.clock.now_ms()
            for rec in list(self.active.values()):
                if rec.runner_state is RunnerState.WAITING and self.active.get(rec.id) is rec:
                    self._try_ready(rec, now)
            if self.runner.free_slot_count() <= 0:
                return
            pending = sorted(
                (r for r in self.active.values() if r.runner_state is RunnerState.PENDING),
                key=lambda r: (-r.priority, r.queue_insertion_ms),
            )
            for rec in pending[: self.runner.free_slot_count()]:
                self._start(rec)
        finally:
            self._scheduling = False

    def _try_ready(self, rec: TaskRecord, now_ms: int) -> None:
        intervals = declared_lock_intervals(rec.payload or {})
        if intervals:
            result = self.lockbox.try_acquire_all(rec.id, intervals)
            if not result.ok:
                entry = self.lockbox.task(rec.id)
                timeout = entry.lock_timeout_ms if entry is not None else 300_000
                if now_ms - rec.queue_insertion_ms > timeout:
                    self._complete(
                        rec,
                        success=False,
                        error_msg=f"Task[{rec.id}] failed to acquire its locks within taskLockTimeout[{timeout}] ms "
                        f"while WAITING: {result.reason}",
                        duration=0,
                    )
                return
            self.persist_locks(rec.id)
        self._transition(rec, RunnerState.PENDING)

    def on_revoked(self, task_id: str) -> None:
        """A higher-priority task took this task's lock: the task fails, saying by whom."""
        rec = self.active.get(task_id)
        if rec is None:
            return
        message = self.lockbox.revocation_message(task_id) or f"Task[{task_id}]'s lock was revoked"
        log.warning("Task[%s] lost its lock: %s", task_id, message, extra={"task_id": task_id, "action": "revoke"})
        if rec.runner_state is RunnerState.RUNNING:
            self.shutting_down.setdefault(task_id, message)
            self.runner.shutdown(task_id, message)
        else:
            self._complete(rec, success=False, error_msg=message, duration=0)

    def _start(self, rec: TaskRecord) -> None:
        """Launch at the gate, commit RUNNING with the handle and the token's hash, then release."""
        if rec.payload is None:
            stored = self.store.get_task(rec.id, with_payload=True)
            rec = rec.with_(payload=stored.payload if stored else {})
        token = task_tokens.new_token()
        try:
            handle = self.runner.launch(LaunchSpec(rec.id, rec.payload or {}, task_type_for(rec.type).run, token))
        except Exception as exc:
            log.exception("Could not start a peon for task[%s]", rec.id, extra={"task_id": rec.id})
            self._complete(rec, success=False, error_msg=f"Could not start a peon: {exc}", duration=0)
            return
        failpoints.hit(failpoints.LAUNCHED_NOT_RECORDED)
        check_transition(rec.id, rec.runner_state, RunnerState.RUNNING)
        running = rec.with_(
            runner_state=RunnerState.RUNNING,
            location=self.config.location,
            runner_handle=handle,
            token_hash=task_tokens.token_digest(token),
        )
        try:
            self._save(running, "runner_state", "location", "runner_handle", "token_hash")
        except Exception as exc:
            log.warning("Could not record the launch of task[%s] (%s); it stays PENDING", rec.id, exc,
                        extra={"task_id": rec.id})  # fmt: skip
            self.runner.abort(rec.id)
            return
        self.active[rec.id] = running
        failpoints.hit(failpoints.RECORDED_NOT_RELEASED)
        self.runner.release(rec.id)
        log.info("Task[%s] is RUNNING", rec.id, extra={"task_id": rec.id, "action": "run"})

    # -- the running task's own calls ------------------------------------------------------------

    def authenticate(self, task_id: str, token: str | None) -> TaskRecord:
        """The active task ``task_id`` if ``token`` is its token; 401 without a token, 403 otherwise."""
        return task_tokens.authenticate(self.active, task_id, token)

    def report_status(self, task_id: str, success: bool, error_msg: str | None) -> None:
        """A peon's final status; the task completes with it when its process ends."""
        self._reported[task_id] = (success, error_msg)

    def on_runner_placed(self, task_id: str, location: Location) -> None:
        """A cluster runner learned which worker runs the task's peon: the running task's location says so."""
        rec = self.active.get(task_id)
        if rec is None or rec.runner_state is not RunnerState.RUNNING or rec.location == location:
            return
        placed = rec.with_(location=location)
        try:
            self._save(placed, "location")
        except Exception as exc:
            log.warning("Could not record where task[%s] runs (%s)", task_id, exc, extra={"task_id": task_id})
            return
        self.active[task_id] = placed

    def _requeue(self, rec: TaskRecord, why: str | None) -> None:
        """A launch that was recorded but never released did no work: it goes back to WAITING (to take its
        locks again: the restart released them) and is launched again, instead of failing a task that
        never ran."""
        check_transition(rec.id, rec.runner_state, RunnerState.WAITING)
        pending = rec.with_(runner_state=RunnerState.WAITING, location=UNKNOWN_LOCATION, runner_handle=None,
                            token_hash=None)  # fmt: skip
        try:
            self._save(pending, "runner_state", "location", "runner_handle", "token_hash")
        except Exception as exc:
            self._complete(rec, success=False, error_msg=f"{why}; and it could not be queued again: {exc}", duration=0)
            return
        self.active[rec.id] = pending
        log.info("Task[%s] was launched but never started (%s); it is WAITING again", rec.id, why,
                 extra={"task_id": rec.id, "action": "requeue"})  # fmt: skip
        self.schedule()

    def _save(self, rec: TaskRecord, *fields: str) -> None:
        """Write the named fields of ``rec`` to the store (the record in memory is the source)."""
        self.store.update_task(rec.id, **{name: getattr(rec, name) for name in fields})

    def _transition(self, rec: TaskRecord, new: RunnerState) -> TaskRecord:
        check_transition(rec.id, rec.runner_state, new)
        rec = rec.with_(runner_state=new)
        self.active[rec.id] = rec
        log.info("Task[%s] is %s", rec.id, new.value, extra={"task_id": rec.id, "action": new.value.lower()})
        return rec

    # -- completion ------------------------------------------------------------------------------

    def on_runner_exit(self, exit_: RunnerExit) -> None:
        """A peon ended: its runner's verdict (a shutdown, a status file), else what it posted, else a crash."""
        reported = self._reported.pop(exit_.task_id, None)
        rec = self.active.get(exit_.task_id)
        if rec is None:
            return
        if not exit_.started and rec.runner_state is RunnerState.RUNNING and reported is None:
            self._requeue(rec, exit_.error_msg)
            return
        if exit_.success is not None:
            success, error_msg = exit_.success, exit_.error_msg
        elif reported is not None:
            success, error_msg = reported
        else:
            success, error_msg = False, exit_.error_msg
        self._complete(rec, success=success, error_msg=error_msg, duration=exit_.duration_ms)

    def _complete(self, rec: TaskRecord, *, success: bool, error_msg: str | None, duration: int) -> None:
        check_transition(rec.id, rec.runner_state, RunnerState.NONE)
        status = StatusCode.SUCCESS if success else StatusCode.FAILED
        done = rec.with_(
            status_code=status,
            runner_state=RunnerState.NONE,
            duration=max(0, duration),
            error_msg=None if success else (error_msg or "Task failed"),
            completed_ms=self.clock.now_ms(),
            payload=None,
        )
        try:
            self._save(done, "status_code", "runner_state", "duration", "error_msg", "completed_ms")
        except Exception as exc:
            log.warning("Could not save the completion of task[%s] (%s); retrying", rec.id, exc,
                        extra={"task_id": rec.id})  # fmt: skip
            self._unsaved[rec.id] = done
            return
        self._after_completion(rec, done)

    def flush_unsaved(self) -> None:
        """Retry completions the store could not take; each one saved finishes as usual."""
        for task_id, done in list(self._unsaved.items()):
            try:
                self._save(done, "status_code", "runner_state", "duration", "error_msg", "completed_ms")
            except Exception:
                return
            self._unsaved.pop(task_id, None)
            rec = self.active.get(task_id)
            if rec is not None:
                self._after_completion(rec, done)

    def _after_completion(self, rec: TaskRecord, done: TaskRecord) -> None:
        """What follows a committed completion: locks, pending segments, children, listeners, scheduling."""
        self.active.pop(rec.id, None)
        self.completions += 1
        self._reported.pop(rec.id, None)
        self.shutting_down.pop(rec.id, None)
        self.lockbox.remove_task(rec.id)
        self.segments.delete_task_locks([rec.id])
        if not any(r.group_id == rec.group_id for r in self.active.values()):
            self.segments.delete_pending_of_group(rec.group_id)
        log.info(
            "Task[%s] completed with status[%s]%s",
            rec.id,
            done.status_code.value,
            f": {done.error_msg}" if done.error_msg else "",
            extra={"task_id": rec.id, "action": "complete"},
        )
        for child in [r for r in self.active.values() if (r.payload or {}).get("supervisorTaskId") == rec.id]:
            self.shutdown(child.id, f"Task was shut down: its parent task[{rec.id}] ended")
        for listener in self._completion_listeners:
            listener(done)
        self.schedule()

    def fail_on_stop(self, rec: TaskRecord) -> None:
        """The service is stopping and its peons with it (Druid's restoreTasksOnRestart=false)."""
        self._complete(
            rec,
            success=False,
            error_msg="Task was shut down because the Overlord stopped (restoreTasksOnRestart=false)",
            duration=0,
        )

    # -- shutdown --------------------------------------------------------------------------------

    def shutdown(self, task_id: str, reason: str = USER_SHUTDOWN) -> None:
        """Stop a task; a finished task is a no-op, an unknown one is TaskNotFound."""
        rec = self.active.get(task_id)
        if rec is None:
            if self.store.get_task(task_id) is None:
                raise TaskNotFound(f"Cannot find any task with id: [{task_id}]", taskId=task_id)
            return
        if rec.runner_state is RunnerState.RUNNING:
            self.shutting_down.setdefault(task_id, reason)
            self.runner.shutdown(task_id, reason)
        else:
            self._complete(rec, success=False, error_msg=reason, duration=0)

    def shutdown_datasource(self, datasource: str) -> int:
        ids = [r.id for r in self.active.values() if r.datasource == datasource]
        if not ids:
            raise NotFound(f"No active tasks found for dataSource[{datasource}]", dataSource=datasource)
        for task_id in ids:
            self.shutdown(task_id, USER_SHUTDOWN)
        return len(ids)

    # -- reads -----------------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        rec = self.active.get(task_id)
        return rec if rec is not None else self.store.get_task(task_id)

    def active_in_state(self, state: RunnerState | None = None) -> list[TaskRecord]:
        recs = self.active.values()
        if state is not None:
            recs = [r for r in recs if r.runner_state is state]  # type: ignore[assignment]
        return sorted(recs, key=lambda r: (r.queue_insertion_ms, r.id))
