"""End to end: SQL-based ingestion (POST /druid/v2/sql/task) through a real ``overlord start``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import API, read_rows, run_task, segments, start_service, wait_until
from tests.conftest import ServiceProcess

from overlord.ingest import wikiticker

SQL_TASK = "/druid/v2/sql/task"
WIKI_SIGNATURE = [
    {"name": "time", "type": "string"},
    {"name": "channel", "type": "string"},
    {"name": "page", "type": "string"},
    {"name": "user", "type": "string"},
    {"name": "added", "type": "long"},
    {"name": "deleted", "type": "long"},
    {"name": "delta", "type": "long"},
]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start_service(tmp_path_factory.mktemp("sqlingest"), capacity=4)
    yield service
    service.stop()


@pytest.fixture
def inputs(svc: ServiceProcess, request: pytest.FixtureRequest) -> Path:
    d = svc.data_dir.parent / "inputs" / request.node.name
    d.mkdir(parents=True)
    return d


def extern(source: dict[str, Any], signature: list[dict[str, str]] = WIKI_SIGNATURE) -> str:
    def lit(v: Any) -> str:
        return "'" + json.dumps(v).replace("'", "''") + "'"

    return f"TABLE(EXTERN({lit(source)}, {lit({'type': 'json'})}, {lit(signature)}))"


def submit_sql(svc: ServiceProcess, sql: str, context: dict[str, Any] | None = None) -> str:
    r = svc.http.post(SQL_TASK, json={"query": sql, "context": context or {}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "RUNNING" and body["taskId"].startswith("query-"), body
    return str(body["taskId"])


def run_sql(svc: ServiceProcess, sql: str, context: dict[str, Any] | None = None) -> tuple[dict, dict]:
    task_id = submit_sql(svc, sql, context)
    status = svc.wait_for(task_id, timeout=90)
    r = svc.http.get(f"{API}/task/{task_id}/reports")
    return status, (r.json() if r.status_code == 200 else {})


def query(svc: ServiceProcess, sql: str) -> list[dict[str, Any]]:
    """Druid SQL over the ingested data (the query API reads exactly the visible segments)."""
    r = svc.http.post("/druid/v2/sql", json={"query": sql})
    assert r.status_code == 200, r.text
    return list(r.json())


def totals(svc: ServiceProcess, ds: str) -> tuple[int, int]:
    rows = read_rows(segments(svc, ds))
    return len(rows), sum(r["added"] for r in rows)


def test_insert_quickstart_matches_native_ingestion(svc: ServiceProcess) -> None:
    base = svc.data_dir.parent / "quickstart" / "tutorial"
    path = wikiticker.write_file(base / "wikiticker-2015-09-12-sampled.json.gz", 3000)
    status, _ = run_task(svc, wikiticker.quickstart_spec(str(base), path.name, data_source="wiki_native"))
    assert status["status"] == "SUCCESS", status
    sql = f"""
        INSERT INTO wiki_sql
        SELECT TIME_PARSE("time") AS __time, channel, page, "user", added, deleted, delta
        FROM {extern({"type": "local", "files": [str(path)]})}
        PARTITIONED BY DAY
    """
    status, report = run_sql(svc, sql)
    assert status["status"] == "SUCCESS", status
    assert status["type"] == "query_controller" and status["dataSource"] == "wiki_sql"
    assert status["groupId"] == status["id"]
    assert totals(svc, "wiki_sql") == totals(svc, "wiki_native")
    assert totals(svc, "wiki_sql")[0] == 3000
    assert query(svc, "SELECT COUNT(*) AS c, SUM(added) AS s FROM wiki_sql") == query(
        svc, "SELECT COUNT(*) AS c, SUM(added) AS s FROM wiki_native"
    )
    (seg,) = segments(svc, "wiki_sql")
    assert seg["interval"] == "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z"
    msq = report["multiStageQuery"]
    assert msq["taskId"] == status["id"] and msq["payload"]["status"]["status"] == "SUCCESS"
    assert [s["phase"] for s in msq["payload"]["stages"]] == ["FINISHED", "FINISHED"]
    assert msq["payload"]["counters"]["0"]["0"]["input0"]["rows"] == [3000]
    stats = report["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]
    assert (stats["processed"], stats["unparseable"], stats["thrownAway"]) == (3000, 0, 0)


def day_rows(day: str, n: int, added: int) -> str:
    return "".join(
        json.dumps({"time": f"2024-05-{day}T{i % 24:02d}:00:00Z", "channel": f"#c{i % 3}", "added": added}) + "\n"
        for i in range(n)
    )


def test_replace_overwrite_where_replaces_only_that_day(svc: ServiceProcess, inputs: Path) -> None:
    first = inputs / "first.json"
    first.write_text(day_rows("01", 10, 1) + day_rows("02", 10, 1) + day_rows("03", 10, 1))
    sig = [{"name": "time", "type": "string"}, {"name": "channel", "type": "string"}, {"name": "added", "type": "long"}]
    select = 'SELECT TIME_PARSE("time") AS __time, channel, added FROM {src}'
    src = extern({"type": "local", "files": [str(first)]}, sig)
    sql = f"INSERT INTO replaced {select.format(src=src)} PARTITIONED BY DAY"
    status, _ = run_sql(svc, sql)
    assert status["status"] == "SUCCESS", status
    before = {s["interval"][:10]: s for s in segments(svc, "replaced")}
    assert sorted(before) == ["2024-05-01", "2024-05-02", "2024-05-03"]

    second = inputs / "second.json"
    second.write_text(day_rows("02", 4, 100))
    sql = (
        "REPLACE INTO replaced OVERWRITE WHERE __time >= TIMESTAMP '2024-05-02' AND __time < TIMESTAMP '2024-05-03' "
        + select.format(src=extern({"type": "local", "files": [str(second)]}, sig))
        + " PARTITIONED BY DAY"
    )
    status, report = run_sql(svc, sql)
    assert status["status"] == "SUCCESS", (status, report)
    after = {s["interval"][:10]: s for s in segments(svc, "replaced")}
    assert sorted(after) == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert after["2024-05-01"]["identifier"] == before["2024-05-01"]["identifier"]
    assert after["2024-05-03"]["identifier"] == before["2024-05-03"]["identifier"]
    assert after["2024-05-02"]["version"] > before["2024-05-02"]["version"]
    rows = read_rows(segments(svc, "replaced"))
    assert len(rows) == 24 and sum(r["added"] for r in rows) == 10 + 4 * 100 + 10
    assert query(svc, "SELECT COUNT(*) AS c, SUM(added) AS s FROM replaced") == [{"c": 24, "s": 420}]


def test_max_num_tasks_3_runs_two_query_workers(svc: ServiceProcess, inputs: Path) -> None:
    files = []
    for i in range(4):
        p = inputs / f"part-{i}.json"
        p.write_text(day_rows(f"0{i + 1}", 25, i + 1))
        files.append(str(p))
    sig = [{"name": "time", "type": "string"}, {"name": "channel", "type": "string"}, {"name": "added", "type": "long"}]
    sql = f"""
        INSERT INTO rolled
        SELECT TIME_FLOOR(TIME_PARSE("time"), 'P1D') AS __time, channel, SUM(added) AS added, COUNT(*) AS cnt
        FROM {extern({"type": "local", "files": files}, sig)}
        WHERE channel <> '#c2'
        GROUP BY 1, 2
        PARTITIONED BY DAY CLUSTERED BY channel
    """
    status, report = run_sql(svc, sql, {"maxNumTasks": 3})
    assert status["status"] == "SUCCESS", (status, report)
    controller = status["id"]
    workers = svc.http.get(f"{API}/tasks", params={"type": "query_worker"}).json()
    mine = sorted(w["id"] for w in workers if w["groupId"] == controller)
    assert mine == [f"{controller}-worker0_0", f"{controller}-worker1_0"]
    assert all(w["type"] == "query_worker" and w["statusCode"] == "SUCCESS" for w in workers if w["id"] in mine)
    rows = read_rows(segments(svc, "rolled"), sort_by=("__time", "channel"))
    # exact rollup across workers: one row per day and channel, #c2 filtered out
    assert [(r["__time"][:10], r["channel"]) for r in rows] == [
        (f"2024-05-0{d}", c) for d in range(1, 5) for c in ("#c0", "#c1")
    ]
    assert sum(r["cnt"] for r in rows) == sum(len([i for i in range(25) if i % 3 != 2]) for _ in range(4))
    stats = report["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]
    assert stats["thrownAway"] == 4 * len([i for i in range(25) if i % 3 == 2])
    assert sorted(report["multiStageQuery"]["payload"]["counters"]["0"]) == ["0", "1"]


def test_extern_over_forbidden_path_is_refused(svc: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.json"
    outside.write_text('{"time": "2024-01-01T00:00:00Z"}\n')
    before = len(svc.http.get(f"{API}/tasks").json())
    for source in ({"type": "local", "files": [str(outside)]}, {"type": "local", "baseDir": str(svc.data_dir)}):
        sql = f"INSERT INTO forbidden SELECT * FROM {extern(source)} PARTITIONED BY DAY"
        r = svc.http.post(SQL_TASK, json={"query": sql})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["state"] == "FAILED" and body["error"]["errorCode"] == "invalidInput", body
        assert "EXTERN inputSource" in body["error"]["errorMessage"], body
    assert len(svc.http.get(f"{API}/tasks").json()) == before


def test_bad_sql_is_a_400_in_druid_shape(svc: ServiceProcess) -> None:
    r = svc.http.post(
        SQL_TASK, json={"query": "INSERT INTO x SELEC 1 PARTITIONED BY DAY", "context": {"sqlQueryId": "q1"}}
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["taskId"] == "q1" and body["state"] == "FAILED"
    assert body["error"]["error"] == "druidException" and body["error"]["category"] == "INVALID_INPUT"
    r = svc.http.post(SQL_TASK, json={"context": {}})
    assert r.status_code == 400 and r.json()["error"] == "druidException", r.text
    assert svc.http.get(f"{SQL_TASK}/enabled").json() == {"enabled": True}


def test_live_report_then_shutdown_stops_the_workers(svc: ServiceProcess, inputs: Path) -> None:
    fifos = [inputs / "s0.json", inputs / "s1.json"]
    release = threading.Event()

    def writer(path: Path) -> None:
        try:
            with path.open("wb") as out:
                out.write(day_rows("04", 5, 1).encode())
                out.flush()
                release.wait(30)
        except BrokenPipeError:  # on a loaded machine the shutdown may kill the reading worker first
            pass

    for f in fifos:
        os.mkfifo(f)
    threads = [threading.Thread(target=writer, args=(f,), daemon=True) for f in fifos]
    for t in threads:
        t.start()
    sig = [{"name": "time", "type": "string"}, {"name": "added", "type": "long"}]
    src = extern({"type": "local", "files": [str(f) for f in fifos]}, sig)
    controller = submit_sql(
        svc, f'INSERT INTO stopped SELECT TIME_PARSE("time") AS __time, added FROM {src} PARTITIONED BY DAY',
        {"maxNumTasks": 3},
    )  # fmt: skip
    try:

        def live() -> dict | None:
            r = svc.http.get(f"{API}/task/{controller}/reports")
            if r.status_code != 200:
                return None
            status = r.json()["multiStageQuery"]["payload"]["status"]
            return r.json() if status["runningTasks"] == 3 else None

        report = wait_until(live, timeout=20)
        payload = report["multiStageQuery"]["payload"]
        assert payload["status"]["status"] == "RUNNING" and payload["stages"][0]["phase"] == "READING_INPUT"
        workers = [t for t in svc.http.get(f"{API}/tasks", params={"type": "query_worker"}).json()
                   if t["groupId"] == controller]  # fmt: skip
        assert len(workers) == 2
        assert svc.http.post(f"{API}/task/{controller}/shutdown").status_code == 200
        release.set()
        assert svc.wait_for(controller, timeout=30)["status"] == "FAILED"
        for w in workers:
            assert svc.wait_for(w["id"], timeout=30)["status"] == "FAILED"
    finally:
        release.set()
    assert segments(svc, "stopped") == []
    assert not list(svc.data_dir.rglob(f"_staging/{controller}"))


def cli(svc: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "overlord", "sql", *args, "--url", svc.url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=svc.data_dir.parent)


def test_cli_sql_file_wait(svc: ServiceProcess, inputs: Path) -> None:
    data = inputs / "cli.json"
    data.write_text(day_rows("07", 12, 3))
    sig = [{"name": "time", "type": "string"}, {"name": "channel", "type": "string"}, {"name": "added", "type": "long"}]
    src = extern({"type": "local", "files": [str(data)]}, sig)
    insert = inputs / "insert.sql"
    insert.write_text(
        f'INSERT INTO cli_ds\nSELECT TIME_PARSE("time") AS __time, channel, added\nFROM {src}\nPARTITIONED BY DAY\n'
    )
    out = cli(svc, "--file", str(insert), "--wait", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["task"].startswith("query-") and result["status"]["statusCode"] == "SUCCESS", result
    assert result["report"]["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]["processed"] == 12
    assert result["report"]["multiStageQuery"]["payload"]["status"]["status"] == "SUCCESS"
    assert query(svc, "SELECT COUNT(*) AS c, SUM(added) AS s FROM cli_ds") == [{"c": 12, "s": 36}]

    out = cli(svc, "--file", str(insert), "--wait")  # for people: the task id, then a summary
    assert out.returncode == 0 and "submitted query-" in out.stdout and "SUCCESS" in out.stdout, out.stdout

    bad = inputs / "null_time.sql"
    bad.write_text(
        f"INSERT INTO cli_ds SELECT CAST(NULL AS TIMESTAMP) AS __time, channel FROM {src} PARTITIONED BY DAY"
    )
    out = cli(svc, "--file", str(bad), "--wait")
    assert out.returncode == 1 and "InsertTimeNull" in out.stdout + out.stderr, out.stdout + out.stderr
