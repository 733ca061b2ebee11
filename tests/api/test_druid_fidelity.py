"""Wire fidelity with Druid (issue 10): each answer compared with Druid's own resources, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.isotime import Interval
from overlord.tasks.action_client import TOKEN_HEADER

from .inprocess import API, inprocess_service
from .test_task_actions_api import DAY, segment

pytestmark = pytest.mark.anyio
COORD = "/druid/coordinator/v1"


async def test_user_shutdown_and_shutdown_all_say_druids_words(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        running, waiting = await o.holder(), await o.submit({"type": "noop", "dataSource": "wiki"})
        assert (await o.http.post(f"{API}/task/{waiting}/shutdown")).status_code == 200
        assert (await o.status(waiting))["errorMsg"] == "Shutdown request from user"
        other = await o.submit({"type": "noop", "dataSource": "wiki"})
        assert (await o.http.post(f"{API}/datasources/wiki/shutdownAllTasks")).status_code == 200
        assert (await o.status(other))["errorMsg"] == "Shutdown request from user"
        assert running in o.runner.running  # a running peon is asked to stop; the runner decides when


async def test_listings_cut_error_messages_as_druid_does(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        task_id = await o.holder()
        long = "x" * 150
        o.runner.finish(task_id, success=False, error=long)
        assert (await o.status(task_id))["errorMsg"] == long  # the task's own status keeps it whole
        for path in ("/tasks", "/completeTasks"):
            (listed,) = [t for t in (await o.http.get(f"{API}{path}")).json() if t["id"] == task_id]
            assert listed["errorMsg"] == "x" * 100 + "..."


async def test_state_listings_honour_type(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        running = await o.holder()
        pending = await o.submit({"type": "noop", "dataSource": "wiki"})
        for path, task_id in (("/runningTasks", running), ("/pendingTasks", pending)):
            assert [t["id"] for t in (await o.http.get(f"{API}{path}?type=noop")).json()] == [task_id]
            assert (await o.http.get(f"{API}{path}?type=index_parallel")).json() == []
        assert (await o.http.get(f"{API}/waitingTasks?type=noop")).json() == []


async def test_pending_segments_deleted_by_creation_interval_and_not_under_active_tasks(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=2) as o:
        task_id = await o.holder()
        await o.act(task_id, {"type": "lockAcquire", "interval": DAY})
        alloc = {"type": "segmentAllocate", "dataSource": "wiki", "timestamp": "2024-01-01T01:00:00Z",
                 "queryGranularity": "NONE", "preferredSegmentGranularity": "DAY", "sequenceName": "s"}  # fmt: skip
        assert await o.act(task_id, alloc) is not None
        r = await o.http.delete(f"{API}/pendingSegments/wiki?interval=2000-01-01/3000-01-01")
        assert r.status_code == 400 and "at least one active task created at" in r.json()["message"]
        before = "2000-01-01/2001-01-01"  # ends before the active task was created: allowed, nothing in it
        assert (await o.http.delete(f"{API}/pendingSegments/wiki?interval={before}")).json() == {"numDeleted": 0}
        held = o.service.segments.pending_segments("wiki", Interval.parse(DAY))
        assert len(held) == 1
        o.runner.finish(task_id)
        await o.status(task_id)
        o.service.segments.insert_pending(held, {}, now_ms=5_000)  # created in 1970, with no task left
        assert (await o.http.delete(f"{API}/pendingSegments/wiki?interval=1971-01-01/1972-01-01")).json() == {
            "numDeleted": 0
        }
        r = await o.http.delete(f"{API}/pendingSegments/wiki?interval=1970-01-01/1970-01-02")
        assert r.status_code == 200 and r.json() == {"numDeleted": 1}
        r = await o.http.delete(f"{API}/pendingSegments/wiki?interval=bad")
        assert r.status_code == 400 and "interval" in r.json()["message"]


async def test_error_bodies_carry_message(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        r = await o.http.get(f"{API}/task/nope/status")
        assert r.status_code == 404 and r.json()["message"] == r.json()["errorMessage"]
        r = await o.http.get("/no/such/route")
        assert r.json()["message"] == "No resource at [GET /no/such/route]"
        task_id = await o.holder()
        r = await o.http.get(f"{API}/task/{task_id}/reports")
        assert r.status_code == 404
        assert r.json()["message"] == (
            "No task reports were found for this task. The task may not exist, or it may not have completed yet."
        )
        pending = await o.submit({"type": "noop", "dataSource": "wiki"})  # no slot: not started, no log yet
        r = await o.http.get(f"{API}/task/{pending}/log")
        assert r.status_code == 404
        assert r.json()["message"] == (
            "No log was found for this task. The task may not exist, or it may not have begun running yet."
        )


async def test_total_worker_capacity_and_task_segments(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=3) as o:
        task_id = await o.holder()
        r = await o.http.get(f"{API}/totalWorkerCapacity")
        assert r.json() == {"currentClusterCapacity": 3, "maximumCapacityWithAutoScale": -1, "usedClusterCapacity": 1}
        r = await o.http.get(f"{API}/task/{task_id}/segments")
        assert r.status_code == 404 and "not persisted anymore" in r.json()["message"]
        assert (await o.http.get(f"{API}/task/nope/segments")).status_code == 404


async def test_worker_config_is_stored_validated_and_audited(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        r = await o.http.get(f"{API}/worker")
        assert r.json() == {"type": "default", "selectStrategy": {"type": "equalDistribution"}, "autoScaler": None}
        config = {"type": "default", "selectStrategy": {"type": "fillCapacity"}, "autoScaler": None}
        headers = {"X-Druid-Author": "ana", "X-Druid-Comment": "fill first"}
        assert (await o.http.post(f"{API}/worker", json=config, headers=headers)).status_code == 200
        assert (await o.http.get(f"{API}/worker")).json() == config
        bad = await o.http.post(f"{API}/worker", json={"selectStrategy": {"type": "roundRobin"}})
        assert bad.status_code == 400 and bad.json()["context"]["field"] == "selectStrategy.type"
        assert (await o.http.post(f"{API}/worker", json={**config, "autoScaler": {"type": "ec2"}})).status_code == 400
        config2 = {**config, "selectStrategy": {"type": "equalDistribution"}}
        await o.http.post(f"{API}/worker", json=config2, headers={"X-Druid-Author": "bo"})
        history = (await o.http.get(f"{API}/worker/history")).json()
        assert [(h["auditInfo"]["author"], h["auditInfo"]["comment"]) for h in history] == [
            ("bo", ""),
            ("ana", "fill first"),
        ]
        assert history[0]["key"] == history[0]["type"] == "worker.config"
        assert '"equalDistribution"' in history[0]["payload"]
        assert len((await o.http.get(f"{API}/worker/history?count=1")).json()) == 1
        assert (await o.http.get(f"{API}/worker/history?count=zero")).status_code == 400
    async with inprocess_service(tmp_path) as o:  # the same data dir: kept in the metadata store
        assert (await o.http.get(f"{API}/worker")).json() == config2


async def test_lock_listings(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        task_id = await o.holder(context={"priority": 50})
        await o.act(task_id, {"type": "lockAcquire", "interval": DAY})
        r = await o.http.post(f"{API}/lockedIntervals/v2", json=[{"datasource": "wiki", "priority": 25}])
        assert r.json() == {"wiki": [DAY]}
        r = await o.http.post(f"{API}/lockedIntervals/v2", json=[{"datasource": "wiki", "priority": 75}])
        assert r.json() == {}
        assert (await o.http.post(f"{API}/lockedIntervals/v2", json=[])).status_code == 400
        r = await o.http.post(f"{API}/activeLocks", json=[{"datasource": "wiki", "priority": 0}])
        (lock,) = r.json()["datasourceToLocks"]["wiki"]
        assert lock["interval"] == DAY and lock["groupId"] == task_id and lock["priority"] == 50
        assert (await o.http.get(f"{API}/activeLocks")).json() == r.json()
        bad = await o.http.post(f"{API}/activeLocks", json=[{"priority": 0}])
        assert bad.status_code == 400 and "datasource" in bad.json()["message"]


async def test_supervisors_status_properties_and_self_discovery(tmp_path: Path) -> None:
    url = "postgresql://druid:hunter2@127.0.0.1:5432/druid"
    async with inprocess_service(tmp_path) as o:
        for q in ("", "?full", "?state=true"):
            assert (await o.http.get(f"{API}/supervisor{q}")).json() == []
        assert (await o.http.get(f"{API}/supervisor/x")).status_code == 404
        assert (await o.http.get("/status/selfDiscovered/status")).json() == {"selfDiscovered": True}
        assert (await o.http.get("/status/selfDiscovered")).status_code == 200
        props = (await o.http.get("/status/properties")).json()
        assert props["druid.worker.capacity"] == "3"
    from overlord.api.druid_status import masked

    assert masked("druid.metadata.storage.connector.password", "hunter2") == "<masked>"
    assert masked("druid.s3.secretKey", "abc") == "<masked>"
    assert "hunter2" not in masked("druid.metadata.storage.connector.connectURI", url)


async def test_coordinator_answers_what_druids_console_reads(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        deep = o.service.settings.deep_storage_dir.resolve()
        task_id = await o.holder()
        await o.act(task_id, {"type": "lockAcquire", "interval": DAY})
        lock_version = (await o.act(task_id, {"type": "lockList"}))[0]["version"]
        segs = [segment("wiki", DAY, lock_version, p, deep, partitions=2) for p in (0, 1)]
        await o.act(task_id, {"type": "segmentTransactionalInsert", "segments": segs})
        assert (await o.http.get(f"{COORD}/isLeader")).json() == {"leader": True}
        simple = (await o.http.get(f"{COORD}/datasources?simple")).json()
        assert simple == [{"name": "wiki", "properties": {
            "tiers": {"_default_tier": {"segmentCount": 2, "size": 20}},
            "segments": {"count": 2, "size": 20, "replicatedSize": 20,
                         "minTime": "2024-01-01T00:00:00.000Z", "maxTime": "2024-01-02T00:00:00.000Z"},
        }}]  # fmt: skip
        assert (await o.http.get(f"{COORD}/datasources")).json() == ["wiki"]
        assert (await o.http.get(f"{COORD}/datasources/wiki")).json() == simple[0]["properties"]
        assert (await o.http.get(f"{COORD}/datasources/nope")).status_code == 404
        assert (await o.http.get(f"{COORD}/loadstatus")).json() == {"wiki": 100.0}
        assert (await o.http.get(f"{COORD}/loadstatus?simple")).json() == {"wiki": 0}
        (server,) = (await o.http.get(f"{COORD}/servers?simple")).json()
        assert server["currSize"] == 20 and server["tier"] == "_default_tier"
        rules = (await o.http.get(f"{COORD}/rules")).json()
        assert rules["_default"][0]["type"] == "loadForever"
        listed = (await o.http.get(f"{COORD}/metadata/segments?includeOvershadowedStatus")).json()
        assert sorted(s["overshadowed"] for s in listed) == [False, False]
        ids = [s["identifier"] for s in listed]
        r = await o.http.post(f"{COORD}/datasources/wiki/markUnused", json={"segmentIds": ids[:1]})
        assert r.json() == {"numChangedSegments": 1}
        assert (await o.http.get(f"{COORD}/metadata/datasources?includeUnused")).json() == ["wiki"]
        r = await o.http.post(f"{COORD}/datasources/wiki/segments/{ids[0]}")
        assert r.json() == {"segmentStateChanged": True}
        r = await o.http.delete(f"{COORD}/datasources/wiki/segments/{ids[0]}")
        assert r.json() == {"segmentStateChanged": True}
        assert (await o.http.delete(f"{COORD}/datasources/wiki")).json() == {"numChangedSegments": 1}
        assert (await o.http.get(f"{COORD}/datasources")).json() == []
        assert (await o.http.get(f"{COORD}/metadata/datasources")).json() == []
        assert (await o.http.get(f"{COORD}/metadata/datasources?includeUnused")).json() == ["wiki"]
        r = await o.http.post(f"{COORD}/datasources/wiki/markUsed", json={"interval": DAY})
        assert r.json() == {"numChangedSegments": 2}
        assert (await o.http.post(f"{COORD}/datasources/wiki")).json() == {"numChangedSegments": 0}
        bad = await o.http.post(f"{COORD}/datasources/wiki/markUsed", json={"interval": DAY, "segmentIds": ids})
        assert bad.status_code == 400 and "Exactly one" in bad.json()["message"]


async def test_parallel_chat_endpoints_answer_from_the_live_report_and_sub_task_records(tmp_path: Path) -> None:
    chat = "/druid/worker/v1/chat"
    async with inprocess_service(tmp_path, capacity=4) as o:
        spec = {"type": "index_parallel", "spec": {
            "dataSchema": {"dataSource": "wiki", "timestampSpec": {"column": "ts"}, "dimensionsSpec": {},
                           "granularitySpec": {"segmentGranularity": "DAY"}},
            "ioConfig": {"type": "index_parallel", "inputSource": {"type": "inline", "data": "{}"},
                         "inputFormat": {"type": "json"}},
            "tuningConfig": {"type": "index_parallel", "maxNumConcurrentSubTasks": 2}}}  # fmt: skip
        parent = await o.submit(spec)
        assert (await o.http.get(f"{chat}/{parent}/mode")).json() == "sequential"  # no sub-task yet
        assert (await o.http.get(f"{chat}/{parent}/phase")).status_code == 400
        assert (await o.http.get(f"{chat}/{parent}/progress")).status_code == 503
        done, running = await o.holder(), await o.holder()
        o.runner.finish(done)
        specs = [{"spec": {"id": f"{parent}_{i}", "supervisorTaskId": parent}, "taskIds": ids}
                 for i, ids in enumerate([[done], [running], []])]  # fmt: skip
        entry = {"mode": "parallel", "phase": "segment generation", "specs": specs}
        live = {
            "ingestionStatsAndErrors": {"payload": {"rowStats": {"totals": {}}}},
            "parallelIndexSubtasks": {"type": "parallelIndexSubtasks", "taskId": parent, "payload": entry},
        }
        r = await o.http.post(f"{API}/peon/{parent}/liveReports", json=live, headers={TOKEN_HEADER: o.token(parent)})
        assert r.status_code == 200
        get = lambda path: o.http.get(f"{chat}/{parent}{path}")  # noqa: E731
        assert (await get("/mode")).json() == "parallel"
        assert (await get("/phase")).json() == "segment generation"
        assert (await get("/progress")).json() == {"running": 1, "succeeded": 1, "failed": 0, "complete": 1,
                                                   "total": 2, "estimatedExpectedSucceeded": 3}  # fmt: skip
        assert (await get("/subtasks/running")).json() == [running]
        assert [s["id"] for s in (await get("/subtaskspecs")).json()] == [f"{parent}_{i}" for i in range(3)]
        assert [s["id"] for s in (await get("/subtaskspecs/running")).json()] == [f"{parent}_1"]
        assert [s["id"] for s in (await get("/subtaskspecs/complete")).json()] == [f"{parent}_0"]
        assert (await get(f"/subtaskspec/{parent}_0")).json()["supervisorTaskId"] == parent
        state = (await get(f"/subtaskspec/{parent}_1/state")).json()
        assert state["currentStatus"]["id"] == running and state["taskHistory"] == []
        (hist,) = (await get(f"/subtaskspec/{parent}_0/history")).json()
        assert hist["id"] == done and hist["statusCode"] == "SUCCESS"
        assert (await get(f"/subtaskspec/{parent}_1/history")).status_code == 404
        assert (await get("/subtaskspec/nope")).status_code == 404
        assert (await o.http.get(f"{chat}/{running}/mode")).status_code == 404  # not an index_parallel task
        assert (await o.http.get(f"{chat}/nope/mode")).status_code == 404
