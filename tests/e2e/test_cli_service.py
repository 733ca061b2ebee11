"""``overlord task ...`` and ``overlord datasource ...`` through the real entry point, against a real service.

Every command runs as ``python -m overlord`` in a subprocess; output and exit codes are checked
(0 ok, 1 task failed, 2 usage, 3 not found, 4 cannot connect). One service for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import ServiceProcess, free_port

from overlord.client_cli import EXIT_NOT_FOUND, EXIT_TASK_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

API = "/druid/indexer/v1"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root: Path = tmp_path_factory.mktemp("cli-e2e")
    service = ServiceProcess(data_dir=root / "var", capacity=2).start()
    yield service
    service.stop()


@pytest.fixture
def ds() -> str:
    return f"cli_{uuid.uuid4().hex[:10]}"


ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def start(*args: str, url: str | None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "overlord", *args, *(["--url", url] if url else [])]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV, cwd=Path.cwd()
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(proc.returncode, out, err)


def cli(*args: str, url: str | None, env: dict[str, str] | None = None) -> Run:
    return finish(start(*args, url=url, env=env))


def spec_file(tmp_path: Path, spec: dict[str, object]) -> str:
    path = tmp_path / f"spec-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_submit_then_inspect_a_task(svc: ServiceProcess, ds: str, tmp_path: Path) -> None:
    spec = spec_file(tmp_path, {"type": "noop", "dataSource": ds, "runTime": 0, "logLines": 3})
    submitted = cli("task", "submit", spec, url=svc.url)
    assert submitted.code == 0, submitted.err
    task_id = submitted.out.strip()
    assert task_id.startswith(f"noop_{ds}_")
    again = cli("task", "submit", spec, "--json", url=svc.url)  # idempotent: attaches to the same task
    assert again.code == 0 and json.loads(again.out) == {"task": task_id, "attached": True}
    svc.wait_for(task_id)

    # independent read-only commands, run side by side to keep the suite quick
    procs = {
        "status": start("task", "status", task_id, url=svc.url),
        "status_json": start("task", "status", task_id, "--json", url=svc.url),
        "payload_json": start("task", "payload", task_id, "--json", url=svc.url),
        "report": start("task", "report", task_id, url=svc.url),
        "logs": start("task", "logs", task_id, url=svc.url),
        "tail": start("task", "logs", task_id, "--offset", "-30", "--json", url=svc.url),
        "ls": start("task", "ls", "--datasource", ds, url=svc.url),
        "ls_json": start("task", "ls", "--datasource", ds, "--state", "complete", "--json", url=svc.url),
    }
    runs = {name: finish(proc) for name, proc in procs.items()}

    payload = json.loads(runs["payload_json"].out)
    assert payload["id"] == task_id and payload["logLines"] == 3
    assert runs["status"].code == 0 and task_id in runs["status"].out and "SUCCESS" in runs["status"].out
    status = json.loads(runs["status_json"].out)
    assert status["id"] == task_id and status["statusCode"] == "SUCCESS" and status["dataSource"] == ds

    assert runs["report"].code == EXIT_NOT_FOUND and "No task reports" in runs["report"].err  # a noop has none

    assert runs["logs"].code == 0 and "log line 3 of 3" in runs["logs"].out
    tail = json.loads(runs["tail"].out)
    assert tail["task"] == task_id and tail["log"] == runs["logs"].out[-30:]

    assert runs["ls"].code == 0 and task_id in runs["ls"].out and "SUCCESS" in runs["ls"].out
    assert [t["id"] for t in json.loads(runs["ls_json"].out)] == [task_id]


def test_submit_wait_success_and_failure_exit_codes(svc: ServiceProcess, ds: str, tmp_path: Path) -> None:
    good = spec_file(tmp_path, {"type": "noop", "dataSource": ds, "runTime": 200})
    bad = spec_file(tmp_path, {"type": "noop", "dataSource": ds, "runTime": 0, "fail": "Max parse exceptions hit"})
    procs = [
        start("task", "submit", good, "--wait", url=svc.url),
        start("task", "submit", bad, "--wait", url=svc.url),
        start("task", "submit", bad, "--wait", "--json", "--attempt", "1", url=svc.url),
    ]
    ok, failed, failed_json = (finish(p) for p in procs)

    assert ok.code == 0, ok.err
    assert "submitted" in ok.out and "SUCCESS" in ok.out

    assert failed.code == EXIT_TASK_FAILED, failed.err
    assert "FAILED" in failed.out and "Max parse exceptions hit" in failed.out
    assert "structural" in failed.out

    assert failed_json.code == EXIT_TASK_FAILED
    body = json.loads(failed_json.out)
    assert body["task"].endswith("_a1") and body["failure"] == "structural"
    assert body["status"]["statusCode"] == "FAILED" and body["status"]["errorMsg"] == "Max parse exceptions hit"
    assert body["report"] is None


def test_logs_follow_ends_when_the_task_ends(svc: ServiceProcess, ds: str) -> None:
    task_id = svc.submit({"type": "noop", "dataSource": ds, "runTime": 1000, "logLines": 2})
    started = time.monotonic()
    run = cli("task", "logs", task_id, "--follow", url=svc.url)
    assert run.code == 0, run.err
    assert "log line 2 of 2" in run.out and f"Task[{task_id}] finished with status[SUCCESS]" in run.out
    assert time.monotonic() - started < 15
    assert svc.http.get(f"{API}/task/{task_id}/status").json()["status"]["statusCode"] == "SUCCESS"


def test_kill_kill_all_and_pending_segments(svc: ServiceProcess, ds: str) -> None:
    first = svc.submit({"type": "noop", "dataSource": ds, "runTime": 30_000, "logLines": 1})
    second = svc.submit({"type": "noop", "dataSource": ds, "runTime": 30_000, "logLines": 2})
    svc.wait_for(first, states=("RUNNING",))
    svc.wait_for(second, states=("RUNNING",))

    killed = cli("task", "kill", first, url=svc.url)
    assert killed.code == 0 and f"shutdown requested for {first}" in killed.out
    assert svc.wait_for(first)["errorMsg"] == "Shutdown request from user"

    all_killed = cli("task", "kill-all", ds, "--json", url=svc.url)
    assert all_killed.code == 0 and json.loads(all_killed.out) == {"dataSource": ds}
    assert svc.wait_for(second)["statusCode"] == "FAILED"

    procs = [
        start("task", "kill-all", ds, url=svc.url),  # nothing active any more
        start("task", "pending-segments-clean", ds, url=svc.url),
    ]
    none_left, cleaned = (finish(p) for p in procs)
    assert none_left.code == EXIT_NOT_FOUND and "No active tasks" in none_left.err
    assert cleaned.code == 0 and f"deleted 0 pending segments of {ds}" in cleaned.out


def test_datasource_commands(svc: ServiceProcess, ds: str) -> None:
    procs = [start("datasource", "ls", "--json", url=svc.url), start("datasource", "segments", ds, url=svc.url)]
    listing, segments = (finish(p) for p in procs)
    assert listing.code == 0, listing.err
    assert ds not in json.loads(listing.out)
    assert segments.code == EXIT_NOT_FOUND  # Druid answers 404 for a data source without segments


def test_not_found_usage_and_unreachable_exit_codes(svc: ServiceProcess, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    closed = f"http://127.0.0.1:{free_port()}"
    procs = {
        "status": start("task", "status", "no-such-task", url=svc.url),
        "logs": start("task", "logs", "no-such-task", url=svc.url),
        "missing_file": start("task", "submit", str(tmp_path / "missing.json"), url=svc.url),
        "broken_file": start("task", "submit", str(broken), url=svc.url),
        "bad_spec": start("task", "submit", spec_file(tmp_path, {"type": "noop", "runTime": -1}), url=svc.url),
        "bad_state": start("task", "ls", "--state", "sleeping", url=svc.url),
        "unreachable": start("task", "ls", url=closed),
        "env_url": start("task", "ls", "--json", url=None, env={**ENV, "OVERLORD_URL": svc.url}),
    }
    runs = {name: finish(proc) for name, proc in procs.items()}

    for name in ("status", "logs"):
        assert runs[name].code == EXIT_NOT_FOUND, (name, runs[name])
    assert "Cannot find any task with id: [no-such-task]" in runs["status"].err
    assert runs["missing_file"].code == EXIT_USAGE and "cannot read" in runs["missing_file"].err
    assert runs["broken_file"].code == EXIT_USAGE and "not valid JSON" in runs["broken_file"].err
    assert runs["bad_spec"].code == EXIT_USAGE and "runTime" in runs["bad_spec"].err
    assert runs["bad_state"].code == EXIT_USAGE and "--state" in runs["bad_state"].err
    unreachable = runs["unreachable"]
    assert unreachable.code == EXIT_UNREACHABLE, unreachable
    assert f"cannot reach the Overlord at {closed}" in unreachable.err and "Traceback" not in unreachable.err
    assert runs["env_url"].code == 0 and isinstance(json.loads(runs["env_url"].out), list)


def test_ingestion_report_and_segments_commands(svc: ServiceProcess, ds: str, tmp_path: Path) -> None:
    rows = '{"ts":"2015-09-12T01:00:00Z","page":"a"}\n{"ts":"2015-09-12T02:00:00Z","page":"b"}'
    spec = {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": ds,
                "timestampSpec": {"column": "ts", "format": "auto"},
                "dimensionsSpec": {"dimensions": ["page"]},
                "granularitySpec": {"segmentGranularity": "day", "intervals": ["2015-09-12/2015-09-13"]},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "inline", "data": rows},
                "inputFormat": {"type": "json"},
            },
        },
    }
    submitted = cli("task", "submit", spec_file(tmp_path, spec), "--wait", url=svc.url)
    assert submitted.code == 0, submitted.err
    assert "SUCCESS" in submitted.out and "COMPLETED" in submitted.out and "processed" in submitted.out
    task_id = submitted.out.split()[1]
    procs = {
        "report": start("task", "report", task_id, url=svc.url),
        "report_json": start("task", "report", task_id, "--json", url=svc.url),
        "ls": start("datasource", "ls", url=svc.url),
        "segments": start("datasource", "segments", ds, url=svc.url),
        "segments_json": start("datasource", "segments", ds, "--json", url=svc.url),
    }
    runs = {name: finish(proc) for name, proc in procs.items()}
    assert all(run.code == 0 for run in runs.values()), {k: v.err for k, v in runs.items() if v.code}
    assert "COMPLETED" in runs["report"].out and "processed" in runs["report"].out
    payload = json.loads(runs["report_json"].out)["ingestionStatsAndErrors"]["payload"]
    assert payload["rowStats"]["buildSegments"]["processed"] == 2
    assert ds in runs["ls"].out.split()
    assert "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z" in runs["segments"].out
    (segment,) = json.loads(runs["segments_json"].out)
    assert segment["dataSource"] == ds and segment["shardSpec"]["partitionNum"] == 0
