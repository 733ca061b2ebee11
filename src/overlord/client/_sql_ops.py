"""SQL operations, written once as sans-IO generators like ``_ops``: queries on ``/druid/v2/sql``
and SQL-based ingestion on ``/druid/v2/sql/task``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from overlord.client import errors
from overlord.client._protocol import Context, Op, Request, call, error_for, log, quote, send

SQL = "/druid/v2/sql"
RESULT_FORMATS = ("object", "array", "objectLines", "arrayLines", "csv")


def _param(value: Any) -> dict[str, Any]:
    """A Druid SQL parameter for a Python value (already-typed dicts pass through)."""
    if isinstance(value, Mapping) and "type" in value:
        return dict(value)
    if isinstance(value, bool):
        return {"type": "BOOLEAN", "value": value}
    if isinstance(value, int):
        return {"type": "BIGINT", "value": value}
    if isinstance(value, float):
        return {"type": "DOUBLE", "value": value}
    if value is None:
        return {"type": "VARCHAR", "value": None}
    return {"type": "VARCHAR", "value": str(value)}


def sql(
    ctx: Context,
    query: str,
    *,
    parameters: Sequence[Any] | None = None,
    context: Mapping[str, Any] | None = None,
    result_format: str = "object",
    header: bool = False,
    types_header: bool = False,
    sql_types_header: bool = False,
    query_id: str | None = None,
) -> Op[Any]:
    """Run a Druid SQL query (``POST /druid/v2/sql``).

    Returns the rows: a list of dicts for ``object``, a list of lists for ``array``, the raw text
    for ``objectLines``, ``arrayLines`` and ``csv``. ``parameters`` bind ``?`` in order (Python
    values or Druid's ``{"type", "value"}``); ``query_id`` sets ``context.sqlQueryId``, the id
    ``cancel_sql`` takes. Bad SQL raises ``BadRequest`` with Druid's message.
    """
    if result_format not in RESULT_FORMATS:
        raise ValueError(f"result_format must be one of {', '.join(RESULT_FORMATS)}")
    ctx_body = dict(context or {})
    if query_id is not None:
        ctx_body["sqlQueryId"] = query_id
    body: dict[str, Any] = {"query": query, "resultFormat": result_format, "context": ctx_body}
    if parameters:
        body["parameters"] = [_param(p) for p in parameters]
    if header or types_header or sql_types_header:
        body.update(header=True, typesHeader=types_header, sqlTypesHeader=sql_types_header)
    response = yield from call(ctx, Request("POST", SQL, json=body))
    if result_format in ("object", "array"):
        return response.json()
    return response.text


def cancel_sql(ctx: Context, query_id: str) -> Op[bool]:
    """Cancel a running query by its ``sqlQueryId`` (``DELETE /druid/v2/sql/{id}``); False if not running."""
    request = Request("DELETE", f"{SQL}/{quote(query_id)}")
    response = yield from send(ctx, request)
    if response.status_code == 404:
        return False
    if not response.ok:
        raise error_for(request, response)
    return True


def sql_task(ctx: Context, query: str, *, context: Mapping[str, Any] | None = None) -> Op[str]:
    """Submit SQL-based ingestion (``INSERT``/``REPLACE``) to ``POST /druid/v2/sql/task``; returns the
    controller task's id, for ``wait``.

    The request carries a ``sqlQueryId`` (given, or made once here), so a retried request that finds
    its task already submitted attaches to it: Druid names the controller task ``query-<sqlQueryId>``.
    """
    ctx_body = dict(context or {})
    ctx_body.setdefault("sqlQueryId", str(uuid.uuid4()))
    request = Request("POST", f"{SQL}/task", json={"query": query, "context": ctx_body})
    response = yield from send(ctx, request)
    if response.ok:
        answer = response.json()
        task_id = str(answer.get("taskId")) if isinstance(answer, dict) else ""
        if not task_id:
            raise errors.HTTPStatusError(
                f"POST {request.path}: no taskId in the answer {response.text[:200]!r}",
                status_code=response.status_code,
                method="POST",
                path=request.path,
            )
        log.info("submitted SQL task %s", task_id, extra={"task_id": task_id, "action": "submit"})
        return task_id
    error = error_for(request, response)
    if isinstance(error, errors.TaskAlreadyExists):
        return f"query-{ctx_body['sqlQueryId']}"
    raise error
