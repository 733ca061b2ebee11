"""The task and datasource CLI through typer's CliRunner, against the fake service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from client_fakes import FAST_RETRY, FAST_WAIT, FakeOverlord, FakeTime, index_spec
from typer.testing import CliRunner

from overlord import client_cli
from overlord.client import Client

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wired(monkeypatch: pytest.MonkeyPatch, fake: FakeOverlord, ftime: FakeTime) -> None:
    urls: list[str] = []

    def factory(url: str) -> Client:
        urls.append(url)
        return Client(
            url,
            transport=fake.transport,
            clock=ftime.clock,
            sleep=ftime.sleep,
            rng=lambda: 0.5,
            retry=FAST_RETRY,
            wait_policy=FAST_WAIT,
        )

    monkeypatch.setattr(client_cli, "make_client", factory)
    fake.urls = urls  # type: ignore[attr-defined]


def task(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(client_cli.task_app, list(args), env=env)


def ds(*args: str) -> Any:
    return runner.invoke(client_cli.datasource_app, list(args))


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(index_spec()))
    return path


def test_submit_prints_the_id(spec_file: Path, fake: FakeOverlord) -> None:
    result = task("submit", str(spec_file))
    assert result.exit_code == 0, result.output
    (tid,) = fake.tasks
    assert result.stdout.strip() == tid
    again = task("submit", str(spec_file), "--json")
    assert json.loads(again.stdout) == {"task": tid, "attached": True} and len(fake.tasks) == 1


def test_submit_wait_shows_progress_and_summary(spec_file: Path, fake: FakeOverlord) -> None:
    result = task("submit", str(spec_file), "--wait")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "WAITING" in out and "RUNNING" in out
    assert "SUCCESS" in out and "COMPLETED" in out and "processed" in out


def test_submit_wait_json_and_failure_exit_code(spec_file: Path, fake: FakeOverlord) -> None:
    fake.default_outcome = "FAILED"
    fake.default_error = "Max parse exceptions[0] exceeded"
    result = task("submit", str(spec_file), "--wait", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"]["statusCode"] == "FAILED" and body["failure"] == "structural"
    assert body["report"]["ingestionStatsAndErrors"]["payload"]["errorMsg"].startswith("Max parse")
    human = task("submit", str(spec_file), "--wait", "--attempt", "1")
    assert human.exit_code == 1 and "structural (parse_exceptions)" in human.stdout


def test_submit_bad_input_exits_2(tmp_path: Path, fake: FakeOverlord) -> None:
    assert task("submit", str(tmp_path / "missing.json")).exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert task("submit", str(bad)).exit_code == 2
    invalid = index_spec()
    invalid["spec"]["dataSchema"]["granularitySpec"]["intervals"] = ["2020-02-01/2020-01-01"]
    bad.write_text(json.dumps(invalid))
    result = task("submit", str(bad))
    assert result.exit_code == 2 and "granularitySpec.intervals[0]" in result.stderr
    assert fake.requests == []


def test_submit_wait_timeout_exits_6(spec_file: Path, fake: FakeOverlord) -> None:
    fake.default_steps = ["RUNNING"] * 100
    assert task("submit", str(spec_file), "--wait", "--timeout", "2").exit_code == 6


def test_ls_table_and_json(fake: FakeOverlord) -> None:
    fake.add("alpha", {"type": "index_parallel", "dataSource": "wiki"}, steps=[])
    fake.add("beta", {"type": "kill", "dataSource": "other"})
    table = task("ls")
    assert table.exit_code == 0 and "alpha" in table.stdout and "beta" in table.stdout
    rows = json.loads(task("ls", "--json", "--state", "complete").stdout)
    assert [r["id"] for r in rows] == ["alpha"]
    rows = json.loads(task("ls", "--json", "--datasource", "other", "--type", "kill", "--max", "3").stdout)
    assert [r["id"] for r in rows] == ["beta"]
    assert task("ls", "--state", "bogus").exit_code == 2


def test_status_payload_report(fake: FakeOverlord) -> None:
    fake.add("t", {"type": "noop", "dataSource": "wiki"})
    assert json.loads(task("status", "t", "--json").stdout)["runnerStatusCode"] == "WAITING"
    assert "t" in task("status", "t").stdout
    assert json.loads(task("payload", "t").stdout) == {"type": "noop", "dataSource": "wiki"}
    rep = task("report", "t", "--json")
    assert json.loads(rep.stdout)["ingestionStatsAndErrors"]["payload"]["ingestionState"] == "BUILD_SEGMENTS"
    assert "buildSegments" in task("report", "t").stdout


def test_not_found_exits_3() -> None:
    result = task("status", "ghost")
    assert result.exit_code == 3 and "ghost" in result.stderr


def test_cannot_connect_exits_4(monkeypatch: pytest.MonkeyPatch, ftime: FakeTime) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    monkeypatch.setattr(
        client_cli,
        "make_client",
        lambda url: Client(url, transport=httpx.MockTransport(refuse), sleep=ftime.sleep, retry=FAST_RETRY),
    )
    result = task("status", "t", "--url", "http://nowhere:1")
    assert result.exit_code == 4 and "http://nowhere:1" in result.stderr


def test_service_error_exits_5(fake: FakeOverlord) -> None:
    fake.add("t")
    fake.fail("GET", "/t/status", status=500, times=10)
    assert task("status", "t").exit_code == 5


def test_url_option_and_env(fake: FakeOverlord) -> None:
    fake.add("t")
    task("status", "t")
    task("status", "t", env={"OVERLORD_URL": "http://from-env:8090"})
    task("status", "t", "--url", "http://flag:1")
    assert fake.urls == ["http://127.0.0.1:8090", "http://from-env:8090", "http://flag:1"]  # type: ignore[attr-defined]


def test_logs_plain_offset_follow_and_json(fake: FakeOverlord) -> None:
    fake.add("t", steps=["RUNNING"], log=b"hello\nworld\n")
    assert task("logs", "t").stdout == "hello\nworld\n"
    assert task("logs", "t", "--offset", "6").stdout == "world\n"
    assert task("logs", "t", "--offset", "-6").stdout == "world\n"
    assert task("logs", "t", "--follow").stdout == "hello\nworld\n"
    assert json.loads(task("logs", "t", "--json").stdout) == {"task": "t", "log": "hello\nworld\n"}
    fake.add("quiet")
    assert task("logs", "quiet").exit_code == 3


def test_kill_kill_all_and_pending_segments(fake: FakeOverlord) -> None:
    fake.add("t", {"type": "noop", "dataSource": "wiki"})
    assert "shutdown requested for t" in task("kill", "t").stdout
    fake.add("u", {"type": "noop", "dataSource": "wiki"})
    assert json.loads(task("kill-all", "wiki", "--json").stdout) == {"dataSource": "wiki"}
    assert task("kill-all", "wiki").exit_code == 3
    fake.pending_segments["wiki"] = 2
    assert json.loads(task("pending-segments-clean", "wiki", "--json").stdout) == {"numDeleted": 2}
    assert "deleted 0 pending segments" in task("pending-segments-clean", "wiki").stdout


def test_datasource_ls_and_segments(fake: FakeOverlord) -> None:
    fake.segments["wiki"] = [
        {
            "dataSource": "wiki",
            "interval": "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z",
            "version": "v1",
            "loadSpec": {"type": "local"},
            "dimensions": "page",
            "metrics": "count",
            "shardSpec": {"type": "numbered", "partitionNum": 0},
            "binaryVersion": 9,
            "size": 2048,
            "identifier": "wiki_x",
        }
    ]
    assert ds("ls").stdout.split() == ["wiki"]
    assert json.loads(ds("ls", "--json").stdout) == ["wiki"]
    table = ds("segments", "wiki")
    assert table.exit_code == 0 and "2,048" in table.stdout and "v1" in table.stdout
    assert json.loads(ds("segments", "wiki", "--json").stdout)[0]["identifier"] == "wiki_x"
    assert ds("segments", "nope").exit_code == 3


def test_no_args_shows_help() -> None:
    result = task()
    assert "submit" in result.output and "kill-all" in result.output


def test_resubmit_says_it_attached_and_how_to_rerun(spec_file: Path, fake: FakeOverlord) -> None:
    first = task("submit", str(spec_file), "--wait")
    assert first.exit_code == 0, first.output
    (tid,) = fake.tasks
    again = task("submit", str(spec_file))
    assert again.exit_code == 0
    assert again.stdout.strip() == tid  # stdout stays the id, for scripts
    note = again.stderr.replace("\n", " ")
    assert f"attached to existing task {tid} (SUCCESS, created " in note
    assert "use --attempt 1 to run it again" in note
    rerun = task("submit", str(spec_file), "--attempt", "1")
    assert rerun.exit_code == 0 and rerun.stderr == "" and len(fake.tasks) == 2
    # both ids taken: the next free attempt is suggested
    third = task("submit", str(spec_file))
    assert "use --attempt 2 to run it again" in third.stderr.replace("\n", " ")


def test_resubmit_with_wait_flags_the_old_result(spec_file: Path, fake: FakeOverlord) -> None:
    task("submit", str(spec_file), "--wait")
    again = task("submit", str(spec_file), "--wait")
    assert again.exit_code == 0
    assert "attached to existing task" in again.stderr and "SUCCESS" in again.stdout
