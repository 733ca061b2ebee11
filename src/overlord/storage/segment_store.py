"""Segment metadata, pending segments and persisted task locks: the tables task actions write.

Publishing is one transaction: the new segments become used and every used segment they
overshadow (computed with the timeline over the affected time range) becomes unused, so a
reader never sees both an old version and its replacement, nor neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from overlord.core.data_segment import DataSegment, PendingSegment
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.isotime import Interval
from overlord.storage.metadata import MetadataStore, pending_segments, segments, task_locks


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
        "payload": orjson.dumps(seg.to_json()).decode(),
    }


def _overlapping(q: Any, interval: Interval | None) -> Any:
    if interval is None:
        return q
    return q.where(segments.c.start_ms < interval.end, segments.c.end_ms > interval.start)


class SegmentMetadata:
    """Segments of every data source, on the same engine as the task rows.

    It remembers which tasks have stored locks and which task groups have pending segments (read
    once at start, then kept up to date: the Overlord is the only writer), so that the clean-up run
    at every task's end costs no write transaction for the many tasks that had neither.
    """

    def __init__(self, store: MetadataStore) -> None:
        self.engine = store.engine
        with self.engine.connect() as conn:
            self._tasks_with_locks = {r[0] for r in conn.execute(sa.select(task_locks.c.task_id).distinct())}
            q = sa.select(pending_segments.c.task_group).distinct().where(pending_segments.c.task_group.is_not(None))
            self._groups_with_pending = {r[0] for r in conn.execute(q)}

    # -- reads -----------------------------------------------------------------------------------

    def used_segments(self, data_source: str, interval: Interval | None = None) -> list[DataSegment]:
        """Used segments overlapping ``interval`` (overshadowed ones included until marked unused)."""
        q = sa.select(segments.c.payload).where(segments.c.datasource == data_source, segments.c.used.is_(True))
        with self.engine.connect() as conn:
            rows = conn.execute(_overlapping(q, interval).order_by(segments.c.start_ms, segments.c.id))
            return [DataSegment.from_json(orjson.loads(r[0])) for r in rows]

    def visible_segments(self, data_source: str, intervals: Sequence[Interval] | None = None) -> list[DataSegment]:
        """What a query would read: used segments not overshadowed, per the timeline."""
        found: dict[str, DataSegment] = {}
        for iv in intervals or [None]:  # type: ignore[list-item]
            for seg in self.used_segments(data_source, iv):
                found[seg.identifier] = seg
        timeline = VersionedIntervalTimeline(found.values())
        visible = timeline.visible_segments()
        wanted = list(intervals) if intervals else None
        return sorted(
            (s for s in visible if wanted is None or any(s.interval.overlaps(iv) for iv in wanted)),
            key=lambda s: (s.interval.start, s.version, s.partition_num),
        )

    def unused_segments(self, data_source: str, interval: Interval) -> list[DataSegment]:
        """Unused segments wholly inside ``interval`` (what a kill task may delete)."""
        q = sa.select(segments.c.payload).where(
            segments.c.datasource == data_source,
            segments.c.used.is_(False),
            segments.c.start_ms >= interval.start,
            segments.c.end_ms <= interval.end,
        )
        with self.engine.connect() as conn:
            return [DataSegment.from_json(orjson.loads(r[0])) for r in conn.execute(q.order_by(segments.c.id))]

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

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, new: Sequence[DataSegment], drop: Sequence[DataSegment], now_ms: int) -> list[DataSegment]:
        """Insert ``new`` as used, mark ``drop`` unused, and mark what ``new`` overshadows unused,
        in one transaction. Returns the segments that were marked unused."""
        marked: list[DataSegment] = []
        with self.engine.begin() as conn:
            by_ds: dict[str, list[DataSegment]] = {}
            for seg in new:
                by_ds.setdefault(seg.data_source, []).append(seg)
            if new:
                conn.execute(segments.insert(), [_seg_values(s, now_ms) for s in new])
            for ds, segs in by_ds.items():
                span = Interval(min(s.interval.start for s in segs), max(s.interval.end for s in segs))
                q = sa.select(segments.c.payload).where(segments.c.datasource == ds, segments.c.used.is_(True))
                current = [DataSegment.from_json(orjson.loads(r[0])) for r in conn.execute(_overlapping(q, span))]
                timeline = VersionedIntervalTimeline(current)
                marked.extend(s for s in timeline.find_overshadowed() if s not in segs)
            marked.extend(drop)
            ids = sorted({s.identifier for s in marked})
            if ids:
                conn.execute(
                    segments.update()
                    .where(segments.c.id.in_(ids))
                    .values(used=False, used_status_last_updated_ms=now_ms)
                )
        return marked

    def mark_unused(self, data_source: str, interval: Interval, now_ms: int) -> int:
        q = segments.update().where(
            segments.c.datasource == data_source,
            segments.c.used.is_(True),
            segments.c.start_ms >= interval.start,
            segments.c.end_ms <= interval.end,
        )
        with self.engine.begin() as conn:
            return int(conn.execute(q.values(used=False, used_status_last_updated_ms=now_ms)).rowcount or 0)

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
        q = sa.select(pending_segments.c.payload).where(
            pending_segments.c.datasource == data_source,
            pending_segments.c.start_ms < interval.end,
            pending_segments.c.end_ms > interval.start,
        )
        with self.engine.connect() as conn:
            return [PendingSegment.from_json(orjson.loads(r[0])) for r in conn.execute(q)]

    def insert_pending(self, pending: Sequence[PendingSegment], group_of: dict[str, str], now_ms: int) -> None:
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
                "payload": orjson.dumps(p.to_json()).decode(),
            }
            for p in pending
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(pending_segments.insert(), rows)
            self._groups_with_pending.update(r["task_group"] for r in rows if r["task_group"] is not None)

    def delete_pending_of_group(self, group_id: str) -> int:
        if group_id not in self._groups_with_pending:
            return 0
        self._groups_with_pending.discard(group_id)
        with self.engine.begin() as conn:
            q = pending_segments.delete().where(pending_segments.c.task_group == group_id)
            return int(conn.execute(q).rowcount or 0)

    # -- task locks ------------------------------------------------------------------------------

    def save_task_locks(self, task_id: str, entries: Sequence[dict[str, Any]]) -> None:
        """Replace the stored locks of one task (lockbox snapshot entries)."""
        if not entries and task_id not in self._tasks_with_locks:
            return
        with self.engine.begin() as conn:
            conn.execute(task_locks.delete().where(task_locks.c.task_id == task_id))
            if entries:
                conn.execute(
                    task_locks.insert(),
                    [
                        {"task_id": task_id, "seq": i, "payload": orjson.dumps(e).decode()}
                        for i, e in enumerate(entries)
                    ],
                )
        if entries:
            self._tasks_with_locks.add(task_id)
        else:
            self._tasks_with_locks.discard(task_id)

    def load_task_locks(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(task_locks.c.payload).order_by(task_locks.c.task_id, task_locks.c.seq))
            return [orjson.loads(r[0]) for r in rows]

    def delete_task_locks(self, task_ids: Iterable[str]) -> None:
        ids = [t for t in task_ids if t in self._tasks_with_locks]
        self._tasks_with_locks.difference_update(ids)
        if ids:
            with self.engine.begin() as conn:
                conn.execute(task_locks.delete().where(task_locks.c.task_id.in_(ids)))

    def delete_pending_segments(self, datasource: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(pending_segments.delete().where(pending_segments.c.datasource == datasource))
            return int(result.rowcount or 0)
