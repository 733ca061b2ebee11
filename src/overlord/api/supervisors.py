"""Druid's supervisor listing (``/druid/indexer/v1/supervisor``): empty until streaming ingestion exists.

Druid's console and tools poll it on every page; the empty answers have Druid's shapes for each
flag (``?full``, ``?state=true``), and a named supervisor is a 404 in Druid's words.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import PREFIX
from overlord.api.errors import JSONResponse
from overlord.errors import NotFound


async def list_supervisors(request: Request) -> Response:
    return JSONResponse([])


async def one_supervisor(request: Request) -> Response:
    sid = request.path_params["supervisor_id"]
    raise NotFound(f"[{sid}] does not exist", supervisorId=sid)


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/supervisor", list_supervisors, methods=["GET"]),
        Route(f"{PREFIX}/supervisor/{{supervisor_id}}", one_supervisor, methods=["GET"]),
        Route(f"{PREFIX}/supervisor/{{supervisor_id}}/status", one_supervisor, methods=["GET"]),
    ]
