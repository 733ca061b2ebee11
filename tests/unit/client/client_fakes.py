"""Test helpers for the client: an in-memory fake of the Overlord's wire format, served through ``httpx.MockTransport``.

Each status poll moves a task one step along its script (WAITING, PENDING, RUNNING..., then its
outcome), so a test decides exactly how many polls a task takes. Faults (5xx, dropped answers,
connection errors) are queued per route and consumed once each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from overlord.client import AsyncClient, Backoff, RetryPolicy, WaitPolicy
from overlord.clock import ManualClock

BASE = "/druid/indexer/v1"


def live_report(task_id: str, processed: int) -> dict[str, Any]:
    return {
        "ingestionStatsAndErrors": {
            "taskId": task_id,
            "type": "ingestionStatsAndErrors",
            "payload": {
                "ingestionState": "BUILD_SEGMENTS",
                "unparseableEvents": {},
                "rowStats": {
                    "movingAverages": {},
                    "totals": {"buildSegments": {"processed": processed, "unparseable": 0, "thrownAway": 0}},
                },
                "errorMsg": None,
            },
        }
    }


def final_report(task_id: str, processed: int, error: str | None = None) -> dict[str, Any]:
    return {
        "ingestionStatsAndErrors": {
            "taskId": task_id,
            "type": "ingestionStatsAndErrors",
            "payload": {
                "ingestionState": "COMPLETED",
                "unparseableEvents": {},
                "rowStats": {
                    "determinePartitions": {"processed": 0},
                    "buildSegments": {"processed": processed, "unparseable": 0, "thrownAway": 0},
                },
                "errorMsg": error,
            },
        }
    }


@dataclass
class FakeTask:
    id: str
    payload: dict[str, Any]
    steps: list[str] = field(default_factory=lambda: ["WAITING", "PENDING", "RUNNING"])
    outcome: str = "SUCCESS"
    error_msg: str | None = None
    position: int = 0
    log: bytes = b""
    report_visible: bool = True
    processed: int = 100

    @property
    def done(self) -> bool:
        return self.position >= len(self.steps)

    def status(self) -> dict[str, Any]:
        runner = "NONE" if self.done else self.steps[self.position]
        code = self.outcome if self.done else "RUNNING"
        return {
            "id": self.id,
            "groupId": self.id,
            "type": self.payload.get("type"),
            "createdTime": "2024-01-01T00:00:00.000Z",
            "queueInsertionTime": "2024-01-01T00:00:00.000Z",
            "statusCode": code,
            "status": code,
            "runnerStatusCode": runner,
            "duration": 1234 if self.done else -1,
            "location": {"host": "localhost", "port": 8100, "tlsPort": -1},
            "dataSource": self.payload.get("dataSource")
            or self.payload.get("spec", {}).get("dataSchema", {}).get("dataSource"),
            "errorMsg": self.error_msg if self.done else None,
        }


Rule = tuple[str, str, Callable[[httpx.Request], httpx.Response | None]]


class FakeOverlord:
    def __init__(self) -> None:
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[tuple[str, str]] = []
        self.rules: list[Rule] = []
        self.hidden: dict[str, int] = {}
        """Task id -> how many more status reads answer 404 (eventual consistency)."""
        self.default_steps = ["WAITING", "PENDING", "RUNNING"]
        self.default_outcome = "SUCCESS"
        self.default_error: str | None = None
        self.segments: dict[str, list[dict[str, Any]]] = {}
        self.workers: list[dict[str, Any]] = []
        self.pending_segments: dict[str, int] = {}

    # --- fault injection ----------------------------------------------------------------------

    def on(self, method: str, path_suffix: str, action: Callable[[httpx.Request], httpx.Response | None]) -> None:
        """Run ``action`` for the next request matching; a None answer lets the fake handle it."""
        self.rules.append((method, path_suffix, action))

    def fail(self, method: str, path_suffix: str, status: int = 503, times: int = 1, **headers: str) -> None:
        for _ in range(times):
            self.on(method, path_suffix, lambda _r: httpx.Response(status, json={"error": "boom"}, headers=headers))

    def connect_error(self, method: str, path_suffix: str, times: int = 1) -> None:
        def action(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        for _ in range(times):
            self.on(method, path_suffix, action)

    def drop_answer(self, method: str, path_suffix: str) -> None:
        """Handle the request, then lose the answer (the client sees a read error)."""

        def action(request: httpx.Request) -> httpx.Response:
            self._route(request)
            raise httpx.ReadError("connection reset by peer", request=request)

        self.on(method, path_suffix, action)

    def add(self, task_id: str, payload: dict[str, Any] | None = None, **kwargs: Any) -> FakeTask:
        task = FakeTask(id=task_id, payload=payload or {"type": "noop", "id": task_id}, **kwargs)
        self.tasks[task_id] = task
        return task

    # --- transport ----------------------------------------------------------------------------

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        self.requests.append((request.method, path))
        for i, (method, suffix, action) in enumerate(self.rules):
            if method == request.method and path.endswith(suffix):
                del self.rules[i]
                answer = action(request)
                if answer is not None:
                    return answer
                break
        return self._route(request)

    def count(self, method: str, path_suffix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.endswith(path_suffix))

    def _not_found(self, message: str) -> httpx.Response:
        body = {
            "error": "druidException",
            "errorCode": "notFound",
            "persona": "USER",
            "category": "NOT_FOUND",
            "errorMessage": message,
            "context": {},
        }
        return httpx.Response(404, json=body)

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        method = request.method
        params = request.url.params
        if path == "/status/health":
            return httpx.Response(200, text="true")
        if path.startswith("/druid/coordinator/v1/metadata/datasources"):
            rest = path.removeprefix("/druid/coordinator/v1/metadata/datasources").strip("/")
            if not rest:
                return httpx.Response(200, json=sorted(self.segments))
            ds = rest.removesuffix("/segments")
            if ds not in self.segments:
                return self._not_found(f"Datasource[{ds}] not found")
            return httpx.Response(200, json=self.segments[ds])
        assert path.startswith(BASE), path
        route = path.removeprefix(BASE)
        if route == "/task" and method == "POST":
            spec = json.loads(request.content)
            tid = spec["id"]
            if tid in self.tasks:
                body = {
                    "error": "druidException",
                    "errorCode": "entryAlreadyExists",
                    "persona": "USER",
                    "category": "INVALID_INPUT",
                    "errorMessage": f"Task[{tid}] already exists",
                    "context": {},
                }
                return httpx.Response(400, json=body)
            self.add(
                tid,
                spec,
                steps=list(self.default_steps),
                outcome=self.default_outcome,
                error_msg=self.default_error,
            )
            return httpx.Response(200, json={"task": tid})
        if route == "/taskStatus":
            ids = json.loads(request.content)
            if not ids:
                return httpx.Response(400, json={"error": "No TaskIds provided."})
            out = {}
            for tid in ids:
                if tid in self.tasks:
                    st = self.tasks[tid].status()
                    out[tid] = {k: st[k] for k in ("id", "status", "duration", "errorMsg", "location")}
                    self._advance(tid)
            return httpx.Response(200, json=out)
        if route in ("/tasks", "/waitingTasks", "/pendingTasks", "/runningTasks", "/completeTasks"):
            state = params.get("state") or {
                "/waitingTasks": "waiting",
                "/pendingTasks": "pending",
                "/runningTasks": "running",
                "/completeTasks": "complete",
            }.get(route)
            statuses = [t.status() for t in self.tasks.values()]
            if state == "complete":
                statuses = [s for s in statuses if s["statusCode"] != "RUNNING"]
            elif state:
                statuses = [s for s in statuses if s["runnerStatusCode"] == state.upper()]
            if params.get("datasource"):
                statuses = [s for s in statuses if s["dataSource"] == params["datasource"]]
            if params.get("type"):
                statuses = [s for s in statuses if s["type"] == params["type"]]
            return httpx.Response(200, json=statuses)
        if route == "/workers":
            return httpx.Response(200, json=self.workers)
        if route == "/leader":
            return httpx.Response(200, text="http://localhost:8090")
        if route == "/isLeader":
            return httpx.Response(200, json={"leader": True})
        if route.startswith("/datasources/") and route.endswith("/shutdownAllTasks"):
            ds = route.split("/")[2]
            active = [t for t in self.tasks.values() if t.status()["dataSource"] == ds and not t.done]
            if not active:
                return self._not_found(f"No active task for datasource[{ds}]")
            for t in active:
                t.position, t.outcome, t.error_msg = len(t.steps), "FAILED", "Shutdown request from user"
            return httpx.Response(200, json={"dataSource": ds})
        if route.startswith("/pendingSegments/") and method == "DELETE":
            ds = route.split("/")[2]
            return httpx.Response(200, json={"numDeleted": self.pending_segments.pop(ds, 0)})
        if route.startswith("/task/"):
            rest = route.removeprefix("/task/")
            tid, _, action = rest.partition("/")
            task = self.tasks.get(tid)
            if task is None or (action == "status" and self.hidden.get(tid, 0) > 0):
                if tid in self.hidden:
                    self.hidden[tid] -= 1
                return self._not_found(f"Cannot find any task with id: [{tid}]")
            if action == "":
                return httpx.Response(200, json={"task": tid, "payload": task.payload})
            if action == "status":
                body = {"task": tid, "status": task.status()}
                self._advance(tid)
                return httpx.Response(200, json=body)
            if action == "reports":
                if not task.report_visible:
                    return self._not_found(f"No task reports were found for this task[{tid}]")
                if task.done:
                    err = task.error_msg if task.outcome == "FAILED" else None
                    return httpx.Response(200, json=final_report(tid, task.processed, err))
                return httpx.Response(200, json=live_report(tid, task.processed * task.position))
            if action == "log":
                if not task.log:
                    return self._not_found(f"No log was found for this task[{tid}]")
                offset = int(params.get("offset", "0"))
                data = task.log[offset:]
                return httpx.Response(200, content=data, headers={"content-type": "text/plain"})
            if action == "shutdown" and method == "POST":
                task.position, task.outcome, task.error_msg = len(task.steps), "FAILED", "Shutdown request from user"
                return httpx.Response(200, json={"task": tid})
        return httpx.Response(404, text="no such route")

    def _advance(self, tid: str) -> None:
        task = self.tasks[tid]
        if not task.done:
            task.position += 1


@dataclass
class FakeTime:
    """A manual clock plus sleeps that advance it and record every pause."""

    clock: ManualClock = field(default_factory=ManualClock)
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


FAST_RETRY = RetryPolicy(max_attempts=4, backoff=Backoff(initial=0.1, max_interval=1.0))
FAST_WAIT = WaitPolicy(poll=Backoff(initial=0.5, max_interval=4.0), not_found_grace=2.0, report_grace=1.0)


def make_async_client(fake: FakeOverlord, ftime: FakeTime, **kwargs: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "transport": fake.transport,
        "clock": ftime.clock,
        "sleep": ftime.async_sleep,
        "rng": lambda: 0.5,
        "retry": FAST_RETRY,
        "wait_policy": FAST_WAIT,
    }
    options.update(kwargs)
    return AsyncClient("http://overlord.test", **options)


def index_spec(ds: str = "wiki", interval: str = "2015-09-12/2015-09-13", data: str = '{"ts":1}') -> dict[str, Any]:
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": ds,
                "timestampSpec": {"column": "ts", "format": "auto"},
                "dimensionsSpec": {"dimensions": ["page"]},
                "granularitySpec": {"segmentGranularity": "day", "intervals": [interval]},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "inline", "data": data},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": {"type": "index_parallel", "maxNumConcurrentSubTasks": 2},
        },
    }
