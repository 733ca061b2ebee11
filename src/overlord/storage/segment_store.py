"""Segment metadata, pending segments and per-data-source metadata: the tables task actions write.

Publishing is one transaction: the new segments become used, every used segment they overshadow
(computed with the timeline over the affected time range) becomes unused, and the data source's
metadata record is compare-and-swapped, so a reader never sees both an old version and its
replacement, nor neither, nor segments without the stream offsets that produced them.

The rules that are not SQL (what a publish overshadows, what a query sees, when a metadata swap
conflicts) are plain functions here, shared with the in-memory twin in ``overlord.testing.stores``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from overlord.core.data_segment import DataSegment, PendingSegment
from overlord.core.protocols import DataSourceMetadataUpdate
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.errors import AlreadyExists, InvalidInput, MetadataConflict
from overlord.isotime import Interval
from overlord.storage.lock_store import SqlLockStore
from overlord.storage.metadata import MetadataStore, pending_segments, segments
from overlord.storage.schema_segments import datasource_metadata

if TYPE_CHECKING:
    from overlord.core.protocols import SegmentStore


# -- rules shared with the in-memory twin ----------------------------------------------------------


def spans_by_datasource(segs: Iterable[DataSegment]) -> dict[str, Interval]:
    """Per data source, the smallest interval covering the given segments (where a publish can overshadow)."""
    spans: dict[str, Interval] = {}
    for s in segs:
        old = spans.get(s.data_source)
        spans[s.data_source] = (
            s.interval if old is None else Interval(min(old.start, s.interval.start), max(old.end, s.interval.end))
        )
    return spans


def overshadowed_by(new: Sequence[DataSegment], used_near: Iterable[DataSegment]) -> list[DataSegment]:
    """The used segments that ``new`` leaves fully overshadowed.

    ``used_near`` is every used segment of new's data source over its span, ``new`` included.
    """
    fresh = set(new)
    return [s for s in VersionedIntervalTimeline(used_near).find_overshadowed() if s not in fresh]


def visible_among(used: Iterable[DataSegment], intervals: Sequence[Interval] | None) -> list[DataSegment]:
    """What a query over ``intervals`` (everything when None) reads among ``used``, in time order."""
    visible = VersionedIntervalTimeline(used).visible_segments()
    return sorted(
        (s for s in visible if not intervals or any(s.interval.overlaps(iv) for iv in intervals)),
        key=lambda s: (s.interval.start, s.version, s.partition_num),
    )


def usable_again(candidates: Sequence[DataSegment], used_near: Iterable[DataSegment]) -> list[DataSegment]:
    """The unused ``candidates`` that, marked used beside ``used_near``, no segment would overshadow."""
    shadowed = VersionedIntervalTimeline([*used_near, *candidates]).find_overshadowed()
    return [s for s in candidates if s not in shadowed]


def metadata_datasource(new: Sequence[DataSegment], drop: Sequence[DataSegment]) -> str:
    """The one data source a publish with a metadata swap is about (Druid's action has exactly one)."""
    names = {s.data_source for s in [*new, *drop]}
    if len(names) != 1:
        raise InvalidInput(
            f"A publish with dataSource metadata needs segments of exactly one dataSource, got {sorted(names)}"
        )
    return names.pop()


def check_metadata(data_source: str, stored: dict[str, Any] | None, update: DataSourceMetadataUpdate) -> None:
    """Raise MetadataConflict unless the stored record is the one the publisher started from."""
    if stored != update.expected:
        raise MetadataConflict(
            f"Inconsistent metadata state for dataSource[{data_source}]: "
            f"stored [{_dumps(stored)}], expected [{_dumps(update.expected)}]; nothing was published",
            dataSource=data_source,
        )


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# -- SQL -------------------------------------------------------------------------------------------


def _seg_values(seg: DataSegment, now_ms: int) -> dict[str, Any]:
    return {
        "id": seg.identifier,
        "datasource": seg.data_source,
        "start_ms": seg.interval.start,
        "end_ms": seg.interval.end,
        "version": seg.version,
        "partition_num": seg.partition_num,
        "used": True,
        "created_ms": now_ms,
        "used_status_last_updated_ms": now_ms,
        "payload": _dumps(seg.to_json()),
    }


def _overlapping(q: Any, interval: Interval | None) -> Any:
    if interval is None:
        return q
    return q.where(segments.c.start_ms < interval.end, segments.c.end_ms > interval.start)


def _segments_of(conn: Connection, q: Any) -> list[DataSegment]:
    return [DataSegment.from_json(orjson.loads(r[0])) for r in conn.execute(q)]


def delete_pending_where(engine: Engine, condition: Any) -> int:
    """The one place pending segments are deleted (by task group, or all of a data source)."""
    with engine.begin() as conn:
        return int(conn.execute(pending_segments.delete().where(condition)).rowcount or 0)


class SqlSegmentStore:
    """Segments of every data source, on the same engine as the task rows; satisfies ``SegmentStore``.

    It remembers which task groups have pending segments (read once at start, then kept up to date:
    the Overlord is the only writer), so the clean-up at every task's end costs no write transaction
    for the many tasks that allocated none. Task locks are kept by ``SqlLockStore`` and reached
    through the three lock methods here, which the protocol names.
    """

    def __init__(self, store: MetadataStore, locks: SqlLockStore | None = None) -> None:
        self.engine = store.engine
        self.locks = locks if locks is not None else SqlLockStore(self.engine)
        with self.engine.connect() as conn:
            q = sa.select(pending_segments.c.task_group).distinct().where(pending_segments.c.task_group.is_not(None))
            self._groups_with_pending = {r[0] for r in conn.execute(q)}

    # -- reads -----------------------------------------------------------------------------------

    def used_segments(self, data_source: str, interval: Interval | None = None) -> list[DataSegment]:
        """Used segments overlapping ``interval`` (overshadowed ones included until marked unused)."""
        q = sa.select(segments.c.payload).where(segments.c.datasource == data_source, segments.c.used.is_(True))
        with self.engine.connect() as conn:
            return _segments_of(conn, _overlapping(q, interval).order_by(segments.c.start_ms, segments.c.id))

    def visible_segments(self, data_source: str, intervals: Sequence[Interval] | None = None) -> list[DataSegment]:
        """What a query would read: used segments not overshadowed, per the timeline."""
        found: dict[str, DataSegment] = {}
        windows: list[Interval | None] = list(intervals) if intervals else [None]
        for iv in windows:
            for seg in self.used_segments(data_source, iv):
                found[seg.identifier] = seg
        return visible_among(found.values(), intervals)

    def unused_segments(self, data_source: str, interval: Interval) -> list[DataSegment]:
        """Unused segments wholly inside ``interval`` (what a kill task may delete)."""
        q = sa.select(segments.c.payload).where(
            segments.c.datasource == data_source,
            segments.c.used.is_(False),
            segments.c.start_ms >= interval.start,
            segments.c.end_ms <= interval.end,
        )
        with self.engine.connect() as conn:
            return _segments_of(conn, q.order_by(segments.c.id))

    def datasources(self, *, include_unused: bool = False) -> list[str]:
        q = sa.select(segments.c.datasource).distinct()
        if not include_unused:
            q = q.where(segments.c.used.is_(True))
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(q))

    def segment(self, data_source: str, segment_id: str) -> tuple[DataSegment, bool] | None:
        q = sa.select(segments.c.payload, segments.c.used).where(
            segments.c.datasource == data_source, segments.c.id == segment_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return (DataSegment.from_json(orjson.loads(row[0])), bool(row[1])) if row else None

    def datasource_metadata(self, data_source: str) -> dict[str, Any] | None:
        """The committed metadata record of a data source (stream offsets), None when there is none."""
        q = sa.select(datasource_metadata.c.payload).where(datasource_metadata.c.datasource == data_source)
        with self.engine.connect() as conn:
            text = conn.execute(q).scalar()
        return orjson.loads(text) if text is not None else None

    # -- publishing ------------------------------------------------------------------------------

    def publish(
        self,
        new: Sequence[DataSegment],
        drop: Sequence[DataSegment],
        now_ms: int,
        metadata: DataSourceMetadataUpdate | None = None,
    ) -> list[DataSegment]:
        """Insert ``new`` as used, mark ``drop`` and what ``new`` overshadows unused, and swap the data
        source's metadata, in one transaction. Returns the segments that were marked unused.

        A segment whose id is already stored is skipped, as Druid does, so a publish retried after a
        lost answer is harmless; a stale ``metadata.expected`` raises MetadataConflict, writing nothing.
        """
        marked: list[DataSegment] = []
        with self.engine.begin() as conn:
            if metadata is not None:
                self._swap_metadata(conn, metadata_datasource(new, drop), metadata, now_ms)
            fresh = self._not_stored(conn, new)
            if fresh:
                conn.execute(segments.insert(), [_seg_values(s, now_ms) for s in fresh])
            for ds, span in spans_by_datasource(fresh).items():
                q = sa.select(segments.c.payload).where(segments.c.datasource == ds, segments.c.used.is_(True))
                marked.extend(overshadowed_by(fresh, _segments_of(conn, _overlapping(q, span))))
            marked.extend(drop)
            ids = sorted({s.identifier for s in marked})
            if ids:
                conn.execute(
                    segments.update()
                    .where(segments.c.id.in_(ids))
                    .values(used=False, used_status_last_updated_ms=now_ms)
                )
        return marked

    @staticmethod
    def _not_stored(conn: Connection, new: Sequence[DataSegment]) -> list[DataSegment]:
        by_id = {s.identifier: s for s in new}
        if not by_id:
            return []
        stored = {r[0] for r in conn.execute(sa.select(segments.c.id).where(segments.c.id.in_(sorted(by_id))))}
        return [s for i, s in by_id.items() if i not in stored]

    @staticmethod
    def _swap_metadata(conn: Connection, data_source: str, update: DataSourceMetadataUpdate, now_ms: int) -> None:
        """Compare-and-swap in SQL too: the update matches the exact text read, so a concurrent writer
        that changed the record in between makes this one conflict rather than overwrite it."""
        table = datasource_metadata
        by_ds = table.c.datasource == data_source
        stored = conn.execute(sa.select(table.c.payload).where(by_ds)).scalar()
        check_metadata(data_source, orjson.loads(stored) if stored is not None else None, update)
        values = {"payload": _dumps(update.new), "updated_ms": now_ms}
        if stored is None:
            try:
                conn.execute(table.insert().values(datasource=data_source, **values))
            except IntegrityError:
                raise MetadataConflict(f"dataSource[{data_source}] metadata was written concurrently") from None
        elif conn.execute(table.update().where(by_ds, table.c.payload == stored).values(**values)).rowcount != 1:
            raise MetadataConflict(f"dataSource[{data_source}] metadata was written concurrently")

    def mark_unused(self, data_source: str, interval: Interval, now_ms: int) -> int:
        """Mark unused every used segment wholly inside ``interval``; returns how many."""
        q = segments.update().where(
            segments.c.datasource == data_source,
            segments.c.used.is_(True),
            segments.c.start_ms >= interval.start,
            segments.c.end_ms <= interval.end,
        )
        with self.engine.begin() as conn:
            return int(conn.execute(q.values(used=False, used_status_last_updated_ms=now_ms)).rowcount or 0)

    def mark_segments_unused(self, data_source: str, segment_ids: Sequence[str], now_ms: int) -> int:
        if not segment_ids:
            return 0
        q = segments.update().where(
            segments.c.datasource == data_source, segments.c.used.is_(True), segments.c.id.in_(list(segment_ids))
        )
        with self.engine.begin() as conn:
            return int(conn.execute(q.values(used=False, used_status_last_updated_ms=now_ms)).rowcount or 0)

    def mark_used(
        self, data_source: str, now_ms: int, *, interval: Interval | None = None, segment_ids: Sequence[str] = ()
    ) -> int:
        q = sa.select(segments.c.payload).where(segments.c.datasource == data_source, segments.c.used.is_(False))
        if interval is not None:
            q = q.where(segments.c.start_ms >= interval.start, segments.c.end_ms <= interval.end)
        elif segment_ids:
            q = q.where(segments.c.id.in_(list(segment_ids)))
        else:
            return 0
        with self.engine.begin() as conn:
            candidates = _segments_of(conn, q)
            if not candidates:
                return 0
            span = spans_by_datasource(candidates)[data_source]
            used_q = sa.select(segments.c.payload).where(
                segments.c.datasource == data_source, segments.c.used.is_(True)
            )
            revive = usable_again(candidates, _segments_of(conn, _overlapping(used_q, span)))
            if revive:
                conn.execute(
                    segments.update()
                    .where(segments.c.id.in_([s.identifier for s in revive]))
                    .values(used=True, used_status_last_updated_ms=now_ms)
                )
        return len(revive)

    def nuke(self, segs: Iterable[DataSegment]) -> int:
        """Delete the metadata of unused segments; a used one is never deleted."""
        ids = [s.identifier for s in segs]
        if not ids:
            return 0
        with self.engine.begin() as conn:
            q = segments.delete().where(segments.c.id.in_(ids), segments.c.used.is_(False))
            return int(conn.execute(q).rowcount or 0)

    # -- pending segments ------------------------------------------------------------------------

    def pending_segments(self, data_source: str, interval: Interval) -> list[PendingSegment]:
        """Pending segments of a data source overlapping ``interval``, by id."""
        q = sa.select(pending_segments.c.payload).where(
            pending_segments.c.datasource == data_source,
            pending_segments.c.start_ms < interval.end,
            pending_segments.c.end_ms > interval.start,
        )
        with self.engine.connect() as conn:
            return [
                PendingSegment.from_json(orjson.loads(r[0])) for r in conn.execute(q.order_by(pending_segments.c.id))
            ]

    def insert_pending(self, pending: Sequence[PendingSegment], group_of: dict[str, str], now_ms: int) -> None:
        """Store allocated ids; ``group_of`` maps allocating task ids to their groups (for the clean-up).
        An id already stored raises AlreadyExists and nothing is written."""
        rows = [
            {
                "id": str(p.id),
                "datasource": p.id.data_source,
                "created_ms": now_ms,
                "start_ms": p.id.interval.start,
                "end_ms": p.id.interval.end,
                "sequence_name": p.sequence_name,
                "sequence_prev_id": p.previous_segment_id or "",
                "task_group": group_of.get(p.task_allocator_id),
                "task_id": p.task_allocator_id,
                "payload": _dumps(p.to_json()),
            }
            for p in pending
        ]
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(pending_segments.insert(), rows)
        except IntegrityError:
            raise AlreadyExists("A pending segment with one of these ids already exists") from None
        self._groups_with_pending.update(r["task_group"] for r in rows if r["task_group"] is not None)

    def delete_pending_of_group(self, group_id: str) -> int:
        if group_id not in self._groups_with_pending:
            return 0
        self._groups_with_pending.discard(group_id)
        return delete_pending_where(self.engine, pending_segments.c.task_group == group_id)

    def delete_pending_segments(self, data_source: str, created_in: Interval | None = None) -> int:
        """Pending segments of a data source created within ``created_in`` (``DELETE /pendingSegments``)."""
        condition = pending_segments.c.datasource == data_source
        if created_in is not None:
            condition = sa.and_(
                condition,
                pending_segments.c.created_ms >= created_in.start,
                pending_segments.c.created_ms < created_in.end,
            )
        return delete_pending_where(self.engine, condition)

    # -- task locks (SqlLockStore) ---------------------------------------------------------------

    def save_task_locks(self, task_id: str, entries: Sequence[dict[str, Any]]) -> None:
        self.locks.save_task_locks(task_id, entries)

    def load_task_locks(self) -> list[dict[str, Any]]:
        return self.locks.load_task_locks()

    def delete_task_locks(self, task_ids: Iterable[str]) -> None:
        self.locks.delete_task_locks(task_ids)


SegmentMetadata = SqlSegmentStore
"""The old name, until every caller says SqlSegmentStore."""

if TYPE_CHECKING:

    def _satisfies_protocol(store: SqlSegmentStore) -> SegmentStore:
        return store
