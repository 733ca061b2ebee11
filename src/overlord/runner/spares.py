"""Spare peons: processes forked ahead of need, each waiting to be given one task.

Forking a peon from the fork server blocks the launching thread until the fork server has forked
(milliseconds, more on a busy machine). A spare is asked for while nothing waits for it, and its pid
read on the event loop when the fork server sends it (no thread: a hand-off between threads costs the
service more than the request); a launch then only hands it its task directory over its gate pipe.
A spare serves one task and exits with it, so every task still has a process of its own. A spare
whose pipe closes (the runner stopped, the Overlord died) exits without ever having had a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from pathlib import Path

from overlord.runner import fork_server
from overlord.runner.fork_server import ForkedPeon

log = logging.getLogger(__name__)

MAX_SPARES = 8  # enough for a burst of launches; each spare is an idle process


def pool_size(capacity: int) -> int:
    """Two spares a slot (a slot's next task must not wait for a fork still under way), at most MAX_SPARES."""
    return min(2 * capacity, MAX_SPARES)


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


@dataclass
class PeonProcess:
    """A started peon: its process (for the exit sentinel), its gate pipe, pid and start marker."""

    process: ForkedPeon
    gate: Connection
    pid: int
    pid_start: str | None


def fork_peon(server: str, task_dir: str | None) -> PeonProcess:
    """Fork a peon through the fork server ``server``: for ``task_dir``, or a spare (None) that waits for one."""
    gate, peon_end = Pipe(duplex=True)
    try:
        process = fork_server.server(server).fork(task_dir, peon_end)
    except BaseException:
        gate.close()
        raise
    finally:
        peon_end.close()
    return PeonProcess(process, gate, process.pid, process_start_marker(process.pid))


class SparePool:
    """Keeps up to ``size`` spares of the fork server ``server`` ready; forks them on one background thread."""

    def __init__(self, server: str, size: int) -> None:
        self.server = server
        self.size = size
        self.ready: list[PeonProcess] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forking: dict[int, Connection] = {}  # status pipe of a requested fork -> the spare's gate
        self._closed = True
        self._failed = False
        self._refill_due = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False
        self._failed = False
        self.refill()

    def take(self) -> PeonProcess | None:
        """A live spare, or None (then the caller forks one for the task itself)."""
        while self.ready:
            spare = self.ready.pop(0)
            self._unwatch(spare)
            if spare.process.is_alive():
                self._refill_soon()
                return spare
            self.discard(spare)
        self._failed = False  # a launch without a spare: try forking spares again
        self._refill_soon()
        return None

    def _refill_soon(self) -> None:
        """Refill once the launch under way is done: asking the fork server wakes it, and on a busy
        machine the service may then wait for a core before it can release the task it launched."""
        if not self._refill_due and self._loop is not None:
            self._refill_due = True
            self._loop.call_soon(self.refill)

    def refill(self) -> None:
        self._refill_due = False
        if self._closed or self._failed or self._loop is None:
            return
        while len(self.ready) + len(self._forking) < self.size:
            gate, peon_end = Pipe(duplex=True)
            try:
                status = fork_server.server(self.server).request(None, peon_end)
            except OSError as exc:
                gate.close()
                self._fork_failed(exc)
                return
            finally:
                peon_end.close()
            self._forking[status] = gate
            self._loop.add_reader(status, self._forked, status)

    def _fork_failed(self, exc: BaseException) -> None:
        log.warning("Could not fork a spare peon (%s): peons are forked at launch meanwhile", exc)
        self._failed = True

    def _forked(self, status: int) -> None:
        assert self._loop is not None
        self._loop.remove_reader(status)
        gate = self._forking.pop(status)
        try:
            process = fork_server.forked(status)
        except (OSError, EOFError) as exc:
            gate.close()
            self._fork_failed(exc)
            return
        spare = PeonProcess(process, gate, process.pid, process_start_marker(process.pid))
        if self._closed:
            self.discard(spare)
            return
        self.ready.append(spare)
        self._loop.add_reader(spare.process.sentinel, self._died, spare)

    def _died(self, spare: PeonProcess) -> None:
        """A spare ended before it had a task (killed from outside): replace it."""
        if spare in self.ready:
            self.ready.remove(spare)
            self._unwatch(spare)
            self.discard(spare)
            log.warning("Spare peon pid %d ended before it had a task", spare.pid)
            self.refill()

    def _unwatch(self, spare: PeonProcess) -> None:
        if self._loop is not None:
            self._loop.remove_reader(spare.process.sentinel)

    def discard(self, spare: PeonProcess) -> None:
        """Close the spare's gate (EOF: it exits on its own) and reap it once it has ended."""
        spare.gate.close()
        if not self._reap(spare) and self._loop is not None and not self._loop.is_closed():
            self._loop.add_reader(spare.process.sentinel, self._reap, spare)

    def _reap(self, spare: PeonProcess) -> bool:
        with contextlib.suppress(ValueError, OSError):
            spare.process.join(0)
            if spare.process.exitcode is None:
                return False
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(spare.process.sentinel)
            spare.process.close()
        return True

    def close(self) -> None:
        """Let every spare go (each exits at the EOF on its gate); forks under way are let go as they end."""
        self._closed = True
        for status, gate in self._forking.items():  # the spare exits at the EOF on its gate
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(status)
            gate.close()
            os.close(status)
        self._forking.clear()
        for spare in self.ready:
            self._unwatch(spare)
            self.discard(spare)
        self.ready.clear()
