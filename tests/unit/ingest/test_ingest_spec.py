"""Spec validation: defaults, errors naming the field, path security."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from overlord.errors import ForbiddenPath, InvalidSpec
from overlord.ingest.spec import DynamicPartitions, HashedPartitions, data_source_and_intervals, validate_index_spec
from overlord.isotime import Interval


def payload(base: Path) -> dict:
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": "wiki",
                "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["page", {"type": "long", "name": "added"}]},
                "metricsSpec": [
                    {"type": "count", "name": "count"},
                    {"type": "longSum", "name": "deleted", "fieldName": "deleted"},
                ],
                "granularitySpec": {
                    "segmentGranularity": "day",
                    "queryGranularity": "hour",
                    "intervals": ["2015-09-12/2015-09-13"],
                },
                "transformSpec": {
                    "filter": {"type": "selector", "dimension": "page", "value": "x"},
                    "transforms": [{"type": "expression", "name": "p2", "expression": "upper(page)"}],
                },
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "baseDir": str(base), "filter": "*.json"},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": {"type": "index_parallel", "maxParseExceptions": 5, "maxSavedParseExceptions": 3},
        },
    }


def test_valid_spec_and_defaults(tmp_path: Path) -> None:
    spec = validate_index_spec(payload(tmp_path), allowed_dirs=[tmp_path])
    assert spec.data_source == "wiki"
    assert [d.name for d in spec.dimensions_spec.dimensions] == ["page", "added"]
    assert spec.granularity_spec.rollup is True
    assert spec.intervals == (Interval.parse("2015-09-12/2015-09-13"),)
    assert spec.tuning.partitions == DynamicPartitions(5_000_000, None)
    assert spec.tuning.max_num_concurrent_sub_tasks == 1
    assert spec.tuning.max_saved_parse_exceptions == 3
    assert data_source_and_intervals(payload(tmp_path)) == ("wiki", [Interval.parse("2015-09-12/2015-09-13")])


def test_hashed_partitions(tmp_path: Path) -> None:
    p = payload(tmp_path)
    p["spec"]["tuningConfig"]["partitionsSpec"] = {"type": "hashed", "partitionDimensions": ["page"]}
    spec = validate_index_spec(p, allowed_dirs=[tmp_path])
    assert spec.tuning.partitions == HashedPartitions(("page",), None, 5_000_000)


def _set(p: dict, path: str, value: object) -> dict:
    p = copy.deepcopy(p)
    keys = path.split(".")
    cur = p
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    cur[keys[-1]] = value
    return p


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.dataSchema.timestampSpec.format", "foo", "spec.dataSchema.timestampSpec.format: unknown format 'foo'"),
        ("spec.dataSchema.dataSource", None, "spec.dataSchema.dataSource: missing required field"),
        ("spec.dataSchema.bogus", 1, "spec.dataSchema.bogus: unknown field"),
        (
            "spec.dataSchema.granularitySpec.segmentGranularity",
            "fortnight",
            "spec.dataSchema.granularitySpec.segmentGranularity: unknown granularity 'fortnight'",
        ),
        ("spec.dataSchema.granularitySpec.intervals", ["nope"], "spec.dataSchema.granularitySpec.intervals[0]"),
        (
            "spec.dataSchema.metricsSpec",
            [{"type": "hyperUnique", "name": "u", "fieldName": "u"}],
            "spec.dataSchema.metricsSpec[0].type: unknown aggregator type 'hyperUnique'",
        ),
        (
            "spec.dataSchema.dimensionsSpec.dimensions",
            [{"type": "geo", "name": "g"}],
            "spec.dataSchema.dimensionsSpec.dimensions[0].type",
        ),
        (
            "spec.dataSchema.transformSpec.transforms",
            [{"type": "expression", "name": "x", "expression": "concat(a,"}],
            "spec.dataSchema.transformSpec.transforms[0].expression",
        ),
        (
            "spec.dataSchema.transformSpec.filter",
            {"type": "selector", "value": "x"},
            "spec.dataSchema.transformSpec.filter.dimension",
        ),
        ("spec.ioConfig.inputFormat", {"type": "parquet"}, "spec.ioConfig.inputFormat.type"),
        ("spec.ioConfig.inputFormat", {"type": "csv"}, "spec.ioConfig.inputFormat.columns"),
        ("spec.ioConfig.inputSource", {"type": "s3"}, "spec.ioConfig.inputSource.type"),
        ("spec.tuningConfig.maxParseExceptions", -1, "spec.tuningConfig.maxParseExceptions: must be >= 0"),
        (
            "spec.tuningConfig.partitionsSpec",
            {"type": "dynamic", "maxRowsPerSegment": "x"},
            "spec.tuningConfig.partitionsSpec.maxRowsPerSegment",
        ),
        (
            "spec.tuningConfig.partitionsSpec",
            {"type": "hashed", "numShards": 2, "targetRowsPerSegment": 5},
            "spec.tuningConfig.partitionsSpec.numShards",
        ),
        ("spec.dataSchema.parser", {"type": "string"}, "spec.dataSchema.parser"),
        ("type", "index_hadoop", "type: expected one of"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, path: str, value: object, message: str) -> None:
    p = _set(payload(tmp_path), path, value)
    with pytest.raises(InvalidSpec) as info:
        validate_index_spec(p, allowed_dirs=[tmp_path])
    assert info.value.message.startswith(message), info.value.message


def test_path_security(tmp_path: Path) -> None:
    allowed = tmp_path / "data"
    allowed.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "x.json").write_text("{}\n")
    base = payload(allowed)
    src = "spec.ioConfig.inputSource"
    for bad in (
        {"type": "local", "baseDir": str(allowed / ".." / "secret"), "filter": "*"},
        {"type": "local", "baseDir": "/etc", "filter": "*"},
    ):
        with pytest.raises(ForbiddenPath, match=r"spec\.ioConfig\.inputSource\.baseDir"):
            validate_index_spec(_set(base, src, bad), allowed_dirs=[allowed])
    with pytest.raises(ForbiddenPath, match=r"spec\.ioConfig\.inputSource\.files\[1\]"):
        validate_index_spec(
            _set(base, src, {"type": "local", "files": [str(allowed / "a.json"), str(outside / "x.json")]}),
            allowed_dirs=[allowed],
        )
    os.symlink(outside, allowed / "link")
    with pytest.raises(ForbiddenPath, match="baseDir"):
        validate_index_spec(
            _set(base, src, {"type": "local", "baseDir": str(allowed / "link"), "filter": "*"}), allowed_dirs=[allowed]
        )
    with pytest.raises(ForbiddenPath, match="filter"):
        validate_index_spec(
            _set(base, src, {"type": "local", "baseDir": str(allowed), "filter": "../secret/*"}), allowed_dirs=[allowed]
        )


def test_symlinked_file_inside_base_dir_is_refused_at_listing(tmp_path: Path) -> None:
    from overlord.ingest.sources import list_input_splits

    allowed = tmp_path / "data"
    allowed.mkdir()
    (allowed / "ok.json").write_text("{}\n")
    secret = tmp_path / "secret.json"
    secret.write_text("{}\n")
    spec = validate_index_spec(payload(allowed), allowed_dirs=[allowed])
    assert [s.path.name for s in list_input_splits(spec)] == ["ok.json"]
    os.symlink(secret, allowed / "evil.json")
    with pytest.raises(ForbiddenPath):
        list_input_splits(spec)
