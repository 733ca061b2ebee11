"""The Druid Tasks API over HTTP against a real service: every endpoint, its bodies and its errors."""

from __future__ import annotations

import re
import time

import pytest

API = "/druid/indexer/v1"
ID_SHAPE = re.compile(r"^noop_none_[a-z]{8}_\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
STATUS_FIELDS = [
    "id", "groupId", "type", "createdTime", "queueInsertionTime", "statusCode", "status",
    "runnerStatusCode", "duration", "location", "dataSource", "errorMsg",
]  # fmt: skip


def _count_tasks(service) -> int:
    return len(service.http.get(f"{API}/tasks").json())


def test_submit_returns_druid_shaped_id_and_stores_defaults(shared_service):
    task_id = shared_service.submit({"type": "noop", "runTime": 0})
    assert ID_SHAPE.match(task_id), task_id
    payload = shared_service.http.get(f"{API}/task/{task_id}").json()
    assert payload["task"] == task_id
    p = payload["payload"]
    assert p["id"] == task_id and p["groupId"] == task_id and p["dataSource"] == "none"
    assert p["context"]["forceTimeChunkLock"] is True
    assert p["context"]["useLineageBasedSegmentAllocation"] is True


def test_submit_honours_id_and_refuses_duplicate_as_druid_does(shared_service):
    spec = {"type": "noop", "id": "my-task-1", "runTime": 0}
    assert shared_service.submit(spec) == "my-task-1"
    before = _count_tasks(shared_service)
    r = shared_service.http.post(f"{API}/task", json=spec)
    assert r.status_code == 400
    assert (
        r.json()
        == {
            "error": "druidException",
            "errorCode": "entryAlreadyExists",
            "persona": "USER",
            "category": "INVALID_INPUT",
            "errorMessage": "Task[my-task-1] already exists",
            "context": {},
        }
        or r.json()["errorMessage"] == "Task[my-task-1] already exists"
    )
    assert _count_tasks(shared_service) == before


def test_status_lifecycle_and_fields(shared_service):
    task_id = shared_service.submit({"type": "noop", "runTime": 1500, "groupId": "g1"})
    status = shared_service.wait_for(task_id, states=("RUNNING",))
    assert list(status) == STATUS_FIELDS
    assert status["statusCode"] == status["status"] == "RUNNING"
    assert status["duration"] == -1
    assert status["groupId"] == "g1"
    assert status["location"] == {"host": "127.0.0.1", "port": shared_service.port, "tlsPort": -1}
    done = shared_service.wait_for(task_id)
    assert done["statusCode"] == done["status"] == "SUCCESS"
    assert done["runnerStatusCode"] == "NONE"
    assert done["duration"] >= 1500
    body = shared_service.http.get(f"{API}/task/{task_id}/status").json()
    assert body["task"] == task_id and body["status"]["statusCode"] == "SUCCESS"


def test_status_code_is_never_waiting_or_pending(service_factory):
    svc = service_factory(capacity=1).start()
    first = svc.submit({"type": "noop", "runTime": 3000})
    svc.wait_for(first, states=("RUNNING",))
    second = svc.submit({"type": "noop", "runTime": 0})
    st = svc.http.get(f"{API}/task/{second}/status").json()["status"]
    assert st["statusCode"] == "RUNNING" and st["status"] == "RUNNING"
    assert st["runnerStatusCode"] == "PENDING"
    assert st["location"] == {"host": None, "port": -1, "tlsPort": -1}
    pending = svc.http.get(f"{API}/pendingTasks").json()
    assert [t["id"] for t in pending] == [second]
    assert [t["id"] for t in svc.http.get(f"{API}/runningTasks").json()] == [first]
    assert svc.http.get(f"{API}/waitingTasks").json() == []
    svc.http.post(f"{API}/task/{first}/shutdown")
    assert svc.wait_for(second)["statusCode"] == "SUCCESS"


def test_failed_task_reports_error(shared_service):
    task_id = shared_service.submit({"type": "noop", "runTime": 0, "fail": "boom: bad things"})
    st = shared_service.wait_for(task_id)
    assert st["statusCode"] == "FAILED" and st["errorMsg"] == "boom: bad things"


def test_tasks_listing_filters_and_order(service):
    done_a = service.submit({"type": "noop", "runTime": 0, "dataSource": "a"})
    done_b = service.submit({"type": "noop", "runTime": 0, "dataSource": "b"})
    service.wait_for(done_a)
    service.wait_for(done_b)
    running = service.submit({"type": "noop", "runTime": 5000, "dataSource": "a"})
    service.wait_for(running, states=("RUNNING",))
    ids = [t["id"] for t in service.http.get(f"{API}/tasks").json()]
    assert ids == [done_b, done_a, running]  # complete first (newest first), then active
    assert [t["id"] for t in service.http.get(f"{API}/tasks", params={"state": "COMPLETE"}).json()] == [done_b, done_a]
    assert [t["id"] for t in service.http.get(f"{API}/tasks", params={"state": "Running"}).json()] == [running]
    assert [t["id"] for t in service.http.get(f"{API}/tasks", params={"datasource": "a"}).json()] == [done_a, running]
    assert [t["id"] for t in service.http.get(f"{API}/tasks", params={"state": "complete", "max": 1}).json()] == [
        done_b
    ]
    assert service.http.get(f"{API}/tasks", params={"type": "index_parallel"}).json() == []
    assert len(service.http.get(f"{API}/completeTasks", params={"n": 1}).json()) == 1
    future = service.http.get(f"{API}/tasks", params={"createdTimeInterval": "2099-01-01_2099-01-02"}).json()
    assert [t["id"] for t in future] == [running]  # the interval limits only the complete ones
    wide = service.http.get(
        f"{API}/tasks", params={"state": "complete", "createdTimeInterval": "2000-01-01_2100-01-01"}
    )
    assert len(wide.json()) == 2
    service.http.post(f"{API}/task/{running}/shutdown")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "bogus"}, "Invalid task state[bogus]. Must be one of [pending, waiting, running, complete]."),
        ({"max": "-1"}, "Invalid value for parameter [max]: [-1] must be a non-negative integer"),
        ({"max": "ten"}, "Invalid value for parameter [max]: [ten] is not an integer"),
        ({"createdTimeInterval": "yesterday"}, "Invalid createdTimeInterval[yesterday]"),
        ({"createdTimeInterval": "2020-01-01_notadate"}, "Invalid createdTimeInterval[2020-01-01/notadate]"),
    ],
)
def test_tasks_listing_bad_parameters(shared_service, params, message):
    r = shared_service.http.get(f"{API}/tasks", params=params)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "druidException" and body["category"] == "INVALID_INPUT"
    assert body["errorMessage"].startswith(message)


def test_unknown_task_is_404_naming_the_id(shared_service):
    for path in ("", "/status", "/log", "/reports", "/report"):
        r = shared_service.http.get(f"{API}/task/nope-123{path}")
        assert r.status_code == 404, path
        assert "nope-123" in r.text
    r = shared_service.http.post(f"{API}/task/nope-123/shutdown")
    assert r.status_code == 404 and "nope-123" in r.json()["errorMessage"]
    assert shared_service.http.get(f"{API}/task/nope-123/status").json()["status"] is None


def test_log_offsets_and_push(shared_service):
    task_id = shared_service.submit({"type": "noop", "runTime": 0, "logLines": 5})
    shared_service.wait_for(task_id)
    full = shared_service.http.get(f"{API}/task/{task_id}/log")
    assert full.status_code == 200 and full.headers["content-type"].startswith("text/plain")
    text = full.text
    assert "log line 5 of 5" in text and "finished with status[SUCCESS]" in text
    assert shared_service.http.get(f"{API}/task/{task_id}/log", params={"offset": 10}).text == text[10:]
    assert shared_service.http.get(f"{API}/task/{task_id}/log", params={"offset": -20}).text == text[-20:]
    assert shared_service.http.get(f"{API}/task/{task_id}/log", params={"offset": -(10**9)}).text == text
    assert shared_service.http.get(f"{API}/task/{task_id}/log", params={"offset": 10**9}).text == ""
    assert shared_service.http.get(f"{API}/task/{task_id}/log", params={"offset": "x"}).status_code == 400
    assert (shared_service.data_dir / "task-logs" / f"{task_id}.log").read_text() == text


def test_log_of_a_pending_task_is_404_with_druids_message(service_factory):
    svc = service_factory(capacity=1).start()
    first = svc.submit({"type": "noop", "runTime": 3000})
    svc.wait_for(first, states=("RUNNING",))
    deadline = time.monotonic() + 10
    while "Running task" not in (live := svc.http.get(f"{API}/task/{first}/log")).text:
        assert live.status_code == 200 and time.monotonic() < deadline
        time.sleep(0.02)
    second = svc.submit({"type": "noop", "runTime": 0})
    r = svc.http.get(f"{API}/task/{second}/log")
    assert r.status_code == 404
    assert r.json()["errorMessage"] == (
        "No log was found for this task. The task may not exist, or it may not have begun running yet."
    )
    r = svc.http.get(f"{API}/task/{second}/reports")
    assert r.status_code == 404
    assert r.json()["errorMessage"].startswith("No task reports were found for this task.")
    svc.http.post(f"{API}/task/{first}/shutdown")


def test_shutdown_running_pending_and_finished(service_factory):
    svc = service_factory(capacity=1).start()
    running = svc.submit({"type": "noop", "runTime": 30000})
    svc.wait_for(running, states=("RUNNING",))
    pending = svc.submit({"type": "noop", "runTime": 30000})
    r = svc.http.post(f"{API}/task/{pending}/shutdown")
    assert r.status_code == 200 and r.json() == {"task": pending}
    st = svc.wait_for(pending)
    assert st["statusCode"] == "FAILED" and st["errorMsg"] == "Shutdown request from user"
    t0 = time.monotonic()
    assert svc.http.post(f"{API}/task/{running}/shutdown").json() == {"task": running}
    st = svc.wait_for(running)
    assert st["statusCode"] == "FAILED" and st["errorMsg"] == "Shutdown request from user"
    assert time.monotonic() - t0 < 5
    again = svc.http.post(f"{API}/task/{running}/shutdown")
    assert again.status_code == 200 and again.json() == {"task": running}
    assert svc.wait_for(running)["errorMsg"] == st["errorMsg"]


def test_shutdown_all_tasks_of_a_datasource(service):
    a1 = service.submit({"type": "noop", "runTime": 30000, "dataSource": "wiki"})
    a2 = service.submit({"type": "noop", "runTime": 30000, "dataSource": "wiki"})
    other = service.submit({"type": "noop", "runTime": 30000, "dataSource": "other"})
    r = service.http.post(f"{API}/datasources/wiki/shutdownAllTasks")
    assert r.status_code == 200 and r.json() == {"dataSource": "wiki"}
    for task_id in (a1, a2):
        st = service.wait_for(task_id)
        assert st["statusCode"] == "FAILED" and st["errorMsg"] == "Shutdown request from user"
    assert service.http.get(f"{API}/task/{other}/status").json()["status"]["statusCode"] == "RUNNING"
    r = service.http.post(f"{API}/datasources/wiki/shutdownAllTasks")
    assert r.status_code == 404 and r.json()["error"] == "druidException"
    service.http.post(f"{API}/task/{other}/shutdown")


def test_bulk_task_status(shared_service):
    a = shared_service.submit({"type": "noop", "runTime": 0})
    shared_service.wait_for(a)
    b = shared_service.submit({"type": "noop", "runTime": 5000})
    body = shared_service.http.post(f"{API}/taskStatus", json=[a, b, "unknown-id"]).json()
    assert set(body) == {a, b}
    assert body[a]["status"] == "SUCCESS" and body[a]["duration"] >= 0 and body[a]["errorMsg"] is None
    assert list(body[a]) == ["id", "status", "duration", "errorMsg", "location"]
    assert body[b]["status"] == "RUNNING" and body[b]["duration"] == -1
    for bad in ([], None):
        r = shared_service.http.post(f"{API}/taskStatus", json=bad)
        assert r.status_code == 400 and r.json()["errorMessage"] == "No Task IDs provided."
    r = shared_service.http.post(f"{API}/taskStatus", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errorMessage"] == "No Task IDs provided."
    shared_service.http.post(f"{API}/task/{b}/shutdown")


def test_cluster_endpoints(service):
    assert service.http.get("/status/health").json() is True
    assert service.http.get(f"{API}/isLeader").json() == {"leader": True}
    assert service.http.get(f"{API}/leader").text == f"http://127.0.0.1:{service.port}"
    assert service.http.delete(f"{API}/pendingSegments/wiki").json() == {"numDeleted": 0}
    workers = service.http.get(f"{API}/workers").json()
    assert len(workers) == 1
    w = workers[0]
    assert w["worker"]["capacity"] == 2 and w["currCapacityUsed"] == 0 and w["runningTasks"] == []
    task_id = service.submit({"type": "noop", "runTime": 3000})
    service.wait_for(task_id, states=("RUNNING",))
    w = service.http.get(f"{API}/workers").json()[0]
    assert w["runningTasks"] == [task_id] and w["currCapacityUsed"] == 1
    service.http.post(f"{API}/task/{task_id}/shutdown")


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "Malformed JSON"),
        (b"", {"content-type": "application/json"}, 400, "Request body is empty"),
        (b"[1, 2]", {"content-type": "application/json"}, 400, "The task spec must be a JSON object"),
        (b'{"runTime": 1}', {"content-type": "application/json"}, 400, "Missing required field [type]"),
        (b'{"type": "bogus"}', {"content-type": "application/json"}, 400, "Task type [bogus] is unknown"),
        (b'{"type": "index_hadoop"}', {"content-type": "application/json"}, 400, "Task type [index_hadoop] is not"),
        (b'{"type": "noop"}', {"content-type": "text/plain"}, 415, "Unsupported Content-Type [text/plain]"),
        (b'{"type": "noop", "id": "a/b"}', {"content-type": "application/json"}, 400, "Invalid value for field [id]"),
        (b'{"type": "noop", "runTime": -5}', {"content-type": "application/json"}, 400, "field [runTime]"),
        (b'{"type": "noop", "bogus": 1}', {"content-type": "application/json"}, 400, "Unknown field [bogus]"),
        (b'{"type": "noop", "context": 5}', {"content-type": "application/json"}, 400, "field [context]"),
        (
            b'{"type": "noop", "context": {"priority": "high"}}',
            {"content-type": "application/json"},
            400,
            "field [context.priority]",
        ),
    ],
)
def test_bad_submissions_are_refused_and_store_nothing(shared_service, body, headers, status, message):
    before = _count_tasks(shared_service)
    r = shared_service.http.post(f"{API}/task", content=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == "druidException" and message in err["errorMessage"]
    assert _count_tasks(shared_service) == before


def test_unsupported_type_lists_supported_ones(shared_service):
    r = shared_service.http.post(f"{API}/task", json={"type": "index_kafka"})
    assert r.status_code == 400 and "noop" in r.json()["errorMessage"]


def test_full_queue_is_429(service_factory):
    svc = service_factory(capacity=1, extra_env={"druid_indexer_queue_maxSize": "1"}).start()
    first = svc.submit({"type": "noop", "runTime": 30000})
    r = svc.http.post(f"{API}/task", json={"type": "noop"})
    assert r.status_code == 429 and "druid.indexer.queue.maxSize" in r.json()["errorMessage"]
    svc.http.post(f"{API}/task/{first}/shutdown")
    svc.wait_for(first)
    assert svc.http.post(f"{API}/task", json={"type": "noop", "runTime": 0}).status_code == 200


def test_server_force_time_chunk_lock_default_is_not_overridden(service_factory):
    svc = service_factory(extra_env={"druid_indexer_tasklock_forceTimeChunkLock": "false"}).start()
    task_id = svc.submit({"type": "noop", "runTime": 0})
    assert svc.http.get(f"{API}/task/{task_id}").json()["payload"]["context"]["forceTimeChunkLock"] is False
    task_id = svc.submit({"type": "noop", "runTime": 0, "context": {"forceTimeChunkLock": True, "priority": 7}})
    ctx = svc.http.get(f"{API}/task/{task_id}").json()["payload"]["context"]
    assert ctx["forceTimeChunkLock"] is True and ctx["priority"] == 7


def test_unknown_route_and_method(shared_service):
    r = shared_service.http.get(f"{API}/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "druidException"
    r = shared_service.http.delete(f"{API}/tasks")
    assert r.status_code == 405 and r.json()["error"] == "druidException"
