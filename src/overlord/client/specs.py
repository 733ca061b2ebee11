"""Typed task specs (index_parallel, compact, kill) and local validation by the server's own rules.

One spec model serves server and client: a spec is checked here by the very validator the
Overlord runs at submit (the task type's ``validate``, imported lazily so importing the client
stays light), so the client accepts exactly what the server accepts and an error names the field
(``spec.dataSchema.granularitySpec.intervals[0]``) before anything is sent. Only the check that
input paths lie in the service's ``allowedDirs`` is left to the service, which alone knows them.

The pydantic models are builders for Python callers: they take snake_case or Druid's camelCase,
pass any other Druid field through as written (the server's rules judge it), and ``to_druid()``
writes Druid's JSON (camelCase, no nulls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from overlord.client.errors import SpecValidationError
from overlord.core import granularity
from overlord.errors import ForbiddenPath, InvalidInput
from overlord.isotime import Interval


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_druid(self) -> dict[str, Any]:
        """Druid's JSON: camelCase keys, None left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _check_interval(value: str) -> str:
    try:
        Interval.parse(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value


def _check_granularity(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """Checked by the same module the Overlord uses, so the client accepts exactly what the server does."""
    if value is not None:
        granularity.parse(value)  # InvalidGranularity is a ValueError: pydantic names the field
    return value


IntervalText = Annotated[str, AfterValidator(_check_interval)]
"""An ISO-8601 ``start/end`` interval, checked to parse with start <= end."""


# --- dataSchema -------------------------------------------------------------------------------


class TimestampSpec(_Spec):
    column: str = "timestamp"
    format: str = "auto"
    missing_value: str | int | None = None


class DimensionSchema(_Spec):
    type: Literal["string", "long", "float", "double", "json", "auto"] = "string"
    name: str = Field(min_length=1)
    multi_value_handling: Literal["SORTED_ARRAY", "SORTED_SET", "ARRAY"] | None = None
    create_bitmap_index: bool | None = None


class DimensionsSpec(_Spec):
    dimensions: list[str | DimensionSchema] | None = None
    dimension_exclusions: list[str] | None = None
    use_schema_discovery: bool | None = None
    include_all_dimensions: bool | None = None


AggregatorType = Literal[
    "count",
    "longSum",
    "doubleSum",
    "floatSum",
    "longMin",
    "longMax",
    "doubleMin",
    "doubleMax",
    "floatMin",
    "floatMax",
    "longFirst",
    "longLast",
    "doubleFirst",
    "doubleLast",
    "floatFirst",
    "floatLast",
    "stringFirst",
    "stringLast",
    "hyperUnique",
    "thetaSketch",
    "HLLSketchBuild",
]


class Aggregator(_Spec):
    """One entry of ``metricsSpec``; every type but ``count`` reads a ``fieldName`` or ``expression``."""

    type: AggregatorType
    name: str = Field(min_length=1)
    field_name: str | None = None
    expression: str | None = None
    max_string_bytes: int | None = None

    @model_validator(mode="after")
    def _needs_input(self) -> Aggregator:
        if self.type != "count" and not (self.field_name or self.expression):
            raise ValueError(f"aggregator {self.name!r} of type {self.type} needs fieldName or expression")
        return self


class GranularitySpec(_Spec):
    type: Literal["uniform", "arbitrary"] = "uniform"
    segment_granularity: str | dict[str, Any] | None = "day"
    query_granularity: str | dict[str, Any] | None = None
    rollup: bool | None = None
    intervals: list[IntervalText] | None = None

    _granularity = field_validator("segment_granularity", "query_granularity")(_check_granularity)


class ExpressionTransform(_Spec):
    type: Literal["expression"] = "expression"
    name: str = Field(min_length=1)
    expression: str = Field(min_length=1)


class TransformSpec(_Spec):
    filter: dict[str, Any] | None = None
    transforms: list[ExpressionTransform] | None = None


class DataSchema(_Spec):
    data_source: str = Field(min_length=1)
    timestamp_spec: TimestampSpec = Field(default_factory=TimestampSpec)
    dimensions_spec: DimensionsSpec = Field(default_factory=DimensionsSpec)
    metrics_spec: list[Aggregator] | None = None
    granularity_spec: GranularitySpec = Field(default_factory=GranularitySpec)
    transform_spec: TransformSpec | None = None

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, value: str) -> str:
        if "/" in value or value.startswith(".") or value != value.strip():
            raise ValueError("must not contain '/', start with '.', or have surrounding spaces")
        return value


# --- ioConfig ---------------------------------------------------------------------------------


class LocalInputSource(_Spec):
    type: Literal["local"] = "local"
    base_dir: str | None = None
    filter: str | None = None
    files: list[str] | None = None

    @model_validator(mode="after")
    def _where(self) -> LocalInputSource:
        if not self.files and not self.base_dir:
            raise ValueError("give baseDir (and a filter, default *), or files")
        return self


class InlineInputSource(_Spec):
    type: Literal["inline"] = "inline"
    data: str


InputSource = Annotated[LocalInputSource | InlineInputSource, Field(discriminator="type")]


class JsonInputFormat(_Spec):
    type: Literal["json"] = "json"
    flatten_spec: dict[str, Any] | None = None
    feature_spec: dict[str, Any] | None = None
    keep_null_columns: bool | None = None


class _DelimitedInputFormat(_Spec):
    columns: list[str] | None = None
    find_columns_from_header: bool | None = None
    skip_header_rows: int | None = Field(default=None, ge=0)
    list_delimiter: str | None = None

    @model_validator(mode="after")
    def _columns_known(self) -> _DelimitedInputFormat:
        if not self.columns and not self.find_columns_from_header:
            raise ValueError("give columns, or set findColumnsFromHeader")
        return self


class CsvInputFormat(_DelimitedInputFormat):
    type: Literal["csv"] = "csv"


class TsvInputFormat(_DelimitedInputFormat):
    type: Literal["tsv"] = "tsv"
    delimiter: str | None = None


InputFormat = Annotated[JsonInputFormat | CsvInputFormat | TsvInputFormat, Field(discriminator="type")]


IndexType = Literal["index_parallel", "index"]


class IoConfig(_Spec):
    type: IndexType = "index_parallel"
    input_source: InputSource
    input_format: InputFormat | None = None
    append_to_existing: bool | None = None
    drop_existing: bool | None = None


# --- tuningConfig -----------------------------------------------------------------------------


class DynamicPartitionsSpec(_Spec):
    type: Literal["dynamic"] = "dynamic"
    max_rows_per_segment: int | None = Field(default=None, gt=0)
    max_total_rows: int | None = Field(default=None, gt=0)


class HashedPartitionsSpec(_Spec):
    type: Literal["hashed"] = "hashed"
    num_shards: int | None = Field(default=None, gt=0)
    target_rows_per_segment: int | None = Field(default=None, gt=0)
    partition_dimensions: list[str] | None = None
    partition_function: Literal["murmur3_32_abs"] | None = None

    @model_validator(mode="after")
    def _one_size(self) -> HashedPartitionsSpec:
        if self.num_shards is not None and self.target_rows_per_segment is not None:
            raise ValueError("give numShards or targetRowsPerSegment, not both")
        return self


PartitionsSpec = Annotated[DynamicPartitionsSpec | HashedPartitionsSpec, Field(discriminator="type")]


class TuningConfig(_Spec):
    """Druid's tuningConfig; the legacy top-level partitioning fields are accepted as the server does."""

    type: IndexType = "index_parallel"
    partitions_spec: PartitionsSpec | None = None
    max_rows_per_segment: int | None = Field(default=None, gt=0)
    max_total_rows: int | None = Field(default=None, gt=0)
    num_shards: int | None = Field(default=None, gt=0)
    partition_dimensions: list[str] | None = None
    index_spec: dict[str, Any] | None = None
    index_spec_for_intermediate_persists: dict[str, Any] | None = None
    split_hint_spec: dict[str, Any] | None = None
    max_num_concurrent_sub_tasks: int | None = Field(default=None, ge=1)
    max_rows_in_memory: int | None = Field(default=None, gt=0)
    max_bytes_in_memory: int | None = None
    max_parse_exceptions: int | None = Field(default=None, ge=0)
    max_saved_parse_exceptions: int | None = Field(default=None, ge=0)
    log_parse_exceptions: bool | None = None
    force_guaranteed_rollup: bool | None = None
    max_retry: int | None = Field(default=None, ge=0)


# --- tasks ------------------------------------------------------------------------------------


class IngestionSpec(_Spec):
    data_schema: DataSchema
    io_config: IoConfig
    tuning_config: TuningConfig | None = None


class IndexParallelTask(_Spec):
    """A native batch task: ``index_parallel`` (the default) or the single-process ``index``."""

    type: IndexType = "index_parallel"
    id: str | None = None
    spec: IngestionSpec
    context: dict[str, Any] | None = None

    @property
    def data_source(self) -> str:
        return self.spec.data_schema.data_source


class IntervalInputSpec(_Spec):
    type: Literal["interval"] = "interval"
    interval: IntervalText


class CompactIoConfig(_Spec):
    type: Literal["compact"] = "compact"
    input_spec: IntervalInputSpec
    drop_existing: bool | None = None


class CompactionGranularitySpec(_Spec):
    segment_granularity: str | dict[str, Any] | None = None
    query_granularity: str | dict[str, Any] | None = None
    rollup: bool | None = None

    _granularity = field_validator("segment_granularity", "query_granularity")(_check_granularity)


class CompactTask(_Spec):
    """Rewrite a data source's segments in one interval (``interval`` or ``ioConfig.inputSpec``)."""

    type: Literal["compact"] = "compact"
    id: str | None = None
    data_source: str = Field(min_length=1)
    interval: IntervalText | None = None
    io_config: CompactIoConfig | None = None
    granularity_spec: CompactionGranularitySpec | None = None
    dimensions_spec: DimensionsSpec | None = None
    metrics_spec: list[Aggregator] | None = None
    tuning_config: TuningConfig | None = None
    context: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_interval(self) -> CompactTask:
        if self.interval is None and self.io_config is None:
            raise ValueError("give interval or ioConfig.inputSpec")
        return self


class KillTask(_Spec):
    """Delete unused segments of a data source in one interval, from metadata and deep storage."""

    type: Literal["kill"] = "kill"
    id: str | None = None
    data_source: str = Field(min_length=1)
    interval: IntervalText
    mark_as_unused: bool | None = None
    batch_size: int | None = Field(default=None, gt=0)
    limit: int | None = Field(default=None, gt=0)
    context: dict[str, Any] | None = None


TaskSpec = Annotated[IndexParallelTask | CompactTask | KillTask, Field(discriminator="type")]
KNOWN_TYPES = frozenset({"index_parallel", "index", "compact", "kill"})
_UNION_TAGS = KNOWN_TYPES | {"json", "csv", "tsv", "local", "inline", "dynamic", "hashed"}
SKIP_HINT = "checked locally by the service's own rules; to send it anyway: validate=False, or --no-validate on the CLI"
_ADAPTER: TypeAdapter[IndexParallelTask | CompactTask | KillTask] = TypeAdapter(TaskSpec)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _UNION_TAGS:
            continue  # a discriminated union's tag, not a field
        else:
            path += f".{part}" if path else str(part)
    return path or "<spec>"


def _format(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    where = _field_path(tuple(first["loc"]))
    lines = [f"{_field_path(tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
    return where, "Invalid task spec: " + "; ".join(lines)


def check_spec(spec: Mapping[str, Any]) -> None:
    """Run the server's submit-time validation of this task type here; ``SpecValidationError`` names the field.

    Types the service does not know are left to it. Input paths are checked against allowed
    directories only by the service (``allowedDirs`` is its setting), and so is a
    ``taskLockTimeout`` against its HTTP idle timeout.
    """
    import copy
    from pathlib import Path

    import overlord.tasks  # noqa: F401  # names every task type's server-side validator
    from overlord.core.task import SubmitContext, find_task_type

    task_type = find_task_type(str(spec.get("type")))
    if task_type is None or task_type.validate is None:
        return
    everywhere = SubmitContext(allowed_input_dirs=[Path("/")], http_max_idle_time_ms=0)
    try:
        task_type.validate(copy.deepcopy(dict(spec)), everywhere)
    except ForbiddenPath:
        return  # a path question only the service can answer (its allowedDirs, its working directory)
    except InvalidInput as exc:
        field = exc.context.get("field")
        field = field if isinstance(field, str) else None
        raise SpecValidationError(f"Invalid task spec: {exc.message} ({SKIP_HINT})", field=field) from None


def parse_spec(spec: Mapping[str, Any]) -> IndexParallelTask | CompactTask | KillTask:
    """Validate a Druid JSON spec of a known type by the server's rules, then build its typed model."""
    check_spec(spec)
    try:
        return _ADAPTER.validate_python(dict(spec))
    except ValidationError as exc:
        where, message = _format(exc)
        raise SpecValidationError(f"{message} ({SKIP_HINT})", field=where) from None


def to_druid(spec: _Spec | Mapping[str, Any], *, validate: bool = True) -> dict[str, Any]:
    """Druid JSON for a model or a dict (sent as written), checked by the server's rules unless ``validate=False``."""
    data = spec.to_druid() if isinstance(spec, _Spec) else dict(spec)
    if validate:
        check_spec(data)
    return data
