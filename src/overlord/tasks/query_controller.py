"""``query_controller``: a SQL-based ingestion (Druid's MSQControllerTask), run over ``query_worker`` tasks.

``POST /druid/v2/sql/task`` stores one of these with Druid's id ``query-<sqlQueryId>``. In its peon
the controller splits the EXTERN input files over ``maxNumTasks - 1`` workers (the controller counts
as one, as in Druid), submits them through the Overlord like ``index_parallel`` sub-tasks (same
driver, same staging prefix, same shutdown on failure), then publishes every segment in one
``segmentTransactionalInsert``: INSERT allocates new partitions with ``segmentAllocate``; REPLACE
holds time-chunk locks on the replaced time from the start, publishes under its lock's version and
drops the used segments it replaces in the same transaction (a replaced time with no new rows is
left empty). When several workers ran a GROUP BY, their partial rows are rolled up here per time
chunk first, so rollup is exact; a GROUP BY whose aggregates do not combine runs on one worker.

The report at ``/task/{id}/reports`` is Druid's ``multiStageQuery`` (status, stages, counters, and an
errorReport on failure), live while the query runs; an ``ingestionStatsAndErrors`` entry with
native ingestion's row statistics is added so tools that read those see the same figures.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from overlord.core import granularity as granularities
from overlord.core.ids import validate_id
from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidSpec, TaskFailure
from overlord.ingest.rowstats import BUILD_SEGMENTS, DETERMINE_PARTITIONS, IngestionState, RowStats
from overlord.ingest.sources import InputSplit, split_evenly
from overlord.isotime import Interval, format_ms
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.sql import extern_query as eq
from overlord.sql.ingest_statement import ALL_TIME, IngestStatement
from overlord.tasks import publish as pub
from overlord.tasks.action_client import ActionClient
from overlord.tasks.index import staging_prefix
from overlord.tasks.parallel import SubTask, SubTaskDriver, pushed_segments, task_client
from overlord.tasks.query_worker import WORKER_TYPE, load_statement, worker_task_id
from overlord.tasks.reporting import allowed_dirs_of, check_lock_timeout, log_peak_memory

CONTROLLER_TYPE = "query_controller"
_FIELDS = {
    "type",
    "id",
    "groupId",
    "resource",
    "dataSource",
    "spec",
    "sqlQuery",
    "sqlQueryContext",
    "sqlResultsContext",
    "sqlTypeNames",
    "nativeTypeNames",
    "context",
}


def controller_task_id(sql_query_id: str | None = None) -> str:
    """Druid's controller id: ``query-<sqlQueryId>`` (a random UUID when the query has none)."""
    return f"query-{sql_query_id or uuid.uuid4()}"


def task_payload(task_id: str, stmt: IngestStatement, sql: str, context: dict[str, Any]) -> dict[str, Any]:
    """The stored controller task, shaped like Druid's (``spec.destination`` and ``tuningConfig``)."""
    settings = eq.QueryContext.of(context)
    return {
        "type": CONTROLLER_TYPE,
        "id": task_id,
        "dataSource": stmt.data_source,
        "spec": {
            "destination": {
                "type": "dataSource",
                "dataSource": stmt.data_source,
                "segmentGranularity": stmt.segment_granularity.to_json(),
                "replaceTimeChunks": [str(iv) for iv in stmt.replace_intervals]
                if stmt.replace_intervals is not None
                else None,
            },
            "assignmentStrategy": "max",
            "tuningConfig": {
                "maxNumWorkers": settings.max_num_tasks - 1,
                "maxRowsInMemory": 100000,
                "rowsPerSegment": settings.rows_per_segment,
            },
        },
        "sqlQuery": sql,
        "sqlQueryContext": context,
        "context": context,
    }


def validate(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    """At submit: the statement parses, the EXTERN input is readable (allowedDirs), the context is valid."""
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field for task type [{CONTROLLER_TYPE}]", field=unknown[0])
    check_lock_timeout(payload, ctx)
    stmt = load_statement(payload)
    validate_id(stmt.data_source, "dataSource")
    if payload.get("dataSource", stmt.data_source) != stmt.data_source:
        raise InvalidSpec(f"dataSource: must be the statement's target [{stmt.data_source}]", field="dataSource")
    eq.QueryContext.of(payload.get("context"))
    eq.check_translates(stmt)
    eq.splits_of(eq.input_spec(stmt, allowed_dirs_of(ctx)))
    return {**payload, "dataSource": stmt.data_source}


def lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    """REPLACE locks the time it replaces before it runs; INSERT locks as it allocates."""
    stmt = load_statement(payload)
    return list(stmt.replace_intervals or ())


# ---- the report ---------------------------------------------------------------------------------


class QueryReport:
    """Druid's MSQ report for one query, rebuilt from the workers' reports whenever it is written."""

    def __init__(self, toolbox: TaskToolbox, stmt: IngestStatement, settings: eq.QueryContext) -> None:
        self.toolbox, self.stmt, self.settings = toolbox, stmt, settings
        self.start_ms = toolbox.clock.now_ms()
        self.query_id = uuid.uuid4().hex
        self.status = "RUNNING"
        self.phases = ["NEW", "NEW"]
        self.stage_start: list[int | None] = [None, None]
        self.stage_end: list[int | None] = [None, None]
        self.workers = 0
        self.partitions: int | None = None
        self.subs: list[SubTask] = []
        self.worker_reports: dict[str, dict[str, Any]] = {}
        self.error: dict[str, Any] | None = None

    def phase(self, stage: int, phase: str) -> None:
        now = self.toolbox.clock.now_ms()
        if self.stage_start[stage] is None and phase != "NEW":
            self.stage_start[stage] = now
        if phase in ("FINISHED", "FAILED"):
            self.stage_end[stage] = now
        self.phases[stage] = phase

    def _worker_payloads(self) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for n, s in enumerate(self.subs):
            rep = s.report or self.worker_reports.get(s.id)
            payload = (rep.get("queryWorker") or {}).get("payload") if rep else None
            if payload:
                out.append((n, payload))
        return out

    def counters(self) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for n, payload in self._worker_payloads():
            for stage, c in (payload.get("counters") or {}).items():
                out.setdefault(stage, {})[str(n)] = c
        return out

    def row_stats(self) -> RowStats:
        total = RowStats()
        for _, payload in self._worker_payloads():
            total = total + RowStats.from_dict(payload.get("rowStats") or {})
        return total

    def _stage(self, number: int) -> dict[str, Any]:
        stmt = self.stmt
        if number == 0:
            definition: dict[str, Any] = {
                "id": f"{self.query_id}_0",
                "input": [stmt.extern.to_json()],
                "processor": {
                    "type": "groupByPreShuffle" if stmt.group_by else "scan",
                    "query": {"sql": stmt.query},
                },
                "signature": [{"name": i.name, "type": "UNKNOWN"} for i in stmt.items if i.name],
                "maxWorkerCount": self.settings.max_num_tasks - 1,
            }
        else:
            definition = {
                "id": f"{self.query_id}_1",
                "input": [{"type": "stage", "stage": 0}],
                "processor": {
                    "type": "segmentGenerator",
                    "dataSchema": {
                        "dataSource": stmt.data_source,
                        "granularitySpec": {
                            "segmentGranularity": stmt.segment_granularity.to_json(),
                            "queryGranularity": {"type": "none"},
                            "rollup": stmt.group_by,
                        },
                        "metricsSpec": [{"name": m} for m in stmt.metrics],
                    },
                    "clusterBy": list(stmt.clustered_by),
                    "tuningConfig": {
                        "maxNumWorkers": self.settings.max_num_tasks - 1,
                        "rowsPerSegment": self.settings.rows_per_segment,
                    },
                },
                "signature": [],
                "maxWorkerCount": self.settings.max_num_tasks - 1,
            }
        out: dict[str, Any] = {"stageNumber": number, "definition": definition}
        start = self.stage_start[number]
        if start is not None:
            end = self.stage_end[number] or self.toolbox.clock.now_ms()
            out.update(
                phase=self.phases[number],
                workerCount=self.workers,
                startTime=format_ms(start),
                duration=end - start,
                sort=number == 0,
            )
            if self.partitions is not None and number == 1:
                out["partitionCount"] = self.partitions
            elif number == 0 and self.phases[0] in ("FINISHED", "RESULTS_COMPLETE"):
                out["partitionCount"] = self.workers
        return out

    def build(self) -> dict[str, Any]:
        now = self.toolbox.clock.now_ms()
        running = sum(1 for s in self.subs if s.status == "RUNNING")
        pending = sum(1 for s in self.subs if s.status == "NOT_SUBMITTED")
        status: dict[str, Any] = {
            "status": self.status,
            "startTime": format_ms(self.start_ms),
            "durationMs": now - self.start_ms,
            "pendingTasks": pending,
            "runningTasks": running + (1 if self.status == "RUNNING" else 0),
        }
        if self.error is not None:
            status["errorReport"] = self.error
        warnings = [
            {
                "taskId": self.subs[n].id,
                "stageNumber": 0,
                "error": {"errorCode": "CannotParseExternalData", "errorMessage": f"Unable to parse row [{raw}]"},
            }
            for n, payload in self._worker_payloads()
            for raw in (payload.get("unparseableSamples") or [])
        ]
        if warnings:
            status["warnings"] = warnings
        stats = self.row_stats()
        state = IngestionState.COMPLETED if self.status != "RUNNING" else IngestionState.BUILD_SEGMENTS
        return {
            "multiStageQuery": {
                "type": "multiStageQuery",
                "taskId": self.toolbox.task_id,
                "payload": {
                    "status": status,
                    "stages": [self._stage(0), self._stage(1)],
                    "counters": self.counters(),
                },
            },
            "ingestionStatsAndErrors": {
                "type": "ingestionStatsAndErrors",
                "taskId": self.toolbox.task_id,
                "payload": {
                    "ingestionState": state.value,
                    "unparseableEvents": {},
                    "rowStats": {DETERMINE_PARTITIONS: RowStats().to_dict(), BUILD_SEGMENTS: stats.to_dict()},
                    "errorMsg": (self.error or {}).get("error", {}).get("errorMessage"),
                    "segmentAvailabilityConfirmed": False,
                    "segmentAvailabilityWaitTimeMs": 0,
                },
            },
        }


class _WorkerDriver(SubTaskDriver):
    """index_parallel's sub-task driver, writing the MSQ report instead of native row stats."""

    def __init__(self, toolbox: TaskToolbox, client: Any, payloads: list[dict[str, Any]], report: QueryReport) -> None:
        super().__init__(toolbox, client, payloads, len(payloads))
        self.query_report = report
        report.subs = self.subs

    def _write_live_report(self) -> None:
        now = self.toolbox.clock.monotonic()
        if now - self._last_live < 1.0:
            return
        self._last_live = now
        for s in self.subs:
            if s.status == "RUNNING":
                rep = self._report(s.id)
                if rep:
                    self.query_report.worker_reports[s.id] = rep
        if self.query_report.phases[0] == "NEW" and any(s.status == "RUNNING" for s in self.subs):
            self.query_report.phase(0, "READING_INPUT")
        self.toolbox.write_live_report(self.query_report.build())


def _worker_payloads(
    toolbox: TaskToolbox, stmt: IngestStatement, groups: list[list[InputSplit]], partial: bool
) -> list[dict[str, Any]]:
    context = dict(toolbox.context)
    context.setdefault("priority", 50)
    return [
        {
            "type": WORKER_TYPE,
            "id": worker_task_id(toolbox.task_id, n),
            "groupId": toolbox.task_id,
            "controllerTaskId": toolbox.task_id,
            "supervisorTaskId": toolbox.task_id,
            "workerNumber": n,
            "retryCount": 0,
            "dataSource": stmt.data_source,
            "sqlQuery": toolbox.payload["sqlQuery"],
            "inputSplits": [s.to_dict() for s in splits],
            "partialAggregation": partial,
            "context": context,
        }
        for n, splits in enumerate(groups)
    ]


def _roll_up(
    toolbox: TaskToolbox, stmt: IngestStatement, settings: eq.QueryContext, staged: list[pub.StagedSegment]
) -> list[pub.StagedSegment]:
    """Combine the workers' partial GROUP BY rows per time chunk and write the final segments here."""
    by_interval: dict[Interval, list[pub.StagedSegment]] = {}
    for s in staged:
        by_interval.setdefault(s.descriptor.interval, []).append(s)
    out_dir = toolbox.work_dir / "segments"
    out: list[pub.StagedSegment] = []
    for iv in sorted(by_interval):
        parts = by_interval[iv]
        tables = []
        for s in parts:
            with toolbox.deep_storage.open(s.load_spec or {}) as f:
                t = pq.read_table(f)
            tables.append(
                t.set_column(0, eq.TIME, t.column(eq.TIME).cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()))
            )
        dims = tuple(dict.fromkeys(d for s in parts for d in s.descriptor.dimensions))
        metrics = tuple(dict.fromkeys(m for s in parts for m in s.descriptor.metrics))
        table = eq.rollup_partials(stmt, tables, dims)
        for d in eq.write_chunk(
            stmt, out_dir, iv, table, dims, metrics, pub.PLACEHOLDER_VERSION, settings.rows_per_segment
        ):
            out.append(pub.StagedSegment.written(d, out_dir, toolbox.task_id))
    return out


def _replaced_segments(client: ActionClient, stmt: IngestStatement) -> list[dict[str, Any]]:
    """The used segments a REPLACE drops; one only partly inside the replaced time cannot be replaced."""
    assert stmt.replace_intervals is not None
    used = client.segment_list_used(stmt.data_source, [str(iv) for iv in stmt.replace_intervals])
    out = []
    for seg in used:
        iv = pub.descriptor_from_json(seg).interval
        if any(r.contains(iv) for r in stmt.replace_intervals):
            out.append(seg)
        elif any(r.overlaps(iv) for r in stmt.replace_intervals):
            raise eq.fault(
                "InsertCannotReplaceExistingSegment",
                f"Cannot replace existing segment[{seg.get('identifier')}] because it is not within the bounds "
                f"specified by replaceTimeChunks[{', '.join(str(r) for r in stmt.replace_intervals)}]",
            )
    return out


def _allocation_granularity(stmt: IngestStatement) -> granularities.Granularity:
    """PARTITIONED BY ALL allocates the ALL_TIME chunk: a duration granularity starting where it starts."""
    if not stmt.segment_granularity.is_all:
        return stmt.segment_granularity
    span = {"type": "duration", "duration": ALL_TIME.end - ALL_TIME.start, "origin": format_ms(ALL_TIME.start)}
    return granularities.parse(span)


def _publish(
    toolbox: TaskToolbox, client: ActionClient, stmt: IngestStatement, staged: list[pub.StagedSegment]
) -> list[dict[str, Any]]:
    if stmt.replace_intervals is None:
        finals = pub.assign_append_ids(client, staged, _allocation_granularity(stmt), _NONE)
        return pub.publish(client, finals, toolbox.deep_storage, log=toolbox.log)
    timeout = toolbox.context.get("taskLockTimeout")
    finals = pub.assign_overwrite_ids(client, staged, timeout if isinstance(timeout, int) else None)
    dropped = _replaced_segments(client, stmt)
    toolbox.log.info("Replacing %d used segments in %s", len(dropped), [str(iv) for iv in stmt.replace_intervals])
    return pub.publish(client, finals, toolbox.deep_storage, log=toolbox.log, segments_to_be_dropped=dropped)


def run(toolbox: TaskToolbox) -> TaskResult:
    stmt = load_statement(toolbox.payload)
    settings = eq.QueryContext.of(toolbox.context)
    report = QueryReport(toolbox, stmt, settings)
    client = ActionClient.for_toolbox(toolbox)
    tasks = task_client(toolbox)
    driver: _WorkerDriver | None = None
    try:
        toolbox.write_live_report(report.build())
        splits = eq.splits_of(eq.input_spec(stmt, toolbox.runtime.allowed_input_dirs))
        workers = min(settings.max_num_tasks - 1, len(splits))
        if stmt.group_by and not stmt.combinable and workers > 1:
            toolbox.log.info("The GROUP BY has aggregates whose partial results do not combine: one worker")
            workers = 1
        partial = stmt.group_by and workers > 1
        groups = split_evenly(splits, workers)
        if len(groups) < workers:
            groups = [splits[i::workers] for i in range(workers)]
        report.workers = len(groups)
        driver = _WorkerDriver(toolbox, tasks, _worker_payloads(toolbox, stmt, groups, partial), report)
        toolbox.log.info("Running %s over %d input files with %d workers", stmt.mode, len(splits), len(groups))
        report.phase(0, "READING_INPUT")
        driver.run()
        report.phase(0, "FINISHED")
        report.phase(1, "READING_INPUT")
        staged = [seg for s in driver.subs for seg in pushed_segments(toolbox, s)]
        if partial:
            staged = _roll_up(toolbox, stmt, settings, staged)
        published = _publish(toolbox, client, stmt, staged)
        report.partitions = len(published)
        report.phase(1, "FINISHED")
        report.status = "SUCCESS"
        toolbox.write_report(report.build())
        stats = report.row_stats()
        toolbox.log.info(
            "%s into [%s]: %d rows processed (%d unparseable, %d thrown away), %d segments published",
            stmt.mode,
            stmt.data_source,
            stats.processed,
            stats.unparseable,
            stats.thrown_away,
            len(published),
        )
        return TaskResult.ok()
    except BaseException as exc:
        if driver is not None:
            driver.shutdown_all()
        report.error = _error_report(toolbox, report, exc)
        report.status = "FAILED"
        for stage in (0, 1):
            if report.phases[stage] not in ("NEW", "FINISHED"):
                report.phase(stage, "FAILED")
        toolbox.write_report(report.build())
        fault = report.error["error"]
        if isinstance(exc, Exception):
            raise TaskFailure(f"{fault['errorCode']}: {fault['errorMessage']}") from exc
        raise
    finally:
        try:
            toolbox.deep_storage.delete_prefix(staging_prefix(toolbox.task_id))
        except Exception as exc:
            toolbox.log.warning("Could not remove the staging prefix of [%s]: %s", toolbox.task_id, exc)
        with contextlib.suppress(Exception):
            tasks.close()
        client.close()
        log_peak_memory(toolbox)


def _error_report(toolbox: TaskToolbox, report: QueryReport, exc: BaseException) -> dict[str, Any]:
    """A failed worker's own error report when there is one (Druid prefers it), else the controller's."""
    for s in report.subs:
        if s.status == "FAILED":
            worker = ((s.report.get("queryWorker") or {}).get("payload") or {}).get("errorReport")
            if worker:
                return dict(worker)
            return {
                "taskId": s.id,
                "host": None,
                "stageNumber": 0,
                "error": {"errorCode": "WorkerFailed", "errorMessage": f"Worker task failed: {s.error_msg}"},
            }
    stage = 1 if report.phases[1] != "NEW" else 0
    return {"taskId": toolbox.task_id, "host": None, "stageNumber": stage, "error": eq.fault_of(exc)}


_NONE = granularities.parse("none")

QUERY_CONTROLLER = register(
    TaskType(name=CONTROLLER_TYPE, run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals)
)
