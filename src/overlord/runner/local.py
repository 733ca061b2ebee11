"""The local task runner: worker slots on this machine, one peon process per running task.

Peons are forked from a fork server that has the task modules imported already (fast
start, real process isolation, real signals). Exits are noticed at once through the
process sentinel on the event loop. Peons that outlive a service crash are reattached
after the restart by pid (checked against the process start time, so a reused pid is
not mistaken for the peon) and polled until they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overlord.clock import Clock
from overlord.core.task import Location, TaskRecord, task_type_for
from overlord.runner.peon import run_peon
from overlord.runner.slots import Slot, allocate_slots, directory_size
from overlord.runner.toolbox import (
    LOG_FILE,
    REPORT_FILE,
    STATUS_FILE,
    TASK_FILE,
    PeonRuntime,
    read_json,
    write_json_atomic,
)
from overlord.storage.task_logs import TaskLogs

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
# "__main__" first: otherwise every forked peon re-imports the main module (the CLI, ~0.4 s of imports).
PRELOAD = ["__main__", "overlord.cli", "overlord.runner.peon", "overlord.tasks"]


def process_start_marker(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/pid/stat), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished its work
        return None
    return fields[19]


def is_same_process_alive(pid: int, marker: str | None) -> bool:
    current = process_start_marker(pid)
    if current is None:
        if marker is not None or not Path("/proc").is_dir():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return marker is None or current == marker


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        sig = -exitcode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by signal {name} ({sig})"
    return f"exited with code {exitcode}"


@dataclass(frozen=True)
class PeonExit:
    """What the runner learned when a peon ended."""

    task_id: str
    success: bool
    error_msg: str | None
    duration_ms: int


@dataclass
class RunningPeon:
    task_id: str
    slot: Slot
    task_dir: Path
    pid: int
    pid_start: str | None
    started_monotonic: float
    process: Any = None  # multiprocessing.Process when we started it; None when reattached
    kill_handle: asyncio.TimerHandle | None = None
    shutdown_reason: str | None = None


@dataclass
class _PendingPush:
    task_id: str
    task_dir: Path
    attempts: int = 0
    next_try: float = 0.0


@dataclass
class WorkerInfo:
    host: str
    capacity: int
    running: list[str] = field(default_factory=list)
    last_completed_ms: int | None = None


class LocalTaskRunner:
    """Runs tasks in peon processes on local worker slots."""

    def __init__(
        self,
        *,
        capacity: int,
        base_task_dirs: list[Path],
        base_task_dir_size: int | None,
        task_logs: TaskLogs,
        location: Location,
        runtime: PeonRuntime,
        clock: Clock,
        shutdown_grace_ms: int,
        on_exit: Callable[[PeonExit], None],
    ) -> None:
        self.slots = allocate_slots(capacity, base_task_dirs, base_task_dir_size)
        self.task_logs = task_logs
        self.location = location
        self.runtime = runtime
        self.clock = clock
        self.shutdown_grace_s = shutdown_grace_ms / 1000
        self.on_exit = on_exit
        self.running: dict[str, RunningPeon] = {}
        self.last_completed_ms: int | None = None
        self._pending_pushes: dict[str, _PendingPush] = {}
        self._ctx = multiprocessing.get_context("forkserver")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for slot in self.slots:
            slot.base_dir.mkdir(parents=True, exist_ok=True)
        self._ctx.set_forkserver_preload(PRELOAD)
        await self._loop.run_in_executor(None, multiprocessing.forkserver.ensure_running)
        self._monitor = asyncio.create_task(self._monitor_loop(), name="runner-monitor")

    async def stop(self, *, kill_running: bool) -> None:
        """Stop monitoring; optionally end the running peons (else they keep running, detached)."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for peon in list(self.running.values()):
            if peon.process is not None and self._loop is not None:
                self._loop.remove_reader(peon.process.sentinel)
            if kill_running:
                self._signal(peon, signal.SIGTERM)
        if kill_running and self.running:
            deadline = time.monotonic() + self.shutdown_grace_s
            while time.monotonic() < deadline and any(
                is_same_process_alive(p.pid, p.pid_start) for p in self.running.values()
            ):
                await asyncio.sleep(0.05)
            for peon in self.running.values():
                self._signal(peon, signal.SIGKILL)

    # -- slots -------------------------------------------------------------------------------------

    def free_slot_count(self) -> int:
        return len(self.slots) - len(self.running)

    def _free_slot(self) -> Slot | None:
        used = {p.slot.index for p in self.running.values()}
        return next((s for s in self.slots if s.index not in used), None)

    def worker_info(self) -> WorkerInfo:
        return WorkerInfo(
            host=f"{self.location.host}:{self.location.port}",
            capacity=len(self.slots),
            running=sorted(self.running),
            last_completed_ms=self.last_completed_ms,
        )

    # -- running ---------------------------------------------------------------------------------

    def launch(self, rec: TaskRecord) -> RunningPeon:
        """Start a peon for ``rec`` in a free slot (the caller checked there is one)."""
        assert self._loop is not None, "runner not started"
        slot = self._free_slot()
        if slot is None:
            raise RuntimeError("no free worker slot")
        task_dir = slot.base_dir / rec.id
        if task_dir.exists():
            shutil.rmtree(task_dir, ignore_errors=True)
        task_dir.mkdir(parents=True)
        (task_dir / LOG_FILE).touch()  # GET /log answers from the moment the task is RUNNING
        write_json_atomic(
            task_dir / TASK_FILE,
            {
                "id": rec.id,
                "payload": rec.payload,
                "run": task_type_for(rec.type).run,
                "runtime": self.runtime.to_json(),
            },
        )
        process = self._ctx.Process(target=run_peon, args=(str(task_dir),), name=f"peon-{rec.id}")
        process.start()
        assert process.pid is not None
        peon = RunningPeon(
            task_id=rec.id,
            slot=slot,
            task_dir=task_dir,
            pid=process.pid,
            pid_start=process_start_marker(process.pid),
            started_monotonic=self.clock.monotonic(),
            process=process,
        )
        self.running[rec.id] = peon
        self._loop.add_reader(process.sentinel, self._on_sentinel, rec.id)
        log.info(
            "Started peon pid %d for task[%s] in slot %d",
            peon.pid,
            rec.id,
            slot.index,
            extra={"task_id": rec.id},
        )
        return peon

    def reattach(self, rec: TaskRecord) -> bool:
        """Adopt a peon that survived a service restart; False (and an exit reported) if it is gone."""
        task_dir = Path(rec.task_dir) if rec.task_dir else None
        slot = self.slots[rec.slot] if rec.slot is not None and rec.slot < len(self.slots) else self._free_slot()
        alive = rec.pid is not None and is_same_process_alive(rec.pid, rec.pid_start)
        if alive and task_dir is not None and slot is not None and rec.pid is not None:
            self.running[rec.id] = RunningPeon(
                task_id=rec.id,
                slot=slot,
                task_dir=task_dir,
                pid=rec.pid,
                pid_start=rec.pid_start,
                started_monotonic=self.clock.monotonic(),
            )
            log.info("Reattached to peon pid %s of task[%s]", rec.pid, rec.id, extra={"task_id": rec.id})
            return True
        reason = f"Peon process [pid {rec.pid}] of this task died while the Overlord was down"
        self._finish(rec.id, task_dir, None, None, died_reason=reason)
        return False

    def shutdown(self, task_id: str, reason: str) -> bool:
        """SIGTERM the peon's process group, then SIGKILL after the grace period."""
        peon = self.running.get(task_id)
        if peon is None:
            return False
        if peon.shutdown_reason is None:
            peon.shutdown_reason = reason
        self._signal(peon, signal.SIGTERM)
        if peon.kill_handle is None and self._loop is not None:
            peon.kill_handle = self._loop.call_later(self.shutdown_grace_s, self._signal, peon, signal.SIGKILL)
        return True

    def task_dir_of(self, task_id: str) -> Path | None:
        peon = self.running.get(task_id)
        if peon is not None:
            return peon.task_dir
        pending = self._pending_pushes.get(task_id)
        return pending.task_dir if pending is not None else None

    @staticmethod
    def _signal(peon: RunningPeon, sig: signal.Signals) -> None:
        if not is_same_process_alive(peon.pid, peon.pid_start):
            return
        try:
            os.killpg(peon.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(peon.pid, sig)

    # -- exits -----------------------------------------------------------------------------------

    def _on_sentinel(self, task_id: str) -> None:
        peon = self.running.get(task_id)
        if peon is None or peon.process is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(peon.process.sentinel)
        peon.process.join(0)
        exitcode = peon.process.exitcode
        peon.process.close()
        self._finish(task_id, peon.task_dir, peon, exitcode)

    def _finish(
        self,
        task_id: str,
        task_dir: Path | None,
        peon: RunningPeon | None,
        exitcode: int | None,
        died_reason: str | None = None,
    ) -> None:
        if peon is not None:
            self.running.pop(task_id, None)
            if peon.kill_handle is not None:
                peon.kill_handle.cancel()
        duration = int((self.clock.monotonic() - peon.started_monotonic) * 1000) if peon else 0
        status = read_json(task_dir / STATUS_FILE) if task_dir is not None else None
        if peon is not None and peon.shutdown_reason is not None:
            result = PeonExit(task_id, False, peon.shutdown_reason, duration)
        elif status is not None and status.get("status") in ("SUCCESS", "FAILED"):
            success = status["status"] == "SUCCESS"
            result = PeonExit(task_id, success, None if success else status.get("errorMsg"), duration)
        elif died_reason is not None:
            result = PeonExit(task_id, False, died_reason, duration)
        else:
            how = describe_exit(exitcode) if exitcode is not None else "ended (exit code unknown after a restart)"
            pid = peon.pid if peon is not None else "?"
            result = PeonExit(task_id, False, f"Peon process [pid {pid}] {how} without reporting a status", duration)
        self.last_completed_ms = self.clock.now_ms()
        if task_dir is not None:
            self._push_logs(task_id, task_dir)
        log.info(
            "Task[%s] peon ended: %s",
            task_id,
            "SUCCESS" if result.success else result.error_msg,
            extra={"task_id": task_id},
        )
        self.on_exit(result)

    def _push_logs(self, task_id: str, task_dir: Path) -> None:
        log_file = task_dir / LOG_FILE
        if not log_file.exists():
            log_file.touch()
        try:
            self.task_logs.push(task_id, log_file, task_dir / REPORT_FILE)
        except OSError as exc:
            attempts = self._pending_pushes.get(task_id, _PendingPush(task_id, task_dir)).attempts + 1
            delay = min(60.0, 0.5 * 2**attempts)
            log.warning(
                "Pushing logs of task[%s] failed (%s); retrying in %.1fs",
                task_id,
                exc,
                delay,
                extra={"task_id": task_id},
            )
            self._pending_pushes[task_id] = _PendingPush(task_id, task_dir, attempts, self.clock.monotonic() + delay)
            return
        self._pending_pushes.pop(task_id, None)
        shutil.rmtree(task_dir, ignore_errors=True)

    # -- monitoring -------------------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                self.check_once()
            except Exception:  # the monitor must outlive any one bad check
                log.exception("Runner monitor check failed")

    def check_once(self) -> None:
        """Notice reattached peons that ended, enforce disk quotas, retry failed log pushes."""
        for peon in list(self.running.values()):
            if peon.process is None and not is_same_process_alive(peon.pid, peon.pid_start):
                self._finish(peon.task_id, peon.task_dir, peon, None, died_reason=None)
                continue
            quota = peon.slot.quota_bytes
            if quota is not None and peon.shutdown_reason is None:
                used = directory_size(peon.task_dir)
                if used > quota:
                    self.shutdown(
                        peon.task_id,
                        f"Task exceeded its disk quota: used {used} bytes of {quota} allowed in "
                        f"{peon.slot.base_dir} (druid.worker.baseTaskDirSize)",
                    )
        now = self.clock.monotonic()
        for pending in list(self._pending_pushes.values()):
            if pending.next_try <= now:
                self._push_logs(pending.task_id, pending.task_dir)
