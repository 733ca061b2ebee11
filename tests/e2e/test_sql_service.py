"""End to end: quickstart ingestion, then Druid SQL over the real service (HTTP, client, CLI)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import API, run_task, start_service
from tests.conftest import ServiceProcess

from overlord.client import Client
from overlord.ingest import wikiticker

SQL = "/druid/v2/sql"
ROWS = 2000


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start_service(tmp_path_factory.mktemp("sql"), capacity=2)
    yield service
    service.stop()


def sql(svc: ServiceProcess, query: str, **body: Any) -> Any:
    r = svc.http.post(SQL, json={"query": query, **body})
    assert r.status_code == 200, r.text
    return r.json()


def day_spec(base: str, name: str, day: str, next_day: str) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(wikiticker.quickstart_spec(base, name, data_source="wikiticker"))
    spec["spec"]["dataSchema"]["granularitySpec"]["intervals"] = [f"{day}/{next_day}"]
    return spec


def write_day(path: Path, day: str, added: list[int]) -> None:
    rows = [{"time": f"{day}T{i:02d}:00:00Z", "page": f"p{i}", "added": a} for i, a in enumerate(added)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_quickstart_then_sql_counts_and_overwrite(svc: ServiceProcess) -> None:
    base = svc.data_dir.parent / "quickstart" / "tutorial"
    wikiticker.write_file(base / "wikiticker-2015-09-12-sampled.json.gz", ROWS)
    expected_added = sum(int(str(r["added"])) for r in wikiticker.iter_rows(ROWS))
    spec = wikiticker.quickstart_spec(
        "quickstart/tutorial/", "wikiticker-2015-09-12-sampled.json.gz", data_source="wikiticker"
    )
    status, _ = run_task(svc, spec, timeout=60)
    assert status["status"] == "SUCCESS", status

    assert sql(svc, "SELECT COUNT(*), SUM(added) FROM wikiticker", resultFormat="array") == [[ROWS, expected_added]]
    by_channel = sql(svc, "SELECT channel, COUNT(*) AS n FROM wikiticker GROUP BY 1 ORDER BY 2 DESC")
    assert sum(r["n"] for r in by_channel) == ROWS
    hours = sql(svc, "SELECT TIME_FLOOR(__time, 'PT1H') AS h, COUNT(*) AS n FROM wikiticker GROUP BY 1 ORDER BY 1")
    assert len(hours) == 24 and hours[0]["h"] == "2015-09-12T00:00:00.000Z"

    # A second day, then an overwrite of the first: the first day's old version is not counted.
    write_day(base / "day13.json", "2015-09-13", [5, 6])
    status, _ = run_task(svc, day_spec("quickstart/tutorial/", "day13.json", "2015-09-13", "2015-09-14"))
    assert status["status"] == "SUCCESS", status
    assert sql(svc, "SELECT COUNT(*), SUM(added) FROM wikiticker", resultFormat="array") == [
        [ROWS + 2, expected_added + 11]
    ]
    write_day(base / "day12.json", "2015-09-12", [100, 200, 300])
    status, _ = run_task(svc, day_spec("quickstart/tutorial/", "day12.json", "2015-09-12", "2015-09-13"))
    assert status["status"] == "SUCCESS", status
    assert sql(svc, "SELECT COUNT(*), SUM(added) FROM wikiticker", resultFormat="array") == [[5, 611]]
    q = "SELECT COUNT(*) FROM wikiticker WHERE __time >= TIMESTAMP '2015-09-13 00:00:00'"
    assert sql(svc, q, resultFormat="array") == [[2]]
    segs = sql(
        svc,
        "SELECT COUNT(*) AS n, SUM(num_rows) AS r FROM sys.segments WHERE datasource = 'wikiticker' AND is_active = 1",
    )
    assert segs == [{"n": 2, "r": 5}]


def test_sys_tasks_agrees_with_the_tasks_api(svc: ServiceProcess) -> None:
    listed = {t["id"]: t for t in svc.http.get(f"{API}/tasks").json()}
    rows = sql(svc, "SELECT task_id, status, runner_status, type, datasource, duration, location FROM sys.tasks")
    assert listed and {r["task_id"] for r in rows} == set(listed)
    for r in rows:
        t = listed[r["task_id"]]
        assert (r["status"], r["runner_status"], r["type"], r["datasource"], r["duration"]) == (
            t["statusCode"], t["runnerStatusCode"], t["type"], t["dataSource"], t["duration"]
        )  # fmt: skip


def test_every_result_format_and_errors_over_http(svc: ServiceProcess) -> None:
    assert sql(svc, "SELECT 1337") == [{"EXPR$0": 1337}]
    for fmt in ("object", "array", "objectLines", "arrayLines", "csv"):
        r = svc.http.post(SQL, json={"query": "SELECT 'a' AS x, 2 AS y", "resultFormat": fmt, "header": True})
        assert r.status_code == 200 and r.headers["X-Druid-SQL-Header-Included"] == "yes", (fmt, r.text)
        assert "x" in r.text and "a" in r.text
    r = svc.http.post(SQL, json={"query": "SELEC 1"})
    assert r.status_code == 400 and r.json()["error"] == "druidException" and r.json()["errorCode"] == "invalidInput"


def test_client_and_cli(svc: ServiceProcess) -> None:
    with Client(svc.url) as client:
        assert client.sql("SELECT COUNT(*) AS n FROM wikiticker") == [{"n": 5}]
        assert client.sql("SELECT page FROM wikiticker WHERE added = ?", parameters=[300]) == [{"page": "p2"}]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "overlord",
            "sql",
            "SELECT COUNT(*) AS n FROM wikiticker",
            "--format",
            "json",
            "--url",
            svc.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": 5}]
    out = subprocess.run(
        [sys.executable, "-m", "overlord", "sql", "SELECT nope FROM wikiticker", "--url", svc.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "nope" in out.stderr
