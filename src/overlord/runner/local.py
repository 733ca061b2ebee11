"""The local task runner: worker slots on this machine, one peon process per running task.

Peons are forked from a fork server that has the task modules imported already (fast start, real
process isolation, real signals). A new peon waits at a gate (a pipe) until the queue has recorded
its launch; if the Overlord dies first, the pipe closes and the peon exits without working, so a
crash never runs a task twice. The same pipe then carries commands to the task. Exits are noticed
at once through the process sentinel. Peons that outlive a service crash are adopted after the
restart by pid (checked against the process start time, so a reused pid is not mistaken for the
peon) and polled until they end; peons and task directories that belong to no task are removed.

Only this module reads a peon's files (its log while it runs, its status file as a fallback when
the peon could not report over HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from overlord import failpoints
from overlord.clock import Clock
from overlord.core.protocols import ExitListener, LaunchSpec, RunnerExit, TaskLogs, WorkerInfo
from overlord.core.task import Location
from overlord.runner import fork_server
from overlord.runner.fork_server import ForkedPeon
from overlord.runner.peon import (
    LOG_BY_RUNNER,
    LOG_PUSHED_FILE,
    PID_FILE,
    STARTED_FILE,
    STATUS_BY_FILE,
    capped_log,
)
from overlord.runner.slots import Slot, allocate_slots, directory_size
from overlord.runner.spares import PeonProcess, SparePool, fork_peon, pool_size, process_start_marker
from overlord.runner.task_dirs import FREE_PREFIX, TaskDirs, is_small_dir, set_aside, write_in_place
from overlord.runner.toolbox import (
    LOG_FILE,
    REPORT_FILE,
    STATUS_FILE,
    TASK_FILE,
    PeonRuntime,
    read_json,
)
from overlord.storage.s3 import SCHEME as S3_SCHEME

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5


# "__main__" first: otherwise every forked peon re-imports the main module (the CLI, ~0.4 s of imports).
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


def read_chunks(path: Path, offset: int, chunk: int = 64 * 1024) -> Iterator[bytes] | None:
    """A running peon's log file from Druid's log ``offset``, in chunks; None if it does not exist."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None

    def chunks() -> Iterator[bytes]:
        with f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size + offset) if offset < 0 else min(offset, size))
            while data := f.read(chunk):
                yield data

    return chunks()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        sig = -exitcode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by signal {name} ({sig})"
    return f"exited with code {exitcode}"


@dataclass
class RunningPeon:
    task_id: str
    slot: Slot
    task_dir: Path
    pid: int
    pid_start: str | None
    started_monotonic: float
    process: ForkedPeon | None = None  # None when adopted
    gate: Connection | None = None  # the launch gate, then the command channel; None when adopted
    token: str | None = None  # handed to the peon at release, then forgotten
    spec: dict[str, Any] | None = None  # the task's spec, handed to the peon with its token
    dir_sent: bool = True  # False for a spare: its task directory goes with the release (one message, one wake-up)
    kill_handle: asyncio.TimerHandle | None = None
    shutdown_reason: str | None = None
    aborted: bool = False

    def handle(self) -> str:
        return orjson.dumps(
            {"slot": self.slot.index, "pid": self.pid, "pidStart": self.pid_start, "taskDir": str(self.task_dir)}
        ).decode()


@dataclass
class _PendingPush:
    task_id: str
    task_dir: Path
    attempts: int = 0
    next_try: float = 0.0


class LocalTaskRunner:
    """Runs tasks in peon processes on local worker slots (the ``local`` runner type)."""

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
        on_exit: ExitListener,
        log_max_bytes: int | None = None,
    ) -> None:
        self.slots = allocate_slots(capacity, base_task_dirs, base_task_dir_size)
        self.task_logs = task_logs
        self.location = location
        self.runtime = runtime
        self.clock = clock
        self.shutdown_grace_s = shutdown_grace_ms / 1000
        self.on_exit = on_exit
        self.log_max_bytes = log_max_bytes
        self.running: dict[str, RunningPeon] = {}
        self.last_completed_ms: int | None = None
        self._pending_pushes: dict[str, _PendingPush] = {}
        self._task_dirs = TaskDirs()  # new, recycled and set-aside task directories
        self._spares = {kind: SparePool(kind, pool_size(capacity)) for kind in (fork_server.LEAN, fork_server.HEAVY)}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for slot in self.slots:
            slot.base_dir.mkdir(parents=True, exist_ok=True)
        s3 = any(str(uri).startswith(S3_SCHEME) for uri in (self.runtime.deep_storage, self.runtime.task_logs))
        await self._loop.run_in_executor(None, functools.partial(fork_server.start, s3=s3))
        for spares in self._spares.values():
            spares.start(self._loop)
        self._monitor = asyncio.create_task(self._monitor_loop(), name="runner-monitor")

    async def stop(self, *, kill_running: bool) -> None:
        """Stop monitoring; optionally end the running peons (else they keep running, detached)."""
        for spares in self._spares.values():
            spares.close()
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

    def capacity(self) -> int:
        return len(self.slots)

    def used_slots(self) -> int:
        return len(self.running)

    def free_slot_count(self) -> int:
        return len(self.slots) - len(self.running)

    def running_ids(self) -> set[str]:
        return set(self.running)

    def _free_slot(self) -> Slot | None:
        used = {p.slot.index for p in self.running.values()}
        return next((s for s in self.slots if s.index not in used), None)

    def health(self) -> str | None:
        return None  # the slots are this machine's own

    def workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                host=f"{self.location.host}:{self.location.port}",
                capacity=len(self.slots),
                running=sorted(self.running),
                last_completed_ms=self.last_completed_ms,
            )
        ]

    # -- launching -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> str:
        """Start a peon for the task in a free slot, held at its gate until ``release``."""
        assert self._loop is not None, "runner not started"
        slot = self._free_slot()
        if slot is None:
            raise RuntimeError("no free worker slot")
        task_dir = self._task_dirs.new(slot.base_dir, spec.task_id)
        server = fork_server.server_for(spec.run)
        started, spare = self._start_peon(task_dir, server)
        peon = RunningPeon(
            task_id=spec.task_id,
            slot=slot,
            task_dir=task_dir,
            pid=started.pid,
            pid_start=started.pid_start,
            started_monotonic=self.clock.monotonic(),
            process=started.process,
            gate=started.gate,
            token=spec.token,
            dir_sent=not spare,
            spec={  # sent with the token at release, not written to a file: fewer file operations a task
                "id": spec.task_id,
                "payload": spec.payload,
                "run": spec.run,
                "runtime": self.runtime.to_json(),
                STATUS_BY_FILE: True,
                LOG_BY_RUNNER: server == fork_server.LEAN,  # a heavy peon has pyarrow: it pushes its own
            },
        )
        write_in_place(task_dir / PID_FILE, f"{peon.pid} {peon.pid_start or ''}\n{spec.task_id}\n".encode())
        self.running[spec.task_id] = peon
        self._loop.add_reader(started.process.sentinel, self._on_sentinel, spec.task_id)
        log.info(
            "Started peon pid %d for task[%s] in slot %d",
            peon.pid,
            spec.task_id,
            slot.index,
            extra={"task_id": spec.task_id},
        )
        return peon.handle()

    def _start_peon(self, task_dir: Path, server: str) -> tuple[PeonProcess, bool]:
        """A live spare of the task type's fork server (True: it learns its task directory at the
        release), else a peon forked for the task directory now (False)."""
        spare = self._spares[server].take()
        if spare is not None:
            return spare, True
        return fork_peon(server, str(task_dir)), False

    def release(self, task_id: str) -> None:
        peon = self.running.get(task_id)
        if peon is None or peon.gate is None:
            return
        release: dict[str, Any] = {"token": peon.token, "spec": peon.spec}
        if not peon.dir_sent:
            release["taskDir"] = str(peon.task_dir)
            peon.dir_sent = True
        with contextlib.suppress(OSError):  # it died meanwhile: its sentinel reports the exit
            peon.gate.send(release)
        peon.token = None
        peon.spec = None

    def abort(self, task_id: str) -> None:
        peon = self.running.get(task_id)
        if peon is None:
            return
        peon.aborted = True
        if peon.gate is not None:
            peon.gate.close()  # EOF at the gate: the peon exits without working
            peon.gate = None
        self._signal(peon, signal.SIGKILL)

    # -- adoption after a restart ----------------------------------------------------------------

    def adopt(self, handles: Mapping[str, str]) -> set[str]:
        """Take back live peons of ``handles``; report the dead ones; kill and clear the rest."""
        adopted: set[str] = set()
        gone: list[tuple[str, Path | None, str]] = []
        for task_id, raw in handles.items():
            task_dir: Path | None = None
            try:
                handle = orjson.loads(raw)
                pid, marker = int(handle["pid"]), handle.get("pidStart")
                task_dir = Path(handle["taskDir"])
                slot_index = handle.get("slot")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                gone.append((task_id, None, f"Task's runner handle could not be read after a restart: {raw!r}"))
                continue
            slot = self.slots[slot_index] if isinstance(slot_index, int) and slot_index < len(self.slots) else None
            if slot is None or any(p.slot.index == slot.index for p in self.running.values()):
                slot = self._free_slot()
            if slot is not None and is_same_process_alive(pid, marker):
                self.running[task_id] = RunningPeon(task_id, slot, task_dir, pid, marker, self.clock.monotonic())
                adopted.add(task_id)
                log.info("Adopted peon pid %s of task[%s]", pid, task_id, extra={"task_id": task_id})
            else:
                gone.append(
                    (task_id, task_dir, f"Peon process [pid {pid}] of this task died while the Overlord was down")
                )
        exits = [(self._exit_of(tid, tdir, None, None, died_reason=why), tid, tdir) for tid, tdir, why in gone]
        owned = {p.task_dir for p in self.running.values()} | {tdir for _, _, tdir in exits if tdir is not None}
        self._remove_orphans(owned)  # after reading the gone peons' status files, sparing their directories
        for exit_, task_id, task_dir in exits:
            if self._loop is not None:
                self._loop.call_soon(self._report_exit, exit_, task_id, task_dir)
            else:
                self._report_exit(exit_, task_id, task_dir)
        return adopted

    def _remove_orphans(self, owned: set[Path]) -> None:
        """Peons and task directories that belong to no task (a launch never recorded, a clean-up cut
        short): the peon is killed, its log kept if it was never pushed, the directory removed."""
        for base in {slot.base_dir for slot in self.slots}:
            if not base.is_dir():
                continue
            for task_dir in base.iterdir():
                if not task_dir.is_dir() or task_dir in owned:
                    continue
                if task_dir.name.startswith(FREE_PREFIX):  # an emptied directory kept for a launch
                    shutil.rmtree(task_dir, ignore_errors=True)
                    continue
                owner = None
                try:
                    first, _, owner = (task_dir / PID_FILE).read_text().partition("\n")
                    pid_text, _, marker = first.partition(" ")
                    pid = int(pid_text)
                except (OSError, ValueError):
                    pid = None
                if pid is not None and is_same_process_alive(pid, marker or None):
                    log.warning("Killing peon pid %d in %s: it belongs to no task", pid, task_dir)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                spec = read_json(task_dir / TASK_FILE)  # an older version's
                task_id = owner.strip() if owner and owner.strip() else task_dir.name
                if isinstance(spec, dict) and spec.get("id"):
                    task_id = str(spec["id"])
                self._push_logs(task_id, task_dir)

    # -- running tasks ---------------------------------------------------------------------------

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

    def command(self, task_id: str, command: dict[str, Any]) -> bool:
        """Send a command over the peon's gate pipe (adopted peons have none: False)."""
        peon = self.running.get(task_id)
        if peon is None or peon.gate is None or peon.token is not None:
            return False
        try:
            peon.gate.send({"command": command})
        except OSError:
            return False
        return True

    def read_log(self, task_id: str, offset: int) -> Iterator[bytes] | None:
        peon = self.running.get(task_id)
        task_dir = peon.task_dir if peon is not None else None
        if task_dir is None and task_id in self._pending_pushes:
            task_dir = self._pending_pushes[task_id].task_dir
        if task_dir is None:
            return None
        chunks = read_chunks(task_dir / LOG_FILE, offset)
        if chunks is None and peon is not None:  # its peon creates it (a file creation is ~0.5 ms off the loop)
            return iter(())
        return chunks

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
        self._finish(peon, exitcode)

    def _finish(self, peon: RunningPeon, exitcode: int | None, died_reason: str | None = None) -> None:
        self.running.pop(peon.task_id, None)
        if peon.kill_handle is not None:
            peon.kill_handle.cancel()
        if peon.gate is not None:
            peon.gate.close()
        self.last_completed_ms = self.clock.now_ms()
        if peon.aborted:  # its launch was never recorded: nothing to report
            shutil.rmtree(peon.task_dir, ignore_errors=True)
            return
        exit_ = self._exit_of(peon.task_id, peon.task_dir, peon, exitcode, died_reason)
        self._report_exit(exit_, peon.task_id, peon.task_dir)

    def _exit_of(
        self,
        task_id: str,
        task_dir: Path | None,
        peon: RunningPeon | None,
        exitcode: int | None,
        died_reason: str | None,
    ) -> RunnerExit:
        duration = int((self.clock.monotonic() - peon.started_monotonic) * 1000) if peon else 0
        status = read_json(task_dir / STATUS_FILE) if task_dir is not None else None
        if peon is not None and peon.shutdown_reason is not None:
            return RunnerExit(task_id, False, peon.shutdown_reason, duration)
        # the id: a recycled directory keeps the previous task's status until the peon overwrites it
        if isinstance(status, dict) and status.get("status") in ("SUCCESS", "FAILED") and status.get("id") == task_id:
            success = status["status"] == "SUCCESS"
            return RunnerExit(task_id, success, None if success else status.get("errorMsg"), duration)
        # a peon from before a restart that never passed its gate (its launch was never released) did no
        # work: it makes its log only past the gate (an earlier version's peon wrote STARTED_FILE there)
        from_before = peon is None or peon.process is None
        started = not (from_before and task_dir is not None and task_dir.is_dir()
                       and not (task_dir / LOG_FILE).exists() and not (task_dir / STARTED_FILE).exists())  # fmt: skip
        if died_reason is not None:
            return RunnerExit(task_id, None, died_reason, duration, started=started)
        how = describe_exit(exitcode) if exitcode is not None else "ended (exit code unknown after a restart)"
        pid = peon.pid if peon is not None else "?"
        why = f"Peon process [pid {pid}] {how} without reporting a status"
        return RunnerExit(task_id, None, why, duration, started=started)

    def _report_exit(self, exit_: RunnerExit, task_id: str, task_dir: Path | None) -> None:
        """Tell the queue first (it commits the completion), then push the log and clean up; a small
        log is pushed before, so a task seen complete has its log in task-log storage (as a peon that
        pushes its own has)."""
        log.info(
            "Task[%s] peon ended: %s",
            task_id,
            "SUCCESS" if exit_.success else exit_.error_msg,
            extra={"task_id": task_id},
        )
        small = task_dir is not None and is_small_dir(task_dir)
        pushed = small and exit_.started and self._push_log_now(task_id, task_dir)  # type: ignore[arg-type]
        try:
            self.on_exit(exit_)
            failpoints.hit(failpoints.COMPLETED_NOT_CLEANED)
        finally:
            relaunched = task_id in self.running  # a launch that never started was launched again, in place
            if task_dir is not None and not relaunched:
                if small and task_id not in self._pending_pushes:
                    self._remove_small(task_id, task_dir, pushed)
                else:
                    self._push_logs(task_id, task_dir)

    def _push_log_now(self, task_id: str, task_dir: Path) -> bool:
        """The log of a small task directory, on the event loop; False if it failed (the clean-up retries)."""
        try:
            if not (task_dir / LOG_PUSHED_FILE).exists():  # a heavy peon pushed its own
                self._push_log_file(task_id, task_dir / LOG_FILE)
        except OSError:
            return False
        return True

    def _push_log_file(self, task_id: str, path: Path) -> None:
        """A finished peon's log to task-log storage: handed over whole when under the cap (a local folder
        links it in; it stays in the task directory, saying the task started, until the directory goes),
        else its head and tail copied."""
        if self.log_max_bytes is None or os.stat(path).st_size <= self.log_max_bytes:
            self.task_logs.push_log(task_id, str(path), finished=True)
            return
        with capped_log(path, self.log_max_bytes) as source:
            self.task_logs.push_log(task_id, source)

    def _remove_small(self, task_id: str, task_dir: Path, pushed: bool) -> None:
        """A small finished directory, inline: its log pushed already (no marker file: a crash before the
        removal only pushes it again, from the orphan clean-up), else pushed now with its report."""
        if pushed and self._task_dirs.recycle(task_dir):
            return
        error = self._push_and_remove(task_id, task_dir, log_pushed=pushed)
        self._after_push(task_id, task_dir if error is None else set_aside(task_dir), error)

    def _push_logs(self, task_id: str, task_dir: Path) -> None:
        """Push what the peon left to us (its log; what a crash or a full disk kept it from pushing) and
        remove its directory: at once when it is small (a light task's few files: a thread hand-off
        would cost the service more than the work), else off the event loop (a task directory can hold
        gigabytes of work files)."""
        loop = self._loop
        running = loop is not None and loop.is_running()
        if not running or (task_id not in self._pending_pushes and is_small_dir(task_dir)):
            error = self._push_and_remove(task_id, task_dir)
            self._after_push(task_id, task_dir if error is None else set_aside(task_dir), error)
            return
        assert loop is not None
        task_dir = set_aside(task_dir)
        previous = self._pending_pushes.get(task_id)
        attempts = previous.attempts if previous is not None else 0
        self._pending_pushes[task_id] = _PendingPush(task_id, task_dir, attempts, next_try=float("inf"))  # under way
        future = loop.run_in_executor(None, self._push_and_remove, task_id, task_dir)
        future.add_done_callback(lambda done: self._after_push(task_id, task_dir, done.result()))

    def _push_and_remove(self, task_id: str, task_dir: Path, *, log_pushed: bool = False) -> OSError | None:
        try:
            if not log_pushed and not (task_dir / LOG_PUSHED_FILE).exists() and (task_dir / LOG_FILE).exists():
                self._push_log_file(task_id, task_dir / LOG_FILE)
                report = task_dir / REPORT_FILE
                if report.exists() and self.task_logs.read_report(task_id) is None:
                    self.task_logs.push_report(task_id, report.read_bytes())
        except OSError as exc:
            return exc
        shutil.rmtree(task_dir, ignore_errors=True)
        return None

    def _after_push(self, task_id: str, task_dir: Path, error: OSError | None) -> None:
        if error is None:
            self._pending_pushes.pop(task_id, None)
            return
        attempts = self._pending_pushes.get(task_id, _PendingPush(task_id, task_dir)).attempts + 1
        delay = min(60.0, 0.5 * 2**attempts)
        log.warning(
            "Pushing logs of task[%s] failed (%s); retrying in %.1fs", task_id, error, delay, extra={"task_id": task_id}
        )
        self._pending_pushes[task_id] = _PendingPush(task_id, task_dir, attempts, self.clock.monotonic() + delay)

    # -- monitoring -------------------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                self.check_once()
            except Exception:  # the monitor must outlive any one bad check
                log.exception("Runner monitor check failed")

    def check_once(self) -> None:
        """Notice adopted peons that ended, enforce disk quotas, retry failed log pushes."""
        for peon in list(self.running.values()):
            if peon.process is None and not is_same_process_alive(peon.pid, peon.pid_start):
                self._finish(peon, None)
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
