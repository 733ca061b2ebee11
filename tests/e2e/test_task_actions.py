"""Task actions over HTTP: locks, priorities, preemption, groups, allocation, publishing, restarts.

Long-running noop tasks stand in for real tasks: an action only needs an active task to act for.
"""

from __future__ import annotations

import os
import signal

API = "/druid/indexer/v1"
DAY = "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"


def act(svc, task_id: str, action: dict, status: int = 200):
    r = svc.http.post(f"{API}/action", json={"task": task_id, "action": action})
    assert r.status_code == status, r.text
    return r.json().get("result") if status == 200 else r.json()


def holder(svc, ds: str = "wiki", **extra) -> str:
    task_id = svc.submit({"type": "noop", "runTime": 60000, "dataSource": ds, **extra})
    svc.wait_for(task_id, states=("RUNNING",))
    return task_id


def segment(svc, ds: str, interval: str, version: str, partition: int, partitions: int = 1) -> dict:
    """A segment whose load spec points inside the service's deep storage (anything else is refused)."""
    deep = svc.data_dir.resolve() / "deep-storage"
    return {
        "dataSource": ds,
        "interval": interval,
        "version": version,
        "loadSpec": {"type": "local", "path": f"{deep}/{ds}/{version}/{partition}/index.parquet"},
        "dimensions": "page",
        "metrics": "count",
        "shardSpec": {"type": "numbered", "partitionNum": partition, "partitions": partitions},
        "binaryVersion": 9,
        "size": 10,
    }


def test_lock_acquire_list_release_and_conflict(service_factory):
    svc = service_factory(capacity=3).start()
    a, b = holder(svc), holder(svc)
    lock = act(svc, a, {"type": "lockAcquire", "interval": DAY})
    assert lock["dataSource"] == "wiki" and lock["interval"] == DAY and lock["revoked"] is False
    assert lock["groupId"] == a and lock["type"] == "EXCLUSIVE" and lock["priority"] == 0
    assert act(svc, a, {"type": "lockList"}) == [lock]
    assert act(svc, b, {"type": "lockTryAcquire", "interval": DAY}) is None
    err = act(svc, b, {"type": "lockAcquire", "interval": DAY, "timeoutMs": 300}, status=409)
    assert "taskLockTimeout" in err["errorMessage"]
    act(svc, a, {"type": "lockRelease", "interval": DAY})
    assert act(svc, a, {"type": "lockList"}) == []
    got = act(svc, b, {"type": "lockTryAcquire", "interval": DAY})
    assert got["version"] > lock["version"]  # a new time-chunk lock gets a higher version


def test_higher_priority_preempts_and_victim_fails_naming_it(service_factory):
    svc = service_factory(capacity=3).start()
    low = holder(svc, context={"priority": 10})
    act(svc, low, {"type": "lockAcquire", "interval": DAY})
    high = holder(svc, context={"priority": 90})
    assert act(svc, high, {"type": "lockTryAcquire", "interval": DAY}) is not None
    st = svc.wait_for(low, timeout=10)
    assert st["statusCode"] == "FAILED"
    assert high in st["errorMsg"] and "revoked" in st["errorMsg"]
    lower_later = holder(svc, context={"priority": 50})
    assert act(svc, lower_later, {"type": "lockTryAcquire", "interval": DAY}) is None  # lower waits


def test_group_members_share_locks(service_factory):
    svc = service_factory(capacity=3).start()
    parent = holder(svc)
    act(svc, parent, {"type": "lockAcquire", "interval": DAY})
    child = holder(svc, groupId=parent)
    lock = act(svc, child, {"type": "lockTryAcquire", "interval": DAY})
    assert lock is not None and lock["groupId"] == parent
    stranger = holder(svc)
    assert act(svc, stranger, {"type": "lockTryAcquire", "interval": DAY}) is None


def test_allocate_publish_overshadow_and_kill_metadata(service):
    a = holder(service)
    alloc = {
        "type": "segmentAllocate",
        "dataSource": "wiki",
        "timestamp": "2024-01-01T05:00:00Z",
        "preferredSegmentGranularity": "DAY",
        "sequenceName": "seq-a",
        "previousSegmentId": None,
    }
    first = act(service, a, alloc)
    assert first["interval"] == DAY and first["shardSpec"]["partitionNum"] == 0
    assert act(service, a, alloc) == first  # same sequence and previous id: the same pending segment
    second = act(service, a, {**alloc, "sequenceName": "seq-b"})
    assert second["shardSpec"]["partitionNum"] == 1 and second["version"] == first["version"]
    v1 = first["version"]
    pair = [segment(service, "wiki", DAY, v1, 0, 2), segment(service, "wiki", DAY, v1, 1, 2)]
    out = act(service, a, {"type": "segmentTransactionalInsert", "segments": pair})
    assert out["success"] is True
    listed = service.http.get("/druid/coordinator/v1/metadata/datasources/wiki/segments").json()
    assert len(listed) == 2
    assert service.http.get("/druid/coordinator/v1/metadata/datasources").json() == ["wiki"]
    full = service.http.get("/druid/coordinator/v1/metadata/datasources/wiki/segments?full").json()
    assert {s["version"] for s in full} == {v1}
    assert service.http.delete(f"{API}/pendingSegments/wiki").json() == {"numDeleted": 2}

    service.http.post(f"{API}/task/{a}/shutdown")
    service.wait_for(a)
    b = holder(service)
    lock = act(service, b, {"type": "lockAcquire", "interval": DAY})
    assert lock["version"] > v1
    newer = segment(service, "wiki", DAY, lock["version"], 0)
    act(service, b, {"type": "segmentTransactionalInsert", "segments": [newer]})
    full = service.http.get("/druid/coordinator/v1/metadata/datasources/wiki/segments?full").json()
    assert [s["version"] for s in full] == [lock["version"]]  # the old version is overshadowed
    unused = act(service, b, {"type": "retrieveUnusedSegments", "dataSource": "wiki", "interval": DAY})
    assert sorted(s["shardSpec"]["partitionNum"] for s in unused) == [0, 1]
    assert {s["version"] for s in unused} == {v1}
    assert act(service, b, {"type": "segmentNuke", "segments": unused}) == {"numDeleted": 2}
    assert act(service, b, {"type": "retrieveUnusedSegments", "dataSource": "wiki", "interval": DAY}) == []
    used = act(service, b, {"type": "segmentListUsed", "dataSource": "wiki", "intervals": [DAY]})
    assert [s["version"] for s in used] == [lock["version"]]
    assert act(service, b, {"type": "segmentNuke", "segments": used}) == {"numDeleted": 0}  # used: never deleted


def test_publish_without_lock_or_with_revoked_lock_is_refused(service_factory):
    svc = service_factory(capacity=3).start()
    a = holder(svc, context={"priority": 0})
    err = act(svc, a, {"type": "segmentTransactionalInsert", "segments": [segment(svc, "wiki", DAY, "2024", 0)]}, 409)
    assert "holds no lock" in err["errorMessage"]
    lock = act(svc, a, {"type": "lockAcquire", "interval": DAY})
    other = segment(svc, "other", DAY, lock["version"], 0)
    err = act(svc, a, {"type": "segmentTransactionalInsert", "segments": [other]}, 403)
    assert "dataSource[other]" in err["errorMessage"] and err["category"] == "FORBIDDEN"
    outside = {**segment(svc, "wiki", DAY, lock["version"], 0), "loadSpec": {"type": "local", "path": "/etc/passwd"}}
    err = act(svc, a, {"type": "segmentTransactionalInsert", "segments": [outside]}, 403)
    assert "does not point inside deep storage" in err["errorMessage"]
    err = act(svc, a, {"type": "lockAcquire", "interval": "1000-01-01/3000-01-01", "version": "9999"}, 400)
    assert "action.version" in err["errorMessage"]
    assert svc.http.get("/druid/coordinator/v1/metadata/datasources/wiki/segments").status_code == 404


def test_bad_actions(service):
    a = holder(service)
    r = service.http.post(f"{API}/action", json={"task": "nope", "action": {"type": "lockList"}})
    assert r.status_code == 404 and "not active" in r.json()["errorMessage"]
    assert act(service, a, {"type": "bogus"}, 400)["errorMessage"].startswith("Unknown task action type [bogus]")
    assert "action.interval" in act(service, a, {"type": "lockAcquire"}, 400)["errorMessage"]
    assert "action.interval" in act(service, a, {"type": "lockAcquire", "interval": "x/y"}, 400)["errorMessage"]
    assert "lockType" in act(service, a, {"type": "lockAcquire", "interval": DAY, "lockType": "X"}, 400)["errorMessage"]
    assert "action.timestamp" in act(service, a, {"type": "segmentAllocate"}, 400)["errorMessage"]
    r = service.http.post(f"{API}/action", json=["not", "an", "object"])
    assert r.status_code == 400


def test_locks_survive_kill9_for_live_tasks_and_are_released_for_dead_ones(service_factory):
    svc = service_factory(capacity=3)
    svc.start()
    alive = holder(svc)
    dead = holder(svc)
    other_day = "2024-02-01T00:00:00.000Z/2024-02-02T00:00:00.000Z"
    lock = act(svc, alive, {"type": "lockAcquire", "interval": DAY})
    act(svc, dead, {"type": "lockAcquire", "interval": other_day})
    pid = svc.peon_pid(dead)
    svc.kill9()
    os.kill(pid, signal.SIGKILL)
    svc.start()
    assert act(svc, alive, {"type": "lockList"}) == [lock]
    third = holder(svc)
    assert act(svc, third, {"type": "lockTryAcquire", "interval": DAY}) is None
    assert act(svc, third, {"type": "lockTryAcquire", "interval": other_day}) is not None
    assert svc.wait_for(dead)["statusCode"] == "FAILED"


def test_task_lock_timeout_larger_than_http_idle_is_refused(service):
    r = service.http.post(f"{API}/task", json={"type": "noop", "context": {"taskLockTimeout": 10**9}})
    assert r.status_code == 400 and "druid.server.http.maxIdleTime" in r.json()["errorMessage"]


def test_worker_chat_endpoints(service):
    a = holder(service)
    r = service.http.get(f"/druid/worker/v1/chat/{a}/rowStats")
    assert r.status_code == 404  # a noop task keeps no live report
    assert service.http.get("/druid/worker/v1/chat/nope/liveReports").status_code == 404


def test_compaction_config_api(service):
    base = "/druid/coordinator/v1/config/compaction"
    assert service.http.get(base).json()["compactionConfigs"] == []
    r = service.http.post(base, json={"dataSource": "wiki", "skipOffsetFromLatest": "PT1H", "maxRowsPerSegment": 5})
    assert r.status_code == 200
    got = service.http.get(f"{base}/wiki").json()
    assert got["dataSource"] == "wiki" and got["maxRowsPerSegment"] == 5 and got["skipOffsetFromLatest"] == "PT1H"
    assert [c["dataSource"] for c in service.http.get(base).json()["compactionConfigs"]] == ["wiki"]
    bad = service.http.post(base, json={"dataSource": "wiki", "maxRowsPerSegment": -1})
    assert bad.status_code == 400 and "maxRowsPerSegment" in bad.json()["errorMessage"]
    assert service.http.delete(f"{base}/wiki").status_code == 200
    assert service.http.get(f"{base}/wiki").status_code == 404
    assert service.http.delete(f"{base}/wiki").status_code == 404


def test_task_with_declared_interval_waits_for_the_lock(service_factory):
    svc = service_factory(capacity=3).start()
    a = holder(svc)
    act(svc, a, {"type": "lockAcquire", "interval": DAY})
    kill = svc.submit({"type": "kill", "dataSource": "wiki", "interval": DAY})
    st = svc.http.get(f"{API}/task/{kill}/status").json()["status"]
    assert st["statusCode"] == "RUNNING" and st["runnerStatusCode"] == "WAITING"
    assert [t["id"] for t in svc.http.get(f"{API}/waitingTasks").json()] == [kill]
    act(svc, a, {"type": "lockRelease", "interval": DAY})
    assert svc.wait_for(kill, timeout=20)["statusCode"] == "SUCCESS"


def test_waiting_task_fails_after_its_lock_timeout(service_factory):
    svc = service_factory(capacity=3).start()
    a = holder(svc)
    act(svc, a, {"type": "lockAcquire", "interval": DAY})
    kill = svc.submit({"type": "kill", "dataSource": "wiki", "interval": DAY, "context": {"taskLockTimeout": 500}})
    st = svc.wait_for(kill, timeout=10)
    assert st["statusCode"] == "FAILED" and "taskLockTimeout[500]" in st["errorMsg"]
