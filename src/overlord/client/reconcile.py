"""Reconcile what an orchestrator believes about its tasks with what the service knows.

After an orchestrator crash, a restart of the service or a lost answer, local state drifts:
tasks finished unseen, vanished, or run without anyone tracking them. ``reconcile`` lists the
service's tasks once (plus one bulk status request for ids the list missed) and sorts the drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from overlord.client import _ops
from overlord.client._protocol import Context, Op
from overlord.client.models import TaskStatus

log = logging.getLogger("overlord.client")

ACTIVE_STATES = frozenset({"WAITING", "PENDING", "RUNNING"})
TERMINAL_STATES = frozenset({"SUCCESS", "FAILED"})


@dataclass(frozen=True)
class ReconcileResult:
    finished: dict[str, TaskStatus] = field(default_factory=dict)
    """Believed active, now SUCCESS or FAILED."""
    disappeared: list[str] = field(default_factory=list)
    """Believed active, unknown to the service."""
    orphaned: dict[str, TaskStatus] = field(default_factory=dict)
    """Active on the service, unknown locally."""
    changed: dict[str, TaskStatus] = field(default_factory=dict)
    """Still active, in another state than believed (e.g. PENDING -> RUNNING)."""
    unchanged: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.finished or self.disappeared or self.orphaned)


def diff(local_states: Mapping[str, str], server: Mapping[str, TaskStatus]) -> ReconcileResult:
    """Sort the drift between believed states (task id -> state name) and the service's statuses."""
    result = ReconcileResult()
    for task_id, believed in local_states.items():
        belief = str(believed).upper()
        current = server.get(task_id)
        if belief in TERMINAL_STATES:
            if current is not None and current.is_terminal and current.state != belief:
                result.changed[task_id] = current
            else:
                result.unchanged.append(task_id)
        elif current is None:
            result.disappeared.append(task_id)
        elif current.is_terminal:
            result.finished[task_id] = current
        elif current.state != belief and belief in ACTIVE_STATES:
            result.changed[task_id] = current
        else:
            result.unchanged.append(task_id)
    for task_id, current in server.items():
        if task_id not in local_states and not current.is_terminal:
            result.orphaned[task_id] = current
    return result


def reconcile(ctx: Context, local_states: Mapping[str, str], *, datasource: str | None = None) -> Op[ReconcileResult]:
    """Compare believed states (id -> WAITING/PENDING/RUNNING/SUCCESS/FAILED) with ``GET /tasks``."""
    listed = yield from _ops.tasks(ctx, datasource=datasource)
    server = {status.id: status for status in listed}
    missing = [task_id for task_id in local_states if task_id not in server]
    if missing:
        server.update((yield from _ops.statuses(ctx, missing)))
    result = diff(local_states, server)
    for task_id in result.disappeared:
        log.warning("task %s disappeared", task_id, extra={"task_id": task_id, "action": "reconcile"})
    for task_id in result.orphaned:
        log.warning("task %s is orphaned", task_id, extra={"task_id": task_id, "action": "reconcile"})
    return result


LocalStates = Callable[[], Mapping[str, str]]


class _AsyncReconciling(Protocol):
    def reconcile(
        self, local_states: Mapping[str, str], *, datasource: str | None = ...
    ) -> Awaitable[ReconcileResult]: ...


class _SyncReconciling(Protocol):
    def reconcile(self, local_states: Mapping[str, str], *, datasource: str | None = ...) -> ReconcileResult: ...


class AsyncReconciler:
    """Reconciles every ``interval`` seconds on the event loop; errors are logged, never fatal."""

    def __init__(
        self,
        client: _AsyncReconciling,
        local_states: LocalStates,
        on_result: Callable[[ReconcileResult], Any],
        *,
        interval: float = 30.0,
        datasource: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.local_states = local_states
        self.on_result = on_result
        self.interval = interval
        self.datasource = datasource
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    async def run_once(self) -> ReconcileResult:
        result = await self.client.reconcile(self.local_states(), datasource=self.datasource)
        outcome = self.on_result(result)
        if inspect.isawaitable(outcome):
            await outcome
        self.rounds += 1
        return result

    async def run(self, rounds: int | None = None) -> None:
        """Loop until cancelled (or for ``rounds`` rounds, for tests)."""
        done = 0
        while rounds is None or done < rounds:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reconciliation failed: %s", exc, extra={"action": "reconcile"})
            done += 1
            if rounds is None or done < rounds:
                await self._sleep(self.interval)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class ThreadReconciler:
    """Reconciles every ``interval`` seconds in a daemon thread, for sync orchestrators."""

    def __init__(
        self,
        client: _SyncReconciling,
        local_states: LocalStates,
        on_result: Callable[[ReconcileResult], Any],
        *,
        interval: float = 30.0,
        datasource: str | None = None,
    ) -> None:
        self.client = client
        self.local_states = local_states
        self.on_result = on_result
        self.interval = interval
        self.datasource = datasource
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def run_once(self) -> ReconcileResult:
        result = self.client.reconcile(self.local_states(), datasource=self.datasource)
        self.on_result(result)
        self.rounds += 1
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                log.warning("reconciliation failed: %s", exc, extra={"action": "reconcile"})
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="overlord-reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
