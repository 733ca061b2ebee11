"""The asyncio client: many waits on one event loop, streaming logs, submit_and_wait."""

from __future__ import annotations

import asyncio
import threading

import pytest
from client_fakes import FakeOverlord, FakeTime, index_spec, make_async_client

from overlord.client import Backoff, Client, TaskFailedError, WaitResult


def test_200_tasks_awaited_concurrently_on_one_loop(fake: FakeOverlord, ftime: FakeTime) -> None:
    for i in range(200):
        fake.add(f"t{i}", steps=["WAITING", "PENDING"] + ["RUNNING"] * (i % 7))
        if i % 50 == 0:
            fake.tasks[f"t{i}"].outcome = "FAILED"
            fake.tasks[f"t{i}"].error_msg = "worker lost"
    threads_before = set(threading.enumerate())

    async def main() -> list[WaitResult | BaseException]:
        async with make_async_client(fake, ftime) as ac:
            return await asyncio.gather(*(ac.wait(f"t{i}") for i in range(200)), return_exceptions=True)

    results = asyncio.run(main())
    assert not set(threading.enumerate()) - threads_before  # no thread of the client's outlives it
    failed = [r for r in results if isinstance(r, TaskFailedError)]
    assert len(failed) == 4 and all(f.transient for f in failed)
    ok = [r for r in results if isinstance(r, WaitResult)]
    assert len(ok) == 196 and all(r.status.status_code == "SUCCESS" for r in ok)
    assert fake.count("GET", "/status") == sum(3 + (i % 7) for i in range(200))


def test_async_submit_and_wait_attaches_after_dropped_answer(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.drop_answer("POST", "/task")

    async def main() -> WaitResult:
        async with make_async_client(fake, ftime) as ac:
            return await ac.submit_and_wait(index_spec())

    result = asyncio.run(main())
    assert result.status.status_code == "SUCCESS" and len(fake.tasks) == 1


def test_async_wait_many(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("a")
    fake.add("b", steps=[])

    async def main() -> dict[str, object]:
        async with make_async_client(fake, ftime) as ac:
            return dict(await ac.wait_many(["a", "b"]))

    assert set(asyncio.run(main())) == {"a", "b"}


def _growing_log(fake: FakeOverlord, chunks: list[bytes], steps: int = 3) -> None:
    """The log grows by one chunk at each log read; the task ends after ``steps`` status reads."""
    task = fake.add("t", steps=["RUNNING"] * steps)
    pending = list(chunks)

    def grow(_request: object) -> None:
        if pending:
            task.log += pending.pop(0)

    for _ in range(20):
        fake.on("GET", "/t/log", grow)  # type: ignore[arg-type]


def test_follow_log_streams_until_the_task_ends(client: Client, fake: FakeOverlord) -> None:
    _growing_log(fake, [b"one\n", b"two\n", b"", b"caf\xc3", b"\xa9\n"])
    assert "".join(client.follow_log("t", poll=Backoff(initial=0.1, jitter=False))) == "one\ntwo\ncafé\n"
    assert fake.tasks["t"].done


def test_follow_log_from_the_tail(client: Client, fake: FakeOverlord) -> None:
    fake.add("t", steps=[], log=b"0123456789")
    assert "".join(client.follow_log("t", offset=-4)) == "6789"
    assert "".join(client.follow_log("t", offset=8)) == "89"


def test_follow_log_waits_for_a_log_to_appear(client: Client, fake: FakeOverlord) -> None:
    _growing_log(fake, [b"", b"", b"late\n"], steps=5)
    assert "".join(client.follow_log("t")) == "late\n"


def test_async_follow_log(fake: FakeOverlord, ftime: FakeTime) -> None:
    _growing_log(fake, [b"a\n", b"b\n"])

    async def main() -> str:
        async with make_async_client(fake, ftime) as ac:
            return "".join([chunk async for chunk in ac.follow_log("t")])

    assert asyncio.run(main()) == "a\nb\n"


def test_streaming_op_through_plain_runner_is_refused(fake: FakeOverlord, ftime: FakeTime) -> None:
    from overlord.client import _ops
    from overlord.client._transport import run_async

    fake.add("t", steps=[], log=b"x")

    async def main() -> None:
        async with make_async_client(fake, ftime) as ac:
            with pytest.raises(TypeError, match="streams"):
                await run_async(_ops.follow_log(ac._ctx, "t"), ac._http, ftime.async_sleep)

    asyncio.run(main())
