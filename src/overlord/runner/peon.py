"""The peon: one task's run, in a process of its own.

Started by the local runner through a fork server that has already imported the task
modules, so a peon is ready in milliseconds instead of paying Python's start-up. The
peon leads its own process group (so a shutdown reaches anything it spawns), writes
everything it prints to the task's log file and leaves ``status.json`` when it ends;
the Overlord treats an exit without that file as a crash.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

from overlord.runner.toolbox import (
    LOG_FILE,
    STATUS_FILE,
    TASK_FILE,
    FileReportSink,
    PeonRuntime,
    TaskResult,
    TaskToolbox,
    read_json,
    write_json_atomic,
)
from overlord.storage.deep_storage import FsDeepStorage

LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s - %(message)s"


class ShutdownRequested(BaseException):
    """The Overlord asked this task to stop (SIGTERM)."""


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills outright
    raise ShutdownRequested(f"Task received {signal.Signals(signum).name}")


def _redirect_output(log_path: Path) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _configure_logging() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def resolve_run_function(path: str):  # type: ignore[no-untyped-def]
    module_name, _, func_name = path.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


JOURNAL_ENV = "OVERLORD_PEON_JOURNAL"


def _journal(task_id: str) -> None:
    """Append ``<task id> <pid>`` to $OVERLORD_PEON_JOURNAL when a task starts its work.

    An operator's audit trail, and how the crash-loop benchmark proves that no task ever ran twice.
    """
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{task_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def run_peon(task_dir_str: str) -> None:
    """Entry point of the peon process (a multiprocessing target)."""
    task_dir = Path(task_dir_str)
    with contextlib.suppress(OSError):  # already a group leader
        os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the service must not kill tasks
    signal.signal(signal.SIGTERM, _on_sigterm)
    _redirect_output(task_dir / LOG_FILE)
    _configure_logging()
    started = time.monotonic()
    spec = read_json(task_dir / TASK_FILE) or {}
    task_id = spec.get("id", "?")
    log = logging.getLogger("overlord.peon")
    result: TaskResult
    try:
        runtime = PeonRuntime.from_json(spec.get("runtime") or {}, task_token=spec.get("token", ""))
        toolbox = TaskToolbox(
            task_id=task_id,
            payload=spec["payload"],
            task_dir=task_dir,
            runtime=runtime,
            deep_storage=FsDeepStorage.from_uri(runtime.deep_storage),
            reports=FileReportSink(task_dir),
            log=logging.getLogger(f"overlord.task.{spec['payload'].get('type', 'unknown')}"),
        )
        log.info("Running task[%s] of type[%s] in %s", task_id, spec["payload"].get("type"), task_dir)
        run = resolve_run_function(spec["run"])
        _journal(task_id)
        result = run(toolbox) or TaskResult.ok()
    except ShutdownRequested as exc:
        log.warning("Task[%s] shutting down: %s", task_id, exc)
        result = TaskResult.failure(f"Task was shut down: {exc}")
    except Exception as exc:
        log.error("Task[%s] failed:\n%s", task_id, traceback.format_exc())
        result = TaskResult.failure(str(exc) or type(exc).__name__)
    duration = int((time.monotonic() - started) * 1000)
    state = "SUCCESS" if result.success else "FAILED"
    log.info("Task[%s] finished with status[%s] in %d ms", task_id, state, duration)
    write_json_atomic(
        task_dir / STATUS_FILE,
        {"id": task_id, "status": state, "errorMsg": result.error_msg, "duration": duration},
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
