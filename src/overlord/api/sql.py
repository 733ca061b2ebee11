"""Druid's SQL query API: ``POST /druid/v2/sql`` and ``DELETE /druid/v2/sql/{sqlQueryId}``.

The request is Druid's SqlQuery (``query``, ``resultFormat``, ``header``, ``typesHeader``,
``sqlTypesHeader``, ``context`` with ``sqlQueryId`` and ``timeout``, ``parameters``), or a
``text/plain`` body holding just the query. Parsing happens on the event loop (bad SQL is a 400 at
once); the query runs on the engine's threads with a timeout, so the task API never waits for it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import _complete_tasks, check_json_depth, service_of
from overlord.api.errors import druid_error
from overlord.errors import InvalidInput
from overlord.sql.model import ReadModel, Result
from overlord.sql.system_tables import ServerInfo
from overlord.sql.types import druid_type

if TYPE_CHECKING:
    from overlord.service import Service

FORMATS = {f.lower(): f for f in ("object", "array", "objectLines", "arrayLines", "csv")}
QUERY_ID_HEADER = "X-Druid-SQL-Query-Id"
HEADER_INCLUDED = "X-Druid-SQL-Header-Included"


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"Invalid [{name}]: expected true or false, got [{value!r}]", field=name)
    return value


async def _read_request(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type == "text/plain":
        return {"query": raw.decode("utf-8", errors="replace")}
    if content_type in ("application/x-www-form-urlencoded", ""):  # curl --data's default: the query, URL-encoded
        text = raw.decode("utf-8", errors="replace")
        if not text.lstrip().startswith("{"):
            return {"query": unquote_plus(text) if content_type else text}
    if content_type and content_type not in ("application/json", "text/json") and not content_type.endswith("+json"):
        raise InvalidInput(f"Unsupported Content-Type [{content_type}]: send application/json or text/plain")
    if not raw.strip():
        raise InvalidInput("Request body is empty: expected a JSON object with [query]")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object with [query]")
    check_json_depth(body)
    return body


def _timeout_ms(context: dict[str, Any], default_ms: int) -> int:
    raw = context.get("timeout")
    if raw is None:
        return default_ms
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"Invalid [context.timeout]: [{raw}] is not a number of milliseconds") from None
    if value < 0:
        raise InvalidInput(f"Invalid [context.timeout]: [{raw}] must not be negative", field="context.timeout")
    return value or default_ms


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return f"{v:%Y-%m-%dT%H:%M:%S}.{v.microsecond // 1000:03d}Z"
    if isinstance(v, date):
        return f"{v:%Y-%m-%d}T00:00:00.000Z"
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _header_rows(result: Result, types: bool, sql_types: bool) -> list[list[Any]]:
    dtypes = [druid_type(t) for t in result.types]
    rows: list[list[Any]] = [list(result.columns)]
    if types:
        rows.append([t.native for t in dtypes])
    if sql_types:
        rows.append([t.sql for t in dtypes])
    return rows


def _header_object(result: Result, types: bool, sql_types: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, t in zip(result.columns, result.types, strict=True):
        dt = druid_type(t)
        entry: dict[str, str] = {}
        if types:
            entry["type"] = dt.native
        if sql_types:
            entry["sqlType"] = dt.sql
        out[name] = entry or None
    return out


def render(result: Result, fmt: str, header: bool, types: bool, sql_types: bool) -> tuple[bytes, str]:
    """The body and media type of a result in one of Druid's result formats."""
    rows = [[_value(v) for v in row] for row in result.rows]
    dumps: Callable[[Any], bytes] = orjson.dumps
    if fmt in ("object", "objectLines"):
        objects: list[Any] = [dict(zip(result.columns, row, strict=True)) for row in rows]
        if header:
            objects.insert(0, _header_object(result, types, sql_types))
        if fmt == "object":
            return dumps(objects), "application/json"
        return b"".join(dumps(o) + b"\n" for o in objects) + b"\n", "text/plain"
    if fmt in ("array", "arrayLines"):
        arrays: list[Any] = (_header_rows(result, types, sql_types) if header else []) + rows
        if fmt == "array":
            return dumps(arrays), "application/json"
        return b"".join(dumps(a) + b"\n" for a in arrays) + b"\n", "text/plain"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerows(_header_rows(result, types, sql_types))
    for row in rows:
        writer.writerow(["" if v is None else orjson.dumps(v).decode() if isinstance(v, list) else v for v in row])
    buf.write("\n")
    return buf.getvalue().encode(), "text/csv"


def _read_model(svc: Service, wants_tasks: bool) -> ReadModel:
    """Active tasks are taken here, on the loop that owns them; completed ones come from the store."""
    active = list(svc.queue.active_in_state(None)) if wants_tasks else []
    return ReadModel(
        active_tasks=active,
        complete_tasks=lambda: _complete_tasks(svc, None, None, None, None),
        server=ServerInfo(svc.location.host or "localhost", svc.settings.port, svc.version, svc.started_ms),
    )


async def post_sql(request: Request) -> Response:
    svc = service_of(request)
    body = await _read_request(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("Missing [query]: the request needs a SQL query string", field="query")
    raw_format = body.get("resultFormat") or "object"
    fmt = FORMATS.get(str(raw_format).lower())
    if fmt is None:
        raise InvalidInput(
            f"Invalid [resultFormat]: [{raw_format}] is not one of {', '.join(FORMATS.values())}", field="resultFormat"
        )
    # typesHeader and sqlTypesHeader add to the header row: without ``header`` they do nothing, as in Druid.
    header, types, sql_types = _bool(body, "header"), _bool(body, "typesHeader"), _bool(body, "sqlTypesHeader")
    context = body.get("context") or {}
    if not isinstance(context, dict):
        raise InvalidInput("Invalid [context]: expected a JSON object", field="context")
    parameters = body.get("parameters") or []
    if not isinstance(parameters, list):
        raise InvalidInput("Invalid [parameters]: expected a JSON array", field="parameters")
    query_id = str(context.get("sqlQueryId") or uuid.uuid4())
    timeout_ms = _timeout_ms(context, svc.settings.sql_timeout_ms)

    if not svc.sql_started:  # the first query loads DuckDB and sqlglot: not on the event loop
        await asyncio.get_running_loop().run_in_executor(None, lambda: svc.sql)
    engine = svc.sql
    prepared = engine.prepare(query, parameters, query_id)
    model = _read_model(svc, "tasks" in prepared.sys_tables)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(engine.executor, engine.execute, prepared, model)
    try:
        result = await asyncio.wait_for(asyncio.shield(future), timeout_ms / 1000)
    except TimeoutError:
        if engine.cancel(query_id, timed_out=True):
            _keep_interrupting(svc, query_id)
        result = await future  # raises QueryTimeout once DuckDB has stopped (or answers if it just finished)
    content, media_type = render(result, fmt, header, types, sql_types)
    headers = {QUERY_ID_HEADER: query_id}
    if header:
        headers[HEADER_INCLUDED] = "yes"
    return Response(content, media_type=media_type, headers=headers)


_interrupters: set[asyncio.Task[None]] = set()


def _keep_interrupting(svc: Service, query_id: str, period_s: float = 0.05, limit_s: float = 10.0) -> None:
    """DuckDB drops an interrupt that arrives between two statements: repeat it until the query ends."""

    async def run() -> None:
        deadline = asyncio.get_running_loop().time() + limit_s
        while svc.sql.interrupt(query_id) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(period_s)

    task = asyncio.create_task(run())
    _interrupters.add(task)
    task.add_done_callback(_interrupters.discard)


async def cancel_sql(request: Request) -> Response:
    query_id = request.path_params["query_id"]
    svc = service_of(request)
    if svc.sql_started and svc.sql.cancel(query_id):
        _keep_interrupting(svc, query_id)
        return Response(status_code=202)
    return druid_error(404, f"Query [{query_id}] is not running", {"sqlQueryId": query_id})


def routes() -> list[Route]:
    return [
        Route("/druid/v2/sql", post_sql, methods=["POST"]),
        Route("/druid/v2/sql/", post_sql, methods=["POST"]),
        Route("/druid/v2/sql/{query_id}", cancel_sql, methods=["DELETE"]),
    ]
