"""The worker side of the Dask runner: what runs inside a Dask worker process.

``run_task`` is the Dask task of one launch. It starts the task's peon as a real process (its own
process group, killed by the kernel if the worker dies), holds it at its launch gate until the
Overlord releases it through a ``distributed.Variable`` (the token travels that way, and the
variable is deleted as soon as it is read), then waits for the peon to end while watching a
``distributed.Event`` that asks for a shutdown (SIGTERM, then SIGKILL after the grace period).

State a restarted Overlord needs lives on the scheduler, not in the Overlord's client: the
per-launch state variable (``phase`` = gate, running, gate-expired or done with the peon's
status). It doubles as the run-once marker: Dask may try a task again on another worker when
the first one dies (``allowed-failures`` > 0); a second run finds the marker and refuses to start
anything. The Overlord's other calls (snapshot, log reads, commands, kills of orphans) reach this
process with ``Client.run`` and the registry below.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from distributed import Event, Variable, get_client, get_worker

from overlord import __version__
from overlord.runner import dask_peon
from overlord.runner.peon import LOG_PUSHED_FILE, capped_log
from overlord.runner.toolbox import LOG_FILE, REPORT_FILE, STATUS_FILE, TASK_FILE, read_json, write_json_atomic
from overlord.storage.uris import open_task_logs

GATE_POLL_S = 1.0
STOP_POLL_S = 5.0
LOG_CHUNK = 256 * 1024
PRELOAD = ["overlord.runner.dask_peon", "overlord.runner.peon", "overlord.tasks.builtin"]


def state_name(launch_id: str) -> str:
    return f"overlord-{launch_id}-state"


def gate_name(launch_id: str) -> str:
    return f"overlord-{launch_id}-gate"


def stop_name(launch_id: str) -> str:
    return f"overlord-{launch_id}-stop"


@dataclass
class WorkerPeon:
    task_id: str
    launch_id: str
    task_dir: Path
    process: ForkedPeon
    gate: Connection | None
    phase: str = "gate"


_LOCK = threading.Lock()
_PEONS: dict[str, WorkerPeon] = {}  # launch id -> the peon this worker process runs


def _variable_value(var: Variable) -> Any | None:
    try:
        return var.get(timeout=0)
    except TimeoutError:
        return None


def _signal_group(process: ForkedPeon, sig: signal.Signals) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


def _task_dir(base_dir: str, task_id: str, launch_id: str) -> Path:
    base = Path(base_dir) if base_dir else Path(get_worker().local_directory or tempfile.gettempdir())
    path = base / "overlord-tasks" / f"{task_id}-{launch_id[:12]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class ForkedPeon:
    """A peon forked from this worker's fork server, with the bits of ``subprocess.Popen`` used here."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self._lock = threading.Lock()  # one reader of the exit status at a time (threads wait on it together)
        assert process.pid is not None
        self.pid: int = process.pid

    def poll(self) -> int | None:
        with self._lock:
            return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        if not multiprocessing.connection.wait([self._process.sentinel], timeout):
            raise subprocess.TimeoutExpired(f"peon {self.pid}", timeout or 0)
        with self._lock:
            self._process.join()
            code = self._process.exitcode
        assert code is not None
        return code

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


def _start_peon(task_dir: Path) -> tuple[ForkedPeon, Connection]:
    """Fork the peon from this worker process's fork server, which has the task modules imported (a fresh
    interpreter costs seconds of imports). The fork server dies with the worker and the peon with it."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    gate, peon_end = ctx.Pipe(duplex=True)
    # daemon: a worker that exits cleanly terminates its peons; they start no processes of their own
    process = ctx.Process(target=dask_peon.forked_main, args=(str(task_dir), peon_end), daemon=True,
                          name=f"peon-{task_dir.name}")  # fmt: skip
    me = multiprocessing.current_process()
    daemonic = me._config.get("daemon")  # type: ignore[attr-defined]
    me._config["daemon"] = False  # type: ignore[attr-defined]  # a nanny's worker is daemonic; peons are not its work
    try:
        process.start()
    finally:
        me._config["daemon"] = daemonic  # type: ignore[attr-defined]
        peon_end.close()
    return ForkedPeon(process), gate


def _wait_at_gate(peon: WorkerPeon, launch_id: str, timeout_s: float) -> tuple[str | None, str]:
    """The token once the Overlord released the launch, else None and why (aborted, expired, died)."""
    gate_var = Variable(gate_name(launch_id), client=get_client())
    deadline = time.monotonic() + timeout_s
    while True:
        if peon.process.poll() is not None:
            return None, "died"
        try:
            message = gate_var.get(timeout=GATE_POLL_S)
        except TimeoutError:
            if time.monotonic() > deadline:
                return None, "gate-expired"
            continue
        gate_var.delete()
        if not isinstance(message, dict) or message.get("abort") or not message.get("token"):
            return None, "aborted"
        return str(message["token"]), ""


def _run_until_exit(peon: WorkerPeon, launch_id: str, grace_s: float) -> tuple[int, bool]:
    """Wait for the peon; a set stop event SIGTERMs its group, then SIGKILLs it after ``grace_s``."""
    stop = Event(stop_name(launch_id), client=get_client())
    done = threading.Event()
    stopped = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                if not stop.wait(timeout=STOP_POLL_S) or done.is_set():
                    continue
            except Exception:  # the scheduler is away: keep the peon, try again
                time.sleep(STOP_POLL_S)
                continue
            stopped.set()
            peon.phase = "stopping"
            _signal_group(peon.process, signal.SIGTERM)
            try:
                peon.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(peon.process, signal.SIGKILL)
            return

    watcher = threading.Thread(target=watch, daemon=True, name=f"stop-{peon.task_id}")
    watcher.start()
    code = peon.process.wait()
    done.set()
    if watcher.is_alive():
        with contextlib.suppress(Exception):
            stop.set()  # wakes the watcher at once
        watcher.join(2)
    with contextlib.suppress(Exception):
        stop.clear()
    return code, stopped.is_set()


def push_leftovers(task_id: str, task_dir: Path, task_logs_uri: str, max_bytes: int | None) -> str | None:
    """Push the log and report the peon could not (it crashed, or was killed); the error if pushing failed."""
    if not task_logs_uri:
        return None
    try:
        logs = open_task_logs(task_logs_uri)
        if not (task_dir / LOG_PUSHED_FILE).exists() and (task_dir / LOG_FILE).exists():
            with capped_log(task_dir / LOG_FILE, max_bytes) as source:
                logs.push_log(task_id, source)
        report = task_dir / REPORT_FILE
        if report.exists() and logs.read_report(task_id) is None:
            logs.push_report(task_id, report.read_bytes())
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run_task(task_id: str, launch_id: str, doc: dict[str, Any], base_dir: str, grace_s: float,
             gate_timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """The Dask task of one launch; returns what the Overlord needs to complete the task."""
    worker = get_worker()
    where = {"worker": worker.address, "host": worker.ip}
    state = Variable(state_name(launch_id), client=get_client())
    prior = _variable_value(state)
    if prior is not None:  # Dask is running this launch a second time: never
        return {"phase": "refused", "prior": prior, **where}
    state.set({"phase": "gate", **where})
    task_dir = _task_dir(base_dir, task_id, launch_id)
    write_json_atomic(task_dir / TASK_FILE, doc)
    (task_dir / LOG_FILE).touch()
    process, gate = _start_peon(task_dir)
    peon = WorkerPeon(task_id, launch_id, task_dir, process, gate)
    with _LOCK:
        _PEONS[launch_id] = peon
    try:
        token, why = _wait_at_gate(peon, launch_id, gate_timeout_s)
        if token is None:
            gate.close()  # EOF at the gate: the peon exits without working
            _signal_group(process, signal.SIGKILL)
            process.wait()
            result = {"phase": why, "pid": process.pid, **where}
            if why == "aborted":
                state.delete()
            else:
                state.set(result)
            return result
        gate.send({"token": token})
        peon.phase = "running"
        state.set({"phase": "running", "pid": process.pid, **where})
        code, stopped = _run_until_exit(peon, launch_id, grace_s)
        runtime = doc.get("runtime") or {}
        push_error = push_leftovers(task_id, task_dir, str(runtime.get("taskLogs") or ""), runtime.get("logMaxBytes"))
        result = {
            "phase": "done",
            "pid": process.pid,
            "exitcode": code,
            "stopped": stopped,
            "status": read_json(task_dir / STATUS_FILE),
            "pushError": push_error,
            **where,
        }
        state.set(result)
        return result
    finally:
        with _LOCK:
            _PEONS.pop(launch_id, None)
        gate.close()
        if process.poll() is None:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        shutil.rmtree(task_dir, ignore_errors=True)


# -- called by the Overlord through Client.run ---------------------------------------------------


def probe() -> dict[str, Any]:
    """Proves this worker can run peons: the package imports here (else unpickling this call fails)."""
    return {"overlord": __version__, "python": sys.version.split()[0], "pid": os.getpid()}


def snapshot() -> dict[str, dict[str, Any]]:
    """The peons of this worker process, by launch id."""
    with _LOCK:
        return {
            launch_id: {"taskId": p.task_id, "phase": p.phase, "pid": p.process.pid} for launch_id, p in _PEONS.items()
        }


def read_log_chunk(launch_id: str, offset: int, length: int = LOG_CHUNK) -> tuple[bytes, int] | None:
    """Up to ``length`` bytes of a running peon's log from ``offset`` (negative: from the end); the bytes
    and the absolute offset after them. None when this worker does not run that launch."""
    with _LOCK:
        peon = _PEONS.get(launch_id)
    if peon is None:
        return None
    try:
        with (peon.task_dir / LOG_FILE).open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size + offset) if offset < 0 else min(offset, size)
            f.seek(start)
            data = f.read(length)
    except FileNotFoundError:
        return b"", 0
    return data, start + len(data)


def send_command(launch_id: str, command: dict[str, Any]) -> bool:
    with _LOCK:
        peon = _PEONS.get(launch_id)
    if peon is None or peon.gate is None or peon.phase != "running":
        return False
    try:
        peon.gate.send({"command": command})
    except OSError:
        return False
    return True


def kill_launch(launch_id: str) -> bool:
    """SIGKILL a peon the Overlord does not know (its launch was never recorded)."""
    with _LOCK:
        peon = _PEONS.get(launch_id)
    if peon is None:
        return False
    if peon.gate is not None:
        with contextlib.suppress(OSError):
            peon.gate.close()
    _signal_group(peon.process, signal.SIGKILL)
    return True
