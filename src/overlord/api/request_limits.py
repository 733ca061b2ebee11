"""Limits on what a request may carry, enforced before any route sees it.

- A body over ``druid.server.http.maxRequestBodySize`` is refused with a 413 before it is read in
  full: at once when ``Content-Length`` says so, else as soon as the streamed (chunked) bytes pass
  the limit. Without this a 100 MB body blocked the event loop and took several times its size.
- A control character (NUL included) in the path or a query parameter is a 400 naming the
  parameter: no id or name can contain one, and PostgreSQL answers a NUL with an error.

Pure ASGI, not BaseHTTPMiddleware: it sits in front of the hot status route, so the common case
costs a header scan and one regex search over the path.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overlord.api.elasticsearch.errors import es_aware
from overlord.api.errors import overlord_error_handler
from overlord.core.ids import check_lookup_id
from overlord.errors import InvalidInput, OverlordError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_CHARACTER = _CONTROL  # what no id may contain (the status fast path checks it too)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_render = es_aware(overlord_error_handler)


class RequestTooLarge(InvalidInput):
    """The request body is larger than this service accepts (druid.server.http.maxRequestBodySize)."""

    http_status = 413
    error_code = "requestTooLarge"


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request body is larger than the limit of {limit} bytes (druid.server.http.maxRequestBodySize)",
        maxRequestBodySize=limit,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _path_param_name(scope: Scope) -> str:
    """The route parameter that holds the bad character (``taskId``), found only on this error path."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        _match, child = route.matches(scope)
        for name, value in (child.get("path_params") or {}).items():
            if isinstance(value, str) and _CONTROL.search(value):
                return _camel(name)
    return "path"


def check_request_line(scope: Scope) -> None:
    """Refuse control characters in the (decoded) path and in query parameter names and values."""
    path: str = scope.get("path", "")
    if _CONTROL.search(path):
        check_lookup_id(path, _path_param_name(scope))
    query: bytes = scope.get("query_string", b"")
    if b"%" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            check_lookup_id(name, "query parameter name")
            check_lookup_id(value, name)


class RequestLimitsMiddleware:
    """Body size and request-line checks; errors in Druid's shape (Elasticsearch's on ES routes)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_request_line(scope)
            if scope["method"] in _BODY_METHODS:
                for name, value in scope["headers"]:
                    if name == b"content-length":
                        if value.isdigit() and int(value) > self.max_body_bytes:
                            raise too_large(self.max_body_bytes)
                        break
                receive = self._counting(receive)
        except OverlordError as exc:
            response = await _render(Request(scope), exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that raises RequestTooLarge (a 413 from the error handlers) once the limit is passed."""
        seen = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        return counted
