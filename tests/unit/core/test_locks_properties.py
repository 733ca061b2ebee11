"""Random lock traffic never leaves two live, incompatible locks of different groups overlapping,
and every refusal or preemption is justified by the priority rules (checked by brute force)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from overlord.clock import ManualClock
from overlord.core.lockpolicy import COMPATIBLE_TYPES, LockGranularity, TaskLock, TaskLockType
from overlord.core.locks import TaskLockbox
from overlord.isotime import Interval

H = 3_600_000
TASKS = [("a", "g1", 25), ("b", "g1", 25), ("c", "c", 50), ("d", "d", 50), ("e", "e", 75)]
PRIO = {t: p for t, _, p in TASKS}
GROUP = {t: g for t, g, _ in TASKS}

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("lock"),
            st.sampled_from([t for t, _, _ in TASKS]),
            st.integers(0, 5),
            st.integers(1, 3),
            st.sampled_from(list(TaskLockType)),
            st.sampled_from([None, 0, 1]),
        ),
        st.tuples(st.just("release"), st.sampled_from([t for t, _, _ in TASKS]), st.integers(0, 5), st.integers(1, 3)),
        st.tuples(st.just("remove"), st.sampled_from([t for t, _, _ in TASKS])),
        st.tuples(st.just("publish"), st.sampled_from([t for t, _, _ in TASKS])),
    ),
    max_size=40,
)


def conflict(x: TaskLock, y: TaskLock) -> bool:
    if x.revoked or y.revoked or x.group_id == y.group_id or not x.interval.overlaps(y.interval):
        return False
    if x.granularity == y.granularity == LockGranularity.SEGMENT:
        return x.partition_id == y.partition_id and x.interval == y.interval
    return frozenset({x.lock_type, y.lock_type}) not in COMPATIBLE_TYPES


@settings(max_examples=200, deadline=None)
@given(ops)
def test_no_two_conflicting_live_locks(script: list[tuple]) -> None:  # type: ignore[type-arg]
    box = TaskLockbox(ManualClock())

    def register(t: str) -> None:
        if box.task(t) is None:
            box.add_task(t, GROUP[t], "index", PRIO[t], "ds")

    for t, _, _ in TASKS:
        register(t)
    for op in script:
        if op[0] == "lock":
            _, t, a, n, kind, part = op
            register(t)
            iv = Interval(a * H, (a + n) * H)
            gran = LockGranularity.SEGMENT if part is not None else LockGranularity.TIME_CHUNK
            if gran == LockGranularity.SEGMENT:
                kind = TaskLockType.EXCLUSIVE
            before = box.all_locks()
            res = box.try_acquire(t, iv, kind, gran, version="v" if part is not None else None, partition_id=part)
            probe = TaskLock(gran, kind, GROUP[t], "ds", iv, "v", PRIO[t], part)
            clashing = [(holders, lk) for holders, lk in before if conflict(lk, probe)]
            if res.ok:
                assert all(lk.priority < PRIO[t] for _, lk in clashing)
                assert not any(box.in_critical_section(h) for holders, _ in clashing for h in holders)
            elif not res.revoked:
                assert clashing
        elif op[0] == "release":
            _, t, a, n = op
            box.release(t, Interval(a * H, (a + n) * H))
        elif op[0] == "remove":
            box.remove_task(op[1])
        elif op[0] == "publish" and box.task(op[1]) is not None:
            if box.in_critical_section(op[1]):
                box.exit_critical_section(op[1])
            elif not box.revoked_locks(op[1]):
                box.enter_critical_section(op[1])
        live = [lk for _, lk in box.all_locks()]
        for i, x in enumerate(live):
            for y in live[i + 1 :]:
                assert not conflict(x, y), (x, y)
        for t, _, _ in TASKS:
            mine = sorted(map(str, box.find_locks(t)))
            assert mine == sorted(str(lk) for holders, lk in box.all_locks() if t in holders)
