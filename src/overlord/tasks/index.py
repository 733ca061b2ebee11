"""``index`` and ``index_parallel``: Druid's native batch ingestion, and the ``single_phase_sub_task``.

The task ingests into its work dir under a placeholder version, then publishes (final ids from the
Overlord, files written to deep storage, one ``segmentTransactionalInsert``; see ``publish``).
``index_parallel`` with ``maxNumConcurrentSubTasks`` > 1 and several input files hands the files
to sub-tasks (``parallel``), which push to a staging prefix of deep storage and report the load
specs; the parent publishes everything from those load specs.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from overlord.core import granularity as granularities
from overlord.core.ids import validate_id
from overlord.core.lock_intervals import bucketed
from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidSpec, OverlordError, TaskFailure
from overlord.ingest.pipeline import IngestionResult, Progress, run_ingestion
from overlord.ingest.rowstats import IngestionState, RowStats, completion_report
from overlord.ingest.segment_files import SegmentDescriptor
from overlord.ingest.sources import InputSplit, check_local_source, check_split_dicts
from overlord.ingest.spec import IndexSpec, validate_index_spec
from overlord.isotime import Interval
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.tasks import publish as pub
from overlord.tasks.action_client import ActionClient
from overlord.tasks.reporting import (
    LiveReporter,
    allowed_dirs_of,
    check_lock_timeout,
    log_peak_memory,
    store_empty_columns,
)

SUB_TASK_TYPE = "single_phase_sub_task"
_TOP_FIELDS = {"type", "id", "groupId", "resource", "spec", "context", "dataSource"}
_SUB_FIELDS = _TOP_FIELDS | {"supervisorTaskId", "inputSplits", "numAttempts", "subtaskSpecId"}


def validate(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    """Validate at submit (nothing is stored on error); the 400 names the field."""
    unknown = sorted(set(payload) - _TOP_FIELDS)
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field for task type [{payload.get('type')}]", field=unknown[0])
    check_lock_timeout(payload, ctx)
    spec = validate_index_spec(payload, allowed_dirs=allowed_dirs_of(ctx))
    validate_id(spec.data_source, "spec.dataSchema.dataSource")
    check_local_source(spec)
    return payload


def validate_sub_task(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    """Like ``validate``, plus the supervisor's id (a directory name) and every split's path."""
    unknown = sorted(set(payload) - _SUB_FIELDS)
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field for task type [{SUB_TASK_TYPE}]", field=unknown[0])
    if not isinstance(payload.get("supervisorTaskId"), str):
        raise InvalidSpec("supervisorTaskId: missing required field", field="supervisorTaskId")
    validate_id(payload["supervisorTaskId"], "supervisorTaskId")
    splits = payload.get("inputSplits")
    if not isinstance(splits, list) or not all(isinstance(s, dict) for s in splits):
        raise InvalidSpec("inputSplits: expected a list of input splits", field="inputSplits")
    check_lock_timeout(payload, ctx)
    spec = validate_index_spec(_as_index_payload(payload), allowed_dirs=allowed_dirs_of(ctx))
    validate_id(spec.data_source, "spec.dataSchema.dataSource")
    check_split_dicts(splits, spec.allowed_dirs)
    return payload


def _as_index_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "type": "index_parallel"}


def lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    """granularitySpec.intervals widened to whole segment-granularity buckets; empty: it locks as it goes."""
    gspec = ((payload.get("spec") or {}).get("dataSchema") or {}).get("granularitySpec") or {}
    raw = gspec.get("intervals") or []
    if not raw:
        return []
    gran = granularities.parse(gspec.get("segmentGranularity", "day"))
    return bucketed((Interval.parse(str(text)) for text in raw), gran)


def load_spec(toolbox: TaskToolbox, payload: dict[str, Any] | None = None) -> IndexSpec:
    """Re-validate in the peon against the runtime's allowed dirs (defence in depth)."""
    dirs = [Path(p) for p in toolbox.runtime.allowed_input_dirs]
    if not dirs:
        dirs = [Path("/")]
    return validate_index_spec(payload or toolbox.payload, allowed_dirs=dirs)


def failure_report(toolbox: TaskToolbox, exc: BaseException, progress: Progress | None, message: str) -> dict[str, Any]:
    """Druid's completion report for a failed run, from the error's context or the last progress."""
    ctx = getattr(exc, "context", {}) or {}
    stats = ctx.get("row_stats") or (progress.totals() if progress else {})
    events = ctx.get("unparseable_events", progress.events if progress else None)
    state = ctx.get("ingestion_state") or (progress.state if progress else IngestionState.NOT_STARTED)
    return completion_report(toolbox.task_id, state, stats, events, message, toolbox.context)


class _Tracker(LiveReporter):
    """A LiveReporter that remembers the last Progress, for the failure report."""

    last: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.last = progress
        super().__call__(progress)


def ingest(
    toolbox: TaskToolbox,
    spec: IndexSpec,
    out_dir: Path,
    splits: list[InputSplit] | None = None,
) -> tuple[IngestionResult, _Tracker]:
    """Run the pipeline with live reports; on error, write the failure report and raise TaskFailure."""
    tracker = _Tracker(toolbox)
    try:
        result = run_ingestion(
            spec,
            out_dir=out_dir,
            version=pub.PLACEHOLDER_VERSION,
            clock=toolbox.clock,
            files=splits,
            on_progress=tracker,
            log=toolbox.log,
            store_empty_columns=store_empty_columns(toolbox),
        )
    except OverlordError as exc:
        toolbox.write_report(failure_report(toolbox, exc, tracker.last, exc.message))
        raise TaskFailure(exc.message) from exc
    except BaseException as exc:
        msg = f"Task was shut down: {exc}" if not isinstance(exc, Exception) else (str(exc) or type(exc).__name__)
        toolbox.write_report(failure_report(toolbox, exc, tracker.last, msg))
        raise
    return result, tracker


def publish_staged(
    toolbox: TaskToolbox, client: ActionClient, spec: IndexSpec, staged: list[pub.StagedSegment]
) -> list[dict[str, Any]]:
    """Final ids (overwrite: lock version, append: segmentAllocate), move, one transactional insert."""
    if spec.io_config.append_to_existing:
        finals = pub.assign_append_ids(client, staged, spec.granularity_spec.segment, spec.granularity_spec.query)
    else:
        timeout = toolbox.context.get("taskLockTimeout")
        finals = pub.assign_overwrite_ids(client, staged, timeout if isinstance(timeout, int) else None)
    return pub.publish(client, finals, toolbox.deep_storage, log=toolbox.log)


def run_in_process(toolbox: TaskToolbox, spec: IndexSpec, splits: list[InputSplit] | None = None) -> TaskResult:
    """Ingest and publish in this peon (``index``, or ``index_parallel`` with one worker)."""
    out_dir = toolbox.work_dir / "segments"
    result, _ = ingest(toolbox, spec, out_dir, splits)
    staged = [pub.StagedSegment.written(d, out_dir, toolbox.task_id) for d in result.segments]
    try:
        with ActionClient.for_toolbox(toolbox) as client:
            publish_staged(toolbox, client, spec, staged)
    except BaseException as exc:
        msg = str(exc) if isinstance(exc, Exception) else f"Task was shut down: {exc}"
        toolbox.write_report(result.completion_report(toolbox.task_id, toolbox.context, msg))
        raise
    toolbox.write_report(result.completion_report(toolbox.task_id, toolbox.context, None))
    toolbox.log.info("Ingested %s", _summary(result.row_stats, len(result.segments)))
    return TaskResult.ok()


def log_resources(toolbox: TaskToolbox) -> None:
    """Log peak RSS and the CPU seconds this peon used (benchmarks grep ``CPU seconds[...]``).

    A peon is a fresh process (forked), so its own rusage counts this task alone.
    """
    log_peak_memory(toolbox)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    toolbox.log.info("Task[%s] CPU seconds[%.3f]", toolbox.task_id, ru.ru_utime + ru.ru_stime)


def _summary(stats: dict[str, RowStats], segments: int) -> str:
    t = stats.get("buildSegments") or RowStats()
    return (
        f"{t.processed} rows ({t.processed_with_error} with errors, {t.unparseable} unparseable, "
        f"{t.thrown_away} thrown away, {t.processed_bytes} bytes) into {segments} segments"
    )


def run(toolbox: TaskToolbox) -> TaskResult:
    """Entry point of ``index`` (``index_parallel`` starts in ``tasks.parallel``)."""
    try:
        return run_in_process(toolbox, load_spec(toolbox))
    finally:
        log_resources(toolbox)


# ---- single_phase_sub_task --------------------------------------------------------------------


STAGING = "_staging"


def staging_prefix(supervisor_id: str, sub_task_id: str | None = None) -> str:
    """The deep-storage key prefix where a supervisor's sub-tasks push segments before it publishes."""
    prefix = f"{STAGING}/{supervisor_id}"
    return f"{prefix}/{sub_task_id}" if sub_task_id is not None else prefix


def run_sub_task(toolbox: TaskToolbox) -> TaskResult:
    """Ingest the given splits and push the segments to the supervisor's staging prefix (no publish).

    The report lists the pushed segments with their load specs (Druid's pushedSegments report);
    the supervisor publishes from those. A sub-task that fails removes what it pushed.
    """
    payload = toolbox.payload
    spec = load_spec(toolbox, _as_index_payload(payload))
    splits = [InputSplit.from_dict(d) for d in payload.get("inputSplits") or []]
    out_dir = toolbox.work_dir / "segments"
    prefix = staging_prefix(str(payload["supervisorTaskId"]), toolbox.task_id)
    try:
        result, _ = ingest(toolbox, spec, out_dir, splits)
        try:
            pushed = push_segments(toolbox, out_dir, prefix, result.segments)
        except BaseException as exc:
            msg = str(exc) if isinstance(exc, Exception) else f"Task was shut down: {exc}"
            toolbox.write_report(result.completion_report(toolbox.task_id, toolbox.context, msg))
            raise
        report = result.completion_report(toolbox.task_id, toolbox.context, None)
        report["pushedSegments"] = pushed_segments_report(toolbox.task_id, pushed)
        toolbox.write_report(report)
        toolbox.log.info("Pushed %s to deep storage [%s]", _summary(result.row_stats, len(pushed)), prefix)
        return TaskResult.ok()
    finally:
        log_resources(toolbox)


def push_segments(
    toolbox: TaskToolbox, out_dir: Path, prefix: str, segments: list[SegmentDescriptor]
) -> list[dict[str, Any]]:
    """Write each segment under ``prefix`` in deep storage; segment JSON with the storage's load specs."""
    out = []
    try:
        for d in segments:
            spec = toolbox.deep_storage.write(f"{prefix}/{d.path}", str(out_dir / d.path))
            out.append({**d.to_dict(), "loadSpec": spec})
            (out_dir / d.path).unlink(missing_ok=True)
    except BaseException:
        toolbox.deep_storage.delete_prefix(prefix)
        raise
    return out


def pushed_segments_report(task_id: str, segments: list[dict[str, Any]]) -> dict[str, Any]:
    """What a sub-task hands its supervisor (Druid's PushedSegmentsReport, as a report entry)."""
    return {"type": "pushedSegments", "taskId": task_id, "payload": {"segments": segments}}


INDEX = register(TaskType(name="index", run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals))
SINGLE_PHASE_SUB_TASK = register(
    TaskType(
        name=SUB_TASK_TYPE, run=f"{__name__}:run_sub_task", validate=validate_sub_task, lock_intervals=lock_intervals
    )
)
