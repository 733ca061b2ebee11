"""What a running task gets to work with inside its peon: typed runtime settings, deep storage,
a report sink and scratch space. The same task code runs wherever the peon runs.
"""

from __future__ import annotations

import logging
import os
import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from overlord.clock import SYSTEM_CLOCK, Clock
from overlord.core.protocols import DeepStorage

TASK_FILE = "task.json"
LOG_FILE = "log"
STATUS_FILE = "status.json"
REPORT_FILE = "report.json"
LIVE_REPORT_FILE = "live_report.json"
WORK_DIR = "work"


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON so that a concurrent reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(value))
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    try:
        return orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


@dataclass(frozen=True)
class TaskResult:
    """How a task's run ended; an exception raised by the task means FAILED with its message."""

    success: bool
    error_msg: str | None = None

    @classmethod
    def ok(cls) -> TaskResult:
        return cls(True)

    @classmethod
    def failure(cls, message: str) -> TaskResult:
        return cls(False, message)


class ReportSink(Protocol):
    """Where a task's reports go: the peon posts them to the Overlord; tests keep them in memory."""

    def live(self, report: dict[str, Any]) -> None: ...

    def final(self, report: dict[str, Any]) -> None: ...


class FileReportSink:
    """Reports as files in the task directory (task tests, and running a task without an Overlord)."""

    def __init__(self, task_dir: Path) -> None:
        self.task_dir = task_dir

    def live(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.task_dir / LIVE_REPORT_FILE, report)

    def final(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.task_dir / REPORT_FILE, report)


@dataclass(frozen=True)
class PeonRuntime:
    """The service settings a task needs inside its peon; plain JSON on the way, frozen once built.

    ``deep_storage`` is a URI (``file:///abs/path``, later ``s3://bucket/base``): the peon builds its
    DeepStorage from it, so a task never knows which storage it writes to.
    """

    overlord_url: str
    task_token: str = ""
    deep_storage: str = ""
    task_logs: str = ""
    allowed_input_dirs: tuple[str, ...] = ()
    store_empty_columns: bool = True
    action_retry_s: float = 180.0  # how long task actions ride out an unreachable Overlord
    log_max_bytes: int | None = None
    overlord_urls: tuple[str, ...] = ()  # the other Overlords: a peon falls back to them if its own goes away

    def to_json(self) -> dict[str, Any]:
        return {
            "overlordUrl": self.overlord_url,
            "deepStorage": self.deep_storage,
            "taskLogs": self.task_logs,
            "allowedInputDirs": list(self.allowed_input_dirs),
            "storeEmptyColumns": self.store_empty_columns,
            "actionRetrySeconds": self.action_retry_s,
            "logMaxBytes": self.log_max_bytes,
            "overlordUrls": list(self.overlord_urls),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any], *, task_token: str = "") -> PeonRuntime:
        """The token travels apart from the rest (never written to disk with it)."""
        return cls(
            overlord_url=str(raw.get("overlordUrl") or ""),
            task_token=task_token,
            deep_storage=str(raw.get("deepStorage") or ""),
            task_logs=str(raw.get("taskLogs") or ""),
            allowed_input_dirs=tuple(str(p) for p in raw.get("allowedInputDirs") or ()),
            store_empty_columns=bool(raw.get("storeEmptyColumns", True)),
            action_retry_s=float(raw.get("actionRetrySeconds", 180.0)),
            log_max_bytes=raw.get("logMaxBytes"),
            overlord_urls=tuple(str(u) for u in raw.get("overlordUrls") or ()),
        )


@dataclass(frozen=True)
class TaskToolbox:
    """Everything a task's run function may use; built by the peon.

    ``deep_storage`` is where segments go (addressed by load specs); ``reports`` takes the live and
    completion reports; ``task_dir`` is local scratch space only: nothing the Overlord reads.
    """

    task_id: str
    payload: dict[str, Any]
    task_dir: Path
    runtime: PeonRuntime
    deep_storage: DeepStorage
    reports: ReportSink
    commands: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)  # from the runner, in order
    clock: Clock = SYSTEM_CLOCK
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("overlord.task"))

    @property
    def work_dir(self) -> Path:
        path = self.task_dir / WORK_DIR
        path.mkdir(exist_ok=True)
        return path

    @property
    def context(self) -> dict[str, Any]:
        ctx = self.payload.get("context")
        return ctx if isinstance(ctx, dict) else {}

    def write_report(self, report: dict[str, Any]) -> None:
        """The completion report, served by ``GET /task/{id}/reports`` after the task ends."""
        self.reports.final(report)

    def write_live_report(self, report: dict[str, Any]) -> None:
        """The live report, served by ``GET /task/{id}/reports`` while the task runs."""
        self.reports.live(report)
