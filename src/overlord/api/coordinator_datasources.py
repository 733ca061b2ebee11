"""The Coordinator's data source, load status, server and rule endpoints, from the segment metadata held here.

With ``/druid/coordinator/v1/isLeader`` answered, Druid's web console takes this service for a
Coordinator/Overlord and calls these at once. There are no Historicals: this service is the one
server that holds every used segment (it reads them from deep storage), in Druid's default tier,
and the only retention rule is Druid's default ``loadForever``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import is_leader, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.core.data_segment import DataSegment
from overlord.errors import InvalidInput, NotFound
from overlord.isotime import Interval, format_ms

PREFIX = "/druid/coordinator/v1"
OVERLORD_DS = "/druid/indexer/v1/datasources/{datasource}"
TIER = "_default_tier"
DEFAULT_RULES = [{"type": "loadForever", "tieredReplicants": {TIER: 1}, "useDefaultTierForNull": True}]


def flag(request: Request, name: str) -> bool:
    """Druid's bare query flags: ``?full`` or ``?full=true`` switch them on."""
    value = request.query_params.get(name)
    return value is not None and value.lower() != "false"


def _summary(segs: Sequence[DataSegment]) -> dict[str, Any]:
    """Druid's ``getSimpleDatasource`` properties: per tier and in total, count, size and time range."""
    size = sum(s.size for s in segs)
    return {
        "tiers": {TIER: {"segmentCount": len(segs), "size": size}} if segs else {},
        "segments": {
            "count": len(segs),
            "size": size,
            "replicatedSize": size,
            "minTime": format_ms(min(s.interval.start for s in segs)) if segs else None,
            "maxTime": format_ms(max(s.interval.end for s in segs)) if segs else None,
        },
    }


def _visible(request: Request, ds: str) -> list[DataSegment]:
    return service_of(request).segments.visible_segments(ds)


async def list_datasources(request: Request) -> Response:
    svc = service_of(request)
    names = await run_in_threadpool(svc.segments.datasources)
    if flag(request, "simple"):
        out = [{"name": ds, "properties": _summary(await run_in_threadpool(_visible, request, ds))} for ds in names]
        return JSONResponse(out)
    if flag(request, "full"):
        full = [
            {
                "name": ds,
                "properties": {},
                "segments": [s.to_json() for s in await run_in_threadpool(_visible, request, ds)],
            }
            for ds in names
        ]
        return JSONResponse(full)
    return JSONResponse(names)


def _require_datasource(request: Request, ds: str, *, include_unused: bool = False) -> None:
    if ds not in service_of(request).segments.datasources(include_unused=include_unused):
        raise NotFound(f"Datasource[{ds}] does not exist", dataSource=ds)


async def one_datasource(request: Request) -> Response:
    ds = request.path_params["datasource"]
    _require_datasource(request, ds)
    segs = await run_in_threadpool(_visible, request, ds)
    if flag(request, "full"):
        return JSONResponse({"name": ds, "properties": {}, "segments": [s.to_json() for s in segs]})
    return JSONResponse(_summary(segs))


def _now(request: Request) -> int:
    return service_of(request).clock.now_ms()


def _changed(n: int) -> Response:
    return JSONResponse({"numChangedSegments": n})


async def mark_all_used(request: Request) -> Response:
    """``POST /datasources/{ds}``: every unused segment that nothing overshadows becomes used again."""
    ds = request.path_params["datasource"]
    _require_datasource(request, ds, include_unused=True)
    svc = service_of(request)
    n = await run_in_threadpool(lambda: svc.segments.mark_used(ds, _now(request), interval=_ETERNITY))
    return _changed(n)


_ETERNITY = Interval(-(2**62), 2**62)


async def mark_all_unused(request: Request) -> Response:
    """``DELETE /datasources/{ds}``: mark every segment unused; ``?kill=true&interval=`` submits a kill task."""
    ds = request.path_params["datasource"]
    svc = service_of(request)
    if flag(request, "kill"):
        raw = request.query_params.get("interval")
        if not raw:
            raise InvalidInput("Parameter [interval] is required with kill=true", field="interval")
        interval = Interval.parse(raw.replace("_", "/"), field="interval")
        svc.queue.submit({"type": "kill", "dataSource": ds, "interval": str(interval)})
        return Response(status_code=200)
    _require_datasource(request, ds, include_unused=True)
    return _changed(await run_in_threadpool(svc.segments.mark_unused, ds, _ETERNITY, _now(request)))


async def mark_interval_unused(request: Request) -> Response:
    ds = request.path_params["datasource"]
    interval = Interval.parse(request.path_params["interval"].replace("_", "/"), field="interval")
    svc = service_of(request)
    return _changed(await run_in_threadpool(svc.segments.mark_unused, ds, interval, _now(request)))


async def _payload(request: Request) -> tuple[Interval | None, list[str]]:
    """Druid's SegmentsToUpdateFilter: exactly one of ``interval`` and ``segmentIds``."""
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("Invalid request body: expected a JSON object with [interval] or [segmentIds]")
    raw_interval, ids = body.get("interval"), body.get("segmentIds")
    if (raw_interval is None) == (ids is None):
        raise InvalidInput("Exactly one of [interval] or [segmentIds] must be specified", field="interval")
    if ids is not None:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InvalidInput("[segmentIds] must be a non-empty list of segment ids", field="segmentIds")
        return None, ids
    if not isinstance(raw_interval, str):
        raise InvalidInput("[interval] must be an ISO-8601 interval string", field="interval")
    return Interval.parse(raw_interval, field="interval"), []


async def mark_used_by_filter(request: Request) -> Response:
    ds = request.path_params["datasource"]
    interval, ids = await _payload(request)
    segments = service_of(request).segments
    n = await run_in_threadpool(lambda: segments.mark_used(ds, _now(request), interval=interval, segment_ids=ids))
    return _changed(n)


async def mark_unused_by_filter(request: Request) -> Response:
    ds = request.path_params["datasource"]
    interval, ids = await _payload(request)
    segments = service_of(request).segments
    if interval is not None:
        return _changed(await run_in_threadpool(segments.mark_unused, ds, interval, _now(request)))
    return _changed(await run_in_threadpool(segments.mark_segments_unused, ds, ids, _now(request)))


async def mark_segment_used(request: Request) -> Response:
    ds, sid = request.path_params["datasource"], request.path_params["segment_id"]
    segments = service_of(request).segments
    n = await run_in_threadpool(lambda: segments.mark_used(ds, _now(request), segment_ids=[sid]))
    return JSONResponse({"segmentStateChanged": n > 0})


async def mark_segment_unused(request: Request) -> Response:
    ds, sid = request.path_params["datasource"], request.path_params["segment_id"]
    n = await run_in_threadpool(service_of(request).segments.mark_segments_unused, ds, [sid], _now(request))
    return JSONResponse({"segmentStateChanged": n > 0})


async def datasource_intervals(request: Request) -> Response:
    ds = request.path_params["datasource"]
    _require_datasource(request, ds)
    segs = await run_in_threadpool(_visible, request, ds)
    return JSONResponse(sorted({str(s.interval) for s in segs}, reverse=True))


async def load_status(request: Request) -> Response:
    """Every used segment is served here, so each data source is fully loaded, nothing left to load."""
    names = await run_in_threadpool(service_of(request).segments.datasources)
    if flag(request, "simple"):
        return JSONResponse(dict.fromkeys(names, 0))
    if flag(request, "full"):
        return JSONResponse({TIER: dict.fromkeys(names, 0)})
    return JSONResponse(dict.fromkeys(names, 100.0))


async def servers(request: Request) -> Response:
    svc = service_of(request)

    def used_size() -> int:
        return sum(s.size for ds in svc.segments.datasources() for s in svc.segments.visible_segments(ds))

    host = svc.advertised_url.removeprefix("http://")
    if not flag(request, "simple") and not flag(request, "full"):
        return JSONResponse([host])
    size = await run_in_threadpool(used_size)
    server = {"host": host, "tier": TIER, "type": "historical", "priority": 0, "currSize": size, "maxSize": size}
    return JSONResponse([server])


async def load_queue(request: Request) -> Response:
    """Nothing is ever queued to load or drop: this service reads every used segment from deep storage."""
    host = service_of(request).advertised_url.removeprefix("http://")
    if flag(request, "simple"):
        queue = {"segmentsToLoad": 0, "segmentsToDrop": 0, "segmentsToLoadSize": 0, "segmentsToDropSize": 0}
        return JSONResponse({host: {**queue, "expectedLoadTimeMillis": 0}})
    return JSONResponse({host: {"segmentsToLoad": [], "segmentsToDrop": []}})


def routes() -> list[Route]:
    p = PREFIX
    ds = f"{p}/datasources/{{datasource}}"
    return [
        Route(f"{p}/isLeader", is_leader, methods=["GET"]),
        Route(f"{p}/datasources", list_datasources, methods=["GET"]),
        Route(ds, one_datasource, methods=["GET"]),
        Route(ds, mark_all_used, methods=["POST"]),
        Route(ds, mark_all_unused, methods=["DELETE"]),
        Route(f"{ds}/intervals", datasource_intervals, methods=["GET"]),
        Route(f"{ds}/intervals/{{interval}}", mark_interval_unused, methods=["DELETE"]),
        Route(f"{ds}/markUsed", mark_used_by_filter, methods=["POST"]),
        Route(f"{ds}/markUnused", mark_unused_by_filter, methods=["POST"]),
        Route(f"{ds}/segments/{{segment_id}}", mark_segment_used, methods=["POST"]),
        Route(f"{ds}/segments/{{segment_id}}", mark_segment_unused, methods=["DELETE"]),
        Route(f"{p}/loadstatus", load_status, methods=["GET"]),
        Route(f"{p}/servers", servers, methods=["GET"]),
        Route(f"{p}/loadqueue", load_queue, methods=["GET"]),
        # Druid 31+ serves the mark used/unused calls on the Overlord too, and its console calls them there
        *(
            Route(f"{OVERLORD_DS}{suffix}", handler, methods=[method])
            for suffix, handler, method in (
                ("", mark_all_used, "POST"),
                ("", mark_all_unused, "DELETE"),
                ("/markUsed", mark_used_by_filter, "POST"),
                ("/markUnused", mark_unused_by_filter, "POST"),
                ("/segments/{segment_id}", mark_segment_used, "POST"),
                ("/segments/{segment_id}", mark_segment_unused, "DELETE"),
            )
        ),
    ]
