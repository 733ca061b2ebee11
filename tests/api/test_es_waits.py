"""``wait_for_completion`` on the ``_tasks`` routes ends when the client disconnects, not at its timeout.

Raw ASGI calls, so the test decides when ``receive`` answers ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import orjson
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from overlord.api.elasticsearch.state import EsState, es_state

from .inprocess import InProcess, inprocess_service

pytestmark = pytest.mark.anyio


class RawCall:
    """One request straight into the app: an empty body, then silence until ``disconnect()``."""

    def __init__(self, app: Starlette, method: str, path: str, query: str, *, broken: bool = False) -> None:
        self._broken = broken  # ``receive`` raises after the body, as a failing server's might
        self._left = asyncio.Event()
        self._body_sent = False
        self.sent: list[Message] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"overlord.test")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if self._broken:
            raise OSError("receive failed")
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    def disconnect(self) -> None:
        self._left.set()

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    def json(self) -> dict[str, object]:
        return dict(orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:])))


async def until_waiting(state: EsState, count: int = 1) -> None:
    with anyio.fail_after(5):
        while state.waiter_count() < count:
            await asyncio.sleep(0.001)


def es_id(o: InProcess, task_id: str) -> str:
    state = es_state(o.app)
    return f"{state.node.id}:{state.number_of(task_id)}"


WAITS = {
    "get": ("GET", "/_tasks/{id}", "wait_for_completion=true&timeout=60s"),
    "list": ("GET", "/_tasks", "wait_for_completion=true&timeout=60s&actions=*"),
    "cat": ("GET", "/_cat/tasks", "wait_for_completion=true&timeout=60s"),
    "cancel": ("POST", "/_tasks/{id}/_cancel", "wait_for_completion=true"),
}


@pytest.mark.parametrize("route", list(WAITS))
async def test_a_wait_ends_when_its_client_disconnects(tmp_path: Path, route: str) -> None:
    async with inprocess_service(tmp_path) as o:
        task_id = await o.holder()  # RUNNING until the test ends it (a cancel only asks it to stop)
        state = es_state(o.app)
        method, path, query = WAITS[route]
        call = RawCall(o.app, method, path.format(id=es_id(o, task_id)), query)
        await until_waiting(state)
        assert not call.task.done()

        call.disconnect()
        with anyio.fail_after(2):  # the wait's own timeout is 30 s or more
            await call.task
        assert call.status == 499
        assert state.waiter_count() == 0
        assert task_id in o.service.queue.active  # the wait ended for the disconnect, not the task


async def test_a_connected_waiter_still_gets_the_result(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        task_id = await o.holder()
        state = es_state(o.app)
        call = RawCall(o.app, "GET", f"/_tasks/{es_id(o, task_id)}", "wait_for_completion=true&timeout=60s")
        await until_waiting(state)
        o.runner.finish(task_id)
        with anyio.fail_after(5):
            await call.task
        assert call.status == 200 and call.json()["completed"] is True
        assert state.waiter_count() == 0
        call.disconnect()


async def test_a_wait_whose_disconnect_cannot_be_watched_still_waits_for_the_task(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        task_id = await o.holder()
        state = es_state(o.app)
        path = f"/_tasks/{es_id(o, task_id)}"
        call = RawCall(o.app, "GET", path, "wait_for_completion=true&timeout=60s", broken=True)
        await until_waiting(state)
        # the watcher has failed by now (it fails on its first turn); the wait goes on for the task
        probe = await o.http.get("/_tasks", params={"actions": "*"})
        assert probe.status_code == 200 and not call.task.done() and state.waiter_count() == 1
        o.runner.finish(task_id)
        with anyio.fail_after(5):
            await call.task
        assert call.status == 200 and call.json()["completed"] is True
        assert state.waiter_count() == 0
