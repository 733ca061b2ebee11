"""Task actions through the real app and action handler, in process: tokens, locks, allocation, publishing.

Moved here from the e2e tier (no real peon is needed to act for a task); the in-memory runner keeps
tasks RUNNING until a test ends them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.clock import ManualClock
from overlord.isotime import parse_instant_ms
from overlord.tasks.action_client import TOKEN_HEADER

from .inprocess import API, inprocess_service

pytestmark = pytest.mark.anyio
DAY = "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"


def segment(ds: str, interval: str, version: str, partition: int, deep: Path, partitions: int = 1) -> dict:
    return {
        "dataSource": ds,
        "interval": interval,
        "version": version,
        "loadSpec": {"type": "local", "path": str(deep / ds / version / str(partition) / "index.parquet")},
        "dimensions": "page",
        "metrics": "count",
        "shardSpec": {"type": "numbered", "partitionNum": partition, "partitions": partitions},
        "binaryVersion": 9,
        "size": 10,
    }


# -- who may act ---------------------------------------------------------------------------------


async def test_actions_need_the_calling_tasks_own_token(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a, b = await o.holder(), await o.holder()
        body = {"task": a, "action": {"type": "lockAcquire", "interval": "1000-01-01/3000-01-01"}}
        r = await o.http.post(f"{API}/action", json=body)
        assert r.status_code == 401 and r.json()["error"] == "druidException"
        assert TOKEN_HEADER in r.json()["errorMessage"]
        r = await o.http.post(f"{API}/action", json=body, headers={TOKEN_HEADER: o.token(b)})
        assert r.status_code == 403 and a in r.json()["errorMessage"]
        r = await o.http.post(f"{API}/action", json=body, headers={TOKEN_HEADER: "guessed"})
        assert r.status_code == 403
        assert await o.act(a, {"type": "lockList"}) == []  # nothing was taken by the refused calls
        token = o.token(a)
        o.runner.finish(a)
        r = await o.http.post(f"{API}/action", json={"task": a, "action": {"type": "lockList"}},
                              headers={TOKEN_HEADER: token})  # fmt: skip
        assert r.status_code == 403  # a finished task acts no more


async def test_tokens_are_never_listed(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a = await o.holder()
        token = o.token(a)
        for path in (f"{API}/task/{a}", f"{API}/task/{a}/status", f"{API}/tasks", f"{API}/runningTasks",
                     "/_tasks?detailed=true", f"{API}/workers"):  # fmt: skip
            assert token not in (await o.http.get(path)).text


async def test_peon_endpoints_need_the_token(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a, b = await o.holder(), await o.holder()
        report = {"ingestionStatsAndErrors": {"taskId": a, "payload": {"rowStats": {"processed": 3}}}}
        for path in ("liveReports", "reports", "status"):
            r = await o.http.post(f"{API}/peon/{a}/{path}", json=report)
            assert r.status_code == 401
            r = await o.http.post(f"{API}/peon/{a}/{path}", json=report, headers={TOKEN_HEADER: o.token(b)})
            assert r.status_code == 403
        assert (await o.http.get(f"{API}/task/{a}/reports")).status_code == 404
        r = await o.http.post(f"{API}/peon/{a}/liveReports", json=report, headers={TOKEN_HEADER: o.token(a)})
        assert r.status_code == 200
        assert (await o.http.get(f"{API}/task/{a}/reports")).json() == report
        chat = await o.http.get(f"/druid/worker/v1/chat/{a}/liveReports")
        assert chat.json() == report


async def test_the_posted_status_and_completion_report_are_what_the_task_ends_with(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a = await o.holder()
        headers = {TOKEN_HEADER: o.token(a)}
        final = {"ingestionStatsAndErrors": {"taskId": a, "payload": {"errorMsg": "bad rows"}}}
        assert (await o.http.post(f"{API}/peon/{a}/reports", json=final, headers=headers)).status_code == 200
        bad = await o.http.post(f"{API}/peon/{a}/status", json={"status": "MAYBE"}, headers=headers)
        assert bad.status_code == 400
        r = await o.http.post(f"{API}/peon/{a}/status", json={"status": "FAILED", "errorMsg": "bad rows"},
                              headers=headers)  # fmt: skip
        assert r.status_code == 200
        o.runner.finish(a, success=None, error="exited with code 1")  # no status of the runner's own
        st = await o.status(a)
        assert st["statusCode"] == "FAILED" and st["errorMsg"] == "bad rows"
        assert (await o.http.get(f"{API}/task/{a}/reports")).json() == final


# -- locks -----------------------------------------------------------------------------------------


async def test_lock_acquire_list_release_and_conflict(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a, b = await o.holder(), await o.holder()
        lock = await o.act(a, {"type": "lockAcquire", "interval": DAY})
        assert lock["dataSource"] == "wiki" and lock["interval"] == DAY and lock["revoked"] is False
        assert lock["groupId"] == a and lock["type"] == "EXCLUSIVE" and lock["priority"] == 0
        assert await o.act(a, {"type": "lockList"}) == [lock]
        assert await o.act(b, {"type": "lockTryAcquire", "interval": DAY}) is None
        err = await o.act(b, {"type": "lockAcquire", "interval": DAY, "timeoutMs": 50}, status=409)
        assert "taskLockTimeout" in err["errorMessage"]
        await o.act(a, {"type": "lockRelease", "interval": DAY})
        assert await o.act(a, {"type": "lockList"}) == []
        got = await o.act(b, {"type": "lockTryAcquire", "interval": DAY})
        assert got["version"] > lock["version"]  # a new time-chunk lock gets a higher version


async def test_higher_priority_preempts_and_victim_fails_naming_it(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        o.runner.end_on_shutdown = True
        low = await o.holder(context={"priority": 10})
        await o.act(low, {"type": "lockAcquire", "interval": DAY})
        high = await o.holder(context={"priority": 90})
        await o.act(high, {"type": "lockAcquire", "interval": DAY})
        for _ in range(100):  # the revocation hops to the event loop
            st = await o.status(low)
            if st["statusCode"] == "FAILED":
                break
            await o.http.get("/status/health")
        assert st["statusCode"] == "FAILED" and high in st["errorMsg"] and "revoked" in st["errorMsg"]


async def test_group_members_share_locks(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a = await o.holder(groupId="g1")
        b = await o.holder(groupId="g1")
        c = await o.holder()
        lock = await o.act(a, {"type": "lockAcquire", "interval": DAY})
        shared = await o.act(b, {"type": "lockTryAcquire", "interval": DAY})
        assert shared is not None and shared["version"] == lock["version"] and shared["groupId"] == "g1"
        assert await o.act(c, {"type": "lockTryAcquire", "interval": DAY}) is None


# -- allocation and publishing ------------------------------------------------------------------


async def test_allocate_publish_overshadow_and_kill_metadata(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        deep = o.service.settings.deep_storage_dir.resolve()
        a = await o.holder()
        lock = await o.act(a, {"type": "lockAcquire", "interval": DAY})
        alloc = {"type": "segmentAllocate", "dataSource": "wiki", "timestamp": "2024-01-01T05:00:00Z",
                 "queryGranularity": "NONE", "preferredSegmentGranularity": "DAY", "sequenceName": "s0",
                 "previousSegmentId": None}  # fmt: skip
        first = await o.act(a, alloc)
        assert first["interval"] == DAY and first["version"] == lock["version"]
        assert first["shardSpec"]["partitionNum"] == 0
        again = await o.act(a, alloc)
        assert again == first  # same sequence and previous id: the same pending segment
        v1 = [segment("wiki", DAY, lock["version"], p, deep, 2) for p in range(2)]
        result = await o.act(a, {"type": "segmentTransactionalInsert", "segments": v1})
        assert result["success"] is True
        used = await o.act(a, {"type": "segmentListUsed", "dataSource": "wiki", "intervals": [DAY]})
        assert sorted(s["shardSpec"]["partitionNum"] for s in used) == [0, 1]
        await o.act(a, {"type": "lockRelease", "interval": DAY})
        lock2 = await o.act(a, {"type": "lockAcquire", "interval": DAY})
        v2 = [segment("wiki", DAY, lock2["version"], 0, deep)]
        await o.act(a, {"type": "segmentTransactionalInsert", "segments": v2})
        used = await o.act(a, {"type": "segmentListUsed", "dataSource": "wiki", "intervals": [DAY]})
        assert [s["version"] for s in used] == [lock2["version"]]  # v1 is overshadowed, marked unused
        unused = await o.act(a, {"type": "retrieveUnusedSegments", "dataSource": "wiki", "interval": DAY})
        assert len(unused) == 2
        nuked = await o.act(a, {"type": "segmentNuke", "segments": unused})
        assert nuked == {"numDeleted": 2}


async def test_publish_without_lock_other_data_source_or_outside_load_spec_is_refused(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        deep = o.service.settings.deep_storage_dir.resolve()
        a = await o.holder(context={"priority": 0})
        seg = segment("wiki", DAY, "2024-01-01T00:00:00.000Z", 0, deep)
        err = await o.act(a, {"type": "segmentTransactionalInsert", "segments": [seg]}, status=409)
        assert "holds no lock" in err["errorMessage"]
        lock = await o.act(a, {"type": "lockAcquire", "interval": DAY})
        other = segment("other", DAY, lock["version"], 0, deep)
        err = await o.act(a, {"type": "segmentTransactionalInsert", "segments": [other]}, status=403)
        assert "dataSource[other]" in err["errorMessage"] and err["category"] == "FORBIDDEN"
        outside = {
            **segment("wiki", DAY, lock["version"], 0, deep),
            "loadSpec": {"type": "local", "path": "/etc/passwd"},
        }
        err = await o.act(a, {"type": "segmentTransactionalInsert", "segments": [outside]}, status=403)
        assert "does not point inside deep storage" in err["errorMessage"]
        err = await o.act(a, {"type": "lockAcquire", "interval": "1000-01-01/3000-01-01", "version": "9999"}, 400)
        assert "action.version" in err["errorMessage"]
        r = await o.http.get("/druid/coordinator/v1/metadata/datasources/wiki/segments")
        assert r.status_code == 404  # nothing was published


async def test_bad_actions(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a = await o.holder()
        r = await o.http.post(f"{API}/action", json={"task": "nope", "action": {"type": "lockList"}},
                              headers={TOKEN_HEADER: o.token(a)})  # fmt: skip
        assert r.status_code == 403
        assert (await o.act(a, {"type": "bogus"}, 400))["errorMessage"].startswith("Unknown task action type [bogus]")
        assert "action.interval" in (await o.act(a, {"type": "lockAcquire"}, 400))["errorMessage"]
        assert "action.interval" in (await o.act(a, {"type": "lockAcquire", "interval": "x/y"}, 400))["errorMessage"]
        bad_type = {"type": "lockAcquire", "interval": DAY, "lockType": "X"}
        assert "lockType" in (await o.act(a, bad_type, 400))["errorMessage"]
        assert "action.timestamp" in (await o.act(a, {"type": "segmentAllocate"}, 400))["errorMessage"]
        r = await o.http.post(f"{API}/action", json=["not", "an", "object"])
        assert r.status_code == 400


async def test_task_with_declared_interval_waits_for_the_lock(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        a = await o.holder()
        await o.act(a, {"type": "lockAcquire", "interval": DAY})
        kill = await o.submit({"type": "kill", "dataSource": "wiki", "interval": DAY})
        st = await o.status(kill)
        assert st["statusCode"] == "RUNNING" and st["runnerStatusCode"] == "WAITING"
        assert [t["id"] for t in (await o.http.get(f"{API}/waitingTasks")).json()] == [kill]
        await o.act(a, {"type": "lockRelease", "interval": DAY})
        o.service.queue.schedule()
        assert (await o.status(kill))["runnerStatusCode"] == "RUNNING"


async def test_waiting_task_fails_after_its_lock_timeout(tmp_path: Path) -> None:
    clock = ManualClock(now_ms=parse_instant_ms("2026-12-01T00:00:00Z"))
    async with inprocess_service(tmp_path, clock=clock) as o:
        a = await o.holder()
        await o.act(a, {"type": "lockAcquire", "interval": DAY})
        kill = await o.submit({"type": "kill", "dataSource": "wiki", "interval": DAY,
                               "context": {"taskLockTimeout": 1000}})  # fmt: skip
        clock.advance(0.5)
        o.service.queue.schedule()
        assert (await o.status(kill))["runnerStatusCode"] == "WAITING"
        clock.advance(0.6)
        o.service.queue.schedule()
        st = await o.status(kill)
        assert st["statusCode"] == "FAILED" and "taskLockTimeout[1000]" in st["errorMsg"]
