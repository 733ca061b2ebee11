"""What a running task gets to work with inside its peon, and the files it leaves for the Overlord.

The peon and the Overlord talk through files in the task directory (status, reports) and,
for task actions, over HTTP, so the same task code works when the peon is on another machine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from overlord.clock import SYSTEM_CLOCK, Clock

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


@dataclass
class TaskToolbox:
    """Everything a task's run function may use; built by the peon from the task directory."""

    task_id: str
    payload: dict[str, Any]
    task_dir: Path
    runtime: dict[str, Any] = field(default_factory=dict)  # service settings the task needs
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
        write_json_atomic(self.task_dir / REPORT_FILE, report)

    def write_live_report(self, report: dict[str, Any]) -> None:
        """The live report, served by ``GET /task/{id}/reports`` while the task runs."""
        write_json_atomic(self.task_dir / LIVE_REPORT_FILE, report)
