"""TaskQueue scheduling with a fake runner and a manual clock: states, priorities, locks, timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import overlord.tasks  # noqa: F401  (registers noop)
from overlord.clock import ManualClock
from overlord.core.locks import TaskLockbox
from overlord.core.queue import QueueConfig, TaskQueue
from overlord.core.task import Location, RunnerState, StatusCode, TaskRecord
from overlord.errors import QueueFull, TaskNotFound
from overlord.runner.local import PeonExit
from overlord.runner.slots import Slot
from overlord.storage.metadata import MetadataStore
from overlord.storage.segment_store import SegmentMetadata


@dataclass
class _Peon:
    slot: Slot
    pid: int
    pid_start: str
    task_dir: Path


class FakeRunner:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.running: dict[str, _Peon] = {}
        self.started: list[str] = []
        self.shutdowns: dict[str, str] = {}
        self.on_exit = lambda _e: None

    def free_slot_count(self) -> int:
        return self.capacity - len(self.running)

    def launch(self, rec: TaskRecord) -> _Peon:
        used = {p.slot.index for p in self.running.values()}
        slot = next(i for i in range(self.capacity) if i not in used)
        peon = _Peon(Slot(slot, Path("/tmp"), None), 1000 + len(self.started), "1", Path(f"/tmp/{rec.id}"))
        self.running[rec.id] = peon
        self.started.append(rec.id)
        return peon

    def reattach(self, rec: TaskRecord) -> bool:
        return False

    def shutdown(self, task_id: str, reason: str) -> bool:
        self.shutdowns[task_id] = reason
        return True

    def finish(self, task_id: str, success: bool = True, error: str | None = None) -> None:
        self.running.pop(task_id)
        self.on_exit(PeonExit(task_id, success, error, 5))


@pytest.fixture
def env(tmp_path):
    clock = ManualClock()
    store = MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    runner = FakeRunner(capacity=1)
    lockbox = TaskLockbox(clock)
    queue = TaskQueue(
        store=store,
        runner=runner,  # type: ignore[arg-type]
        config=QueueConfig(max_size=3, force_time_chunk_lock=True, default_context={"x": 1}, location=Location("h", 1)),
        clock=clock,
        lockbox=lockbox,
        segments=SegmentMetadata(store),
    )
    yield queue, runner, clock, store
    store.close()


def _index_spec(priority: int | None = None, timeout: int | None = None) -> dict:
    ctx = {k: v for k, v in (("priority", priority), ("taskLockTimeout", timeout)) if v is not None}
    return {
        "type": "kill",
        "dataSource": "wiki",
        "interval": "2024-01-01/2024-01-02",
        "context": ctx,
    }


def test_lifecycle_waiting_pending_running_complete(env):
    queue, runner, _clock, store = env
    a = queue.submit({"type": "noop"})
    b = queue.submit({"type": "noop"})
    assert queue.active[a].runner_state is RunnerState.RUNNING
    assert queue.active[b].runner_state is RunnerState.PENDING  # one slot
    assert store.get_task(a).runner_state is RunnerState.RUNNING  # persisted with its pid
    assert store.get_task(a).pid == 1000
    runner.finish(a)
    assert store.get_task(a).status_code is StatusCode.SUCCESS and a not in queue.active
    assert queue.active[b].runner_state is RunnerState.RUNNING
    runner.finish(b, success=False, error="boom")
    done = store.get_task(b)
    assert done.status_code is StatusCode.FAILED and done.error_msg == "boom" and done.duration == 5


def test_pending_tasks_start_by_priority_then_age(env):
    queue, runner, _clock, _store = env
    first = queue.submit({"type": "noop"})
    low = queue.submit({"type": "noop", "context": {"priority": 1}})
    high = queue.submit({"type": "noop", "context": {"priority": 9}})
    runner.finish(first)
    assert runner.started == [first, high]
    runner.finish(high)
    assert runner.started == [first, high, low]


def test_queue_full_and_defaults(env):
    queue, _runner, _clock, store = env
    ids = [queue.submit({"type": "noop"}) for _ in range(3)]
    with pytest.raises(QueueFull):
        queue.submit({"type": "noop"})
    payload = store.get_task(ids[0], with_payload=True).payload
    assert payload["context"] == {"x": 1, "forceTimeChunkLock": True, "useLineageBasedSegmentAllocation": True}


def test_shutdown_waiting_and_unknown(env):
    queue, _runner, _clock, store = env
    queue.submit({"type": "noop"})
    pending = queue.submit({"type": "noop"})
    queue.shutdown(pending)
    assert store.get_task(pending).status_code is StatusCode.FAILED
    assert "shut down" in store.get_task(pending).error_msg
    queue.shutdown(pending)  # finished: a no-op
    with pytest.raises(TaskNotFound):
        queue.shutdown("nope")


def test_declared_intervals_wait_for_locks_and_time_out(env):
    queue, runner, clock, store = env
    runner.capacity = 3
    holder = queue.submit(_index_spec())
    assert queue.active[holder].runner_state is RunnerState.RUNNING
    waiter = queue.submit(_index_spec(timeout=1000))
    assert queue.active[waiter].runner_state is RunnerState.WAITING  # same interval, same priority
    clock.advance(0.5)
    queue.schedule()
    assert queue.active[waiter].runner_state is RunnerState.WAITING
    clock.advance(0.6)
    queue.schedule()
    failed = store.get_task(waiter)
    assert failed.status_code is StatusCode.FAILED and "taskLockTimeout[1000]" in failed.error_msg


def test_waiting_task_runs_when_lock_is_released(env):
    queue, runner, _clock, _store = env
    runner.capacity = 3
    holder = queue.submit(_index_spec())
    waiter = queue.submit(_index_spec())
    runner.finish(holder)
    assert queue.active[waiter].runner_state is RunnerState.RUNNING


def test_higher_priority_preempts_a_running_lock_holder(env):
    queue, runner, _clock, _store = env
    runner.capacity = 3
    low = queue.submit(_index_spec(priority=10))
    high = queue.submit(_index_spec(priority=90))
    assert queue.active[high].runner_state is RunnerState.RUNNING
    queue.on_revoked(low)  # the service delivers revocations on the event loop
    assert high in runner.shutdowns[low] and "revoked" in runner.shutdowns[low]
