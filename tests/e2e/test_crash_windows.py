"""kill -9 at the exact crash windows (failpoints), then a restart: nothing lost, nothing run twice,
start-up succeeds, and no peon or task directory is left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
from tests.conftest import wait_exited

API = "/druid/indexer/v1"


def _journal(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def _wait_dead(svc, timeout: float = 20.0) -> None:
    assert svc.proc is not None
    svc.proc.wait(timeout)
    assert svc.stop() == -9  # closes the old client too


def test_killed_between_fork_and_running_write_runs_the_task_once(service_factory, tmp_path):
    journal = tmp_path / "journal"
    env = {"OVERLORD_PEON_JOURNAL": str(journal), "OVERLORD_FAILPOINTS": "launched-not-recorded"}
    svc = service_factory(extra_env=env).start()
    with httpx.Client(base_url=svc.url, timeout=30) as client, contextlib.suppress(httpx.TransportError):
        client.post(f"{API}/task", json={"type": "noop", "runTime": 0, "id": "once"})  # stored, then launched: dies
    _wait_dead(svc)
    svc.extra_env = {"OVERLORD_PEON_JOURNAL": str(journal)}
    svc.start()
    assert svc.wait_for("once")["statusCode"] == "SUCCESS"
    runs = [line.split()[0] for line in _journal(journal)]
    assert runs == ["once"], runs  # the first peon never passed its gate
    _wait_empty(svc.data_dir / "task")


def test_killed_after_recording_the_launch_before_releasing_it_runs_the_task_once(service_factory, tmp_path):
    journal = tmp_path / "journal"
    env = {"OVERLORD_PEON_JOURNAL": str(journal), "OVERLORD_FAILPOINTS": "recorded-not-released"}
    svc = service_factory(extra_env=env).start()
    with httpx.Client(base_url=svc.url, timeout=30) as client, contextlib.suppress(httpx.TransportError):
        client.post(f"{API}/task", json={"type": "noop", "runTime": 0, "id": "held"})  # RUNNING written, then dies
    _wait_dead(svc)
    svc.extra_env = {"OVERLORD_PEON_JOURNAL": str(journal)}
    svc.start()
    st = svc.wait_for("held")
    assert st["statusCode"] == "SUCCESS", st["errorMsg"]  # launched again: the first peon never passed its gate
    assert [line.split()[0] for line in _journal(journal)] == ["held"]


def test_killed_after_completion_before_cleanup_starts_and_keeps_the_result(service_factory, tmp_path):
    env = {"OVERLORD_FAILPOINTS": "completed-not-cleaned"}
    svc = service_factory(extra_env=env).start()
    task = svc.submit({"type": "noop", "runTime": 0, "logLines": 3})
    _wait_dead(svc)
    svc.extra_env = {}
    svc.start()  # start-up must not trip over the leftover task directory
    st = svc.wait_for(task)
    assert st["statusCode"] == "SUCCESS"
    log = svc.http.get(f"{API}/task/{task}/log")
    assert log.status_code == 200 and "log line 3 of 3" in log.text
    _wait_empty(svc.data_dir / "task")  # the orphan directory is removed


def _leftovers(folder: Path) -> list[Path]:
    """What is left of tasks: every entry but the emptied directories the runner keeps for launches
    (``.free-*``, holding no log content)."""
    free = [p for p in folder.iterdir() if p.name.startswith(".free-")]
    assert all((p / "log").stat().st_size == 0 for p in free if (p / "log").exists())
    return [p for p in folder.iterdir() if p not in free]


def _wait_empty(folder: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _leftovers(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(folder) == []


def test_restart_survives_a_task_whose_directory_and_log_vanished(service_factory):
    svc = service_factory().start()
    task = svc.submit({"type": "noop", "runTime": 60000})
    svc.wait_for(task, states=("RUNNING",))
    pid = svc.peon_pid(task)
    svc.kill9()
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)  # dead before the restart looks for it, not merely signalled
    shutil.rmtree(svc.data_dir / "task" / task)
    svc.start()
    st = svc.wait_for(task)
    assert st["statusCode"] == "FAILED" and "died while the Overlord was down" in st["errorMsg"]
    assert svc.http.get("/status/health").status_code == 200
    again = svc.submit({"type": "noop", "runTime": 0})
    assert svc.wait_for(again)["statusCode"] == "SUCCESS"
    assert svc.http.get(f"{API}/task/{task}/log").status_code in (200, 404)


def test_a_task_that_finished_while_the_overlord_was_down_keeps_its_success(service_factory):
    svc = service_factory(extra_env={"overlord_peon_actionRetryPeriod": "300"}).start()
    task = svc.submit({"type": "noop", "runTime": 300})
    svc.wait_for(task, states=("RUNNING",))
    pid = svc.peon_pid(task)
    svc.kill9()
    wait_exited(pid)  # the peon finishes while the Overlord is down
    svc.start()
    st = svc.wait_for(task)
    assert st["statusCode"] == "SUCCESS", st  # its status file, read before its directory was cleared
    assert "log line 1 of 1" in svc.http.get(f"{API}/task/{task}/log").text
