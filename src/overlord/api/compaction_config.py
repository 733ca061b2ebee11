"""The automatic-compaction config API: the Coordinator's ``/druid/coordinator/v1/config/compaction`` and the
Overlord's ``/druid/indexer/v1/compaction/config/...`` that Druid 32+ and its console use.

The cluster-level part (``compactionTaskSlotRatio``, ``maxCompactionTaskSlots``) is stored and audited;
``/compaction/status`` lists no snapshots, as a Coordinator does before its first compaction duty run.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import MAX_INT, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.api.worker_config import audit_history, audit_info
from overlord.core.auto_compaction import CompactionConfig
from overlord.errors import InvalidInput, NotFound

PREFIX = "/druid/coordinator/v1/config/compaction"
OVERLORD = "/druid/indexer/v1/compaction"
CLUSTER_KEY = "coordinator.compaction.config"  # Druid's own key for it
CLUSTER_DEFAULT: dict[str, Any] = {
    "compactionTaskSlotRatio": 0.1,
    "maxCompactionTaskSlots": MAX_INT,
    "useSupervisors": False,
    "engine": "native",
}


def cluster_config(request: Request) -> dict[str, Any]:
    return {**CLUSTER_DEFAULT, **(service_of(request).configs.get(CLUSTER_KEY) or {})}


def _slots(ratio: Any, max_slots: Any) -> dict[str, Any]:
    """The two task-slot settings checked as Druid does: a ratio in [0, 1] and a non-negative int."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        raise InvalidInput(f"compactionTaskSlotRatio must be in [0, 1], got [{ratio}]", field="compactionTaskSlotRatio")
    if isinstance(max_slots, bool) or not isinstance(max_slots, int) or not 0 <= max_slots <= MAX_INT:
        raise InvalidInput(
            f"maxCompactionTaskSlots must be a non-negative integer, got [{max_slots}]", field="maxCompactionTaskSlots"
        )
    return {"compactionTaskSlotRatio": ratio, "maxCompactionTaskSlots": max_slots}


async def _store_cluster(request: Request, changes: dict[str, Any]) -> Response:
    svc = service_of(request)
    config = {**await run_in_threadpool(cluster_config, request), **changes}
    await run_in_threadpool(svc.configs.set, CLUSTER_KEY, config, audit_info(request), svc.clock.now_ms())
    return Response(status_code=200)


async def get_all(request: Request) -> Response:
    configs = service_of(request).compaction_configs.all()
    cluster = await run_in_threadpool(cluster_config, request)
    return JSONResponse({"compactionConfigs": [c.to_json() for c in configs], **cluster})


async def get_cluster(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(cluster_config, request))


async def post_cluster(request: Request) -> Response:
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("Invalid cluster compaction config: expected a JSON object", field="config")
    current = await run_in_threadpool(cluster_config, request)
    ratio = body.get("compactionTaskSlotRatio", current["compactionTaskSlotRatio"])
    changes = _slots(ratio, body.get("maxCompactionTaskSlots", current["maxCompactionTaskSlots"]))
    if body.get("useSupervisors"):
        raise InvalidInput("useSupervisors: compaction supervisors are not supported here", field="useSupervisors")
    if body.get("engine", "native") != "native":
        raise InvalidInput(f"engine: only [native] compaction runs here, got [{body['engine']}]", field="engine")
    return await _store_cluster(request, changes)


async def post_task_slots(request: Request) -> Response:
    """The older ``POST .../config/compaction/taskslots?ratio=&max=``, both optional."""
    current = await run_in_threadpool(cluster_config, request)

    def number(name: str, default: Any, kind: type) -> Any:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be a number, got [{raw}]", field=name) from None

    ratio = number("ratio", current["compactionTaskSlotRatio"], float)
    return await _store_cluster(request, _slots(ratio, number("max", current["maxCompactionTaskSlots"], int)))


async def cluster_history(request: Request) -> Response:
    return await audit_history(request, CLUSTER_KEY)


async def get_configs(request: Request) -> Response:
    """The Overlord's ``GET /compaction/config/datasources``: the per-datasource configs only."""
    configs = service_of(request).compaction_configs.all()
    return JSONResponse({"compactionConfigs": [c.to_json() for c in configs]})


async def datasource_history(request: Request) -> Response:
    """Per-datasource config changes are not audited here: an empty history, as for a config never changed."""
    return JSONResponse([])


async def status(request: Request) -> Response:
    return JSONResponse({"latestStatus": []})


async def post_config_for(request: Request) -> Response:
    """The Overlord's ``POST /compaction/config/datasources/{ds}``: the data source comes from the path."""
    body = await read_json_body(request)
    ds = request.path_params["datasource"]
    if isinstance(body, dict) and body.setdefault("dataSource", ds) != ds:
        raise InvalidInput(f"dataSource[{body['dataSource']}] does not match the path[{ds}]", field="dataSource")
    service_of(request).compaction_configs.put(CompactionConfig.parse(body))
    return Response(status_code=200)


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
        Route(f"{PREFIX}/taskslots", post_task_slots, methods=["POST"]),
        Route(f"{PREFIX}/history", cluster_history, methods=["GET"]),
        Route(f"{PREFIX}/{{datasource}}", get_one, methods=["GET"]),
        Route(f"{PREFIX}/{{datasource}}", delete_one, methods=["DELETE"]),
        Route(f"{PREFIX}/{{datasource}}/history", datasource_history, methods=["GET"]),
        Route("/druid/coordinator/v1/compaction/status", status, methods=["GET"]),
        Route(f"{OVERLORD}/config/cluster", get_cluster, methods=["GET"]),
        Route(f"{OVERLORD}/config/cluster", post_cluster, methods=["POST"]),
        Route(f"{OVERLORD}/config/cluster/history", cluster_history, methods=["GET"]),
        Route(f"{OVERLORD}/config/datasources", get_configs, methods=["GET"]),
        Route(f"{OVERLORD}/config/datasources/{{datasource}}", get_one, methods=["GET"]),
        Route(f"{OVERLORD}/config/datasources/{{datasource}}", post_config_for, methods=["POST"]),
        Route(f"{OVERLORD}/config/datasources/{{datasource}}", delete_one, methods=["DELETE"]),
        Route(f"{OVERLORD}/config/datasources/{{datasource}}/history", datasource_history, methods=["GET"]),
        Route(f"{OVERLORD}/status/datasources", status, methods=["GET"]),
    ]
