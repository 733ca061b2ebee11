"""``lockAcquire`` waits hold no thread: fifty waiting tasks leave a one-thread executor free.

Before, each waiting ``lockAcquire`` sat in ``run_in_executor``; with the default executor's few
threads, a handful of waiting tasks stopped every other task's actions.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from overlord.core.locks import TaskLockbox

from .inprocess import inprocess_service

pytestmark = pytest.mark.anyio
DAY = "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"
NEXT_DAY = "2024-01-02T00:00:00.000Z/2024-01-03T00:00:00.000Z"
WAITERS = 50


async def until_waiting(lockbox: TaskLockbox, task_id: str) -> None:
    with anyio.fail_after(5):
        while task_id not in lockbox.waiting_tasks():
            await asyncio.sleep(0.001)


async def test_fifty_waiting_lock_acquires_tie_up_no_executor_thread(tmp_path: Path) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
    async with inprocess_service(tmp_path, capacity=WAITERS + 2) as o:
        lockbox = o.service.lockbox
        holder = await o.holder()
        assert (await o.act(holder, {"type": "lockAcquire", "interval": DAY}))["interval"] == DAY
        ids = [await o.holder() for _ in range(WAITERS)]
        calls: dict[str, asyncio.Task[Any]] = {}
        for task_id in ids:  # one at a time, so their order of arrival is known
            calls[task_id] = asyncio.create_task(o.act(task_id, {"type": "lockAcquire", "interval": DAY}))
            await until_waiting(lockbox, task_id)
        assert set(lockbox.waiting_tasks()) == set(ids)

        with anyio.fail_after(5):  # another task is served while fifty wait
            other = await o.holder()
            assert (await o.status(other))["status"] == "RUNNING"
            assert (await o.act(other, {"type": "lockAcquire", "interval": NEXT_DAY}))["interval"] == NEXT_DAY

        await o.act(holder, {"type": "lockRelease", "interval": DAY})
        done, _ = await asyncio.wait(calls.values(), timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert done == {calls[ids[0]]}  # the first to ask, and only it
        assert calls[ids[0]].result()["interval"] == DAY
        assert set(lockbox.waiting_tasks()) == set(ids[1:])

        for call in calls.values():  # callers that go away withdraw their requests
            call.cancel()
        await asyncio.wait(calls.values(), timeout=5)
        assert lockbox.waiting_tasks() == {}
        assert [t for t in ids if lockbox.find_locks(t)] == [ids[0]]
