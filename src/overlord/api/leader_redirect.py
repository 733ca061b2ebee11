"""A follower Overlord answers the API with a 307 redirect to the leader, as Druid's Overlord does.

Every request other than the ``/status`` endpoints (health, properties, self-discovery) and the
leadership ones is redirected to the same path and query on the leader's advertised URL (307 keeps
the method and the body, so submits, task actions and peon posts are replayed as they were).
Without a known leader, or while this node is the leader named by a stale lease (its earlier
incarnation), the answer is a 503 to retry. Pure ASGI: it looks at the path only and never reads
the body, so a redirected upload costs nothing here.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from overlord.api.errors import JSONResponse, druid_error_body
from overlord.service import Service

LOCAL_PATHS = frozenset(
    {
        "/status",
        "/status/health",
        "/druid/indexer/v1/leader",
        "/druid/indexer/v1/isLeader",
        "/druid/coordinator/v1/isLeader",
    }
)


class LeaderRedirectMiddleware:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or self.service.is_leader() or path in LOCAL_PATHS or path.startswith("/status/"):
            await self.app(scope, receive, send)
            return
        leader = self.service.leader_url()
        if leader is None or leader == self.service.advertised_url:
            body = druid_error_body(
                "This Overlord is not the leader and no leader is known right now; try again shortly",
                error_code="serviceUnavailable",
                category="RUNTIME_FAILURE",
            )
            response: Response = JSONResponse(body, 503, headers={"Retry-After": "1"})
        else:
            target = leader.rstrip("/") + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            response = Response(status_code=307, headers={"Location": target})
        await response(scope, receive, send)
