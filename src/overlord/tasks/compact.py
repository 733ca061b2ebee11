"""``compact``: rewrite the visible segments of an interval into fewer, larger ones.

The task takes a time-chunk lock on the interval first (so nothing changes under it), reads the
visible segments (``segmentListUsed``) through deep storage by their load specs with pyarrow,
combines them, optionally re-buckets them by a new ``segmentGranularity`` / truncates to a new
``queryGranularity``, re-aggregates metrics with their *combining* aggregators when rollup is on
(``count`` becomes a ``longSum`` of the count column), cuts partitions of at most
``maxRowsPerSegment`` rows and publishes them under its lock's version, which overshadows the old
segments (``segmentTransactionalInsert`` marks them unused).

Without a new segmentGranularity every existing time chunk is a split of its own, with its own
``ingestionStatsAndErrors_N`` report entry, as Druid does. Aggregator types are not stored in our
segment files, so metrics combine by, in order: the spec's ``metricsSpec``, the segments'
``lastCompactionState.metricsSpec``, then the column type (integers ``longSum``, floats
``doubleSum``; names starting or ending with ``min``/``max`` use min/max).

The legacy ``merge``, ``append`` and ``same_interval_merge`` types (``legacy``) are translated to
a compact run; ``compact`` is the preferred form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overlord.core import granularity as granularities
from overlord.core.granularity import Granularity
from overlord.core.protocols import DeepStorage
from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidInput, InvalidSpec, TaskFailure
from overlord.ingest import rollup as rollups
from overlord.ingest.rowstats import BUILD_SEGMENTS, DETERMINE_PARTITIONS, IngestionState, RowStats
from overlord.ingest.segment_files import SegmentDescriptor, segment_relpath, write_segment
from overlord.ingest.spec import METRIC_TYPES, MetricSpec
from overlord.isotime import Interval
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.tasks import publish as pub
from overlord.tasks.action_client import ActionClient
from overlord.tasks.reporting import check_lock_timeout, log_peak_memory

TIME = "__time"
DEFAULT_MAX_ROWS = 5_000_000
_FIELDS = {
    "type", "id", "groupId", "resource", "context", "dataSource", "interval", "ioConfig", "granularitySpec",
    "segmentGranularity", "tuningConfig", "dimensionsSpec", "metricsSpec", "transformSpec",
}  # fmt: skip
_COMBINING = {"count": "longSum"}


@dataclass(frozen=True)
class CompactConfig:
    """A validated compaction request."""

    data_source: str
    interval: Interval
    segment_granularity: Granularity | None = None
    query_granularity: Granularity | None = None
    rollup: bool | None = None
    max_rows_per_segment: int = DEFAULT_MAX_ROWS
    metrics: tuple[MetricSpec, ...] | None = None
    store_compaction_state: bool = True


def _fail(field: str, message: str) -> InvalidSpec:
    return InvalidSpec(f"{field}: {message}", field=field)


def _interval(value: object, field: str) -> Interval:
    if not isinstance(value, str):
        raise _fail(field, "expected an ISO-8601 interval string")
    try:
        iv = Interval.parse(value)
    except Exception as exc:
        raise _fail(field, getattr(exc, "message", str(exc))) from None
    if iv.start >= iv.end:
        raise _fail(field, "interval is empty")
    return iv


def _granularity(value: object, field: str) -> Granularity | None:
    if value is None:
        return None
    try:
        return granularities.parse(value)
    except ValueError as exc:
        raise _fail(field, str(exc)) from None


def parse_metrics(value: object, field: str) -> tuple[MetricSpec, ...] | None:
    """A metricsSpec as combining aggregators over the stored metric columns."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(field, "expected a list")
    out = []
    for i, m in enumerate(value):
        p = f"{field}[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise _fail(p, "expected an aggregator object with a name")
        kind = m.get("type")
        if not isinstance(kind, str) or kind not in METRIC_TYPES:
            raise _fail(f"{p}.type", f"unknown aggregator type '{kind}'")
        out.append(MetricSpec(_COMBINING.get(kind, kind), m["name"], m["name"]))
    return tuple(out)


def _context(payload: dict[str, Any]) -> dict[str, Any]:
    ctx = payload.get("context")
    return ctx if isinstance(ctx, dict) else {}


def parse_config(payload: dict[str, Any]) -> CompactConfig:
    """Validate a ``compact`` payload; every error names its field."""
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise _fail(unknown[0], "unknown field for task type [compact]")
    ds = payload.get("dataSource")
    if not isinstance(ds, str) or not ds.strip() or "/" in ds:
        raise _fail("dataSource", "missing or invalid dataSource")
    io = payload.get("ioConfig")
    if io is not None:
        if not isinstance(io, dict):
            raise _fail("ioConfig", "expected a JSON object")
        spec = io.get("inputSpec")
        if not isinstance(spec, dict):
            raise _fail("ioConfig.inputSpec", "missing required field")
        if spec.get("type", "interval") != "interval":
            raise _fail("ioConfig.inputSpec.type", f"unsupported inputSpec type '{spec.get('type')}'")
        interval = _interval(spec.get("interval"), "ioConfig.inputSpec.interval")
    elif payload.get("interval") is not None:
        interval = _interval(payload["interval"], "interval")
    else:
        raise _fail("ioConfig.inputSpec", "either interval or ioConfig.inputSpec must be set")
    gs = payload.get("granularitySpec") or {}
    if not isinstance(gs, dict):
        raise _fail("granularitySpec", "expected a JSON object")
    for key in gs:
        if key not in ("type", "segmentGranularity", "queryGranularity", "rollup", "intervals"):
            raise _fail(f"granularitySpec.{key}", "unknown field")
    seg = _granularity(
        gs.get("segmentGranularity", payload.get("segmentGranularity")), "granularitySpec.segmentGranularity"
    )
    if seg is not None and seg.is_none:
        raise _fail("granularitySpec.segmentGranularity", "segmentGranularity 'none' is not allowed")
    query = _granularity(gs.get("queryGranularity"), "granularitySpec.queryGranularity")
    rollup = gs.get("rollup")
    if rollup is not None and not isinstance(rollup, bool):
        raise _fail("granularitySpec.rollup", "expected true or false")
    tuning = payload.get("tuningConfig") or {}
    if not isinstance(tuning, dict):
        raise _fail("tuningConfig", "expected a JSON object")
    parts = tuning.get("partitionsSpec") or {}
    if not isinstance(parts, dict):
        raise _fail("tuningConfig.partitionsSpec", "expected a JSON object")
    if parts.get("type", "dynamic") != "dynamic":
        raise _fail("tuningConfig.partitionsSpec.type", "only dynamic partitioning is supported for compaction")
    max_rows = parts.get("maxRowsPerSegment", tuning.get("maxRowsPerSegment", DEFAULT_MAX_ROWS))
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise _fail("tuningConfig.partitionsSpec.maxRowsPerSegment", "expected a positive integer")
    metrics = parse_metrics(payload.get("metricsSpec"), "metricsSpec")
    store = _context(payload).get("storeCompactionState", True)
    return CompactConfig(ds, interval, seg, query, rollup, max_rows, metrics, bool(store))


def validate(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    check_lock_timeout(payload, ctx)
    parse_config(payload)
    return payload


def lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    return [parse_config(payload).interval]


# ---- rewriting ---------------------------------------------------------------------------------


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "long"
    if pa.types.is_float32(t):
        return "float"
    if pa.types.is_floating(t):
        return "double"
    return "string"


def infer_metrics(names: list[str], schema: pa.Schema, stored: list[dict[str, Any]] | None) -> tuple[MetricSpec, ...]:
    """Combining aggregators for the metric columns when the spec gives none."""
    known = {m.name: m for m in parse_metrics(stored, "lastCompactionState.metricsSpec") or ()}
    out = []
    for name in names:
        if name in known:
            out.append(known[name])
            continue
        kind = "double" if name not in schema.names else _arrow_kind(schema.field(name).type)
        prefix = "long" if kind == "long" else "double"
        low = name.lower()
        op = (
            "Min"
            if low.startswith("min") or low.endswith("min")
            else "Max"
            if low.startswith("max") or low.endswith("max")
            else "Sum"
        )
        out.append(MetricSpec(f"{prefix}{op}", name, name))
    return tuple(out)


def read_segments(deep_storage: DeepStorage, segments: list[dict[str, Any]]) -> pa.Table:
    """All rows of the given segments, schemas unified (a column missing from one file is null)."""
    tables = []
    for s in segments:
        load_spec = s.get("loadSpec")
        try:
            with deep_storage.open(load_spec or {}) as f:
                tables.append(pq.read_table(f))
        except FileNotFoundError:
            raise TaskFailure(f"Segment file of [{s.get('identifier')}] is missing: {load_spec}") from None
        except InvalidInput as exc:
            raise TaskFailure(f"Cannot read segment [{s.get('identifier')}]: {exc.message}") from None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _ordered_union(lists: list[list[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for names in lists:
        for n in names:
            seen.setdefault(n, None)
    return list(seen)


def rewrite(
    table: pa.Table,
    dims: list[str],
    metrics: tuple[MetricSpec, ...],
    *,
    rollup: bool,
    query_granularity: Granularity | None,
) -> pa.Table:
    """Truncate time, re-aggregate (rollup) and sort by time; columns ``__time, dims..., metrics...``."""
    millis = table.column(TIME).cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    if query_granularity is not None and not query_granularity.is_none:
        ms = millis.to_numpy()
        millis = pa.array(query_granularity.truncate_array(np.asarray(ms, dtype=np.int64)))
    cols = {TIME: millis}
    for d in dims:
        cols[d] = table.column(d) if d in table.column_names else pa.nulls(table.num_rows, pa.string())
    for m in metrics:
        cols[m.name] = table.column(m.name)
    out = pa.table(cols)
    if rollup and out.num_rows > 1:
        out = rollups.rollup(out, dims, metrics)
    out = out.take(pc.sort_indices(out, sort_keys=[(TIME, "ascending")]))
    return out.set_column(0, TIME, out.column(TIME).cast(pa.timestamp("ms", tz="UTC")))


def write_partitions(
    table: pa.Table,
    out_dir: Path,
    data_source: str,
    buckets: list[tuple[Interval, pa.Table]],
    dims: list[str],
    metrics: tuple[str, ...],
    max_rows: int,
) -> list[SegmentDescriptor]:
    out = []
    for iv, part in buckets:
        count = max(1, math.ceil(part.num_rows / max_rows))
        for i in range(count):
            rel = segment_relpath(data_source, iv, pub.PLACEHOLDER_VERSION, i)
            piece = part.slice(i * max_rows, max_rows)
            size = write_segment(out_dir, rel, piece)
            spec = {"type": "numbered", "partitionNum": i, "partitions": count}
            out.append(
                SegmentDescriptor(
                    data_source, iv, pub.PLACEHOLDER_VERSION, i, rel, size, piece.num_rows, tuple(dims), metrics, spec
                )
            )
    return out


def _buckets(table: pa.Table, chunk: Interval, gran: Granularity | None) -> list[tuple[Interval, pa.Table]]:
    if table.num_rows == 0:
        return []
    if gran is None:
        return [(chunk, table)]
    ms = table.column(TIME).cast(pa.int64()).to_numpy()
    starts = gran.truncate_array(np.asarray(ms, dtype=np.int64))
    return [(gran.bucket(int(b)), table.filter(pa.array(starts == b))) for b in np.unique(starts)]


def compaction_state(
    cfg: CompactConfig, dims: list[str], schema: pa.Schema, metrics: tuple[MetricSpec, ...], rollup: bool
) -> dict[str, Any]:
    """``lastCompactionState``: what a later pass compares to tell compacted intervals apart."""

    def kind(d: str) -> str:
        return _arrow_kind(schema.field(d).type) if d in schema.names else "string"

    return {
        "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": cfg.max_rows_per_segment, "maxTotalRows": None},
        "dimensionsSpec": {"dimensions": [{"type": kind(d), "name": d} for d in dims]},
        "metricsSpec": [{"type": m.type, "name": m.name, "fieldName": m.field_name} for m in metrics],
        "transformSpec": {"filter": None},
        "indexSpec": {},
        "granularitySpec": {
            "type": "uniform",
            "segmentGranularity": cfg.segment_granularity.name.upper() if cfg.segment_granularity else None,
            "queryGranularity": cfg.query_granularity.name.upper() if cfg.query_granularity else None,
            "rollup": rollup,
            "intervals": None,
        },
    }


def _entry(task_id: str, stats: RowStats, read: int, published: int, error: str | None) -> dict[str, Any]:
    return {
        "taskId": task_id,
        "payload": {
            "ingestionState": IngestionState.COMPLETED.value,
            "unparseableEvents": {},
            "rowStats": {DETERMINE_PARTITIONS: RowStats().to_dict(), BUILD_SEGMENTS: stats.to_dict()},
            "segmentAvailabilityConfirmed": False,
            "segmentAvailabilityWaitTimeMs": 0,
            "recordsProcessed": None,
            "errorMsg": error,
            "segmentsRead": read,
            "segmentsPublished": published,
        },
        "type": "ingestionStatsAndErrors",
    }


def run_compaction(toolbox: TaskToolbox, cfg: CompactConfig) -> TaskResult:
    """Lock, read, rewrite per split, publish everything in one transaction, report per split."""
    out_dir = toolbox.work_dir / "compacted"
    splits_report: list[tuple[RowStats, int, int]] = []
    with ActionClient.for_toolbox(toolbox) as client:
        timeout = toolbox.context.get("taskLockTimeout")
        client.lock_acquire(str(cfg.interval), timeout_ms=timeout if isinstance(timeout, int) else None)
        used = client.segment_list_used(cfg.data_source, [str(cfg.interval)])
        used = [s for s in used if Interval.parse(s["interval"]).overlaps(cfg.interval)]
        for s in used:
            if not cfg.interval.contains(Interval.parse(s["interval"])):
                raise TaskFailure(
                    f"Segment[{s.get('identifier')}] with interval[{s['interval']}] is not within the compaction "
                    f"interval[{cfg.interval}]; compact an interval aligned with the segments' time chunks"
                )
        toolbox.log.info("Compacting %d segments of dataSource[%s] in %s", len(used), cfg.data_source, cfg.interval)
        if not used:
            toolbox.write_report({"ingestionStatsAndErrors": _entry(toolbox.task_id, RowStats(), 0, 0, None)})
            return TaskResult.ok()
        groups: dict[Interval, list[dict[str, Any]]] = {}
        for s in used:
            key = Interval.parse(s["interval"]) if cfg.segment_granularity is None else cfg.interval
            groups.setdefault(key, []).append(s)
        stored_state = next((s.get("lastCompactionState") for s in used if s.get("lastCompactionState")), None) or {}
        staged: list[pub.StagedSegment] = []
        state_of: dict[Interval, dict[str, Any]] = {}
        for chunk in sorted(groups):
            segs = groups[chunk]
            table = read_segments(toolbox.deep_storage, segs)
            dims = _ordered_union([_names(s.get("dimensions")) for s in segs])
            metric_names = _ordered_union([_names(s.get("metrics")) for s in segs])
            metrics = cfg.metrics or infer_metrics(metric_names, table.schema, stored_state.get("metricsSpec"))
            rollup = cfg.rollup
            if rollup is None:
                rollup = (stored_state.get("granularitySpec") or {}).get("rollup", bool(metrics))
            stats = RowStats(processed=table.num_rows, processed_bytes=sum(int(s.get("size", 0)) for s in segs))
            out = rewrite(table, dims, metrics, rollup=bool(rollup), query_granularity=cfg.query_granularity)
            descs = write_partitions(
                out, out_dir, cfg.data_source, _buckets(out, chunk, cfg.segment_granularity), dims,
                tuple(m.name for m in metrics), cfg.max_rows_per_segment,
            )  # fmt: skip
            for d in descs:
                state_of[d.interval] = compaction_state(cfg, dims, table.schema, metrics, bool(rollup))
            staged.extend(pub.StagedSegment.written(d, out_dir, toolbox.task_id) for d in descs)
            splits_report.append((stats, len(segs), len(descs)))
            toolbox.log.info("Split %s: %d segments (%d rows) -> %d segments (%d rows)", chunk, len(segs),
                             table.num_rows, len(descs), out.num_rows)  # fmt: skip
        finals = pub.assign_overwrite_ids(client, staged)

        def extra(f: pub.FinalSegment) -> dict[str, Any]:
            state = state_of.get(f.staged.descriptor.interval)
            return {"lastCompactionState": state} if cfg.store_compaction_state and state else {}

        pub.publish(client, finals, toolbox.deep_storage, log=toolbox.log, extra_json=extra)
    write_report(toolbox, splits_report, None)
    toolbox.log.info("Compaction read %d segments and published %d", len(used), len(finals))
    return TaskResult.ok()


def write_report(toolbox: TaskToolbox, splits: list[tuple[RowStats, int, int]], error: str | None) -> None:
    """One ``ingestionStatsAndErrors`` entry, or ``ingestionStatsAndErrors_N`` per split when split."""
    report: dict[str, Any] = {}
    if len(splits) <= 1:
        stats, read, published = splits[0] if splits else (RowStats(), 0, 0)
        report["ingestionStatsAndErrors"] = _entry(toolbox.task_id, stats, read, published, error)
    else:
        for i, (stats, read, published) in enumerate(splits):
            report[f"ingestionStatsAndErrors_{i}"] = _entry(toolbox.task_id, stats, read, published, error)
    report["taskContext"] = {"type": "taskContext", "taskId": toolbox.task_id, "payload": dict(toolbox.context)}
    toolbox.write_report(report)


def run(toolbox: TaskToolbox) -> TaskResult:
    try:
        return run_compaction(toolbox, parse_config(toolbox.payload))
    except BaseException as exc:
        # run_compaction writes its report last, so a failure means no report was written yet.
        msg = str(exc) if isinstance(exc, Exception) else f"Task was shut down: {exc}"
        write_report(toolbox, [], msg)
        raise
    finally:
        log_peak_memory(toolbox)


COMPACT = register(TaskType(name="compact", run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals))
