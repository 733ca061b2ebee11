"""Tasks as the service sees them: states, the stored record, ids, and the task-type registry."""

from __future__ import annotations

import enum
import hashlib
import importlib
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from overlord.core.ids import validate_id as validate_id  # re-exported: the queue imports it from here
from overlord.errors import IllegalTransition, InvalidSpec, UnsupportedTaskType
from overlord.isotime import Interval, format_ms


class StatusCode(enum.StrEnum):
    """What Druid puts in ``statusCode``/``status``; clients depend on there being only these three."""

    RUNNING = "RUNNING"  # every active task, whatever its finer runner state
    SUCCESS = "SUCCESS"  # finished and succeeded
    FAILED = "FAILED"  # finished and failed; errorMsg says why

    @property
    def is_complete(self) -> bool:
        return self is not StatusCode.RUNNING


class RunnerState(enum.StrEnum):
    """Druid's ``runnerStatusCode``: the finer state of an active task."""

    WAITING = "WAITING"  # stored, waiting for its locks
    PENDING = "PENDING"  # has its locks, waiting for a worker slot
    RUNNING = "RUNNING"  # a peon process is running it
    NONE = "NONE"  # complete


_ALLOWED_TRANSITIONS: dict[RunnerState, frozenset[RunnerState]] = {
    RunnerState.WAITING: frozenset({RunnerState.PENDING, RunnerState.NONE}),
    RunnerState.PENDING: frozenset({RunnerState.RUNNING, RunnerState.WAITING, RunnerState.NONE}),
    RunnerState.RUNNING: frozenset({RunnerState.NONE, RunnerState.WAITING}),  # WAITING: a launch never released
    RunnerState.NONE: frozenset(),
}


def check_transition(task_id: str, old: RunnerState, new: RunnerState) -> None:
    """The one place state transitions are validated."""
    if new not in _ALLOWED_TRANSITIONS[old]:
        raise IllegalTransition(f"Task[{task_id}] cannot move from {old} to {new}", task_id=task_id)


@dataclass(frozen=True)
class Location:
    host: str | None = None
    port: int = -1
    tls_port: int = -1

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "tlsPort": self.tls_port}


UNKNOWN_LOCATION = Location()


@dataclass(frozen=True)
class TaskRecord:
    """One task as stored in the metadata store (payload loaded only when asked for)."""

    id: str
    group_id: str
    type: str
    datasource: str | None
    created_ms: int
    queue_insertion_ms: int
    status_code: StatusCode = StatusCode.RUNNING
    runner_state: RunnerState = RunnerState.WAITING
    duration: int = -1
    error_msg: str | None = None
    location: Location = UNKNOWN_LOCATION
    priority: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] | None = None
    runner_handle: str | None = None  # opaque to the core: what the runner needs to find the peon again
    token_hash: str | None = None  # sha256 of the task's action token; the token itself is never stored
    completed_ms: int | None = None

    @property
    def active(self) -> bool:
        return not self.status_code.is_complete

    def with_(self, **changes: Any) -> TaskRecord:
        return replace(self, **changes)

    def status_json(self) -> dict[str, Any]:
        """Druid's TaskStatusPlus, field for field."""
        return {
            "id": self.id,
            "groupId": self.group_id,
            "type": self.type,
            "createdTime": format_ms(self.created_ms),
            "queueInsertionTime": format_ms(self.queue_insertion_ms),
            "statusCode": self.status_code.value,
            "status": self.status_code.value,
            "runnerStatusCode": self.runner_state.value,
            "duration": self.duration,
            "location": self.location.to_json(),
            "dataSource": self.datasource,
            "errorMsg": self.error_msg,
        }


@dataclass(frozen=True)
class SubmitContext:
    """What a task type's ``validate`` may need to know about the service, at submit time."""

    allowed_input_dirs: list[Path] = field(default_factory=list)
    http_max_idle_time_ms: int = 300_000


@dataclass(frozen=True)
class TaskType:
    """A kind of task the service can run; later task types plug in by calling ``register``.

    ``validate(payload, ctx)`` runs before anything is stored: it raises InvalidSpec naming the field
    and returns the payload to store (possibly normalised). ``lock_intervals(payload)`` names the
    intervals the task locks before it may run (it stays WAITING until granted); lock priorities
    come from ``overlord.core.lockpolicy``, the one table of Druid's defaults.
    """

    name: str
    run: str  # "module:function" the peon imports and calls with a TaskToolbox
    validate: Callable[[dict[str, Any], SubmitContext], dict[str, Any]] | None = None
    lock_intervals: Callable[[dict[str, Any]], list[Interval]] | None = None  # locked before running
    description: str = ""


_REGISTRY: dict[str, TaskType] = {}
# Types whose module registers them when first looked up: a process imports only the task code it
# uses (the service validates a noop without importing pyarrow for the ingestion types).
_MODULES: dict[str, str] = {}

# Druid task types this product does not run; refused with a list of what is supported.
KNOWN_UNSUPPORTED = (
    "index_hadoop",
    "index_realtime",
    "index_realtime_appenderator",
    "index_kafka",
    "index_kinesis",
    "archive",
    "move",
    "restore",
)


def register(task_type: TaskType) -> TaskType:
    _REGISTRY[task_type.name] = task_type
    return task_type


def register_modules(modules: dict[str, str]) -> None:
    """Name the module that registers each type (``type name -> module``); it is imported on first lookup."""
    _MODULES.update(modules)


def find_task_type(name: str) -> TaskType | None:
    """The registered type ``name``, importing its module on first use; None when unknown."""
    tt = _REGISTRY.get(name)
    if tt is None and name in _MODULES:
        importlib.import_module(_MODULES[name])  # registers it (the import lock makes racing lookups wait)
        tt = _REGISTRY.get(name)
    return tt


def needs_import(name: str) -> bool:
    """Whether looking ``name`` up would first import its module (callers on an event loop do that off it)."""
    return name not in _REGISTRY and name in _MODULES


def registered_types() -> dict[str, TaskType]:
    """Every type, each module imported."""
    for name in list(_MODULES):
        find_task_type(name)
    return dict(_REGISTRY)


def task_type_for(name: object) -> TaskType:
    """Look up a type or refuse it with a message that lists the supported ones."""
    if not isinstance(name, str) or not name:
        raise InvalidSpec("Missing required field [type]: the task spec must have a 'type'", field="type")
    tt = find_task_type(name)
    if tt is None:
        supported = ", ".join(sorted(_REGISTRY.keys() | _MODULES.keys()))
        verb = "is not supported by this service" if name in KNOWN_UNSUPPORTED else "is unknown"
        raise UnsupportedTaskType(f"Task type [{name}] {verb}. Supported task types: [{supported}]", field="type")
    return tt


def task_number(task_id: str) -> int:
    """A stable positive 53-bit number per task id: Elasticsearch task ids are ``node:number``."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big") >> 11


def generate_id(type_name: str, datasource: str | None, now_ms: int, rng: random.Random | None = None) -> str:
    """An id shaped like Druid's: ``index_parallel_wikipedia_odofhkle_2023-06-23T21:07:28.226Z``."""
    suffix = "".join((rng or random).choice(string.ascii_lowercase) for _ in range(8))
    parts = [type_name, *([datasource] if datasource else []), suffix, format_ms(now_ms)]
    return "_".join(parts)


def datasource_of(payload: dict[str, Any]) -> str | None:
    """Where Druid task specs keep their data source, by shape."""
    ds = payload.get("dataSource")
    if isinstance(ds, str):
        return ds
    spec = payload.get("spec") or payload.get("ingestionSpec")
    if isinstance(spec, dict):
        schema = spec.get("dataSchema")
        if isinstance(schema, dict) and isinstance(schema.get("dataSource"), str):
            return schema["dataSource"]
    return None
