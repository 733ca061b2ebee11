"""POST /druid/v2/sql/task in-process: what is stored, Druid's ids and answers, and every refusal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.inprocess import API, InProcess, inprocess_service

pytestmark = pytest.mark.anyio
SQL_TASK = "/druid/v2/sql/task"
SIG = [{"name": "ts", "type": "string"}, {"name": "page", "type": "string"}, {"name": "added", "type": "long"}]


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with inprocess_service(tmp_path) as running:
        yield running


def lit(v: Any) -> str:
    return "'" + json.dumps(v).replace("'", "''") + "'"


def extern(source: dict[str, Any] | None = None) -> str:
    src = source or {"type": "inline", "data": '{"ts": "2024-01-01T00:00:00Z", "page": "a", "added": 1}'}
    return f"TABLE(EXTERN({lit(src)}, {lit({'type': 'json'})}, {lit(SIG)}))"


INSERT = f"INSERT INTO wiki SELECT TIME_PARSE(ts) AS __time, page, added FROM {extern()} PARTITIONED BY DAY"


def replace_day(d: str) -> str:
    return (
        f"REPLACE INTO wiki OVERWRITE WHERE __time >= TIMESTAMP '2024-01-{d}' "
        f"AND __time < TIMESTAMP '2024-01-{int(d) + 1:02d}' "
        f"SELECT TIME_PARSE(ts) AS __time, page FROM {extern()} PARTITIONED BY DAY"
    )


async def post(svc: InProcess, body: Any, **kwargs: Any) -> httpx.Response:
    return await svc.http.post(SQL_TASK, json=body, **kwargs)


async def test_enabled(svc: InProcess) -> None:
    r = await svc.http.get(f"{SQL_TASK}/enabled")
    assert r.status_code == 200 and r.json() == {"enabled": True}


async def test_insert_is_stored_as_a_query_controller_with_druids_ids(svc: InProcess) -> None:
    r = await post(svc, {"query": INSERT, "context": {"sqlQueryId": "my-query", "maxNumTasks": 3}})
    assert r.status_code == 202, r.text
    assert r.json() == {"taskId": "query-my-query", "state": "RUNNING"}
    status = await svc.status("query-my-query")
    assert status["type"] == "query_controller" and status["groupId"] == "query-my-query"
    assert status["dataSource"] == "wiki" and status["statusCode"] == "RUNNING"
    task = (await svc.http.get(f"{API}/task/query-my-query")).json()["payload"]
    assert task["sqlQuery"] == INSERT and task["context"]["maxNumTasks"] == 3
    assert task["spec"]["destination"] == {
        "type": "dataSource",
        "dataSource": "wiki",
        "segmentGranularity": "DAY",
        "replaceTimeChunks": None,
    }
    assert task["spec"]["tuningConfig"]["maxNumWorkers"] == 2
    listed = (await svc.http.get(f"{API}/tasks", params={"type": "query_controller"})).json()
    assert [t["id"] for t in listed] == ["query-my-query"]


async def test_without_sql_query_id_the_id_is_query_uuid(svc: InProcess) -> None:
    r = await post(svc, {"query": INSERT, "resultFormat": "array", "header": True, "ignoredByDruid": 1})
    assert r.status_code == 202, r.text
    task_id = r.json()["taskId"]
    assert task_id.startswith("query-") and len(task_id) == len("query-") + 36


async def test_parameters_are_bound_into_the_stored_statement(svc: InProcess) -> None:
    sql = f"INSERT INTO wiki SELECT TIME_PARSE(ts) AS __time, ? AS tag FROM {extern()} PARTITIONED BY DAY"
    r = await post(svc, {"query": sql, "parameters": [{"type": "VARCHAR", "value": "x'y"}]})
    assert r.status_code == 202, r.text
    task = (await svc.http.get(f"{API}/task/{r.json()['taskId']}")).json()["payload"]
    assert "'x''y' AS tag" in task["sqlQuery"]


async def test_replace_locks_the_replaced_day_before_it_runs(svc: InProcess) -> None:
    first = (await post(svc, {"query": replace_day("01")})).json()["taskId"]
    same = (await post(svc, {"query": replace_day("01")})).json()["taskId"]
    other = (await post(svc, {"query": replace_day("02")})).json()["taskId"]
    assert (await svc.status(first))["runnerStatusCode"] == "RUNNING"
    assert (await svc.status(same))["runnerStatusCode"] == "WAITING"
    assert (await svc.status(other))["runnerStatusCode"] == "RUNNING"
    task = (await svc.http.get(f"{API}/task/{first}")).json()["payload"]
    assert task["spec"]["destination"]["replaceTimeChunks"] == ["2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"]


@pytest.mark.parametrize(
    ("query", "context", "needle"),
    [
        ("SELEC 1", {}, "expected INSERT or REPLACE"),
        ("SELECT 1", {}, "send SELECT queries to /druid/v2/sql"),
        (INSERT.replace("PARTITIONED BY DAY", ""), {}, "requires a PARTITIONED BY"),
        (INSERT.replace("TIME_PARSE(ts)", "DS_HLL(page)"), {}, "Function [DS_HLL] is not supported"),
        (INSERT, {"maxNumTasks": 1}, "context.maxNumTasks"),
        (INSERT, {"maxParseExceptions": "many"}, "context.maxParseExceptions"),
        (INSERT.replace("INTO wiki", 'INTO "../etc"'), {}, "dataSource"),
    ],
)
async def test_statements_that_cannot_run_are_400_with_a_failed_sql_task_status(
    svc: InProcess, query: str, context: dict[str, Any], needle: str
) -> None:
    r = await post(svc, {"query": query, "context": {"sqlQueryId": "q1", **context}})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["taskId"] == "q1" and body["state"] == "FAILED", body
    error = body["error"]
    assert error["error"] == "druidException" and error["category"] == "INVALID_INPUT", error
    assert needle in error["errorMessage"], error
    assert (await svc.http.get(f"{API}/tasks")).json() == []


async def test_extern_outside_allowed_dirs_is_refused(svc: InProcess, tmp_path: Path) -> None:
    for source in (
        {"type": "local", "files": ["/etc/passwd"]},
        {"type": "local", "baseDir": str(tmp_path / "var"), "filter": "*"},
    ):
        sql = f"INSERT INTO wiki SELECT * FROM {extern(source)} PARTITIONED BY DAY"
        r = await post(svc, {"query": sql})
        assert r.status_code == 400, r.text
        assert "EXTERN inputSource" in r.json()["error"]["errorMessage"], r.text
    assert (await svc.http.get(f"{API}/tasks")).json() == []


async def test_requests_that_are_not_sql_requests_are_plain_druid_errors(svc: InProcess) -> None:
    for body, status in (({}, 400), ({"query": 5}, 400), ({"query": INSERT, "context": []}, 400), ([INSERT], 400)):
        r = await post(svc, body)
        assert r.status_code == status and r.json()["error"] == "druidException", r.text
    r = await svc.http.post(SQL_TASK, content=INSERT, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    r = await svc.http.post(SQL_TASK, content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "Malformed JSON" in r.json()["errorMessage"], r.text


async def test_a_query_worker_posted_directly_is_checked_like_a_sub_task(svc: InProcess) -> None:
    worker = {
        "type": "query_worker",
        "id": "query-x-worker0_0",
        "groupId": "query-x",
        "controllerTaskId": "query-x",
        "workerNumber": 0,
        "dataSource": "wiki",
        "sqlQuery": INSERT,
        "inputSplits": [{"path": "/etc/passwd"}],
    }
    r = await svc.http.post(f"{API}/task", json=worker)
    assert r.status_code == 400 and "inputSplits[0].path" in r.json()["errorMessage"], r.text
    r = await svc.http.post(f"{API}/task", json={**worker, "inputSplits": [{"data": "{}"}], "dataSource": "other"})
    assert r.status_code == 400 and "dataSource" in r.json()["errorMessage"], r.text


async def test_airflow_druid_hook_sequence(svc: InProcess) -> None:
    """DruidHook in SQL mode: a JSON string body, taskId, status polling, and its shutdown on timeout."""
    body = json.dumps({"query": INSERT, "context": {"maxNumTasks": 2}})
    r = await svc.http.post(SQL_TASK, content=body, headers={"Content-Type": "application/json"})
    assert 200 <= r.status_code < 300, r.text
    task_id = r.json()["taskId"]
    r = await svc.http.get(f"{API}/task/{task_id}/status")
    assert r.json()["status"]["status"] == "RUNNING"
    r = await svc.http.post(f"{SQL_TASK}/{task_id}/shutdown")
    assert r.status_code == 200 and r.json() == {"task": task_id}, r.text
    assert task_id in svc.runner.shutdowns
    r = await svc.http.post(f"{SQL_TASK}/no-such-task/shutdown")
    assert r.status_code == 404 and r.json()["error"] == "druidException", r.text
    holder = await svc.holder()
    r = await svc.http.post(f"{SQL_TASK}/{holder}/shutdown")
    assert r.status_code == 404, r.text
