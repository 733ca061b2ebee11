"""Turn staged segments into published segments: final ids, files in deep storage, metadata.

Segments are first written under a placeholder version: in the task's work dir, or (for a sub-task
of ``index_parallel``) pushed to a staging prefix of deep storage. Publishing then (1) gives each its
final id from the Overlord, (2) writes each file to its deep-storage key through the toolbox's
``DeepStorage`` (which answers with Druid's load spec) and (3) records all of them with ONE
``segmentTransactionalInsert``. If any step fails, or the task is shut down, the written files are
deleted again, so a task that did not publish leaves nothing in the published location. No task
computes a deep-storage path: keys are relative, load specs come from the storage.

Ids follow Druid's native batch task under a time-chunk lock: an overwriting task uses its lock's
version (higher than every existing version) and numbers partitions 0..n-1 per time chunk; an
appending task asks ``segmentAllocate`` for each segment, chaining ``previousSegmentId`` in one
sequence, and gets new partitions of the existing version.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlord.core.data_segment import SegmentId
from overlord.core.granularity import Granularity
from overlord.core.protocols import DeepStorage, LoadSpec
from overlord.errors import LockError, TaskFailure
from overlord.ingest.segment_files import ETERNITY, SegmentDescriptor, interval_text, segment_relpath
from overlord.isotime import Interval, format_ms
from overlord.tasks.action_client import ActionClient

PLACEHOLDER_VERSION = "pending"


@dataclass(frozen=True)
class StagedSegment:
    """A written segment waiting for its final id: a file in this peon's work dir, or a load spec
    in deep storage's staging area (pushed by a sub-task)."""

    descriptor: SegmentDescriptor
    sequence_name: str
    local_file: Path | None = None
    load_spec: LoadSpec | None = None

    @classmethod
    def written(cls, descriptor: SegmentDescriptor, root: Path, sequence_name: str) -> StagedSegment:
        return cls(descriptor, sequence_name, local_file=root / descriptor.path)

    @classmethod
    def pushed(cls, descriptor: SegmentDescriptor, load_spec: LoadSpec, sequence_name: str) -> StagedSegment:
        return cls(descriptor, sequence_name, load_spec=dict(load_spec))


@dataclass(frozen=True)
class FinalSegment:
    staged: StagedSegment
    interval: Interval
    version: str
    partition_num: int
    shard_spec: dict[str, Any]

    def key(self) -> str:
        """The segment's deep-storage key (a relative path; the storage decides where it lives)."""
        return segment_relpath(self.staged.descriptor.data_source, self.interval, self.version, self.partition_num)

    @property
    def identifier(self) -> str:
        d = self.staged.descriptor
        return str(SegmentId(d.data_source, self.interval, self.version, self.partition_num))

    def to_json(self, load_spec: LoadSpec, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Druid's DataSegment JSON for the published file."""
        d = self.staged.descriptor
        out: dict[str, Any] = {
            "dataSource": d.data_source,
            "interval": interval_text(self.interval),
            "version": self.version,
            "loadSpec": dict(load_spec),
            "dimensions": ",".join(d.dimensions),
            "metrics": ",".join(d.metrics),
            "shardSpec": dict(self.shard_spec),
            "binaryVersion": 9,
            "size": d.size,
            "identifier": self.identifier,
            "numRows": d.num_rows,
        }
        if extra:
            out.update(extra)
        return out


def granularity_json(g: Granularity) -> Any:
    """Granularity as the Overlord's ``segmentAllocate`` reads it (Druid's simple names or a period)."""
    if g.name.startswith("duration:"):
        out: dict[str, Any] = {"type": "duration", "duration": g.fixed_ms}
        return {**out, "origin": format_ms(g.origin_ms)} if g.origin_ms else out
    if g.name.upper().startswith("P"):
        return {"type": "period", "period": g.name, "origin": format_ms(g.origin_ms) if g.origin_ms else None}
    return g.name.upper()


def descriptor_from_json(d: dict[str, Any]) -> SegmentDescriptor:
    """Rebuild a descriptor from segment JSON (a sub-task's pushed-segments report); ``path`` is informational."""
    spec = d.get("loadSpec") or {}
    rel = str(spec.get("path") or spec.get("key") or "")
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


def _write_to_deep_storage(deep_storage: DeepStorage, staged: StagedSegment, key: str) -> LoadSpec:
    if staged.local_file is not None:
        return deep_storage.write(key, str(staged.local_file))
    if staged.load_spec is None:
        raise TaskFailure(f"Segment[{staged.descriptor.identifier}] has neither a file nor a load spec")
    return deep_storage.copy(staged.load_spec, key)


def publish(
    client: ActionClient,
    finals: list[FinalSegment],
    deep_storage: DeepStorage,
    *,
    log: logging.Logger,
    extra_json: Callable[[FinalSegment], dict[str, Any]] | None = None,
    segments_to_be_dropped: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Write the files to deep storage and record all segments in one transaction (all or nothing);
    ``segments_to_be_dropped`` (a REPLACE's old segments) are marked unused in the same transaction."""
    written: list[LoadSpec] = []
    try:
        for f in finals:
            key = f.key()
            if deep_storage.list(key):
                raise TaskFailure(
                    f"Segment file {key} already exists in deep storage; refusing to overwrite a published segment"
                )
            written.append(_write_to_deep_storage(deep_storage, f.staged, key))
        segments = [
            f.to_json(spec, extra_json(f) if extra_json else None) for f, spec in zip(finals, written, strict=True)
        ]
        if segments or segments_to_be_dropped:
            client.segment_transactional_insert(segments, segments_to_be_dropped)
    except BaseException:
        for spec in written:
            with contextlib.suppress(Exception):
                deep_storage.delete(spec)
        log.warning("Publishing failed; removed %d segment files written to deep storage", len(written))
        raise
    for f in finals:
        if f.staged.local_file is not None:
            f.staged.local_file.unlink(missing_ok=True)
        log.info("Published segment %s (%d rows)", f.identifier, f.staged.descriptor.num_rows)
    log.info("Published %d segments", len(finals))
    return segments
