"""The Coordinator's lookup API, answered as a cluster with lookups initialized and none configured.

Lookups live on query nodes (Brokers, Historicals, Peons serving queries), which this service does not
run; Druid's console still asks for them. Reads say "no lookups" (the console then shows "0 lookups"
rather than an error); writes are refused with a 400 saying why.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.coordinator_datasources import PREFIX
from overlord.api.errors import JSONResponse
from overlord.errors import InvalidInput, NotFound

LOOKUPS = f"{PREFIX}/lookups"
REFUSAL = "Lookups are not supported: this service runs no query nodes to load them"


async def status(request: Request) -> Response:
    return JSONResponse({})  # tier -> lookup -> {"loaded": ...}; no tiers


async def config(request: Request) -> Response:
    return JSONResponse([])  # the tiers configured (or, with ?discover=true, discovered): none


async def config_all(request: Request) -> Response:
    return JSONResponse({})


async def tier(request: Request) -> Response:
    raise NotFound(f"Tier [{request.path_params['tier']}] not found", tier=request.path_params["tier"])


async def refuse(request: Request) -> Response:
    raise InvalidInput(REFUSAL, field="lookups")


def routes() -> list[Route]:
    return [
        Route(f"{LOOKUPS}/status", status, methods=["GET"]),
        Route(f"{LOOKUPS}/config", config, methods=["GET"]),
        Route(f"{LOOKUPS}/config", refuse, methods=["POST"]),
        Route(f"{LOOKUPS}/config/all", config_all, methods=["GET"]),
        Route(f"{LOOKUPS}/config/{{tier}}", tier, methods=["GET"]),
        Route(f"{LOOKUPS}/config/{{tier}}/{{lookup}}", refuse, methods=["POST", "DELETE"]),
    ]
