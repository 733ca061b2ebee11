"""The peon's chat endpoints (``/druid/worker/v1/chat/{taskId}/...``), served by the Overlord.

Tasks' ``location`` points at this service, so these answer for every running task from the live
report its peon keeps in its task directory.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import NO_REPORTS, service_of
from overlord.api.errors import JSONResponse
from overlord.errors import NotFound, TaskNotFound

PREFIX = "/druid/worker/v1/chat"


def _live_report(request: Request) -> dict[str, Any]:
    task_id = request.path_params["task_id"]
    svc = service_of(request)
    rec = svc.queue.active.get(task_id)
    if rec is None:
        if svc.store.get_task(task_id) is None:
            raise TaskNotFound(f"Cannot find any task with id: [{task_id}]", taskId=task_id)
        raise NotFound(f"Task[{task_id}] is not running: live reports exist only while it runs", taskId=task_id)
    raw = svc.read_report(rec)
    if raw is None:
        raise NotFound(NO_REPORTS, taskId=task_id)
    return orjson.loads(raw)  # type: ignore[no-any-return]


def _payload(report: dict[str, Any]) -> dict[str, Any]:
    entry = report.get("ingestionStatsAndErrors") or {}
    return entry.get("payload") or {}


async def live_reports(request: Request) -> Response:
    return JSONResponse(_live_report(request))


async def row_stats(request: Request) -> Response:
    return JSONResponse(_payload(_live_report(request)).get("rowStats", {}))


async def unparseable_events(request: Request) -> Response:
    return JSONResponse(_payload(_live_report(request)).get("unparseableEvents", {}))


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/{{task_id}}/liveReports", live_reports, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/rowStats", row_stats, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/unparseableEvents", unparseable_events, methods=["GET"]),
    ]
