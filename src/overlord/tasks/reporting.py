"""Live reports, progress log lines and resource figures shared by the ingestion-like tasks."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

from overlord.errors import InvalidSpec
from overlord.ingest.pipeline import Progress
from overlord.ingest.rowstats import BUILD_SEGMENTS, IngestionState, RowStats, completion_report
from overlord.runner.toolbox import TaskToolbox
from overlord.tasks.report_names import PARALLEL_PHASE, PARALLEL_SUBTASKS_REPORT

LIVE_REPORT_INTERVAL_S = 0.5
PROGRESS_LOG_INTERVAL_S = 5.0


class LiveReporter:
    """``on_progress`` callback: writes the live report at most every ``interval_s`` (state changes
    always), so ``GET /reports`` shows progress without the writes costing ingestion time."""

    def __init__(self, toolbox: TaskToolbox, interval_s: float = LIVE_REPORT_INTERVAL_S) -> None:
        self.toolbox = toolbox
        self.interval_s = interval_s
        self._last_write = -1e18
        self._last_log = toolbox.clock.monotonic()
        self._last_state: object = None

    def __call__(self, progress: Progress) -> None:
        now = self.toolbox.clock.monotonic()
        changed = progress.state != self._last_state
        if changed or now - self._last_write >= self.interval_s:
            self._last_state = progress.state
            self._last_write = now
            self.toolbox.write_live_report(progress.live_report(self.toolbox.task_id))
        if now - self._last_log >= PROGRESS_LOG_INTERVAL_S:
            self._last_log = now
            totals = progress.meters.get(BUILD_SEGMENTS)
            if totals is not None:
                t = totals.totals
                self.toolbox.log.info(
                    "Progress: %d rows processed, %d unparseable, %d thrown away, %d bytes, %d segments written",
                    t.processed,
                    t.unparseable,
                    t.thrown_away,
                    t.processed_bytes,
                    progress.segments_written,
                )


def log_peak_memory(toolbox: TaskToolbox) -> int:
    """Log the peon's peak RSS in bytes (benchmarks grep ``peak RSS bytes[...]`` from the task log)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = rss if sys.platform == "darwin" else rss * 1024
    toolbox.log.info("Task[%s] peak RSS bytes[%d]", toolbox.task_id, peak)
    return peak


def store_empty_columns(toolbox: TaskToolbox) -> bool:
    """Context ``storeEmptyColumns`` overrides ``druid.indexer.task.storeEmptyColumns``."""
    value = toolbox.context.get("storeEmptyColumns")
    if isinstance(value, bool):
        return value
    return toolbox.runtime.store_empty_columns


def allowed_dirs_of(ctx: Any) -> list[Path]:
    """Allowed input dirs from the submit-time validation context (cwd when called without one)."""
    dirs = getattr(ctx, "allowed_input_dirs", None)
    return [Path(d) for d in dirs] if dirs else [Path.cwd()]


def check_lock_timeout(payload: dict[str, Any], ctx: Any) -> None:
    """Refuse a ``taskLockTimeout`` the HTTP idle timeout would cut short (the reference's warning)."""
    context = payload.get("context")
    if context is not None and not isinstance(context, dict):
        raise InvalidSpec("context: expected a JSON object", field="context")
    timeout = (context or {}).get("taskLockTimeout")
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise InvalidSpec("context.taskLockTimeout: expected a non-negative integer", field="context.taskLockTimeout")
    idle = getattr(ctx, "http_max_idle_time_ms", None)
    if isinstance(idle, int) and idle > 0 and timeout > idle:
        raise InvalidSpec(
            f"context.taskLockTimeout: [{timeout}] ms is longer than druid.server.http.maxIdleTime [{idle}] ms; "
            "a lock request would be cut off by the HTTP idle timeout before the lock wait ends",
            field="context.taskLockTimeout",
        )


def parallel_report(
    task_id: str,
    state: IngestionState,
    build: RowStats,
    events: list[dict[str, Any]],
    error: str | None,
    task_context: dict[str, Any] | None,
) -> dict[str, Any]:
    """Druid's ParallelIndexSupervisorTask report, live and final: ``rowStats`` is ``{"totals":
    {"buildSegments": ...}}`` and ``unparseableEvents`` is ``{"buildSegments": [...]}``."""
    report = completion_report(task_id, state, {BUILD_SEGMENTS: build}, None, error, task_context)
    payload = report["ingestionStatsAndErrors"]["payload"]
    payload["rowStats"] = {"totals": {BUILD_SEGMENTS: build.to_dict()}}
    payload["unparseableEvents"] = {BUILD_SEGMENTS: events}
    return report


def subtasks_report(task_id: str, specs: list[dict[str, Any]]) -> dict[str, Any]:
    """The live state of a parallel task's sub-task specs, for the Overlord to answer Druid's parallel chat
    endpoints (``/mode``, ``/progress``, ``/subtaskspecs``...): each spec with the ids of its attempts."""
    return {
        "type": PARALLEL_SUBTASKS_REPORT,
        "taskId": task_id,
        "payload": {"mode": "parallel", "phase": PARALLEL_PHASE, "specs": specs},
    }
