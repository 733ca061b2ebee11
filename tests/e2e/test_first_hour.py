"""A newcomer's first hour, against a real service: Druid's own quickstart spec and runtime.properties,
the quickstart command, the examples, and what the CLI says along the way.

One service for the module, started (as a newcomer would) in the directory that holds the data.
Every command runs as ``python -m overlord`` in a subprocess with ``--url 127.0.0.1:PORT`` (no scheme).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import ServiceProcess, free_port

from overlord.cli import EXIT_PORT_IN_USE
from overlord.client_cli import EXIT_UNREACHABLE
from overlord.ingest import wikiticker

REPO = Path(__file__).parents[2]
DRUID_SPEC = REPO / "tests" / "data" / "druid" / "wikipedia-index.json"
DRUID_PROPERTIES = REPO / "tests" / "data" / "druid" / "overlord-runtime.properties"
API = "/druid/indexer/v1"
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return " ".join((self.out + self.err).split())


def overlord(*args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "overlord", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("first-hour")


@pytest.fixture(scope="module")
def svc(root: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(data_dir=root / "var", capacity=3).start()  # runs in ``root``
    yield service
    service.stop()


def url(svc: ServiceProcess) -> str:
    return f"127.0.0.1:{svc.port}"


def test_druids_quickstart_spec_as_is(svc: ServiceProcess, root: Path) -> None:
    """Druid's file, verbatim: its relative baseDir is resolved against the service's start directory."""
    wikiticker.write_file(root / "quickstart" / "tutorial" / "wikiticker-2015-09-12-sampled.json.gz", 2_000)
    spec = root / "wikipedia-index.json"
    shutil.copy(DRUID_SPEC, spec)
    done = overlord("task", "submit", str(spec), "--wait", "--url", url(svc), cwd=root)
    assert done.code == 0, done.text
    assert "SUCCESS" in done.out and "processed 2,000" in done.text
    assert "segments 1 published in 1 interval" in done.text
    assert "warning" not in done.out

    again = overlord("task", "submit", str(spec), "--wait", "--url", url(svc), cwd=root)
    assert again.code == 0
    task_id = done.out.split("submitted ")[1].split()[0]
    note = " ".join(again.err.split())
    assert re.search(rf"attached to existing task {task_id} \(SUCCESS, created \S+, ran [\d.]+s\); "
                     r"use --attempt 1 to run it again", note), note  # fmt: skip

    status = overlord("task", "status", task_id, "--url", url(svc), cwd=root)
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in status.out.splitlines() if line.strip())
    assert lines["id"] == task_id and lines["state"] == "SUCCESS" and lines["dataSource"] == "wikipedia"

    finished = overlord("task", "kill", task_id, "--url", url(svc), cwd=root)
    assert finished.code == 0 and f"task {task_id} had already finished (SUCCESS)" in finished.text


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"baseDir": "no/such/dir", "filter": "*.json"}, "baseDir: directory '{root}/no/such/dir' does not exist"),
        ({"baseDir": "quickstart", "filter": "*.csv"}, "filter: '*.csv' matches no file under '{root}/quickstart'"),
    ],
)
def test_local_input_that_names_nothing_fails_the_task(
    svc: ServiceProcess, root: Path, source: dict[str, str], message: str
) -> None:
    (root / "quickstart").mkdir(exist_ok=True)
    spec = json.loads(DRUID_SPEC.read_text())
    spec["spec"]["ioConfig"]["inputSource"] = {"type": "local", **source}
    task_id = svc.submit(spec)
    status = svc.wait_for(task_id, timeout=60)
    assert status["statusCode"] == "FAILED"
    real_root = os.path.realpath(root)
    assert message.format(root=real_root) in status["errorMsg"]
    assert "resolved against the directory the Overlord service was started in" in status["errorMsg"]


def test_wait_summary_flags_a_run_that_ingested_nothing(svc: ServiceProcess, root: Path) -> None:
    spec = json.loads(DRUID_SPEC.read_text())
    spec["spec"]["dataSchema"]["dataSource"] = "nothing_kept"
    rows = [{"time": "not a time", "page": "a"}, {"time": "2020-01-01T00:00:00Z", "page": "b"}]  # bad, outside
    spec["spec"]["ioConfig"]["inputSource"] = {"type": "inline", "data": "\n".join(json.dumps(r) for r in rows)}
    path = root / "nothing.json"
    path.write_text(json.dumps(spec))
    done = overlord("task", "submit", str(path), "--wait", "--url", url(svc), cwd=root)
    assert done.code == 0, done.text
    assert "warning no row was ingested: 1 unparseable, 1 thrown away" in done.text
    as_json = json.loads(overlord("task", "submit", str(path), "--wait", "--json", "--url", url(svc), cwd=root).out)
    assert as_json["warning"].startswith("no row was ingested")


def test_examples_run_in_order(svc: ServiceProcess, root: Path) -> None:
    """The README's examples, from a copy of ``examples/`` in the service's start directory."""
    shutil.copytree(REPO / "examples", root / "examples")

    def submit(name: str) -> Run:
        run = overlord("task", "submit", f"examples/{name}.json", "--wait", "--json", "--url", url(svc), cwd=root)
        assert run.code == 0, run.text
        return run

    parallel = json.loads(submit("index_parallel").out)
    assert parallel["status"]["statusCode"] == "SUCCESS"
    stats = parallel["report"]["ingestionStatsAndErrors"]["payload"]["rowStats"]["totals"]  # Druid's parallel shape
    assert stats["buildSegments"]["processed"] == 200
    assert parallel["segments"]["published"] == 2  # one per sub-task, in one day
    sub_tasks = svc.http.get(f"{API}/tasks", params={"datasource": "wikipedia_examples"}).json()
    assert len([t for t in sub_tasks if t["type"] == "single_phase_sub_task"]) == 2

    csv = json.loads(submit("index_csv").out)
    assert csv["report"]["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]["processed"] == 10
    assert csv["segments"]["published"] == 5  # hourly segments for hours 00..04

    compact = json.loads(submit("compact").out)
    assert compact["segments"]["published"] == 1
    used = svc.http.get("/druid/coordinator/v1/metadata/datasources/wikipedia_examples/segments").json()
    assert len(used) == 1

    kill = json.loads(submit("kill").out)
    assert kill["status"]["statusCode"] == "SUCCESS"
    deep = root / "var" / "deep-storage" / "wikipedia_examples"
    assert len(list(deep.rglob("*.parquet"))) == 1  # the two overshadowed segments are gone


def test_quickstart_command(svc: ServiceProcess, root: Path) -> None:
    run = overlord("quickstart", "qs", "--rows", "1500", "--url", url(svc), cwd=root)
    assert run.code == 0, run.text
    assert f"wrote 1,500 generated sample rows to {os.path.realpath(root)}/qs/quickstart/tutorial/" in run.text
    assert "processed 1,500" in run.text and "segments 1 published in 1 interval" in run.text
    assert "wikipedia: 1 segment" in run.text and "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z" in run.text
    assert "overlord datasource segments wikipedia" in run.text
    spec = json.loads((root / "qs" / "wikipedia-index.json").read_text())
    assert spec["spec"]["tuningConfig"]["maxRowsPerSegment"] == 5_000_000
    with gzip.open(root / "qs" / "quickstart" / "tutorial" / "wikiticker-2015-09-12-sampled.json.gz") as fh:
        assert sum(1 for _ in fh) == 1500


def test_quickstart_outside_the_services_directory_says_how_to_allow_it(svc: ServiceProcess, tmp_path: Path) -> None:
    run = overlord("quickstart", str(tmp_path / "elsewhere"), "--rows", "10", "--url", url(svc), cwd=tmp_path)
    assert run.code == 2, run.text
    assert "outside the allowed directories" in run.text
    assert f"overlord_ingest_allowedDirs={os.path.realpath(tmp_path)}/elsewhere/quickstart/tutorial" in run.text


def test_quickstart_without_a_service_says_how_to_start_one(root: Path) -> None:
    run = overlord("quickstart", "qs2", "--rows", "10", "--url", f"127.0.0.1:{free_port()}", cwd=root)
    assert run.code == EXIT_UNREACHABLE
    assert f"cd {os.path.realpath(root)}/qs2 && overlord start" in run.text
    data_only = overlord("quickstart", "qs3", "--rows", "10", "--data-only", cwd=root)
    assert (
        data_only.code == 0
        and f"overlord task submit {os.path.realpath(root)}/qs3/wikipedia-index.json" in data_only.text
    )


def test_druid_overlord_runtime_properties_start_the_service(tmp_path: Path) -> None:
    service = ServiceProcess(data_dir=tmp_path / "var", extra_args=["--config", str(DRUID_PROPERTIES)])
    try:
        service.start()
        task_id = service.submit({"type": "noop", "runTime": 0})
        assert service.wait_for(task_id)["statusCode"] == "SUCCESS"
        log = service.log_file.read_text()
    finally:
        service.stop()
    warnings = [line for line in log.splitlines() if " WARNING " in line and "ignored" in line]
    props = [re.search(r"properties: ([\w.]+)", line).group(1) for line in warnings]  # type: ignore[union-attr]
    assert len(props) == len(set(props)) and {"druid.zk.service.host", "druid.indexer.runner.type"} <= set(props)
    assert (tmp_path / "var" / "druid" / "segments").is_dir()  # druid.storage.storageDirectory, relative to start


def test_port_in_use_and_started_only_once_listening(svc: ServiceProcess, root: Path) -> None:
    busy = overlord("start", "--port", str(svc.port), "--data-dir", str(root / "other"), cwd=root, timeout=60)
    assert busy.code == EXIT_PORT_IN_USE
    assert f"Port {svc.port} on 127.0.0.1 is already in use" in busy.text and "started" not in busy.text

    port = free_port()
    log_path = root / "listen.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overlord", "start", "--port", str(port), "--data-dir", str(root / "var3")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    try:
        deadline = time.monotonic() + 60
        while "started" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=1):  # refused if not yet listening
            pass
    finally:
        proc.terminate()
        proc.wait(30)
