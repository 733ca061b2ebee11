"""Druid's Router routes that the web console relies on once SQL answers.

With ``/druid/v2/sql`` answering, Druid's console believes it talks to a Router and probes
``/proxy/enabled``: a 404 there hides every Coordinator and Overlord view. This one process is
Router, Coordinator and Overlord at once, so the management proxy is "enabled" and its explicit
routes (``/proxy/coordinator/...``, ``/proxy/overlord/...``) are the same paths without the prefix.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from overlord.api.errors import JSONResponse

_PROXY_PREFIXES = ("/proxy/coordinator/", "/proxy/overlord/")


async def proxy_enabled(request: Request) -> Response:
    return JSONResponse({"enabled": True})


class RouterProxyMiddleware:
    """Strips the management proxy's prefix, so ``/proxy/overlord/druid/indexer/v1/tasks`` is served
    as ``/druid/indexer/v1/tasks`` (the Router forwards it the same way)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if path.startswith("/proxy/") and scope["type"] == "http":
            for prefix in _PROXY_PREFIXES:
                if path.startswith(prefix):
                    rest = path[len(prefix) - 1 :]
                    scope = {**scope, "path": rest, "raw_path": rest.encode()}
                    break
        await self.app(scope, receive, send)


def routes() -> list[Route]:
    return [Route("/proxy/enabled", proxy_enabled, methods=["GET"])]
