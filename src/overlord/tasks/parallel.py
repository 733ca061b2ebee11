"""The in-peon driver of ``index_parallel``: input files spread over ``single_phase_sub_task`` tasks.

Sub-tasks are ordinary tasks submitted to the Overlord through ``overlord.client`` (visible in
``/tasks`` with the parent's groupId, so they share its locks), at most ``maxNumConcurrentSubTasks``
at a time. Each pushes its segments to the deep-storage prefix ``_staging/<parent id>/<sub-task
id>/`` and lists their load specs in its report; the parent sums their row stats, then publishes
every segment from those load specs in one transaction. A failed sub-task fails the parent; a
failing or shut-down parent shuts its sub-tasks down and waits (bounded) for them to end. The
staging prefix is always removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

from overlord.client import Backoff, Client, ClientError, RetryPolicy
from overlord.core.task import TaskType, register
from overlord.errors import OverlordError, TaskFailure
from overlord.ingest.rowstats import BUILD_SEGMENTS, PHASES, IngestionState, RowStats
from overlord.ingest.sources import InputSplit, list_input_splits, split_evenly
from overlord.ingest.spec import IndexSpec
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.tasks import publish as pub
from overlord.tasks.action_client import TOKEN_HEADER, ActionClient, failover_transport
from overlord.tasks.index import (
    SUB_TASK_TYPE,
    load_spec,
    lock_intervals,
    log_resources,
    publish_staged,
    run_in_process,
    staging_prefix,
    validate,
)
from overlord.tasks.reporting import PARALLEL_SUBTASKS_REPORT, parallel_report, subtasks_report

POLL_INTERVAL_S = 0.05  # a bulk status call on loopback: cheap, and the parent publishes sooner
POLL_MAX_S = 0.25  # the poll interval grows with the run's age up to this
POLL_FRACTION = 0.02  # ... as this share of the time the sub-tasks have run: the end is seen <= 2 % late


def poll_interval(elapsed_s: float) -> float:
    """Seconds between status polls after ``elapsed_s`` seconds of running sub-tasks.

    Each poll costs CPU in this peon and in the service, which share the machine with the
    sub-tasks (at 50 ms, ~0.45 CPU-s of a 15 s run); a long run is polled less often, at a
    delay that stays a small share of its duration.
    """
    return min(max(POLL_INTERVAL_S, elapsed_s * POLL_FRACTION), max(POLL_INTERVAL_S, POLL_MAX_S))


LIVE_REPORT_INTERVAL_S = 1.0
DEFAULT_PRIORITY = 50
SHUTDOWN_WAIT_S = 10.0


@dataclass
class SubTask:
    id: str
    payload: dict[str, Any]
    spec_id: str = ""
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


def task_client(toolbox: TaskToolbox) -> Client:
    """The Overlord's Python client, as this task: its token, retries that ride out a restart.

    Tests answer it in memory through the same seam as task actions (``ActionClient.default_transport``).
    """
    url = toolbox.runtime.overlord_url
    if not url:
        raise TaskFailure("runtime.overlordUrl is not set: this task needs the Overlord to run sub-tasks")
    backoff = Backoff(initial=0.2, max_interval=5.0)
    attempts = max(4, math.ceil(toolbox.runtime.action_retry_s / (backoff.max_interval / 2)) + 5)
    token = toolbox.runtime.task_token
    return Client(
        url,
        retry=RetryPolicy(max_attempts=attempts, backoff=backoff),
        breaker=False,
        headers={TOKEN_HEADER: token} if token else None,
        transport=ActionClient.default_transport or failover_transport(url, toolbox.runtime.overlord_urls),
    )


class SubTaskDriver:
    """Submits, polls and (on failure or shutdown) stops the sub-tasks of one parent."""

    def __init__(
        self, toolbox: TaskToolbox, client: Client, payloads: list[dict[str, Any]], limit: int, max_saved: int = 0
    ) -> None:
        self.toolbox = toolbox
        self.client = client
        self.subs = [SubTask(p["id"], p, f"{toolbox.task_id}_{i}") for i, p in enumerate(payloads)]
        self.limit = max(1, limit)
        self.max_saved = max_saved
        self._last_live = -1e18

    def _submit(self, sub: SubTask) -> None:
        try:
            self.client.submit(sub.payload, validate=False)
        except ClientError as exc:
            raise TaskFailure(f"Could not submit sub-task[{sub.id}]: {exc.message}") from exc
        sub.status = "RUNNING"
        self.toolbox.log.info("Submitted sub-task[%s] with %d input splits", sub.id, len(sub.payload["inputSplits"]))

    def _poll(self) -> None:
        running = [s for s in self.subs if s.status == "RUNNING"]
        if not running:
            return
        try:
            found = self.client.statuses([s.id for s in running])
        except ClientError as exc:
            raise TaskFailure(f"Could not read sub-task statuses: {exc.message}") from exc
        for s in running:
            st = found.get(s.id)
            if st is None or not st.is_terminal:
                continue
            s.status = st.status_code.value
            s.error_msg = st.error_msg
            s.report = self._report(s.id) or {}
            self.toolbox.log.info("Sub-task[%s] finished with status[%s]", s.id, s.status)

    def _report(self, task_id: str) -> dict[str, Any] | None:
        try:
            return self.client.report(task_id).to_wire()
        except ClientError:
            return None

    def run(self) -> None:
        """Until every sub-task succeeded; raises TaskFailure naming the first that failed."""
        started = self.toolbox.clock.monotonic()
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
            time.sleep(poll_interval(self.toolbox.clock.monotonic() - started))

    def shutdown_all(self) -> None:
        """Best effort: stop every sub-task still running, then wait (bounded) until they have ended,
        so none is still pushing into the staging prefix when the parent removes it."""
        for s in self.subs:
            if s.status != "RUNNING":
                continue
            try:
                self.client.shutdown(s.id)
                self.toolbox.log.info("Shut down sub-task[%s]", s.id)
            except Exception as exc:  # the parent is failing anyway; keep stopping the others
                self.toolbox.log.warning("Could not shut down sub-task[%s]: %s", s.id, exc)
        deadline = self.toolbox.clock.monotonic() + SHUTDOWN_WAIT_S
        while any(s.status == "RUNNING" for s in self.subs) and self.toolbox.clock.monotonic() < deadline:
            try:
                self._poll()
            except Exception:
                break
            if any(s.status == "RUNNING" for s in self.subs):
                time.sleep(POLL_INTERVAL_S or 0.05)
        still = [s.id for s in self.subs if s.status == "RUNNING"]
        if still:
            self.toolbox.log.warning("Sub-tasks %s had not ended after %.0fs", still, SHUTDOWN_WAIT_S)

    def _write_live_report(self) -> None:
        """Sum the sub-tasks' live (or final) reports into the parent's live report, about once a second."""
        now = self.toolbox.clock.monotonic()
        if now - self._last_live < LIVE_REPORT_INTERVAL_S:
            return
        self._last_live = now
        build = RowStats()
        events: list[dict[str, Any]] = []
        for s in self.subs:
            report = s.report if s.status == "SUCCESS" else (self._report(s.id) if s.status == "RUNNING" else None)
            payload = ((report or {}).get("ingestionStatsAndErrors") or {}).get("payload") or {}
            stats = payload.get("rowStats") or {}
            phase_totals = stats.get("totals", stats) if isinstance(stats, dict) else {}
            if isinstance(phase_totals.get(BUILD_SEGMENTS), dict):
                build = build + RowStats.from_dict(phase_totals[BUILD_SEGMENTS])
            events.extend((payload.get("unparseableEvents") or {}).get(BUILD_SEGMENTS) or [])
        report = parallel_report(
            self.toolbox.task_id,
            IngestionState.BUILD_SEGMENTS,
            build,
            events[: self.max_saved],
            None,
            self.toolbox.context,
        )
        report[PARALLEL_SUBTASKS_REPORT] = self.subtasks_report()
        self.toolbox.write_live_report(report)

    def subtasks_report(self) -> dict[str, Any]:
        """Each spec as Druid's SinglePhaseSubTaskSpec, with the ids of the tasks that ran it."""
        specs = []
        for s in self.subs:
            p = s.payload
            spec = {
                "id": s.spec_id,
                "groupId": p["groupId"],
                "supervisorTaskId": p["supervisorTaskId"],
                "context": p["context"],
                "inputSplit": {"split": p["inputSplits"]},
                "ingestionSpec": p["spec"],
            }
            specs.append({"spec": spec, "taskIds": [] if s.status == "NOT_SUBMITTED" else [s.id]})
        return subtasks_report(self.toolbox.task_id, specs)


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


def _report(
    toolbox: TaskToolbox,
    state: IngestionState,
    totals: dict[str, RowStats],
    events: dict[str, list[Any]] | None,
    error: str | None,
) -> dict[str, Any]:
    build_events = (events or {}).get(BUILD_SEGMENTS) or []
    build = totals.get(BUILD_SEGMENTS, RowStats())
    return parallel_report(toolbox.task_id, state, build, build_events, error, toolbox.context)


def run_parallel(toolbox: TaskToolbox, spec: IndexSpec, splits: list[InputSplit]) -> TaskResult:
    """Run sub-tasks over the splits, then publish all their segments in one transaction."""
    workers = spec.tuning.max_num_concurrent_sub_tasks
    groups = split_evenly(splits, workers)
    wanted = min(workers, len(splits))
    if len(groups) < wanted:  # sizes unknown (all zero, e.g. pipes): spread round-robin instead
        groups = [splits[i::wanted] for i in range(wanted)]
    payloads = sub_task_payloads(toolbox, spec, groups)
    staging = staging_prefix(toolbox.task_id)
    toolbox.log.info("Splitting %d input files over %d sub-tasks", len(splits), len(payloads))
    client = ActionClient.for_toolbox(toolbox)
    tasks = task_client(toolbox)
    driver = SubTaskDriver(toolbox, tasks, payloads, workers, spec.tuning.max_saved_parse_exceptions)
    state = IngestionState.BUILD_SEGMENTS
    try:
        toolbox.write_live_report(_report(toolbox, IngestionState.NOT_STARTED, {}, None, None))
        driver.run()
        totals, events = _sum_reports(driver.subs, spec.tuning.max_saved_parse_exceptions)
        staged = [seg for s in driver.subs for seg in pushed_segments(toolbox, s)]
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
        try:
            toolbox.deep_storage.delete_prefix(staging)
        except Exception as exc:  # never mask how the task ended; the prefix is named in the log
            toolbox.log.warning("Could not remove staging prefix [%s] from deep storage: %s", staging, exc)
        with contextlib.suppress(Exception):
            tasks.close()
        client.close()


def pushed_segments(toolbox: TaskToolbox, sub: SubTask) -> list[pub.StagedSegment]:
    """A sub-task's pushed segments, each checked to be a file it pushed to its own staging prefix."""
    pushed = (sub.report.get("pushedSegments") or {}).get("payload") or {}
    listed = toolbox.deep_storage.list(staging_prefix(toolbox.task_id, sub.id))
    out = []
    for d in pushed.get("segments") or []:
        load_spec = d.get("loadSpec") if isinstance(d, dict) else None
        if load_spec not in listed:
            raise TaskFailure(
                f"Sub-task[{sub.id}] reported segment[{(d or {}).get('identifier')}] with load spec {load_spec!r}, "
                "which is not among the files it pushed to its staging area"
            )
        out.append(pub.StagedSegment.pushed(pub.descriptor_from_json(d), load_spec, sub.id))
    return out


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
        log_resources(toolbox)


INDEX_PARALLEL = register(
    TaskType(name="index_parallel", run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals)
)
