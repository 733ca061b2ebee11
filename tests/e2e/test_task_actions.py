"""Task locks with real peons and a real kill -9 of the service.

The action protocol itself (tokens, locks, allocation, publishing) is tested in process in
tests/api/test_task_actions_api.py; ingestion e2e tests exercise it from real peons.
"""

from __future__ import annotations

import os
import signal

API = "/druid/indexer/v1"
DAY = "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"
OTHER_DAY = "2024-02-01T00:00:00.000Z/2024-02-02T00:00:00.000Z"


def holder(svc, interval: str, ds: str = "wiki") -> str:
    """A real peon holding a lock on ``interval`` (a noop locks its declared interval while it runs)."""
    task_id = svc.submit({"type": "noop", "runTime": 60000, "dataSource": ds, "interval": interval})
    svc.wait_for(task_id, states=("RUNNING",))
    return task_id


def runner_state(svc, task_id: str) -> str:
    return str(svc.http.get(f"{API}/task/{task_id}/status").json()["status"]["runnerStatusCode"])


def test_locks_survive_kill9_for_live_tasks_and_are_released_for_dead_ones(service_factory):
    svc = service_factory(capacity=4)
    svc.start()
    alive = holder(svc, DAY)
    dead = holder(svc, OTHER_DAY)
    pid = svc.peon_pid(dead)
    svc.kill9()
    os.kill(pid, signal.SIGKILL)
    svc.start()
    assert svc.wait_for(dead)["statusCode"] == "FAILED"
    blocked = svc.submit({"type": "noop", "runTime": 0, "dataSource": "wiki", "interval": DAY})
    freed = holder(svc, OTHER_DAY)  # the dead task's lock was released at the restart
    assert runner_state(svc, blocked) == "WAITING"  # the live task kept its lock across the restart
    assert runner_state(svc, alive) == "RUNNING"
    svc.http.post(f"{API}/task/{alive}/shutdown")
    assert svc.wait_for(blocked, timeout=20)["statusCode"] == "SUCCESS"
    svc.http.post(f"{API}/task/{freed}/shutdown")


def test_task_lock_timeout_larger_than_http_idle_is_refused(shared_service):
    r = shared_service.http.post(f"{API}/task", json={"type": "noop", "context": {"taskLockTimeout": 10**9}})
    assert r.status_code == 400 and "druid.server.http.maxIdleTime" in r.json()["errorMessage"]


def test_worker_chat_endpoints(shared_service):
    a = holder(shared_service, DAY)
    r = shared_service.http.get(f"/druid/worker/v1/chat/{a}/rowStats")
    assert r.status_code == 404  # a noop task keeps no live report
    assert shared_service.http.get("/druid/worker/v1/chat/nope/liveReports").status_code == 404


def test_compaction_config_api(shared_service):
    base = "/druid/coordinator/v1/config/compaction"
    assert shared_service.http.get(base).json()["compactionConfigs"] == []
    r = shared_service.http.post(
        base, json={"dataSource": "wiki", "skipOffsetFromLatest": "PT1H", "maxRowsPerSegment": 5}
    )
    assert r.status_code == 200
    got = shared_service.http.get(f"{base}/wiki").json()
    assert got["dataSource"] == "wiki" and got["maxRowsPerSegment"] == 5 and got["skipOffsetFromLatest"] == "PT1H"
    assert [c["dataSource"] for c in shared_service.http.get(base).json()["compactionConfigs"]] == ["wiki"]
    bad = shared_service.http.post(base, json={"dataSource": "wiki", "maxRowsPerSegment": -1})
    assert bad.status_code == 400 and "maxRowsPerSegment" in bad.json()["errorMessage"]
    assert shared_service.http.delete(f"{base}/wiki").status_code == 200
    assert shared_service.http.get(f"{base}/wiki").status_code == 404
    assert shared_service.http.delete(f"{base}/wiki").status_code == 404
