"""query_controller and query_worker in-process, against the real task-action handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from overlord_harness import OverlordHarness

from overlord.errors import TaskFailure
from overlord.runner.toolbox import LIVE_REPORT_FILE, read_json
from overlord.sql.ingest_statement import parse
from overlord.tasks import query_controller

SIG = [{"name": "ts", "type": "string"}, {"name": "page", "type": "string"}, {"name": "added", "type": "long"}]


def lit(v: Any) -> str:
    return "'" + json.dumps(v).replace("'", "''") + "'"


def extern(source: dict[str, Any]) -> str:
    return f"TABLE(EXTERN({lit(source)}, {lit({'type': 'json'})}, {lit(SIG)}))"


def controller(task_id: str, sql: str, **context: Any) -> dict[str, Any]:
    return query_controller.task_payload(task_id, parse(sql), sql, context)


def rows(day: str, n: int, added: int = 1) -> str:
    return "".join(
        json.dumps({"ts": f"2024-05-{day}T{i % 24:02d}:00:00Z", "page": f"p{i % 2}", "added": added}) + "\n"
        for i in range(n)
    )


def files(tmp_path: Path, *contents: str) -> list[str]:
    out = []
    for i, text in enumerate(contents):
        p = tmp_path / f"in-{i}.json"
        p.write_text(text)
        out.append(str(p))
    return out


def test_group_by_over_two_workers_rolls_up_exactly_and_reports(overlord: OverlordHarness, tmp_path: Path) -> None:
    paths = files(tmp_path, rows("01", 10, 1), rows("01", 10, 2), rows("02", 6, 5))
    sql = f"""INSERT INTO ds
        SELECT TIME_FLOOR(TIME_PARSE(ts), 'P1D') AS __time, page, SUM(added) AS added, COUNT(*) AS cnt
        FROM {extern({"type": "local", "files": paths})} WHERE page <> 'none'
        GROUP BY 1, 2 PARTITIONED BY DAY"""
    assert overlord.run(query_controller.run, controller("query-a", sql, maxNumTasks=3)).success
    assert sorted(overlord.payloads) == ["query-a-worker0_0", "query-a-worker1_0"]
    assert {p["groupId"] for p in overlord.payloads.values()} == {"query-a"}
    assert all(p["partialAggregation"] for p in overlord.payloads.values())
    segs = sorted(overlord.used("ds"), key=lambda s: s["interval"])
    assert [s["interval"][:10] for s in segs] == ["2024-05-01", "2024-05-02"]
    day1 = overlord.read_table(segs[0]).to_pylist()
    assert [(r["page"], r["added"], r["cnt"]) for r in sorted(day1, key=lambda r: r["page"])] == [
        ("p0", 15, 10),
        ("p1", 15, 10),
    ]
    assert segs[0]["metrics"] == "added,cnt" and segs[0]["dimensions"] == "page"
    report = overlord.report("query-a")
    msq = report["multiStageQuery"]["payload"]
    assert msq["status"]["status"] == "SUCCESS" and "errorReport" not in msq["status"]
    assert [(s["stageNumber"], s["phase"]) for s in msq["stages"]] == [(0, "FINISHED"), (1, "FINISHED")]
    assert msq["stages"][0]["definition"]["processor"]["type"] == "groupByPreShuffle"
    assert msq["stages"][1]["partitionCount"] == 2
    inputs = [msq["counters"]["0"][w]["input0"] for w in ("0", "1")]
    assert sum(c["rows"][0] for c in inputs) == 26 and sum(c["files"][0] for c in inputs) == 3
    stats = report["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]
    assert (stats["processed"], stats["thrownAway"], stats["unparseable"]) == (26, 0, 0)
    assert read_json(overlord.task_dir("query-a") / LIVE_REPORT_FILE)["multiStageQuery"]["taskId"] == "query-a"
    assert overlord.deep_storage.list("_staging/query-a") == []


def test_replace_all_drops_the_old_segments(overlord: OverlordHarness, tmp_path: Path) -> None:
    (first,) = files(tmp_path, rows("01", 4) + rows("02", 4))
    sql = f"INSERT INTO ds SELECT TIME_PARSE(ts) AS __time, page FROM {extern({'type': 'local', 'files': [first]})}"
    assert overlord.run(query_controller.run, controller("query-1", sql + " PARTITIONED BY DAY")).success
    assert len(overlord.used("ds")) == 2
    second = tmp_path / "second.json"
    second.write_text(rows("03", 3))
    sql = (
        "REPLACE INTO ds OVERWRITE ALL SELECT TIME_PARSE(ts) AS __time, page FROM "
        f"{extern({'type': 'local', 'files': [str(second)]})} PARTITIONED BY DAY"
    )
    payload = controller("query-2", sql)
    toolbox = overlord.start(payload)
    for iv in query_controller.lock_intervals(payload):  # what the queue does before it runs the task
        assert overlord.lockbox.try_acquire(toolbox.task_id, iv).ok
    try:
        assert query_controller.run(toolbox).success
    finally:
        overlord.end(toolbox.task_id)
    used = overlord.used("ds")
    assert [s["interval"][:10] for s in used] == ["2024-05-03"]


def test_null_time_fails_with_the_workers_fault(overlord: OverlordHarness, tmp_path: Path) -> None:
    (path,) = files(tmp_path, '{"ts": null, "page": "a", "added": 1}\n')
    sql = f"INSERT INTO ds SELECT TIME_PARSE(ts) AS __time, page FROM {extern({'type': 'local', 'files': [path]})}"
    with pytest.raises(TaskFailure, match=r"^InsertTimeNull: "):
        overlord.run(query_controller.run, controller("query-n", sql + " PARTITIONED BY DAY"))
    status = overlord.report("query-n")["multiStageQuery"]["payload"]["status"]
    assert status["status"] == "FAILED"
    assert status["errorReport"]["taskId"] == "query-n-worker0_0"
    assert status["errorReport"]["error"]["errorCode"] == "InsertTimeNull"
    assert overlord.used("ds") == []


def test_unparseable_rows_fail_by_default_and_count_when_allowed(overlord: OverlordHarness, tmp_path: Path) -> None:
    (path,) = files(tmp_path, rows("01", 3) + "{not json\n")
    sql = (
        f"INSERT INTO ds SELECT TIME_PARSE(ts) AS __time, page FROM {extern({'type': 'local', 'files': [path]})} "
        "PARTITIONED BY DAY"
    )
    with pytest.raises(TaskFailure, match=r"^TooManyWarnings: .*CannotParseExternalData"):
        overlord.run(query_controller.run, controller("query-u1", sql))
    assert overlord.run(query_controller.run, controller("query-u2", sql, maxParseExceptions=-1)).success
    report = overlord.report("query-u2")
    stats = report["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]
    assert (stats["processed"], stats["unparseable"]) == (3, 1)
    msq = report["multiStageQuery"]["payload"]
    assert msq["counters"]["0"]["0"]["warnings"] == {"type": "warnings", "CannotParseExternalData": 1}
    assert msq["status"]["warnings"][0]["error"]["errorCode"] == "CannotParseExternalData"


def test_rows_outside_the_replaced_time_fail_the_query(overlord: OverlordHarness, tmp_path: Path) -> None:
    (path,) = files(tmp_path, rows("01", 2) + rows("02", 2))
    sql = (
        "REPLACE INTO ds OVERWRITE WHERE __time >= TIMESTAMP '2024-05-01' AND __time < TIMESTAMP '2024-05-02' "
        f"SELECT TIME_PARSE(ts) AS __time, page FROM {extern({'type': 'local', 'files': [path]})} PARTITIONED BY DAY"
    )
    payload = controller("query-o", sql)
    toolbox = overlord.start(payload)
    for iv in query_controller.lock_intervals(payload):
        assert overlord.lockbox.try_acquire(toolbox.task_id, iv).ok
    try:
        with pytest.raises(TaskFailure, match=r"^InsertTimeOutOfBounds: .*2024-05-02"):
            query_controller.run(toolbox)
    finally:
        overlord.end(toolbox.task_id)
    assert overlord.used("ds") == []


def test_partitioned_by_all_writes_one_all_time_segment(overlord: OverlordHarness, tmp_path: Path) -> None:
    (path,) = files(tmp_path, rows("01", 3) + rows("09", 2))
    sql = (
        f"INSERT INTO ds SELECT TIME_PARSE(ts) AS __time, page FROM {extern({'type': 'local', 'files': [path]})} "
        "PARTITIONED BY ALL"
    )
    assert overlord.run(query_controller.run, controller("query-all", sql)).success
    (seg,) = overlord.used("ds")
    assert seg["interval"] == "1000-01-01T00:00:00.000Z/9999-12-31T00:00:00.000Z"
    assert overlord.read_table(seg).num_rows == 5


def test_compaction_reads_sql_ingested_rollup_segments(overlord: OverlordHarness, tmp_path: Path) -> None:
    from overlord.tasks import compact

    paths = files(tmp_path, rows("01", 6, 1), rows("01", 6, 2))
    sql = f"""INSERT INTO ds
        SELECT TIME_FLOOR(TIME_PARSE(ts), 'PT1H') AS __time, page, SUM(added) AS added, COUNT(*) AS cnt
        FROM {extern({"type": "local", "files": paths})} GROUP BY 1, 2 PARTITIONED BY DAY"""
    assert overlord.run(query_controller.run, controller("query-c1", sql, maxNumTasks=3)).success
    before = overlord.used("ds")
    rows_before = sorted(overlord.read_table(before[0]).to_pylist(), key=lambda r: (r["__time"], r["page"]))
    payload = {"type": "compact", "id": "c1", "dataSource": "ds", "interval": "2024-05-01/2024-05-02"}
    assert overlord.run(compact.run, payload).success
    (after,) = overlord.used("ds")
    assert after["version"] > before[0]["version"]
    rows_after = sorted(overlord.read_table(after).to_pylist(), key=lambda r: (r["__time"], r["page"]))
    assert rows_after == rows_before and sum(r["cnt"] for r in rows_after) == 12
