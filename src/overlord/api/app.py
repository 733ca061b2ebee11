"""The ASGI application: routes of every API, error handlers, and the service's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api import (
    compaction_config,
    coordinator,
    coordinator_config,
    coordinator_datasources,
    druid_status,
    druid_tasks,
    lookups,
    peon_reports,
    router_proxy,
    sql_task,
    supervisors,
    task_actions,
    task_locks,
    worker_chat,
    worker_config,
)
from overlord.api import sql as sql_api
from overlord.api.elasticsearch import tasks as es_tasks
from overlord.api.elasticsearch.errors import EsError, es_aware, es_error_handler
from overlord.api.elasticsearch.middleware import EsCompatMiddleware
from overlord.api.errors import (
    JSONResponse,
    http_error_handler,
    overlord_error_handler,
    unexpected_error_handler,
)
from overlord.api.leader_redirect import LeaderRedirectMiddleware
from overlord.api.request_limits import RequestLimitsMiddleware
from overlord.api.router_proxy import RouterProxyMiddleware
from overlord.api.task_status import StatusFastPath
from overlord.errors import OverlordError
from overlord.service import Service


async def health(request: Request) -> Response:
    return JSONResponse(True)


async def ready(request: Request) -> Response:
    """Readiness, beside Druid's liveness ``/status/health``: 503 with the reason while tasks cannot run
    (the Dask scheduler unreachable, no usable worker), so a load balancer or an operator can tell."""
    svc: Service = request.app.state.service
    reason = svc.runner_health()
    if reason is not None:
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)
    return JSONResponse({"ready": True})


async def status(request: Request) -> Response:
    svc: Service = request.app.state.service
    return JSONResponse({"version": svc.version, "modules": [], "memory": {}})


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = [
        *druid_tasks.routes(),  # first: Starlette matches in order and task status is the hottest path
        *task_actions.routes(),
        *peon_reports.routes(),
        *coordinator.routes(),
        *coordinator_datasources.routes(),
        *coordinator_config.routes(),
        *lookups.routes(),
        *task_locks.routes(),
        *worker_config.routes(),
        *supervisors.routes(),
        *druid_status.routes(),
        *compaction_config.routes(),
        *worker_chat.routes(),
        *sql_task.routes(),  # before the SQL query API: /druid/v2/sql/task is not a query id
        *sql_api.routes(),
        *router_proxy.routes(),
        Route("/status/health", health, methods=["GET"]),
        Route("/status/ready", ready, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        *es_tasks.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Outermost first: the ES headers go on the limits' refusals too. A plain status poll is answered
        # before all of them (task_status.plain_answer, by the HTTP protocol or StatusFastPath): a
        # middleware that must see status polls has to make plain_answer decline them.
        middleware=[
            Middleware(StatusFastPath, service=service),
            Middleware(RouterProxyMiddleware),
            Middleware(EsCompatMiddleware),
            Middleware(LeaderRedirectMiddleware, service=service),  # a follower sends the API to the leader
            Middleware(RequestLimitsMiddleware, max_body_bytes=service.settings.max_request_body_bytes),
        ],
        exception_handlers={
            EsError: es_error_handler,
            OverlordError: es_aware(overlord_error_handler),
            HTTPException: es_aware(http_error_handler),
            Exception: es_aware(unexpected_error_handler),
        },
    )
    app.state.service = service
    return app
