"""Elasticsearch-shaped errors for the ``_tasks``/``_cat``/``/`` routes.

Elasticsearch's error body is ``{"error": {"root_cause": [...], "type", "reason", ...}, "status"}``,
and its clients read ``error.type`` to pick an exception class, so every failure on an ES route
(our own, Overlord's, Starlette's, or an unexpected one) is turned into that shape here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from overlord.api.errors import JSONResponse
from overlord.errors import OverlordError

log = logging.getLogger(__name__)

Handler = Callable[[Request, Exception], Awaitable[Response]]


def is_es_path(path: str) -> bool:
    """Paths that belong to the Elasticsearch-compatible API (everything else is Druid's)."""
    return path == "/" or path.startswith("/_")


class EsError(Exception):
    """A failure reported in Elasticsearch's words: ``type`` is its exception name in snake case."""

    def __init__(
        self,
        reason: str,
        *,
        type: str = "illegal_argument_exception",
        status: int = 400,
        caused_by: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.type = type
        self.status = status
        self.caused_by = caused_by
        self.metadata = metadata or {}

    def cause(self) -> dict[str, Any]:
        """The exception alone, as it appears nested (``caused_by``, ``node_failures``)."""
        body: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.metadata}
        if self.caused_by is not None:
            body["caused_by"] = self.caused_by
        return body

    def body(self) -> dict[str, Any]:
        root_cause = {"type": self.type, "reason": self.reason, **self.metadata}
        return {"error": {"root_cause": [root_cause], **self.cause()}, "status": self.status}


def illegal_argument(reason: str, caused_by: dict[str, Any] | None = None) -> EsError:
    return EsError(reason, caused_by=caused_by)


def not_found(reason: str) -> EsError:
    return EsError(reason, type="resource_not_found_exception", status=404)


def es_error_response(exc: EsError) -> Response:
    return JSONResponse(exc.body(), exc.status)


_OVERLORD_TYPES = {400: "illegal_argument_exception", 404: "resource_not_found_exception", 409: "status_exception"}


def _es_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, EsError):
        return es_error_response(exc)
    if isinstance(exc, OverlordError):
        kind = _OVERLORD_TYPES.get(exc.http_status, "status_exception" if exc.http_status < 500 else "exception")
        return es_error_response(EsError(exc.message, type=kind, status=exc.http_status))
    if isinstance(exc, HTTPException):
        method, path = request.method, request.url.path
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            reason = f"Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [{allowed}]"
            return es_error_response(EsError(reason, type="status_exception", status=405))
        if exc.status_code == 404:
            reason = f"no handler found for uri [{path}] and method [{method}]"
            return es_error_response(EsError(reason))
        return es_error_response(EsError(str(exc.detail), type="status_exception", status=exc.status_code))
    log.exception("Unhandled error serving %s %s", request.method, request.url.path)
    return es_error_response(EsError(f"{type(exc).__name__}: {exc}", type="exception", status=500))


def es_aware(druid_handler: Handler) -> Handler:
    """Wrap a Druid-shaped handler so that ES routes answer in Elasticsearch's shape instead."""

    async def handler(request: Request, exc: Exception) -> Response:
        if is_es_path(request.url.path):
            return _es_response(request, exc)
        return await druid_handler(request, exc)

    return handler


async def es_error_handler(request: Request, exc: Exception) -> Response:
    return _es_response(request, exc)
