"""The SegmentStore contract, run on every implementation: SQLite, PostgreSQL and the in-memory twin.

Segments (publish with overshadowing, drop, mark unused, nuke, visible versus used), pending
segments, persisted task locks, and the data-source metadata compare-and-swap that commits with a
publish or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from overlord.core.data_segment import DataSegment, PendingSegment, SegmentId, ShardSpec
from overlord.core.protocols import DataSourceMetadataUpdate, SegmentStore
from overlord.errors import AlreadyExists, InvalidInput, MetadataConflict
from overlord.isotime import Interval, parse_instant_ms
from overlord.storage.metadata import MetadataStore
from overlord.storage.segment_store import SegmentMetadata, SqlSegmentStore
from overlord.testing.stores import InMemorySegmentStore
from tests.integration.backends import ALL_BACKENDS, open_sql_store

H = 3_600_000
T0 = parse_instant_ms("2024-01-01")
DAY = Interval(T0, T0 + 24 * H)
V1, V2, V3 = "2024-02-01T00:00:00.000Z", "2024-02-02T00:00:00.000Z", "2024-02-03T00:00:00.000Z"


@pytest.fixture(params=ALL_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SegmentStore]:
    if request.param == "memory":
        yield InMemorySegmentStore()
        return
    meta = open_sql_store(request.param, request, tmp_path)
    s = SqlSegmentStore(meta)
    assert isinstance(s, SegmentStore)
    yield s
    meta.close()


def hours(a: int, b: int) -> Interval:
    return Interval(T0 + a * H, T0 + b * H)


def seg(interval: Interval, version: str, part: int = 0, partitions: int = 1, ds: str = "wiki") -> DataSegment:
    return DataSegment(ds, interval, version, ShardSpec.numbered(part, partitions), {"type": "local", "path": "/x"})


def ids(segs: list[DataSegment]) -> list[str]:
    return sorted(s.identifier for s in segs)


def offsets(n: int) -> dict:
    return {"type": "kafka", "partitions": {"0": n, "1": n + 1}}


# -- segments --------------------------------------------------------------------------------------


def test_publish_marks_overshadowed_unused_at_once(store):
    old = [seg(DAY, V1, 0, 2), seg(DAY, V1, 1, 2)]
    assert store.publish(old, [], now_ms=1) == []
    assert ids(store.used_segments("wiki")) == ids(old)
    new = seg(DAY, V2)
    assert ids(store.publish([new], [], now_ms=2)) == ids(old)
    assert store.used_segments("wiki") == [new] and store.visible_segments("wiki") == [new]
    assert store.segment("wiki", old[0].identifier) == (old[0], False)
    got, used = store.segment("wiki", new.identifier)
    assert used and got.to_json() == new.to_json()
    assert store.segment("other", new.identifier) is None and store.segment("wiki", "nope") is None
    assert ids(store.unused_segments("wiki", DAY)) == ids(old)


def test_visible_versus_used(store):
    base = seg(DAY, V1)
    partial_cover = seg(hours(0, 6), V2)
    incomplete = seg(hours(12, 24), V3, 0, 2)  # one of two core partitions: overshadows nothing yet
    assert store.publish([base, partial_cover, incomplete], [], now_ms=1) == []
    assert ids(store.used_segments("wiki")) == ids([base, partial_cover, incomplete])
    assert ids(store.visible_segments("wiki")) == ids([base, partial_cover])
    # Druid's ONLY_VISIBLE: segments overlapping the intervals that are not fully overshadowed
    assert store.visible_segments("wiki", [hours(0, 3)]) == [base, partial_cover]
    assert store.visible_segments("wiki", [hours(7, 8)]) == [base]
    assert ids(store.visible_segments("wiki", [hours(0, 1), hours(7, 8)])) == ids([base, partial_cover])
    assert store.used_segments("wiki", hours(13, 14)) == [base, incomplete]
    rest = seg(hours(12, 24), V3, 1, 2)
    assert store.publish([rest], [], now_ms=2) == []  # base still shows in 06:00-12:00
    assert ids(store.visible_segments("wiki", [hours(12, 24)])) == ids([base, incomplete, rest])
    assert ids(store.visible_segments("wiki")) == ids([base, partial_cover, incomplete, rest])
    assert store.visible_segments("nope") == [] and store.used_segments("nope") == []


def test_publish_drops_and_keeps_data_sources_apart(store):
    a, b = seg(DAY, V1), seg(DAY, V1, ds="other")
    store.publish([a, b], [], now_ms=1)
    a2 = seg(DAY, V2)
    assert store.publish([a2], [], now_ms=2) == [a]
    assert store.used_segments("other") == [b]
    assert store.publish([], [b], now_ms=3) == [b]
    assert store.used_segments("other") == [] and store.unused_segments("other", DAY) == [b]
    assert store.datasources() == ["wiki"]
    assert store.datasources(include_unused=True) == ["other", "wiki"]


def test_publishing_stored_segments_again_changes_nothing(store):
    s0, s1 = seg(DAY, V1, 0, 2), seg(DAY, V1, 1, 2)
    store.publish([s0, s1], [], now_ms=1)
    assert store.publish([s0, s1, s0], [], now_ms=2) == []
    assert ids(store.used_segments("wiki")) == ids([s0, s1])
    store.publish([seg(DAY, V2)], [], now_ms=3)
    assert store.publish([s0], [], now_ms=4) == []  # an unused segment is not brought back either
    assert store.segment("wiki", s0.identifier)[1] is False


def test_mark_unused_and_nuke(store):
    inside = [seg(hours(0, 6), V1), seg(hours(6, 12), V1)]
    straddling = seg(hours(11, 13), V2)
    store.publish([*inside, straddling, seg(DAY, V1, ds="other")], [], now_ms=1)
    assert store.mark_unused("wiki", hours(0, 12), now_ms=2) == 2
    assert store.mark_unused("wiki", hours(0, 12), now_ms=3) == 0
    assert store.used_segments("wiki") == [straddling]
    assert ids(store.unused_segments("wiki", hours(0, 12))) == ids(inside)
    assert store.unused_segments("wiki", hours(0, 6)) == [inside[0]]
    assert store.nuke([*inside, straddling]) == 2  # a used segment is never deleted
    assert store.nuke([]) == 0
    assert store.unused_segments("wiki", DAY) == [] and store.segment("wiki", inside[0].identifier) is None
    assert store.used_segments("wiki") == [straddling]
    assert store.datasources(include_unused=True) == ["other", "wiki"]


def test_mark_unused_by_ids_and_mark_used_again(store):
    a, b = seg(hours(0, 6), V1), seg(hours(6, 12), V1)
    store.publish([a, b, seg(DAY, V1, ds="other")], [], now_ms=1)
    assert store.mark_segments_unused("wiki", [a.identifier, "nope"], now_ms=2) == 1
    assert store.mark_segments_unused("other", [b.identifier], now_ms=2) == 0  # another data source's id
    assert store.mark_segments_unused("wiki", [], now_ms=2) == 0
    assert store.used_segments("wiki") == [b]
    assert store.mark_used("wiki", 3, segment_ids=[a.identifier]) == 1
    assert store.used_segments("wiki") == [a, b]
    assert store.mark_used("wiki", 4) == 0  # neither interval nor ids: nothing
    assert store.mark_unused("wiki", DAY, now_ms=5) == 2
    assert store.mark_used("wiki", 6, interval=hours(0, 6)) == 1
    assert store.used_segments("wiki") == [a]


def test_mark_used_skips_what_a_used_segment_overshadows(store):
    old = seg(hours(0, 6), V1)
    store.publish([old], [], now_ms=1)
    store.publish([seg(hours(0, 6), V2)], [], now_ms=2)  # old is now unused, overshadowed
    assert store.segment("wiki", old.identifier) == (old, False)
    assert store.mark_used("wiki", 3, interval=DAY) == 0
    assert store.mark_used("wiki", 3, segment_ids=[old.identifier]) == 0
    assert store.segment("wiki", old.identifier) == (old, False)


# -- pending segments ------------------------------------------------------------------------------


def pending(interval: Interval, part: int, task: str, ds: str = "wiki", seq: str = "s") -> PendingSegment:
    sid = SegmentId(ds, interval, V1, part)
    return PendingSegment(sid, ShardSpec.numbered(part), seq, None if part == 0 else f"prev{part}", task)


def test_pending_segments_insert_list_and_delete(store):
    p0, p1 = pending(hours(0, 1), 0, "t1"), pending(hours(0, 1), 1, "t2")
    later, other = pending(hours(5, 6), 0, "t3"), pending(hours(0, 1), 0, "t1", ds="other")
    store.insert_pending([p0, p1, later, other], {"t1": "g1", "t2": "g2", "t3": "g1"}, now_ms=1)
    store.insert_pending([], {}, now_ms=2)
    assert store.pending_segments("wiki", hours(0, 1)) == sorted([p0, p1], key=lambda p: str(p.id))
    assert store.pending_segments("wiki", DAY) == sorted([p0, p1, later], key=lambda p: str(p.id))
    assert store.pending_segments("wiki", hours(1, 5)) == []
    assert store.pending_segments("wiki", hours(0, 1))[1].previous_segment_id == "prev1"
    assert store.delete_pending_of_group("g1") == 3  # t1 and t3 in both data sources
    assert store.delete_pending_of_group("g1") == 0
    assert store.pending_segments("wiki", DAY) == [p1]
    assert store.delete_pending_segments("other") == 0
    assert store.delete_pending_segments("wiki") == 1
    assert store.pending_segments("wiki", DAY) == []


def test_pending_segment_ids_are_unique(store):
    p0 = pending(hours(0, 1), 0, "t1")
    store.insert_pending([p0], {"t1": "g1"}, now_ms=1)
    with pytest.raises(AlreadyExists):
        store.insert_pending([pending(hours(0, 1), 1, "t1"), p0], {"t1": "g1"}, now_ms=2)
    assert store.pending_segments("wiki", DAY) == [p0]


def test_pending_segments_deleted_by_creation_time(store):
    store.insert_pending([pending(hours(0, 1), 0, "t1")], {"t1": "g1"}, now_ms=1_000)
    store.insert_pending([pending(hours(0, 1), 1, "t2")], {"t2": "g2"}, now_ms=5_000)
    assert store.delete_pending_segments("wiki", Interval(2_000, 9_000)) == 1  # created at 5000 only
    assert [p.id.partition_num for p in store.pending_segments("wiki", DAY)] == [0]
    assert store.delete_pending_segments("wiki", Interval(0, 1_000)) == 0  # the end is exclusive
    assert store.delete_pending_segments("wiki", Interval(1_000, 1_001)) == 1


def test_pending_without_group_is_deleted_with_its_data_source(store):
    store.insert_pending([pending(hours(0, 1), 0, "t9")], {}, now_ms=1)
    assert store.delete_pending_of_group("t9") == 0
    assert store.delete_pending_segments("wiki") == 1


# -- task locks ------------------------------------------------------------------------------------


def lock(task: str, n: int) -> dict:
    return {"taskId": task, "interval": str(hours(n, n + 1)), "version": V1, "type": "EXCLUSIVE"}


def test_task_locks_save_load_delete(store):
    assert store.load_task_locks() == []
    store.save_task_locks("b", [lock("b", 0), lock("b", 1)])
    store.save_task_locks("a", [lock("a", 2)])
    assert store.load_task_locks() == [lock("a", 2), lock("b", 0), lock("b", 1)]
    store.save_task_locks("b", [lock("b", 5)])  # replaces
    assert store.load_task_locks() == [lock("a", 2), lock("b", 5)]
    store.save_task_locks("a", [])
    store.save_task_locks("never", [])
    assert store.load_task_locks() == [lock("b", 5)]
    store.load_task_locks()[0]["version"] = "changed"
    assert store.load_task_locks() == [lock("b", 5)]
    store.save_task_locks("c", [lock("c", 1)])
    store.delete_task_locks(["b", "c", "unknown"])
    assert store.load_task_locks() == []
    store.delete_task_locks([])


# -- data-source metadata --------------------------------------------------------------------------


def test_metadata_commits_with_the_publish(store):
    assert store.datasource_metadata("wiki") is None
    first = seg(hours(0, 1), V1)
    store.publish([first], [], now_ms=1, metadata=DataSourceMetadataUpdate(None, offsets(10)))
    assert store.datasource_metadata("wiki") == offsets(10)
    assert store.datasource_metadata("other") is None
    second = seg(hours(0, 1), V2)
    assert store.publish([second], [], now_ms=2, metadata=DataSourceMetadataUpdate(offsets(10), offsets(20))) == [first]
    assert store.datasource_metadata("wiki") == offsets(20) and store.used_segments("wiki") == [second]


@pytest.mark.parametrize(
    "expected",
    [None, offsets(5), {"type": "kafka"}],
    ids=["expects-none-but-stored", "stale", "different-shape"],
)
def test_metadata_conflict_writes_nothing(store, expected):
    old = seg(DAY, V1)
    store.publish([old], [], now_ms=1, metadata=DataSourceMetadataUpdate(None, offsets(10)))
    store.insert_pending([pending(hours(0, 1), 0, "t1")], {"t1": "g"}, now_ms=1)
    new, dropped = seg(DAY, V2), seg(hours(0, 1), V1, ds="wiki")
    with pytest.raises(MetadataConflict, match=r"dataSource\[wiki\]"):
        store.publish([new], [old, dropped], now_ms=2, metadata=DataSourceMetadataUpdate(expected, offsets(99)))
    assert store.datasource_metadata("wiki") == offsets(10)
    assert store.used_segments("wiki") == [old] and store.segment("wiki", new.identifier) is None
    assert len(store.pending_segments("wiki", DAY)) == 1


def test_metadata_when_none_is_stored_conflicts_with_an_expectation(store):
    with pytest.raises(MetadataConflict):
        store.publish([seg(DAY, V1)], [], now_ms=1, metadata=DataSourceMetadataUpdate(offsets(1), offsets(2)))
    assert store.datasource_metadata("wiki") is None and store.datasources(include_unused=True) == []


def test_metadata_needs_exactly_one_data_source(store):
    two = [seg(DAY, V1), seg(DAY, V1, ds="other")]
    for segs in (two, []):
        with pytest.raises(InvalidInput):
            store.publish(segs, [], now_ms=1, metadata=DataSourceMetadataUpdate(None, offsets(1)))
    assert store.datasources(include_unused=True) == []
    assert store.datasource_metadata("wiki") is None and store.datasource_metadata("other") is None


def test_metadata_commits_with_a_drop_only_publish(store):
    old = seg(DAY, V1)
    store.publish([old], [], now_ms=1)
    assert store.publish([], [old], now_ms=2, metadata=DataSourceMetadataUpdate(None, offsets(3))) == [old]
    assert store.datasource_metadata("wiki") == offsets(3) and store.used_segments("wiki") == []


# -- SQL only: what the SQL store keeps across a restart and under a concurrent writer ------------


@pytest.fixture
def sql_segment_store(sql_store: MetadataStore) -> SqlSegmentStore:
    return SqlSegmentStore(sql_store)


def test_sql_restart_still_cleans_up_groups_and_locks(sql_store, sql_segment_store):
    sql_segment_store.insert_pending([pending(hours(0, 1), 0, "t1")], {"t1": "g1"}, now_ms=1)
    sql_segment_store.save_task_locks("t1", [lock("t1", 0)])
    restarted = SegmentMetadata(sql_store)  # the old name still works for callers not yet renamed
    assert restarted.load_task_locks() == [lock("t1", 0)]
    assert restarted.delete_pending_of_group("g1") == 1
    restarted.delete_task_locks(["t1"])
    assert SqlSegmentStore(sql_store).load_task_locks() == []


def test_sql_metadata_store_route_deletes_pending_through_the_segment_store(sql_store, sql_segment_store):
    sql_segment_store.insert_pending(
        [pending(hours(0, 1), 0, "t1"), pending(hours(0, 1), 1, "t1"), pending(hours(0, 1), 0, "t1", ds="b")],
        {},
        now_ms=1,
    )
    assert sql_store.delete_pending_segments("wiki") == 2
    assert sql_store.delete_pending_segments("wiki") == 0
    assert len(sql_segment_store.pending_segments("b", DAY)) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("start", [None, offsets(1)], ids=["insert-race", "update-race"])
def test_postgres_metadata_swap_loses_to_a_concurrent_writer(request, tmp_path, start):
    """Another writer commits between this publish's read and its write: this one conflicts, not overwrites."""
    meta = open_sql_store("postgres", request, tmp_path)
    store = SqlSegmentStore(meta)
    other = SqlSegmentStore(MetadataStore.from_url(request.getfixturevalue("pg_module_url")))
    try:
        if start is not None:
            store.publish([seg(hours(0, 1), V1)], [], now_ms=1, metadata=DataSourceMetadataUpdate(None, start))
        fired: list[bool] = []

        def interleave(conn, cursor, statement, parameters, context, executemany) -> None:
            writes = "overlord_datasource_metadata" in statement and not statement.lstrip().upper().startswith("SELECT")
            if writes and not fired:
                fired.append(True)
                other.publish([seg(hours(1, 2), V1)], [], 2, metadata=DataSourceMetadataUpdate(start, offsets(7)))

        sa.event.listen(meta.engine, "before_cursor_execute", interleave)
        new = seg(DAY, V2)
        with pytest.raises(MetadataConflict, match="concurrently"):
            store.publish([new], [], now_ms=3, metadata=DataSourceMetadataUpdate(start, offsets(9)))
        assert fired
        assert store.datasource_metadata("wiki") == offsets(7) and store.segment("wiki", new.identifier) is None
    finally:
        other.engine.dispose()
        meta.close()
