"""The in-process API tier: the real app (real Service, SQLite in tmp_path) over httpx's ASGI transport.

Fast (no subprocess, no socket), so the validation matrices live here; the e2e tier keeps only
what needs real processes. Tests are ``async`` under anyio's pytest plugin, asyncio backend only.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from overlord.api.app import create_app
from overlord.config import Settings
from overlord.service import Service


@pytest.fixture(scope="session")
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


def make_settings(root: Path) -> Settings:
    """A data dir under ``root`` and a start dir beside it (nothing of the test's cwd is used).

    The app has no socket here, so real peons cannot post to it: they give up after 0.3 s (instead
    of riding out three minutes of "restart") and the local runner reads their status file.
    """
    start = root / "start"
    start.mkdir()
    return Settings(
        data_dir=root / "var", host="127.0.0.1", port=closed_port(), worker_capacity=1, start_dir=start,
        action_retry_ms=PEON_RETRY_MS,
    )  # fmt: skip


PEON_RETRY_MS = 300  # peons cannot reach an in-process app: give up fast, the runner reads their status file


def closed_port() -> int:
    """A loopback port nothing listens on (so a peon's post fails at once instead of reaching a stranger)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    """The real app with its lifespan run (service started, then stopped)."""
    service = Service(settings)
    app = create_app(service)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{settings.port}") as http:
            yield Api(app, service, http, settings, settings.start_dir)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """A fresh service per test, for tests that change state or need their own settings."""
    async with running_api(settings) as running:
        yield running


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
async def shared_api(shared_settings: Settings) -> AsyncIterator[Api]:
    """One service per module, for the refusal matrices (a refused request changes nothing)."""
    async with running_api(shared_settings) as running:
        yield running


P = "/druid/indexer/v1"


def index_spec(data_source: str = "wiki", io: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A small valid ``index_parallel`` spec (inline input unless ``io`` says otherwise)."""
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": data_source,
                "timestampSpec": {"column": "ts", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["dim"]},
                "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "none"},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputFormat": {"type": "json"},
                **(io or {"inputSource": {"type": "inline", "data": '{"ts":"2020-01-01T00:00:00Z","dim":"a"}'}}),
            },
            "tuningConfig": {"type": "index_parallel"},
        },
        **extra,
    }


def sub_task_spec(splits: list[dict[str, str]], supervisor: str = "parent", **extra: Any) -> dict[str, Any]:
    """A ``single_phase_sub_task`` as an attacker would post it directly."""
    base = index_spec()
    return {**base, "type": "single_phase_sub_task", "supervisorTaskId": supervisor, "inputSplits": splits, **extra}


def assert_druid_error(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """A Druid-shaped error body with ``status`` whose message names every needle."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "druidException" and body["persona"] == "USER", body
    for needle in needles:
        assert needle in body["errorMessage"], (needle, body)
    return body


def assert_es_error(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """An Elasticsearch-shaped error body with ``status`` whose reason names every needle."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["error"]["root_cause"], body
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    for needle in needles:
        assert needle in body["error"]["reason"], (needle, body)
    return body
