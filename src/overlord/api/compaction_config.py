"""The Coordinator's automatic-compaction config API (``/druid/coordinator/v1/config/compaction``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.core.auto_compaction import CompactionConfig
from overlord.errors import NotFound

PREFIX = "/druid/coordinator/v1/config/compaction"


async def get_all(request: Request) -> Response:
    configs = service_of(request).compaction_configs.all()
    return JSONResponse(
        {
            "compactionConfigs": [c.to_json() for c in configs],
            "compactionTaskSlotRatio": 0.1,
            "maxCompactionTaskSlots": 2147483647,
        }
    )


async def post_config(request: Request) -> Response:
    config = CompactionConfig.parse(await read_json_body(request))
    service_of(request).compaction_configs.put(config)
    return Response(status_code=200)


async def get_one(request: Request) -> Response:
    ds = request.path_params["datasource"]
    config = service_of(request).compaction_configs.get(ds)
    if config is None:
        raise NotFound(f"No compaction config for dataSource[{ds}]", dataSource=ds)
    return JSONResponse(config.to_json())


async def delete_one(request: Request) -> Response:
    ds = request.path_params["datasource"]
    if not service_of(request).compaction_configs.delete(ds):
        raise NotFound(f"No compaction config for dataSource[{ds}]", dataSource=ds)
    return Response(status_code=200)


def routes() -> list[Route]:
    return [
        Route(PREFIX, get_all, methods=["GET"]),
        Route(PREFIX, post_config, methods=["POST"]),
        Route(f"{PREFIX}/{{datasource}}", get_one, methods=["GET"]),
        Route(f"{PREFIX}/{{datasource}}", delete_one, methods=["DELETE"]),
    ]
