"""Task directories of the local runner: a light task's finished directory is recycled for a next launch
(emptied, never shared by two tasks' logs), and what a crash leaves is cleared at the next start. Real
peon processes, forked as the local runner forks them."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from overlord.clock import SYSTEM_CLOCK
from overlord.core.protocols import LaunchSpec, RunnerExit
from overlord.core.task import Location
from overlord.runner.local import LocalTaskRunner
from overlord.runner.toolbox import PeonRuntime
from overlord.storage.task_logs import FsTaskLogs

pytestmark = pytest.mark.anyio
NOOP = "overlord.tasks.noop:run"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _runner(tmp_path: Path, exits: list[RunnerExit]) -> LocalTaskRunner:
    runtime = PeonRuntime(
        overlord_url="http://127.0.0.1:9",  # nothing listens: the peon's status goes by its status file
        deep_storage=f"file://{tmp_path / 'deep'}",
        task_logs=str(tmp_path / "logs"),
        action_retry_s=0.2,
    )
    return LocalTaskRunner(
        capacity=1, base_task_dirs=[tmp_path / "task"], base_task_dir_size=None,
        task_logs=FsTaskLogs.from_uri(tmp_path / "logs"), location=Location("127.0.0.1", 8090), runtime=runtime,
        clock=SYSTEM_CLOCK, shutdown_grace_ms=2000, on_exit=exits.append,
    )  # fmt: skip


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[tuple[LocalTaskRunner, list[RunnerExit]]]:
    exits: list[RunnerExit] = []
    r = _runner(tmp_path, exits)
    await r.start()
    try:
        yield r, exits
    finally:
        await r.stop(kill_running=True)


async def _run(r: LocalTaskRunner, exits: list[RunnerExit], task_id: str, **payload: object) -> RunnerExit:
    spec = {"type": "noop", "id": task_id, "runTime": 0, **payload}
    r.launch(LaunchSpec(task_id, spec, NOOP, token=f"token-of-{task_id}"))
    r.release(task_id)
    async with asyncio.timeout(30):
        while task_id in r.running_ids() or not any(e.task_id == task_id for e in exits):
            await asyncio.sleep(0.01)
    return next(e for e in exits if e.task_id == task_id)


def _log(tmp_path: Path, task_id: str) -> str:
    chunks = FsTaskLogs.from_uri(tmp_path / "logs").read_log(task_id)
    assert chunks is not None, f"no log pushed for {task_id}"
    return b"".join(chunks).decode()


async def test_tasks_in_a_row_each_get_a_log_of_their_own(runner, tmp_path: Path) -> None:
    r, exits = runner
    first = await _run(r, exits, "first", logLines=3)
    second = await _run(r, exits, "second", logLines=1)
    failed = await _run(r, exits, "third", fail="boom")
    assert (first.success, second.success, failed.success, failed.error_msg) == (True, True, False, "boom")
    assert "log line 3 of 3" in _log(tmp_path, "first") and "second" not in _log(tmp_path, "first")
    second_log = _log(tmp_path, "second")
    assert "log line 1 of 1" in second_log and "of 3" not in second_log and "first" not in second_log
    assert "third" in _log(tmp_path, "third") and "second" not in _log(tmp_path, "third")
    left = list((tmp_path / "task").iterdir())
    assert [p.name for p in left if not p.name.startswith(".free-")] == []  # no task's directory remains
    assert len(left) == 1  # the one slot's directory, passed from task to task
    # no log (it marks a task started); the last status, overwritten in place by the next task's
    assert sorted(p.name for p in left[0].iterdir()) == ["peon.pid", "status.json"]
    assert orjson.loads((left[0] / "status.json").read_bytes())["id"] == "third"


async def test_a_restart_clears_recycled_and_set_aside_directories(tmp_path: Path) -> None:
    base = tmp_path / "task"
    free = base / ".free-0123"
    free.mkdir(parents=True)
    (free / "peon.pid").write_text("999999 1\nold-task\n")
    aside = base / ".done-4567"  # a finished task's directory whose clean-up a crash cut short
    aside.mkdir()
    (aside / "peon.pid").write_text("999998 1\nset-aside-task\n          ")  # padded, as written in place
    (aside / "log").write_text("the set-aside task's last words\n")
    r = _runner(tmp_path, [])
    await r.start()
    try:
        assert r.adopt({}) == set()
    finally:
        await r.stop(kill_running=True)
    assert list(base.iterdir()) == []
    assert "last words" in _log(tmp_path, "set-aside-task")  # pushed under the task id its pid file names
    assert FsTaskLogs.from_uri(tmp_path / "logs").read_log("old-task") is None  # a recycled one has no log


async def test_a_peon_killed_before_its_status_is_not_given_the_previous_tasks(runner, tmp_path: Path) -> None:
    """A recycled directory keeps the last task's status.json (overwritten in place by the next peon):
    a peon that dies before writing its own must not be read as having ended that way."""
    r, exits = runner
    assert (await _run(r, exits, "done")).success is True
    r.launch(LaunchSpec("killed", {"type": "noop", "id": "killed", "runTime": 60_000}, NOOP, token="t"))
    peon = r.running["killed"]
    assert orjson.loads((peon.task_dir / "status.json").read_bytes())["id"] == "done"  # the recycled directory
    r.release("killed")
    async with asyncio.timeout(30):
        while not (peon.task_dir / "log").exists():  # past its gate
            await asyncio.sleep(0.01)
    os.kill(peon.pid, signal.SIGKILL)
    async with asyncio.timeout(30):
        while not any(e.task_id == "killed" for e in exits):
            await asyncio.sleep(0.01)
    exit_ = next(e for e in exits if e.task_id == "killed")
    assert exit_.success is None and "without reporting a status" in (exit_.error_msg or ""), exit_


async def test_a_pushed_log_still_says_the_task_started_after_a_crash(tmp_path: Path) -> None:
    """The runner pushes a small log before the completion is committed. Crash in between, with a peon
    that died past its gate without a status: the restart must fail the task (it ran), not launch it
    again, so the push must leave the task directory's log (the started marker) where it is."""
    first = _runner(tmp_path, [])
    await first.start()
    try:
        handle = orjson.loads(
            first.launch(LaunchSpec("ran", {"type": "noop", "id": "ran", "runTime": 60_000}, NOOP, "t"))
        )
        peon = first.running["ran"]
        first.release("ran")
        async with asyncio.timeout(30):
            while not (peon.task_dir / "log").exists():  # past its gate: it works
                await asyncio.sleep(0.01)
        os.kill(peon.pid, signal.SIGKILL)
        first._push_log_file("ran", peon.task_dir / "log")  # what the exit does before the completion commit
    finally:
        first.running.clear()  # "crashed": this runner reports nothing more
        await first.stop(kill_running=True)
    exits: list[RunnerExit] = []
    second = _runner(tmp_path, exits)
    await second.start()
    try:
        assert second.adopt({"ran": orjson.dumps(handle).decode()}) == set()
        async with asyncio.timeout(30):
            while not exits:
                await asyncio.sleep(0.01)
    finally:
        await second.stop(kill_running=True)
    assert exits[0].task_id == "ran" and exits[0].started is True, exits[0]
    assert "died while the Overlord was down" in (exits[0].error_msg or "")
