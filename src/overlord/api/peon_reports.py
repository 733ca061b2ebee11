"""What a running task's peon posts to the Overlord: its live report, its completion report and its
final status (``/druid/indexer/v1/peon/{taskId}/...``). Only the task itself may call these: each call
carries the task's token, which the Overlord checks against the hash it stored at launch.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import PREFIX, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.core.task import TaskRecord
from overlord.errors import InvalidInput
from overlord.tasks.action_client import TOKEN_HEADER

PEON_PREFIX = f"{PREFIX}/peon"


def calling_task(request: Request, task_id: str) -> TaskRecord:
    """The active task ``task_id``, if the request carries its token (401 without one, 403 if wrong)."""
    return service_of(request).queue.authenticate(task_id, request.headers.get(TOKEN_HEADER))


async def _report_body(request: Request) -> bytes:
    report = await read_json_body(request)
    if not isinstance(report, dict):
        raise InvalidInput("Invalid report: expected a JSON object")
    return orjson.dumps(report)


async def post_live_report(request: Request) -> Response:
    rec = calling_task(request, request.path_params["task_id"])
    service_of(request).live_reports[rec.id] = await _report_body(request)
    return JSONResponse({"task": rec.id})


async def post_completion_report(request: Request) -> Response:
    rec = calling_task(request, request.path_params["task_id"])
    body = await _report_body(request)
    svc = service_of(request)
    svc.live_reports[rec.id] = body  # served at once, before and after it is stored
    await run_in_threadpool(svc.task_logs.push_report, rec.id, body)
    return JSONResponse({"task": rec.id})


async def post_status(request: Request) -> Response:
    rec = calling_task(request, request.path_params["task_id"])
    body = await read_json_body(request)
    if not isinstance(body, dict) or body.get("status") not in ("SUCCESS", "FAILED"):
        raise InvalidInput('Invalid status: expected {"status": "SUCCESS"|"FAILED", "errorMsg": ...}')
    error = body.get("errorMsg")
    service_of(request).queue.report_status(rec.id, body["status"] == "SUCCESS", str(error) if error else None)
    return JSONResponse({"task": rec.id})


def routes() -> list[Route]:
    return [
        Route(f"{PEON_PREFIX}/{{task_id}}/liveReports", post_live_report, methods=["POST"]),
        Route(f"{PEON_PREFIX}/{{task_id}}/reports", post_completion_report, methods=["POST"]),
        Route(f"{PEON_PREFIX}/{{task_id}}/status", post_status, methods=["POST"]),
    ]
