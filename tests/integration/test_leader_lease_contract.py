"""The leader lease contract, over PostgreSQL and the in-memory twin: one holder, a new epoch per term.

Expiry runs on each store's own clock (the database's for PostgreSQL), so these tests use short
leases and real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from overlord.clock import SYSTEM_CLOCK
from overlord.core.protocols import LeaseStore
from overlord.storage.leader_lease import SqlLeaseStore
from overlord.storage.metadata import MetadataStore
from overlord.testing import InMemoryLeaseStore


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
def lease(request: pytest.FixtureRequest) -> Iterator[LeaseStore]:
    if request.param == "memory":
        yield InMemoryLeaseStore(SYSTEM_CLOCK)
        return
    url = request.getfixturevalue("pg_url")
    MetadataStore.from_url(url).close()  # the schema, as the service makes it
    store = SqlLeaseStore(url)
    yield store
    store.close()


def test_the_first_campaign_wins_term_one_and_the_next_sees_who_leads(lease: LeaseStore) -> None:
    won = lease.campaign("a", "http://a:8090", 10_000)
    assert (won.holder, won.url, won.epoch) == ("a", "http://a:8090", 1) and won.expires_in_ms > 9_000
    lost = lease.campaign("b", "http://b:8090", 10_000)
    assert (lost.holder, lost.url, lost.epoch) == ("a", "http://a:8090", 1) and lost.expires_in_ms > 0


def test_renewing_needs_the_current_term(lease: LeaseStore) -> None:
    lease.campaign("a", "http://a:8090", 10_000)
    assert lease.renew("a", 1, 10_000)
    assert not lease.renew("a", 2, 10_000)
    assert not lease.renew("b", 1, 10_000)


def test_an_expired_lease_goes_to_the_next_campaign_in_a_new_term(lease: LeaseStore) -> None:
    lease.campaign("a", "http://a:8090", 50)
    time.sleep(0.1)
    won = lease.campaign("b", "http://b:8090", 10_000)
    assert (won.holder, won.epoch) == ("b", 2)
    assert not lease.renew("a", 1, 10_000)  # the old leader learns it at its next renewal


def test_the_holder_campaigning_again_takes_a_new_term_at_once(lease: LeaseStore) -> None:
    lease.campaign("a", "http://a:8090", 10_000)
    again = lease.campaign("a", "http://a:8091", 10_000)  # a restart of the same data directory
    assert (again.holder, again.url, again.epoch) == ("a", "http://a:8091", 2)


def test_a_release_lets_a_follower_in_at_once_but_only_from_the_current_term(lease: LeaseStore) -> None:
    lease.campaign("a", "http://a:8090", 10_000)
    lease.release("a", 7)  # a stale term changes nothing
    assert lease.campaign("b", "http://b:8090", 10_000).holder == "a"
    lease.release("a", 1)
    assert lease.campaign("b", "http://b:8090", 10_000).holder == "b"


def test_concurrent_campaigns_on_an_expired_lease_elect_exactly_one(lease: LeaseStore) -> None:
    lease.campaign("seed", "http://seed:8090", 1)
    time.sleep(0.05)
    views = {}
    start = threading.Barrier(6)

    def campaign(node: str) -> None:
        start.wait()
        views[node] = lease.campaign(node, f"http://{node}:8090", 10_000)

    threads = [threading.Thread(target=campaign, args=(f"n{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [node for node, view in views.items() if view.holder == node]
    assert len(winners) == 1
    assert all(view.holder == winners[0] and view.epoch == 2 for view in views.values())


def test_members_are_the_overlords_heard_from_recently(lease: LeaseStore) -> None:
    lease.announce("a", "http://a:8090")
    lease.announce("b", "http://b:8090")
    assert lease.members(60_000) == ["http://a:8090", "http://b:8090"]
    time.sleep(0.06)
    lease.announce("b", "http://b:8091")
    assert lease.members(50) == ["http://b:8091"]
