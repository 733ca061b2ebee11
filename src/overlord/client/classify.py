"""Why did a task fail, and is it worth running again?

``classify_failure`` reads the status's errorMsg and the report. *Structural* failures (the data or
the spec is wrong) repeat on every rerun and need a person; *transient* ones (a worker died, a lock
was revoked, a timeout) usually pass on a rerun. Unknown messages count as structural: resubmitting
blindly is the costlier mistake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from overlord.client.models import TaskReport, TaskStatus, WorkerInfo

FailureKind = Literal["transient", "structural"]

# Checked first: a parse-limit failure mentions "terminating task", which must not read as transient.
_STRUCTURAL = [
    ("parse_exceptions", r"max parse exceptions|parse ?exception|unparseable"),
    ("invalid_spec", r"invalid|cannot construct instance|unrecognized field|missing (required )?(field|property)"),
    ("schema", r"schema|dimensionsspec|timestampspec|metricsspec|granularityspec|transformspec"),
    ("input", r"no such file|file not found|forbidden|outside the (allowed )?director|not allowed"),
    ("unsupported", r"unsupported|unknown (task )?type|not supported"),
]
_TRANSIENT = [
    ("worker_lost", r"(worker|peon|middlemanager|indexer).{0,40}(lost|disappeared|died|gone|restart)"),
    ("exit", r"exit(ed)? (with )?(code|status)|signal|killed|sigkill|sigterm|\boom\b|out of memory"),
    ("lock", r"lock.{0,40}(revoked|timed? ?out|preempt)|revoked"),
    ("shutdown", r"shut ?down|shutting down|canceled|cancelled|stopped|restart"),
    ("timeout", r"time(d)? ?out|timeout|deadline"),
    ("io", r"connection (refused|reset)|throttl|slow ?down|temporar|unavailable|503|too many requests"),
]


@dataclass(frozen=True)
class Classification:
    kind: FailureKind
    reason: str
    """The rule that matched (e.g. ``parse_exceptions``, ``worker_lost``), or ``unknown``."""


def failure_text(status: TaskStatus | None, report: TaskReport | Mapping[str, Any] | None) -> str:
    """Every error message known about a failed task, joined, for matching."""
    parts: list[str] = []
    if status is not None and status.error_msg:
        parts.append(status.error_msg)
    rep = TaskReport.model_validate(report) if isinstance(report, Mapping) else report
    if rep is not None:
        if rep.error_msg:
            parts.append(str(rep.error_msg))
        events = rep.unparseable_events
        if events:
            parts.append("unparseable events")
    return "\n".join(parts)


def explain_failure(status: TaskStatus | None, report: TaskReport | Mapping[str, Any] | None = None) -> Classification:
    """Like ``classify_failure``, also saying which rule matched."""
    text = failure_text(status, report).lower()
    for reason, pattern in _STRUCTURAL:
        if re.search(pattern, text):
            return Classification("structural", reason)
    for reason, pattern in _TRANSIENT:
        if re.search(pattern, text):
            return Classification("transient", reason)
    return Classification("structural", "unknown")


def classify_failure(status: TaskStatus | None, report: TaskReport | Mapping[str, Any] | None = None) -> FailureKind:
    """``"transient"`` (resubmit) or ``"structural"`` (alert a person) for a FAILED task."""
    return explain_failure(status, report).kind


def suggest_max_num_concurrent_sub_tasks(
    workers: Iterable[WorkerInfo | Mapping[str, Any]],
    *,
    reserve: int = 1,
    cap: int | None = None,
    now: datetime | None = None,
) -> int:
    """A ``maxNumConcurrentSubTasks`` that fits the workers' free slots right now.

    The supervisor task of an index_parallel task takes a slot itself, hence ``reserve`` = 1;
    blacklisted workers take nothing. Never below 1 (then the supervisor runs sequentially).
    """
    moment = now or datetime.now(UTC)
    free = 0
    for raw in workers:
        info = WorkerInfo.model_validate(raw) if isinstance(raw, Mapping) else raw
        if _blacklisted(info, moment):
            continue
        free += info.free_capacity
    suggestion = max(1, free - reserve)
    return min(suggestion, cap) if cap is not None else suggestion


def _blacklisted(info: WorkerInfo, now: datetime) -> bool:
    if not info.blacklisted_until:
        return False
    try:
        until = datetime.fromisoformat(info.blacklisted_until.replace("Z", "+00:00"))
    except ValueError:
        return True
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return until > now
