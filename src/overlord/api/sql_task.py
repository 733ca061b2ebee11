"""Druid's SQL-based ingestion API: ``POST /druid/v2/sql/task`` and ``GET /druid/v2/sql/task/enabled``.

The request is Druid's SQL request (``query``, ``context``, ``parameters``; the result-format fields
and unknown fields are ignored, as Druid's JSON mapper does). An INSERT or REPLACE is stored as a ``query_controller``
task with id ``query-<sqlQueryId>`` and answered ``202 {"taskId", "state": "RUNNING"}``; status,
reports and cancellation go through the Tasks API. As in Druid's SqlTaskResource, a body that is
not a SQL request is a plain Druid error, while a statement that cannot run answers
``{"taskId": <sqlQueryId>, "state": "FAILED", "error": <Druid error>}`` with the error's status.
"""

from __future__ import annotations

import importlib
import uuid
from types import ModuleType
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import read_json_body, service_of
from overlord.api.errors import JSONResponse, druid_error_body
from overlord.core.ids import validate_id
from overlord.errors import InvalidInput, OverlordError, TaskNotFound
from overlord.sql.ingest_statement import IngestStatement, bind_parameters, parse

PATH = "/druid/v2/sql/task"


async def enabled(request: Request) -> Response:
    return JSONResponse({"enabled": True})


def _request(body: Any) -> tuple[str, dict[str, Any], list[Any] | None]:
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object with a [query] field", field="query")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("Field [query] must be a non-empty string", field="query")
    context = body.get("context")
    context = {} if context is None else context
    if not isinstance(context, dict):
        raise InvalidInput("Field [context] must be a JSON object", field="context")
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, list):
        raise InvalidInput("Field [parameters] must be a list", field="parameters")
    query_id = context.get("sqlQueryId")
    if query_id is not None:
        validate_id(query_id, "context.sqlQueryId")
    return query, dict(context), parameters


def _check_translates(stmt: IngestStatement) -> None:
    """``extern_query.check_translates``, imported on first use (with NumPy, pyarrow and sqlglot): the
    service starts without them, and callers run this off the event loop."""
    from overlord.sql.extern_query import check_translates

    check_translates(stmt)


async def _controller_module() -> ModuleType:
    """The query_controller task's module, imported off the event loop on first use (it imports pyarrow)."""
    return await run_in_threadpool(importlib.import_module, "overlord.tasks.query_controller")


async def submit(request: Request) -> Response:
    query, context, parameters = _request(await read_json_body(request))
    query_id = str(context.get("sqlQueryId") or uuid.uuid4())
    context["sqlQueryId"] = query_id
    try:
        sql = bind_parameters(query, parameters) if parameters else query
        stmt = parse(sql)
        await run_in_threadpool(_check_translates, stmt)  # its first call imports sqlglot and pyarrow
        controller = await _controller_module()
        payload = controller.task_payload(controller.controller_task_id(query_id), stmt, sql, context)
        headers = {k: request.headers[k] for k in ("X-Opaque-Id", "traceparent") if k in request.headers}
        task_id = service_of(request).queue.submit(payload, headers)
    except OverlordError as exc:
        body = druid_error_body(exc.message, error_code=exc.error_code, category=exc.category, context=exc.context)
        return JSONResponse({"taskId": query_id, "state": "FAILED", "error": body}, exc.http_status)
    return JSONResponse({"taskId": task_id, "state": "RUNNING"}, 202)


async def shutdown(request: Request) -> Response:
    """Not in Druid: Airflow's DruidHook (SQL mode) posts ``<sql task endpoint>/<taskId>/shutdown`` when an
    ingestion outlives ``max_ingestion_time``; it stops a ``query_controller`` as the Tasks API's shutdown does."""
    task_id = request.path_params["task_id"]
    rec = service_of(request).store.get_task(task_id)
    if rec is None or rec.type != (await _controller_module()).CONTROLLER_TYPE:
        raise TaskNotFound(f"Cannot find any SQL-based ingestion task with id: [{task_id}]", taskId=task_id)
    service_of(request).queue.shutdown(task_id)
    return JSONResponse({"task": task_id})


def routes() -> list[Route]:
    return [
        Route(f"{PATH}/enabled", enabled, methods=["GET"]),
        Route(f"{PATH}/{{task_id}}/shutdown", shutdown, methods=["POST"]),
        Route(PATH, submit, methods=["POST"]),
        Route(f"{PATH}/", submit, methods=["POST"]),
    ]
