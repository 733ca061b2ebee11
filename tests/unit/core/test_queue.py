"""TaskQueue scheduling with a fake runner and a manual clock: states, priorities, locks, timeouts."""

from __future__ import annotations

import pytest

import overlord.tasks  # noqa: F401  (registers noop)
from overlord.clock import ManualClock
from overlord.core.locks import TaskLockbox
from overlord.core.queue import QueueConfig, TaskQueue
from overlord.core.task import Location, RunnerState, StatusCode
from overlord.errors import Forbidden, QueueFull, StoreUnavailable, TaskNotFound, Unauthenticated
from overlord.storage.metadata import MetadataStore
from overlord.storage.segment_store import SegmentMetadata
from overlord.testing.runner import InMemoryTaskRunner


@pytest.fixture
def env(tmp_path):
    clock = ManualClock()
    store = MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    runner = InMemoryTaskRunner(capacity=1, on_exit=lambda e: queue.on_runner_exit(e))
    lockbox = TaskLockbox(clock)
    queue = TaskQueue(
        store=store,
        runner=runner,
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
    stored = store.get_task(a)
    assert stored.runner_state is RunnerState.RUNNING  # persisted with the runner's handle, before it works
    assert stored.runner_handle and len(stored.token_hash or "") == 64
    assert runner.started == [a]
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
    assert store.get_task(pending).error_msg == "Shutdown request from user"  # Druid's exact text
    queue.shutdown(pending)  # finished: a no-op
    with pytest.raises(TaskNotFound):
        queue.shutdown("nope")


def test_declared_intervals_wait_for_locks_and_time_out(env):
    queue, runner, clock, store = env
    runner.resize(3)
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
    runner.resize(3)
    holder = queue.submit(_index_spec())
    waiter = queue.submit(_index_spec())
    runner.finish(holder)
    assert queue.active[waiter].runner_state is RunnerState.RUNNING


def test_higher_priority_preempts_a_running_lock_holder(env):
    queue, runner, _clock, _store = env
    runner.resize(3)
    low = queue.submit(_index_spec(priority=10))
    high = queue.submit(_index_spec(priority=90))
    assert queue.active[high].runner_state is RunnerState.RUNNING
    queue.on_revoked(low)  # the service delivers revocations on the event loop
    assert high in runner.shutdowns[low] and "revoked" in runner.shutdowns[low]


class FlakyStore:
    """The real store, with writes that fail while ``broken`` is set (a full disk, a lost database)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.broken = False

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def update_task(self, task_id: str, **changes):
        if self.broken:
            raise OSError(28, "No space left on device")
        self.store.update_task(task_id, **changes)

    def insert_task(self, rec):
        if self.broken:
            raise OSError(28, "No space left on device")
        self.store.insert_task(rec)


@pytest.fixture
def flaky_env(tmp_path):
    clock = ManualClock()
    store = FlakyStore(MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}"))
    runner = InMemoryTaskRunner(capacity=2, on_exit=lambda e: queue.on_runner_exit(e))
    queue = TaskQueue(
        store=store,  # type: ignore[arg-type]
        runner=runner,
        config=QueueConfig(max_size=10, force_time_chunk_lock=True, default_context={}, location=Location("h", 1)),
        clock=clock,
        lockbox=TaskLockbox(clock),
        segments=SegmentMetadata(store.store),  # type: ignore[arg-type]
    )
    yield queue, runner, store
    store.store.close()


def test_a_launch_that_cannot_be_recorded_never_runs(flaky_env):
    queue, runner, store = flaky_env
    store.broken = True
    with pytest.raises(StoreUnavailable):
        queue.submit({"type": "noop"})
    store.broken = False
    task = queue.submit({"type": "noop"})
    runner.finish(task)
    queue.submit({"type": "noop", "id": "n1"})
    assert runner.started == [task, "n1"]
    # the RUNNING write fails: the peon is aborted at its gate, the task stays PENDING, nothing ran
    other = queue.prepare({"type": "noop", "id": "n2"}, {})
    store.store.insert_task(other)
    queue.active["n2"] = other.with_(runner_state=RunnerState.PENDING)
    store.broken = True
    queue.schedule()
    assert "n2" in runner.aborted and "n2" not in runner.started
    assert queue.active["n2"].runner_state is RunnerState.PENDING
    store.broken = False
    queue.schedule()
    assert runner.started[-1] == "n2" and store.get_task("n2").runner_state is RunnerState.RUNNING


def test_a_completion_the_store_cannot_take_is_kept_and_retried(flaky_env):
    queue, runner, store = flaky_env
    task = queue.submit({"type": "noop"})
    store.broken = True
    runner.finish(task, success=True)
    assert task in queue.active  # not completed in memory before the store has it
    with pytest.raises(StoreUnavailable, match="cannot be written"):
        queue.submit({"type": "noop"})
    store.broken = False
    queue.flush_unsaved()
    assert task not in queue.active and store.get_task(task).status_code is StatusCode.SUCCESS


def test_restart_adopts_live_peons_and_fails_vanished_ones(flaky_env):
    queue, _runner, store = flaky_env
    alive = queue.submit({"type": "noop"})
    gone = queue.submit({"type": "noop"})
    clock = ManualClock()
    runner2 = InMemoryTaskRunner(capacity=2, on_exit=lambda e: queue2.on_runner_exit(e))
    runner2.survivors = {alive}
    queue2 = TaskQueue(
        store=store.store,
        runner=runner2,
        config=QueueConfig(max_size=10, force_time_chunk_lock=True, default_context={}, location=Location("h", 1)),
        clock=clock,
        lockbox=TaskLockbox(clock),
        segments=SegmentMetadata(store.store),  # type: ignore[arg-type]
    )
    queue2.recover()
    assert runner2.started == []  # nothing launched again
    assert queue2.active[alive].runner_state is RunnerState.RUNNING
    failed = store.get_task(gone)
    assert failed.status_code is StatusCode.FAILED and "died while the Overlord was down" in failed.error_msg


def test_only_the_task_token_authenticates(env):
    queue, runner, _clock, store = env
    task = queue.submit({"type": "noop"})
    token = runner.running[task].spec.token
    with pytest.raises(Unauthenticated):
        queue.authenticate(task, None)
    with pytest.raises(Forbidden):
        queue.authenticate(task, "not-the-token")
    assert queue.authenticate(task, token).id == task
    assert token not in str(store.get_task(task))  # only its hash is stored
    runner.finish(task)
    with pytest.raises(Forbidden):
        queue.authenticate(task, token)  # a finished task acts no more


def test_a_parent_that_ends_shuts_its_sub_tasks_down(env):
    queue, runner, _clock, _store = env
    runner.resize(3)
    parent = queue.submit({"type": "noop", "id": "parent"})
    child = queue.prepare({"type": "noop", "id": "child"}, {})
    child = child.with_(payload={**(child.payload or {}), "supervisorTaskId": parent})
    queue.store.insert_task(child)
    queue.active["child"] = child
    queue.schedule()
    runner.finish(parent, success=False, error="boom")
    assert "parent task[parent] ended" in runner.shutdowns["child"]


def test_one_tasks_bad_leftovers_fail_that_task_and_the_start_up_goes_on(flaky_env, monkeypatch):
    queue, _runner, store = flaky_env
    bad = queue.submit({"type": "noop", "id": "bad"})
    good = queue.submit({"type": "noop", "id": "good"})
    clock = ManualClock()
    lockbox = TaskLockbox(clock)
    real_add = lockbox.add_task

    def add_task(task_id, *args, **kwargs):
        if task_id == "bad":
            raise ValueError("corrupt context")
        return real_add(task_id, *args, **kwargs)

    monkeypatch.setattr(lockbox, "add_task", add_task)
    runner2 = InMemoryTaskRunner(capacity=2, on_exit=lambda e: queue2.on_runner_exit(e))
    runner2.survivors = {good}
    queue2 = TaskQueue(
        store=store.store,
        runner=runner2,
        config=QueueConfig(max_size=10, force_time_chunk_lock=True, default_context={}, location=Location("h", 1)),
        clock=clock,
        lockbox=lockbox,
        segments=SegmentMetadata(store.store),  # type: ignore[arg-type]
    )
    queue2.recover()
    failed = store.get_task(bad)
    assert failed.status_code is StatusCode.FAILED and "could not be recovered" in failed.error_msg
    assert queue2.active[good].runner_state is RunnerState.RUNNING
