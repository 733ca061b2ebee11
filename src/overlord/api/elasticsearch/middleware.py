"""A pure ASGI middleware for what Elasticsearch clients check on every response.

Every response of an Elasticsearch route (``/_...`` and the banner at ``/``; not the HTML home
page a browser gets there, not Druid's routes) gets ``X-Elastic-Product: Elasticsearch`` (the
official client refuses a server without it); every response echoes the caller's ``X-Opaque-Id``,
errors included. Requests using the clients'
``application/vnd.elasticsearch+json; compatible-with=N`` media types are accepted for N in 7..9,
and JSON answers on ES routes carry that media type back. Pure ASGI, not BaseHTTPMiddleware: it
sits in front of the hot Druid status route, so it only scans headers and wraps ``send``.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overlord.api.elasticsearch.errors import EsError, es_aware, es_error_response, is_es_path
from overlord.api.errors import unexpected_error_handler

PRODUCT = (b"x-elastic-product", b"Elasticsearch")
COMPATIBLE = frozenset({b"7", b"8", b"9"})
_COMPAT_RE = re.compile(rb"compatible-with\s*=\s*([^\s,;]*)")
_unexpected = es_aware(unexpected_error_handler)


def _compat_versions(value: bytes) -> list[bytes]:
    return _COMPAT_RE.findall(value)


class EsCompatMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        es_route = is_es_path(scope["path"])
        extra = [PRODUCT] if es_route else []
        compat: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-opaque-id":
                extra.append((b"x-opaque-id", value))
            elif (name == b"accept" or name == b"content-type") and b"vnd.elasticsearch" in value:
                versions = _compat_versions(value)
                if not versions or any(v not in COMPATIBLE for v in versions):
                    header = "Accept" if name == b"accept" else "Content-Type"
                    err = EsError(
                        f"Invalid media-type value on headers [{header}]",
                        type="media_type_header_exception",
                        caused_by={
                            "type": "status_exception",
                            "reason": f"A compatible version is required on both Content-Type and Accept headers "
                            f"if either one has requested a compatible version; supported versions are [7], [8] "
                            f"and [9] but got [{value.decode('latin-1')}]",
                        },
                    )
                    response = es_error_response(err)
                    response.raw_headers.extend([PRODUCT, *(h for h in extra if h != PRODUCT)])
                    await response(scope, receive, send)
                    return
                if name == b"accept":
                    compat = versions[0]
        if not extra:  # a Druid route without X-Opaque-Id: no header to add or rewrite
            await self._plain(scope, receive, send)
            return
        es_json = (
            b"application/vnd.elasticsearch+json;compatible-with=" + compat if compat is not None and es_route else None
        )
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                if es_json is not None:
                    headers = [
                        (k, es_json) if k == b"content-type" and v.startswith(b"application/json") else (k, v)
                        for k, v in headers
                    ]
                html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                headers.extend(h for h in extra if not (html and h == PRODUCT))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Starlette's last-resort handler sits outside user middleware; answering here keeps
            # the product and X-Opaque-Id headers (and the ES error shape) on unexpected errors too.
            if started:
                raise
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send_with_headers)

    async def _plain(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The common case (every Druid poll): headers untouched, so ``send`` is only watched for the
        start of the response; an unexpected error is still answered here, in the same shape."""
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send)
