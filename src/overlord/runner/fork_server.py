"""The local runner's two fork servers: peons are forked from one with the task code already imported.

A forked peon pays for its parent's heap: the kernel copies the page tables at the fork and the pages
the peon writes to, and unmaps them all at its exit. The heavy server has every task type imported
(pyarrow, numpy, DuckDB, pydantic: ~100 MB), which costs a peon about twice the CPU of the lean one
(~27 MB), whose task types need none of that (``noop``). Each task type runs in the server that has
its run module (``server_for``); importing pyarrow in a lean peon would cost it ~0.3 s, so a type goes
lean only if its code needs no heavy module (a unit test pins the lean import set).

multiprocessing has one global fork server; these are ForkServer instances of their own, reached
through ``ServedProcess`` (a Process whose Popen connects to the server named on it). The peon's
preparation data leaves out the parent's main module, so no server needs the CLI imported.

Starting is slow (the heavy server imports every task type), so ``overlord start`` starts both before
importing the service and the imports overlap on separate cores; the runner's own start then finds
them running. Starting again is a no-op, so both callers may.
"""

from __future__ import annotations

import io
import os
from multiprocessing import forkserver, popen_forkserver, spawn, util
from multiprocessing.context import ForkServerProcess, reduction, set_spawning_popen  # type: ignore[attr-defined]
from typing import Any

LEAN = "lean"
HEAVY = "heavy"

LEAN_FIRST = ["overlord.runner.lean_imports"]
LEAN_TASK_MODULES = ("overlord.tasks.noop",)  # run modules whose task types fork from the lean server
PEON = ["overlord.runner.peon"]
HEAVY_TASKS = ["overlord.tasks.builtin"]
S3_PRELOAD = ["overlord.storage.s3_warm"]  # boto3 and its endpoint data, for peons on S3 storage
LAST = ["overlord.runner.gc_freeze"]  # after everything else: freezes what was imported


def preload(kind: str, *, s3: bool) -> list[str]:
    """What the ``kind`` fork server imports before forking its first peon."""
    if kind == LEAN:
        return [*LEAN_FIRST, *PEON, *LEAN_TASK_MODULES, *LAST]
    return [*PEON, *HEAVY_TASKS, *(S3_PRELOAD if s3 else []), *LAST]


def server_for(run: str) -> str:
    """The fork server for a task type's run function (``module:function``)."""
    return LEAN if run.partition(":")[0] in LEAN_TASK_MODULES else HEAVY


_SERVERS = {LEAN: forkserver.ForkServer(), HEAVY: forkserver.ForkServer()}


def start(*, s3: bool) -> None:
    """Start both fork servers unless they run already (blocks until spawned, not until they have imported)."""
    for kind, server in _SERVERS.items():
        server.set_forkserver_preload(preload(kind, s3=s3))
        server.ensure_running()


def server_pids() -> dict[str, int | None]:
    """The running servers' pids (tests and benchmarks tell their CPU apart)."""
    return {kind: server._forkserver_pid for kind, server in _SERVERS.items()}  # type: ignore[attr-defined]


class _PeonPopen(popen_forkserver.Popen):
    """popen_forkserver.Popen, connecting to the process's own fork server (CPython 3.11's ``_launch``)."""

    def _launch(self, process_obj: Any) -> None:
        server = _SERVERS[process_obj.fork_server]
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)  # the peon's target needs nothing of the main module
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = server.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)  # the child's sentinel of this parent, as in the standard Popen
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class ServedProcess(ForkServerProcess):
    """A process forked by the fork server named ``fork_server`` (a plain string: the object is pickled)."""

    fork_server: str = HEAVY

    @staticmethod
    def _Popen(process_obj: Any) -> _PeonPopen:
        return _PeonPopen(process_obj)
