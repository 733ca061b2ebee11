"""Spare peons (runner/spares.py) and what a local peon sends over HTTP: real processes, forked through the
fork server as the local runner forks them."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import wait_exited

from overlord.clock import SYSTEM_CLOCK
from overlord.core.protocols import LaunchSpec, RunnerExit
from overlord.core.task import Location
from overlord.runner import fork_server
from overlord.runner.fork_server import HEAVY, LEAN
from overlord.runner.local import LocalTaskRunner
from overlord.runner.spares import pool_size
from overlord.runner.toolbox import LOG_FILE, PeonRuntime
from overlord.storage.task_logs import FsTaskLogs

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[tuple[LocalTaskRunner, list[RunnerExit]]]:
    exits: list[RunnerExit] = []
    runtime = PeonRuntime(
        overlord_url="http://127.0.0.1:9",  # nothing listens: any HTTP call the peon makes fails and is logged
        deep_storage=f"file://{tmp_path / 'deep'}",
        task_logs=str(tmp_path / "logs"),
        action_retry_s=0.2,
    )
    r = LocalTaskRunner(
        capacity=1, base_task_dirs=[tmp_path / "task"], base_task_dir_size=None,
        task_logs=FsTaskLogs.from_uri(tmp_path / "logs"), location=Location("127.0.0.1", 8090), runtime=runtime,
        clock=SYSTEM_CLOCK, shutdown_grace_ms=2000, on_exit=exits.append,
    )  # fmt: skip
    await r.start()
    try:
        yield r, exits
    finally:
        await r.stop(kill_running=True)


async def _spares_ready(r: LocalTaskRunner, count: int) -> list[int]:
    async with asyncio.timeout(30):
        while len(r._spares[LEAN].ready) < count:
            await asyncio.sleep(0.01)
    return [s.pid for s in r._spares[LEAN].ready]


async def _exit_of(exits: list[RunnerExit], task_id: str) -> RunnerExit:
    async with asyncio.timeout(30):
        while not any(e.task_id == task_id for e in exits):
            await asyncio.sleep(0.01)
    return next(e for e in exits if e.task_id == task_id)


def test_pool_size_is_two_a_slot_capped() -> None:
    assert [pool_size(c) for c in (1, 2, 4, 100)] == [2, 4, 8, 8]


async def test_a_launch_takes_a_spare_which_serves_that_task_only(runner, tmp_path: Path) -> None:
    r, exits = runner
    spares = await _spares_ready(r, 2)
    r.launch(LaunchSpec("a", {"type": "noop", "id": "a", "runTime": 0}, "overlord.tasks.noop:run", "tok"))
    peon_pid = r.running["a"].pid
    assert peon_pid == spares[0]
    r.release("a")
    assert (await _exit_of(exits, "a")).success is True
    wait_exited(peon_pid)  # one task, then the process is gone
    assert peon_pid not in await _spares_ready(r, 2)  # and a fresh spare took its place


async def test_a_local_peon_reports_its_status_by_file_without_calling_the_overlord(runner, tmp_path: Path) -> None:
    r, exits = runner
    r.launch(LaunchSpec("b", {"type": "noop", "id": "b", "runTime": 0, "fail": "no"}, "overlord.tasks.noop:run", "t"))
    r.release("b")
    exit_ = await _exit_of(exits, "b")
    assert (exit_.success, exit_.error_msg) == (False, "no")
    async with asyncio.timeout(30):
        while (log := r.task_logs.read_log("b")) is None:
            await asyncio.sleep(0.01)
    text = b"".join(log).decode()
    assert "finished with status[FAILED]" in text
    assert "Could not post" not in text and "retry" not in text  # no HTTP call was tried


async def test_a_spare_that_dies_is_replaced_and_stopping_lets_the_spares_go(runner) -> None:
    r, _ = runner
    first = await _spares_ready(r, 2)
    os.kill(first[0], signal.SIGKILL)
    async with asyncio.timeout(30):
        while first[0] in [s.pid for s in r._spares[LEAN].ready] or len(r._spares[LEAN].ready) < 2:
            await asyncio.sleep(0.01)
    left = [s.pid for s in r._spares[LEAN].ready]
    await r.stop(kill_running=False)
    for pid in left:
        wait_exited(pid)  # the EOF on its gate ends each spare


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


async def test_a_light_task_forks_from_the_lean_server_and_others_from_the_heavy_one(runner) -> None:
    r, exits = runner
    r.launch(LaunchSpec("light", {"type": "noop", "id": "light", "runTime": 0}, "overlord.tasks.noop:run", "t"))
    assert _parent_pid(r.running["light"].pid) == fork_server.server(LEAN).pid
    r.release("light")
    assert (await _exit_of(exits, "light")).success is True
    r.launch(LaunchSpec("heavy", {"type": "kill", "id": "heavy"}, "overlord.tasks.kill:run", "t"))
    heavy_pid = r.running["heavy"].pid
    assert _parent_pid(heavy_pid) == fork_server.server(HEAVY).pid != fork_server.server(LEAN).pid
    r.abort("heavy")  # never released: it exits at its gate without running
    wait_exited(heavy_pid)


async def test_a_spare_learns_its_task_directory_with_the_release(runner) -> None:
    """One message to a spare (directory, token, spec) once the launch is recorded; an abort before
    that lets it go (the EOF on its gate) and reports nothing."""
    r, exits = runner
    spares = await _spares_ready(r, 2)
    r.launch(LaunchSpec("held", {"type": "noop", "id": "held", "runTime": 0}, "overlord.tasks.noop:run", "t"))
    peon = r.running["held"]
    assert peon.pid == spares[0] and not peon.dir_sent
    r.abort("held")
    async with asyncio.timeout(30):
        while "held" in r.running:  # its sentinel frees the slot
            await asyncio.sleep(0.005)
    wait_exited(peon.pid)
    r.launch(LaunchSpec("go", {"type": "noop", "id": "go", "runTime": 0}, "overlord.tasks.noop:run", "t"))
    go = r.running["go"]
    assert not go.dir_sent
    r.release("go")
    assert go.dir_sent
    assert (await _exit_of(exits, "go")).success is True
    log = r.task_logs.read_log("go")
    assert log is not None and b"finished with status[SUCCESS]" in b"".join(log)
    assert not any(e.task_id == "held" for e in exits)


async def test_a_light_task_log_is_linked_into_task_log_storage(runner, tmp_path: Path) -> None:
    r, exits = runner
    await _spares_ready(r, 1)
    r.launch(LaunchSpec("mv", {"type": "noop", "id": "mv", "runTime": 300}, "overlord.tasks.noop:run", "t"))
    task_dir = r.running["mv"].task_dir
    r.release("mv")
    async with asyncio.timeout(30):
        while not (task_dir / LOG_FILE).exists():
            await asyncio.sleep(0.005)
    inode = os.stat(task_dir / LOG_FILE).st_ino
    assert (await _exit_of(exits, "mv")).success is True
    assert os.stat(tmp_path / "logs" / "mv.log").st_ino == inode  # the peon's own file, linked in
    log = r.task_logs.read_log("mv")
    assert log is not None and b"noop task[mv] log line 1 of 1" in b"".join(log)
