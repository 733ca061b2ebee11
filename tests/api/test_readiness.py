"""``/status/ready`` says whether tasks can run now, beside Druid's liveness ``/status/health``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.inprocess import inprocess_service

pytestmark = pytest.mark.anyio


async def test_ready_tells_why_tasks_cannot_run(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as o:
        assert (await o.http.get("/status/ready")).json() == {"ready": True}
        o.runner.unhealthy = "Dask scheduler tcp://127.0.0.1:1 is unreachable"
        r = await o.http.get("/status/ready")
        assert r.status_code == 503
        assert r.json() == {"ready": False, "reason": "Dask scheduler tcp://127.0.0.1:1 is unreachable"}
        assert (await o.http.get("/status/health")).json() is True  # still alive: the API serves
