"""Duties: the service's periodic background work (log retention, automatic compaction, later
streaming supervisors), run by one small runner instead of a hand-written loop each.

A duty waits its initial delay, runs, then waits its period after each run ends (Druid's
``scheduleWithFixedDelay``), so a slow run never piles up behind itself. A sync callable runs in an
executor so the event loop never blocks on it; an async callable runs on the loop (use that for
work that must touch loop-owned state, such as the task queue). A failing run is logged with the
duty's name and the duty goes on. The sleep function is injected so tests need no real waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from overlord.clock import SYSTEM_CLOCK, Clock
from overlord.errors import ConfigError, NotFound

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Duty:
    """One periodic job: ``action`` is a plain function (run in an executor) or a coroutine function."""

    name: str
    period_s: float
    action: Callable[[], object]
    initial_delay_s: float | None = None
    """Seconds before the first run; ``None`` means one period."""

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ConfigError(f"Duty[{self.name}] needs a positive period, got {self.period_s}")
        if self.initial_delay_s is not None and self.initial_delay_s < 0:
            raise ConfigError(f"Duty[{self.name}] needs a non-negative initial delay, got {self.initial_delay_s}")

    @property
    def first_delay_s(self) -> float:
        return self.period_s if self.initial_delay_s is None else self.initial_delay_s


@dataclass
class DutyStats:
    """What an operator asks of a duty: has it run, when, and did the last run fail."""

    runs: int = 0
    failures: int = 0
    last_run_ms: int | None = None
    last_error: str | None = None


@dataclass
class _Slot:
    duty: Duty
    stats: DutyStats = field(default_factory=DutyStats)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loop_task: asyncio.Task[None] | None = None
    in_flight: asyncio.Future[object] | None = None


class DutyRunner:
    """Runs each duty in its own asyncio task on the running loop; ``stop`` lets in-flight runs end."""

    def __init__(
        self,
        duties: Iterable[Duty] = (),
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = SYSTEM_CLOCK,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._executor = executor
        self._slots: dict[str, _Slot] = {}
        self._started = False
        for duty in duties:
            self.add(duty)

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def stats(self, name: str) -> DutyStats:
        return self._slot(name).stats

    def add(self, duty: Duty) -> None:
        """Register a duty; when the runner is already started, the duty starts now."""
        if duty.name in self._slots:
            raise ConfigError(f"Two duties are named [{duty.name}]")
        slot = _Slot(duty)
        self._slots[duty.name] = slot
        if self._started:
            self._launch(slot)

    def start(self) -> None:
        """Start every duty's loop; must be called from the running event loop."""
        asyncio.get_running_loop()  # fail here, not in a later await, when called off the loop
        if self._started:
            return
        self._started = True
        for slot in self._slots.values():
            self._launch(slot)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop scheduling runs; wait up to ``timeout_s`` for runs under way, then cancel them.

        Waiting matters: a run in an executor thread cannot be cancelled, and the caller is about
        to close the stores that run is using.
        """
        self._started = False
        loops = [s.loop_task for s in self._slots.values() if s.loop_task is not None]
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        in_flight = [s.in_flight for s in self._slots.values() if s.in_flight is not None]
        if in_flight:
            _, pending = await asyncio.wait(in_flight, timeout=timeout_s)
            for fut in pending:
                log.warning("A duty run did not end within %.0f s of stop; abandoning it", timeout_s)
                fut.cancel()
        for slot in self._slots.values():
            slot.loop_task = None

    async def run_now(self, name: str) -> object:
        """Run one duty once, now, and return its result; its exception reaches the caller.

        A scheduled run of the same duty never overlaps this one.
        """
        return await self._run(self._slot(name))

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise NotFound(f"No duty named [{name}]") from None

    def _launch(self, slot: _Slot) -> None:
        slot.loop_task = asyncio.create_task(self._loop(slot), name=f"duty:{slot.duty.name}")

    async def _loop(self, slot: _Slot) -> None:
        duty = slot.duty
        await self._sleep(duty.first_delay_s)
        while True:
            try:
                await self._run(slot)
            except Exception:
                log.exception(
                    "Duty[%s] failed; it runs again in %s s", duty.name, duty.period_s, extra={"duty": duty.name}
                )
            await self._sleep(duty.period_s)

    async def _run(self, slot: _Slot) -> object:
        async with slot.lock:
            fut = self._invoke(slot.duty.action)
            slot.in_flight = fut
            fut.add_done_callback(lambda done: self._record(slot, done))
            # shielded: cancelling the loop must not abandon a run under way (see ``stop``)
            return await asyncio.shield(fut)

    def _record(self, slot: _Slot, done: asyncio.Future[object]) -> None:
        slot.in_flight = None
        slot.stats.runs += 1
        slot.stats.last_run_ms = self._clock.now_ms()
        exc = None if done.cancelled() else done.exception()
        if done.cancelled() or exc is not None:
            slot.stats.failures += 1
            slot.stats.last_error = "cancelled" if exc is None else f"{type(exc).__name__}: {exc}"
        else:
            slot.stats.last_error = None

    def _invoke(self, action: Callable[[], object]) -> asyncio.Future[object]:
        loop = asyncio.get_running_loop()
        if inspect.iscoroutinefunction(action):
            return asyncio.ensure_future(action())
        return loop.run_in_executor(self._executor, _call_sync, action)


def _call_sync(action: Callable[[], object]) -> object:
    result = action()
    if inspect.isawaitable(result):
        # a lambda wrapping a coroutine function: it would never run in the executor thread
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError("A duty's action returned an awaitable from a plain function; make it async")
    return result
