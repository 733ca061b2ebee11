"""ActionClient: the peon's side of docs/task-actions.md."""

from __future__ import annotations

import json

import httpx
import pytest

from overlord.errors import LockError, TaskFailure
from overlord.runner.toolbox import PeonRuntime
from overlord.tasks.action_client import ActionClient


def _client(handler, **kw) -> ActionClient:  # type: ignore[no-untyped-def]
    kw.setdefault("sleep", lambda s: None)
    return ActionClient("http://o", "t1", transport=httpx.MockTransport(handler), **kw)


def test_posts_task_and_action_and_returns_result() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"result": {"version": "v1", "interval": "2020-01-01/2020-01-02"}})

    with _client(handler) as c:
        lock = c.lock_acquire("2020-01-01/2020-01-02", timeout_ms=5)
    assert lock["version"] == "v1"
    path, body = seen[0]
    assert path == "/druid/indexer/v1/action"
    assert body == {
        "task": "t1",
        "action": {
            "type": "lockAcquire",
            "interval": "2020-01-01/2020-01-02",
            "lockType": "EXCLUSIVE",
            "granularity": "timeChunk",
            "timeoutMs": 5,
        },
    }


def test_retries_connection_errors_then_succeeds() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"result": []})

    with _client(handler) as c:
        assert c.lock_list() == []
    assert len(calls) == 3


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rides_out_an_overlord_restart_of_two_minutes() -> None:
    clock = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        if clock.now < 120:
            raise httpx.ConnectError("refused")
        if clock.now < 125:
            return httpx.Response(503, json={"errorMessage": "metadata store unavailable"})
        return httpx.Response(200, json={"result": []})

    with _client(handler, sleep=clock.sleep, monotonic=lambda: clock.now) as c:
        assert c.lock_list() == []
    assert 125 <= clock.now < 131  # backoff is capped at 5 s, so it notices the return promptly


def test_gives_up_after_the_retry_window() -> None:
    clock = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with (
        _client(handler, retry_for_s=180, sleep=clock.sleep, monotonic=lambda: clock.now) as c,
        pytest.raises(TaskFailure, match="unreachable"),
    ):
        c.lock_list()
    assert 170 <= clock.now <= 180


def test_a_4xx_answer_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"errorMessage": "bad"})

    with _client(handler) as c, pytest.raises(TaskFailure, match="bad"):
        c.lock_list()
    assert len(calls) == 1


def test_409_is_lock_error_with_server_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": "druidException", "errorCode": "lockConflict", "errorMessage": "lock revoked by [t2]"}
        return httpx.Response(409, json=body)

    with _client(handler) as c, pytest.raises(LockError, match=r"lock revoked by \[t2\]"):
        c.segment_transactional_insert([{"x": 1}])


def test_400_is_task_failure_and_null_allocate_is_none() -> None:
    answers = iter(
        [httpx.Response(400, json={"errorMessage": "bad action"}), httpx.Response(200, json={"result": None})]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    with _client(handler) as c:
        with pytest.raises(TaskFailure, match="bad action"):
            c.segment_nuke([])
        got = c.segment_allocate(
            data_source="ds",
            timestamp="2020-01-01T00:00:00.000Z",
            query_granularity="NONE",
            preferred_segment_granularity="DAY",
            sequence_name="s",
            previous_segment_id=None,
        )
    assert got is None


def test_missing_overlord_url_fails_clearly() -> None:
    class TB:
        runtime = PeonRuntime(overlord_url="")
        task_id = "t"

    with pytest.raises(TaskFailure, match="overlordUrl"):
        ActionClient.for_toolbox(TB())
