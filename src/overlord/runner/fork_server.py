"""The local runner's two fork servers: peons are forked from one with the task code already imported.

A forked peon pays for its parent's heap: the kernel copies the page tables at the fork, copies each
page the peon writes to (~10 us a page on a virtual machine), and unmaps it all at the exit. The heavy
server has every task type imported (pyarrow, numpy, DuckDB, pydantic: ~90 MB); the lean one (~27 MB)
only the types whose code needs none of that (``noop``), and its peons cost about half the CPU. Each
task type runs in the server that has its run module (``server_for``): importing pyarrow in a lean
peon would cost it ~0.3 s, so a type goes lean only if its run needs no heavy module (a unit test pins
the lean peon's import set).

The servers are our own rather than multiprocessing's: its child goes through the spawn bootstrap
(unpickling a Process, ``prepare()``, finalizers), which writes to ~300 more inherited pages than the
peon itself needs: ~3 ms a task. A request here is one message on a connection kept for the server's
life (a ``SOCK_SEQPACKET`` socket pair made when it is spawned: one ``sendmsg`` a request, where a
connection each cost the service a connect, the server an accept, and both a close) carrying "/" and
the task directory (nothing for a spare) and two descriptors: the peon's end of its gate pipe and the
write end of a status pipe, on which the server writes the peon's pid, then its exit code once it has
reaped it (a negative signal number if a signal ended it, as multiprocessing reports it). The read end
is the peon's sentinel. The socket keeps each message whole, so requests from several threads never
interleave. A server exits when the process that started it has gone (its end of the pair reads EOF);
its peons run on. A server found dead (reaped, or its socket refusing a request) is started again.

``overlord start`` starts both servers before importing the service, so their imports overlap on
separate cores; the runner's own start then finds them running. Starting again is a no-op.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

LEAN = "lean"
HEAVY = "heavy"

LEAN_FIRST = ["overlord.runner.lean_imports"]  # keeps httpx's CLI (click, rich) out of the lean heap
LEAN_TASK_MODULES = ("overlord.tasks.noop",)  # run modules whose task types fork from the lean server
PEON = ["overlord.runner.peon"]
HEAVY_TASKS = ["overlord.tasks.builtin"]
S3_PRELOAD = ["overlord.storage.s3_warm"]  # boto3 and its endpoint data, for peons on S3 storage
LAST = ["overlord.runner.gc_freeze"]  # after everything else: freezes what was imported

_PID = struct.Struct("q")
_MAX_REQUEST = 64 * 1024


def preload(kind: str, *, s3: bool) -> list[str]:
    """What the ``kind`` fork server imports before it serves its first request."""
    if kind == LEAN:
        return [*LEAN_FIRST, *PEON, *LEAN_TASK_MODULES, *LAST]
    return [*PEON, *HEAVY_TASKS, *(S3_PRELOAD if s3 else []), *LAST]


def server_for(run: str) -> str:
    """The fork server for a task type's run function (``module:function``)."""
    return LEAN if run.partition(":")[0] in LEAN_TASK_MODULES else HEAVY


# -- the client side (the service) ----------------------------------------------------------------


class ForkedPeon:
    """A peon a fork server forked: its pid, and its exit code once the server has reaped it.

    ``sentinel`` becomes readable when the peon has ended (or its server died: exit code 255).
    """

    def __init__(self, pid: int, sentinel: int) -> None:
        self.pid = pid
        self.sentinel = sentinel
        self.exitcode: int | None = None

    def join(self, timeout: float | None = None) -> None:
        if self.exitcode is not None or not wait([self.sentinel], timeout):
            return
        try:
            self.exitcode = _read_pid(self.sentinel)
        except (OSError, EOFError):
            self.exitcode = 255

    def is_alive(self) -> bool:
        self.join(0)
        return self.exitcode is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


class ForkServer:
    """One fork server process, started on demand, and the connection to it; thread-safe."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.preload: list[str] = []
        self.pid: int | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        with self._lock:
            self._ensure_running()

    def _ensure_running(self) -> None:
        if self.pid is not None:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if not pid:
                return
            self._forget()
        self._spawn()

    def _forget(self) -> None:
        if self._sock is not None:
            self._sock.close()  # a server still there reads EOF and exits
        self.pid = self._sock = None

    def close(self) -> None:
        """Let the server go: it reads EOF and exits (its peons run on)."""
        with self._lock:
            self._forget()

    def _replace(self) -> None:
        """The server refused a request (it closed its end: it is exiting): end it and start another."""
        pid = self.pid
        self._forget()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)  # its peons lead their own process groups: they run on
                os.waitpid(pid, 0)
        self._spawn()

    def _spawn(self) -> None:
        from multiprocessing import util

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            code = (
                f"import sys; sys.path[:] = {sys.path!r}; from overlord.runner.fork_server import serve; "
                f"serve({theirs.fileno()}, {self.preload!r})"
            )
            args = [sys.executable, *util._args_from_interpreter_flags(), "-c", code]  # type: ignore[attr-defined]
            pid = util.spawnv_passfds(os.fsencode(sys.executable), args, [theirs.fileno()])  # type: ignore[attr-defined]
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid, self._sock = pid, ours

    def fork(self, task_dir: str | None, gate: Connection) -> ForkedPeon:
        """Fork a peon for ``task_dir`` (None: a spare), handing it ``gate``; blocks until it is forked."""
        return forked(self.request(task_dir, gate))

    def request(self, task_dir: str | None, gate: Connection) -> int:
        """Ask for a peon without waiting: returns its status pipe, readable once the pid is there (``forked``)."""
        message = [b"/" + (task_dir or "").encode()]  # never empty: a message carries descriptors with a byte
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                self._ensure_running()
                try:
                    assert self._sock is not None
                    socket.send_fds(self._sock, message, [gate.fileno(), status_w])
                except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError):
                    self._replace()  # once: a server that refuses a fresh connection is a real failure
                    assert self._sock is not None
                    socket.send_fds(self._sock, message, [gate.fileno(), status_w])
            os.close(status_w)
            status_w = -1
            return status_r
        except BaseException:
            os.close(status_r)
            if status_w >= 0:
                os.close(status_w)
            raise


_SERVERS = {LEAN: ForkServer(LEAN), HEAVY: ForkServer(HEAVY)}


@atexit.register
def _close_all() -> None:
    for server in _SERVERS.values():
        server.close()


def start(*, s3: bool) -> None:
    """Start both fork servers unless they run already (blocks until spawned, not until they have imported)."""
    for kind, server in _SERVERS.items():
        server.preload = preload(kind, s3=s3)
        server.ensure_running()


def server(kind: str) -> ForkServer:
    return _SERVERS[kind]


def forked(status_r: int) -> ForkedPeon:
    """The peon a ``request`` asked for (blocks until the fork server has sent its pid); closes
    ``status_r`` if the server failed."""
    try:
        return ForkedPeon(_read_pid(status_r), status_r)
    except BaseException:
        os.close(status_r)
        raise


def _read_pid(fd: int) -> int:
    data = b""
    while len(data) < _PID.size:
        chunk = os.read(fd, _PID.size - len(data))
        if not chunk:
            raise EOFError("the fork server closed the status pipe")
        data += chunk
    return int(_PID.unpack(data)[0])


def _write_signed(fd: int, n: int) -> None:
    with contextlib.suppress(BrokenPipeError):
        os.write(fd, _PID.pack(n))


# -- the server process ---------------------------------------------------------------------------


def serve(conn_fd: int, modules: list[str]) -> None:
    """The fork server's main: import ``modules``, then fork a peon for each request on ``conn_fd`` (a
    ``SOCK_SEQPACKET`` socket) until it reads EOF (the service has gone)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # the peon reports it when its task imports the module
            traceback.print_exc()
    from overlord.runner.peon import SIG_IGN, prepare_output, set_signal

    prepare_output()
    with contextlib.suppress(OSError):
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    handlers: dict[signal.Signals, Any] = {signal.SIGCHLD: lambda *_: None, signal.SIGINT: SIG_IGN}
    old = {sig: set_signal(sig, handler) for sig, handler in handlers.items()}  # SIGINT: Ctrl-C is for the service
    signal.set_wakeup_fd(sig_w)
    status_of: dict[int, int] = {}  # peon pid -> its status pipe
    with socket.socket(fileno=conn_fd) as conn, selectors.DefaultSelector() as selector:
        conn.setblocking(False)
        for fd in (conn, sig_r):
            selector.register(fd, selectors.EVENT_READ)
        own_fds = [sig_r, sig_w, selector.fileno()]
        while True:
            ready = [key.fileobj for key, _ in selector.select()]
            if sig_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(sig_r, 65536)
                _reap(status_of)
            if conn in ready and not _serve_requests(conn, status_of, own_fds, old):
                return  # the service has gone


def _reap(status_of: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = status_of.pop(pid, None)
        if fd is not None:
            _write_signed(fd, os.waitstatus_to_exitcode(status))
            os.close(fd)


def _serve_requests(
    conn: socket.socket, status_of: dict[int, int], own_fds: list[int], handlers: dict[Any, Any]
) -> bool:
    """Fork a peon for each request waiting on ``conn``; False once the service has closed its end."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST, 2)
        except BlockingIOError:
            return True
        except InterruptedError:
            continue
        except OSError:
            return False
        if not message and not fds:
            return False
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        gate_fd, status_w = fds
        pid = os.fork()
        if pid == 0:
            unused = [conn.fileno(), status_w, *own_fds, *status_of.values()]
            _child(message[1:].decode() or None, gate_fd, unused, handlers)
        status_of[pid] = status_w
        _write_signed(status_w, pid)
        os.close(gate_fd)


def _child(task_dir: str | None, gate_fd: int, unused_fds: list[int], handlers: dict[Any, Any]) -> None:
    """The peon: runs its task and exits, never returning to the server's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        from overlord.runner.peon import run_peon, set_signal

        for sig, handler in handlers.items():
            set_signal(sig, handler)
        for fd in unused_fds:
            os.close(fd)

        run_peon(task_dir, Connection(gate_fd))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
