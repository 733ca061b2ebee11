"""``GET /task/{id}/status``, the hottest route, served by a plain ASGI endpoint: the same body, headers
and errors as every other route (Druid's shape, X-Opaque-Id, the proxy prefix, a 500 in Druid's shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from overlord.core.protocols import StatusRow
from overlord.core.task import RunnerState, StatusCode, TaskRecord
from tests.api.inprocess import API, inprocess_service

pytestmark = pytest.mark.anyio

STATUS_KEYS = [
    "id", "groupId", "type", "createdTime", "queueInsertionTime", "statusCode", "status",
    "runnerStatusCode", "duration", "location", "dataSource", "errorMsg",
]  # fmt: skip


def _completed(task_id: str, **changes: Any) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        group_id=task_id,
        type="noop",
        datasource="wiki",
        created_ms=1_687_554_448_226,
        queue_insertion_ms=1_687_554_448_227,
        status_code=StatusCode.FAILED,
        runner_state=RunnerState.NONE,
        duration=42,
        error_msg="boom",
        payload={"type": "noop", "id": task_id},
    ).with_(**changes)


async def test_a_stored_task_is_read_once_then_served_from_its_rendered_bytes(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        ov.service.store.bulk_insert_tasks([_completed("t_done")])
        r = await ov.http.get(f"{API}/task/t_done/status")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.content)
        body = r.json()
        assert body["task"] == "t_done" and list(body["status"]) == STATUS_KEYS
        assert body["status"] | {"location": None} == {
            "id": "t_done", "groupId": "t_done", "type": "noop", "createdTime": "2023-06-23T21:07:28.226Z",
            "queueInsertionTime": "2023-06-23T21:07:28.227Z", "statusCode": "FAILED", "status": "FAILED",
            "runnerStatusCode": "NONE", "duration": 42, "location": None, "dataSource": "wiki", "errorMsg": "boom",
        }  # fmt: skip
        assert body["status"]["location"] == {"host": None, "port": -1, "tlsPort": -1}
        assert ov.service.status_cache.get("t_done") == r.content
        again = await ov.http.get(f"{API}/task/t_done/status")
        assert again.content == r.content


async def test_a_task_with_a_location_keeps_it(tmp_path: Path) -> None:
    from overlord.core.task import Location

    async with inprocess_service(tmp_path) as ov:
        rec = _completed("t_loc", location=Location("peon.test", 8100, -1), headers={"X-Opaque-Id": "o"})
        ov.service.store.bulk_insert_tasks([rec])
        assert ov.service.store.get_task("t_loc") == rec.with_(payload=None)
        r = await ov.http.get(f"{API}/task/t_loc/status")
        assert r.json()["status"]["location"] == {"host": "peon.test", "port": 8100, "tlsPort": -1}


async def test_an_active_task_is_answered_from_the_queue_and_not_kept(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        task_id = await ov.holder()
        r = await ov.http.get(f"{API}/task/{task_id}/status")
        assert r.status_code == 200 and r.json()["status"]["statusCode"] == "RUNNING"
        assert r.headers["content-type"] == "application/json"
        assert ov.service.status_cache.get(task_id) is None


async def test_an_unknown_task_is_a_404_in_druids_shape_with_the_id(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        r = await ov.http.get(f"{API}/task/nope/status", headers={"X-Opaque-Id": "op-1"})
        assert r.status_code == 404
        assert r.headers["x-opaque-id"] == "op-1"
        assert r.json() == {
            "task": "nope", "status": None, "error": "druidException", "errorCode": "notFound", "persona": "USER",
            "category": "NOT_FOUND", "errorMessage": "Cannot find any task with id: [nope]",
            "message": "Cannot find any task with id: [nope]", "context": {"taskId": "nope"},
        }  # fmt: skip


async def test_opaque_id_and_the_routers_proxy_prefix_reach_the_status_route(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        ov.service.store.bulk_insert_tasks([_completed("t_p")])
        r = await ov.http.get(f"/proxy/overlord{API}/task/t_p/status", headers={"X-Opaque-Id": "abc"})
        assert r.status_code == 200 and r.json()["task"] == "t_p"
        assert r.headers["x-opaque-id"] == "abc"
        assert "x-elastic-product" not in r.headers


async def test_a_control_character_in_the_id_is_refused_before_the_store(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        r = await ov.http.get(f"{API}/task/a%00b/status")
        assert r.status_code == 400 and r.json()["error"] == "druidException"


@pytest.mark.parametrize("opaque", [None, "op-9"])
async def test_a_store_failure_is_a_500_in_druids_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opaque: str | None
) -> None:
    async with inprocess_service(tmp_path) as ov:

        def broken(task_id: str) -> StatusRow | None:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(ov.service.store, "get_status_row", broken)
        headers = {"X-Opaque-Id": opaque} if opaque else {}
        r = await ov.http.get(f"{API}/task/t_x/status", headers=headers)
        assert r.status_code == 500
        assert r.json()["errorMessage"] == "Internal error: RuntimeError: disk on fire"
        assert r.headers.get("x-opaque-id") == opaque


async def test_a_task_that_ends_while_a_listing_reads_the_store_is_listed_once_as_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with inprocess_service(tmp_path) as ov:
        r = await ov.http.post(f"{API}/task", json={"type": "noop", "id": "t_ending", "runTime": 60000})
        assert r.status_code == 200
        running = ov.service.queue.active.get("t_ending")
        assert running is not None
        list_complete = ov.service.store.list_complete

        def ended_meanwhile(**kwargs: Any) -> list[TaskRecord]:
            # The queue takes the task out of its active set only after the store has it as ended:
            # a listing whose store read falls in between sees it in both.
            ended = running.with_(status_code=StatusCode.SUCCESS, runner_state=RunnerState.NONE, duration=5)
            return [*list_complete(**kwargs), ended]

        monkeypatch.setattr(ov.service.store, "list_complete", ended_meanwhile)
        listed = (await ov.http.get(f"{API}/tasks")).json()
        assert [(t["id"], t["statusCode"]) for t in listed] == [("t_ending", "SUCCESS")]
        running_only = (await ov.http.get(f"{API}/runningTasks")).json()
        assert [t["id"] for t in running_only] == ["t_ending"]  # the active listing reads no store


# -- the fast path (StatusFastPath) answers exactly what the full stack does -----------------------


def _without_opaque(headers: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.multi_items() if k != "x-opaque-id"]


async def test_the_fast_path_and_the_full_stack_answer_the_same_bytes(tmp_path: Path) -> None:
    """An X-Opaque-Id sends the request through every middleware and the router; without it the fast
    path answers: the same status, headers and body, for a stored, a kept, an active and an unknown task."""
    from overlord.core.task import Location

    async with inprocess_service(tmp_path) as ov:
        ov.service.store.bulk_insert_tasks(
            [_completed("t_a", error_msg="ünïcode \"quoted\"\n", datasource=None),
             _completed("t_b", location=Location("peon.test", 8100, 8101), status_code=StatusCode.SUCCESS)]
        )  # fmt: skip
        active = await ov.holder()
        for task_id in ("t_a", "t_b", active, "nope"):
            for _ in range(2):  # the first read of a stored task goes to the store, the second to the kept bytes
                fast = await ov.http.get(f"{API}/task/{task_id}/status")
                full = await ov.http.get(f"{API}/task/{task_id}/status", headers={"X-Opaque-Id": "o"})
                assert (fast.status_code, fast.content) == (full.status_code, full.content)
                assert _without_opaque(fast.headers) == _without_opaque(full.headers)
                assert "x-opaque-id" not in fast.headers and full.headers["x-opaque-id"] == "o"
        assert (fast.status_code, ov.service.status_cache.get("nope")) == (404, None)


@pytest.mark.parametrize("ids", [["t_s"], []], ids=["stored", "unknown"])
async def test_a_follower_still_redirects_the_status_path(tmp_path: Path, ids: list[str]) -> None:
    from overlord.core.leadership import Role

    async with inprocess_service(tmp_path) as ov:
        ov.service.store.bulk_insert_tasks([_completed(t) for t in ids])
        leadership = ov.service.leadership
        leadership.role, leadership.leader_url = Role.FOLLOWER, "http://leader.test:8090"
        r = await ov.http.get(f"{API}/task/t_s/status")
        assert r.status_code == 307 and r.headers["location"] == f"http://leader.test:8090{API}/task/t_s/status"
        leadership.leader_url = None
        r = await ov.http.get(f"{API}/task/t_s/status")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        leadership.role = Role.LEADER
        r = await ov.http.get(f"{API}/task/t_s/status")
        assert r.status_code == (200 if ids else 404)


async def test_the_request_limits_and_the_es_media_type_check_still_apply(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        ov.service.store.bulk_insert_tasks([_completed("t_q")])
        r = await ov.http.get(f"{API}/task/t_q/status?x=a%00b")
        assert r.status_code == 400 and r.json()["error"] == "druidException"
        r = await ov.http.get(f"{API}/task/t_q/status?full=true")  # a query Druid ignores here
        assert r.status_code == 200 and r.json()["task"] == "t_q"
        r = await ov.http.get(
            f"{API}/task/t_q/status", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=6"}
        )
        assert r.status_code == 400 and r.json()["error"]["type"] == "media_type_header_exception"
        r = await ov.http.head(f"{API}/task/t_q/status")
        assert r.status_code == 200 and r.content == b""
        r = await ov.http.get(f"{API}/task/a/b/status")
        assert r.status_code == 404 and r.json()["error"] == "druidException"


@pytest.mark.parametrize(
    "rec",
    [
        _completed("t1"),
        _completed("t2", datasource=None, error_msg=None, status_code=StatusCode.SUCCESS),
        _completed("t3", error_msg='tab\t, quote " and ünïcode \U0001f600', created_ms=0, queue_insertion_ms=999),
        _completed("t4", status_code=StatusCode.RUNNING, runner_state=RunnerState.PENDING, duration=-1),
    ],
)
def test_a_status_row_renders_as_the_records_status_json(rec: TaskRecord) -> None:
    import orjson

    from overlord.api.task_status import render
    from overlord.core.task import Location
    from overlord.testing.stores import status_row

    for r in (rec, rec.with_(location=Location("h", 1, 2))):
        assert render(r.id, status_row(r)) == orjson.dumps({"task": r.id, "status": r.status_json()})
