"""``POST /_tasks/_cancel`` of thousands of tasks yields to the event loop: other requests are answered
while it proceeds, and its answer keeps Elasticsearch's shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest

from overlord.api.elasticsearch.state import es_state
from overlord.core.task import RunnerState

from .inprocess import API, inprocess_service

pytestmark = pytest.mark.anyio
QUEUED = 3000


async def test_a_cancel_of_thousands_lets_a_status_poll_through(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        running = await o.holder()
        queued = [o.service.queue.submit({"type": "noop", "dataSource": "wiki"}) for _ in range(QUEUED)]
        active = o.service.queue.active
        assert all(active[t].runner_state is RunnerState.PENDING for t in queued)

        cancel = asyncio.create_task(o.http.post("/_tasks/_cancel", params={"actions": "*"}))
        left_at_polls: list[int] = []  # queued tasks still active whenever a poll is answered mid-cancel
        with anyio.fail_after(60):
            while True:
                await asyncio.sleep(0)  # a turn of the loop, as between two requests of a real server
                status = await o.http.get(f"{API}/task/{queued[-1]}/status")
                assert status.status_code == 200
                if cancel.done():
                    break
                left_at_polls.append(sum(1 for t in queued if t in active))
            response = await cancel
        assert left_at_polls and left_at_polls[0] == QUEUED  # answered while the cancel rendered its answer
        assert any(0 < left < QUEUED for left in left_at_polls)  # and while it shut tasks down
        assert response.status_code == 200, response.text
        node = es_state(o.app).node
        tasks = response.json()["nodes"][node.id]["tasks"]
        assert len(tasks) == QUEUED + 1
        assert all(t["cancelled"] is True and t["node"] == node.id for t in tasks.values())
        assert not any(t in active for t in queued)
        assert running in o.runner.shutdowns  # asked to stop; it ends when its peon does


async def test_a_cancel_stops_queued_tasks_before_running_ones(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path, capacity=1) as o:
        o.runner.end_on_shutdown = True  # a stopped task frees its slot at once
        running = await o.holder()
        queued = [o.service.queue.submit({"type": "noop", "dataSource": "wiki"}) for _ in range(3)]
        response = await o.http.post("/_tasks/_cancel", params={"actions": "*"})
        assert response.status_code == 200, response.text
        assert o.runner.started == [running]  # the freed slot launched none of the tasks being cancelled
        assert not any(t in o.service.queue.active for t in [running, *queued])
