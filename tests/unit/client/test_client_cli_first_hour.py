"""What a newcomer meets first in the CLI: --version, URLs without a scheme, status lines, 80
columns, help that shows flags as flags, and a kill of a finished task."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from client_fakes import FAST_RETRY, FakeOverlord
from typer.testing import CliRunner

from overlord import cli, client_cli
from overlord.client import Client

runner = CliRunner()
NARROW = {"COLUMNS": "80", "NO_COLOR": "1"}
LONG_ID = "index_parallel_wikipedia_quickstart_0123456789abcdef_a12"


@pytest.fixture(autouse=True)
def _wired(monkeypatch: pytest.MonkeyPatch, fake: FakeOverlord) -> None:
    monkeypatch.setattr(client_cli, "make_client", lambda url: Client(url, transport=fake.transport, retry=FAST_RETRY))


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(cli.app, list(args), env=env or NARROW)


def test_version_flag() -> None:
    from overlord import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_url_without_scheme_means_http(fake: FakeOverlord) -> None:
    assert Client("localhost:8090").url == "http://localhost:8090"
    assert Client("https://o.example:8443/").url == "https://o.example:8443"
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return fake.handle(request)

    fake.add("t", {"type": "noop"})
    with Client("127.0.0.1:8090", transport=httpx.MockTransport(handler)) as client:
        assert client.status("t").id == "t"
    assert seen[0].startswith("http://127.0.0.1:8090/druid/indexer/v1/task/t/status")


def test_single_status_is_key_value_lines(fake: FakeOverlord) -> None:
    fake.add(LONG_ID, {"type": "index_parallel", "dataSource": "wikipedia"}, steps=[], outcome="FAILED")
    fake.tasks[LONG_ID].error_msg = "Task[x] failed: [bracketed] text stays as written"
    result = run("task", "status", LONG_ID)
    assert result.exit_code == 0, result.output
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines() if line.strip())
    assert lines["id"] == LONG_ID and lines["state"] == "FAILED" and lines["type"] == "index_parallel"
    assert lines["dataSource"] == "wikipedia" and lines["duration"] == "1.2s"
    assert lines["errorMsg"] == "Task[x] failed: [bracketed] text stays as written"


@pytest.mark.parametrize(
    ("prefix", "columns"),
    [
        ("index_parallel_wikipedia_odofhkle_2026-11-23T21:07:28.22", ["id", "state"]),  # Druid's generated ids
        ("index_parallel_wikipedia_0123456789abcde", ["id", "state", "dataSource", "duration"]),  # the client's
    ],
)
def test_task_table_fits_80_columns(fake: FakeOverlord, prefix: str, columns: list[str]) -> None:
    for n in range(3):
        tid = f"{prefix}{n}"
        fake.add(tid, {"type": "index_parallel", "dataSource": "wikipedia"}, steps=[], outcome="FAILED")
        fake.tasks[tid].error_msg = "a very long error message " * 10
    result = run("task", "ls")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert lines[0].split()[: len(columns)] == columns
    body = [line for line in lines if line.startswith(prefix)]
    assert len(body) == 3  # one line per task
    for n, line in enumerate(body):
        assert line.split()[:2] == [f"{prefix}{n}", "FAILED"]  # id and state whole


def test_segments_table_fits_80_columns(fake: FakeOverlord) -> None:
    fake.segments["wikipedia"] = [
        {
            "dataSource": "wikipedia",
            "interval": f"2015-09-{d}T00:00:00.000Z/2015-09-{d + 1}T00:00:00.000Z",
            "version": "2026-12-01T17:11:07.389Z",
            "loadSpec": {"type": "local"},
            "dimensions": ",".join(f"dimension{i}" for i in range(20)),
            "metrics": "count,added,deleted",
            "shardSpec": {"type": "numbered", "partitionNum": 0},
            "size": 123456,
        }
        for d in (12, 13)
    ]
    result = runner.invoke(cli.app, ["datasource", "segments", "wikipedia"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert "2015-09-12/2015-09-13" in result.stdout and "123,456" in result.stdout
    assert "2026-12-01T17:11:07.389Z" in result.stdout


def test_help_shows_flags_as_flags() -> None:
    result = run("task", "submit", "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert "--wait" in text and "--no-validate" in text and "--attempt" in text
    assert "<bool>" not in text and "BOOLEAN" not in text  # a flag takes no value
    wait_line = next(line for line in text.splitlines() if "--wait" in line)
    assert "Wait for the task" in wait_line
    start = run("start", "--help").stdout
    assert "[key=value]" in start  # brackets in help are text, not markup


def test_kill_of_a_finished_task_says_so(fake: FakeOverlord) -> None:
    fake.add("done", {"type": "noop"}, steps=[])
    result = run("task", "kill", "done")
    assert result.exit_code == 0
    assert "task done had already finished (SUCCESS); nothing to shut down" in " ".join(result.stdout.split())
    assert fake.count("POST", "/shutdown") == 0
    as_json = json.loads(run("task", "kill", "done", "--json").stdout)
    assert as_json == {"task": "done", "alreadyFinished": True, "statusCode": "SUCCESS"}
    fake.add("live", {"type": "noop"}, steps=["RUNNING", "RUNNING"])
    assert "shutdown requested for live" in run("task", "kill", "live").stdout
