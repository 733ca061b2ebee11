"""Reconciliation: finished, disappeared, orphaned and changed tasks; the background loops."""

from __future__ import annotations

import asyncio

from client_fakes import FakeOverlord, FakeTime, make_async_client

from overlord.client import Client, ReconcileResult, TaskStatus
from overlord.client.reconcile import diff


def _st(task_id: str, code: str = "RUNNING", runner: str | None = "RUNNING") -> TaskStatus:
    return TaskStatus.model_validate({"id": task_id, "statusCode": code, "runnerStatusCode": runner})


def test_diff_sorts_every_kind_of_drift() -> None:
    local = {"done": "RUNNING", "gone": "PENDING", "moved": "PENDING", "same": "RUNNING", "old": "SUCCESS"}
    server = {
        "done": _st("done", "FAILED", "NONE"),
        "moved": _st("moved"),
        "same": _st("same"),
        "stray": _st("stray", runner="WAITING"),
        "ended_stray": _st("ended_stray", "SUCCESS", "NONE"),
    }
    result = diff(local, server)
    assert set(result.finished) == {"done"}
    assert result.disappeared == ["gone"]
    assert set(result.orphaned) == {"stray"}
    assert set(result.changed) == {"moved"}
    assert sorted(result.unchanged) == ["old", "same"]
    assert not result.clean
    assert ReconcileResult().clean


def test_reconcile_against_the_service(client: Client, fake: FakeOverlord) -> None:
    fake.add("finished", steps=[])
    fake.add("running", position=2)
    fake.add("orphan")
    result = client.reconcile({"finished": "RUNNING", "running": "RUNNING", "lost": "WAITING"})
    assert set(result.finished) == {"finished"}
    assert result.disappeared == ["lost"]
    assert set(result.orphaned) == {"orphan"}
    assert result.unchanged == ["running"]
    assert fake.count("POST", "/taskStatus") == 1  # the ids /tasks missed are checked in bulk


def test_reconcile_after_service_restart_finds_tasks_gone(client: Client, fake: FakeOverlord) -> None:
    fake.add("a")
    fake.add("b")
    fake.tasks.clear()  # a restart with a fresh metadata store
    assert client.reconcile({"a": "RUNNING", "b": "PENDING"}).disappeared == ["a", "b"]


def test_thread_reconciler_runs_once_and_stops(client: Client, fake: FakeOverlord) -> None:
    fake.add("x")
    results: list[ReconcileResult] = []
    loop = client.reconciler(lambda: {}, results.append, interval=0.01)
    loop.run_once()
    assert set(results[0].orphaned) == {"x"}
    loop.start()
    loop.stop()
    assert loop.rounds >= 1


def test_async_reconciler_loops_and_survives_errors(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("x")
    fake.fail("GET", "/tasks", status=500, times=4)  # round one fails after its retries
    results: list[ReconcileResult] = []

    async def on_result(result: ReconcileResult) -> None:
        results.append(result)

    async def main() -> None:
        async with make_async_client(fake, ftime) as ac:
            loop = ac.reconciler(lambda: {"x": "WAITING"}, on_result, interval=5.0)
            loop._sleep = ftime.async_sleep
            await loop.run(rounds=2)
            assert len(results) == 1 and results[0].unchanged == ["x"]
            task = loop.start()
            await asyncio.sleep(0)
            await loop.stop()
            assert task.cancelled() or task.done()

    asyncio.run(main())
