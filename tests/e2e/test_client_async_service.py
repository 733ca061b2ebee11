"""``AsyncClient`` against a real ``overlord start``: every method, 200 waits on one event loop.

One service (2 slots) for the module; each test keeps to its own data source.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import ServiceProcess

from overlord.client import (
    AsyncClient,
    Backoff,
    NotFoundError,
    ReconcileResult,
    RetryPolicy,
    TaskFailedError,
    WaitPolicy,
    deterministic_task_id,
)

API = "/druid/indexer/v1"
FAST_WAIT = WaitPolicy(
    poll=Backoff(initial=0.05, multiplier=2.0, max_interval=0.5, min_interval=0.01),
    timeout=60.0,
    not_found_grace=2.0,
    report_grace=0.5,
)
FAST_RETRY = RetryPolicy(max_attempts=4, backoff=Backoff(initial=0.01, max_interval=0.05))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root: Path = tmp_path_factory.mktemp("async-client-e2e")
    service = ServiceProcess(data_dir=root / "var", capacity=2).start()
    yield service
    service.stop()


@pytest.fixture
def ds() -> str:
    return f"as_{uuid.uuid4().hex[:10]}"


def noop(ds: str, **fields: object) -> dict[str, object]:
    return {"type": "noop", "dataSource": ds, "runTime": 0, **fields}


def client_for(svc: ServiceProcess, **kwargs: object) -> AsyncClient:
    options: dict[str, object] = {"wait_policy": FAST_WAIT, "retry": FAST_RETRY, **kwargs}
    return AsyncClient(svc.url, **options)  # type: ignore[arg-type]


async def wait_state(client: AsyncClient, task_id: str, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.status(task_id)).state != state:
        assert time.monotonic() < deadline, f"{task_id} never reached {state}"
        await asyncio.sleep(0.02)


def test_200_tasks_awaited_concurrently_from_one_event_loop(svc: ServiceProcess, ds: str) -> None:
    threads_before = threading.active_count()

    async def main() -> tuple[list[object], int, dict[str, object]]:
        async with client_for(svc) as client:
            # distinct content, so 200 distinct derived ids; 4 of them fail on purpose
            specs = [noop(ds, logLines=i, fail=f"planned failure {i}" if i % 50 == 7 else False) for i in range(200)]
            outcomes = await asyncio.gather(*(client.submit_and_wait(s) for s in specs), return_exceptions=True)
            peak_threads = threading.active_count()
            ids = [deterministic_task_id(s) for s in specs]
            bulk = await client.wait_many(ids, timeout=5)  # all ended: one bulk request settles them
            return outcomes, peak_threads, bulk  # type: ignore[return-value]

    started = time.monotonic()
    outcomes, peak_threads, bulk = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert elapsed < 45, f"200 concurrent waits took {elapsed:.1f}s"
    assert peak_threads <= threads_before + 1  # no thread per wait
    failures = [o for o in outcomes if isinstance(o, TaskFailedError)]
    successes = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(failures) == 4 and len(successes) == 196, [o for o in outcomes if isinstance(o, BaseException)][:3]
    assert sorted(f.error_msg or "" for f in failures) == sorted(f"planned failure {i}" for i in (7, 57, 107, 157))
    assert all(s.status.status_code == "SUCCESS" for s in successes)  # type: ignore[attr-defined]
    assert len(bulk) == 200 and sum(isinstance(v, TaskFailedError) for v in bulk.values()) == 4
    listed = svc.http.get(f"{API}/tasks", params={"datasource": ds}).json()
    assert len(listed) == 200 and {t["statusCode"] for t in listed} == {"SUCCESS", "FAILED"}


def test_every_async_method_against_the_service(svc: ServiceProcess, ds: str) -> None:
    async def main() -> None:
        async with client_for(svc) as client:
            assert await client.health() is True
            assert await client.is_leader() is True
            assert await client.leader() == svc.url
            assert await client.suggest_max_num_concurrent_sub_tasks(reserve=0) == 2

            done = await client.submit(noop(ds, logLines=3))
            result = await client.wait(done)
            assert result.status.status_code == "SUCCESS" and result.report is None
            assert (await client.status(done)).status_code == "SUCCESS"
            assert set(await client.statuses([done, "missing"])) == {done}
            assert (await client.payload(done))["dataSource"] == ds
            full = await client.log(done)
            assert "log line 3 of 3" in full and await client.log(done, offset=-20) == full[-20:]
            with pytest.raises(NotFoundError):
                await client.report(done)

            long_a = await client.submit(noop(ds, runTime=30_000, logLines=1))
            long_b = await client.submit(noop(ds, runTime=30_000, logLines=2))
            await wait_state(client, long_a, "RUNNING")
            await wait_state(client, long_b, "RUNNING")
            queued = await client.submit(noop(ds, runTime=30_000, logLines=4))
            await wait_state(client, queued, "PENDING")
            try:
                assert {t.id for t in await client.tasks(datasource=ds)} == {done, long_a, long_b, queued}
                assert [t.id for t in await client.tasks(datasource=ds, state="complete")] == [done]
                assert {t.id for t in await client.running_tasks()} >= {long_a, long_b}
                assert queued in {t.id for t in await client.pending_tasks()}
                assert isinstance(await client.waiting_tasks(), list)
                assert done in {t.id for t in await client.complete_tasks(n=50)}
                (worker,) = await client.workers()
                assert worker.curr_capacity_used == 2
                assert await client.shutdown(long_a) == long_a
                with pytest.raises(TaskFailedError, match="Shutdown request from user"):
                    await client.wait(long_a)
            finally:
                assert await client.shutdown_all(ds) == ds
            for task_id in (long_b, queued):
                with pytest.raises(TaskFailedError, match="Shutdown request from user"):
                    await client.wait(task_id)
            with pytest.raises(NotFoundError):
                await client.shutdown_all(ds)
            assert await client.delete_pending_segments(ds) == 0

            streamed = await client.submit(noop(ds, runTime=500, logLines=2))
            poll = Backoff(initial=0.05, multiplier=1.0, max_interval=0.05, jitter=False)
            chunks = [chunk async for chunk in client.follow_log(streamed, poll=poll)]
            assert len(chunks) >= 2 and "finished with status[SUCCESS]" in chunks[-1]
            assert "".join(chunks) == await client.log(streamed)

            assert ds not in await client.datasources()
            with pytest.raises(NotFoundError):
                await client.segments(ds)  # Druid answers 404 for a data source without segments

    asyncio.run(main())


class AsyncDropFirstSubmitAnswer(httpx.AsyncHTTPTransport):
    """The first task POST reaches the server; its answer is lost on the way back."""

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST" and request.url.path == f"{API}/task":
            self.posts += 1
            if self.posts == 1:
                await response.aread()
                await response.aclose()
                raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        return response


def test_async_submit_and_wait_attaches_after_a_dropped_answer(svc: ServiceProcess, ds: str) -> None:
    transport = AsyncDropFirstSubmitAnswer()

    async def main() -> str:
        async with client_for(svc, transport=transport) as client:
            result = await client.submit_and_wait(noop(ds, runTime=100))
            return result.task_id

    task_id = asyncio.run(main())
    assert transport.posts == 2
    listed = svc.http.get(f"{API}/tasks", params={"datasource": ds}).json()
    assert [t["id"] for t in listed] == [task_id]
    assert listed[0]["statusCode"] == "SUCCESS"


def test_async_background_reconciler_reports_drift(svc: ServiceProcess, ds: str) -> None:
    async def main() -> ReconcileResult:
        async with client_for(svc) as client:
            quick = await client.submit(noop(ds))
            await client.wait(quick)
            results: list[ReconcileResult] = []
            got = asyncio.Event()

            def on_result(result: ReconcileResult) -> None:
                results.append(result)
                got.set()

            reconciler = client.reconciler(lambda: {quick: "RUNNING", "lost": "PENDING"}, on_result, interval=0.05)
            reconciler.start()
            await asyncio.wait_for(got.wait(), 10)
            await reconciler.stop()
            assert reconciler.rounds >= 1
            return results[0]

    result = asyncio.run(main())
    assert list(result.finished) and result.disappeared == ["lost"]
