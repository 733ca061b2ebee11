"""The peon: one task's run, in a process of its own.

Started by the local runner through a fork server that has already imported the task modules, so
a peon is ready in milliseconds. It waits at its gate until the Overlord has recorded the launch
(and hands it the task's token); it leads its own process group (a shutdown reaches anything it
spawns) and writes everything it prints to its log file. It talks to the Overlord over HTTP only:
task actions, live and completion reports, and its final status; when it ends it pushes its own
log to task-log storage, unless the local runner that launched it does that for it (``logByRunner``).
``status.json`` and ``report.json`` stay in the task directory: the local runner reads the status from
there when the peon exits, so a peon it launched posts its status over HTTP, and pushes its log, only
when that runner's Overlord has gone away meanwhile (its gate pipe closed).

Storage modules (pyarrow) are imported when a task first uses its deep storage or pushes a log, so a
peon forked from the lean fork server (runner/fork_server.py) stays lean.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from overlord.core.protocols import DeepStorage, LoadSpec
from overlord.errors import TaskFailure
from overlord.runner.toolbox import (
    LOG_FILE,
    REPORT_FILE,
    STATUS_FILE,
    TASK_FILE,
    PeonRuntime,
    TaskResult,
    TaskToolbox,
    read_json,
    write_json_atomic,
)

if TYPE_CHECKING:
    from overlord.tasks.action_client import ActionClient

PEON_API = "/druid/indexer/v1/peon"  # peon-only endpoints (token required); see api/peon_reports.py
PID_FILE = "peon.pid"  # "<pid> <start marker>\n<task id>": how the runner finds a peon that belongs to no task
LOG_PUSHED_FILE = ".log-pushed"
STARTED_FILE = ".started"  # written by peons of earlier versions past their gate; now the log file marks that
STATUS_BY_FILE = "statusByFile"  # in task.json: the launching runner reads status.json when the peon exits
LOG_BY_RUNNER = "logByRunner"  # in task.json: the launching runner pushes the log once the peon has exited
LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s - %(message)s"


# signal.signal without its Python wrapper's enum conversions (a peon runs them once, cold: ~20 copied
# pages); it takes a callable or one of the plain ints below, and returns the same kinds
_c_signal: Any = importlib.import_module("_signal")
set_signal: Callable[[int, Any], Any] = _c_signal.signal
SIG_IGN: int = _c_signal.SIG_IGN
SIG_DFL: int = _c_signal.SIG_DFL


class ShutdownRequested(BaseException):
    """The Overlord asked this task to stop (SIGTERM)."""


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    set_signal(signal.SIGTERM, SIG_DFL)  # a second SIGTERM kills outright
    raise ShutdownRequested(f"Task received {signal.Signals(signum).name}")


def _create(path: Path, data: bytes = b"") -> None:
    """Create (or truncate) ``path`` holding ``data``: fewer system calls than ``Path.touch`` (a failing
    utime first) or an atomic replace."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)


_prepared = False  # set in a fork server by prepare_output: the streams and the log handler are there


def prepare_output() -> None:
    """In a fork server: the text streams on descriptors 1 and 2 and the root log handler writing to
    them, made once; a peon forked from it then only points those descriptors at its log file (a peon
    that builds its own pays ~100 copied pages, ~0.5 ms)."""
    global _prepared
    _new_streams()
    _configure_logging()
    _prepared = True


def _new_streams() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _redirect_output(log_path: Path) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if not _prepared:  # a fork server made the streams, and its descriptor 0 reads /dev/null already
        _new_streams()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)


def _configure_logging() -> None:
    if _prepared:
        return
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


def _wait_at_gate(gate: Connection | None) -> dict[str, Any] | None:
    """The release message (the task's token, and its spec from a runner that sends it here rather than
    in task.json) once the launch is recorded; None if the Overlord went away first."""
    if gate is None:
        return {}
    try:
        message = gate.recv()
    except (EOFError, OSError):
        return None
    return message if isinstance(message, dict) else None


class GateCommands(queue.Queue[dict[str, Any]]):
    """``toolbox.commands``: the runner's commands, read off the gate by a thread started when the task
    first looks at them (most never do, and a thread costs a peon ~0.5 ms). The gate's EOF means the
    Overlord that launched this peon went away (``runner_gone``)."""

    def __init__(self, gate: Connection | None) -> None:
        super().__init__()
        self._gate = gate
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None
        self._start_lock = threading.Lock()
        if gate is None:
            self._closed.set()

    def _listen(self) -> None:
        with self._start_lock:
            if self._listener is None and self._gate is not None:
                self._listener = threading.Thread(target=self._read_all, daemon=True, name="commands")
                self._listener.start()

    def _read_all(self) -> None:
        assert self._gate is not None
        while self._take(self._gate.recv):
            pass

    def _take(self, receive: Any) -> bool:
        try:
            message = receive()
        except (EOFError, OSError):
            self._closed.set()
            return False
        if isinstance(message, dict) and isinstance(message.get("command"), dict):
            self.put(message["command"])
        return True

    def get(self, block: bool = True, timeout: float | None = None) -> dict[str, Any]:
        self._listen()
        return super().get(block, timeout)

    def qsize(self) -> int:
        self._listen()
        return super().qsize()

    def empty(self) -> bool:
        self._listen()
        return super().empty()

    def runner_gone(self) -> bool:
        """True once the gate has closed; without the listener, reads what is waiting on it to find out."""
        gate = self._gate
        if self._listener is None and gate is not None and not self._closed.is_set():
            with contextlib.suppress(OSError, EOFError):
                while gate.poll(0) and self._take(gate.recv):
                    pass
        return self._closed.is_set()


class HttpReportSink:
    """Reports go to the Overlord over HTTP; the completion report is also kept locally as a fallback.

    The peon's action client (and httpx with it) is made on first use: a peon of the lean fork server
    that never calls the Overlord (a noop whose runner reads its status file) then never imports httpx,
    whose ~7 MB of heap would make every fork and every peon's exit dearer (~0.3 ms)."""

    def __init__(self, make_client: Callable[[], ActionClient], task_dir: Path) -> None:
        self._make_client = make_client
        self._client: ActionClient | None = None
        self.task_dir = task_dir
        self._warned = False

    @property
    def client(self) -> ActionClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def live(self, report: dict[str, Any]) -> None:
        import httpx

        try:
            r = self.client.http.post(f"{PEON_API}/{self.client.task_id}/liveReports", json=report, timeout=5.0)
            r.raise_for_status()
        except httpx.HTTPError as exc:  # a live report is a courtesy: never fail the task for it
            if not self._warned:
                self._warned = True
                logging.getLogger("overlord.peon").warning("Could not post a live report: %s", exc)

    def final(self, report: dict[str, Any]) -> None:
        import httpx

        write_json_atomic(self.task_dir / REPORT_FILE, report)
        try:
            r = self.client.request("POST", f"{PEON_API}/{self.client.task_id}/reports", json=report)
            r.raise_for_status()
        except (httpx.HTTPError, TaskFailure) as exc:
            logging.getLogger("overlord.peon").warning("Could not post the completion report: %s", exc)


def _write_status(task_dir: Path, status: dict[str, Any]) -> bool:
    """One ``pwrite()`` at the start of the file, padded with spaces to its length: in a recycled task
    directory that overwrites the previous task's status in place (creating or truncating a file costs
    ~0.2-0.5 ms on some disks). The runner reads it once this process has ended and takes only a
    status with this task's id, so a peon killed before the write (an empty file, or the previous
    task's status) is read as no status, as a missing file is."""
    try:
        fd = os.open(task_dir / STATUS_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, orjson.dumps(status).ljust(os.fstat(fd).st_size, b" "), 0)
        finally:
            os.close(fd)
    except OSError as exc:  # a full disk: the status still reaches the Overlord over HTTP
        logging.getLogger("overlord.peon").warning("Could not write the status file: %s", exc)
        return False
    return True


def _post_status(client: ActionClient, status: dict[str, Any]) -> None:
    import httpx

    try:
        client.request("POST", f"{PEON_API}/{client.task_id}/status", json=status).raise_for_status()
    except (httpx.HTTPError, TaskFailure) as exc:
        logging.getLogger("overlord.peon").warning("Could not post the task status: %s", exc)


class LazyDeepStorage:
    """Deep storage opened on first use: most light tasks never touch it, and opening it imports pyarrow."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._storage: DeepStorage | None = None

    def _open(self) -> DeepStorage:
        if self._storage is None:
            from overlord.storage.uris import open_deep_storage

            self._storage = open_deep_storage(self.uri)
        return self._storage

    def write(self, key: str, source: str | BinaryIO) -> LoadSpec:
        return self._open().write(key, source)

    def copy(self, load_spec: LoadSpec, key: str) -> LoadSpec:
        return self._open().copy(load_spec, key)

    def open(self, load_spec: LoadSpec) -> BinaryIO:
        return self._open().open(load_spec)

    def delete(self, load_spec: LoadSpec) -> None:
        self._open().delete(load_spec)

    def delete_prefix(self, key_prefix: str) -> int:
        return self._open().delete_prefix(key_prefix)

    def list(self, key_prefix: str) -> list[LoadSpec]:
        return self._open().list(key_prefix)

    def contains(self, load_spec: LoadSpec) -> bool:
        return self._open().contains(load_spec)


def _push_own_log(task_id: str, task_dir: Path, runtime: PeonRuntime) -> None:
    """Push the log to task-log storage; the local runner retries if this fails."""
    if not runtime.task_logs:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    from overlord.storage.uris import open_task_logs

    try:
        logs = open_task_logs(runtime.task_logs)
        with capped_log(task_dir / LOG_FILE, runtime.log_max_bytes) as source:
            logs.push_log(task_id, source)
        (task_dir / LOG_PUSHED_FILE).touch()
    except OSError as exc:
        logging.getLogger("overlord.peon").warning("Could not push the task log: %s", exc)


def _wait_for_task(gate: Connection) -> dict[str, Any] | None:
    """A spare peon's first message: its task directory, with the release (token and spec) from a local
    runner, which sends both at once once the launch is recorded; None if the runner let it go."""
    try:
        message = gate.recv()
    except (EOFError, OSError, ShutdownRequested):
        return None
    return message if isinstance(message, dict) and message.get("taskDir") else None


def run_peon(task_dir_str: str | None, gate: Connection | None = None) -> None:
    """Entry point of the peon process (a multiprocessing target). Without a task directory it is a
    spare (see runner/spares.py): it waits on its gate for one, and exits if the gate closes first."""
    with contextlib.suppress(OSError):  # already a group leader
        os.setsid()
    set_signal(signal.SIGINT, SIG_IGN)  # Ctrl-C on the service must not kill tasks
    set_signal(signal.SIGTERM, _on_sigterm)
    release: dict[str, Any] | None = None
    if task_dir_str is None:
        first = _wait_for_task(gate) if gate is not None else None
        if first is None:
            return
        task_dir_str = str(first["taskDir"])
        if "token" in first:  # the release came with the directory: the launch is recorded
            release = first
    task_dir = Path(task_dir_str)
    if release is None:
        try:
            release = _wait_at_gate(gate)
        except ShutdownRequested:
            release = None
        if release is None:  # the Overlord did not record the launch: no work done, no log made
            return
    _redirect_output(task_dir / LOG_FILE)  # made past the gate only: it marks the task started
    _configure_logging()
    log = logging.getLogger("overlord.peon")
    started = time.monotonic()
    token = str(release.get("token") or "")
    spec = release.get("spec")
    if not isinstance(spec, dict):
        spec = read_json(task_dir / TASK_FILE) or {}
    task_id = spec.get("id", "?")
    runtime = PeonRuntime.from_json(spec.get("runtime") or {}, task_token=token)

    def make_client() -> ActionClient:
        from overlord.tasks.action_client import ActionClient

        return ActionClient(runtime.overlord_url or "http://127.0.0.1", task_id, token=token,
                            retry_for_s=runtime.action_retry_s, fallback_urls=runtime.overlord_urls)  # fmt: skip

    reports = HttpReportSink(make_client, task_dir)
    commands = GateCommands(gate)
    result: TaskResult
    try:
        toolbox = TaskToolbox(
            task_id=task_id,
            payload=spec["payload"],
            task_dir=task_dir,
            runtime=runtime,
            deep_storage=LazyDeepStorage(runtime.deep_storage),
            reports=reports,
            commands=commands,
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
    status = {"id": task_id, "status": state, "errorMsg": result.error_msg, "duration": duration}
    written = _write_status(task_dir, status)
    set_signal(signal.SIGTERM, SIG_DFL)  # the work is done: a shutdown now just ends the process
    # a runner that reads status.json and pushes the log at the exit needs neither done here, as long
    # as it is there to do it
    runner_there = gate is not None and not commands.runner_gone()
    if not (written and spec.get(STATUS_BY_FILE) and runner_there):
        _post_status(reports.client, status)
    reports.close()
    if not (spec.get(LOG_BY_RUNNER) and runner_there):
        _push_own_log(task_id, task_dir, runtime)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()


class _CappedLog(io.RawIOBase):
    """The head and tail of a log with a marker where the middle was cut (bounded pushes, bounded reads)."""

    def __init__(self, f: BinaryIO, size: int, limit: int) -> None:
        self._f = f
        head = limit // 2
        self._parts: list[tuple[int, int] | bytes] = [
            (0, head),
            f"\n[... log cut here: {size - limit} of {size} bytes left out "
            f"(overlord.indexer.logs.maxBytes = {limit}) ...]\n".encode(),
            (size - (limit - head), limit - head),
        ]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                n = min(len(view), len(part))
                view[:n] = part[:n]
                self._parts[0] = part[n:] if n < len(part) else b""
                if not self._parts[0]:
                    self._parts.pop(0)
                return n
            start, left = part
            if left <= 0:
                self._parts.pop(0)
                continue
            self._f.seek(start)
            n = self._f.readinto(view[: min(len(view), left)])  # type: ignore[attr-defined]
            if not n:
                self._parts.pop(0)
                continue
            self._parts[0] = (start + n, left - n)
            return int(n)
        return 0


@contextlib.contextmanager
def capped_log(path: Path, limit: int | None) -> Iterator[BinaryIO]:
    """The log file to push: whole, or head + marker + tail when it is over ``limit`` bytes."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit is None or size <= limit:
            yield f
        else:
            yield io.BufferedReader(_CappedLog(f, size, limit))  # type: ignore[arg-type]


def _never() -> ActionClient:
    raise AssertionError("the warm-up calls no Overlord")


WARM_UP_CALLS = 16  # over CPython's quickening delay (3.11: a function is specialized at its 8th call)


def _warm_up() -> None:
    """Quicken, at import in the fork server, the code a peon runs once: CPython rewrites a function's
    bytecode in place after a few calls; in a forked peon each such write copies a page (a peon's first
    log record copied ~60 pages more without this). httpx's first-client costs are paid in gc_freeze."""
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    warm_log = logging.Logger("overlord.peon.warm-up")  # not registered with the manager: leaves no trace
    warm_log.addHandler(handler)
    runtime = PeonRuntime(overlord_url="http://127.0.0.1").to_json()
    gate, runner_end = Pipe()
    try:
        for _ in range(WARM_UP_CALLS):
            runner_end.send({"taskDir": "/", "token": "", "spec": {"runtime": runtime}})
            release = _wait_for_task(gate) or {}
            parsed = PeonRuntime.from_json(release["spec"]["runtime"], task_token="")
            reports = HttpReportSink(_never, task_dir=Path("/"))
            commands = GateCommands(gate)
            commands.runner_gone()
            task_dir = Path(str(release["taskDir"]))
            toolbox = TaskToolbox(task_id="warm-up", payload={}, task_dir=task_dir / LOG_FILE, runtime=parsed,
                                  deep_storage=LazyDeepStorage(""), reports=reports,
                                  commands=commands, log=warm_log)  # fmt: skip
            warm_log.info("Running task[%s] of type[%s] in %s", "warm-up", "noop", toolbox.task_dir)
            orjson.dumps({"id": "warm-up", "status": "SUCCESS", "errorMsg": TaskResult.ok().error_msg})
            reports.close()
    finally:
        gate.close()
        runner_end.close()


_warm_up()
