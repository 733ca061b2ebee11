"""The real app and service in this process (httpx's ASGI transport), with the in-memory runner.

Tasks "run" until the test ends them with ``runner.finish``; the test can act as a running task
because it can read the task's token from the runner, as only that task's peon can in production.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from overlord.api.app import create_app
from overlord.clock import SYSTEM_CLOCK, Clock
from overlord.config import load_settings
from overlord.service import Service
from overlord.tasks.action_client import TOKEN_HEADER
from overlord.testing.runner import InMemoryTaskRunner

API = "/druid/indexer/v1"


@dataclass
class InProcess:
    service: Service
    runner: InMemoryTaskRunner
    http: httpx.AsyncClient
    app: Starlette

    def token(self, task_id: str) -> str:
        return self.runner.running[task_id].spec.token

    async def submit(self, spec: dict[str, Any]) -> str:
        r = await self.http.post(f"{API}/task", json=spec)
        assert r.status_code == 200, r.text
        return str(r.json()["task"])

    async def holder(self, ds: str = "wiki", **extra: Any) -> str:
        """A task that stays RUNNING until the test finishes it: something to act for."""
        task_id = await self.submit({"type": "noop", "dataSource": ds, **extra})
        assert task_id in self.runner.running and self.runner.running[task_id].released
        return task_id

    async def act(self, task_id: str, action: dict[str, Any], status: int = 200, token: str | None = None) -> Any:
        headers = {TOKEN_HEADER: token if token is not None else self.token(task_id)}
        r = await self.http.post(f"{API}/action", json={"task": task_id, "action": action}, headers=headers)
        assert r.status_code == status, r.text
        return r.json().get("result") if status == 200 else r.json()

    async def status(self, task_id: str) -> dict[str, Any]:
        r = await self.http.get(f"{API}/task/{task_id}/status")
        assert r.status_code == 200, r.text
        return dict(r.json()["status"])


@contextlib.asynccontextmanager
async def inprocess_service(
    tmp_path: Path, capacity: int = 3, clock: Clock = SYSTEM_CLOCK, **overrides: Any
) -> AsyncIterator[InProcess]:
    settings = load_settings(
        environ={},
        overrides={"data_dir": tmp_path / "var", "worker_capacity": capacity, "start_dir": tmp_path, **overrides},
    )
    runners: list[InMemoryTaskRunner] = []

    def make_runner(svc: Service) -> InMemoryTaskRunner:
        runners.append(InMemoryTaskRunner(capacity, on_exit=lambda e: svc.queue.on_runner_exit(e)))
        return runners[0]

    service = Service(settings, clock=clock, runner_factory=make_runner)
    app = create_app(service)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://overlord.test") as http:
            yield InProcess(service, runners[0], http, app)
