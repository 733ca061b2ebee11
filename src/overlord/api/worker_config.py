"""Druid's dynamic worker config: ``GET|POST /druid/indexer/v1/worker`` and ``GET /worker/history``.

Stored in the metadata store under Druid's key ``worker.config`` and audited with the
``X-Druid-Author`` and ``X-Druid-Comment`` headers, as Druid does. The local runner is one worker,
so every select strategy picks it; the config is kept so Druid tools and the console can set and
read it. There is no auto-scaler: ``autoScaler`` must be null.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import MAX_INT, PREFIX, parse_int_param, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.errors import InvalidInput
from overlord.isotime import Interval, format_ms
from overlord.storage.config_audit import AuditInfo

CONFIG_KEY = "worker.config"
AUTHOR_HEADER = "X-Druid-Author"
COMMENT_HEADER = "X-Druid-Comment"
DEFAULT_CONFIG: dict[str, Any] = {
    "type": "default",
    "selectStrategy": {"type": "equalDistribution"},
    "autoScaler": None,
}
STRATEGIES = (
    "equalDistribution",
    "equalDistributionWithCategorySpec",
    "fillCapacity",
    "fillCapacityWithCategorySpec",
    "javascript",
)
HISTORY_DEFAULT_MS = 7 * 24 * 3600 * 1000  # Druid's druid.audit.manager.auditHistoryMillis


def validate_worker_config(body: Any) -> dict[str, Any]:
    """Druid's DefaultWorkerBehaviorConfig; a bad field is a 400 naming it."""
    if not isinstance(body, dict):
        raise InvalidInput("Invalid worker config: expected a JSON object", field="workerConfig")
    kind = body.get("type", "default")
    if kind != "default":
        raise InvalidInput(f"Unknown worker config type[{kind}]: only [default] is supported", field="type")
    strategy = body.get("selectStrategy", {"type": "equalDistribution"})
    if not isinstance(strategy, dict) or strategy.get("type") not in STRATEGIES:
        got = strategy.get("type") if isinstance(strategy, dict) else strategy
        raise InvalidInput(
            f"Unknown selectStrategy type[{got}]: must be one of {list(STRATEGIES)}", field="selectStrategy.type"
        )
    if strategy["type"] == "javascript" and not isinstance(strategy.get("function"), str):
        raise InvalidInput(
            "selectStrategy.function: a javascript strategy needs a function", field="selectStrategy.function"
        )
    affinity = strategy.get("affinityConfig")
    if affinity is not None and not isinstance(affinity, dict):
        raise InvalidInput(
            "selectStrategy.affinityConfig: expected a JSON object", field="selectStrategy.affinityConfig"
        )
    if body.get("autoScaler") is not None:
        raise InvalidInput("autoScaler: this service has no auto-scaler; send null", field="autoScaler")
    return {"type": "default", "selectStrategy": strategy, "autoScaler": None}


async def get_worker_config(request: Request) -> Response:
    stored = await run_in_threadpool(service_of(request).configs.get, CONFIG_KEY)
    return JSONResponse(stored if stored is not None else DEFAULT_CONFIG)


def audit_info(request: Request) -> AuditInfo:
    """Who made a change, from Druid's ``X-Druid-Author`` and ``X-Druid-Comment`` headers."""
    return AuditInfo(
        author=request.headers.get(AUTHOR_HEADER, ""),
        comment=request.headers.get(COMMENT_HEADER, ""),
        ip=request.client.host if request.client else "",
    )


async def set_worker_config(request: Request) -> Response:
    config = validate_worker_config(await read_json_body(request))
    svc = service_of(request)
    await run_in_threadpool(svc.configs.set, CONFIG_KEY, config, audit_info(request), svc.clock.now_ms())
    return Response(status_code=200)


async def audit_history(request: Request, name: str, *, key: str | None = None, kind: str | None = None) -> Response:
    """Druid's audit history of config ``name``, newest first: ``?count=n`` entries, else those within
    ``?interval=`` (default: the last week). ``key`` and ``kind`` rename the entries as Druid keys them."""
    q = request.query_params
    svc = service_of(request)
    raw_interval, raw_count = q.get("interval"), q.get("count")
    interval = Interval.parse(raw_interval.replace("_", "/"), field="interval") if raw_interval else None
    limit = None
    if interval is None and raw_count is not None:
        limit = parse_int_param(raw_count, "count", minimum=1, maximum=MAX_INT)
    elif interval is None:
        now = svc.clock.now_ms()
        interval = Interval(now - HISTORY_DEFAULT_MS, now + 1)
    entries = await run_in_threadpool(lambda: svc.configs.history(name, interval=interval, limit=limit))
    return JSONResponse(
        [
            {
                "key": key or e.key,
                "type": kind or e.type,
                "auditInfo": {"author": e.info.author, "comment": e.info.comment, "ip": e.info.ip},
                "payload": e.payload,
                "auditTime": format_ms(e.created_ms),
            }
            for e in entries
        ]
    )


async def worker_config_history(request: Request) -> Response:
    return await audit_history(request, CONFIG_KEY)


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/worker", get_worker_config, methods=["GET"]),
        Route(f"{PREFIX}/worker", set_worker_config, methods=["POST"]),
        Route(f"{PREFIX}/worker/history", worker_config_history, methods=["GET"]),
    ]
