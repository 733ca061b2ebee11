"""The Coordinator's segment metadata endpoints that Druid users script against."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import service_of
from overlord.api.errors import JSONResponse
from overlord.errors import NotFound

PREFIX = "/druid/coordinator/v1/metadata"


def _flag(request: Request, name: str) -> bool:
    """Druid's bare query flags: ``?full`` or ``?full=true`` switch them on."""
    value = request.query_params.get(name)
    return value is not None and value.lower() != "false"


async def list_datasources(request: Request) -> Response:
    svc = service_of(request)
    names = svc.segments.datasources(include_unused=_flag(request, "includeUnused"))
    if not _flag(request, "full"):
        return JSONResponse(names)
    return JSONResponse(
        [
            {"name": ds, "properties": {}, "segments": [s.to_json() for s in svc.segments.visible_segments(ds)]}
            for ds in names
        ]
    )


async def datasource_segments(request: Request) -> Response:
    ds = request.path_params["datasource"]
    segs = service_of(request).segments.visible_segments(ds)
    if not segs and ds not in service_of(request).segments.datasources(include_unused=True):
        raise NotFound(f"Datasource[{ds}] has no segments", dataSource=ds)
    if _flag(request, "full"):
        return JSONResponse([s.to_json() for s in segs])
    return JSONResponse([s.identifier for s in segs])


async def one_segment(request: Request) -> Response:
    ds, segment_id = request.path_params["datasource"], request.path_params["segment_id"]
    found = service_of(request).segments.segment(ds, segment_id)
    if found is None or (not found[1] and not _flag(request, "includeUnused")):
        raise NotFound(f"Segment[{segment_id}] of datasource[{ds}] not found", dataSource=ds, segmentId=segment_id)
    return JSONResponse(found[0].to_json())


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/datasources", list_datasources, methods=["GET"]),
        Route(f"{PREFIX}/datasources/{{datasource}}/segments", datasource_segments, methods=["GET"]),
        Route(f"{PREFIX}/datasources/{{datasource}}/segments/{{segment_id}}", one_segment, methods=["GET"]),
    ]
