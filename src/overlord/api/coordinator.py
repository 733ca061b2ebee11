"""The Coordinator's segment metadata endpoints that Druid users script against."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.coordinator_datasources import flag
from overlord.api.druid_tasks import service_of
from overlord.api.errors import JSONResponse
from overlord.core.timeline import VersionedIntervalTimeline
from overlord.errors import NotFound

PREFIX = "/druid/coordinator/v1/metadata"


_flag = flag


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


async def all_segments(request: Request) -> Response:
    """Used segments of every (or the named) data source; ``?includeOvershadowedStatus`` adds Druid's
    SegmentStatusInCluster fields, overshadowed ones included as ``"overshadowed": true``."""
    svc = service_of(request)
    wanted = request.query_params.getlist("datasources")

    def collect() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ds in svc.segments.datasources():
            if wanted and ds not in wanted:
                continue
            used = svc.segments.used_segments(ds)
            if not _flag(request, "includeOvershadowedStatus"):
                out.extend(s.to_json() for s in svc.segments.visible_segments(ds))
                continue
            shadowed = VersionedIntervalTimeline(used).find_overshadowed()
            out.extend(
                {
                    **s.to_json(),
                    "overshadowed": s in shadowed,
                    "replicationFactor": 1,
                    "numRows": None,
                    "realtime": False,
                }
                for s in used
            )
        return out

    return JSONResponse(await run_in_threadpool(collect))


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/segments", all_segments, methods=["GET"]),
        Route(f"{PREFIX}/datasources", list_datasources, methods=["GET"]),
        Route(f"{PREFIX}/datasources/{{datasource}}/segments", datasource_segments, methods=["GET"]),
        Route(f"{PREFIX}/datasources/{{datasource}}/segments/{{segment_id}}", one_segment, methods=["GET"]),
    ]
