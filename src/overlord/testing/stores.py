"""In-memory twins of ``TaskStore`` and ``SegmentStore``: the same contract, no database.

They pass the same contract suites as the SQL stores (``tests/integration/test_*_store_contract.py``).
The rules that are not storage (overshadowing, visibility, the metadata compare-and-swap) come from
the functions ``overlord.storage.segment_store`` shares, so a twin cannot drift from the real rules.
Values are copied through JSON on the way in and out, as a database would, so a caller mutating
what it got back changes nothing stored. Each store has one lock: calls come from executor threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from overlord.core.data_segment import DataSegment, PendingSegment
from overlord.core.protocols import DataSourceMetadataUpdate, StatusRow
from overlord.core.task import TaskRecord, task_number
from overlord.errors import AlreadyExists
from overlord.isotime import Interval
from overlord.storage.segment_store import (
    check_metadata,
    metadata_datasource,
    overshadowed_by,
    spans_by_datasource,
    usable_again,
    visible_among,
)

if TYPE_CHECKING:
    from overlord.core.protocols import SegmentStore, TaskStore


def _copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def status_row(rec: TaskRecord) -> StatusRow:
    """A record's ``StatusRow``, as a SQL store would return it."""
    loc = rec.location
    return (
        rec.id, rec.group_id, rec.type, rec.datasource, rec.created_ms, rec.queue_insertion_ms, rec.status_code.value,
        rec.runner_state.value, rec.duration, rec.error_msg, loc.host, loc.port, loc.tls_port,
    )  # fmt: skip


class InMemoryTaskStore:
    """Task rows in a dict; satisfies ``TaskStore``."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._mutex = threading.Lock()

    @staticmethod
    def _out(rec: TaskRecord, with_payload: bool) -> TaskRecord:
        payload = _copy(rec.payload) if with_payload else None
        return rec.with_(headers=_copy(rec.headers), payload=payload)

    def insert_task(self, rec: TaskRecord) -> None:
        """Store a new task; a duplicate id raises AlreadyExists with Druid's message."""
        stored = rec.with_(headers=_copy(rec.headers), payload=_copy(rec.payload or {}))
        with self._mutex:
            if rec.id in self._tasks:
                raise AlreadyExists(f"Task[{rec.id}] already exists", taskId=rec.id)
            self._tasks[rec.id] = stored

    def bulk_insert_tasks(self, records: Iterable[TaskRecord]) -> None:
        """As the SQL store's: many rows at once (benchmarks and imports)."""
        for rec in records:
            self.insert_task(rec)

    def update_task(self, task_id: str, **changes: Any) -> None:
        """Write the given TaskRecord fields of one task; an unknown id changes nothing."""
        if "headers" in changes or "payload" in changes:
            changes = {k: _copy(v) if k in ("headers", "payload") else v for k, v in changes.items()}
        with self._mutex:
            rec = self._tasks.get(task_id)
            if rec is not None:
                self._tasks[task_id] = rec.with_(**changes)

    def get_task(self, task_id: str, *, with_payload: bool = False) -> TaskRecord | None:
        with self._mutex:
            rec = self._tasks.get(task_id)
        return self._out(rec, with_payload) if rec is not None else None

    def get_status_row(self, task_id: str) -> StatusRow | None:
        with self._mutex:
            rec = self._tasks.get(task_id)
        return status_row(rec) if rec is not None else None

    def get_task_by_number(self, number: int, *, with_payload: bool = False) -> TaskRecord | None:
        with self._mutex:
            found = next((r for r in self._tasks.values() if task_number(r.id) == number), None)
        return self._out(found, with_payload) if found is not None else None

    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        with self._mutex:
            found = [self._tasks[t] for t in dict.fromkeys(task_ids) if t in self._tasks]
        return [self._out(r, False) for r in found]

    def list_active(self, *, with_payload: bool = False) -> list[TaskRecord]:
        with self._mutex:
            active = [r for r in self._tasks.values() if r.active]
        return [self._out(r, with_payload) for r in sorted(active, key=lambda r: (r.queue_insertion_ms, r.id))]

    def list_complete(
        self,
        *,
        datasource: str | None = None,
        task_type: str | None = None,
        created_after_ms: int | None = None,
        created_before_ms: int | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        """Completed tasks, newest first, as Druid lists them."""
        with self._mutex:
            found = [
                r
                for r in self._tasks.values()
                if not r.active
                and (datasource is None or r.datasource == datasource)
                and (task_type is None or r.type == task_type)
                and (created_after_ms is None or r.created_ms >= created_after_ms)
                and (created_before_ms is None or r.created_ms < created_before_ms)
            ]
        found.sort(key=lambda r: (r.created_ms, r.id), reverse=True)
        return [self._out(r, False) for r in found[:limit]]

    def delete_complete_before(self, cutoff_ms: int) -> list[str]:
        with self._mutex:
            ids = [t for t, r in self._tasks.items() if not r.active and r.created_ms < cutoff_ms]
            for t in ids:
                del self._tasks[t]
        return ids

    def count_tasks(self) -> int:
        with self._mutex:
            return len(self._tasks)

    def close(self) -> None:
        """Nothing to release; the rows stay readable (an embedding may close and reopen)."""


@dataclass
class _Stored:
    segment: DataSegment
    used: bool


def _copy_segment(seg: DataSegment) -> DataSegment:
    return DataSegment.from_json(_copy(seg.to_json()))


class InMemorySegmentStore:
    """Segments, pending segments, task locks and data-source metadata in dicts; satisfies ``SegmentStore``."""

    def __init__(self) -> None:
        self._segments: dict[str, _Stored] = {}
        self._pending: dict[str, tuple[PendingSegment, str | None, int]] = {}  # segment, group, created
        self._locks: dict[str, list[dict[str, Any]]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._mutex = threading.Lock()

    # -- reads -----------------------------------------------------------------------------------

    def _used(self, data_source: str, interval: Interval | None) -> list[DataSegment]:
        found = [
            s.segment
            for s in self._segments.values()
            if s.used
            and s.segment.data_source == data_source
            and (interval is None or s.segment.interval.overlaps(interval))
        ]
        return sorted(found, key=lambda s: (s.interval.start, s.identifier))

    def used_segments(self, data_source: str, interval: Interval | None = None) -> list[DataSegment]:
        """Used segments overlapping ``interval`` (overshadowed ones included until marked unused)."""
        with self._mutex:
            return self._used(data_source, interval)

    def visible_segments(self, data_source: str, intervals: Sequence[Interval] | None = None) -> list[DataSegment]:
        with self._mutex:
            used = self._used(data_source, None)
        if intervals:
            used = [s for s in used if any(s.interval.overlaps(iv) for iv in intervals)]
        return visible_among(used, intervals)

    def unused_segments(self, data_source: str, interval: Interval) -> list[DataSegment]:
        """Unused segments wholly inside ``interval``."""
        with self._mutex:
            found = [
                s.segment
                for s in self._segments.values()
                if not s.used and s.segment.data_source == data_source and interval.contains(s.segment.interval)
            ]
        return sorted(found, key=lambda s: s.identifier)

    def datasources(self, *, include_unused: bool = False) -> list[str]:
        with self._mutex:
            return sorted({s.segment.data_source for s in self._segments.values() if include_unused or s.used})

    def segment(self, data_source: str, segment_id: str) -> tuple[DataSegment, bool] | None:
        with self._mutex:
            found = self._segments.get(segment_id)
        if found is None or found.segment.data_source != data_source:
            return None
        return found.segment, found.used

    def datasource_metadata(self, data_source: str) -> dict[str, Any] | None:
        with self._mutex:
            stored = self._metadata.get(data_source)
        return _copy(stored) if stored is not None else None

    # -- publishing ------------------------------------------------------------------------------

    def publish(
        self,
        new: Sequence[DataSegment],
        drop: Sequence[DataSegment],
        now_ms: int,
        metadata: DataSourceMetadataUpdate | None = None,
    ) -> list[DataSegment]:
        """As ``SqlSegmentStore.publish``: all or nothing, stored ids skipped, stale metadata refused."""
        with self._mutex:
            if metadata is not None:
                ds = metadata_datasource(new, drop)
                check_metadata(ds, self._metadata.get(ds), metadata)
                self._metadata[ds] = _copy(metadata.new)  # nothing below can fail: the rest is all-or-nothing too
            fresh = [s for s in {s.identifier: s for s in new}.values() if s.identifier not in self._segments]
            for seg in fresh:
                self._segments[seg.identifier] = _Stored(_copy_segment(seg), True)
            marked: list[DataSegment] = []
            for name, span in spans_by_datasource(fresh).items():
                marked.extend(overshadowed_by(fresh, self._used(name, span)))
            marked.extend(drop)
            for seg in marked:
                if seg.identifier in self._segments:
                    self._segments[seg.identifier].used = False
        return marked

    def mark_unused(self, data_source: str, interval: Interval, now_ms: int) -> int:
        with self._mutex:
            hit = [
                s
                for s in self._segments.values()
                if s.used and s.segment.data_source == data_source and interval.contains(s.segment.interval)
            ]
            for s in hit:
                s.used = False
        return len(hit)

    def mark_segments_unused(self, data_source: str, segment_ids: Sequence[str], now_ms: int) -> int:
        with self._mutex:
            hit = [
                s
                for i in set(segment_ids)
                if (s := self._segments.get(i)) is not None and s.used and s.segment.data_source == data_source
            ]
            for s in hit:
                s.used = False
        return len(hit)

    def mark_used(
        self, data_source: str, now_ms: int, *, interval: Interval | None = None, segment_ids: Sequence[str] = ()
    ) -> int:
        if interval is None and not segment_ids:
            return 0
        wanted = set(segment_ids)
        with self._mutex:
            candidates = [
                s.segment
                for s in self._segments.values()
                if not s.used
                and s.segment.data_source == data_source
                and (interval.contains(s.segment.interval) if interval is not None else s.segment.identifier in wanted)
            ]
            if not candidates:
                return 0
            span = spans_by_datasource(candidates)[data_source]
            revive = usable_again(candidates, self._used(data_source, span))
            for seg in revive:
                self._segments[seg.identifier].used = True
        return len(revive)

    def nuke(self, segs: Iterable[DataSegment]) -> int:
        """Delete the metadata of unused segments; a used one is never deleted."""
        deleted = 0
        with self._mutex:
            for seg in segs:
                stored = self._segments.get(seg.identifier)
                if stored is not None and not stored.used:
                    del self._segments[seg.identifier]
                    deleted += 1
        return deleted

    # -- pending segments ------------------------------------------------------------------------

    def pending_segments(self, data_source: str, interval: Interval) -> list[PendingSegment]:
        with self._mutex:
            found = [
                (key, p)
                for key, (p, _group, _created) in self._pending.items()
                if p.id.data_source == data_source and p.id.interval.overlaps(interval)
            ]
        return [p for _key, p in sorted(found, key=lambda kp: kp[0])]

    def insert_pending(self, pending: Sequence[PendingSegment], group_of: dict[str, str], now_ms: int) -> None:
        """An id already stored (or twice in ``pending``) raises AlreadyExists and nothing is written."""
        rows = {
            str(p.id): (PendingSegment.from_json(_copy(p.to_json())), group_of.get(p.task_allocator_id), now_ms)
            for p in pending
        }
        with self._mutex:
            if len(rows) != len(pending) or rows.keys() & self._pending.keys():
                raise AlreadyExists("A pending segment with one of these ids already exists")
            self._pending.update(rows)

    def _delete_pending(self, drop: Any) -> int:
        with self._mutex:
            gone = [key for key, row in self._pending.items() if drop(row)]
            for key in gone:
                del self._pending[key]
        return len(gone)

    def delete_pending_of_group(self, group_id: str) -> int:
        return self._delete_pending(lambda row: row[1] == group_id)

    def delete_pending_segments(self, data_source: str, created_in: Interval | None = None) -> int:
        return self._delete_pending(
            lambda row: row[0].id.data_source == data_source and (created_in is None or created_in.contains_ms(row[2]))
        )

    # -- task locks ------------------------------------------------------------------------------

    def save_task_locks(self, task_id: str, entries: Sequence[dict[str, Any]]) -> None:
        """Replace the stored locks of one task (lockbox snapshot entries)."""
        with self._mutex:
            if entries:
                self._locks[task_id] = _copy(list(entries))
            else:
                self._locks.pop(task_id, None)

    def load_task_locks(self) -> list[dict[str, Any]]:
        with self._mutex:
            return [_copy(e) for task_id in sorted(self._locks) for e in self._locks[task_id]]

    def delete_task_locks(self, task_ids: Iterable[str]) -> None:
        with self._mutex:
            for task_id in task_ids:
                self._locks.pop(task_id, None)


if TYPE_CHECKING:

    def _is_task_store(store: InMemoryTaskStore) -> TaskStore:
        return store

    def _is_segment_store(store: InMemorySegmentStore) -> SegmentStore:
        return store
