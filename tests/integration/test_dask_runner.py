"""The Dask runner's own promises beyond the TaskRunner contract, on a real scheduler and worker:
no second run of a launch, adoption after a restart (running, finished meanwhile, never released,
belonging to no task) and an unreachable scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord.clock import SYSTEM_CLOCK
from overlord.core.protocols import LaunchSpec, RunnerExit
from overlord.runner.toolbox import PeonRuntime
from tests.conftest import free_port
from tests.dask_cluster import DaskCluster, require_distributed, running_cluster

pytestmark = pytest.mark.anyio
NOOP = "overlord.tasks.noop:run"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with running_cluster(tmp_path_factory.mktemp("dask"), workers=1) as c:
        yield c


class Runners:
    """Makes runners ("Overlords") on one cluster; each keeps its own exit events."""

    def __init__(self, address: str, tmp_path: Path) -> None:
        self.address = address
        self.tmp_path = tmp_path
        self.started: list[Any] = []

    async def make(self, address: str | None = None) -> tuple[Any, list[RunnerExit]]:
        from overlord.runner.dask import DaskTaskRunner

        exits: list[RunnerExit] = []
        runtime = PeonRuntime(overlord_url="http://127.0.0.1:9", task_logs=str(self.tmp_path / "logs"),
                              deep_storage=f"file://{self.tmp_path / 'deep'}", action_retry_s=0.2)  # fmt: skip
        runner = DaskTaskRunner(scheduler=address or self.address, runtime=runtime, clock=SYSTEM_CLOCK,
                                shutdown_grace_ms=2000, on_exit=exits.append)  # fmt: skip
        await runner.start()
        self.started.append(runner)
        return runner, exits


@pytest.fixture
async def runners(cluster: DaskCluster, tmp_path: Path) -> AsyncIterator[Runners]:
    made = Runners(cluster.address, tmp_path)
    yield made
    for runner in made.started:
        await runner.stop(kill_running=True)


def spec(task_id: str, run_time_ms: int) -> LaunchSpec:
    return LaunchSpec(task_id, {"type": "noop", "id": task_id, "runTime": run_time_ms}, NOOP, f"token-{task_id}")


async def until(predicate: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def exit_of(exits: list[RunnerExit], task_id: str, timeout: float = 30.0) -> RunnerExit:
    await until(lambda: any(e.task_id == task_id for e in exits), timeout)
    [found] = [e for e in exits if e.task_id == task_id]
    return found


async def test_a_second_run_of_a_launch_refuses_to_start(runners: Runners) -> None:
    from distributed import Client, Variable

    from overlord.runner import dask_worker

    async with Client(runners.address, asynchronous=True, set_as_default=False) as client:
        await Variable(dask_worker.state_name("L1"), client=client).set({"phase": "running", "worker": "tcp://gone:1"})
        doc = {"id": "t1", "payload": {"type": "noop"}, "run": NOOP, "runtime": {}}
        future = client.submit(dask_worker.run_task, "t1", "L1", doc, "", 1.0, 5.0, resources={"slots": 1}, pure=False)
        result = await future
        assert result["phase"] == "refused" and result["prior"]["worker"] == "tcp://gone:1"
        assert await client.run(dask_worker.snapshot) != {}  # answered; nothing started:
        assert all(not peons for peons in (await client.run(dask_worker.snapshot)).values())
        Variable(dask_worker.state_name("L1"), client=client).delete()


async def test_adopt_after_a_restart_keeps_running_peons_and_sorts_out_the_rest(runners: Runners) -> None:
    first, _ = await runners.make()
    handles = {
        "running": first.launch(spec("running", 60_000)),
        "finishes": first.launch(spec("finishes", 1500)),
    }
    first.release("running")
    first.release("finishes")
    await until(lambda: sum(len(w.running) for w in first.workers()) == 2 and first.free_slot_count() == 0)
    await asyncio.sleep(1)  # the releases reached the scheduler
    await first.stop(kill_running=False)  # the Overlord goes away; its peons do not
    runners.started.remove(first)
    await asyncio.sleep(3)  # "finishes" ends while nobody watches

    second, exits = await runners.make()
    assert second.adopt(handles) == {"running", "finishes"}
    done = await exit_of(exits, "finishes")
    assert done.success is True
    await until(lambda: [w.running for w in second.workers()] == [["running"]])
    assert second.shutdown("running", "Shutdown request from user")
    stopped = await exit_of(exits, "running")
    assert (stopped.success, stopped.error_msg) == (False, "Shutdown request from user")


async def test_a_launch_recorded_but_never_released_is_relaunched_after_a_restart(runners: Runners) -> None:
    first, _ = await runners.make()
    handle = first.launch(spec("held", 0))  # recorded, then the Overlord died before releasing it
    await until(lambda: any(w.running == ["held"] for w in first.workers()))
    await first.stop(kill_running=False)
    runners.started.remove(first)
    second, exits = await runners.make()
    assert second.adopt({"held": handle}) == {"held"}
    exit_ = await exit_of(exits, "held")
    assert exit_.started is False and exit_.success is None  # did no work: the queue launches it again
    await until(lambda: second.free_slot_count() == 2)


async def test_orphan_peons_are_killed_after_a_restart(runners: Runners) -> None:
    from overlord.runner import dask_worker

    first, _ = await runners.make()
    first.launch(spec("orphan", 60_000))
    await until(lambda: any(w.running == ["orphan"] for w in first.workers()))
    await first.stop(kill_running=False)
    runners.started.remove(first)
    second, exits = await runners.make()
    assert second.adopt({}) == set()

    async def peons() -> list[str]:
        answers = await second.client.run(dask_worker.snapshot)
        return [p["taskId"] for by_launch in answers.values() for p in by_launch.values()]

    async with asyncio.timeout(30):
        while "orphan" in await peons():
            await asyncio.sleep(0.1)
    assert exits == []


async def test_an_unreachable_scheduler_means_no_capacity_and_a_reason(runners: Runners) -> None:
    runner, _ = await runners.make(f"tcp://127.0.0.1:{free_port()}")
    assert runner.capacity() == 0 and runner.free_slot_count() == 0 and runner.workers() == []
    reason = runner.health()
    assert reason is not None and "127.0.0.1" in reason
    with pytest.raises(RuntimeError, match="Not connected"):
        runner.launch(spec("nowhere", 0))
    assert runner.running_ids() == set()


async def test_a_launch_waiting_for_workers_that_left_goes_to_a_new_one(tmp_path: Path) -> None:
    require_distributed()
    cluster = DaskCluster(tmp_path / "dask", workers=1, slots=1, threads=1)
    await asyncio.to_thread(cluster.start)
    made = Runners(cluster.address, tmp_path)
    try:
        runner, exits = await made.make()
        [old] = [w.host for w in runner.workers()]
        for task_id, run_time in (("busy", 60_000), ("waits", 0)):
            runner.launch(spec(task_id, run_time))
            runner.release(task_id)
        await until(lambda: [w.running for w in runner.workers()] == [["busy"]])
        await asyncio.to_thread(cluster.kill_worker, 0)
        failed = await exit_of(exits, "busy")
        assert failed.success is None and old in (failed.error_msg or "")
        await asyncio.to_thread(cluster.start_worker)
        done = await exit_of(exits, "waits", timeout=60)
        assert done.success is True, done
    finally:
        for runner in made.started:
            await runner.stop(kill_running=True)
        await asyncio.to_thread(cluster.stop)
