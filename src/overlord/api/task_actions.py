"""``POST /druid/indexer/v1/action``: task actions from peons (see docs/task-actions.md).

Only the task named in the body may call it: the request carries that task's token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import PREFIX, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.api.peon_reports import calling_task
from overlord.errors import InvalidInput


async def perform_action(request: Request) -> Response:
    body = await read_json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("task"), str):
        raise InvalidInput('Invalid task action: expected {"task": "<taskId>", "action": {"type": ...}}')
    calling_task(request, body["task"])
    result = await service_of(request).actions.perform(body["task"], body.get("action"))
    return JSONResponse({"result": result})


def routes() -> list[Route]:
    return [Route(f"{PREFIX}/action", perform_action, methods=["POST"])]
