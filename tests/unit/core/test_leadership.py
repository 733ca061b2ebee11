"""The leadership state machine over the in-memory lease, with a manual clock: every step exact."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from overlord.clock import ManualClock
from overlord.core.leadership import Leadership, LeadershipConfig, Role
from overlord.testing import InMemoryLeaseStore

CONFIG = LeadershipConfig(lease_ms=10_000, renew_ms=2_000)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class Node:
    """One Overlord's leadership, recording what it was told to do."""

    def __init__(self, name: str, lease: InMemoryLeaseStore | None, clock: ManualClock, *, fail_takeover: bool = False):
        self.events: list[str] = []
        self.fail_takeover = fail_takeover
        self.leadership = Leadership(
            lease,
            node_id=name,
            url=f"http://{name}:8090",
            clock=clock,
            config=CONFIG,
            on_elected=self._elected,
            on_deposed=self._deposed,
        )

    async def _elected(self, epoch: int) -> None:
        self.events.append(f"elected {epoch}")
        # while taking over: writes pass the fence (recovery writes), but the API is not served yet
        self.during_takeover = (self.leadership.is_leader(), self.leadership.fence_token())
        if self.fail_takeover:
            raise RuntimeError("recovery failed")

    async def _deposed(self, reason: str) -> None:
        self.events.append(f"deposed: {reason}")

    def tick(self) -> float:
        return float(run(self.leadership.tick()))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def lease(clock: ManualClock) -> InMemoryLeaseStore:
    return InMemoryLeaseStore(clock)


def test_without_a_lease_store_the_node_leads_at_once_and_for_ever(clock: ManualClock) -> None:
    node = Node("solo", None, clock)
    node.tick()
    assert node.leadership.is_leader() and node.events == ["elected 0"]
    assert node.leadership.fence_token() == ("solo", 0)
    clock.advance(3600)
    node.tick()
    assert node.leadership.is_leader() and node.events == ["elected 0"]


def test_the_first_to_campaign_leads_and_the_other_follows_knowing_where_the_leader_is(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    a, b = Node("a", lease, clock), Node("b", lease, clock)
    a.tick()
    delay = b.tick()
    assert a.leadership.is_leader() and a.leadership.epoch == 1
    assert not b.leadership.is_leader() and b.leadership.role is Role.FOLLOWER
    assert b.leadership.leader_url == "http://a:8090"
    assert b.leadership.fence_token() is None and b.events == []
    assert delay == pytest.approx(2.0)  # the lease runs for 10 s: check again after one renew period
    a.tick()
    assert b.leadership.peer_urls == ["http://a:8090"] and a.leadership.peer_urls == ["http://b:8090"]


def test_the_api_is_served_only_once_the_takeover_finished_but_its_writes_pass_the_fence(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    a = Node("a", lease, clock)
    a.tick()
    assert a.during_takeover == (False, ("a", 1))
    assert a.leadership.is_leader()


def test_a_leader_that_keeps_renewing_keeps_leading(clock: ManualClock, lease: InMemoryLeaseStore) -> None:
    a, b = Node("a", lease, clock), Node("b", lease, clock)
    a.tick()
    for _ in range(20):
        clock.advance(2.0)
        a.tick()
        b.tick()
    assert a.leadership.is_leader() and not b.leadership.is_leader()
    assert a.events == ["elected 1"] and b.events == []


def test_a_silent_leader_is_replaced_once_its_lease_runs_out_and_steps_down_when_it_wakes(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    a, b = Node("a", lease, clock), Node("b", lease, clock)
    a.tick()
    b.tick()
    clock.advance(9.9)  # a is frozen (SIGSTOP): no renewal
    b.tick()
    assert not b.leadership.is_leader() and a.leadership.is_leader()
    clock.advance(0.1)
    assert not a.leadership.is_leader()  # its own deadline passed, before anyone could take over
    b.tick()
    assert b.leadership.is_leader() and b.leadership.epoch == 2 and b.events == ["elected 2"]
    assert not lease.check_fence(("a", 1)) and lease.check_fence(b.leadership.fence_token())
    a.tick()  # a wakes up: its renewal is refused
    assert a.leadership.role is Role.FOLLOWER and a.leadership.fence_token() is None
    assert a.events == ["elected 1", "deposed: another Overlord holds the leader lease"]
    a.tick()
    assert a.leadership.leader_url == "http://b:8090"


def test_a_follower_wakes_up_right_when_the_lease_expires(clock: ManualClock, lease: InMemoryLeaseStore) -> None:
    a, b = Node("a", lease, clock), Node("b", lease, clock)
    a.tick()
    clock.advance(9.0)
    assert b.tick() == pytest.approx(1.05)


def test_a_leader_that_cannot_reach_the_store_steps_down_when_its_lease_would_have_ended(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    a = Node("a", lease, clock)
    a.tick()
    lease.fail = ConnectionError("connection refused")
    for _ in range(9):
        clock.advance(1.0)
        a.tick()
        assert a.leadership.role is Role.LEADER  # failed renewals are retried while the lease lasts
    clock.advance(1.0)
    a.tick()
    assert a.leadership.role is Role.FOLLOWER
    assert a.events[-1].startswith("deposed: the lease could not be renewed for 10000 ms (ConnectionError")
    clock.advance(5.0)
    a.tick()  # still down: campaigning fails quietly
    assert a.leadership.role is Role.FOLLOWER
    lease.fail = None
    a.tick()  # the store is back: the lease still names this node, which takes it back in a new term
    assert a.leadership.is_leader() and a.leadership.epoch == 2 and a.events[-1] == "elected 2"


def test_a_refused_write_steps_the_leader_down_at_the_next_step(clock: ManualClock, lease: InMemoryLeaseStore) -> None:
    a = Node("a", lease, clock)
    a.tick()
    a.leadership.fenced("the lease names b in term 7")
    assert not a.leadership.is_leader() and a.leadership.fence_token() is None
    assert a.tick() == 0.0
    assert a.leadership.role is Role.FOLLOWER and a.events[-1] == "deposed: the lease names b in term 7"


def test_a_node_whose_takeover_fails_steps_down_and_gives_the_lease_back(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    a, b = Node("a", lease, clock, fail_takeover=True), Node("b", lease, clock)
    a.tick()
    assert a.leadership.role is Role.FOLLOWER
    assert a.events == ["elected 1", "deposed: taking over failed: RuntimeError: recovery failed"]
    b.tick()
    assert b.leadership.is_leader() and b.leadership.epoch == 2


def test_a_restarted_node_takes_its_own_lease_back_without_waiting(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    Node("a", lease, clock).tick()
    again = Node("a", lease, clock)  # same data directory, new process
    again.tick()
    assert again.leadership.is_leader() and again.leadership.epoch == 2
    assert not lease.check_fence(("a", 1))


def test_a_clean_stop_releases_the_lease_so_a_follower_takes_over_at_once(
    clock: ManualClock, lease: InMemoryLeaseStore
) -> None:
    a, b = Node("a", lease, clock), Node("b", lease, clock)
    a.tick()
    run(a.leadership.release())
    b.tick()
    assert b.leadership.is_leader() and not a.leadership.is_leader()


def test_the_loop_steps_down_as_soon_as_a_write_is_refused(clock: ManualClock, lease: InMemoryLeaseStore) -> None:
    async def main() -> list[str]:
        a = Node("a", lease, clock)
        await a.leadership.start()
        assert a.leadership.is_leader()
        lease.holder, lease.url, lease.epoch = "b", "http://b:8090", 2  # b took over while a was frozen
        a.leadership.fenced("the lease names b in term 2")  # long before the next renewal is due
        for _ in range(200):
            if a.leadership.role is Role.FOLLOWER:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the loop goes on campaigning, and stays a follower
        await a.leadership.stop_campaigning()
        assert a.leadership.leader_url == "http://b:8090"
        return a.events

    assert run(main()) == ["elected 1", "deposed: the lease names b in term 2"]


def test_a_lease_shorter_than_two_renewals_is_refused() -> None:
    with pytest.raises(ValueError, match="at least twice"):
        LeadershipConfig(lease_ms=3_000, renew_ms=2_000)
