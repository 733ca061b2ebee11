"""The write fence on PostgreSQL: every write transaction of the metadata store checks the leader's
term in the same transaction, so a deposed leader writes nothing (tasks, segments, locks alike)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from overlord.core.task import TaskRecord
from overlord.errors import NotLeader
from overlord.storage.leader_lease import SqlLeaseStore, install_fence
from overlord.storage.lock_store import SqlLockStore
from overlord.storage.metadata import MetadataStore, tasks

pytestmark = pytest.mark.postgres


@dataclass
class Node:
    """Stands in for ``Leadership``: the token it writes under, and the step-downs it was told of."""

    token: tuple[str, int] | None
    fenced_reasons: list[str] = field(default_factory=list)

    def fence_token(self) -> tuple[str, int] | None:
        return self.token

    def fenced(self, reason: str) -> None:
        self.fenced_reasons.append(reason)


@pytest.fixture
def setup(pg_url: str) -> Iterator[tuple[MetadataStore, SqlLeaseStore, Node]]:
    store = MetadataStore.from_url(pg_url)
    lease = SqlLeaseStore(pg_url)
    view = lease.campaign("a", "http://a:8090", 300)
    node = Node(("a", view.epoch))
    install_fence(store.engine, node, idle_in_transaction_ms=1_000)
    yield store, lease, node
    lease.close()
    store.close()


def task(task_id: str) -> TaskRecord:
    return TaskRecord(id=task_id, group_id=task_id, type="noop", datasource=None, created_ms=1, queue_insertion_ms=1)


def test_the_leader_writes_in_its_term(setup: tuple[MetadataStore, SqlLeaseStore, Node]) -> None:
    store, _lease, node = setup
    store.insert_task(task("t1"))
    store.update_task("t1", error_msg="x")
    assert store.get_task("t1") is not None and node.fenced_reasons == []


def test_a_deposed_leader_writes_nothing_and_is_told_to_step_down(
    setup: tuple[MetadataStore, SqlLeaseStore, Node],
) -> None:
    store, lease, node = setup
    store.insert_task(task("t1"))
    time.sleep(0.35)
    assert lease.campaign("b", "http://b:8090", 10_000).holder == "b"
    with pytest.raises(NotLeader, match="no longer the leader"):
        store.insert_task(task("t2"))
    with pytest.raises(NotLeader):
        store.update_task("t1", error_msg="late")
    with pytest.raises(NotLeader):
        SqlLockStore(store.engine).save_task_locks("t1", [{"taskId": "t1"}])
    assert store.get_task("t2") is None and store.get_task("t1").error_msg is None  # type: ignore[union-attr]
    assert len(node.fenced_reasons) == 3 and "the lease names b in term 2" in node.fenced_reasons[0]


def test_a_follower_is_refused_before_anything_reaches_the_database(
    setup: tuple[MetadataStore, SqlLeaseStore, Node],
) -> None:
    store, _lease, node = setup
    node.token = None
    with pytest.raises(NotLeader, match="not the leader"):
        store.insert_task(task("t1"))
    assert store.get_task("t1") is None and node.fenced_reasons == []


def test_a_takeover_waits_for_a_write_under_way_which_therefore_commits_in_the_old_term(
    setup: tuple[MetadataStore, SqlLeaseStore, Node],
) -> None:
    store, lease, _node = setup
    time.sleep(0.35)  # the lease expired, but nobody took it yet: the leader's term is still current
    taken: list[float] = []
    with store.engine.begin() as conn:
        conn.execute(tasks.insert().values(**_row("t1")))
        t = threading.Thread(target=lambda: taken.append(lease.campaign("b", "http://b:8090", 10_000).epoch))
        t.start()
        time.sleep(0.3)
        assert taken == []  # blocked on the row the write holds FOR SHARE
    t.join(5)
    assert taken == [2] and store.get_task("t1") is not None


def test_a_frozen_write_cannot_block_a_takeover_for_long_and_never_commits(
    setup: tuple[MetadataStore, SqlLeaseStore, Node],
) -> None:
    store, lease, _node = setup
    time.sleep(0.35)
    with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction"), store.engine.begin() as conn:
        conn.execute(tasks.insert().values(**_row("t1")))
        time.sleep(1.5)  # frozen (SIGSTOP) past idle_in_transaction_session_timeout: the server ends it
        started = time.monotonic()
        assert lease.campaign("b", "http://b:8090", 10_000).holder == "b"
        assert time.monotonic() - started < 1.0
    assert store.get_task("t1") is None


def _row(task_id: str) -> dict[str, object]:
    from overlord.storage.metadata import _record_values

    return _record_values(task(task_id))
