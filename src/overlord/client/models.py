"""Typed views of the service's answers, lenient on input so a newer server does not break old clients."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class TaskState(StrEnum):
    """Druid's ``statusCode``: only three values; the runner status says where an active task waits."""

    RUNNING = "RUNNING"  # active: waiting for locks, a slot, or running
    SUCCESS = "SUCCESS"  # done, segments published
    FAILED = "FAILED"  # done, errorMsg says why

    @property
    def is_terminal(self) -> bool:
        return self is not TaskState.RUNNING


class RunnerState(StrEnum):
    """Druid's ``runnerStatusCode``."""

    WAITING = "WAITING"  # stored, waiting for its locks
    PENDING = "PENDING"  # locks granted, waiting for a worker slot
    RUNNING = "RUNNING"  # on a worker
    NONE = "NONE"  # not known to the runner (complete, or not yet queued)


class _Wire(BaseModel):
    """Base for answers: camelCase on the wire, snake_case in Python, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class TaskLocation(_Wire):
    host: str | None = None
    port: int = -1
    tls_port: int = -1


class TaskStatus(_Wire):
    """One task's status; the same shape from ``/task/{id}/status``, ``/tasks`` and ``/taskStatus``."""

    id: str
    status_code: TaskState = Field(
        default=TaskState.RUNNING, validation_alias=AliasChoices("statusCode", "status_code", "status")
    )
    runner_status_code: RunnerState | None = None
    group_id: str | None = None
    type: str | None = None
    created_time: str | None = None
    queue_insertion_time: str | None = None
    duration: int = -1
    location: TaskLocation | None = None
    data_source: str | None = None
    error_msg: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _druid_status_alias(cls, data: Any) -> Any:
        """Druid sends ``status`` (bulk answers) or both ``statusCode`` and ``status``; keep one."""
        if isinstance(data, dict) and "statusCode" in data and "status" in data:
            data = {k: v for k, v in data.items() if k != "status"}
        return data

    @property
    def is_terminal(self) -> bool:
        return self.status_code.is_terminal

    @property
    def state(self) -> str:
        """The finest known state: WAITING/PENDING/RUNNING while active, else SUCCESS/FAILED."""
        if self.status_code is TaskState.RUNNING and self.runner_status_code not in (None, RunnerState.NONE):
            return str(self.runner_status_code)
        return str(self.status_code)


class TaskReport(_Wire):
    """A task's report (live while running, the completion report at the end), raw plus helpers."""

    ingestion_stats_and_errors: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return (self.ingestion_stats_and_errors or {}).get("payload") or {}

    @property
    def ingestion_state(self) -> str | None:
        return self.payload.get("ingestionState")

    @property
    def error_msg(self) -> str | None:
        return self.payload.get("errorMsg")

    @property
    def row_stats(self) -> dict[str, Any]:
        return self.payload.get("rowStats") or {}

    @property
    def build_segments(self) -> dict[str, Any]:
        """Row counters of the build phase, from a live report (``totals``) or a completion report."""
        stats = self.row_stats
        totals = stats.get("totals")
        if isinstance(totals, dict):
            return totals.get("buildSegments") or {}
        return stats.get("buildSegments") or {}

    @property
    def unparseable_events(self) -> Any:
        return self.payload.get("unparseableEvents")


class Worker(_Wire):
    scheme: str = "http"
    host: str = ""
    ip: str | None = None
    capacity: int = 0
    version: str | None = None
    category: str | None = None


class WorkerInfo(_Wire):
    """One entry of ``GET /workers``."""

    worker: Worker
    curr_capacity_used: int = 0
    curr_parallel_index_capacity_used: int = 0
    availability_groups: list[str] = Field(default_factory=list)
    running_tasks: list[str] = Field(default_factory=list)
    last_completed_task_time: str | None = None
    blacklisted_until: str | None = None

    @property
    def free_capacity(self) -> int:
        return max(0, self.worker.capacity - self.curr_capacity_used)


class DataSegment(_Wire):
    """Druid's DataSegment JSON, from the coordinator's metadata API."""

    data_source: str
    interval: str
    version: str
    load_spec: dict[str, Any] = Field(default_factory=dict)
    dimensions: str | list[str] = ""
    metrics: str | list[str] = ""
    shard_spec: dict[str, Any] = Field(default_factory=dict)
    binary_version: int | None = None
    size: int = 0
    identifier: str | None = None


class WaitResult(_Wire):
    """What ``wait`` returns: the final status and the completion report (None when none was pushed)."""

    status: TaskStatus
    report: TaskReport | None = None

    @property
    def task_id(self) -> str:
        return self.status.id


def parse_status(body: Any) -> TaskStatus:
    """``GET /task/{id}/status`` wraps the status as ``{"task": id, "status": {...}}``."""
    if isinstance(body, dict) and isinstance(body.get("status"), dict):
        inner = dict(body["status"])
        inner.setdefault("id", body.get("task"))
        return TaskStatus.model_validate(inner)
    return TaskStatus.model_validate(body)


class Submission(BaseModel):
    """What a submit did: queued a new task, or attached to the one that already had the id."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    attached: bool = False
    existing: TaskStatus | None = None
    """The attached task's status at the time of the submit."""
    next_attempt: int | None = None
    """The ``attempt`` that gives the same spec a new id (only for derived ids)."""
