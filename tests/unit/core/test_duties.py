"""The duty runner, driven by a sleep that ends only when the test says so: no real waiting."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from overlord.clock import ManualClock
from overlord.core.duties import Duty, DutyRunner
from overlord.errors import ConfigError, NotFound

WAIT_S = 5.0  # an upper bound on waits for events that do happen; never slept through


class ManualSleep:
    """Stands in for ``asyncio.sleep``: records each delay asked for and returns on ``wake``."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._pending: list[asyncio.Future[None]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, delay: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        async with self._changed:
            self.delays.append(delay)
            self._pending.append(fut)
            self._changed.notify_all()
        await fut

    async def sleepers(self, count: int) -> None:
        """Wait until ``count`` sleeps are under way (the duties reached their next sleep)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self._pending) >= count), WAIT_S)

    def wake(self) -> None:
        pending, self._pending = self._pending, []
        for fut in pending:
            if not fut.done():
                fut.set_result(None)


async def first_run_woken(sleep: ManualSleep, name: str, action: Callable[[], object], **kw: Any) -> DutyRunner:
    """A started runner whose one duty (no initial delay) has just been woken for its first run."""
    runner = DutyRunner([Duty(name, 1.0, action, initial_delay_s=0)], sleep=sleep, **kw)
    runner.start()
    await sleep.sleepers(1)
    sleep.wake()
    return runner


def run(test: Callable[[ManualSleep], Awaitable[None]]) -> None:
    async def main() -> None:
        await test(ManualSleep())

    asyncio.run(main())


def test_first_run_after_the_initial_delay_then_every_period() -> None:
    calls: list[int] = []

    async def body(sleep: ManualSleep) -> None:
        runner = DutyRunner([Duty("count", 60.0, lambda: calls.append(1), initial_delay_s=5.0)], sleep=sleep)
        runner.start()
        await sleep.sleepers(1)
        assert sleep.delays == [5.0] and calls == []
        for expected in (1, 2):
            sleep.wake()
            await sleep.sleepers(1)
            assert len(calls) == expected
        assert sleep.delays == [5.0, 60.0, 60.0]
        await runner.stop()

    run(body)


def test_initial_delay_defaults_to_one_period() -> None:
    async def body(sleep: ManualSleep) -> None:
        runner = DutyRunner([Duty("d", 30.0, lambda: None)], sleep=sleep)
        runner.start()
        await sleep.sleepers(1)
        assert sleep.delays == [30.0]
        await runner.stop()

    run(body)


def test_a_failing_run_is_logged_with_the_duty_name_and_the_duty_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[str] = []

    def flaky() -> None:
        outcomes.append("ran")
        if len(outcomes) == 1:
            raise OSError("disk full")

    async def body(sleep: ManualSleep) -> None:
        runner = await first_run_woken(sleep, "log-retention", flaky, clock=ManualClock(7))
        await sleep.sleepers(1)
        stats = runner.stats("log-retention")
        assert (stats.runs, stats.failures, stats.last_error) == (1, 1, "OSError: disk full")
        sleep.wake()
        await sleep.sleepers(1)
        assert outcomes == ["ran", "ran"]
        stats = runner.stats("log-retention")
        assert (stats.runs, stats.failures, stats.last_error, stats.last_run_ms) == (2, 1, None, 7)
        await runner.stop()

    with caplog.at_level(logging.ERROR, logger="overlord.core.duties"):
        run(body)
    [record] = caplog.records
    assert "Duty[log-retention] failed" in record.getMessage()
    assert record.duty == "log-retention"  # type: ignore[attr-defined]
    assert record.exc_info is not None and "disk full" in str(record.exc_info[1])


def test_a_sync_action_runs_in_a_thread_and_the_loop_stays_free() -> None:
    release = threading.Event()
    seen: dict[str, Any] = {}

    def blocking() -> str:
        seen["thread"] = threading.get_ident()
        # only the event loop sets ``release``: this returns True only if the loop was not blocked
        seen["released"] = release.wait(WAIT_S)
        return "done"

    async def body(sleep: ManualSleep) -> None:
        runner = DutyRunner([Duty("blocking", 1.0, blocking)], sleep=sleep)
        asyncio.get_running_loop().call_soon(release.set)
        assert await runner.run_now("blocking") == "done"
        assert seen == {"thread": seen["thread"], "released": True}
        assert seen["thread"] != threading.get_ident()

    run(body)


def test_an_async_action_runs_on_the_loop() -> None:
    async def body(sleep: ManualSleep) -> None:
        loop = asyncio.get_running_loop()

        async def on_loop() -> bool:
            return asyncio.get_running_loop() is loop

        runner = DutyRunner([Duty("tick", 0.5, on_loop, initial_delay_s=0)], sleep=sleep)
        assert await runner.run_now("tick") is True

    run(body)


def test_run_now_raises_what_the_action_raises_and_knows_only_registered_duties() -> None:
    def broken() -> None:
        raise ValueError("bad config")

    async def body(sleep: ManualSleep) -> None:
        runner = DutyRunner([Duty("broken", 1.0, broken)], sleep=sleep)
        with pytest.raises(ValueError, match="bad config"):
            await runner.run_now("broken")
        assert runner.stats("broken").failures == 1
        with pytest.raises(NotFound, match="no-such"):
            await runner.run_now("no-such")

    run(body)


def test_a_manual_run_never_overlaps_a_scheduled_run() -> None:
    events: list[str] = []

    async def body(sleep: ManualSleep) -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def action() -> None:
            events.append("start")
            started.set()
            await release.wait()
            events.append("end")

        runner = await first_run_woken(sleep, "compaction", action)
        await asyncio.wait_for(started.wait(), WAIT_S)
        manual = asyncio.create_task(runner.run_now("compaction"))
        for _ in range(5):  # all on one loop: without the guard the manual run would start here
            await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(manual, WAIT_S)
        assert events == ["start", "end", "start", "end"]
        assert runner.stats("compaction").runs == 2
        await runner.stop()

    run(body)


def test_stop_waits_for_a_run_under_way() -> None:
    started = threading.Event()
    release = threading.Event()
    finished: list[bool] = []

    def action() -> None:
        started.set()
        release.wait(WAIT_S)
        finished.append(True)

    async def body(sleep: ManualSleep) -> None:
        runner = await first_run_woken(sleep, "retention", action)
        assert await asyncio.to_thread(started.wait, WAIT_S)
        stopping = asyncio.create_task(runner.stop())
        for _ in range(5):  # plenty of loop turns for a stop that does not wait to finish
            await asyncio.sleep(0)
        assert not stopping.done()  # guaranteed: the run is blocked until ``release``
        release.set()
        await asyncio.wait_for(stopping, WAIT_S)
        assert finished == [True]
        assert sleep.delays == [0]  # no run was scheduled after stop

    run(body)


def test_stop_abandons_a_run_that_outlasts_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    started = threading.Event()
    release = threading.Event()

    async def body(sleep: ManualSleep) -> None:
        runner = await first_run_woken(sleep, "stuck", lambda: started.set() or release.wait(WAIT_S))
        assert await asyncio.to_thread(started.wait, WAIT_S)
        await runner.stop(timeout_s=0.01)
        release.set()

    with caplog.at_level(logging.WARNING, logger="overlord.core.duties"):
        run(body)
    assert any("did not end within" in r.getMessage() for r in caplog.records)


def test_a_duty_added_after_start_starts_at_once() -> None:
    async def body(sleep: ManualSleep) -> None:
        runner = DutyRunner(sleep=sleep)
        runner.start()
        runner.add(Duty("late", 2.0, lambda: None, initial_delay_s=1.0))
        await sleep.sleepers(1)
        assert sleep.delays == [1.0] and runner.names == ["late"]
        await runner.stop()

    run(body)


def test_a_plain_function_returning_a_coroutine_is_refused() -> None:
    async def work() -> None:
        return None

    async def body(sleep: ManualSleep) -> None:
        runner = DutyRunner([Duty("wrapped", 1.0, lambda: work())], sleep=sleep)
        with pytest.raises(TypeError, match="make it async"):
            await runner.run_now("wrapped")

    run(body)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Duty("x", 0, lambda: None), "positive period"),
        (lambda: Duty("x", 1.0, lambda: None, initial_delay_s=-1), "non-negative initial delay"),
        (lambda: DutyRunner([Duty("x", 1.0, lambda: None), Duty("x", 2.0, lambda: None)]), "Two duties"),
    ],
)
def test_wiring_mistakes_are_config_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_start_off_the_event_loop_fails_at_once() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        DutyRunner([Duty("x", 1.0, lambda: None)]).start()
