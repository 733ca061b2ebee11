"""Lock vocabulary and policy: TaskLock, types and granularities, priorities, taskLockTimeout, forceTimeChunkLock.

Kept apart from the lockbox so the task queue and spec validation can use these rules without it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from overlord.errors import InvalidSpec
from overlord.isotime import Interval

DEFAULT_LOCK_TIMEOUT_MS = 300_000
REALTIME_PRIORITY, BATCH_PRIORITY, MERGE_PRIORITY, DEFAULT_PRIORITY = 75, 50, 25, 0
_PRIORITY_BY_TYPE = {
    **dict.fromkeys(("index_kafka", "index_kinesis", "index_realtime", "index_realtime_appenderator"), 75),
    **dict.fromkeys(
        (
            "index",
            "index_parallel",
            "single_phase_sub_task",
            "partial_index_generate",
            "partial_dimension_distribution",
            "partial_dimension_cardinality",
            "partial_range_index_generate",
            "partial_index_generic_merge",
            "index_hadoop",
            "query_controller",
            "query_worker",
        ),
        50,
    ),
    **dict.fromkeys(("compact", "merge", "append", "same_interval_merge"), 25),
}
SEGMENT_LOCK_TASK_TYPES = frozenset(
    {"index", "index_parallel", "single_phase_sub_task", "index_kafka", "index_kinesis", "compact"}
)
"""Task types the reference says may use segment locks (native batch, compaction, Kafka/Kinesis)."""


class LockGranularity(enum.StrEnum):
    TIME_CHUNK = "TIME_CHUNK"  # the whole time chunk; new segments get a new, higher major version
    SEGMENT = "SEGMENT"  # one partition; new segments keep the major version


class TaskLockType(enum.StrEnum):
    EXCLUSIVE = "EXCLUSIVE"  # nobody else may write or lock the chunk
    SHARED = "SHARED"  # coexists with other SHARED locks (readers)
    REPLACE = "REPLACE"  # concurrent replace: coexists with APPEND only
    APPEND = "APPEND"  # concurrent append: coexists with APPEND and REPLACE


COMPATIBLE_TYPES = {
    frozenset({TaskLockType.SHARED}),
    frozenset({TaskLockType.APPEND}),
    frozenset({TaskLockType.APPEND, TaskLockType.REPLACE}),
}


def default_priority(task_type: str) -> int:
    """Druid's default lock priority for a task type (the reference's "Lock priority" table)."""
    return _PRIORITY_BY_TYPE.get(task_type, DEFAULT_PRIORITY)


def effective_priority(task_type: str, context: Mapping[str, Any] | None = None) -> int:
    """``context.priority`` when set, else the type's default."""
    value = (context or {}).get("priority")
    if value is None:
        return default_priority(task_type)
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        return int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"Invalid context.priority[{value!r}]: must be an integer") from None


def lock_timeout_ms(context: Mapping[str, Any] | None = None) -> int:
    """``context.taskLockTimeout`` in ms (default 300000)."""
    value = (context or {}).get("taskLockTimeout", DEFAULT_LOCK_TIMEOUT_MS)
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        ms = int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"Invalid context.taskLockTimeout[{value!r}]: must be milliseconds") from None
    if ms < 0:
        raise InvalidSpec(f"Invalid context.taskLockTimeout[{ms}]: must not be negative")
    return ms


def validate_lock_timeout(context: Mapping[str, Any] | None, http_max_idle_time_ms: int) -> int:
    """Refuse at submit a timeout the HTTP layer would cut short (the reference's warning)."""
    ms = lock_timeout_ms(context)
    if ms > http_max_idle_time_ms:
        raise InvalidSpec(
            f"context.taskLockTimeout[{ms}] is greater than druid.server.http.maxIdleTime"
            f"[{http_max_idle_time_ms}]: a task waiting that long for a lock would see its HTTP "
            "request time out first; lower taskLockTimeout or raise maxIdleTime"
        )
    return ms


def force_time_chunk_lock(context: Mapping[str, Any] | None, server_default: bool = True) -> bool:
    """The context's ``forceTimeChunkLock`` when present, else the server default (Druid's behaviour)."""
    value = (context or {}).get("forceTimeChunkLock")
    if value is None:
        return server_default
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def choose_lock_granularity(
    task_type: str,
    context: Mapping[str, Any] | None = None,
    *,
    server_force_time_chunk_lock: bool = True,
    changes_segment_granularity: bool = False,
    drop_existing: bool = False,
) -> LockGranularity:
    """Segment locks only where possible: not forced, a native/streaming type, and the segment
    granularity of the existing data is kept (changing it, or dropping existing data, needs the
    whole chunk)."""
    if force_time_chunk_lock(context, server_force_time_chunk_lock):
        return LockGranularity.TIME_CHUNK
    if task_type not in SEGMENT_LOCK_TASK_TYPES or changes_segment_granularity or drop_existing:
        return LockGranularity.TIME_CHUNK
    return LockGranularity.SEGMENT


@dataclass(frozen=True)
class TaskLock:
    """One lock as Druid's ``lockList`` shows it, plus who revoked it."""

    granularity: LockGranularity
    lock_type: TaskLockType
    group_id: str
    data_source: str
    interval: Interval
    version: str
    priority: int
    partition_id: int | None = None
    revoked: bool = False
    revoked_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "granularity": str(self.granularity),
            "type": str(self.lock_type),
            "groupId": self.group_id,
            "dataSource": self.data_source,
            "interval": str(self.interval),
            "version": self.version,
            "priority": self.priority,
            "revoked": self.revoked,
        }
        if self.partition_id is not None:
            out["partitionId"] = self.partition_id
        if self.revoked_by is not None:
            out["revokedBy"] = self.revoked_by
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TaskLock:
        pid = obj.get("partitionId")
        return cls(
            LockGranularity(obj.get("granularity", "TIME_CHUNK")),
            TaskLockType(obj.get("type", obj.get("lockType", "EXCLUSIVE"))),
            str(obj["groupId"]),
            str(obj["dataSource"]),
            Interval.parse(str(obj["interval"])),
            str(obj["version"]),
            int(obj.get("priority", 0)),
            None if pid is None else int(pid),
            bool(obj.get("revoked", False)),
            obj.get("revokedBy"),
        )

    def describe(self) -> str:
        part = f", partition[{self.partition_id}]" if self.partition_id is not None else ""
        return (
            f"{self.granularity} {self.lock_type} lock on dataSource[{self.data_source}] "
            f"interval[{self.interval}]{part} version[{self.version}]"
        )
