"""Validate a native batch (``index_parallel`` / ``index``) task spec into frozen dataclasses.

Every error is an ``InvalidSpec`` (or ``ForbiddenPath``) whose message starts with the full
path of the field, e.g. ``spec.dataSchema.timestampSpec.format: unknown format 'foo'``, so the
API can return a 400 that tells the user exactly what to fix before anything is stored.
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overlord.core import granularity
from overlord.core.granularity import Granularity
from overlord.errors import ForbiddenPath, InvalidSpec
from overlord.ingest import expressions, filters, timestamps
from overlord.isotime import Interval

TASK_TYPES = ("index_parallel", "index")
DIMENSION_TYPES = ("string", "long", "float", "double", "json", "auto")
METRIC_TYPES = {
    "count": None,
    "longSum": "long",
    "doubleSum": "double",
    "floatSum": "float",
    "longMin": "long",
    "longMax": "long",
    "doubleMin": "double",
    "doubleMax": "double",
    "floatMin": "float",
    "floatMax": "float",
}
MAX_INT = 2_147_483_647


@dataclass(frozen=True)
class TimestampSpec:
    column: str = "timestamp"
    format: str = "auto"
    missing_value: int | None = None


@dataclass(frozen=True)
class DimensionSchema:
    name: str
    type: str = "string"


@dataclass(frozen=True)
class DimensionsSpec:
    dimensions: tuple[DimensionSchema, ...] = ()
    exclusions: tuple[str, ...] = ()
    use_schema_discovery: bool = False

    @property
    def discover(self) -> bool:
        """Dimensions come from the data when none are listed (Druid's schemaless mode)."""
        return self.use_schema_discovery or not self.dimensions


@dataclass(frozen=True)
class MetricSpec:
    type: str
    name: str
    field_name: str | None = None

    @property
    def value_type(self) -> str:
        return METRIC_TYPES[self.type] or "long"


@dataclass(frozen=True)
class GranularitySpec:
    segment: Granularity
    query: Granularity
    rollup: bool = True
    intervals: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class Transform:
    name: str
    expression: expressions.Expr


@dataclass(frozen=True)
class TransformSpec:
    filter: filters.Filter | None = None
    transforms: tuple[Transform, ...] = ()


@dataclass(frozen=True)
class LocalInputSource:
    base_dir: Path | None
    filter: str | None
    files: tuple[Path, ...]
    type: str = "local"


@dataclass(frozen=True)
class InlineInputSource:
    data: str
    type: str = "inline"


@dataclass(frozen=True)
class InputFormat:
    type: str  # json | csv | tsv
    columns: tuple[str, ...] = ()
    find_columns_from_header: bool = False
    skip_header_rows: int = 0
    delimiter: str = ","
    list_delimiter: str | None = None


@dataclass(frozen=True)
class IoConfig:
    input_source: LocalInputSource | InlineInputSource
    input_format: InputFormat
    append_to_existing: bool = False


@dataclass(frozen=True)
class DynamicPartitions:
    max_rows_per_segment: int = 5_000_000
    max_total_rows: int | None = None
    type: str = "dynamic"


@dataclass(frozen=True)
class HashedPartitions:
    partition_dimensions: tuple[str, ...] = ()
    num_shards: int | None = None
    target_rows_per_segment: int | None = None
    type: str = "hashed"


@dataclass(frozen=True)
class TuningConfig:
    partitions: DynamicPartitions | HashedPartitions = field(default_factory=DynamicPartitions)
    max_rows_in_memory: int = 1_000_000
    max_num_concurrent_sub_tasks: int = 1
    max_parse_exceptions: int = MAX_INT
    max_saved_parse_exceptions: int = 0
    log_parse_exceptions: bool = False


@dataclass(frozen=True)
class IndexSpec:
    """A validated spec; ``raw`` keeps the submitted JSON for the task payload."""

    task_type: str
    data_source: str
    timestamp_spec: TimestampSpec
    dimensions_spec: DimensionsSpec
    metrics: tuple[MetricSpec, ...]
    granularity_spec: GranularitySpec
    transform_spec: TransformSpec
    io_config: IoConfig
    tuning: TuningConfig
    allowed_dirs: tuple[Path, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def intervals(self) -> tuple[Interval, ...]:
        return self.granularity_spec.intervals


def _fail(path: str, message: str) -> InvalidSpec:
    return InvalidSpec(f"{path}: {message}", field=path)


class _Obj:
    """A JSON object being validated: typed getters that name the field path on error."""

    def __init__(self, value: object, path: str, allowed: set[str], *, required: bool = True) -> None:
        if value is None and not required:
            value = {}
        if not isinstance(value, dict):
            raise _fail(path, "expected a JSON object")
        self.d: dict[str, Any] = value
        self.path = path
        for key in value:
            if key not in allowed:
                raise _fail(f"{path}.{key}", "unknown field")

    def p(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.d.get(key) is not None

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        v = self.d.get(key)
        if v is None:
            if required:
                raise _fail(self.p(key), "missing required field")
            return default
        if not isinstance(v, str):
            raise _fail(self.p(key), f"expected a string, got {type(v).__name__}")
        return v

    def bool(self, key: builtins.str, default: builtins.bool) -> builtins.bool:
        v = self.d.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise _fail(self.p(key), f"expected true or false, got {v!r}")
        return v

    def int(self, key: builtins.str, default: builtins.int | None, *, minimum: builtins.int | None = None) -> Any:
        v = self.d.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(self.p(key), f"expected an integer, got {v!r}")
        if minimum is not None and v < minimum:
            raise _fail(self.p(key), f"must be >= {minimum}, got {v}")
        return v

    def list(self, key: builtins.str) -> builtins.list[Any]:
        v = self.d.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise _fail(self.p(key), "expected a list")
        return v


def _timestamp_spec(value: object, path: str) -> TimestampSpec:
    o = _Obj(value, path, {"column", "format", "missingValue"}, required=False)
    fmt = o.str("format", "auto")
    try:
        timestamps.validate_format(fmt)
    except ValueError as exc:
        raise _fail(o.p("format"), str(exc)) from None
    missing = o.d.get("missingValue")
    missing_ms = None
    if missing is not None:
        try:
            missing_ms = timestamps.parse_value(missing, "auto")
        except (timestamps.TimestampError, ValueError):
            raise _fail(o.p("missingValue"), f"unparseable timestamp {missing!r}") from None
    return TimestampSpec(o.str("column", "timestamp"), fmt, missing_ms)


def _dimensions_spec(value: object, path: str) -> DimensionsSpec:
    o = _Obj(
        value,
        path,
        {
            "dimensions",
            "dimensionExclusions",
            "useSchemaDiscovery",
            "spatialDimensions",
            "includeAllDimensions",
            "forceSegmentSortByTime",
        },
        required=False,
    )
    if o.list("spatialDimensions"):
        raise _fail(o.p("spatialDimensions"), "spatial dimensions are not supported")
    dims: list[DimensionSchema] = []
    seen: set[str] = set()
    for i, d in enumerate(o.list("dimensions")):
        p = f"{o.p('dimensions')}[{i}]"
        if isinstance(d, str):
            dim = DimensionSchema(d)
        else:
            do = _Obj(d, p, {"type", "name", "multiValueHandling", "createBitmapIndex", "castToType"})
            kind = do.str("type", "string")
            if kind not in DIMENSION_TYPES:
                raise _fail(do.p("type"), f"unknown dimension type '{kind}'")
            dim = DimensionSchema(do.str("name", required=True), kind)
        if not dim.name:
            raise _fail(p, "dimension name must not be empty")
        if dim.name in seen:
            raise _fail(p, f"duplicate dimension '{dim.name}'")
        seen.add(dim.name)
        dims.append(dim)
    excl = o.list("dimensionExclusions")
    for i, e in enumerate(excl):
        if not isinstance(e, str):
            raise _fail(f"{o.p('dimensionExclusions')}[{i}]", "expected a string")
    return DimensionsSpec(tuple(dims), tuple(excl), o.bool("useSchemaDiscovery", False))


def _metrics(value: object, path: str) -> tuple[MetricSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(path, "expected a list")
    out, names = [], set()
    for i, m in enumerate(value):
        p = f"{path}[{i}]"
        o = _Obj(m, p, {"type", "name", "fieldName", "expression"})
        kind = o.str("type", required=True)
        if kind not in METRIC_TYPES:
            raise _fail(o.p("type"), f"unknown aggregator type '{kind}'")
        if o.has("expression"):
            raise _fail(o.p("expression"), "aggregator expressions are not supported; use a transform")
        name = o.str("name", required=True)
        if name in names:
            raise _fail(o.p("name"), f"duplicate metric '{name}'")
        names.add(name)
        field_name = None if kind == "count" else o.str("fieldName", required=True)
        out.append(MetricSpec(kind, name, field_name))
    return tuple(out)


def _granularity(value: object, path: str, default: str) -> Granularity:
    try:
        return granularity.parse(value if value is not None else default)
    except ValueError as exc:
        raise _fail(path, str(exc)) from None


def _granularity_spec(value: object, path: str) -> GranularitySpec:
    o = _Obj(value, path, {"type", "segmentGranularity", "queryGranularity", "rollup", "intervals"}, required=False)
    kind = o.str("type", "uniform")
    if kind not in ("uniform", "arbitrary"):
        raise _fail(o.p("type"), f"unknown granularitySpec type '{kind}'")
    seg = _granularity(o.d.get("segmentGranularity"), o.p("segmentGranularity"), "day")
    query = _granularity(o.d.get("queryGranularity"), o.p("queryGranularity"), "none")
    if seg.is_none:
        raise _fail(o.p("segmentGranularity"), "segmentGranularity 'none' is not allowed")
    intervals = []
    for i, text in enumerate(o.list("intervals")):
        p = f"{o.p('intervals')}[{i}]"
        if not isinstance(text, str):
            raise _fail(p, "expected an ISO-8601 interval string")
        try:
            iv = Interval.parse(text)
        except Exception as exc:
            raise _fail(p, getattr(exc, "message", str(exc))) from None
        if iv.start == iv.end:
            raise _fail(p, "interval is empty")
        intervals.append(iv)
    return GranularitySpec(seg, query, o.bool("rollup", True), tuple(intervals))


def _transform_spec(value: object, path: str) -> TransformSpec:
    o = _Obj(value, path, {"filter", "transforms"}, required=False)
    filt = None
    if o.d.get("filter") is not None:
        try:
            filt = filters.parse_filter(o.d["filter"], o.p("filter"))
        except filters.FilterError as exc:
            raise _fail(exc.path, str(exc)) from None
    out, names = [], set()
    for i, t in enumerate(o.list("transforms")):
        p = f"{o.p('transforms')}[{i}]"
        to = _Obj(t, p, {"type", "name", "expression"})
        if to.str("type", "expression") != "expression":
            raise _fail(to.p("type"), f"unknown transform type '{to.d.get('type')}'")
        name = to.str("name", required=True)
        if name in names:
            raise _fail(to.p("name"), f"duplicate transform '{name}'")
        names.add(name)
        try:
            expr = expressions.parse(to.str("expression", required=True))
        except expressions.ExprError as exc:
            raise _fail(to.p("expression"), str(exc)) from None
        out.append(Transform(name, expr))
    return TransformSpec(filt, tuple(out))


def _input_format(value: object, path: str) -> InputFormat:
    if not isinstance(value, dict):
        raise _fail(path, "missing required field" if value is None else "expected a JSON object")
    kind = value.get("type")
    if kind == "json":
        o = _Obj(
            value,
            path,
            {"type", "flattenSpec", "featureSpec", "keepNullColumns", "assumeNewlineDelimited", "useJsonNodeReader"},
        )
        flat = o.d.get("flattenSpec")
        if flat and (flat.get("fields") if isinstance(flat, dict) else True):
            raise _fail(o.p("flattenSpec"), "flattenSpec fields are not supported")
        return InputFormat("json")
    if kind in ("csv", "tsv"):
        o = _Obj(
            value,
            path,
            {
                "type",
                "columns",
                "findColumnsFromHeader",
                "hasHeaderRow",
                "skipHeaderRows",
                "delimiter",
                "listDelimiter",
                "tryParseNumbers",
            },
        )
        cols = o.list("columns")
        for i, c in enumerate(cols):
            if not isinstance(c, str) or not c:
                raise _fail(f"{o.p('columns')}[{i}]", "expected a non-empty string")
        if len(set(cols)) != len(cols):
            raise _fail(o.p("columns"), "duplicate column names")
        find = o.bool("findColumnsFromHeader", False) or o.bool("hasHeaderRow", False)
        if not cols and not find:
            raise _fail(o.p("columns"), "either columns or findColumnsFromHeader must be set")
        delim = o.str("delimiter", "," if kind == "csv" else "\t")
        if len(delim) != 1:
            raise _fail(o.p("delimiter"), "must be a single character")
        return InputFormat(
            kind, tuple(cols), find, o.int("skipHeaderRows", 0, minimum=0), delim, o.str("listDelimiter")
        )
    raise _fail(f"{path}.type", f"unknown or unsupported input format '{kind}'")


def _is_below(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _input_source(value: object, path: str, allowed: list[Path]) -> LocalInputSource | InlineInputSource:
    if not isinstance(value, dict):
        raise _fail(path, "missing required field" if value is None else "expected a JSON object")
    kind = value.get("type")
    if kind == "inline":
        o = _Obj(value, path, {"type", "data"})
        return InlineInputSource(o.str("data", required=True))
    if kind != "local":
        raise _fail(f"{path}.type", f"unknown or unsupported input source '{kind}'")
    o = _Obj(value, path, {"type", "baseDir", "filter", "files", "systemFields"})
    roots = [Path(os.path.realpath(r)) for r in allowed]
    base = o.str("baseDir")
    filt = o.str("filter")
    files = o.list("files")
    if base is None and not files:
        raise _fail(path, "either baseDir or files must be set")
    base_path = None
    if base is not None:
        real = Path(os.path.realpath(base))
        if not _is_below(real, roots):
            raise ForbiddenPath(f"{o.p('baseDir')}: '{base}' is outside the allowed directories", field=o.p("baseDir"))
        base_path = real
        if filt is None:
            filt = "*"
        if filt.startswith("/") or ".." in Path(filt).parts:
            raise ForbiddenPath(f"{o.p('filter')}: '{filt}' must stay inside baseDir", field=o.p("filter"))
    out_files = []
    for i, f in enumerate(files):
        p = f"{o.p('files')}[{i}]"
        if not isinstance(f, str) or not f:
            raise _fail(p, "expected a file path")
        real = Path(os.path.realpath(f))
        if not _is_below(real, roots):
            raise ForbiddenPath(f"{p}: '{f}' is outside the allowed directories", field=p)
        out_files.append(real)
    return LocalInputSource(base_path, filt if base is not None else None, tuple(out_files))


def _io_config(value: object, path: str, task_type: str, allowed: list[Path]) -> IoConfig:
    o = _Obj(value, path, {"type", "inputSource", "inputFormat", "appendToExisting", "dropExisting", "firehose"})
    kind = o.str("type", task_type)
    if kind not in TASK_TYPES:
        raise _fail(o.p("type"), f"unknown ioConfig type '{kind}'")
    if o.has("firehose"):
        raise _fail(o.p("firehose"), "firehoses are not supported; use inputSource")
    src = _input_source(o.d.get("inputSource"), o.p("inputSource"), allowed)
    fmt = _input_format(o.d.get("inputFormat"), o.p("inputFormat"))
    return IoConfig(src, fmt, o.bool("appendToExisting", False))


_IGNORED_TUNING = {
    "maxBytesInMemory",
    "indexSpec",
    "indexSpecForIntermediatePersists",
    "forceGuaranteedRollup",
    "splitHintSpec",
    "maxRetry",
    "taskStatusCheckPeriodMs",
    "chatHandlerTimeout",
    "chatHandlerNumRetries",
    "maxNumSegmentsToMerge",
    "totalNumMergeTasks",
    "pushTimeout",
    "segmentWriteOutMediumFactory",
    "maxPendingPersists",
    "awaitSegmentAvailabilityTimeoutMillis",
    "maxColumnsToMerge",
    "maxInputSegmentBytesPerTask",
    "numPersistThreads",
    "reportParseExceptions",
    "skipBytesInMemoryOverheadCheck",
    "maxAllowedLockCount",
}


def _partitions(value: object, path: str, legacy: _Obj) -> DynamicPartitions | HashedPartitions:
    if value is None:
        if legacy.has("numShards") or legacy.has("partitionDimensions"):
            return HashedPartitions(
                tuple(legacy.list("partitionDimensions")), legacy.int("numShards", None, minimum=1), None
            )
        return DynamicPartitions(
            legacy.int("maxRowsPerSegment", 5_000_000, minimum=1), legacy.int("maxTotalRows", None, minimum=1)
        )
    if not isinstance(value, dict):
        raise _fail(path, "expected a JSON object")
    kind = value.get("type")
    if kind == "dynamic":
        o = _Obj(value, path, {"type", "maxRowsPerSegment", "maxTotalRows"})
        return DynamicPartitions(
            o.int("maxRowsPerSegment", 5_000_000, minimum=1), o.int("maxTotalRows", None, minimum=1)
        )
    if kind == "hashed":
        o = _Obj(
            value,
            path,
            {
                "type",
                "partitionDimensions",
                "numShards",
                "targetRowsPerSegment",
                "maxRowsPerSegment",
                "partitionFunction",
            },
        )
        dims = o.list("partitionDimensions")
        for i, d in enumerate(dims):
            if not isinstance(d, str):
                raise _fail(f"{o.p('partitionDimensions')}[{i}]", "expected a string")
        shards = o.int("numShards", None, minimum=1)
        target = o.int("targetRowsPerSegment", None, minimum=1) or o.int("maxRowsPerSegment", None, minimum=1)
        if shards is not None and target is not None:
            raise _fail(o.p("numShards"), "numShards and targetRowsPerSegment cannot both be set")
        if shards is None and target is None:
            target = 5_000_000
        return HashedPartitions(tuple(dims), shards, target)
    raise _fail(f"{path}.type", f"unknown or unsupported partitionsSpec type '{kind}'")


def _tuning(value: object, path: str, task_type: str) -> TuningConfig:
    o = _Obj(
        value,
        path,
        {
            "type",
            "partitionsSpec",
            "maxRowsInMemory",
            "maxNumConcurrentSubTasks",
            "maxParseExceptions",
            "maxSavedParseExceptions",
            "logParseExceptions",
            "maxRowsPerSegment",
            "maxTotalRows",
            "numShards",
            "partitionDimensions",
            *_IGNORED_TUNING,
        },
        required=False,
    )
    kind = o.str("type", task_type)
    if kind not in TASK_TYPES:
        raise _fail(o.p("type"), f"unknown tuningConfig type '{kind}'")
    parts = _partitions(o.d.get("partitionsSpec"), o.p("partitionsSpec"), o)
    max_pe = o.int("maxParseExceptions", MAX_INT, minimum=0)
    max_saved = o.int("maxSavedParseExceptions", 0, minimum=0)
    if o.bool("reportParseExceptions", False):
        max_pe, max_saved = 0, 1
    return TuningConfig(
        parts,
        o.int("maxRowsInMemory", 1_000_000, minimum=1),
        o.int("maxNumConcurrentSubTasks", 1, minimum=1),
        max_pe,
        min(max_saved, max_pe),
        o.bool("logParseExceptions", False),
    )


def validate_index_spec(payload: dict[str, Any], *, allowed_dirs: list[Path]) -> IndexSpec:
    """Validate a submitted task payload (``{"type": ..., "spec": {...}}``) into an IndexSpec.

    Raises InvalidSpec naming the field, or ForbiddenPath when a local input escapes
    ``allowed_dirs`` (real paths are compared, so ``..`` and symlinks cannot escape).
    """
    if not isinstance(payload, dict):
        raise InvalidSpec("task: expected a JSON object")
    task_type = payload.get("type")
    if task_type not in TASK_TYPES:
        raise _fail("type", f"expected one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    spec = _Obj(payload.get("spec"), "spec", {"dataSchema", "ioConfig", "tuningConfig"})
    ds = _Obj(
        spec.d.get("dataSchema"),
        "spec.dataSchema",
        {"dataSource", "timestampSpec", "dimensionsSpec", "metricsSpec", "granularitySpec", "transformSpec", "parser"},
    )
    if ds.has("parser"):
        raise _fail("spec.dataSchema.parser", "parser specs are not supported; use ioConfig.inputFormat")
    data_source = ds.str("dataSource", required=True)
    if not data_source.strip() or "/" in data_source or data_source.startswith("."):
        raise _fail("spec.dataSchema.dataSource", f"invalid dataSource name '{data_source}'")
    ts = _timestamp_spec(ds.d.get("timestampSpec"), "spec.dataSchema.timestampSpec")
    dims = _dimensions_spec(ds.d.get("dimensionsSpec"), "spec.dataSchema.dimensionsSpec")
    metrics = _metrics(ds.d.get("metricsSpec"), "spec.dataSchema.metricsSpec")
    for i, m in enumerate(metrics):
        if any(d.name == m.name for d in dims.dimensions):
            raise _fail(f"spec.dataSchema.metricsSpec[{i}].name", f"'{m.name}' is also a dimension")
    gran = _granularity_spec(ds.d.get("granularitySpec"), "spec.dataSchema.granularitySpec")
    transforms = _transform_spec(ds.d.get("transformSpec"), "spec.dataSchema.transformSpec")
    io = _io_config(spec.d.get("ioConfig"), "spec.ioConfig", task_type, allowed_dirs)
    tuning = _tuning(spec.d.get("tuningConfig"), "spec.tuningConfig", task_type)
    return IndexSpec(
        task_type,
        data_source,
        ts,
        dims,
        metrics,
        gran,
        transforms,
        io,
        tuning,
        tuple(Path(os.path.realpath(r)) for r in allowed_dirs),
        payload,
    )


def data_source_and_intervals(payload: dict[str, Any]) -> tuple[str | None, list[Interval]]:
    """Best-effort dataSource and intervals of a raw payload (for locks and listings); never raises."""
    try:
        ds = payload["spec"]["dataSchema"]
        out = []
        for text in (ds.get("granularitySpec") or {}).get("intervals") or []:
            try:
                out.append(Interval.parse(text))
            except Exception:
                continue
        name = ds.get("dataSource")
        return (name if isinstance(name, str) else None), out
    except (KeyError, TypeError, AttributeError):
        return None, []
