"""index / index_parallel / single_phase_sub_task against the in-memory Overlord."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from overlord_harness import OverlordHarness

from overlord.core.task import SubmitContext
from overlord.errors import ForbiddenPath, InvalidInput, InvalidSpec, TaskFailure
from overlord.runner.toolbox import LIVE_REPORT_FILE, REPORT_FILE, read_json
from overlord.tasks import index, parallel

ROWS = [
    '{"ts":"2020-01-01T01:00:00Z","dim":"a","v":1}',
    '{"ts":"2020-01-01T02:00:00Z","dim":"b","v":2}',
    '{"ts":"2020-01-02T01:00:00Z","dim":"a","v":3}',
    "not json",
]


def spec(task_id: str, io: dict[str, Any], **tuning: Any) -> dict[str, Any]:
    return {
        "type": "index_parallel",
        "id": task_id,
        "spec": {
            "dataSchema": {
                "dataSource": "ds",
                "timestampSpec": {"column": "ts", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["dim"]},
                "metricsSpec": [{"type": "count", "name": "count"}, {"type": "longSum", "name": "v", "fieldName": "v"}],
                "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "none", "rollup": True},
            },
            "ioConfig": {"type": "index_parallel", "inputFormat": {"type": "json"}, **io},
            "tuningConfig": {"type": "index_parallel", "maxSavedParseExceptions": 10, **tuning},
        },
        "context": {"priority": 60},
    }


def inline(rows: list[str]) -> dict[str, Any]:
    return {"inputSource": {"type": "inline", "data": "\n".join(rows)}}


def report(fake: OverlordHarness, task_id: str) -> dict[str, Any]:
    return read_json(fake.task_dir(task_id) / REPORT_FILE)


def payload_of(r: dict[str, Any]) -> dict[str, Any]:
    return r["ingestionStatsAndErrors"]["payload"]


def test_index_publishes_with_lock_version_and_reports(overlord: OverlordHarness) -> None:
    assert overlord.run(index.run, spec("t1", inline(ROWS))).success
    r = report(overlord, "t1")
    p = payload_of(r)
    assert p["rowStats"]["buildSegments"] == {
        "processed": 3,
        "processedBytes": sum(len(x) + 1 for x in ROWS) - 1,
        "processedWithError": 0,
        "thrownAway": 0,
        "unparseable": 1,
    }
    assert p["ingestionState"] == "COMPLETED" and p["errorMsg"] is None
    assert r["taskContext"]["payload"] == {"priority": 60}
    assert len(p["unparseableEvents"]["buildSegments"]) == 1
    used = overlord.used()
    assert [s["interval"] for s in used] == [
        "2020-01-01T00:00:00.000Z/2020-01-02T00:00:00.000Z",
        "2020-01-02T00:00:00.000Z/2020-01-03T00:00:00.000Z",
    ]
    locks = {lk["interval"]: lk["version"] for a, lk in overlord.results if a["type"] == "lockAcquire"}
    for s in used:
        assert s["version"] == locks[s["interval"]]
        assert s["shardSpec"] == {"type": "numbered", "partitionNum": 0, "partitions": 1}
        assert overlord.deep_storage.contains(s["loadSpec"]) and overlord.exists(s["loadSpec"])
        assert s["loadSpec"]["path"].endswith(f"/ds/{s['interval'].replace('/', '_').replace(':', '')}/"
                                              f"{s['version'].replace(':', '')}/0/index.parquet")  # fmt: skip
        assert s["identifier"].startswith("ds_2020-01-0")
    t = overlord.read_table(used[0]).to_pylist()
    assert [(r["dim"], r["count"], r["v"]) for r in t] == [("a", 1, 1), ("b", 1, 2)]
    assert read_json(overlord.task_dir("t1") / LIVE_REPORT_FILE)["ingestionStatsAndErrors"]["payload"]["ingestionState"]
    assert not list((overlord.task_dir("t1") / "work" / "segments").rglob("*.parquet"))


def test_overwrite_gets_higher_version_and_append_adds_partitions(overlord: OverlordHarness) -> None:
    assert overlord.run(index.run, spec("t1", inline(ROWS[:2]))).success
    v1 = overlord.used()[0]["version"]
    assert overlord.run(index.run, spec("t2", inline(ROWS[:2]))).success
    (seg,) = overlord.used()
    assert seg["version"] > v1 and seg["shardSpec"]["partitionNum"] == 0
    appending = spec("t3", {**inline(ROWS[:1]), "appendToExisting": True})
    assert overlord.run(index.run, appending).success
    used = sorted(overlord.used(), key=lambda s: s["shardSpec"]["partitionNum"])
    assert [(s["version"], s["shardSpec"]["partitionNum"]) for s in used] == [(seg["version"], 0), (seg["version"], 1)]
    alloc = [a for a in overlord.actions if a["type"] == "segmentAllocate"]
    assert alloc and alloc[0]["sequenceName"] == "t3" and alloc[0]["previousSegmentId"] is None


def test_failed_publish_leaves_no_files(overlord: OverlordHarness) -> None:
    overlord.fail_insert = True
    with pytest.raises(Exception, match="locks were revoked"):
        overlord.run(index.run, spec("t1", inline(ROWS)))
    assert overlord.deep_storage.list("ds") == []
    assert overlord.used() == []
    assert "locks were revoked" in payload_of(report(overlord, "t1"))["errorMsg"]


def test_max_parse_exceptions_fails_with_druid_message(overlord: OverlordHarness) -> None:
    with pytest.raises(TaskFailure, match=r"Max parse exceptions\[1\] exceeded"):
        overlord.run(index.run, spec("t1", inline([*ROWS, "bad", "worse"]), maxParseExceptions=1))
    p = payload_of(report(overlord, "t1"))
    assert p["errorMsg"] == "Max parse exceptions[1] exceeded"
    assert p["rowStats"]["buildSegments"]["unparseable"] == 2
    assert overlord.used() == []


def test_parallel_sub_tasks_publish_together(overlord: OverlordHarness, tmp_path: Path) -> None:
    files = []
    for i, rows in enumerate([ROWS[:2], ROWS[2:]]):
        f = tmp_path / "in" / f"part{i}.json"
        f.parent.mkdir(exist_ok=True)
        f.write_text("\n".join(rows) + "\n")
        files.append(f)
    io = {"inputSource": {"type": "local", "baseDir": str(tmp_path / "in"), "filter": "*.json"}}
    assert overlord.run(parallel.run, spec("parent", io, maxNumConcurrentSubTasks=2, maxRowsPerSegment=1)).success
    subs = list(overlord.payloads.values())
    assert len(subs) == 2
    for s in subs:
        assert s["type"] == "single_phase_sub_task" and s["groupId"] == "parent"
        assert s["supervisorTaskId"] == "parent" and s["context"]["priority"] == 60
    final = payload_of(report(overlord, "parent"))  # Druid's parallel supervisor task's shape
    assert list(final["rowStats"]) == ["totals"] and list(final["rowStats"]["totals"]) == ["buildSegments"]
    stats = final["rowStats"]["totals"]["buildSegments"]
    assert stats["processed"] == 3 and stats["unparseable"] == 1
    assert (
        list(final["unparseableEvents"]) == ["buildSegments"] and len(final["unparseableEvents"]["buildSegments"]) == 1
    )
    live = read_json(overlord.task_dir("parent") / LIVE_REPORT_FILE)
    assert list(payload_of(live)["rowStats"]) == ["totals"]
    assert list(payload_of(live)["unparseableEvents"]) == ["buildSegments"]
    specs = live["parallelIndexSubtasks"]["payload"]["specs"]
    assert [s["spec"]["id"] for s in specs] == ["parent_0", "parent_1"]
    assert sorted(t for s in specs for t in s["taskIds"]) == sorted(overlord.payloads)
    used = overlord.used()
    assert len(used) == 3
    day1 = sorted(s["shardSpec"]["partitionNum"] for s in used if s["interval"].startswith("2020-01-01"))
    assert day1 == [0, 1]
    assert all(s["shardSpec"]["partitions"] == len(day1) for s in used if s["interval"].startswith("2020-01-01"))
    assert overlord.deep_storage.list("_staging") == []
    inserts = [a for a in overlord.actions if a["type"] == "segmentTransactionalInsert"]
    assert len(inserts) == 1
    for sub_id in overlord.payloads:
        pushed = report(overlord, sub_id)["pushedSegments"]["payload"]["segments"]
        assert pushed and all(f"/_staging/parent/{sub_id}/" in seg["loadSpec"]["path"] for seg in pushed)
        assert all(not overlord.exists(seg["loadSpec"]) for seg in pushed), "staged copies are removed"
    assert all(overlord.exists(s["loadSpec"]) and "_staging" not in s["loadSpec"]["path"] for s in used)
    assert sum(overlord.read_table(s).num_rows for s in used) == 3


def test_parallel_sub_task_failure_fails_parent_and_cleans_staging(overlord: OverlordHarness, tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"p{i}.json").write_text(ROWS[i] + "\n")
    io = {"inputSource": {"type": "local", "files": [str(tmp_path / "p0.json"), str(tmp_path / "p1.json")]}}
    payload = spec("parent", io, maxNumConcurrentSubTasks=2)
    from overlord.tasks.parallel import sub_task_id

    overlord.fail_sub_task = sub_task_id("parent", "ds", 1)
    with pytest.raises(TaskFailure, match=r"Sub-task\[single_phase_sub_task_ds_.*_1\] failed: boom"):
        overlord.run(parallel.run, payload)
    assert overlord.used() == []
    assert overlord.deep_storage.list("_staging") == []
    assert "failed: boom" in payload_of(report(overlord, "parent"))["errorMsg"]


def two_files(tmp_path: Path) -> dict[str, Any]:
    for i in range(2):
        (tmp_path / f"p{i}.json").write_text(ROWS[i] + "\n")
    return {"inputSource": {"type": "local", "files": [str(tmp_path / "p0.json"), str(tmp_path / "p1.json")]}}


def test_failing_parent_shuts_down_running_sub_tasks_before_removing_staging(
    overlord: OverlordHarness, tmp_path: Path
) -> None:
    held, failing = parallel.sub_task_id("parent", "ds", 0), parallel.sub_task_id("parent", "ds", 1)
    overlord.hold_sub_tasks = {held}
    overlord.fail_sub_task = failing
    overlord.deep_storage.write(f"_staging/parent/{held}/ds/partial.parquet", io.BytesIO(b"half-pushed"))
    with pytest.raises(TaskFailure, match="failed: boom"):
        overlord.run(parallel.run, spec("parent", two_files(tmp_path), maxNumConcurrentSubTasks=2))
    assert overlord.shutdowns == [held]
    assert overlord.tasks[held]["status"] == "FAILED"
    assert overlord.deep_storage.list("_staging") == []


def test_shutdown_wait_is_bounded(overlord: OverlordHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "SHUTDOWN_WAIT_S", 0.2)
    held = parallel.sub_task_id("parent", "ds", 0)
    overlord.hold_sub_tasks = {held}
    overlord.fail_sub_task = parallel.sub_task_id("parent", "ds", 1)
    overlord.ignore_shutdown = True
    with pytest.raises(TaskFailure, match="failed: boom"):
        overlord.run(parallel.run, spec("parent", two_files(tmp_path), maxNumConcurrentSubTasks=2))
    assert overlord.shutdowns == [held] and overlord.tasks[held]["status"] == "RUNNING"
    assert overlord.deep_storage.list("_staging") == []


def test_parent_refuses_pushed_load_specs_outside_the_sub_tasks_staging(
    overlord: OverlordHarness, tmp_path: Path
) -> None:
    assert overlord.run(index.run, spec("victim", inline(ROWS[:1]))).success
    (victim,) = overlord.used()

    def tamper(task_id: str, r: dict[str, Any]) -> dict[str, Any]:
        if "pushedSegments" in r:
            r["pushedSegments"]["payload"]["segments"][0]["loadSpec"] = victim["loadSpec"]
        return r

    overlord.report_hook = tamper
    with pytest.raises(TaskFailure, match="not among the files it pushed"):
        overlord.run(parallel.run, spec("parent", two_files(tmp_path), maxNumConcurrentSubTasks=2))
    assert overlord.used() == [victim] and overlord.exists(victim["loadSpec"])
    assert overlord.deep_storage.list("_staging") == []


def test_sub_task_pushes_to_staging_and_reports_load_specs(overlord: OverlordHarness) -> None:
    payload = {**spec("sub1", inline(ROWS)), "type": "single_phase_sub_task", "supervisorTaskId": "sup",
               "inputSplits": [{"data": "\n".join(ROWS)}]}  # fmt: skip
    payload["spec"]["ioConfig"]["type"] = "index_parallel"
    assert overlord.run(index.run_sub_task, payload).success
    pushed = report(overlord, "sub1")["pushedSegments"]
    assert pushed["taskId"] == "sub1"
    specs = [s["loadSpec"] for s in pushed["payload"]["segments"]]
    assert sorted(specs, key=lambda x: x["path"]) == overlord.deep_storage.list("_staging/sup/sub1")
    assert len(specs) == 2 and overlord.used() == []


def test_sub_task_with_escaping_supervisor_id_writes_nothing(overlord: OverlordHarness) -> None:
    payload = {**spec("sub1", inline(ROWS)), "type": "single_phase_sub_task", "supervisorTaskId": "../../../tmp/x",
               "inputSplits": [{"data": "\n".join(ROWS)}]}  # fmt: skip
    with pytest.raises(InvalidInput):
        overlord.run(index.run_sub_task, payload)
    assert overlord.deep_storage.list("_staging") == []
    assert not (tmp_root := overlord.root.parent / "tmp").exists() or not list(tmp_root.rglob("*.parquet"))


def test_validate_names_fields(tmp_path: Path) -> None:
    ctx = SubmitContext(allowed_input_dirs=[tmp_path], http_max_idle_time_ms=1000)
    ok = spec("t", inline(ROWS))
    assert index.validate(ok, ctx) is ok
    with pytest.raises(InvalidSpec, match=r"spec.dataSchema.dataSource"):
        bad = spec("t", inline(ROWS))
        del bad["spec"]["dataSchema"]["dataSource"]
        index.validate(bad, ctx)
    with pytest.raises(ForbiddenPath, match="outside the allowed"):
        index.validate(spec("t", {"inputSource": {"type": "local", "files": ["/etc/passwd"]}}), ctx)
    with pytest.raises(ForbiddenPath):
        escape = str(tmp_path / ".." / "x.json")
        index.validate(spec("t", {"inputSource": {"type": "local", "files": [escape]}}), ctx)
    with pytest.raises(InvalidSpec, match=r"taskLockTimeout"):
        index.validate({**ok, "context": {"taskLockTimeout": 5000}}, ctx)
    with pytest.raises(InvalidSpec, match=r"bogus"):
        index.validate({**ok, "bogus": 1}, ctx)
