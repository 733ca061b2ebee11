"""End to end: native batch ingestion of small JSON, CSV, TSV and gzip files through the real service."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import API, index_spec, payload_of, read_rows, run_task, segments, start_service
from tests.conftest import ServiceProcess

from overlord.ingest import wikiticker

ZERO = {"processed": 0, "processedBytes": 0, "processedWithError": 0, "thrownAway": 0, "unparseable": 0}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start_service(tmp_path_factory.mktemp("ingest"))
    yield service
    service.stop()


@pytest.fixture
def inputs(svc: ServiceProcess, request: pytest.FixtureRequest) -> Path:
    """A folder below the service's start dir (an allowed input dir), one per test."""
    d = svc.data_dir.parent / "inputs" / request.node.name
    d.mkdir(parents=True)
    return d


def stats(**kw: int) -> dict[str, int]:
    names = {"processed_bytes": "processedBytes", "with_error": "processedWithError", "thrown_away": "thrownAway"}
    return {**ZERO, **{names.get(k, k): v for k, v in kw.items()}}


JSON_ROWS = (
    '{"ts":"2024-01-01T00:10:00Z","page":"a","user":"x","added":1}\n'
    '{"ts":"2024-01-01T00:20:00Z","page":"a","user":"x","added":2}\n'
    '{"ts":"2024-01-01T00:30:00Z","page":"b","user":"y","added":4}\n'
    '{"ts":"2024-01-02T05:00:00Z","page":"a","user":"x","added":8}\n'
)


def test_json_rollup_exact_stats_and_segment_contents(svc: ServiceProcess, inputs: Path) -> None:
    f = inputs / "data.json"
    f.write_text(JSON_ROWS)
    spec = index_spec(
        "json_rollup",
        {"type": "local", "baseDir": str(inputs), "filter": "*.json"},
        {"type": "json"},
        dims=["page", "user"],
        metrics=[{"type": "count", "name": "count"}, {"type": "longSum", "name": "added", "fieldName": "added"}],
        rollup=True,
        query_granularity="hour",
    )
    status, report = run_task(svc, spec)
    assert status["status"] == "SUCCESS", status
    p = payload_of(report)
    assert p["ingestionState"] == "COMPLETED" and p["errorMsg"] is None
    assert p["rowStats"] == {
        "determinePartitions": ZERO,
        "buildSegments": stats(processed=4, processed_bytes=f.stat().st_size),
    }
    assert p["unparseableEvents"] == {"determinePartitions": [], "buildSegments": []}
    assert p["segmentAvailabilityConfirmed"] is False and p["recordsProcessed"] is None
    assert report["taskContext"]["type"] == "taskContext"
    segs = segments(svc, "json_rollup")
    assert [s["interval"] for s in segs] == [
        "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z",
        "2024-01-02T00:00:00.000Z/2024-01-03T00:00:00.000Z",
    ]
    assert all(s["shardSpec"]["partitionNum"] == 0 for s in segs)
    rows = read_rows(segs, ("__time", "page"))
    assert [(r["__time"], r["page"], r["user"], r["count"], r["added"]) for r in rows] == [
        ("2024-01-01T00:00:00Z", "a", "x", 2, 3),
        ("2024-01-01T00:00:00Z", "b", "y", 1, 4),
        ("2024-01-02T05:00:00Z", "a", "x", 1, 8),
    ]
    # os.walk, not rglob: finished task directories are removed in the background while this walks
    assert not [d for d, sub, files in os.walk(svc.data_dir) if Path(d).name == "_staging" and (sub or files)]


def test_csv_with_header_and_tsv_with_columns(svc: ServiceProcess, inputs: Path) -> None:
    csv = inputs / "data.csv"
    csv.write_text('ts,page,added\n2024-02-01T01:00:00Z,a,1\n2024-02-01T02:00:00Z,"b,c",2\n')
    status, report = run_task(
        svc,
        index_spec(
            "csv_ds",
            {"type": "local", "files": [str(csv)]},
            {"type": "csv", "findColumnsFromHeader": True},
            dims=["page", {"type": "long", "name": "added"}],
        ),
    )
    assert status["status"] == "SUCCESS", status
    assert payload_of(report)["rowStats"]["buildSegments"] == stats(
        processed=2, processed_bytes=csv.stat().st_size - len("ts,page,added\n")
    )
    rows = read_rows(segments(svc, "csv_ds"))
    assert [(r["page"], r["added"]) for r in rows] == [("a", 1), ("b,c", 2)]

    tsv = inputs / "data.tsv"
    tsv.write_text("skip me\n2024-02-02T01:00:00Z\tq\t5\n2024-02-02T03:00:00Z\tr\tnope\n")
    status, report = run_task(
        svc,
        index_spec(
            "tsv_ds",
            {"type": "local", "files": [str(tsv)]},
            {"type": "tsv", "columns": ["ts", "page", "added"], "skipHeaderRows": 1},
            dims=["page", {"type": "long", "name": "added"}],
        ),
    )
    assert status["status"] == "SUCCESS", status
    bs = payload_of(report)["rowStats"]["buildSegments"]
    assert (bs["processed"], bs["processedWithError"], bs["unparseable"]) == (1, 1, 0)
    rows = read_rows(segments(svc, "tsv_ds"))
    assert [(r["page"], r["added"]) for r in rows] == [("q", 5), ("r", None)]


def test_gzip_input(svc: ServiceProcess, inputs: Path) -> None:
    f = inputs / "data.json.gz"
    with gzip.open(f, "wb") as fh:
        fh.write(JSON_ROWS.encode())
    status, report = run_task(
        svc,
        index_spec(
            "gz_ds", {"type": "local", "baseDir": str(inputs), "filter": "*.gz"}, {"type": "json"}, dims=["page"]
        ),
    )
    assert status["status"] == "SUCCESS", status
    assert payload_of(report)["rowStats"]["buildSegments"] == stats(processed=4, processed_bytes=len(JSON_ROWS))
    assert [r["page"] for r in read_rows(segments(svc, "gz_ds"))] == ["a", "a", "b", "a"]


BAD_ROWS = [
    '{"ts":"2024-03-01T01:00:00Z","page":"good","n":1}',  # processed
    '{"ts":"2024-03-01T02:00:00Z","page":"typed","n":"abc"}',  # processedWithError (n is long)
    '{"ts":"2024-03-01T03:00:00Z","page":"filtered","n":3}',  # thrownAway by the filter
    '{"ts":"2025-01-01T00:00:00Z","page":"outside","n":4}',  # thrownAway: outside intervals
    '{"page":"no timestamp","n":5}',  # unparseable: missing timestamp
    '{"ts":"not a time","page":"bad ts","n":6}',  # unparseable: invalid timestamp
    '{"ts": "2024-03-01T04:00:00Z", "page": ',  # unparseable: broken JSON
    "",  # blank line: skipped
]


def test_every_kind_of_bad_row(svc: ServiceProcess, inputs: Path) -> None:
    f = inputs / "bad.json"
    f.write_text("\n".join(BAD_ROWS) + "\n")
    spec = index_spec(
        "bad_rows",
        {"type": "local", "files": [str(f)]},
        {"type": "json"},
        dims=["page", {"type": "long", "name": "n"}],
        intervals=["2024-03-01/2024-03-02"],
        tuning={"logParseExceptions": True},
    )
    spec["spec"]["dataSchema"]["transformSpec"] = {
        "filter": {"type": "not", "field": {"type": "selector", "dimension": "page", "value": "filtered"}}
    }
    status, report = run_task(svc, spec)
    assert status["status"] == "SUCCESS", status
    p = payload_of(report)
    bs = p["rowStats"]["buildSegments"]
    assert (bs["processed"], bs["processedWithError"], bs["thrownAway"], bs["unparseable"]) == (1, 1, 2, 3)
    events = p["unparseableEvents"]["buildSegments"]
    assert len(events) == 4
    assert sorted(e["errorType"] for e in events).count("unparseable") == 3
    assert all(e["details"] and e["timeOfExceptionMillis"] > 0 for e in events)
    rows = read_rows(segments(svc, "bad_rows"))
    assert [(r["page"], r["n"]) for r in rows] == [("good", 1), ("typed", None)]
    log = svc.http.get(f"{API}/task/{report['ingestionStatsAndErrors']['taskId']}/log").text
    assert "Encountered parse exception" in log
    assert "peak RSS bytes[" in log


def test_max_parse_exceptions_fails_with_druid_message(svc: ServiceProcess, inputs: Path) -> None:
    f = inputs / "bad.json"
    f.write_text("\n".join(BAD_ROWS) + "\n")
    spec = index_spec(
        "too_bad", {"type": "local", "files": [str(f)]}, {"type": "json"}, tuning={"maxParseExceptions": 2}
    )
    status, report = run_task(svc, spec)
    assert status["status"] == "FAILED"
    assert status["errorMsg"] == "Max parse exceptions[2] exceeded"
    p = payload_of(report)
    assert p["errorMsg"] == "Max parse exceptions[2] exceeded"
    assert p["rowStats"]["buildSegments"]["unparseable"] == 3
    assert segments(svc, "too_bad") == []
    assert not list(svc.data_dir.rglob("too_bad/*"))


def test_paths_outside_allowed_dirs_are_refused(svc: ServiceProcess, inputs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(JSON_ROWS)
    link = inputs / "link.json"
    os.symlink(outside, link)
    cases = [
        {"type": "local", "files": ["/etc/hostname"]},
        {"type": "local", "baseDir": "/etc", "filter": "*"},
        {"type": "local", "files": [str(inputs / ".." / ".." / ".." / ".." / outside.name)]},
        {"type": "local", "files": [str(link)]},
        {"type": "local", "baseDir": str(inputs), "filter": "../*"},
    ]
    before = len(svc.http.get(f"{API}/tasks").json())
    for source in cases:
        r = svc.http.post(f"{API}/task", json=index_spec("forbidden", source, {"type": "json"}))
        assert r.status_code == 400, (source, r.text)
        assert "spec.ioConfig.inputSource" in r.text, r.text
    assert len(svc.http.get(f"{API}/tasks").json()) == before


def test_druid_quickstart_shape(svc: ServiceProcess) -> None:
    base = svc.data_dir.parent / "quickstart" / "tutorial"
    wikiticker.write_file(base / "wikiticker-2015-09-12-sampled.json.gz", 2000)
    spec = wikiticker.quickstart_spec("quickstart/tutorial/", "wikiticker-2015-09-12-sampled.json.gz")
    status, report = run_task(svc, spec)
    assert status["status"] == "SUCCESS", status
    assert status["type"] == "index_parallel" and status["dataSource"] == "wikipedia_auto"
    assert payload_of(report)["rowStats"]["buildSegments"]["processed"] == 2000
    (seg,) = segments(svc, "wikipedia_auto")
    assert seg["interval"] == "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z"
    assert {"channel", "page", "user"} <= set(seg["dimensions"].split(","))
    rows = read_rows([seg])
    assert len(rows) == 2000 and rows[0]["__time"].startswith("2015-09-12T00:00")
