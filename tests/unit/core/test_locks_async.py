"""TaskLockbox.acquire_async: the sync ``acquire``'s rules and messages, waiting on a future, not a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from overlord.clock import ManualClock
from overlord.core.lockpolicy import TaskLock
from overlord.core.locks import TaskLockbox
from overlord.errors import LockError
from overlord.isotime import Interval

H = 3_600_000
DS = "wiki"
DAY = Interval(0, 24 * H)
T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on a fresh loop whose default executor has one thread (a waiter must not need it)."""

    async def wrapped() -> T:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        return await asyncio.wait_for(main(), 10)

    return asyncio.run(wrapped())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def box(clock: ManualClock) -> TaskLockbox:
    return TaskLockbox(clock, poll_interval_s=5.0)


def add(box: TaskLockbox, tid: str, priority: int, **kw: object) -> None:
    box.add_task(tid, tid, "index", priority, DS, **kw)  # type: ignore[arg-type]


async def until_waiting(box: TaskLockbox, *task_ids: str) -> None:
    """Let the loop run until every task waits in the lockbox (each waits within a few loop turns)."""
    for _ in range(1000):
        if set(task_ids) <= set(box.waiting_tasks()):
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{task_ids} not waiting: {box.waiting_tasks()}")


async def start_waiters(box: TaskLockbox, task_ids: list[str]) -> dict[str, asyncio.Task[TaskLock]]:
    """One ``acquire_async`` of DAY per task, each waiting before the next one asks (arrival order)."""
    waiters: dict[str, asyncio.Task[TaskLock]] = {}
    for tid in task_ids:
        waiters[tid] = asyncio.create_task(box.acquire_async(tid, DAY))
        await until_waiting(box, tid)
    return waiters


async def next_winner(box: TaskLockbox, waiters: dict[str, asyncio.Task[TaskLock]]) -> str:
    """The one waiter that got the lock; the others still wait (the lock is held, they cannot win)."""
    pending = [t for t in waiters.values() if not t.done()]
    done, _ = await asyncio.wait(pending, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1, done
    winner = next(tid for tid, t in waiters.items() if t in done)
    lock = waiters[winner].result()
    assert lock.interval == DAY and not lock.revoked
    assert [tid for tid in waiters if box.find_locks(tid)] == [winner]
    assert set(box.waiting_tasks()) == {tid for tid, t in waiters.items() if not t.done()}
    return winner


def test_releases_wake_waiters_by_priority_then_arrival(box: TaskLockbox) -> None:
    add(box, "holder", 100)
    priorities = {"a": 50, "b": 75, "c": 50, "d": 75}
    for tid, prio in priorities.items():
        add(box, tid, prio)
    assert box.try_acquire("holder", DAY).ok

    async def main() -> list[str]:
        waiters = await start_waiters(box, list(priorities))
        order = []
        box.remove_task("holder")
        for _ in priorities:
            winner = await next_winner(box, waiters)
            order.append(winner)
            box.release(winner, DAY)
        return order

    assert run(main) == ["b", "d", "a", "c"]
    assert box.waiting_tasks() == {}


def test_fifty_waiters_one_winner_each_release_in_arrival_order(box: TaskLockbox) -> None:
    ids = [f"w{i:02d}" for i in range(50)]
    for tid in ["holder", *ids]:
        add(box, tid, 50)
    assert box.try_acquire("holder", DAY).ok

    async def main() -> list[str]:
        waiters = await start_waiters(box, ids)
        assert set(box.waiting_tasks()) == set(ids)
        # the default executor's one thread is free: nothing waits in it
        assert await asyncio.get_running_loop().run_in_executor(None, lambda: "free") == "free"
        box.remove_task("holder")
        order = []
        for _ in ids:
            winner = await next_winner(box, waiters)
            order.append(winner)
            box.remove_task(winner)
        return order

    assert run(main) == ids


def test_release_from_another_thread_wakes_a_waiter(box: TaskLockbox) -> None:
    add(box, "holder", 50)
    add(box, "b", 50)
    assert box.try_acquire("holder", DAY).ok

    async def main() -> TaskLock:
        waiter = asyncio.create_task(box.acquire_async("b", DAY))
        await until_waiting(box, "b")
        thread = threading.Thread(target=box.release, args=("holder", DAY))
        thread.start()
        thread.join()
        return await waiter

    lock = run(main)
    assert lock.interval == DAY and box.find_locks("b") == [lock]


def test_timeout_from_context_with_the_sync_message(box: TaskLockbox, clock: ManualClock) -> None:
    add(box, "a", 50)
    add(box, "b", 50, context={"taskLockTimeout": 1000})
    add(box, "c", 40, context={"taskLockTimeout": 100})  # lower priority: re-checks after b
    assert box.try_acquire("a", DAY).ok

    async def main() -> LockError:
        b, c = (await start_waiters(box, ["b", "c"])).values()
        clock.advance(0.5)
        box.wake_waiters()
        with pytest.raises(LockError, match="timed out after 100 ms"):
            await c  # c re-checked, so b (woken first) has re-checked too: half its timeout passed
        assert not b.done() and set(box.waiting_tasks()) == {"b"}
        clock.advance(0.6)
        box.wake_waiters()
        with pytest.raises(LockError) as info:
            await b
        return info.value

    err = run(main)
    assert "timed out after 1000 ms" in err.message and "taskLockTimeout" in err.message
    assert "Task[b]" in err.message and f"dataSource[{DS}]" in err.message
    assert box.waiting_tasks() == {}


def test_zero_timeout_and_revoked_fail_at_once(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    add(box, "lo", 25)
    add(box, "hi", 75)

    async def main() -> None:
        assert box.try_acquire("a", DAY).ok
        with pytest.raises(LockError, match="timed out after 0 ms"):
            await box.acquire_async("b", DAY, timeout_ms=0)
        assert box.try_acquire("lo", Interval(24 * H, 48 * H)).ok
        assert box.try_acquire("hi", Interval(24 * H, 25 * H)).ok
        with pytest.raises(LockError, match="revoked by task"):
            await box.acquire_async("lo", Interval(30 * H, 31 * H))
        with pytest.raises(LockError, match="inactive"):
            await box.acquire_async("ghost", DAY)

    run(main)
    assert box.waiting_tasks() == {}


def test_removed_while_waiting(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    assert box.try_acquire("a", DAY).ok

    async def main() -> None:
        waiter = asyncio.create_task(box.acquire_async("b", DAY))
        await until_waiting(box, "b")
        box.remove_task("b")
        with pytest.raises(LockError, match="removed while waiting"):
            await waiter

    run(main)
    assert box.waiting_tasks() == {}


def test_cancelled_waiter_withdraws_its_request(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    add(box, "c", 50)
    assert box.try_acquire("a", DAY).ok

    async def main() -> TaskLock:
        b = asyncio.create_task(box.acquire_async("b", DAY))
        await until_waiting(box, "b")
        c = asyncio.create_task(box.acquire_async("c", DAY))
        await until_waiting(box, "c")
        b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await b
        assert set(box.waiting_tasks()) == {"c"}
        box.remove_task("a")
        return await c

    lock = run(main)
    assert box.find_locks("c") == [lock] and box.find_locks("b") == []
    assert box.waiting_tasks() == {}


def test_preemption_waits_for_critical_section_then_revokes(box: TaskLockbox) -> None:
    add(box, "lo", 25)
    add(box, "hi", 75)
    revoked: list[str] = []
    box.add_revocation_listener(lambda t, _lock: revoked.append(t))
    assert box.try_acquire("lo", DAY).ok

    async def main() -> TaskLock:
        box.enter_critical_section("lo", [DAY])
        waiter = asyncio.create_task(box.acquire_async("hi", DAY))
        await until_waiting(box, "hi")
        assert not box.find_locks("lo")[0].revoked
        box.exit_critical_section("lo")
        return await waiter

    lock = run(main)
    assert not lock.revoked and box.find_locks("lo")[0].revoked_by == "hi"
    assert revoked == ["lo"]
