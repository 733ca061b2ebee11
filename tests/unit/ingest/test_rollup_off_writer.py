"""The rollup-off write path (rollup off, dynamic partitions) against the buffered path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from overlord.clock import ManualClock
from overlord.ingest import pipeline, rollup_off_writer, segment_files
from overlord.ingest.pipeline import run_ingestion
from overlord.ingest.spec import validate_index_spec


def make_spec(base: Path, *, max_rows: int | None = None, gran: str = "day", dims: dict | None = None) -> object:
    tuning: dict = {"type": "index"}
    if max_rows is not None:
        tuning["partitionsSpec"] = {"type": "dynamic", "maxRowsPerSegment": max_rows}
    p = {
        "type": "index",
        "spec": {
            "dataSchema": {
                "dataSource": "ds",
                "timestampSpec": {"column": "ts", "format": "iso"},
                "dimensionsSpec": dims if dims is not None else {"useSchemaDiscovery": True},
                "metricsSpec": [{"type": "count", "name": "count"}],
                "granularitySpec": {"segmentGranularity": gran, "queryGranularity": "none", "rollup": False},
            },
            "ioConfig": {
                "type": "index",
                "inputSource": {"type": "local", "baseDir": str(base), "filter": "*.json"},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": tuning,
        },
    }
    return validate_index_spec(p, allowed_dirs=[base])


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def ingest(spec: object, out: Path, *, stream: bool, monkeypatch: pytest.MonkeyPatch, **kw: object):
    monkeypatch.setattr(pipeline, "STREAM_WRITES", stream)
    res = run_ingestion(spec, out_dir=out, version="v1", clock=ManualClock(), **kw)
    tables = [pq.read_table(out / s.path) for s in res.segments]
    assert not any(p.name.startswith(".tmp") for p in out.iterdir())
    assert not list(out.rglob("*.tmp"))
    return res, tables


def same_as_buffered(tmp_path: Path, spec: object, monkeypatch: pytest.MonkeyPatch, **kw: object):
    """Streamed and buffered runs give the same descriptors (bar size), schemas and rows."""
    res, tables = ingest(spec, tmp_path / "stream", stream=True, monkeypatch=monkeypatch, **kw)
    ref, ref_tables = ingest(spec, tmp_path / "buffered", stream=False, monkeypatch=monkeypatch, **kw)
    key = [
        (s.interval, s.partition_num, s.path, s.num_rows, s.dimensions, s.metrics, s.shard_spec) for s in res.segments
    ]
    ref_key = [
        (s.interval, s.partition_num, s.path, s.num_rows, s.dimensions, s.metrics, s.shard_spec) for s in ref.segments
    ]
    assert key == ref_key
    for s, t in zip(res.segments, tables, strict=True):
        assert s.size == (tmp_path / "stream" / s.path).stat().st_size
        assert t.num_rows == s.num_rows
    for t, r in zip(tables, ref_tables, strict=True):
        assert t.schema.equals(r.schema)

    def rows(ts: list) -> list:
        return sorted(json.dumps(r, default=str, sort_keys=True) for t in ts for r in t.to_pylist())

    assert rows(tables) == rows(ref_tables)
    assert res.row_stats == ref.row_stats
    return res, tables


def test_small_max_rows_rolls_partitions_in_arrival_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "in"
    base.mkdir()
    # two files, each in time order, interleaving in time: partitions fill in arrival order
    # (one row group per partition here, so each partition is sorted by __time)
    write(base / "a.json", [{"ts": f"2015-09-12T00:00:{i:02d}Z", "dim": f"a{i}"} for i in range(0, 10, 2)])
    write(base / "b.json", [{"ts": f"2015-09-12T00:00:{i:02d}Z", "dim": f"b{i}"} for i in range(1, 10, 2)])
    write(base / "c.json", [{"ts": "2015-09-13T05:00:00Z", "dim": "c"}])
    spec = make_spec(base, max_rows=3)
    res, tables = ingest(spec, tmp_path / "out", stream=True, monkeypatch=monkeypatch, chunk_bytes=64)
    assert [(str(s.interval.start), s.partition_num, s.num_rows) for s in res.segments] == [
        (str(res.segments[0].interval.start), 0, 3),
        (str(res.segments[0].interval.start), 1, 3),
        (str(res.segments[0].interval.start), 2, 3),
        (str(res.segments[0].interval.start), 3, 1),
        (str(res.segments[4].interval.start), 0, 1),
    ]
    assert [s.shard_spec for s in res.segments[:4]] == [
        {"type": "numbered", "partitionNum": i, "partitions": 4} for i in range(4)
    ]
    assert res.segments[4].shard_spec == {"type": "numbered", "partitionNum": 0, "partitions": 1}
    assert [s.path for s in res.segments[:2]] == [
        f"ds/2015-09-12T000000.000Z_2015-09-13T000000.000Z/v1/{i}/index.parquet" for i in range(2)
    ]
    assert [t.column("dim").to_pylist() for t in tables] == [
        ["a0", "a2", "a4"],
        ["b1", "a6", "a8"],  # sorted by __time within the row group
        ["b3", "b5", "b7"],
        ["b9"],
        ["c"],
    ]
    for s in res.segments:
        assert s.dimensions == ("dim",) and s.metrics == ("count",)
    # a sub-task's partitions start at its offset and leave the count to the supervisor
    res2, _ = ingest(spec, tmp_path / "out2", stream=True, monkeypatch=monkeypatch, partition_offset=5)
    assert [s.shard_spec for s in res2.segments[:4]] == [
        {"type": "numbered", "partitionNum": 5 + i, "partitions": 0} for i in range(4)
    ]


def test_rows_sorted_by_time_within_a_row_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "in"
    base.mkdir()
    write(base / "a.json", [{"ts": f"2015-09-12T00:00:{i:02d}Z", "dim": str(i)} for i in (5, 3, 9, 1, 3)])
    _, tables = ingest(make_spec(base), tmp_path / "out", stream=True, monkeypatch=monkeypatch)
    assert tables[0].column("dim").to_pylist() == ["1", "3", "3", "5", "9"]  # stable


def test_schema_grows_and_widens_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "in"
    base.mkdir()
    rows: list[dict] = []
    for i in range(40):
        r: dict = {"ts": f"2015-09-12T00:{i:02d}:00Z", "dim": f"d{i % 3}"}
        if i >= 10:
            r["late"] = i  # a column first seen in a later batch
        r["num"] = i if i < 20 else i + 0.5  # long, then widened to double
        r["nullfirst"] = None if i < 25 else i  # null, then long
        r["mixed"] = i if i < 30 else f"s{i}"  # long, then string
        r["never"] = None
        rows.append(r)
    write(base / "a.json", rows)
    spec = make_spec(base, max_rows=7)
    res, tables = same_as_buffered(tmp_path, spec, monkeypatch, chunk_bytes=200)
    assert res.segments[0].dimensions == ("dim", "num", "nullfirst", "mixed", "never", "late")
    t = tables[0]
    assert [str(f.type) for f in t.schema] == [
        "timestamp[ms, tz=UTC]",
        "string",
        "double",
        "int64",
        "string",
        "string",
        "int64",
        "int64",
    ]
    assert t.column("late").to_pylist()[0] is None
    all_rows = [r for t in tables for r in t.to_pylist()]
    assert sorted(r["mixed"] for r in all_rows)[:3] == ["0", "1", "10"]

    res2, tables2 = same_as_buffered(
        tmp_path / "no-empty", spec, monkeypatch, chunk_bytes=200, store_empty_columns=False
    )
    assert res2.segments[0].dimensions == ("dim", "num", "nullfirst", "mixed", "late")
    assert "never" not in tables2[0].column_names


def test_empty_columns_per_time_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "in"
    base.mkdir()
    write(
        base / "a.json",
        [
            {"ts": "2015-09-12T01:00:00Z", "dim": "x", "only12": None, "only13": None},
            {"ts": "2015-09-12T02:00:00Z", "dim": "y", "only12": "v", "only13": None},
            {"ts": "2015-09-13T01:00:00Z", "dim": "z", "only12": None, "only13": 3},
        ],
    )
    dims = {"dimensions": ["dim", "only12", {"type": "long", "name": "only13"}, "missing"]}
    spec = make_spec(base, dims=dims)
    res, tables = same_as_buffered(tmp_path, spec, monkeypatch, chunk_bytes=64, store_empty_columns=False)
    assert [s.dimensions for s in res.segments] == [("dim", "only12"), ("dim", "only13")]
    assert [t.column_names for t in tables] == [
        ["__time", "dim", "only12", "count"],
        ["__time", "dim", "only13", "count"],
    ]
    res, tables = same_as_buffered(tmp_path / "keep", spec, monkeypatch, chunk_bytes=64)
    assert [s.dimensions for s in res.segments] == [("dim", "only12", "only13", "missing")] * 2
    assert tables[0].schema.field("only13").type == "int64"


def test_many_time_chunks_with_few_open_writers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "in"
    base.mkdir()
    rows = []
    for i in range(120):
        r: dict = {"ts": f"2015-09-12T{(i * 7) % 24:02d}:{i % 60:02d}:00Z", "dim": f"d{i}"}
        if i > 60:
            r["extra"] = i
        rows.append(r)
    write(base / "a.json", rows)
    monkeypatch.setattr(rollup_off_writer, "MAX_OPEN_WRITERS", 2)
    monkeypatch.setattr(rollup_off_writer, "ROW_GROUP_ROWS", 2)
    monkeypatch.setattr(rollup_off_writer, "PENDING_BYTES", 1)
    res, _ = same_as_buffered(tmp_path, make_spec(base, gran="hour", max_rows=3), monkeypatch, chunk_bytes=300)
    assert len({s.interval for s in res.segments}) == 24
    assert sum(s.num_rows for s in res.segments) == 120


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "buffered"])
def test_segments_keep_time_and_numeric_statistics_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    base = tmp_path / "in"
    base.mkdir()
    write(base / "a.json", [{"ts": f"2015-09-12T00:00:{i:02d}Z", "dim": f"d{i}", "n": i} for i in range(9)])
    res, tables = ingest(make_spec(base), tmp_path / "out", stream=stream, monkeypatch=monkeypatch)
    meta = pq.ParquetFile(tmp_path / "out" / res.segments[0].path).metadata
    stats = {meta.schema.column(i).name: meta.row_group(0).column(i).statistics for i in range(meta.num_columns)}
    assert stats["dim"] is None  # string min/max cost writer time and prune nothing
    assert stats["n"].min == 0 and stats["n"].max == 8
    assert stats["__time"].has_min_max
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    assert tables[0].column("dim").to_pylist() == [f"d{i}" for i in range(9)]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "buffered"])
def test_nearly_unique_columns_skip_the_dictionary_the_writer_would_drop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Millisecond times and free text are written plain; repeating columns keep their dictionaries;
    the rows read back the same either way (encodings only)."""
    monkeypatch.setattr(segment_files, "DICT_PAGE_LIMIT", 4096)  # a small file's row group passes it
    base = tmp_path / "in"
    base.mkdir()
    start = datetime(2015, 9, 12, tzinfo=UTC)
    times = [start + timedelta(milliseconds=7 * i) for i in range(5000)]
    rows = [
        {"ts": t.isoformat(timespec="milliseconds"), "text": f"edit {i * 7919 % 5003} by someone", "chan": f"#c{i % 5}"}
        for i, t in enumerate(times)
    ]
    write(base / "a.json", rows)
    res, tables = ingest(make_spec(base), tmp_path / "out", stream=stream, monkeypatch=monkeypatch)
    meta = pq.ParquetFile(tmp_path / "out" / res.segments[0].path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    dictionary = {name: meta.row_group(0).column(i).has_dictionary_page for i, name in enumerate(names)}
    assert dictionary == {"__time": False, "chan": True, "text": False, "count": True}
    got = tables[0].to_pylist()
    assert [r["text"] for r in got] == [r["text"] for r in rows]
    assert [r["__time"] for r in got] == times
    # below the sample size, or with the real limit on 5000 rows, every column keeps its dictionary
    assert segment_files.parquet_options(tables[0].schema, tables[0].slice(0, 1000), 5000).get("use_dictionary") is None
    monkeypatch.undo()
    assert segment_files.parquet_options(tables[0].schema, tables[0], 5000).get("use_dictionary") is None
