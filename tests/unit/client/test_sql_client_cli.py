"""Client.sql / Client.sql_task and ``overlord sql`` against a scripted Druid SQL endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from client_fakes import FAST_RETRY, FAST_WAIT, FakeTime
from typer.testing import CliRunner

from overlord import cli, client_cli
from overlord.client import Client, errors
from overlord.sql.dialect import is_ingestion

runner = CliRunner()
ROWS = [["page", "c"], ["VARCHAR", "BIGINT"], ["A", 2], ["B", None]]


class FakeSql:
    """Answers /druid/v2/sql like Druid and runs one SQL task to SUCCESS after two polls."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        path = request.url.path
        if path == "/druid/v2/sql" and request.method == "POST":
            if "nope" in body["query"]:
                err = {
                    "error": "druidException",
                    "errorCode": "invalidInput",
                    "errorMessage": "Column 'nope' not found",
                }
                return httpx.Response(400, json=err)
            fmt = body["resultFormat"]
            if fmt == "csv":
                return httpx.Response(200, text="page,c\nA,2\nB,\n\n")
            if fmt == "array":
                rows = ROWS if body.get("sqlTypesHeader") else [ROWS[0], *ROWS[2:]]
                return httpx.Response(200, json=rows if body.get("header") else ROWS[2:])
            return httpx.Response(200, json=[{"page": "A", "c": 2}, {"page": "B", "c": None}])
        if path.startswith("/druid/v2/sql/") and request.method == "DELETE":
            return httpx.Response(202) if path.endswith("/running") else httpx.Response(404, json={})
        if path == "/druid/v2/sql/task":
            return httpx.Response(200, json={"taskId": f"query-{body['context']['sqlQueryId']}", "state": "RUNNING"})
        if path.endswith("/status"):
            self.polls += 1
            tid = path.split("/")[-2]
            state = "SUCCESS" if self.polls > 2 else "RUNNING"
            status = {"id": tid, "type": "query_controller", "statusCode": state, "status": state, "duration": 5}
            return httpx.Response(200, json={"task": tid, "status": status})
        return httpx.Response(404, json={"error": "druidException", "errorMessage": "no"})


@pytest.fixture
def fake() -> FakeSql:
    return FakeSql()


def make(fake: FakeSql, ftime: FakeTime) -> Client:
    return Client(
        "http://overlord.test",
        transport=httpx.MockTransport(fake),
        clock=ftime.clock,
        sleep=ftime.sleep,
        rng=lambda: 0.5,
        retry=FAST_RETRY,
        wait_policy=FAST_WAIT,
    )


@pytest.fixture
def client(fake: FakeSql, ftime: FakeTime) -> Client:
    return make(fake, ftime)


@pytest.fixture(autouse=True)
def _wired(monkeypatch: pytest.MonkeyPatch, fake: FakeSql, ftime: FakeTime) -> None:
    monkeypatch.setattr(client_cli, "make_client", lambda url: make(fake, ftime))


def test_client_sql_sends_druids_request_shape(client: Client, fake: FakeSql) -> None:
    rows = client.sql("SELECT page, c FROM t WHERE x = ? AND y = ?", parameters=["a", 3], query_id="q1")
    assert rows == [{"page": "A", "c": 2}, {"page": "B", "c": None}]
    _, path, body = fake.requests[-1]
    assert path == "/druid/v2/sql"
    assert body["context"] == {"sqlQueryId": "q1"} and body["resultFormat"] == "object"
    assert body["parameters"] == [{"type": "VARCHAR", "value": "a"}, {"type": "BIGINT", "value": 3}]
    assert client.sql("SELECT 1", result_format="csv").startswith("page,c")
    with pytest.raises(errors.BadRequest, match="nope"):
        client.sql("SELECT nope FROM t")
    with pytest.raises(ValueError, match="result_format"):
        client.sql("SELECT 1", result_format="xml")
    assert client.cancel_sql("running") is True and client.cancel_sql("gone") is False


def test_client_sql_task_then_wait(client: Client, fake: FakeSql) -> None:
    tid = client.sql_task("INSERT INTO w SELECT * FROM t PARTITIONED BY DAY", context={"maxNumTasks": 2})
    _, path, body = fake.requests[-1]
    assert path == "/druid/v2/sql/task" and body["context"]["maxNumTasks"] == 2
    assert tid == f"query-{body['context']['sqlQueryId']}"
    assert client.wait(tid).status.status_code == "SUCCESS"


@pytest.mark.parametrize(
    ("text", "ingest"),
    [
        ("INSERT INTO w SELECT 1", True),
        ("  -- load it\n/* really */ replace INTO w OVERWRITE ALL SELECT 1", True),
        ("SELECT 'INSERT'", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", False),
    ],
)
def test_ingestion_is_recognised(text: str, ingest: bool) -> None:
    assert is_ingestion(text) is ingest


def test_cli_table_csv_and_json(fake: FakeSql) -> None:
    result = runner.invoke(cli.app, ["sql", "SELECT page, c FROM t"])
    assert result.exit_code == 0, result.output
    assert "page" in result.stdout and "VARCHAR" in result.stdout and "null" in result.stdout
    result = runner.invoke(cli.app, ["sql", "SELECT page, c FROM t", "--format", "csv"])
    assert result.stdout == "page,c\nA,2\nB,\n"
    result = runner.invoke(cli.app, ["sql", "SELECT page, c FROM t", "--format", "json", "-c", "timeout=5000"])
    assert json.loads(result.stdout) == [{"page": "A", "c": 2}, {"page": "B", "c": None}]
    assert fake.requests[-1][2]["context"] == {"timeout": 5000}


def test_cli_errors_exit_with_usage_code() -> None:
    result = runner.invoke(cli.app, ["sql", "SELECT nope FROM t"])
    assert result.exit_code == client_cli.EXIT_USAGE and "nope" in result.stderr
    assert runner.invoke(cli.app, ["sql"]).exit_code == client_cli.EXIT_USAGE
    assert runner.invoke(cli.app, ["sql", "SELECT 1", "--format", "xml"]).exit_code == client_cli.EXIT_USAGE


def test_cli_file_insert_wait_follows_the_task(tmp_path: Path, fake: FakeSql) -> None:
    path = tmp_path / "insert.sql"
    path.write_text("INSERT INTO w SELECT * FROM TABLE(EXTERN('{}', '{}')) PARTITIONED BY DAY\n")
    result = runner.invoke(cli.app, ["sql", "--file", str(path), "--wait"])
    assert result.exit_code == 0, result.output
    assert "submitted" in result.stdout and "SUCCESS" in result.stdout
    assert any(p == "/druid/v2/sql/task" for _, p, _ in fake.requests)
    result = runner.invoke(cli.app, ["sql", "--file", str(path), "--format", "json"])
    assert json.loads(result.stdout)["taskId"].startswith("query-")
