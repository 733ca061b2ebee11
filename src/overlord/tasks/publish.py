"""Turn segments written in a scratch folder into published segments: final ids, files, metadata.

Segments are first written under a placeholder version (in the task's work dir or a staging area of
deep storage). Publishing then (1) gives each its final id from the Overlord, (2) moves the files to
their deep-storage path and (3) records all of them with ONE ``segmentTransactionalInsert``. If any
step fails, or the task is shut down, the moved files are deleted again, so a task that did not
publish leaves nothing in the published location.

Ids follow Druid's native batch task under a time-chunk lock: an overwriting task uses its lock's
version (higher than every existing version) and numbers partitions 0..n-1 per time chunk; an
appending task asks ``segmentAllocate`` for each segment, chaining ``previousSegmentId`` in one
sequence, and gets new partitions of the existing version.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlord.core.data_segment import SegmentId
from overlord.core.granularity import Granularity
from overlord.errors import LockError, TaskFailure
from overlord.ingest.segment_files import ETERNITY, SegmentDescriptor, interval_text, segment_relpath
from overlord.isotime import Interval, format_ms
from overlord.tasks.action_client import ActionClient

PLACEHOLDER_VERSION = "pending"


@dataclass(frozen=True)
class StagedSegment:
    """A written segment file (``root / descriptor.path``) waiting for its final id."""

    descriptor: SegmentDescriptor
    root: Path
    sequence_name: str

    @property
    def source(self) -> Path:
        return self.root / self.descriptor.path


@dataclass(frozen=True)
class FinalSegment:
    staged: StagedSegment
    interval: Interval
    version: str
    partition_num: int
    shard_spec: dict[str, Any]

    def relpath(self) -> str:
        return segment_relpath(self.staged.descriptor.data_source, self.interval, self.version, self.partition_num)

    def to_json(self, deep_root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Druid's DataSegment JSON for the published file."""
        d = self.staged.descriptor
        sid = SegmentId(d.data_source, self.interval, self.version, self.partition_num)
        out: dict[str, Any] = {
            "dataSource": d.data_source,
            "interval": interval_text(self.interval),
            "version": self.version,
            "loadSpec": {"type": "local", "path": str(deep_root / self.relpath())},
            "dimensions": ",".join(d.dimensions),
            "metrics": ",".join(d.metrics),
            "shardSpec": dict(self.shard_spec),
            "binaryVersion": 9,
            "size": d.size,
            "identifier": str(sid),
            "numRows": d.num_rows,
        }
        if extra:
            out.update(extra)
        return out


def granularity_json(g: Granularity) -> Any:
    """Granularity as the Overlord's ``segmentAllocate`` reads it (Druid's simple names or a period)."""
    if g.name.startswith("duration:"):
        return {"type": "duration", "duration": g.fixed_ms}
    if g.name.upper().startswith("P"):
        return {"type": "period", "period": g.name, "origin": format_ms(g.origin_ms) if g.origin_ms else None}
    return g.name.upper()


def descriptor_from_json(d: dict[str, Any], root: Path) -> SegmentDescriptor:
    """Rebuild a descriptor from its ``to_dict`` form (a sub-task's pushed-segments report)."""
    path = Path(d["loadSpec"]["path"])
    rel = path.relative_to(root).as_posix() if path.is_absolute() else path.as_posix()
    text = d["interval"]
    iv = ETERNITY if text == interval_text(ETERNITY) else Interval.parse(text)

    def names(v: Any) -> tuple[str, ...]:
        return tuple(x for x in v.split(",") if x) if isinstance(v, str) else tuple(v or ())

    return SegmentDescriptor(
        d["dataSource"],
        iv,
        d["version"],
        int(d["shardSpec"].get("partitionNum", 0)),
        rel,
        int(d["size"]),
        int(d.get("numRows", 0)),
        names(d.get("dimensions")),
        names(d.get("metrics")),
        dict(d.get("shardSpec") or {}),
    )


def _covering_lock(locks: list[dict[str, Any]], interval: Interval) -> dict[str, Any] | None:
    for lock in locks:
        if lock.get("revoked") or str(lock.get("granularity", "timeChunk")).lower().startswith("segment"):
            continue
        try:
            held = Interval.parse(str(lock["interval"]))
        except Exception:
            continue
        if held.contains(interval):
            return lock
    return None


def _interval_key(iv: Interval) -> str:
    return interval_text(iv)


def assign_overwrite_ids(
    client: ActionClient, staged: list[StagedSegment], lock_timeout_ms: int | None = None
) -> list[FinalSegment]:
    """Time-chunk lock per interval, the lock's version, partitions 0..n-1 per time chunk."""
    by_interval: dict[Interval, list[StagedSegment]] = {}
    for s in staged:
        by_interval.setdefault(s.descriptor.interval, []).append(s)
    held = client.lock_list() if by_interval else []
    out: list[FinalSegment] = []
    for iv in sorted(by_interval):
        lock = _covering_lock(held, iv)
        if lock is None:
            lock = client.lock_acquire(_interval_key(iv), timeout_ms=lock_timeout_ms)
            held.append(lock)
        version = str(lock["version"])
        group = sorted(by_interval[iv], key=lambda s: (s.sequence_name, s.descriptor.partition_num))
        n = len(group)
        for pn, s in enumerate(group):
            spec = dict(s.descriptor.shard_spec) or {"type": "numbered"}
            spec["partitionNum"] = pn
            if spec.get("type", "numbered") == "numbered":
                spec["type"] = "numbered"
                spec["partitions"] = n
            out.append(FinalSegment(s, iv, version, pn, spec))
    return out


def assign_append_ids(
    client: ActionClient, staged: list[StagedSegment], segment_granularity: Granularity, query_granularity: Granularity
) -> list[FinalSegment]:
    """``segmentAllocate`` per segment: new partitions of the existing version in each time chunk."""
    previous: dict[str, str | None] = {}
    out: list[FinalSegment] = []
    for s in sorted(staged, key=lambda s: (s.sequence_name, s.descriptor.interval, s.descriptor.partition_num)):
        d = s.descriptor
        got = client.segment_allocate(
            data_source=d.data_source,
            timestamp=format_ms(d.interval.start) if d.interval != ETERNITY else format_ms(0),
            query_granularity=granularity_json(query_granularity),
            preferred_segment_granularity=granularity_json(segment_granularity),
            sequence_name=s.sequence_name,
            previous_segment_id=previous.get(s.sequence_name),
        )
        if not got:
            raise LockError(
                f"Could not allocate a segment for interval[{interval_text(d.interval)}] of dataSource"
                f"[{d.data_source}]: the time chunk is locked by another task or holds segments of another "
                "granularity"
            )
        iv = Interval.parse(str(got["interval"]))
        if not iv.contains(d.interval):
            raise TaskFailure(
                f"Allocated interval[{got['interval']}] does not cover the segment's interval"
                f"[{interval_text(d.interval)}]; existing segments use another segmentGranularity"
            )
        spec = dict(got.get("shardSpec") or {"type": "numbered", "partitionNum": 0, "partitions": 0})
        pn = int(spec.get("partitionNum", spec.get("partitionId")) or 0)
        final = FinalSegment(s, iv, str(got["version"]), pn, spec)
        previous[s.sequence_name] = str(SegmentId(d.data_source, iv, final.version, pn))
        out.append(final)
    return out


def _move(src: Path, dst: Path) -> None:
    """Rename into place; copy when deep storage is on another filesystem."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        src.unlink(missing_ok=True)


def remove_file_and_empty_parents(path: Path, stop: Path) -> None:
    """Delete a segment file and the folders it leaves empty, up to (not including) ``stop``."""
    path.unlink(missing_ok=True)
    parent = path.parent
    with contextlib.suppress(OSError):
        while parent != stop and parent.is_relative_to(stop):
            parent.rmdir()
            parent = parent.parent


def publish(
    client: ActionClient,
    finals: list[FinalSegment],
    deep_root: Path,
    *,
    log: logging.Logger,
    extra_json: Callable[[FinalSegment], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Move the files into deep storage and record all segments in one transaction (all or nothing)."""
    moved: list[Path] = []
    try:
        for f in finals:
            dst = deep_root / f.relpath()
            if dst.exists():
                raise TaskFailure(f"Segment file {dst} already exists; refusing to overwrite a published segment")
            _move(f.staged.source, dst)
            moved.append(dst)
        segments = [f.to_json(deep_root, extra_json(f) if extra_json else None) for f in finals]
        if segments:
            client.segment_transactional_insert(segments)
    except BaseException:
        for p in moved:
            remove_file_and_empty_parents(p, deep_root)
        log.warning("Publishing failed; removed %d moved segment files", len(moved))
        raise
    for f in finals:
        log.info("Published segment %s (%d rows)", f.to_json(deep_root)["identifier"], f.staged.descriptor.num_rows)
    log.info("Published %d segments", len(finals))
    return segments
