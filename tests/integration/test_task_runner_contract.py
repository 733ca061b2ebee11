"""The TaskRunner contract, run on every implementation: the local runner (real peon processes) and the
in-memory twin. A driver per implementation ends a task the way that implementation ends tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from overlord.clock import SYSTEM_CLOCK
from overlord.core.protocols import LaunchSpec, RunnerExit, TaskRunner
from overlord.core.task import Location
from overlord.runner.local import LocalTaskRunner
from overlord.runner.toolbox import PeonRuntime
from overlord.storage.task_logs import FsTaskLogs
from overlord.testing.runner import InMemoryTaskRunner
from tests.dask_cluster import DaskCluster, require_distributed

pytestmark = pytest.mark.anyio
NOOP = "overlord.tasks.noop:run"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Env:
    runner: TaskRunner
    exits: list[RunnerExit] = field(default_factory=list)
    memory: bool = False

    def spec(self, task_id: str, run_time_ms: int = 0, **extra: Any) -> LaunchSpec:
        payload = {"type": "noop", "id": task_id, "runTime": run_time_ms, **extra}
        return LaunchSpec(task_id, payload, NOOP, token=f"token-of-{task_id}")

    def end(self, task_id: str, success: bool = True) -> None:
        """The task finishes its work (a local noop with runTime 0 does so by itself)."""
        if isinstance(self.runner, InMemoryTaskRunner):
            self.runner.finish(task_id, success=success, error=None if success else "boom")

    async def exit_of(self, task_id: str, timeout: float = 30.0) -> RunnerExit:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not any(e.task_id == task_id for e in self.exits):
                    await asyncio.sleep(0.01)
        found = [e for e in self.exits if e.task_id == task_id]
        assert len(found) == 1, f"expected one exit event of {task_id}, got {found}"
        return found[0]

    async def gone(self, task_id: str, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while task_id in self.runner.running_ids():
                await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """One Dask worker with 2 slots: the same capacity as the other runners here."""
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=1, slots=2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _runtime(tmp_path: Path) -> PeonRuntime:
    return PeonRuntime(
        overlord_url="http://127.0.0.1:9",  # nothing listens: the peon falls back on its status file
        deep_storage=f"file://{tmp_path / 'deep'}",
        task_logs=str(tmp_path / "logs"),
        action_retry_s=0.2,
    )


@pytest.fixture(params=["local", "memory", "dask"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    exits: list[RunnerExit] = []
    runner: TaskRunner
    if request.param == "memory":
        runner = InMemoryTaskRunner(2, on_exit=exits.append, end_on_shutdown=True)
    elif request.param == "dask":
        require_distributed()
        from overlord.runner.dask import DaskTaskRunner

        cluster: DaskCluster = request.getfixturevalue("dask_cluster")
        runner = DaskTaskRunner(scheduler=cluster.address, runtime=_runtime(tmp_path), clock=SYSTEM_CLOCK,
                                shutdown_grace_ms=2000, on_exit=exits.append)  # fmt: skip
    else:
        logs = tmp_path / "logs"
        runtime = _runtime(tmp_path)
        runner = LocalTaskRunner(
            capacity=2, base_task_dirs=[tmp_path / "task"], base_task_dir_size=None,
            task_logs=FsTaskLogs.from_uri(logs), location=Location("127.0.0.1", 8090), runtime=runtime,
            clock=SYSTEM_CLOCK, shutdown_grace_ms=2000, on_exit=exits.append,
        )  # fmt: skip
    await runner.start()
    try:
        yield Env(runner, exits, memory=request.param == "memory")
    finally:
        await runner.stop(kill_running=True)


async def test_capacity_slots_and_workers(env: Env) -> None:
    r = env.runner
    assert (r.capacity(), r.used_slots(), r.free_slot_count()) == (2, 0, 2)
    handle = r.launch(env.spec("a", 60_000))
    assert isinstance(handle, str) and handle
    assert (r.used_slots(), r.free_slot_count(), r.running_ids()) == (1, 1, {"a"})
    async with asyncio.timeout(30):  # a cluster runner learns where the task went on its next look
        while [(w.capacity, w.running) for w in r.workers()] != [(2, ["a"])]:
            await asyncio.sleep(0.05)
    r.abort("a")


async def test_a_released_task_runs_and_reports_exactly_one_exit(env: Env) -> None:
    env.runner.launch(env.spec("a"))
    env.runner.release("a")
    env.end("a")
    exit_ = await env.exit_of("a")
    assert exit_.success is True and exit_.error_msg is None
    await env.gone("a")
    assert env.runner.free_slot_count() == 2


async def test_a_failing_task_reports_its_error(env: Env) -> None:
    env.runner.launch(env.spec("f", fail="boom"))
    env.runner.release("f")
    env.end("f", success=False)
    exit_ = await env.exit_of("f")
    assert exit_.success is False and exit_.error_msg == "boom"


async def test_an_aborted_launch_never_runs_and_reports_nothing(env: Env) -> None:
    env.runner.launch(env.spec("x"))
    env.runner.abort("x")
    await env.gone("x")
    env.runner.launch(env.spec("y"))  # a later task's exit proves the runner went on reporting
    env.runner.release("y")
    env.end("y")
    await env.exit_of("y")
    assert [e.task_id for e in env.exits] == ["y"]


async def test_shutdown_ends_a_running_task_with_the_reason(env: Env) -> None:
    env.runner.launch(env.spec("s", 60_000))
    env.runner.release("s")
    assert env.runner.shutdown("s", "Shutdown request from user") is True
    exit_ = await env.exit_of("s")
    assert exit_.success is False and exit_.error_msg == "Shutdown request from user"
    assert env.runner.shutdown("s", "again") is False  # no longer running


async def test_adopt_reports_vanished_peons_and_adopts_nothing_unknown(env: Env) -> None:
    bogus = '{"slot": 0, "pid": 2147483000, "pidStart": "1", "taskDir": "/nonexistent/t"}'
    assert env.runner.adopt({"gone": bogus, "garbled": "not json"}) == set()
    for task_id in ("gone", "garbled"):
        exit_ = await env.exit_of(task_id)
        assert exit_.success is not True and exit_.error_msg
    assert env.runner.running_ids() == set()


async def test_commands_reach_only_running_released_tasks(env: Env) -> None:
    assert env.runner.command("nobody", {"type": "pause"}) is False
    env.runner.launch(env.spec("c", 60_000))
    assert env.runner.command("c", {"type": "pause"}) is False  # still held at its gate
    env.runner.release("c")
    assert env.runner.command("c", {"type": "pause"}) is True
    env.runner.shutdown("c", "done")
    await env.exit_of("c")
    assert env.runner.command("c", {"type": "pause"}) is False


async def test_a_running_tasks_log_is_readable_from_any_offset(env: Env) -> None:
    assert env.runner.read_log("nobody", 0) is None
    env.runner.launch(env.spec("l", 60_000, logLines=3))
    env.runner.release("l")
    if env.memory:
        assert isinstance(env.runner, InMemoryTaskRunner)
        env.runner.running["l"].log.extend(b"noop task[l] log line 3 of 3\n")

    def read(offset: int) -> bytes | None:  # off the event loop, as the API reads it (a cluster runner blocks)
        chunks = env.runner.read_log("l", offset)
        return None if chunks is None else b"".join(chunks)

    async with asyncio.timeout(30):
        while True:
            text = await asyncio.to_thread(read, 0)
            assert text is not None
            if b"log line 3 of 3" in text:
                break
            await asyncio.sleep(0.02)
    tail = await asyncio.to_thread(read, -10)
    assert tail == text[-10:]
    env.runner.shutdown("l", "done")
    await env.exit_of("l")
