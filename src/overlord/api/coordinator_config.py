"""The Coordinator's dynamic config and retention rules: stored, audited, and shown back as Druid does.

``GET|POST /druid/coordinator/v1/config`` (+ ``/history``) and ``GET|POST /druid/coordinator/v1/rules/{ds}``
(+ ``/history``, ``/rules/history``). Both are kept in the metadata store with an audit entry per change
(``X-Druid-Author``/``X-Druid-Comment``), so Druid's console and tools can set and read them. Nothing here
loads or drops segments (there are no Historicals): rules and the balancing settings are recorded, not acted on.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.coordinator_datasources import DEFAULT_RULES, PREFIX, flag
from overlord.api.druid_tasks import MAX_INT, read_json_body, service_of
from overlord.api.errors import JSONResponse
from overlord.api.worker_config import audit_history, audit_info
from overlord.errors import InvalidInput

CONFIG_KEY = "coordinator.config"
DEFAULT_RULES_KEY = "_default"
_VERBS, _KINDS = ("load", "drop", "broadcast"), ("Forever", "ByInterval", "ByPeriod")
RULE_TYPES = (*(f"{verb}{kind}" for verb in _VERBS for kind in _KINDS), "dropBeforeByPeriod")

# Druid's CoordinatorDynamicConfig defaults; a POST changes the fields it names and keeps the others.
DEFAULT_CONFIG: dict[str, Any] = {
    "markSegmentAsUnusedDelayMillis": 900000,
    "maxSegmentsToMove": 100,
    "replicantLifetime": 15,
    "replicationThrottleLimit": 500,
    "balancerComputeThreads": 1,
    "killDataSourceWhitelist": [],
    "killTaskSlotRatio": 0.1,
    "maxKillTaskSlots": MAX_INT,
    "killPendingSegmentsSkipList": [],
    "maxSegmentsInNodeLoadingQueue": 500,
    "decommissioningNodes": [],
    "pauseCoordination": False,
    "replicateAfterLoadTimeout": False,
    "useRoundRobinSegmentAssignment": True,
    "smartSegmentLoading": True,
    "debugDimensions": None,
    "turboLoadingNodes": [],
    "cloneServers": {},
}
_RATIOS = ("killTaskSlotRatio",)
_LISTS = ("killDataSourceWhitelist", "killPendingSegmentsSkipList", "decommissioningNodes", "turboLoadingNodes")


def _check_field(name: str, value: Any) -> Any:
    default = DEFAULT_CONFIG[name]
    if name in _RATIOS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidInput(f"{name} must be a number in [0, 1], got [{value}]", field=name)
    elif name in _LISTS:
        if isinstance(value, str):  # Druid also takes a comma-separated string here
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"{name} must be a list of strings", field=name)
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise InvalidInput(f"{name} must be true or false, got [{value}]", field=name)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{name} must be a non-negative integer, got [{value}]", field=name)
    elif name == "cloneServers" and not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", field=name)
    return value


def merge_config(current: dict[str, Any], body: Any) -> dict[str, Any]:
    """``body`` over ``current``; a bad field is a 400 naming it, unknown fields are ignored as Druid does."""
    if not isinstance(body, dict):
        raise InvalidInput("Invalid coordinator dynamic config: expected a JSON object", field="config")
    return {**current, **{k: _check_field(k, v) for k, v in body.items() if k in DEFAULT_CONFIG}}


def _current(request: Request) -> dict[str, Any]:
    return {**DEFAULT_CONFIG, **(service_of(request).configs.get(CONFIG_KEY) or {})}


async def get_config(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_current, request))


async def set_config(request: Request) -> Response:
    body = await read_json_body(request)
    config = merge_config(await run_in_threadpool(_current, request), body)
    svc = service_of(request)
    await run_in_threadpool(svc.configs.set, CONFIG_KEY, config, audit_info(request), svc.clock.now_ms())
    return Response(status_code=200)


async def config_history(request: Request) -> Response:
    return await audit_history(request, CONFIG_KEY)


def _rules_key(ds: str) -> str:
    return f"rules.{ds}"


def stored_rules(request: Request, ds: str) -> list[dict[str, Any]]:
    """The rules set for ``ds``: none means the cluster defaults apply (Druid's ``_default``)."""
    rules = service_of(request).configs.get(_rules_key(ds))
    if ds == DEFAULT_RULES_KEY and rules is None:
        return list(DEFAULT_RULES)
    return list(rules or [])


def validate_rules(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise InvalidInput("Invalid rules: expected a JSON list of rules", field="rules")
    for i, rule in enumerate(body):
        if not isinstance(rule, dict) or rule.get("type") not in RULE_TYPES:
            got = rule.get("type") if isinstance(rule, dict) else rule
            raise InvalidInput(
                f"rules[{i}].type: unknown rule type[{got}], must be one of {list(RULE_TYPES)}",
                field=f"rules[{i}].type",
            )
    return body


async def all_rules(request: Request) -> Response:
    svc = service_of(request)

    def collect() -> dict[str, Any]:
        names = svc.segments.datasources(include_unused=True)
        return {
            DEFAULT_RULES_KEY: stored_rules(request, DEFAULT_RULES_KEY),
            **{ds: stored_rules(request, ds) for ds in names},
        }

    return JSONResponse(await run_in_threadpool(collect))


async def datasource_rules(request: Request) -> Response:
    ds = request.path_params["datasource"]
    rules = await run_in_threadpool(stored_rules, request, ds)
    if flag(request, "full") and ds != DEFAULT_RULES_KEY:
        rules += await run_in_threadpool(stored_rules, request, DEFAULT_RULES_KEY)
    return JSONResponse(rules)


async def set_rules(request: Request) -> Response:
    ds = request.path_params["datasource"]
    rules = validate_rules(await read_json_body(request))
    svc = service_of(request)
    await run_in_threadpool(svc.configs.set, _rules_key(ds), rules, audit_info(request), svc.clock.now_ms())
    return Response(status_code=200)


async def rules_history(request: Request) -> Response:
    ds = request.path_params["datasource"]
    return await audit_history(request, _rules_key(ds), key=ds, kind="rules")


def routes() -> list[Route]:
    p = PREFIX
    return [
        Route(f"{p}/config", get_config, methods=["GET"]),
        Route(f"{p}/config", set_config, methods=["POST"]),
        Route(f"{p}/config/history", config_history, methods=["GET"]),
        Route(f"{p}/rules", all_rules, methods=["GET"]),
        Route(f"{p}/rules/{{datasource}}", datasource_rules, methods=["GET"]),
        Route(f"{p}/rules/{{datasource}}", set_rules, methods=["POST"]),
        Route(f"{p}/rules/{{datasource}}/history", rules_history, methods=["GET"]),
    ]
