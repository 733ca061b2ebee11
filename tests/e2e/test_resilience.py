"""Crashes, restarts, dead peons, disk quotas, failed log pushes and retention, against a real service."""

from __future__ import annotations

import os
import shutil
import signal
import time

from tests.conftest import wait_exited

API = "/druid/indexer/v1"


def test_peon_killed_while_service_runs_fails_fast_and_frees_slot(service_factory):
    svc = service_factory(capacity=1).start()
    victim = svc.submit({"type": "noop", "runTime": 60000})
    svc.wait_for(victim, states=("RUNNING",))
    follower = svc.submit({"type": "noop", "runTime": 0})
    os.kill(svc.peon_pid(victim), signal.SIGKILL)
    t0 = time.monotonic()
    st = svc.wait_for(victim, timeout=5)
    assert time.monotonic() - t0 < 2
    assert st["statusCode"] == "FAILED"
    assert "killed by signal SIGKILL (9)" in st["errorMsg"]
    assert svc.wait_for(follower)["statusCode"] == "SUCCESS"  # the slot was freed


def test_peon_crash_with_exit_code_is_named(service):
    task_id = service.submit({"type": "noop", "runTime": 60000})
    service.wait_for(task_id, states=("RUNNING",))
    os.kill(service.peon_pid(task_id), signal.SIGSEGV)
    st = service.wait_for(task_id, timeout=5)
    assert st["statusCode"] == "FAILED" and "SIGSEGV" in st["errorMsg"]


def test_kill9_and_restart_loses_nothing(service_factory, tmp_path):
    svc = service_factory(capacity=1)
    svc.start()
    done = svc.submit({"type": "noop", "runTime": 0, "logLines": 3})
    svc.wait_for(done)
    survivor = svc.submit({"type": "noop", "runTime": 2500})  # its peon outlives the service
    svc.wait_for(survivor, states=("RUNNING",))
    survivor_pid = svc.peon_pid(survivor)
    pending = [svc.submit({"type": "noop", "runTime": 0}) for _ in range(3)]
    svc.kill9()

    svc.start()
    assert svc.wait_for(done)["statusCode"] == "SUCCESS"
    assert "log line 3 of 3" in svc.http.get(f"{API}/task/{done}/log").text
    st = svc.http.get(f"{API}/task/{survivor}/status").json()["status"]
    assert st["runnerStatusCode"] == "RUNNING", st  # reattached to the live peon
    assert svc.http.get(f"{API}/workers").json()[0]["runningTasks"] == [survivor]
    assert svc.wait_for(survivor, timeout=20)["statusCode"] == "SUCCESS"
    for task_id in pending:
        assert svc.wait_for(task_id, timeout=20)["statusCode"] == "SUCCESS"
    assert "finished with status[SUCCESS]" in svc.http.get(f"{API}/task/{survivor}/log").text
    wait_exited(survivor_pid)  # the adopted peon does not linger after its task ended


def test_peon_that_dies_while_service_is_down_ends_failed_with_reason(service_factory):
    svc = service_factory(capacity=1)
    svc.start()
    task_id = svc.submit({"type": "noop", "runTime": 60000})
    svc.wait_for(task_id, states=("RUNNING",))
    pid = svc.peon_pid(task_id)
    svc.kill9()
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)  # dead before the restart looks for it, not merely signalled
    svc.start()
    st = svc.wait_for(task_id, timeout=10)
    assert st["statusCode"] == "FAILED"
    assert "died while the Overlord was down" in st["errorMsg"]


def test_clean_stop_on_sigterm(service_factory):
    svc = service_factory(capacity=1)
    svc.start()
    running = svc.submit({"type": "noop", "runTime": 60000})
    svc.wait_for(running, states=("RUNNING",))
    waiting = svc.submit({"type": "noop", "runTime": 0})
    t0 = time.monotonic()
    assert svc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 15
    svc.start()
    st = svc.wait_for(running)
    assert st["statusCode"] == "FAILED" and "Overlord stopped" in st["errorMsg"]
    assert svc.wait_for(waiting)["statusCode"] == "SUCCESS"


def test_second_service_on_same_data_dir_is_refused(service, service_factory):
    other = service_factory(data_dir=service.data_dir)
    try:
        other.start(timeout=10)
    except RuntimeError as exc:
        assert "already using the data directory" in str(exc)
    else:
        raise AssertionError("a second service started on the same data directory")


def test_disk_quota_is_enforced(service_factory):
    svc = service_factory(capacity=1, extra_env={"druid_worker_baseTaskDirSize": "20KiB"}).start()
    task_id = svc.submit({"type": "noop", "runTime": 20000, "logLines": 2000})
    st = svc.wait_for(task_id, timeout=15)
    assert st["statusCode"] == "FAILED" and "disk quota" in st["errorMsg"]
    assert "20480" in st["errorMsg"]


def test_failed_log_push_keeps_result_and_log_then_retries(service):
    logs_dir = service.data_dir / "task-logs"
    shutil.rmtree(logs_dir)
    logs_dir.write_text("not a directory")  # every push now fails
    task_id = service.submit({"type": "noop", "runTime": 0, "logLines": 2})
    st = service.wait_for(task_id)
    assert st["statusCode"] == "SUCCESS"
    r = service.http.get(f"{API}/task/{task_id}/log")
    assert r.status_code == 200 and "log line 2 of 2" in r.text
    logs_dir.unlink()
    logs_dir.mkdir()
    deadline = time.monotonic() + 15
    while not (logs_dir / f"{task_id}.log").exists():
        assert time.monotonic() < deadline, "log push was not retried"
        time.sleep(0.05)
    assert "log line 2 of 2" in service.http.get(f"{API}/task/{task_id}/log").text


def test_log_retention_deletes_old_logs_and_completed_tasks(service_factory):
    env = {
        "druid_indexer_logs_kill_enabled": "true",
        "druid_indexer_logs_kill_durationToRetain": "1500",
        "druid_indexer_logs_kill_initialDelay": "0",
        "druid_indexer_logs_kill_delay": "200",
    }
    svc = service_factory(extra_env=env).start()
    task_id = svc.submit({"type": "noop", "runTime": 0})
    svc.wait_for(task_id)
    assert (svc.data_dir / "task-logs" / f"{task_id}.log").exists()
    deadline = time.monotonic() + 15
    while svc.http.get(f"{API}/task/{task_id}/status").status_code != 404:
        assert time.monotonic() < deadline, "completed task was not removed by retention"
        time.sleep(0.1)
    assert not (svc.data_dir / "task-logs" / f"{task_id}.log").exists()
