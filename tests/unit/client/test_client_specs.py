"""Typed specs: validation names the field, serialisation is Druid's JSON, bad specs never leave."""

from __future__ import annotations

import pytest
from client_fakes import FakeOverlord, index_spec
from pydantic import ValidationError

from overlord.client import (
    Client,
    CompactTask,
    DataSchema,
    IndexParallelTask,
    IngestionSpec,
    IoConfig,
    KillTask,
    SpecValidationError,
    parse_spec,
    to_druid,
)
from overlord.client.specs import (
    Aggregator,
    CsvInputFormat,
    GranularitySpec,
    HashedPartitionsSpec,
    InlineInputSource,
    LocalInputSource,
    TransformSpec,
    TsvInputFormat,
    TuningConfig,
)
from overlord.errors import InvalidSpec


def _task(**tuning: object) -> IndexParallelTask:
    return IndexParallelTask(
        spec=IngestionSpec(
            data_schema=DataSchema(
                data_source="wiki",
                metrics_spec=[
                    Aggregator(type="count", name="count"),
                    Aggregator(type="longSum", name="n", field_name="n"),
                ],
                granularity_spec=GranularitySpec(segment_granularity="hour", intervals=["2015-09-12/2015-09-13"]),
                transform_spec=TransformSpec(
                    transforms=[{"type": "expression", "name": "p", "expression": "upper(page)"}]
                ),  # type: ignore[list-item]
            ),
            io_config=IoConfig(
                input_source=LocalInputSource(base_dir="/data", filter="*.csv"),
                input_format=CsvInputFormat(find_columns_from_header=True),
            ),
            tuning_config=TuningConfig(**tuning) if tuning else None,  # type: ignore[arg-type]
        ),
        context={"priority": 50},
    )


def test_index_parallel_serialises_to_druid_camel_case_without_nulls() -> None:
    out = _task(max_num_concurrent_sub_tasks=4).to_druid()
    assert out["type"] == "index_parallel" and "id" not in out
    schema = out["spec"]["dataSchema"]
    assert schema["dataSource"] == "wiki"
    assert schema["granularitySpec"] == {
        "type": "uniform",
        "segmentGranularity": "hour",
        "intervals": ["2015-09-12/2015-09-13"],
    }
    assert schema["metricsSpec"][1] == {"type": "longSum", "name": "n", "fieldName": "n"}
    assert schema["transformSpec"]["transforms"][0]["expression"] == "upper(page)"
    io = out["spec"]["ioConfig"]
    assert io["inputSource"] == {"type": "local", "baseDir": "/data", "filter": "*.csv"}
    assert io["inputFormat"] == {"type": "csv", "findColumnsFromHeader": True}
    assert out["spec"]["tuningConfig"] == {"type": "index_parallel", "maxNumConcurrentSubTasks": 4}
    assert parse_spec(out).to_druid() == out  # round trip


def test_hashed_partitions_as_the_server_takes_them() -> None:
    ok = _task(partitions_spec=HashedPartitionsSpec(num_shards=2), force_guaranteed_rollup=True).to_druid()
    assert ok["spec"]["tuningConfig"]["partitionsSpec"] == {"type": "hashed", "numShards": 2}
    # the server does not require forceGuaranteedRollup with hashed partitions, so neither does the client
    parse_spec(_task(partitions_spec=HashedPartitionsSpec(num_shards=2)).to_druid())
    with pytest.raises(ValidationError, match="not both"):
        HashedPartitionsSpec(num_shards=2, target_rows_per_segment=10)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["spec"]["dataSchema"].update(bogus=1), "spec.dataSchema.bogus"),
        (lambda s: s["spec"]["dataSchema"].pop("dataSource"), "spec.dataSchema.dataSource"),
        (
            lambda s: s["spec"]["dataSchema"]["granularitySpec"].update(intervals=["2015-09-13/2015-09-12"]),
            "spec.dataSchema.granularitySpec.intervals[0]",
        ),
        (
            lambda s: s["spec"]["dataSchema"]["granularitySpec"].update(segmentGranularity="fortnight"),
            "spec.dataSchema.granularitySpec.segmentGranularity",
        ),
        (lambda s: s["spec"]["ioConfig"]["inputFormat"].update(type="parquet"), "spec.ioConfig.inputFormat.type"),
        (lambda s: s["spec"]["ioConfig"]["inputSource"].pop("data"), "spec.ioConfig.inputSource.data"),
        (
            lambda s: s["spec"]["tuningConfig"].update(maxNumConcurrentSubTasks=0),
            "spec.tuningConfig.maxNumConcurrentSubTasks",
        ),
    ],
)
def test_invalid_spec_error_names_the_field(mutate, field) -> None:  # type: ignore[no-untyped-def]
    spec = index_spec()
    mutate(spec)
    with pytest.raises(SpecValidationError) as info:
        parse_spec(spec)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, InvalidSpec)


def test_input_sources_and_formats_check_themselves() -> None:
    with pytest.raises(ValidationError, match="baseDir"):
        LocalInputSource()
    assert LocalInputSource(base_dir="/x").to_druid() == {"type": "local", "baseDir": "/x"}  # filter defaults to *
    assert LocalInputSource(files=["/a.json"]).to_druid() == {"type": "local", "files": ["/a.json"]}
    assert InlineInputSource(data="a,b").to_druid() == {"type": "inline", "data": "a,b"}
    with pytest.raises(ValidationError, match="columns"):
        CsvInputFormat()
    assert TsvInputFormat(columns=["a"], delimiter="|").to_druid() == {
        "type": "tsv",
        "columns": ["a"],
        "delimiter": "|",
    }
    with pytest.raises(ValidationError, match="fieldName"):
        Aggregator(type="doubleSum", name="x")


def test_compact_needs_exactly_one_interval_form() -> None:
    by_interval = CompactTask(data_source="wiki", interval="2015-09-12/2015-09-13").to_druid()
    assert by_interval == {"type": "compact", "dataSource": "wiki", "interval": "2015-09-12/2015-09-13"}
    by_io = parse_spec(
        {
            "type": "compact",
            "dataSource": "wiki",
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": "2015-09-12/2015-09-13"}},
            "granularitySpec": {"segmentGranularity": "day"},
            "tuningConfig": {"type": "index_parallel", "maxRowsInMemory": 1000},
        }
    )
    assert isinstance(by_io, CompactTask) and by_io.io_config is not None
    with pytest.raises(SpecValidationError, match=r"either interval or ioConfig\.inputSpec"):
        parse_spec({"type": "compact", "dataSource": "wiki"})


def test_kill_spec() -> None:
    assert KillTask(data_source="wiki", interval="2015-09-12/2015-09-13", batch_size=10).to_druid() == {
        "type": "kill",
        "dataSource": "wiki",
        "interval": "2015-09-12/2015-09-13",
        "batchSize": 10,
    }
    with pytest.raises(SpecValidationError) as info:
        parse_spec({"type": "kill", "dataSource": "wiki"})
    assert info.value.field == "interval"


def test_to_druid_leaves_unknown_types_and_sends_dicts_as_written() -> None:
    custom = {"type": "my_extension_type", "anything": 1}  # a type the service may know; it judges
    assert to_druid(custom) == custom
    spec = index_spec()
    assert to_druid(spec) == spec


def test_invalid_spec_is_refused_before_sending(client: Client, fake: FakeOverlord) -> None:
    spec = index_spec()
    spec["spec"]["dataSchema"]["dataSource"] = ""
    with pytest.raises(SpecValidationError):
        client.submit(spec)
    assert fake.requests == []
    client.submit(spec, validate=False)
    assert len(fake.tasks) == 1


def test_submit_accepts_models(client: Client, fake: FakeOverlord) -> None:
    tid = client.submit(KillTask(data_source="wiki", interval="2015-09-12/2015-09-13"))
    assert tid.startswith("kill_wiki_")
    assert fake.tasks[tid].payload["interval"] == "2015-09-12/2015-09-13"
