"""``query_worker``: one worker of a SQL-based ingestion (Druid's MSQWorkerTask).

Submitted by its ``query_controller`` with Druid's id ``<controller>-worker<n>_<retry>`` and the
controller's id as groupId. It reads its share of the EXTERN input, runs the SELECT in DuckDB and
pushes the rows, cut into segments per time chunk (or, when the controller rolls up several
workers' GROUP BY output, one partial file per time chunk), to the controller's staging prefix of
deep storage. Its report lists the pushed files (``pushedSegments``, as a native sub-task's) and
its stage counters (``queryWorker``), which the controller folds into the query's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overlord.core.ids import validate_id
from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidSpec
from overlord.ingest.sources import InputSplit, check_split_dicts, checked_splits
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.sql import extern_query as eq
from overlord.sql.ingest_statement import IngestStatement, parse
from overlord.tasks.index import push_segments, pushed_segments_report, staging_prefix
from overlord.tasks.publish import PLACEHOLDER_VERSION
from overlord.tasks.reporting import LIVE_REPORT_INTERVAL_S, allowed_dirs_of, log_peak_memory

WORKER_TYPE = "query_worker"
_FIELDS = {
    "type",
    "id",
    "groupId",
    "resource",
    "controllerTaskId",
    "supervisorTaskId",
    "workerNumber",
    "retryCount",
    "dataSource",
    "sqlQuery",
    "inputSplits",
    "partialAggregation",
    "context",
}
NO_SPLIT_LIMIT = 2**62


def worker_task_id(controller_id: str, worker_number: int, retry_count: int = 0) -> str:
    """Druid's worker task id: ``<controller id>-worker<number>_<retry count>``."""
    return f"{controller_id}-worker{worker_number}_{retry_count}"


def load_statement(payload: dict[str, Any], field: str = "sqlQuery") -> IngestStatement:
    sql = payload.get(field)
    if not isinstance(sql, str):
        raise InvalidSpec(f"{field}: missing required field", field=field)
    return parse(sql)


def validate(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field for task type [{WORKER_TYPE}]", field=unknown[0])
    controller = payload.get("controllerTaskId")
    validate_id(controller, "controllerTaskId")
    if payload.get("supervisorTaskId", controller) != controller:
        raise InvalidSpec("supervisorTaskId: must equal controllerTaskId", field="supervisorTaskId")
    number = payload.get("workerNumber")
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise InvalidSpec("workerNumber: expected a non-negative integer", field="workerNumber")
    stmt = load_statement(payload)
    if payload.get("dataSource") != stmt.data_source:
        raise InvalidSpec(f"dataSource: must be the statement's target [{stmt.data_source}]", field="dataSource")
    check_split_dicts(payload.get("inputSplits"), allowed_dirs_of(ctx))
    eq.QueryContext.of(payload.get("context"))
    return payload


def _counters(
    counters: eq.InputCounters, out_rows: int, out_bytes: int, files: int, pushed_rows: int
) -> dict[str, Any]:
    """This worker's counters in Druid's shape, keyed by stage number."""
    stage0: dict[str, Any] = {
        "input0": {
            "type": "channel",
            "rows": [counters.rows],
            "bytes": [counters.bytes],
            "files": [counters.files],
            "totalFiles": [counters.files],
        },
        "output": {"type": "channel", "rows": [out_rows], "bytes": [out_bytes], "frames": [files]},
    }
    if counters.unparseable:
        stage0["warnings"] = {"type": "warnings", "CannotParseExternalData": counters.unparseable}
    stage1 = {
        "segmentGenerationProgress": {
            "type": "segmentGenerationProgress",
            "rowsProcessed": out_rows,
            "rowsPersisted": out_rows,
            "rowsMerged": out_rows,
            "rowsPushed": pushed_rows,
        }
    }
    return {"0": stage0, "1": stage1}


def worker_report(
    toolbox: TaskToolbox,
    phase: str,
    counters: eq.InputCounters,
    *,
    out_rows: int = 0,
    out_bytes: int = 0,
    files: int = 0,
    pushed: list[dict[str, Any]] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "queryWorker": {
            "type": "queryWorker",
            "taskId": toolbox.task_id,
            "payload": {
                "phase": phase,
                "counters": _counters(counters, out_rows, out_bytes, files, out_rows if pushed is not None else 0),
                "rowStats": counters.row_stats(),
                "unparseableSamples": counters.samples,
                "errorReport": error,
            },
        }
    }
    if pushed is not None:
        report["pushedSegments"] = pushed_segments_report(toolbox.task_id, pushed)
    return report


def run(toolbox: TaskToolbox) -> TaskResult:
    payload = toolbox.payload
    counters = eq.InputCounters()
    try:
        stmt = load_statement(payload)
        settings = eq.QueryContext.of(toolbox.context)
        spec = eq.input_spec(stmt, toolbox.runtime.allowed_input_dirs)
        splits = checked_splits([InputSplit.from_dict(d) for d in payload["inputSplits"]], spec.allowed_dirs)
        toolbox.write_live_report(worker_report(toolbox, "READING_INPUT", counters))
        last = [toolbox.clock.monotonic()]

        def progress(now_counters: eq.InputCounters) -> None:
            if toolbox.clock.monotonic() - last[0] >= LIVE_REPORT_INTERVAL_S:
                last[0] = toolbox.clock.monotonic()
                toolbox.write_live_report(worker_report(toolbox, "READING_INPUT", now_counters))

        table, counters = eq.read_input(stmt, spec, splits, settings.max_parse_exceptions, progress)
        toolbox.log.info(
            "Read %d rows (%d unparseable) from %d files", counters.rows, counters.unparseable, len(splits)
        )
        result = eq.run_select(stmt, table, counters)
        del table
        shaped = eq.shape(stmt, result)
        del result
        chunks = eq.split_chunks(stmt, shaped)
        toolbox.write_live_report(worker_report(toolbox, "POST_READING", counters, out_rows=shaped.table.num_rows))
        per_file = NO_SPLIT_LIMIT if payload.get("partialAggregation") else settings.rows_per_segment
        out_dir = toolbox.work_dir / "segments"
        written = []
        for iv in sorted(chunks):
            written.extend(
                eq.write_chunk(
                    stmt, out_dir, iv, chunks[iv], shaped.dimensions, shaped.metrics, PLACEHOLDER_VERSION, per_file
                )
            )
        prefix = staging_prefix(str(payload["controllerTaskId"]), toolbox.task_id)
        pushed = push_segments(toolbox, Path(out_dir), prefix, written)
        out_bytes = sum(d.size for d in written)
        toolbox.write_report(
            worker_report(
                toolbox,
                "FINISHED",
                counters,
                out_rows=shaped.table.num_rows,
                out_bytes=out_bytes,
                files=len(written),
                pushed=pushed,
            )
        )
        toolbox.log.info(
            "Pushed %d rows in %d files (%d bytes) to [%s]", shaped.table.num_rows, len(written), out_bytes, prefix
        )
        return TaskResult.ok()
    except BaseException as exc:
        error = {"taskId": toolbox.task_id, "host": None, "stageNumber": 0, "error": eq.fault_of(exc)}
        toolbox.write_report(worker_report(toolbox, "FAILED", counters, error=error))
        raise
    finally:
        log_peak_memory(toolbox)


QUERY_WORKER = register(TaskType(name=WORKER_TYPE, run=f"{__name__}:run", validate=validate))
