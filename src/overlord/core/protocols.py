"""The seams of the core: what the queue, the action handler and the duties need from storage and runners.

Core code depends on these protocols only; ``service.py`` picks the implementations from Druid's
property names (``druid.metadata.storage.type``, ``druid.indexer.runner.type``, ``druid.storage.type``,
``druid.indexer.logs.type``). Every protocol has an in-memory twin in ``overlord.testing`` and one
contract test suite that runs over every implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, runtime_checkable

from overlord.core.data_segment import DataSegment, PendingSegment
from overlord.core.task import Location, TaskRecord
from overlord.isotime import Interval

LoadSpec = dict[str, Any]
"""Where a segment's file lives, in Druid's shape: ``{"type": "local", "path": ...}``, ``{"type": "s3_zip", ...}``."""


# -- metadata ------------------------------------------------------------------------------------


StatusRow = tuple[
    str,  # id
    str,  # group id
    str,  # type
    str | None,  # data source
    int,  # created, epoch ms
    int,  # queue insertion, epoch ms
    str,  # status code (StatusCode's value)
    str,  # runner state (RunnerState's value)
    int,  # duration
    str | None,  # error message
    str | None,  # location host
    int,  # location port
    int,  # location TLS port
]
"""One task's status as the store holds it: a plain tuple, as the database driver returns rows."""


@runtime_checkable
class TaskStore(Protocol):
    """Task rows. The Overlord is the only writer; every write is committed before it returns."""

    def insert_task(self, rec: TaskRecord) -> None:
        """Store a new task; a duplicate id raises AlreadyExists."""

    def update_task(self, task_id: str, **changes: Any) -> None:
        """Write the named TaskRecord fields of one task."""

    def get_task(self, task_id: str, *, with_payload: bool = False) -> TaskRecord | None: ...

    def get_status_row(self, task_id: str) -> StatusRow | None:
        """The columns of Druid's TaskStatusPlus for one task, in ``StatusRow`` order: what a status
        poll reads (every client polls), without building a TaskRecord; committed rows only."""

    def get_task_by_number(self, number: int, *, with_payload: bool = False) -> TaskRecord | None: ...

    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]: ...

    def list_active(self, *, with_payload: bool = False) -> list[TaskRecord]: ...

    def list_complete(
        self,
        *,
        datasource: str | None = None,
        task_type: str | None = None,
        created_after_ms: int | None = None,
        created_before_ms: int | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        """Completed tasks, newest first."""

    def delete_complete_before(self, cutoff_ms: int) -> list[str]:
        """Remove completed tasks created before ``cutoff_ms``; returns their ids."""

    def count_tasks(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DataSourceMetadataUpdate:
    """A compare-and-swap of a data source's metadata record, committed with a segment publish.

    Druid's ``startMetadata``/``endMetadata`` of ``segmentTransactionalInsert``: the publish fails
    (nothing is written) unless the stored record equals ``expected`` (None: no record yet).
    Streaming ingestion keeps its stream offsets here.
    """

    expected: dict[str, Any] | None
    new: dict[str, Any]


@runtime_checkable
class SegmentStore(Protocol):
    """Segments, pending segments, persisted task locks and per-data-source metadata."""

    def used_segments(self, data_source: str, interval: Interval | None = None) -> list[DataSegment]: ...

    def visible_segments(self, data_source: str, intervals: Sequence[Interval] | None = None) -> list[DataSegment]: ...

    def unused_segments(self, data_source: str, interval: Interval) -> list[DataSegment]: ...

    def datasources(self, *, include_unused: bool = False) -> list[str]: ...

    def segment(self, data_source: str, segment_id: str) -> tuple[DataSegment, bool] | None: ...

    def publish(
        self,
        new: Sequence[DataSegment],
        drop: Sequence[DataSegment],
        now_ms: int,
        metadata: DataSourceMetadataUpdate | None = None,
    ) -> list[DataSegment]:
        """One transaction: insert ``new``, mark ``drop`` and everything ``new`` overshadows unused, and
        apply ``metadata`` (raises MetadataConflict, writing nothing, when its ``expected`` is stale)."""

    def datasource_metadata(self, data_source: str) -> dict[str, Any] | None: ...

    def mark_unused(self, data_source: str, interval: Interval, now_ms: int) -> int: ...

    def mark_segments_unused(self, data_source: str, segment_ids: Sequence[str], now_ms: int) -> int:
        """Mark these used segments of the data source unused; returns how many changed."""

    def mark_used(
        self, data_source: str, now_ms: int, *, interval: Interval | None = None, segment_ids: Sequence[str] = ()
    ) -> int:
        """Mark used the unused segments wholly inside ``interval`` or named by ``segment_ids`` that no used
        segment would overshadow (Druid's ``markUsed``); returns how many changed."""

    def nuke(self, segs: Iterable[DataSegment]) -> int: ...

    def pending_segments(self, data_source: str, interval: Interval) -> list[PendingSegment]: ...

    def insert_pending(self, pending: Sequence[PendingSegment], group_of: dict[str, str], now_ms: int) -> None: ...

    def delete_pending_of_group(self, group_id: str) -> int: ...

    def delete_pending_segments(self, data_source: str, created_in: Interval | None = None) -> int:
        """Pending segments of a data source created within ``created_in`` (all when None); how many."""

    def save_task_locks(self, task_id: str, entries: Sequence[dict[str, Any]]) -> None: ...

    def load_task_locks(self) -> list[dict[str, Any]]: ...

    def delete_task_locks(self, task_ids: Iterable[str]) -> None: ...


# -- runners -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerExit:
    """What a runner learned when a task's peon ended.

    ``success`` is None when the peon ended without reporting a status (a crash); ``error_msg`` then
    says how it ended (exit code, signal, vanished worker). ``started`` is False when the runner knows
    the peon never passed its launch gate (the Overlord died between recording the launch and
    releasing it): the task did no work, so the queue may launch it again.
    """

    task_id: str
    success: bool | None
    error_msg: str | None
    duration_ms: int
    started: bool = True


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a runner needs to start one task's peon."""

    task_id: str
    payload: dict[str, Any]
    run: str  # "module:function" the peon calls with a TaskToolbox
    token: str  # the task's secret for task actions; never stored in clear or logged


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as ``GET /workers`` and the Elasticsearch nodes show it."""

    host: str
    capacity: int
    running: list[str] = field(default_factory=list)
    last_completed_ms: int | None = None
    problem: str | None = None  # why a cluster worker takes no tasks (no slots resource, package missing)
    address: str | None = None  # a cluster worker's own address (``tcp://ip:port``); None: this service's slots
    name: str | None = None  # a cluster worker's name, as its cluster calls it


@runtime_checkable
class TaskRunner(Protocol):
    """Where peons run: local worker slots, a Dask cluster, or memory (tests).

    Launching is two-phase so that a crash can never run a task twice: ``launch`` starts the peon
    held at a gate and returns an opaque handle; the queue commits RUNNING with that handle; only
    then does ``release`` let the peon work. A peon whose launch was never released (the Overlord
    died in between) exits without doing anything.
    """

    async def start(self) -> None: ...

    async def stop(self, *, kill_running: bool) -> None: ...

    def capacity(self) -> int: ...

    def used_slots(self) -> int: ...

    def free_slot_count(self) -> int: ...

    def launch(self, spec: LaunchSpec) -> str:
        """Start the peon, held at the gate; returns the handle to store with the task."""

    def release(self, task_id: str) -> None:
        """The launch is recorded: the peon may start working."""

    def abort(self, task_id: str) -> None:
        """The launch could not be recorded: the peon exits without working (no exit event)."""

    def adopt(self, handles: Mapping[str, str]) -> set[str]:
        """After a restart: take back the peons of ``handles`` (task id -> handle) that still run and
        return their ids; an exit event follows for each one that is gone. Peons of this runner that
        belong to no handle are killed."""

    def shutdown(self, task_id: str, reason: str) -> bool:
        """Stop a running peon (SIGTERM, then SIGKILL after the grace period); False if not running."""

    def running_ids(self) -> set[str]: ...

    def workers(self) -> list[WorkerInfo]: ...

    def health(self) -> str | None:
        """Why this runner cannot run tasks now (its cluster unreachable, no usable worker); None when it can."""

    def command(self, task_id: str, command: dict[str, Any]) -> bool:
        """Deliver a command to a running task wherever it runs; False if it is not running here."""

    def read_log(self, task_id: str, offset: int) -> Iterator[bytes] | None:
        """A running task's log from ``offset`` (negative: the last -offset bytes); None if not running."""


ExitListener = Callable[[RunnerExit], None]
PlacementListener = Callable[[str, Location], None]
"""Told by a cluster runner where a running task's peon landed (a worker the scheduler chose after the launch)."""


# -- deep storage and task logs ------------------------------------------------------------------


@runtime_checkable
class DeepStorage(Protocol):
    """Where segment files live (Druid's deep storage), addressed by load specs."""

    def write(self, key: str, source: str | BinaryIO) -> LoadSpec:
        """Store a local file (path) or a stream under ``key`` (a relative path); returns its load spec."""

    def copy(self, load_spec: LoadSpec, key: str) -> LoadSpec:
        """Store a copy of a file already in this deep storage under ``key`` (a staged segment made final):
        a hard link on a local filesystem, a server-side copy on object stores."""

    def open(self, load_spec: LoadSpec) -> BinaryIO:
        """A readable, seekable file for a load spec (pyarrow and DuckDB read it directly)."""

    def delete(self, load_spec: LoadSpec) -> None:
        """Remove a segment's file; a missing file is not an error."""

    def delete_prefix(self, key_prefix: str) -> int:
        """Remove everything under a key prefix (a task's staging area); returns how many files."""

    def list(self, key_prefix: str) -> list[LoadSpec]:
        """Load specs of every file under a key prefix."""

    def contains(self, load_spec: LoadSpec) -> bool:
        """Whether a load spec points inside this deep storage (trust check before publishing)."""


@runtime_checkable
class TaskLogs(Protocol):
    """Where task logs and completion reports go when a task ends (Druid's ``druid.indexer.logs``)."""

    def push_log(self, task_id: str, source: str | BinaryIO, *, finished: bool = False) -> None:
        """Store a task's log from a local path or a stream; atomic: readers see all or nothing.
        ``finished``: the path is a file nobody writes to any more, which a store may share instead of
        copying (a local folder on the same file system hard-links it in). The caller's path stays: in a
        task directory it is what says the task started, until the directory is removed."""

    def push_report(self, task_id: str, report: bytes) -> None: ...

    def read_log(self, task_id: str, offset: int = 0) -> Iterator[bytes] | None:
        """The log from byte ``offset`` (negative: the last -offset bytes), in chunks; None if absent."""

    def read_report(self, task_id: str) -> bytes | None: ...

    def delete(self, task_id: str) -> None: ...

    def kill_older_than(self, cutoff_ms: int) -> int:
        """Delete logs and reports last written before ``cutoff_ms``; returns how many files."""


# -- leadership ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseView:
    """The leader lease as the store holds it: who, where, which term, and how long it still runs
    (by the store's own clock, so Overlords on machines with skewed clocks agree)."""

    holder: str | None
    url: str | None
    epoch: int
    expires_in_ms: int  # <= 0: expired, anyone may take it


@runtime_checkable
class LeaseStore(Protocol):
    """The one leader lease shared by every Overlord on a metadata store, with a fencing epoch."""

    def campaign(self, node_id: str, url: str, duration_ms: int) -> LeaseView:
        """Take the lease if it expired (or ``node_id`` holds it: a previous incarnation of this node),
        bumping its epoch; returns the lease after the attempt (``holder == node_id`` means won)."""

    def renew(self, node_id: str, epoch: int, duration_ms: int) -> bool:
        """Extend the lease if ``node_id`` still holds it in term ``epoch``; False when it was lost."""

    def release(self, node_id: str, epoch: int) -> None:
        """Give the lease up at once (a clean stop), if still held in term ``epoch``."""

    def announce(self, node_id: str, url: str) -> None:
        """Record that this Overlord is alive at ``url`` (peons fall back to the Overlords they know)."""

    def members(self, within_ms: int) -> list[str]:
        """URLs of the Overlords that announced themselves in the last ``within_ms``."""

    def close(self) -> None: ...
