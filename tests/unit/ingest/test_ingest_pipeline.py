"""End-to-end library runs: exact row stats, unparseable events, rollup, partitioning, Parquet output."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from overlord.clock import ManualClock
from overlord.errors import ParseExceptionLimit
from overlord.ingest import wikiticker
from overlord.ingest.pipeline import Progress, run_ingestion
from overlord.ingest.sources import list_input_splits, split_evenly
from overlord.ingest.spec import validate_index_spec

LOG = logging.getLogger("test.ingest")


def make_spec(
    base: Path,
    *,
    fmt: dict | None = None,
    dims: list | None = None,
    metrics: list | None = None,
    gran: dict | None = None,
    tuning: dict | None = None,
    transform: dict | None = None,
    ts: dict | None = None,
    filt: str = "*",
) -> object:
    schema = {
        "dataSource": "ds",
        "timestampSpec": ts or {"column": "ts", "format": "iso"},
        "dimensionsSpec": {"dimensions": dims if dims is not None else ["dim"]},
        "metricsSpec": metrics
        if metrics is not None
        else [{"type": "count", "name": "count"}, {"type": "longSum", "name": "sum_v", "fieldName": "v"}],
        "granularitySpec": gran or {"segmentGranularity": "day", "queryGranularity": "none", "rollup": False},
    }
    if transform:
        schema["transformSpec"] = transform
    p = {
        "type": "index",
        "spec": {
            "dataSchema": schema,
            "ioConfig": {
                "type": "index",
                "inputSource": {"type": "local", "baseDir": str(base), "filter": filt},
                "inputFormat": fmt or {"type": "json"},
            },
            "tuningConfig": {"type": "index", "maxSavedParseExceptions": 100, **(tuning or {})},
        },
    }
    return validate_index_spec(p, allowed_dirs=[base])


def run(spec: object, out: Path, **kw: object):
    states: list[str] = []

    def on_progress(p: Progress) -> None:
        if not states or states[-1] != p.state:
            states.append(p.state)

    res = run_ingestion(spec, out_dir=out, version="v1", clock=ManualClock(), on_progress=on_progress, log=LOG, **kw)
    return res, states


def read(out: Path, res) -> list[dict]:
    rows = []
    for s in res.segments:
        rows.extend(pq.read_table(out / s.path).to_pylist())
    return rows


def lines(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def test_json_every_kind_of_bad_row(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    content = lines(
        {"ts": "2015-09-12T01:00:00Z", "dim": "a", "v": 1},
        "{not json",
        {"dim": "no-time", "v": 2},
        {"ts": "garbage", "dim": "b", "v": 3},
        {"ts": "2015-09-12T02:00:00Z", "dim": "c", "v": "abc"},
        {"ts": "2014-01-01T00:00:00Z", "dim": "old", "v": 4},
        {"ts": "2015-09-12T03:00:00Z", "dim": "drop", "v": 5},
        "[1, 2]",
        {"ts": "2015-09-12T04:00:00Z", "dim": "d", "v": 6},
    )
    (data / "a.json").write_text(content)
    spec = make_spec(
        data,
        gran={"segmentGranularity": "day", "rollup": False, "intervals": ["2015-09-12/2015-09-13"]},
        transform={"filter": {"type": "not", "field": {"type": "selector", "dimension": "dim", "value": "drop"}}},
    )
    res, states = run(spec, tmp_path / "out")
    assert states == ["NOT_STARTED", "DETERMINE_PARTITIONS", "BUILD_SEGMENTS", "COMPLETED"]
    assert res.row_stats["buildSegments"].to_dict() == {
        "processed": 2,
        "processedBytes": len(content.encode()),
        "processedWithError": 1,
        "thrownAway": 2,
        "unparseable": 4,
    }
    assert res.row_stats["determinePartitions"].processed == 0
    events = res.unparseable_events["buildSegments"]
    assert [e.error_type for e in events] == [
        "unparseable",
        "unparseable",
        "unparseable",
        "processedWithError",
        "unparseable",
    ]
    assert events[0].details == ("Unable to parse row [{not json]",)
    assert events[0].input == "{not json"
    assert events[1].details[0] == "Timestamp[null] is unparseable! Event: {dim=no-time, v=2}"
    assert events[2].details[0].startswith("Timestamp[garbage] is unparseable! Event: {ts=garbage")
    assert "Unable to parse value[abc] for field[sum_v]" in events[3].details[0]
    rows = read(tmp_path / "out", res)
    assert [(r["dim"], r["sum_v"]) for r in rows] == [("a", 1), ("c", None), ("d", 6)]
    report = res.completion_report("t1")
    assert set(report["ingestionStatsAndErrors"]["payload"]["unparseableEvents"]) == {
        "determinePartitions",
        "buildSegments",
    }


def test_max_parse_exceptions(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(lines("x", "y", {"ts": "2015-09-12T00:00:00Z", "dim": "a"}, "z"))
    spec = make_spec(tmp_path, tuning={"maxParseExceptions": 2})
    with pytest.raises(ParseExceptionLimit, match=r"Max parse exceptions\[2\] exceeded") as info:
        run(spec, tmp_path / "out")
    assert info.value.context["row_stats"]["buildSegments"].unparseable == 3
    assert not list((tmp_path / "out").rglob("*.parquet")) if (tmp_path / "out").exists() else True


def test_rollup_and_query_granularity(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        lines(
            {"ts": "2015-09-12T01:10:00Z", "dim": "a", "v": 1},
            {"ts": "2015-09-12T01:20:00Z", "dim": "a", "v": 2},
            {"ts": "2015-09-12T01:30:00Z", "dim": "b", "v": 3},
            {"ts": "2015-09-12T02:10:00Z", "dim": "a", "v": 4},
            {"ts": "2015-09-13T01:10:00Z", "dim": "a", "v": 5},
        )
    )
    spec = make_spec(
        tmp_path,
        metrics=[
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "sum_v", "fieldName": "v"},
            {"type": "longMax", "name": "max_v", "fieldName": "v"},
            {"type": "doubleMin", "name": "min_v", "fieldName": "v"},
        ],
        gran={"segmentGranularity": "day", "queryGranularity": "hour"},
    )
    # tiny chunks and spills force the multi-chunk and spill-merge paths
    res, _ = run(spec, tmp_path / "out", chunk_bytes=64, spill_bytes=1)
    assert res.row_stats["buildSegments"].processed == 5
    assert [str(s.interval) for s in res.segments] == [
        "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z",
        "2015-09-13T00:00:00.000Z/2015-09-14T00:00:00.000Z",
    ]
    rows = read(tmp_path / "out", res)
    got = sorted((r["__time"].isoformat(), r["dim"], r["count"], r["sum_v"], r["max_v"], r["min_v"]) for r in rows)
    assert got == [
        ("2015-09-12T01:00:00+00:00", "a", 2, 3, 2, 1.0),
        ("2015-09-12T01:00:00+00:00", "b", 1, 3, 3, 3.0),
        ("2015-09-12T02:00:00+00:00", "a", 1, 4, 4, 4.0),
        ("2015-09-13T01:00:00+00:00", "a", 1, 5, 5, 5.0),
    ]
    seg = res.segments[0]
    assert seg.path == "ds/2015-09-12T000000.000Z_2015-09-13T000000.000Z/v1/0/index.parquet"
    assert seg.num_rows == 3 and seg.size == (tmp_path / "out" / seg.path).stat().st_size
    assert seg.dimensions == ("dim",) and seg.metrics == ("count", "sum_v", "max_v", "min_v")
    assert seg.shard_spec == {"type": "numbered", "partitionNum": 0, "partitions": 1}
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "out").iterdir())


def test_csv_tsv_gzip_headers_and_max_rows(tmp_path: Path) -> None:
    csv_text = (
        'skip me\nts,dim,v\n2015-09-12T00:00:00Z,a,1\n2015-09-12T01:00:00Z,"b,c",2\n'
        "2015-09-12T02:00:00Z,a,1,extra\n2015-09-12T03:00:00Z,,x\n"
    )
    (tmp_path / "a.csv").write_text(csv_text)
    spec = make_spec(
        tmp_path,
        filt="*.csv",
        fmt={"type": "csv", "findColumnsFromHeader": True, "skipHeaderRows": 1},
        tuning={"partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 2}},
    )
    res, _ = run(spec, tmp_path / "out")
    data_bytes = len(
        '2015-09-12T00:00:00Z,a,1\n2015-09-12T01:00:00Z,"b,c",2\n'
        "2015-09-12T02:00:00Z,a,1,extra\n2015-09-12T03:00:00Z,,x\n"
    )
    assert res.row_stats["buildSegments"].to_dict() == {
        "processed": 2,
        "processedBytes": data_bytes,
        "processedWithError": 1,
        "thrownAway": 0,
        "unparseable": 1,
    }
    assert [s.num_rows for s in res.segments] == [2, 1]
    assert [s.shard_spec["partitionNum"] for s in res.segments] == [0, 1]
    assert [r["dim"] for r in read(tmp_path / "out", res)] == ["a", "b,c", None]

    tsv = tmp_path / "tsv"
    tsv.mkdir()
    with gzip.open(tsv / "a.tsv.gz", "wt") as fh:
        fh.write("2015-09-12T00:00:00Z\ta\t5\n2015-09-12T00:00:00Z\ta\t6\n")
    spec = make_spec(
        tsv, fmt={"type": "tsv", "columns": ["ts", "dim", "v"]}, gran={"segmentGranularity": "day", "rollup": True}
    )
    res, _ = run(spec, tmp_path / "out2")
    assert res.row_stats["buildSegments"].processed == 2
    assert res.row_stats["buildSegments"].processed_bytes == 2 * len("2015-09-12T00:00:00Z\ta\t5\n")
    assert [(r["dim"], r["count"], r["sum_v"]) for r in read(tmp_path / "out2", res)] == [("a", 2, 11)]


def test_typed_dimensions_transforms_and_empty_columns(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        lines(
            {"ts": 1442016000000, "dim": "x", "n": "12", "f": 1.5, "obj": {"k": 1}},
            {"ts": 1442016001000, "dim": "y", "n": 7.9, "f": "bad"},
        )
    )
    spec = make_spec(
        tmp_path,
        ts={"column": "ts", "format": "millis"},
        dims=[
            "dim",
            {"type": "long", "name": "n"},
            {"type": "double", "name": "f"},
            {"type": "json", "name": "obj"},
            "up",
            "empty",
        ],
        metrics=[],
        transform={"transforms": [{"type": "expression", "name": "up", "expression": "upper(dim)"}]},
    )
    res, _ = run(spec, tmp_path / "out")
    assert res.row_stats["buildSegments"].processed == 1
    assert res.row_stats["buildSegments"].processed_with_error == 1
    rows = read(tmp_path / "out", res)
    assert [(r["n"], r["f"], r["obj"], r["up"], r["empty"]) for r in rows] == [
        (12, 1.5, '{"k":1}', "X", None),
        (7, None, None, "Y", None),
    ]
    res2, _ = run(spec, tmp_path / "out2", store_empty_columns=False)
    assert "empty" not in pq.read_table(tmp_path / "out2" / res2.segments[0].path).column_names
    assert "empty" not in res2.segments[0].dimensions


def test_hashed_partitioning_with_determine_partitions(tmp_path: Path) -> None:
    rows = [{"ts": "2015-09-12T00:00:00Z", "dim": f"d{i % 10}", "v": i} for i in range(100)]
    (tmp_path / "a.json").write_text(lines(*rows, "broken"))
    spec = make_spec(
        tmp_path,
        gran={"segmentGranularity": "day", "rollup": True},
        tuning={"partitionsSpec": {"type": "hashed", "partitionDimensions": ["dim"], "targetRowsPerSegment": 4}},
    )
    res, states = run(spec, tmp_path / "out")
    assert states == ["NOT_STARTED", "DETERMINE_PARTITIONS", "BUILD_SEGMENTS", "COMPLETED"]
    assert res.row_stats["determinePartitions"].to_dict()["processed"] == 100
    assert res.row_stats["determinePartitions"].unparseable == 1
    assert len(res.unparseable_events["determinePartitions"]) == 1
    assert res.row_stats["buildSegments"].processed == 100
    n = res.segments[0].shard_spec["partitions"]
    assert n == 3  # 10 distinct rolled-up rows / 4 per segment
    seen: dict[str, int] = {}
    total = 0
    for s in res.segments:
        assert s.shard_spec["type"] == "hashed" and s.shard_spec["partitionDimensions"] == ["dim"]
        for r in pq.read_table(tmp_path / "out" / s.path).to_pylist():
            assert seen.setdefault(r["dim"], s.partition_num) == s.partition_num
            total += r["count"]
    assert total == 100 and len(seen) == 10


def test_schema_discovery_wikiticker_and_splits(tmp_path: Path) -> None:
    wikiticker.write_file(tmp_path / "a.json.gz", 300, seed=1)
    wikiticker.write_file(tmp_path / "b.json", 200, seed=2)
    p = wikiticker.quickstart_spec(str(tmp_path), "*.json*", data_source="wikipedia")
    spec = validate_index_spec(p, allowed_dirs=[tmp_path])
    splits = list_input_splits(spec)
    assert [s.path.name for s in splits] == ["a.json.gz", "b.json"]
    parts = split_evenly(splits, 2)
    results = [
        run_ingestion(spec, out_dir=tmp_path / "out", version="v", clock=ManualClock(), files=files, partition_offset=i)
        for i, files in enumerate(parts)
    ]
    assert sum(r.row_stats["buildSegments"].processed for r in results) == 500
    assert sorted(s.partition_num for r in results for s in r.segments) == [0, 1]
    seg = results[0].segments[0]
    table = pq.read_table(tmp_path / "out" / seg.path)
    assert table.schema.field("added").type == "int64"
    assert table.schema.field("channel").type == "string"
    assert "time" not in table.column_names and table.column_names[0] == "__time"
