"""compact, the legacy forms and kill against the in-memory Overlord."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from overlord_harness import OverlordHarness
from test_index_task import ROWS, inline, report, spec

from overlord.core.task import SubmitContext
from overlord.errors import InvalidSpec, TaskFailure
from overlord.tasks import compact, index, kill, legacy

CTX = SubmitContext(allowed_input_dirs=[], http_max_idle_time_ms=300_000)


def rows_of(fake: OverlordHarness, segments: list[dict]) -> list[dict]:
    tables = [fake.read_table(s) for s in segments]
    out = pa.concat_tables(tables, promote_options="permissive").to_pylist()
    return sorted(out, key=lambda r: (r["__time"], r["dim"]))


def ingest_small_segments(fake: OverlordHarness) -> list[dict]:
    assert fake.run(index.run, spec("t1", inline(ROWS), maxRowsPerSegment=1)).success
    return fake.used()


def test_compact_merges_segments_with_identical_data(overlord: OverlordHarness) -> None:
    before = ingest_small_segments(overlord)
    assert len(before) == 3
    data_before = rows_of(overlord, before)
    payload = {"type": "compact", "id": "c1", "dataSource": "ds", "interval": "2020-01-01/2020-01-03"}
    assert compact.validate(payload, CTX) is payload
    assert overlord.run(compact.run, payload).success
    after = overlord.used()
    assert len(after) == 2
    assert rows_of(overlord, after) == data_before
    assert all(s["version"] > before[0]["version"] for s in after)
    state = after[0]["lastCompactionState"]
    assert state["partitionsSpec"]["maxRowsPerSegment"] == 5_000_000
    assert state["granularitySpec"]["rollup"] is True
    assert {m["name"]: m["type"] for m in state["metricsSpec"]} == {"count": "longSum", "v": "longSum"}
    r = report(overlord, "c1")
    assert set(r) == {"ingestionStatsAndErrors_0", "ingestionStatsAndErrors_1", "taskContext"}
    p0 = r["ingestionStatsAndErrors_0"]["payload"]
    assert (p0["segmentsRead"], p0["segmentsPublished"]) == (2, 1)
    assert p0["rowStats"]["buildSegments"]["processed"] == 2


def test_compact_new_granularity_rolls_up(overlord: OverlordHarness) -> None:
    ingest_small_segments(overlord)
    payload = {
        "type": "compact",
        "id": "c1",
        "dataSource": "ds",
        "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": "2020-01-01/2020-01-08"}},
        "granularitySpec": {"segmentGranularity": "week", "queryGranularity": "day"},
        "context": {"storeCompactionState": False},
    }
    assert overlord.run(compact.run, payload).success
    (seg,) = [s for s in overlord.used() if s["interval"].startswith("2019-12-30")]
    assert "lastCompactionState" not in seg
    rows = rows_of(overlord, [seg])
    assert [(r["dim"], r["count"], r["v"]) for r in rows] == [("a", 1, 1), ("b", 1, 2), ("a", 1, 3)]
    r = report(overlord, "c1")
    assert r["ingestionStatsAndErrors"]["payload"]["segmentsRead"] == 3


def test_compact_validation_names_fields() -> None:
    with pytest.raises(InvalidSpec, match=r"^dataSource"):
        compact.validate({"type": "compact", "interval": "2020/2021"}, CTX)
    with pytest.raises(InvalidSpec, match=r"ioConfig.inputSpec"):
        compact.validate({"type": "compact", "dataSource": "ds"}, CTX)
    with pytest.raises(InvalidSpec, match=r"granularitySpec.segmentGranularity"):
        compact.validate(
            {
                "type": "compact",
                "dataSource": "ds",
                "interval": "2020/2021",
                "granularitySpec": {"segmentGranularity": "x"},
            },
            CTX,
        )
    with pytest.raises(InvalidSpec, match=r"maxRowsPerSegment"):
        compact.validate(
            {"type": "compact", "dataSource": "ds", "interval": "2020/2021",
             "tuningConfig": {"partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 0}}},
            CTX,
        )  # fmt: skip


def test_legacy_forms_translate_to_compact() -> None:
    seg = {"interval": "2020-01-01/2020-01-02"}
    merged = legacy.to_compact(
        {"type": "merge", "dataSource": "ds", "segments": [seg, {"interval": "2020-01-02/2020-01-03"}],
         "aggregations": [{"type": "count", "name": "count"}], "rollup": True}
    )  # fmt: skip
    assert merged["interval"] == "2020-01-01T00:00:00.000Z/2020-01-03T00:00:00.000Z"
    assert merged["metricsSpec"] == [{"type": "count", "name": "count"}]
    assert legacy.validate({"type": "same_interval_merge", "dataSource": "ds", "interval": "2020/2021"}, CTX)
    with pytest.raises(InvalidSpec, match=r"segments"):
        legacy.validate({"type": "append", "dataSource": "ds", "segments": []}, CTX)
    with pytest.raises(InvalidSpec, match=r"aggregations"):
        legacy.validate({"type": "append", "dataSource": "ds", "segments": [seg], "aggregations": [{"x": 1}]}, CTX)


def test_legacy_merge_runs(overlord: OverlordHarness) -> None:
    before = ingest_small_segments(overlord)
    payload = {"type": "same_interval_merge", "id": "m1", "dataSource": "ds", "interval": "2020-01-01/2020-01-02"}
    assert overlord.run(legacy.run, payload).success
    assert len([s for s in overlord.used() if s["interval"].startswith("2020-01-01")]) == 1
    assert rows_of(overlord, overlord.used()) == rows_of(overlord, before)


def test_kill_deletes_only_unused(overlord: OverlordHarness) -> None:
    ingest_small_segments(overlord)
    old = overlord.used()
    assert overlord.run(index.run, spec("t2", inline(ROWS))).success
    new = overlord.used()
    payload = {"type": "kill", "id": "k1", "dataSource": "ds", "interval": "2020-01-01/2020-01-03"}
    assert kill.validate(payload, CTX) is payload
    assert overlord.run(kill.run, payload).success
    assert all(not overlord.exists(s["loadSpec"]) for s in old)
    assert all(overlord.exists(s["loadSpec"]) for s in new)
    assert {s["identifier"] for s in overlord.all_segments()} == {s["identifier"] for s in new}
    assert report(overlord, "k1")["killUnusedSegments"]["payload"]["numSegmentsKilled"] == 3


def test_kill_validation() -> None:
    with pytest.raises(InvalidSpec, match=r"^interval"):
        kill.validate({"type": "kill", "dataSource": "ds"}, CTX)
    with pytest.raises(InvalidSpec, match=r"^dataSource"):
        kill.validate({"type": "kill", "interval": "2020/2021"}, CTX)


def test_kill_never_deletes_outside_deep_storage(overlord: OverlordHarness, tmp_path: Path) -> None:
    outside = tmp_path / "precious.parquet"
    outside.write_bytes(b"keep me")
    forged = {"dataSource": "ds", "interval": "2020-01-01T00:00:00.000Z/2020-01-02T00:00:00.000Z",
              "version": "v0", "identifier": "ds_forged", "shardSpec": {"type": "numbered", "partitionNum": 0},
              "loadSpec": {"type": "local", "path": str(outside)}}  # fmt: skip
    overlord.insert(forged, used=False)
    payload = {"type": "kill", "id": "k1", "dataSource": "ds", "interval": "2020-01-01/2020-01-03"}
    assert overlord.run(kill.run, payload).success
    assert outside.read_bytes() == b"keep me"
    assert overlord.all_segments() == []


def test_compact_reads_only_through_deep_storage(overlord: OverlordHarness, tmp_path: Path) -> None:
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(b"x")
    forged = {"dataSource": "ds", "interval": "2020-01-05T00:00:00.000Z/2020-01-06T00:00:00.000Z",
              "version": "2020-01-01T00:00:00.000Z", "identifier": "ds_forged",
              "shardSpec": {"type": "numbered", "partitionNum": 0, "partitions": 1},
              "loadSpec": {"type": "local", "path": str(outside)}}  # fmt: skip
    overlord.insert(forged)
    payload = {"type": "compact", "id": "c1", "dataSource": "ds", "interval": "2020-01-05/2020-01-06"}
    with pytest.raises(TaskFailure, match=r"Cannot read segment \[ds_2020-01-05"):
        overlord.run(compact.run, payload)
    assert report(overlord, "c1")["ingestionStatsAndErrors"]["payload"]["errorMsg"]


def test_compact_missing_segment_file_fails_clearly(overlord: OverlordHarness) -> None:
    segs = ingest_small_segments(overlord)
    overlord.deep_storage.delete(segs[0]["loadSpec"])
    payload = {"type": "compact", "id": "c1", "dataSource": "ds", "interval": "2020-01-01/2020-01-03"}
    with pytest.raises(TaskFailure, match="is missing"):
        overlord.run(compact.run, payload)
