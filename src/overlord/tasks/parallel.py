"""The in-peon driver of ``index_parallel``: input files spread over ``single_phase_sub_task`` tasks.

Sub-tasks are ordinary tasks submitted to the Overlord (visible in ``/tasks`` with the parent's
groupId, so they share its locks), at most ``maxNumConcurrentSubTasks`` at a time. Each pushes its
segments to ``<deep storage>/_staging/<parent id>/<sub-task id>/`` and lists them in its report; the
parent sums their row stats, then publishes every segment in one transaction. A failed sub-task
fails the parent; a shut-down parent shuts its sub-tasks down. The staging area is always removed.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from overlord.core.task import TaskType, register
from overlord.errors import OverlordError, TaskFailure
from overlord.ingest.rowstats import PHASES, IngestionState, RowStats, completion_report
from overlord.ingest.sources import InputSplit, list_input_splits, split_evenly
from overlord.ingest.spec import IndexSpec
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.tasks import publish as pub
from overlord.tasks.action_client import ActionClient, error_message
from overlord.tasks.index import (
    SUB_TASK_TYPE,
    load_spec,
    lock_intervals,
    publish_staged,
    run_in_process,
    staging_root,
    validate,
)
from overlord.tasks.reporting import deep_storage_dir, log_peak_memory

TASK_API = "/druid/indexer/v1"
POLL_INTERVAL_S = 0.05  # a bulk status call on loopback: cheap, and the parent publishes sooner
LIVE_REPORT_INTERVAL_S = 1.0
DEFAULT_PRIORITY = 50
SHUTDOWN_WAIT_S = 10.0


@dataclass
class SubTask:
    id: str
    payload: dict[str, Any]
    status: str = "NOT_SUBMITTED"  # NOT_SUBMITTED, RUNNING, SUCCESS, FAILED
    error_msg: str | None = None
    report: dict[str, Any] = field(default_factory=dict)


def sub_task_id(parent_id: str, data_source: str, index: int) -> str:
    """Deterministic, so a resubmission after a lost answer is recognised as the same task."""
    digest = hashlib.sha1(parent_id.encode()).hexdigest()[:10]
    return f"{SUB_TASK_TYPE}_{data_source}_{digest}_{index}"


def sub_task_payloads(toolbox: TaskToolbox, spec: IndexSpec, groups: list[list[InputSplit]]) -> list[dict[str, Any]]:
    """One sub-task spec per group of splits: same dataSchema/tuningConfig, files of its own."""
    parent = toolbox.payload
    context = dict(toolbox.context)
    context["priority"] = context.get("priority", DEFAULT_PRIORITY)
    out = []
    for i, splits in enumerate(groups):
        io = dict(parent["spec"]["ioConfig"])
        if all(s.path is not None for s in splits):
            io["inputSource"] = {"type": "local", "files": [str(s.path) for s in splits]}
        out.append(
            {
                "type": SUB_TASK_TYPE,
                "id": sub_task_id(toolbox.task_id, spec.data_source, i),
                "groupId": parent.get("groupId") or toolbox.task_id,
                "supervisorTaskId": toolbox.task_id,
                "numAttempts": 1,
                "spec": {**parent["spec"], "ioConfig": io},
                "inputSplits": [s.to_dict() for s in splits],
                "context": context,
            }
        )
    return out


class SubTaskDriver:
    """Submits, polls and (on failure or shutdown) stops the sub-tasks of one parent."""

    def __init__(self, toolbox: TaskToolbox, client: ActionClient, payloads: list[dict[str, Any]], limit: int) -> None:
        self.toolbox = toolbox
        self.client = client
        self.subs = [SubTask(p["id"], p) for p in payloads]
        self.limit = max(1, limit)
        self._last_live = -1e18

    def _submit(self, sub: SubTask) -> None:
        r = self.client.request("POST", f"{TASK_API}/task", json=sub.payload)
        if r.status_code != 200 and "already exists" not in r.text:
            raise TaskFailure(f"Could not submit sub-task[{sub.id}]: {error_message(r)}")
        sub.status = "RUNNING"
        self.toolbox.log.info("Submitted sub-task[%s] with %d input splits", sub.id, len(sub.payload["inputSplits"]))

    def _poll(self) -> None:
        running = [s for s in self.subs if s.status == "RUNNING"]
        if not running:
            return
        r = self.client.request("POST", f"{TASK_API}/taskStatus", json=[s.id for s in running])
        if r.status_code != 200:
            raise TaskFailure(f"Could not read sub-task statuses: {error_message(r)}")
        body = r.json()
        for s in running:
            st = body.get(s.id)
            if not st or st.get("status") not in ("SUCCESS", "FAILED"):
                continue
            s.status = st["status"]
            s.error_msg = st.get("errorMsg")
            s.report = self._report(s.id) or {}
            self.toolbox.log.info("Sub-task[%s] finished with status[%s]", s.id, s.status)

    def _report(self, task_id: str) -> dict[str, Any] | None:
        r = self.client.request("GET", f"{TASK_API}/task/{task_id}/reports")
        if r.status_code != 200:
            return None
        body = r.json()
        return body if isinstance(body, dict) else None

    def run(self) -> None:
        """Until every sub-task succeeded; raises TaskFailure naming the first that failed."""
        while True:
            self._poll()
            failed = [s for s in self.subs if s.status == "FAILED"]
            if failed:
                s = failed[0]
                raise TaskFailure(f"Sub-task[{s.id}] failed: {s.error_msg or 'no error message'}")
            running = sum(1 for s in self.subs if s.status == "RUNNING")
            for s in self.subs:
                if running >= self.limit:
                    break
                if s.status == "NOT_SUBMITTED":
                    self._submit(s)
                    running += 1
            if all(s.status == "SUCCESS" for s in self.subs):
                return
            self._write_live_report()
            time.sleep(POLL_INTERVAL_S)

    def shutdown_all(self) -> None:
        """Best effort: stop every sub-task still running."""
        for s in self.subs:
            if s.status != "RUNNING":
                continue
            try:
                self.client.request("POST", f"{TASK_API}/task/{s.id}/shutdown")
                self.toolbox.log.info("Shut down sub-task[%s]", s.id)
            except Exception as exc:  # the parent is failing anyway; keep stopping the others
                self.toolbox.log.warning("Could not shut down sub-task[%s]: %s", s.id, exc)
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        while any(s.status == "RUNNING" for s in self.subs) and time.monotonic() < deadline:
            try:
                self._poll()  # let them clean up their own files before the staging area goes
            except Exception:
                break
            time.sleep(POLL_INTERVAL_S or 0.05)

    def _write_live_report(self) -> None:
        """Sum the sub-tasks' live (or final) reports into the parent's live report, about once a second."""
        now = self.toolbox.clock.monotonic()
        if now - self._last_live < LIVE_REPORT_INTERVAL_S:
            return
        self._last_live = now
        totals: dict[str, RowStats] = {}
        averages: dict[str, dict[str, dict[str, float]]] = {}
        for s in self.subs:
            report = s.report if s.status == "SUCCESS" else (self._report(s.id) if s.status == "RUNNING" else None)
            payload = ((report or {}).get("ingestionStatsAndErrors") or {}).get("payload") or {}
            stats = payload.get("rowStats") or {}
            phase_totals = stats.get("totals", stats) if isinstance(stats, dict) else {}
            for phase in PHASES:
                if isinstance(phase_totals.get(phase), dict):
                    totals[phase] = totals.get(phase, RowStats()) + RowStats.from_dict(phase_totals[phase])
            for phase, windows in (stats.get("movingAverages") or {}).items():
                dst = averages.setdefault(phase, {})
                for w, fields in windows.items():
                    acc = dst.setdefault(w, {})
                    for k, v in fields.items():
                        acc[k] = acc.get(k, 0.0) + float(v)
        self.toolbox.write_live_report(
            {
                "ingestionStatsAndErrors": {
                    "taskId": self.toolbox.task_id,
                    "payload": {
                        "ingestionState": IngestionState.BUILD_SEGMENTS.value,
                        "unparseableEvents": {},
                        "rowStats": {
                            "movingAverages": averages,
                            "totals": {p: t.to_dict() for p, t in totals.items()},
                        },
                        "errorMsg": None,
                    },
                    "type": "ingestionStatsAndErrors",
                }
            }
        )


def _sum_reports(subs: list[SubTask], max_saved: int) -> tuple[dict[str, RowStats], dict[str, list[Any]] | None]:
    totals = {p: RowStats() for p in PHASES}
    events: dict[str, list[Any]] | None = None
    for s in subs:
        payload = (s.report.get("ingestionStatsAndErrors") or {}).get("payload") or {}
        for phase, d in (payload.get("rowStats") or {}).items():
            if phase in totals and isinstance(d, dict):
                totals[phase] = totals[phase] + RowStats.from_dict(d)
        ev = payload.get("unparseableEvents") or {}
        if ev:
            events = events or {p: [] for p in PHASES}
            for phase in PHASES:
                events[phase].extend(ev.get(phase) or [])
    if events is not None:
        events = {p: v[:max_saved] for p, v in events.items()}
    return totals, events


class _Events:
    """Adapter: already-serialised events passed through rowstats' payload helper."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d

    def to_dict(self) -> dict[str, Any]:
        return self.d


def _report(
    toolbox: TaskToolbox,
    state: IngestionState,
    totals: dict[str, RowStats],
    events: dict[str, list[Any]] | None,
    error: str | None,
) -> dict[str, Any]:
    wrapped = {p: [_Events(e) for e in v] for p, v in events.items()} if events is not None else None
    return completion_report(toolbox.task_id, state, totals, wrapped, error, toolbox.context)  # type: ignore[arg-type]


def run_parallel(toolbox: TaskToolbox, spec: IndexSpec, splits: list[InputSplit]) -> TaskResult:
    """Run sub-tasks over the splits, then publish all their segments in one transaction."""
    workers = spec.tuning.max_num_concurrent_sub_tasks
    groups = split_evenly(splits, workers)
    wanted = min(workers, len(splits))
    if len(groups) < wanted:  # sizes unknown (all zero, e.g. pipes): spread round-robin instead
        groups = [splits[i::wanted] for i in range(wanted)]
    payloads = sub_task_payloads(toolbox, spec, groups)
    deep_root = deep_storage_dir(toolbox)
    staging = staging_root(deep_root, toolbox.task_id)
    toolbox.log.info("Splitting %d input files over %d sub-tasks", len(splits), len(payloads))
    client = ActionClient.for_toolbox(toolbox)
    driver = SubTaskDriver(toolbox, client, payloads, workers)
    state = IngestionState.BUILD_SEGMENTS
    try:
        toolbox.write_live_report(_report(toolbox, IngestionState.NOT_STARTED, {}, None, None))
        driver.run()
        totals, events = _sum_reports(driver.subs, spec.tuning.max_saved_parse_exceptions)
        staged = []
        for s in driver.subs:
            pushed = (s.report.get("pushedSegments") or {}).get("payload") or {}
            root = staging / s.id
            for d in pushed.get("segments") or []:
                staged.append(pub.StagedSegment(pub.descriptor_from_json(d, root), root, s.id))
        publish_staged(toolbox, client, spec, staged)
        state = IngestionState.COMPLETED
        toolbox.write_report(_report(toolbox, state, totals, events, None))
        t = totals["buildSegments"]
        toolbox.log.info(
            "Ingested %d rows (%d unparseable, %d thrown away) into %d segments with %d sub-tasks",
            t.processed,
            t.unparseable,
            t.thrown_away,
            len(staged),
            len(driver.subs),
        )
        return TaskResult.ok()
    except BaseException as exc:
        driver.shutdown_all()
        totals, events = _sum_reports([s for s in driver.subs if s.report], spec.tuning.max_saved_parse_exceptions)
        if isinstance(exc, OverlordError):
            msg = exc.message
        elif isinstance(exc, Exception):
            msg = str(exc) or type(exc).__name__
        else:
            msg = f"Task was shut down: {exc}"
        toolbox.write_report(_report(toolbox, state, totals, events, msg))
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        client.close()


def run(toolbox: TaskToolbox) -> TaskResult:
    """Entry point of ``index_parallel``: sub-tasks when it has several files and workers, else in process."""
    try:
        spec = load_spec(toolbox)
        if spec.tuning.max_num_concurrent_sub_tasks > 1:
            splits = list_input_splits(spec)
            if len(splits) > 1:
                return run_parallel(toolbox, spec, splits)
        return run_in_process(toolbox, spec)
    finally:
        log_peak_memory(toolbox)


INDEX_PARALLEL = register(
    TaskType(name="index_parallel", run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals)
)
