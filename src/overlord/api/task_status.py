"""``GET /druid/indexer/v1/task/{id}/status``, the hottest route: every client polls it.

Three layers of shortcut, each answering exactly what the plain route would:

- ``status_body``: an active task's status comes from the queue, a completed one's rendered bytes
  are kept (its status never changes), else the store's ``StatusRow`` is rendered straight to JSON
  bytes, without a TaskRecord in between.
- ``TaskStatusEndpoint``: the route as a plain ASGI app, without Starlette's Request and Response.
- ``plain_answer``: the plain case answered before the middleware stack and the router see it, by
  the service's HTTP protocol (``status_responder``) or else by the outermost middleware
  (``StatusFastPath``). The plain case is what every middleware passes through untouched: a
  GET of exactly this path with no query, no control character in the id, no ``X-Opaque-Id`` and no
  Elasticsearch media type, on the leader. Anything else (a standby's redirect, a refusal, a proxy
  prefix, a store error) falls through to the full stack, which answers it as for any route.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from overlord.api.errors import druid_error_body
from overlord.api.request_limits import CONTROL_CHARACTER
from overlord.core.protocols import StatusRow
from overlord.errors import TaskNotFound
from overlord.http_protocol import Answer, Headers, Responder
from overlord.isotime import format_ms

if TYPE_CHECKING:
    from overlord.service import Service

PREFIX = "/druid/indexer/v1"
PATH_HEAD = f"{PREFIX}/task/"
PATH_TAIL = "/status"
_JSON = (b"content-type", b"application/json")
_RUNNING = "RUNNING"  # StatusCode.RUNNING's value: the only status of an active task


def render(task_id: str, row: StatusRow) -> bytes:
    """``{"task": ..., "status": TaskStatusPlus}`` from the store's row: byte for byte what
    ``TaskRecord.status_json`` gives for the same task."""
    (_id, group_id, task_type, datasource, created_ms, queued_ms, code, runner, duration, error_msg, host, port,
     tls_port) = row  # fmt: skip
    return orjson.dumps(
        {
            "task": task_id,
            "status": {
                "id": _id,
                "groupId": group_id,
                "type": task_type,
                "createdTime": format_ms(created_ms),
                "queueInsertionTime": format_ms(queued_ms),
                "statusCode": code,
                "status": code,
                "runnerStatusCode": runner,
                "duration": duration,
                "location": {"host": host, "port": port, "tlsPort": tls_port},
                "dataSource": datasource,
                "errorMsg": error_msg,
            },
        }
    )


def not_found_body(task_id: str) -> bytes:
    err = TaskNotFound(f"Cannot find any task with id: [{task_id}]", taskId=task_id)
    body = druid_error_body(err.message, error_code=err.error_code, category=err.category, context={"taskId": task_id})
    return orjson.dumps({"task": task_id, "status": None, **body})


def status_body(svc: Service, task_id: str) -> tuple[int, bytes]:
    """Druid's ``{"task": ..., "status": TaskStatusPlus}`` (or its 404) for one task: the queue's record
    while the task is active, else the rendered bytes kept for it, else one store read."""
    rec = svc.queue.active.get(task_id)
    if rec is not None:
        return 200, orjson.dumps({"task": task_id, "status": rec.status_json()})
    body = svc.status_cache.get(task_id)  # a completed task's status never changes: keep its bytes
    if body is not None:
        return 200, body
    row = svc.store.get_status_row(task_id)
    if row is None:
        return 404, not_found_body(task_id)
    body = render(task_id, row)
    if row[6] != _RUNNING:
        svc.status_cache.put(task_id, body)
    return 200, body


def response_headers(body: bytes) -> Headers:
    """What a Response sends with a JSON body (and what every path of this route sends)."""
    return [(b"content-length", b"%d" % len(body)), _JSON]


class TaskStatusEndpoint:
    """The route as a plain ASGI app (an instance, so Starlette's Route adds no Request wrapper); errors
    raise into the app's exception handlers. Reached when ``StatusFastPath`` passes a request on."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, body = status_body(scope["app"].state.service, scope["path_params"]["task_id"])
        await send({"type": "http.response.start", "status": status, "headers": response_headers(body)})
        await send({"type": "http.response.body", "body": body})


def _plain_headers(headers: Headers) -> bool:
    """No header that a middleware acts on (EsCompatMiddleware: X-Opaque-Id, Elasticsearch media types)."""
    for name, value in headers:
        if name == b"x-opaque-id" or ((name == b"accept" or name == b"content-type") and b"vnd.elasticsearch" in value):
            return False
    return True


def plain_answer(service: Service, path: str, headers: Headers) -> Answer | None:
    """The answer to a GET of ``path`` without query, body or root path, if it is a status poll that
    every middleware passes through untouched; else None (another route, or a middleware would act).
    A store error is None too: the full stack reads again and answers it in its error shape."""
    if not (path.startswith(PATH_HEAD) and path.endswith(PATH_TAIL)):
        return None
    task_id = path[len(PATH_HEAD) : -len(PATH_TAIL)]
    if (
        not task_id
        or "/" in task_id
        or CONTROL_CHARACTER.search(task_id) is not None
        or not _plain_headers(headers)
        or not service.is_leader()
    ):
        return None
    try:
        status, body = status_body(service, task_id)
    except Exception:
        return None
    return status, response_headers(body), body


def status_responder(service: Service) -> Responder:
    """``plain_answer`` for the HTTP protocol (``CoalescingHttpToolsProtocol.answering``)."""
    return functools.partial(plain_answer, service)


class StatusFastPath:
    """The outermost middleware: answers a plain status poll at once (see the module's docstring),
    passes everything else on unchanged. The service's HTTP protocol answers most polls even earlier,
    with the same ``plain_answer``; this catches the rest (e.g. a pipelined request) and in-process apps."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
            and not scope.get("root_path")
            and (answer := plain_answer(self.service, scope["path"], scope["headers"])) is not None
        ):
            status, headers, body = answer
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
