"""Segment identity and metadata as Druid writes them, plus version strings (time buckets: ``core.granularity``).

A segment is named by (dataSource, interval, version, partitionNum). Its *major* version is the
``version`` string (an ISO timestamp, compared as a string, like Druid) and its *minor* version lives
in the shard spec: root-generation segments (``numbered``, ``linear``...) have minor version 0, and
segments written under a segment lock to overwrite some partitions (``numbered_overwrite``) carry a
root-partition range, a higher minor version and an atomic-update-group size.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from overlord.clock import Clock
from overlord.errors import InvalidInput
from overlord.isotime import Interval, format_ms, parse_instant_ms

NON_ROOT_GEN_START_PARTITION_ID = 32768
"""Druid's first partition id for overwriting segments (``PartitionIds.NON_ROOT_GEN_START_PARTITION_ID``)."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ShardSpec:
    """How a segment fits in its partition set; decides completeness and minor-version overshadowing.

    ``partitions`` is the number of *core* partitions for ``numbered`` (0 means "appended only, always
    complete"). The overwrite fields are only meaningful for ``numbered_overwrite``.
    """

    type: str = "numbered"
    partition_num: int = 0
    partitions: int = 0
    start_root_partition_id: int = 0
    end_root_partition_id: int = 0
    minor_version: int = 0
    atomic_update_group_size: int = 1
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, hash=False)

    @classmethod
    def numbered(cls, partition_num: int, partitions: int = 0) -> ShardSpec:
        return cls("numbered", partition_num, partitions)

    @classmethod
    def overwrite(
        cls, partition_id: int, start_root: int, end_root: int, minor_version: int, group_size: int
    ) -> ShardSpec:
        return cls("numbered_overwrite", partition_id, 0, start_root, end_root, minor_version, group_size)

    @property
    def is_overwrite(self) -> bool:
        return self.type == "numbered_overwrite"

    @property
    def root_range(self) -> tuple[int, int]:
        """Root partition ids [start, end) this segment stands for."""
        if self.is_overwrite:
            return (self.start_root_partition_id, self.end_root_partition_id)
        return (self.partition_num, self.partition_num + 1)

    @property
    def core_partitions(self) -> int:
        """How many root partitions must be present for the set to be complete (0: no constraint)."""
        return 0 if self.is_overwrite or self.type in ("linear", "none") else self.partitions

    def to_json(self) -> dict[str, Any]:
        if self.type == "none":
            return {"type": "none"}
        if self.type == "linear":
            return {"type": "linear", "partitionNum": self.partition_num}
        if self.is_overwrite:
            return {
                "type": "numbered_overwrite",
                "partitionId": self.partition_num,
                "startRootPartitionId": self.start_root_partition_id,
                "endRootPartitionId": self.end_root_partition_id,
                "minorVersion": self.minor_version,
                "atomicUpdateGroupSize": self.atomic_update_group_size,
            }
        out: dict[str, Any] = dict(self.extra)
        out["type"] = self.type
        out["partitionNum"] = self.partition_num
        out["partitions" if self.type == "numbered" else "numCorePartitions"] = self.partitions
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> ShardSpec:
        if not obj:
            return cls("none")
        kind = str(obj.get("type", "numbered"))
        if kind == "none":
            return cls("none")
        if kind == "linear":
            return cls("linear", int(obj.get("partitionNum", 0)))
        if kind == "numbered_overwrite":
            return cls.overwrite(
                int(obj["partitionId"]),
                int(obj["startRootPartitionId"]),
                int(obj["endRootPartitionId"]),
                int(obj["minorVersion"]),
                int(obj["atomicUpdateGroupSize"]),
            )
        known = {"type", "partitionNum", "partitions", "numCorePartitions"}
        extra = MappingProxyType({k: v for k, v in obj.items() if k not in known})
        core = obj.get("partitions", obj.get("numCorePartitions", 0)) or 0
        return cls(kind, int(obj.get("partitionNum", 0)), int(core), extra=extra)


@dataclass(frozen=True, order=True)
class SegmentId:
    """Druid's segment identity; ``str()`` is Druid's identifier ``ds_start_end_version[_partition]``."""

    data_source: str
    interval: Interval
    version: str
    partition_num: int = 0

    def __str__(self) -> str:
        base = f"{self.data_source}_{format_ms(self.interval.start)}_{format_ms(self.interval.end)}_{self.version}"
        return f"{base}_{self.partition_num}" if self.partition_num else base

    @classmethod
    def parse(cls, text: str, data_source: str) -> SegmentId:
        """Parse an identifier of a known data source (data-source names may contain ``_``)."""
        prefix = data_source + "_"
        if not text.startswith(prefix):
            raise InvalidInput(f"Invalid segmentId[{text}]: does not start with dataSource[{data_source}]")
        parts = text[len(prefix) :].split("_")
        if len(parts) < 3:
            raise InvalidInput(f"Invalid segmentId[{text}]")
        try:
            interval = Interval(parse_instant_ms(parts[0]), parse_instant_ms(parts[1]))
        except ValueError as exc:
            raise InvalidInput(f"Invalid segmentId[{text}]: {exc}") from None
        rest = parts[2:]
        partition = 0
        if len(rest) > 1 and rest[-1].isdigit():
            partition = int(rest.pop())
        return cls(data_source, interval, "_".join(rest), partition)


@dataclass(frozen=True, eq=False)
class DataSegment:
    """Segment metadata in Druid's JSON shape; equal and hashed by identity, as in Druid."""

    data_source: str
    interval: Interval
    version: str
    shard_spec: ShardSpec = field(default_factory=ShardSpec)
    load_spec: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    dimensions: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    binary_version: int = 9
    size: int = 0
    last_compaction_state: Mapping[str, Any] | None = None

    @property
    def id(self) -> SegmentId:
        return SegmentId(self.data_source, self.interval, self.version, self.shard_spec.partition_num)

    @property
    def identifier(self) -> str:
        return str(self.id)

    @property
    def partition_num(self) -> int:
        return self.shard_spec.partition_num

    @property
    def minor_version(self) -> int:
        return self.shard_spec.minor_version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataSegment) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"DataSegment({self.identifier}, minor={self.minor_version})"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataSource": self.data_source,
            "interval": str(self.interval),
            "version": self.version,
            "loadSpec": dict(self.load_spec),
            "dimensions": ",".join(self.dimensions),
            "metrics": ",".join(self.metrics),
            "shardSpec": self.shard_spec.to_json(),
            "binaryVersion": self.binary_version,
            "size": self.size,
            "identifier": self.identifier,
        }
        if self.last_compaction_state is not None:
            out["lastCompactionState"] = dict(self.last_compaction_state)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DataSegment:
        def names(value: Any) -> tuple[str, ...]:
            if value is None or value == "":
                return ()
            if isinstance(value, str):
                return tuple(v for v in value.split(",") if v)
            return tuple(str(v) for v in value)

        try:
            return cls(
                data_source=str(obj["dataSource"]),
                interval=Interval.parse(str(obj["interval"])),
                version=str(obj["version"]),
                shard_spec=ShardSpec.from_json(obj.get("shardSpec")),
                load_spec=MappingProxyType(dict(obj.get("loadSpec") or {})),
                dimensions=names(obj.get("dimensions")),
                metrics=names(obj.get("metrics")),
                binary_version=int(obj.get("binaryVersion", 9) or 9),
                size=int(obj.get("size", 0) or 0),
                last_compaction_state=obj.get("lastCompactionState"),
            )
        except KeyError as exc:
            raise InvalidInput(f"Invalid segment: missing field {exc.args[0]}") from None


@dataclass(frozen=True)
class PendingSegment:
    """A segment id handed out by ``segmentAllocate`` and not yet published (Druid's pendingSegments row)."""

    id: SegmentId
    shard_spec: ShardSpec
    sequence_name: str
    previous_segment_id: str | None
    task_allocator_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "dataSource": self.id.data_source,
            "interval": str(self.id.interval),
            "version": self.id.version,
            "shardSpec": self.shard_spec.to_json(),
            "sequenceName": self.sequence_name,
            "sequencePrevId": self.previous_segment_id or "",
            "taskAllocatorId": self.task_allocator_id,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PendingSegment:
        interval = Interval.parse(str(obj["interval"]))
        shard = ShardSpec.from_json(obj.get("shardSpec"))
        sid = SegmentId(str(obj["dataSource"]), interval, str(obj["version"]), shard.partition_num)
        prev = obj.get("sequencePrevId") or None
        return cls(sid, shard, str(obj["sequenceName"]), prev, str(obj.get("taskAllocatorId", "")))


class VersionGenerator:
    """Hands out Druid version strings (ISO instants with ms), strictly increasing even within one ms.

    Strictness matters because a new time-chunk lock must overshadow everything written before it; when
    the clock has not moved (or went backwards) we step one millisecond past the last version.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = -(2**62)
        self._mutex = threading.Lock()

    def next(self, after: str | None = None) -> str:
        """A new version greater than every earlier one and than ``after`` when that is an ISO instant."""
        floor = _version_ms(after)
        with self._mutex:
            ms = max(self._clock.now_ms(), self._last + 1, floor + 1 if floor is not None else -(2**62))
            self._last = ms
        return format_ms(ms)

    def observe(self, version: str) -> None:
        """Remember a version seen elsewhere (restored locks) so later ones sort after it."""
        ms = _version_ms(version)
        if ms is not None:
            with self._mutex:
                self._last = max(self._last, ms)


def _version_ms(version: str | None) -> int | None:
    if not version:
        return None
    try:
        return parse_instant_ms(version)
    except ValueError:
        return None
