"""Trust rules of task actions: each test tries an attack as a running task and expects the refusal.

The real TaskActionHandler over a real SQLite segment store and a local deep storage in tmp_path. The
HTTP layer has checked the caller's token already, so every call here is made as the task it names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from overlord.clock import ManualClock
from overlord.core.data_segment import DataSegment
from overlord.core.locks import TaskLockbox
from overlord.core.task import TaskRecord
from overlord.core.task_actions import TaskActionHandler
from overlord.errors import ActionNotPermitted, InvalidInput, LockError
from overlord.isotime import Interval
from overlord.storage.deep_storage import FsDeepStorage
from overlord.storage.metadata import MetadataStore
from overlord.storage.segment_store import SegmentMetadata

DAY = "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"
NEXT_DAY = "2024-01-02T00:00:00.000Z/2024-01-03T00:00:00.000Z"


@dataclass
class Env:
    handler: TaskActionHandler
    lockbox: TaskLockbox
    segments: SegmentMetadata
    deep: FsDeepStorage
    clock: ManualClock

    def task(self, task_id: str, ds: str | None = "wiki", *, group: str | None = None, priority: int = 0) -> str:
        rec = TaskRecord(task_id, group or task_id, "index", ds, 0, 0, priority=priority, payload={"context": {}})
        self.handler.active[task_id] = rec
        self.lockbox.add_task(task_id, rec.group_id, rec.type, priority, ds or "")
        return task_id

    def act(self, task_id: str, action: dict[str, Any]) -> Any:
        return asyncio.run(self.handler.perform(task_id, action))

    def segment(self, ds: str, interval: str, version: str, partition: int = 0, **over: Any) -> dict[str, Any]:
        """A segment's JSON with its load spec inside deep storage (unless overridden)."""
        out = {
            "dataSource": ds,
            "interval": interval,
            "version": version,
            "loadSpec": self.deep.load_spec(f"{ds}/{version.replace(':', '')}/{partition}/index.parquet"),
            "shardSpec": {"type": "numbered", "partitionNum": partition, "partitions": 0},
            "size": 1,
        }
        return {**out, **over}

    def stored(self, *segs: dict[str, Any]) -> None:
        """Segments already published (by someone else) as setup."""
        self.segments.publish([DataSegment.from_json(s) for s in segs], [], self.clock.now_ms())

    def used(self, ds: str, interval: str = DAY) -> list[str]:
        return sorted(s.identifier for s in self.segments.used_segments(ds, Interval.parse(interval)))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = MetadataStore.from_url(f"sqlite:///{tmp_path / 'metadata.db'}")
    clock = ManualClock()
    lockbox = TaskLockbox(clock)
    segments = SegmentMetadata(store)
    deep = FsDeepStorage.from_uri(f"file://{tmp_path / 'deep'}")
    handler = TaskActionHandler(
        lockbox=lockbox,
        segments=segments,
        deep_storage=deep,
        clock=clock,
        active={},
        force_time_chunk_lock=False,
        batch_segment_allocation=False,
        on_locks_changed=lambda _task_id: None,
    )
    yield Env(handler, lockbox, segments, deep, clock)
    store.close()


def publish(env: Env, task_id: str, *segs: dict[str, Any], drop: tuple[dict[str, Any], ...] = ()) -> Any:
    action = {"type": "segmentTransactionalInsert", "segments": list(segs), "segmentsToBeDropped": list(drop)}
    return env.act(task_id, action)


# -- locks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lockAcquire", "lockTryAcquire"])
def test_lock_with_a_caller_chosen_version_is_refused(env: Env, kind: str) -> None:
    a = env.task("a")
    with pytest.raises(InvalidInput, match=r"action\.version.*Overlord chooses"):
        env.act(a, {"type": kind, "interval": "1000-01-01/3000-01-01", "version": "9999-12-31"})
    assert env.act(a, {"type": "lockList"}) == []


def test_lock_on_another_data_source_is_refused(env: Env) -> None:
    a = env.task("a")
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\].*own data source"):
        env.act(a, {"type": "lockTryAcquire", "interval": DAY, "dataSource": "other"})
    assert env.lockbox.all_locks() == []


def test_task_without_a_data_source_gets_no_lock(env: Env) -> None:
    n = env.task("noop", None)
    with pytest.raises(ActionNotPermitted, match="has no dataSource"):
        env.act(n, {"type": "lockTryAcquire", "interval": DAY})


def test_segment_lock_takes_the_version_of_the_existing_segment_only(env: Env) -> None:
    a = env.task("a")
    env.stored(env.segment("wiki", DAY, "2023-06-01T00:00:00.000Z", 0))
    seg_lock = {"type": "lockTryAcquire", "interval": DAY, "granularity": "segment", "partitionId": 0}
    with pytest.raises(InvalidInput, match="not the version of the used segment"):
        env.act(a, {**seg_lock, "version": "9999-12-31"})
    with pytest.raises(InvalidInput, match="no used segment"):
        env.act(a, {**seg_lock, "partitionId": 7})
    got = env.act(a, seg_lock)
    assert got["version"] == "2023-06-01T00:00:00.000Z" and got["partitionId"] == 0


def test_release_only_lets_go_of_the_callers_own_hold(env: Env) -> None:
    parent = env.task("parent")
    child = env.task("child", group="parent")
    stranger = env.task("stranger")
    lock = env.act(parent, {"type": "lockAcquire", "interval": DAY})
    assert env.act(child, {"type": "lockTryAcquire", "interval": DAY}) == lock  # shared with its group

    env.act(stranger, {"type": "lockRelease", "interval": DAY})  # not the stranger's: nothing happens
    env.act(child, {"type": "lockRelease", "interval": DAY})  # the child lets go of its own hold only
    assert env.act(parent, {"type": "lockList"}) == [lock]
    assert env.act(child, {"type": "lockList"}) == []
    assert env.act(stranger, {"type": "lockTryAcquire", "interval": DAY}) is None  # still held by parent
    env.act(parent, {"type": "lockRelease", "interval": DAY})
    assert env.act(stranger, {"type": "lockTryAcquire", "interval": DAY}) is not None


# -- allocation ------------------------------------------------------------------------------------


def test_allocate_in_another_data_source_is_refused(env: Env) -> None:
    a = env.task("a")
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\]"):
        env.act(a, {"type": "segmentAllocate", "dataSource": "other", "timestamp": "2024-01-01T05:00:00Z"})
    assert env.segments.pending_segments("other", Interval.parse(DAY)) == []
    assert env.lockbox.all_locks() == []


@pytest.mark.parametrize(
    "gran",
    [
        "PT6H",
        {"type": "period", "period": "PT6H"},
        {"type": "period", "period": "PT6H", "timeZone": "UTC", "origin": None},
    ],
)
def test_allocate_with_a_period_granularity_appends_to_existing_data(env: Env, gran: object) -> None:
    """Regression: ``"PT6H"`` (and its period object) failed: "Invalid field [action.preferredSegmentGranularity]"."""
    six = "2024-01-01T06:00:00.000Z/2024-01-01T12:00:00.000Z"
    existing = "2023-01-01T00:00:00.000Z"  # older than the lock the allocation takes
    env.stored(env.segment("wiki", six, existing, 0))
    a = env.task("a")
    alloc = {"type": "segmentAllocate", "timestamp": "2024-01-01T07:30:00Z", "preferredSegmentGranularity": gran,
             "sequenceName": "s", "previousSegmentId": None}  # fmt: skip
    got = env.act(a, alloc)
    assert got["interval"] == six and got["version"] == existing and got["shardSpec"]["partitionNum"] == 1
    fresh = env.act(a, {**alloc, "timestamp": "2024-01-01T13:00:00Z", "sequenceName": "t"})
    assert fresh["interval"] == "2024-01-01T12:00:00.000Z/2024-01-01T18:00:00.000Z"
    assert fresh["shardSpec"]["partitionNum"] == 0
    out = publish(env, a, env.segment("wiki", six, existing, 1))
    assert out["success"] is True and len(env.used("wiki", six)) == 2


@pytest.mark.parametrize(("gran", "why"), [("FORTNIGHT", "unknown granularity"), ("NONE", "not a segment granularity")])
def test_allocate_with_a_bad_granularity_names_the_field(env: Env, gran: str, why: str) -> None:
    a = env.task("a")
    with pytest.raises(InvalidInput, match=rf"action\.preferredSegmentGranularity.*{why}"):
        env.act(
            a, {"type": "segmentAllocate", "timestamp": "2024-01-01T05:00:00Z", "preferredSegmentGranularity": gran}
        )


# -- publishing ------------------------------------------------------------------------------------


def test_publish_into_another_data_source_is_refused(env: Env) -> None:
    a = env.task("a")
    lock = env.act(a, {"type": "lockAcquire", "interval": DAY})
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\]"):
        publish(env, a, env.segment("other", DAY, lock["version"]))
    env.stored(env.segment("other", DAY, "2023-01-01T00:00:00.000Z"))
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\]"):  # nor drop another's segment
        publish(
            env,
            a,
            env.segment("wiki", DAY, lock["version"]),
            drop=(env.segment("other", DAY, "2023-01-01T00:00:00.000Z"),),
        )
    assert env.used("wiki") == [] and len(env.used("other")) == 1


@pytest.mark.parametrize(
    "load_spec",
    [
        {"type": "local", "path": "/etc/passwd"},
        {"type": "local", "path": "DEEP/../../etc/passwd"},
        {"type": "local", "path": "DEEP"},
        {"type": "local", "path": "wiki/x/index.parquet"},
        {"type": "hdfs", "path": "DEEP/wiki/x/index.parquet"},
        {},
    ],
)
def test_publish_with_a_load_spec_outside_deep_storage_is_refused(env: Env, load_spec: dict[str, Any]) -> None:
    a = env.task("a")
    lock = env.act(a, {"type": "lockAcquire", "interval": DAY})
    spec = {k: v.replace("DEEP", env.deep.base) for k, v in load_spec.items()}
    with pytest.raises(ActionNotPermitted, match="does not point inside deep storage"):
        publish(env, a, env.segment("wiki", DAY, lock["version"], loadSpec=spec))
    assert env.used("wiki") == []


def test_publish_outside_the_callers_locks_is_refused(env: Env) -> None:
    a = env.task("a")
    with pytest.raises(LockError, match="holds no lock"):
        publish(env, a, env.segment("wiki", DAY, "2024-01-01T00:00:00.000Z"))
    lock = env.act(a, {"type": "lockAcquire", "interval": DAY})
    with pytest.raises(LockError, match="holds no lock"):  # another interval
        publish(env, a, env.segment("wiki", NEXT_DAY, lock["version"]))
    with pytest.raises(LockError, match="holds no lock covering segment"):  # a version newer than its lock
        publish(env, a, env.segment("wiki", DAY, "9999-12-31T00:00:00.000Z"))
    other = env.task("b")
    with pytest.raises(LockError, match="holds no lock"):  # someone else's lock is not the caller's
        publish(env, other, env.segment("wiki", DAY, lock["version"]))
    assert env.used("wiki") == []
    assert publish(env, a, env.segment("wiki", DAY, lock["version"]))["success"] is True


def test_publish_under_a_revoked_lock_is_refused(env: Env) -> None:
    low = env.task("low", priority=10)
    lock = env.act(low, {"type": "lockAcquire", "interval": DAY})
    high = env.task("high", priority=90)
    assert env.act(high, {"type": "lockTryAcquire", "interval": DAY}) is not None  # preempts low
    with pytest.raises(LockError, match="revoked"):
        publish(env, low, env.segment("wiki", DAY, lock["version"]))
    assert env.used("wiki") == []


def test_a_segment_lock_covers_only_its_own_partition(env: Env) -> None:
    version = "2023-06-01T00:00:00.000Z"
    env.stored(env.segment("wiki", DAY, version, 0), env.segment("wiki", DAY, version, 1))
    a = env.task("a")
    env.act(a, {"type": "lockTryAcquire", "interval": DAY, "granularity": "segment", "partitionId": 0})
    with pytest.raises(LockError, match=r"holds no lock covering segment\[.*_1\]"):
        publish(env, a, env.segment("wiki", DAY, version, 1))


# -- reading, marking unused and nuking -------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        {"type": "segmentListUsed", "dataSource": "other", "intervals": [DAY]},
        {"type": "retrieveUnusedSegments", "dataSource": "other", "interval": DAY},
    ],
)
def test_reading_another_data_source_is_refused(env: Env, action: dict[str, Any]) -> None:
    a = env.task("a")
    env.stored(env.segment("other", DAY, "2023-01-01T00:00:00.000Z"))
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\]"):
        env.act(a, action)


def test_mark_unused_in_another_data_source_is_refused_even_under_the_callers_lock(env: Env) -> None:
    env.stored(env.segment("other", DAY, "2023-01-01T00:00:00.000Z"))
    a = env.task("a")
    env.act(a, {"type": "lockAcquire", "interval": DAY})
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\]"):
        env.act(a, {"type": "markSegmentsAsUnused", "dataSource": "other", "interval": DAY})
    assert len(env.used("other")) == 1


def test_mark_unused_needs_the_callers_exclusive_lock_on_the_interval(env: Env) -> None:
    env.stored(env.segment("wiki", DAY, "2023-01-01T00:00:00.000Z"))
    a = env.task("a")
    mark = {"type": "markSegmentsAsUnused", "dataSource": "wiki", "interval": DAY}
    with pytest.raises(LockError, match=r"holds no lock covering interval.*markSegmentsAsUnused"):
        env.act(a, mark)
    env.act(a, {"type": "lockAcquire", "interval": NEXT_DAY})
    with pytest.raises(LockError, match="holds no lock"):
        env.act(a, mark)
    reader = env.task("reader")
    env.act(reader, {"type": "lockAcquire", "interval": DAY, "lockType": "SHARED"})
    with pytest.raises(ActionNotPermitted, match="only under an EXCLUSIVE/REPLACE lock"):
        env.act(reader, mark)
    assert len(env.used("wiki")) == 1


def _unused(env: Env, ds: str, interval: str, version: str) -> dict[str, Any]:
    seg = env.segment(ds, interval, version)
    env.stored(seg)
    env.segments.mark_unused(ds, Interval.parse(interval), env.clock.now_ms())
    return seg


def test_nuke_in_another_data_source_is_refused(env: Env) -> None:
    theirs = _unused(env, "other", DAY, "2023-01-01T00:00:00.000Z")
    a = env.task("a")
    env.act(a, {"type": "lockAcquire", "interval": DAY})
    with pytest.raises(ActionNotPermitted, match=r"dataSource\[other\]"):
        env.act(a, {"type": "segmentNuke", "segments": [theirs]})
    assert len(env.segments.unused_segments("other", Interval.parse(DAY))) == 1


def test_nuke_needs_the_callers_exclusive_lock(env: Env) -> None:
    mine = _unused(env, "wiki", DAY, "2023-01-01T00:00:00.000Z")
    a = env.task("a")
    with pytest.raises(LockError, match=r"holds no lock covering interval.*segmentNuke"):
        env.act(a, {"type": "segmentNuke", "segments": [mine]})
    env.act(a, {"type": "lockAcquire", "interval": DAY, "lockType": "SHARED"})
    with pytest.raises(ActionNotPermitted, match="only under an EXCLUSIVE/REPLACE lock"):
        env.act(a, {"type": "segmentNuke", "segments": [mine]})
    assert len(env.segments.unused_segments("wiki", Interval.parse(DAY))) == 1
    b = env.task("b")
    env.act(b, {"type": "lockAcquire", "interval": DAY, "lockType": "SHARED"})
    env.act(a, {"type": "lockRelease", "interval": DAY})
    env.act(b, {"type": "lockRelease", "interval": DAY})
    env.act(a, {"type": "lockAcquire", "interval": DAY})
    assert env.act(a, {"type": "segmentNuke", "segments": [mine]}) == {"numDeleted": 1}


def test_nuke_or_drop_of_a_look_alike_identifier_leaves_the_other_data_source_alone(env: Env) -> None:
    """``other``'s segment id ``wiki_<DAY>_<Feb>_v1`` spelled as a ``wiki`` segment of DAY with version
    ``<Feb>_v1``: the store deletes by identifier, the handler must not pass it on."""
    other_ds = "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z"
    feb = "2024-02-01T00:00:00.000Z/2024-02-02T00:00:00.000Z"
    theirs = _unused(env, other_ds, feb, "v1")
    look_alike = env.segment("wiki", DAY, "2024-02-01T00:00:00.000Z_2024-02-02T00:00:00.000Z_v1")
    assert DataSegment.from_json(look_alike).identifier == DataSegment.from_json(theirs).identifier
    a = env.task("a")
    lock = env.act(a, {"type": "lockAcquire", "interval": DAY})
    assert env.act(a, {"type": "segmentNuke", "segments": [look_alike]}) == {"numDeleted": 0}
    assert len(env.segments.unused_segments(other_ds, Interval.parse(feb))) == 1

    used_theirs = env.segment(other_ds, feb, "v2")
    env.stored(used_theirs)
    spoof = env.segment("wiki", DAY, "2024-02-01T00:00:00.000Z_2024-02-02T00:00:00.000Z_v2")
    publish(env, a, env.segment("wiki", DAY, lock["version"]), drop=(spoof,))
    assert env.used(other_ds, feb) == [DataSegment.from_json(used_theirs).identifier]
