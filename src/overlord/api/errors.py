"""The one place errors become HTTP bodies: Druid's shape on Druid routes.

Druid's error body (DruidException): ``{"error": "druidException", "errorCode": ...,
"persona": "USER", "category": ..., "errorMessage": ..., "context": {...}}``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from overlord.errors import OverlordError

log = logging.getLogger(__name__)


class JSONResponse(Response):
    """JSON via orjson: several times faster than the standard library on the hot paths."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_HTTP_CATEGORIES = {
    400: ("invalidInput", "INVALID_INPUT"),
    404: ("notFound", "NOT_FOUND"),
    405: ("methodNotAllowed", "UNSUPPORTED"),
    413: ("requestTooLarge", "INVALID_INPUT"),
    415: ("unsupportedMediaType", "INVALID_INPUT"),
    429: ("capacityExceeded", "CAPACITY_EXCEEDED"),
}


def druid_error_body(
    message: str, *, error_code: str, category: str, context: dict[str, Any] | None = None, persona: str = "USER"
) -> dict[str, Any]:
    return {
        "error": "druidException",
        "errorCode": error_code,
        "persona": persona,
        "category": category,
        "errorMessage": message,
        "message": message,  # what Druid's console shows
        "context": {k: str(v) for k, v in (context or {}).items()},
    }


def druid_error(status: int, message: str, context: dict[str, Any] | None = None) -> JSONResponse:
    code, category = _HTTP_CATEGORIES.get(status, ("internalError", "RUNTIME_FAILURE"))
    return JSONResponse(druid_error_body(message, error_code=code, category=category, context=context), status)


async def overlord_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OverlordError)
    body = druid_error_body(exc.message, error_code=exc.error_code, category=exc.category, context=exc.context)
    return JSONResponse(body, exc.http_status)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else f"No resource at [{request.method} {request.url.path}]"
    return druid_error(exc.status_code, str(message))


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("Unhandled error serving %s %s", request.method, request.url.path)
    return druid_error(500, f"Internal error: {type(exc).__name__}: {exc}")
