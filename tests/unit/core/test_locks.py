"""TaskLockbox: conflicts, priorities, preemption, critical section, groups, timeouts, persistence."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pytest

from overlord.clock import ManualClock
from overlord.core.lockpolicy import (
    LockGranularity,
    TaskLock,
    TaskLockType,
    choose_lock_granularity,
    default_priority,
    effective_priority,
    force_time_chunk_lock,
    lock_timeout_ms,
    validate_lock_timeout,
)
from overlord.core.locks import TaskLockbox
from overlord.errors import InvalidSpec, LockError
from overlord.isotime import Interval

H = 3_600_000
DS = "wiki"
DAY = Interval(0, 24 * H)
SEG = LockGranularity.SEGMENT


def iv(a: int, b: int) -> Interval:
    return Interval(a * H, b * H)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def box(clock: ManualClock) -> TaskLockbox:
    return TaskLockbox(clock, poll_interval_s=5.0)


def add(box: TaskLockbox, tid: str, priority: int, group: str | None = None, **kw: object) -> None:
    box.add_task(tid, group or tid, "index", priority, DS, **kw)  # type: ignore[arg-type]


class Runner:
    """Runs a call in a thread and hands back its result or exception."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self) -> Runner:
        self.thread.join(5)
        assert not self.thread.is_alive()
        return self


# --- policy ------------------------------------------------------------------------------------------


def test_default_priorities_and_context_override() -> None:
    assert [default_priority(t) for t in ("index_kafka", "index_parallel", "compact", "kill")] == [75, 50, 25, 0]
    assert default_priority("same_interval_merge") == 25 and default_priority("index_hadoop") == 50
    assert effective_priority("compact", {"priority": 100}) == 100
    assert effective_priority("compact", {"priority": "7"}) == 7
    with pytest.raises(InvalidSpec):
        effective_priority("compact", {"priority": "high"})


def test_force_time_chunk_lock_and_granularity_choice() -> None:
    assert force_time_chunk_lock({}, True) and not force_time_chunk_lock({}, False)
    assert not force_time_chunk_lock({"forceTimeChunkLock": False}, True)
    assert force_time_chunk_lock({"forceTimeChunkLock": "true"}, False)
    choose = choose_lock_granularity
    assert choose("index", {}) == LockGranularity.TIME_CHUNK
    assert choose("index", {"forceTimeChunkLock": False}) == SEG
    assert choose("index_kafka", {}, server_force_time_chunk_lock=False) == SEG
    assert choose("index", {"forceTimeChunkLock": False}, changes_segment_granularity=True) != SEG
    assert choose("index", {"forceTimeChunkLock": False}, drop_existing=True) != SEG
    assert choose("index_hadoop", {"forceTimeChunkLock": False}) == LockGranularity.TIME_CHUNK


def test_lock_timeout_context() -> None:
    assert lock_timeout_ms({}) == 300_000 and lock_timeout_ms({"taskLockTimeout": 5}) == 5
    with pytest.raises(InvalidSpec, match="maxIdleTime"):
        validate_lock_timeout({"taskLockTimeout": 600_000}, 300_000)
    assert validate_lock_timeout({"taskLockTimeout": 1000}, 300_000) == 1000


# --- conflicts and priorities ------------------------------------------------------------------------


def test_equal_priority_first_requester_wins_other_waits(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    first = box.try_acquire("a", DAY)
    second = box.try_acquire("b", iv(3, 4))
    assert first.ok and not second.ok and second.blockers == ("a",)
    assert "priority >= 50" in (second.reason or "")
    assert not box.is_ready("b", [iv(3, 4)]) and box.is_ready("b", [iv(24, 48)])
    waiter = Runner(lambda: box.acquire("b", iv(3, 4)))
    assert box.await_waiting("b")
    assert "b" in box.waiting_tasks()
    box.remove_task("a")
    lock = waiter.join().result
    assert isinstance(lock, TaskLock) and lock.interval == iv(3, 4) and not lock.revoked


def test_lower_priority_later_waits(box: TaskLockbox) -> None:
    add(box, "hi", 75)
    add(box, "lo", 25)
    assert box.try_acquire("hi", DAY).ok
    assert not box.try_acquire("lo", DAY).ok
    assert box.find_locks("hi")[0].revoked is False


def test_higher_priority_preempts_and_names_revoker(box: TaskLockbox) -> None:
    add(box, "lo", 25)
    add(box, "hi", 75)
    seen: list[tuple[str, TaskLock]] = []
    box.add_revocation_listener(lambda t, lk: seen.append((t, lk)))
    old = box.try_acquire("lo", DAY).lock
    new = box.try_acquire("hi", iv(1, 2))
    assert new.ok and new.lock is not None and old is not None
    assert new.lock.version > old.version
    (revoked,) = box.find_locks("lo")
    assert revoked.revoked and revoked.revoked_by == "hi"
    assert seen == [("lo", revoked)]
    msg = box.revocation_message("lo") or ""
    assert "revoked by task[hi]" in msg and DS in msg
    again = box.try_acquire("lo", DAY)
    assert again.revoked and not again.ok
    with pytest.raises(LockError, match="revoked by task"):
        box.enter_critical_section("lo", [DAY])
    with pytest.raises(LockError, match="revoked"):
        box.acquire("lo", iv(5, 6))
    assert box.try_acquire("lo", iv(30, 31)).ok  # elsewhere it may still lock


def test_preemption_waits_for_critical_section(box: TaskLockbox) -> None:
    add(box, "lo", 25)
    add(box, "hi", 75)
    assert box.try_acquire("lo", DAY).ok
    with box.critical_section("lo", [iv(0, 1)]):
        assert box.in_critical_section("lo")
        blocked = box.try_acquire("hi", DAY)
        assert not blocked.ok and "publishing" in (blocked.reason or "")
        waiter = Runner(lambda: box.acquire("hi", DAY))
        assert box.await_waiting("hi")
        assert not box.find_locks("lo")[0].revoked
    got = waiter.join().result
    assert isinstance(got, TaskLock) and not got.revoked
    assert box.find_locks("lo")[0].revoked_by == "hi"


def test_critical_section_needs_a_covering_lock(box: TaskLockbox) -> None:
    add(box, "a", 50)
    box.try_acquire("a", iv(0, 1))
    with pytest.raises(LockError, match="no lock covering"):
        box.enter_critical_section("a", [iv(0, 2)])
    box.enter_critical_section("a")
    box.enter_critical_section("a")
    box.exit_critical_section("a")
    assert box.in_critical_section("a")
    box.exit_critical_section("a")
    assert not box.in_critical_section("a")


def test_group_shares_locks(box: TaskLockbox) -> None:
    add(box, "sup", 50, group="g")
    add(box, "sub1", 50, group="g")
    add(box, "other", 50)
    lock = box.try_acquire("sup", DAY).lock
    shared = box.try_acquire("sub1", iv(2, 3)).lock
    assert shared == lock  # joined the supervisor's lock, same version
    assert not box.try_acquire("other", iv(2, 3)).ok
    box.remove_task("sup")
    assert not box.try_acquire("other", iv(2, 3)).ok  # still held by sub1
    box.release("sub1", DAY)
    assert box.try_acquire("other", iv(2, 3)).ok


def test_lock_type_compatibility(box: TaskLockbox) -> None:
    for t in ("s1", "s2", "ap1", "ap2", "rep", "rep2", "ex"):
        add(box, t, 50)
    assert box.try_acquire("s1", DAY, TaskLockType.SHARED).ok
    assert box.try_acquire("s2", DAY, TaskLockType.SHARED).ok
    assert not box.try_acquire("ex", DAY).ok
    d2 = iv(24, 48)
    assert box.try_acquire("ap1", d2, TaskLockType.APPEND).ok
    assert box.try_acquire("ap2", d2, TaskLockType.APPEND).ok
    assert box.try_acquire("rep", d2, TaskLockType.REPLACE).ok
    assert not box.try_acquire("rep2", d2, TaskLockType.REPLACE).ok
    assert not box.try_acquire("ex", d2).ok


def test_segment_locks_conflict_per_partition(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    add(box, "c", 50)
    assert box.try_acquire("a", DAY, granularity=SEG, version="v1", partition_id=0).ok
    assert box.try_acquire("b", DAY, granularity=SEG, version="v1", partition_id=1).ok
    assert not box.try_acquire("c", DAY, granularity=SEG, version="v1", partition_id=1).ok
    assert not box.try_acquire("c", DAY).ok  # a time-chunk lock conflicts with segment locks
    assert box.find_locks("a")[0].version == "v1"
    with pytest.raises(LockError, match="partitionId"):
        box.try_acquire("c", DAY, granularity=SEG)
    assert box.release("b", DAY, partition_id=1)
    assert box.try_acquire("c", DAY, granularity=SEG, version="v1", partition_id=1).ok


def test_time_chunk_versions_strictly_increase_within_one_ms(box: TaskLockbox) -> None:
    versions = []
    for i in range(5):
        add(box, f"t{i}", 50)
        lock = box.try_acquire(f"t{i}", iv(i, i + 1)).lock
        assert lock is not None
        versions.append(lock.version)
    assert versions == sorted(versions) and len(set(versions)) == 5


def test_try_acquire_all_is_all_or_nothing(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    box.try_acquire("a", iv(5, 6))
    assert not box.try_acquire_all("b", [iv(0, 1), iv(5, 6)]).ok
    assert box.find_locks("b") == []
    assert box.try_acquire_all("b", [iv(0, 1), iv(1, 2)]).ok
    assert len(box.find_locks("b")) == 2


def test_unknown_task_cannot_lock(box: TaskLockbox) -> None:
    with pytest.raises(LockError, match="inactive"):
        box.try_acquire("ghost", DAY)


# --- waiting and timeouts ----------------------------------------------------------------------------


def test_lock_timeout_from_context(box: TaskLockbox, clock: ManualClock) -> None:
    add(box, "a", 50)
    add(box, "b", 50, context={"taskLockTimeout": 1000})
    box.try_acquire("a", DAY)
    waiter = Runner(lambda: box.acquire("b", DAY))
    assert box.await_waiting("b")
    clock.advance(0.5)
    box.wake_waiters()
    assert box.await_waiting("b")  # still waiting: half the timeout passed
    clock.advance(0.6)
    box.wake_waiters()
    err = waiter.join().error
    assert isinstance(err, LockError)
    assert "timed out after 1000 ms" in err.message and "taskLockTimeout" in err.message
    assert "b" not in box.waiting_tasks()


def test_zero_timeout_fails_at_once(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    box.try_acquire("a", DAY)
    with pytest.raises(LockError, match="timed out"):
        box.acquire("b", DAY, timeout_ms=0)


def test_removed_while_waiting(box: TaskLockbox) -> None:
    add(box, "a", 50)
    add(box, "b", 50)
    box.try_acquire("a", DAY)
    waiter = Runner(lambda: box.acquire("b", DAY))
    assert box.await_waiting("b")
    box.remove_task("b")
    assert isinstance(waiter.join().error, LockError)


def test_many_waiters_one_winner_at_a_time(box: TaskLockbox) -> None:
    for t in ("holder", "w1", "w2", "w3"):
        add(box, t, 50)
    box.try_acquire("holder", DAY)
    done: queue.Queue[str] = queue.Queue()

    def wait_for(t: str) -> None:
        box.acquire(t, DAY)
        done.put(t)

    waiters = {t: Runner(lambda t=t: wait_for(t)) for t in ("w1", "w2", "w3")}
    for t in waiters:
        assert box.await_waiting(t)
    box.remove_task("holder")
    order = []
    for _ in range(3):
        winner = done.get(timeout=5)
        holders = [t for t in waiters if box.find_locks(t)]
        assert holders == [winner]
        order.append(winner)
        box.remove_task(winner)
    assert sorted(order) == ["w1", "w2", "w3"]
    assert all(r.join().error is None for r in waiters.values())


# --- persistence -------------------------------------------------------------------------------------


def test_snapshot_restore_keeps_alive_tasks_only(clock: ManualClock) -> None:
    box = TaskLockbox(clock)
    add(box, "alive", 50, group="g")
    add(box, "mate", 50, group="g")
    add(box, "dead", 50)
    add(box, "lo", 10)
    box.try_acquire("alive", DAY)
    box.try_acquire("mate", iv(1, 2))
    box.try_acquire("dead", iv(24, 48))
    box.try_acquire("lo", iv(48, 72))
    box.try_acquire("alive", iv(50, 51))  # preempts "lo"
    box.try_acquire("alive", iv(100, 101), granularity=SEG, version="v9", partition_id=3)
    snap = box.snapshot()
    assert all(isinstance(e["lock"], dict) for e in snap)

    fresh = TaskLockbox(clock)
    result = fresh.restore(snap, alive_task_ids={"alive", "mate", "lo"})
    assert [t for t, _ in result.released] == ["dead"]
    assert not result.failed
    assert sorted(fresh.find_locks("alive"), key=str) == sorted(box.find_locks("alive"), key=str)
    assert fresh.find_locks("mate") == box.find_locks("mate")
    assert fresh.find_locks("lo")[0].revoked_by == "alive"
    add(fresh, "new", 50)
    assert not fresh.try_acquire("new", iv(1, 2)).ok
    assert fresh.try_acquire("new", iv(24, 48)).ok  # the dead task's lock is gone
    new_version = fresh.find_locks("new")[0].version
    assert all(new_version > lk.version for lk in box.find_locks("alive") if lk.version != "v9")


def test_restore_reports_conflicts(clock: ManualClock) -> None:
    lock = TaskLock(LockGranularity.TIME_CHUNK, TaskLockType.EXCLUSIVE, "a", DS, DAY, "v1", 50)
    other = TaskLock(LockGranularity.TIME_CHUNK, TaskLockType.EXCLUSIVE, "b", DS, DAY, "v2", 50)
    entries = [{"taskId": "a", "lock": lock.to_json()}, {"taskId": "b", "lock": other.to_json()}]
    result = TaskLockbox(clock).restore(entries, {"a", "b"})
    assert [t for t, _ in result.restored] == ["a"]
    assert [t for t, _, _ in result.failed] == ["b"]


def test_task_lock_json_round_trip() -> None:
    lock = TaskLock(SEG, TaskLockType.EXCLUSIVE, "g", DS, DAY, "v", 50, 4, True, "x")
    js = lock.to_json()
    assert js["partitionId"] == 4 and js["revokedBy"] == "x" and js["interval"].endswith("Z")
    assert TaskLock.from_json(js) == lock
