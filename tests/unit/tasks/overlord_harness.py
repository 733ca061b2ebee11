"""The real task-action handler behind an ASGI app, for running task code in-process.

Task actions go through the real ``/druid/indexer/v1/action`` route to the real
``TaskActionHandler`` with a real ``TaskLockbox`` and SQLite stores, so the rules tested are the
ones the service runs (a fake that re-implemented them once hid a bug). Only the task API a parent
``index_parallel`` uses (submit, bulk status, reports, shutdown) is answered here: sub-tasks run
synchronously when submitted, or are held RUNNING until shut down. Every toolbox shares one deep
storage: a local folder or the in-memory twin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from starlette.applications import Starlette

from overlord.api.errors import overlord_error_handler
from overlord.api.task_actions import routes as task_action_routes
from overlord.clock import SYSTEM_CLOCK
from overlord.core.data_segment import DataSegment
from overlord.core.locks import TaskLockbox
from overlord.core.protocols import DeepStorage, LoadSpec
from overlord.core.task import TaskRecord
from overlord.core.task_actions import TaskActionHandler
from overlord.core.task_tokens import authenticate, new_token, token_digest
from overlord.errors import OverlordError
from overlord.isotime import Interval
from overlord.runner.toolbox import REPORT_FILE, FileReportSink, PeonRuntime, TaskResult, TaskToolbox, read_json
from overlord.storage.metadata import MetadataStore
from overlord.storage.segment_store import SegmentMetadata
from overlord.tasks.action_client import ACTION_PATH

T = TypeVar("T")
EVERYTHING = Interval.parse("1000-01-01/3000-01-01")


class SyncASGITransport(httpx.BaseTransport):
    """A blocking httpx transport into an ASGI app served on an event loop in a background thread.

    httpx's own ``ASGITransport`` is async only, and task code uses blocking clients.
    """

    def __init__(self, app: Starlette) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asgi-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def call() -> httpx.Response:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await self._asgi.handle_async_request(forwarded)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self.run(call())

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass
class OverlordHarness:
    root: Path
    allowed: list[Path]
    deep_storage: DeepStorage
    fail_insert: bool = False  # answer segmentTransactionalInsert with a 409, as after a lock revocation
    fail_sub_task: str | None = None
    hold_sub_tasks: set[str] = field(default_factory=set)
    ignore_shutdown: bool = False
    report_hook: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    results: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    shutdowns: list[str] = field(default_factory=list)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # submitted sub-tasks
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # sub-task id -> status

    def __post_init__(self) -> None:
        self.store = MetadataStore.from_url(f"sqlite:///{self.root / 'metadata.db'}")
        self.segments = SegmentMetadata(self.store)
        self.lockbox = TaskLockbox(SYSTEM_CLOCK, poll_interval_s=0.05)
        self.active: dict[str, TaskRecord] = {}
        self.handler = TaskActionHandler(
            lockbox=self.lockbox,
            segments=self.segments,
            deep_storage=self.deep_storage,
            clock=SYSTEM_CLOCK,
            active=self.active,
            force_time_chunk_lock=True,
            batch_segment_allocation=False,
            on_locks_changed=lambda _task_id: None,
        )
        app = Starlette(routes=task_action_routes(), exception_handlers={OverlordError: overlord_error_handler})
        queue = SimpleNamespace(authenticate=lambda task_id, token: authenticate(self.active, task_id, token))
        app.state.service = SimpleNamespace(actions=self.handler, queue=queue)
        self.asgi = SyncASGITransport(app)

    def close(self) -> None:
        self.asgi.close()
        self.store.close()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ---- tasks ---------------------------------------------------------------------------------

    def start(self, payload: dict[str, Any]) -> TaskToolbox:
        """Register a task as the queue does when it runs one (active, in the lockbox) and build its toolbox."""
        task_id = payload["id"]
        token = new_token()
        now = SYSTEM_CLOCK.now_ms()
        data_source = payload.get("dataSource") or ((payload.get("spec") or {}).get("dataSchema") or {}).get(
            "dataSource", ""
        )
        rec = TaskRecord(
            id=task_id, group_id=payload.get("groupId") or task_id, type=payload["type"], datasource=data_source,
            created_ms=now, queue_insertion_ms=now, payload=payload, token_hash=token_digest(token),
        )  # fmt: skip
        self.store.insert_task(rec)
        self.active[task_id] = rec
        self.lockbox.add_task(task_id, rec.group_id, rec.type, None, data_source, context=payload.get("context"))
        task_dir = self.task_dir(task_id)
        task_dir.mkdir(parents=True, exist_ok=True)
        runtime = PeonRuntime(
            overlord_url="http://overlord.test",
            task_token=token,
            allowed_input_dirs=tuple(str(p) for p in self.allowed),
        )
        return TaskToolbox(
            task_id, payload, task_dir, runtime, deep_storage=self.deep_storage, reports=FileReportSink(task_dir),
            log=logging.getLogger(f"test.{task_id}"),
        )  # fmt: skip

    def end(self, task_id: str) -> None:
        """What the queue does when a task completes: locks released, pending segments of the group gone."""
        rec = self.active.pop(task_id, None)
        self.lockbox.remove_task(task_id)
        if rec is not None and not any(r.group_id == rec.group_id for r in self.active.values()):
            self.segments.delete_pending_of_group(rec.group_id)

    def run(self, fn: Callable[[TaskToolbox], TaskResult], payload: dict[str, Any]) -> TaskResult:
        toolbox = self.start(payload)
        try:
            return fn(toolbox)
        finally:
            self.end(toolbox.task_id)

    def task_dir(self, task_id: str) -> Path:
        return self.root / "tasks" / task_id

    def report(self, task_id: str) -> Any:
        return read_json(self.task_dir(task_id) / REPORT_FILE)

    # ---- segments ------------------------------------------------------------------------------

    def used(self, ds: str | None = None) -> list[dict[str, Any]]:
        sources = [ds] if ds is not None else self.segments.datasources()
        return [s.to_json() for d in sources for s in self.segments.used_segments(d)]

    def all_segments(self, ds: str = "ds") -> list[dict[str, Any]]:
        return self.used(ds) + [s.to_json() for s in self.segments.unused_segments(ds, EVERYTHING)]

    def insert(self, segment: dict[str, Any], *, used: bool = True) -> None:
        """Put a segment straight into the metadata store (a forged or damaged one)."""
        seg = DataSegment.from_json(segment)
        self.segments.publish([seg], [], SYSTEM_CLOCK.now_ms())
        if not used:
            self.segments.mark_unused(seg.data_source, seg.interval, SYSTEM_CLOCK.now_ms())

    def read_table(self, segment: dict[str, Any]) -> pa.Table:
        with self.deep_storage.open(segment["loadSpec"]) as f:
            return pq.read_table(f)

    def exists(self, load_spec: LoadSpec) -> bool:
        try:
            self.deep_storage.open(load_spec).close()
        except FileNotFoundError:
            return False
        return True

    # ---- HTTP ----------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        if path == ACTION_PATH:
            action = body["action"]
            self.actions.append(action)
            if self.fail_insert and action.get("type") == "segmentTransactionalInsert":
                return httpx.Response(409, json={"error": "druidException", "errorMessage": "locks were revoked"})
            response = self.asgi.handle_request(request)
            if response.status_code == 200:
                self.results.append((action, response.json().get("result")))
            return response
        if path == "/druid/indexer/v1/task" and request.method == "POST":
            return self.submit(body)
        if path == "/druid/indexer/v1/taskStatus":
            return httpx.Response(200, json={i: self.tasks[i] for i in body if i in self.tasks})
        if path.endswith("/reports"):
            task_id = unquote(path.split("/")[-2])
            report = self.report(task_id)
            if report and self.report_hook is not None:
                report = self.report_hook(task_id, report)
            return httpx.Response(200, json=report) if report else httpx.Response(404, json={"error": "no report"})
        if path.endswith("/shutdown"):
            task_id = unquote(path.split("/")[-2])
            self.shutdowns.append(task_id)
            if not self.ignore_shutdown and self.tasks.get(task_id, {}).get("status") == "RUNNING":
                self.tasks[task_id] = {"id": task_id, "status": "FAILED", "errorMsg": "Task was shut down"}
                self.end(task_id)
            return httpx.Response(200, json={"task": task_id})
        return httpx.Response(404, json={"error": f"no route {path}"})

    def submit(self, payload: dict[str, Any]) -> httpx.Response:
        import importlib

        from overlord.core.task import task_type_for

        module, name = task_type_for(payload["type"]).run.split(":")
        run_sub_task = getattr(importlib.import_module(module), name)
        task_id = payload["id"]
        self.payloads[task_id] = payload
        if self.fail_sub_task == task_id:
            self.tasks[task_id] = {"id": task_id, "status": "FAILED", "errorMsg": "boom"}
            return httpx.Response(200, json={"task": task_id})
        if task_id in self.hold_sub_tasks:
            self.start(payload)
            self.tasks[task_id] = {"id": task_id, "status": "RUNNING", "errorMsg": None}
            return httpx.Response(200, json={"task": task_id})
        try:
            self.run(run_sub_task, payload)
            self.tasks[task_id] = {"id": task_id, "status": "SUCCESS", "errorMsg": None}
        except Exception as exc:
            self.tasks[task_id] = {"id": task_id, "status": "FAILED", "errorMsg": str(exc)}
        return httpx.Response(200, json={"task": task_id})
