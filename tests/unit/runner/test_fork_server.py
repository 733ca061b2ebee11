"""The fork server's one connection (runner/fork_server.py): requests from several threads, a server that
dies or drops the connection between requests, and a server whose service goes away. Real processes."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection, Pipe
from pathlib import Path

import orjson
import pytest
from tests.conftest import wait_exited

from overlord.runner import fork_server
from overlord.runner.fork_server import LEAN, ForkedPeon, ForkServer
from overlord.runner.toolbox import LOG_FILE, STATUS_FILE

NOOP_RUN = "overlord.tasks.noop:run"


@pytest.fixture
def server() -> Iterator[ForkServer]:
    s = ForkServer(LEAN)
    s.preload = fork_server.preload(LEAN, s3=False)
    try:
        yield s
    finally:
        pid = s.pid
        s.close()
        if pid is not None:
            os.waitpid(pid, 0)  # it exits at the EOF on its connection


def _spare(server: ForkServer) -> ForkedPeon:
    """A spare forked and let go at once (the EOF on its gate ends it): proves the server forks."""
    gate, peon_end = Pipe()
    try:
        peon = server.fork(None, peon_end)
    finally:
        peon_end.close()
        gate.close()
    peon.join(20)
    assert peon.exitcode == 0
    peon.close()
    return peon


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_requests_go_over_one_connection_to_one_server(server: ForkServer) -> None:
    _spare(server)
    pid, sock = server.pid, server._sock
    _spare(server)
    _spare(server)
    assert (server.pid, server._sock) == (pid, sock)


def test_a_server_that_died_between_requests_is_started_again(server: ForkServer) -> None:
    _spare(server)
    old = server.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    while not _zombie(old):  # dead, not reaped: the next request finds it so
        pass
    _spare(server)
    assert server.pid is not None and server.pid != old
    with pytest.raises(ChildProcessError):
        os.waitpid(old, os.WNOHANG)  # the old one was reaped, not left a zombie


def test_a_server_that_dropped_its_connection_is_replaced(server: ForkServer) -> None:
    _spare(server)
    old = server.pid
    assert old is not None and server._sock is not None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()  # as if the server had closed its end while still running
    server._sock.close()
    server._sock = ours
    _spare(server)  # the refused request is sent again to a new server
    assert server.pid not in (None, old)
    wait_exited(old)


def test_concurrent_requests_never_mix_their_messages(server: ForkServer, tmp_path: Path) -> None:
    server.ensure_running()
    peons: list[ForkedPeon] = []
    gates: list[Connection] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def ask(thread: int) -> None:
        try:
            for i in range(5):
                task_dir = tmp_path / f"t{thread}-{i}-{'x' * (thread * 25)}"  # messages of different lengths
                task_dir.mkdir()
                gate, peon_end = Pipe()
                peon = server.fork(str(task_dir), peon_end)
                peon_end.close()
                spec = {"id": task_dir.name, "payload": {"type": "noop", "runTime": 0}, "run": NOOP_RUN,
                        "runtime": {}, "statusByFile": True, "logByRunner": True}  # fmt: skip
                gate.send({"token": "", "spec": spec})
                with lock:
                    peons.append(peon)
                    gates.append(gate)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for peon, gate in zip(peons, gates, strict=True):
        peon.join(20)
        assert peon.exitcode == 0
        peon.close()
        gate.close()
    dirs = sorted(tmp_path.iterdir())
    assert len(dirs) == 40 == len({p.pid for p in peons})
    for task_dir in dirs:  # each peon ran the task it was sent, in the directory it was sent
        status = orjson.loads((task_dir / STATUS_FILE).read_bytes())
        assert (status["id"], status["status"]) == (task_dir.name, "SUCCESS")
        assert f"noop task[{task_dir.name}] log line 1 of 1" in (task_dir / LOG_FILE).read_text()


def test_a_server_exits_when_the_service_closes_the_connection(server: ForkServer) -> None:
    _spare(server)
    pid = server.pid
    assert pid is not None
    server.close()
    os.waitpid(pid, 0)
    assert server.pid is None
    _spare(server)  # and the next request starts another
