"""``POST /druid/indexer/v1/action``: task actions from peons (see docs/task-actions.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import PREFIX, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.errors import InvalidInput


async def perform_action(request: Request) -> Response:
    body = await read_json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("task"), str):
        raise InvalidInput('Invalid task action: expected {"task": "<taskId>", "action": {"type": ...}}')
    result = await service_of(request).actions.perform(body["task"], body.get("action"))
    return JSONResponse({"result": result})


def routes() -> list[Route]:
    return [Route(f"{PREFIX}/action", perform_action, methods=["POST"])]
