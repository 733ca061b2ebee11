"""Entry points of a peon on a Dask worker: forked from the worker's fork server (``forked_main``), or as
``python -m overlord.runner.dask_peon <task dir> <gate fd> <ppid>``.

Kept apart from ``dask_worker`` so that a peon does not import Dask. The peon must not outlive the
worker that started it (a worker killed with -9 leaves no orphan working on a task the Overlord has
already failed): the kernel sends it SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), and a
watcher thread kills its whole process group if the parent changes anyway (another OS, a race).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from overlord.runner.peon import run_peon

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.25


def _kill_own_group() -> None:
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(137)


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:
            _kill_own_group()


def die_with_parent(parent_pid: int) -> None:
    """Arrange to end when ``parent_pid`` (the Dask worker process) ends."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the worker died before the signal was armed
        _kill_own_group()
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def forked_main(task_dir: str, gate: Connection) -> None:
    """Entry point of a peon forked from a Dask worker's fork server (its parent)."""
    die_with_parent(os.getppid())
    run_peon(task_dir, gate)


def main(argv: list[str]) -> None:
    task_dir, gate_fd, parent_pid = argv[1], int(argv[2]), int(argv[3])
    die_with_parent(parent_pid)
    run_peon(task_dir, Connection(gate_fd))


if __name__ == "__main__":
    main(sys.argv)
