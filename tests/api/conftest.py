"""The in-process API tier: the real app (real Service, SQLite in tmp_path) over httpx's ASGI transport.

Fast (no subprocess, no socket), so the validation matrices live here; the e2e tier keeps only
what needs real processes. Tests are ``async`` under anyio's pytest plugin, asyncio backend only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from overlord.api.app import create_app
from overlord.config import Settings
from overlord.service import Service

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Api:
    """The app, its service and a client speaking to it in-process."""

    app: Starlette
    service: Service
    http: httpx.AsyncClient
    settings: Settings
    start_dir: Path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A data dir in tmp_path and a start dir beside it (nothing of the test's cwd is used)."""
    start = tmp_path / "start"
    start.mkdir()
    return Settings(data_dir=tmp_path / "var", host="127.0.0.1", port=8090, worker_capacity=1, start_dir=start)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    service = Service(settings)
    app = create_app(service)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8090") as http:
            yield Api(app, service, http, settings, settings.start_dir)
