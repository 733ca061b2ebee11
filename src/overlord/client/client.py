"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the same operations over a pooled httpx client.

Each method is an operation from ``_ops`` bound to the client's context; the descriptor decides
whether it blocks or is awaited. Both clients are context managers; one instance is meant to be
shared (it holds the connection pool and the circuit breaker).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self

import httpx

from overlord.client import _ops, _sql_ops
from overlord.client import reconcile as _reconcile
from overlord.client._protocol import Context, StructuralHook
from overlord.client._transport import AsyncMethod, AsyncStreamMethod, SyncMethod, SyncStreamMethod
from overlord.client.backoff import RandomSource, RetryPolicy, WaitPolicy
from overlord.client.breaker import CircuitBreaker
from overlord.clock import SYSTEM_CLOCK, Clock

DEFAULT_URL = "http://127.0.0.1:8090"


def default_url() -> str:
    """``OVERLORD_URL`` if set, else the local default port."""
    return os.environ.get("OVERLORD_URL") or DEFAULT_URL


def normalize_url(url: str) -> str:
    """``localhost:8090`` means ``http://localhost:8090``: a URL without a scheme gets ``http://``."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def _context(
    retry: RetryPolicy | None,
    wait_policy: WaitPolicy | None,
    breaker: CircuitBreaker | bool,
    clock: Clock,
    rng: RandomSource,
    on_structural_failure: StructuralHook | None,
) -> Context:
    if breaker is True:
        chosen: CircuitBreaker | None = CircuitBreaker(clock=clock)
    elif breaker is False:
        chosen = None
    else:
        chosen = breaker
    return Context(
        retry=retry or RetryPolicy(),
        wait=wait_policy or WaitPolicy(),
        breaker=chosen,
        clock=clock,
        rng=rng,
        on_structural_failure=on_structural_failure,
    )


_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class _Settings:
    """Constructor arguments shared by both clients."""

    _ctx: Context
    url: str

    def _setup(
        self,
        url: str | None,
        retry: RetryPolicy | None,
        wait_policy: WaitPolicy | None,
        breaker: CircuitBreaker | bool,
        clock: Clock,
        rng: RandomSource,
        on_structural_failure: StructuralHook | None,
    ) -> None:
        self.url = normalize_url(url or default_url())
        self._ctx = _context(retry, wait_policy, breaker, clock, rng, on_structural_failure)

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._ctx.breaker

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._ctx.retry

    @property
    def wait_policy(self) -> WaitPolicy:
        return self._ctx.wait


class Client(_Settings):
    """Blocking client for the Overlord's Druid Tasks API and segment metadata.

    ``sleep`` and ``rng`` (and the breaker's ``clock``) are injectable so tests of backoff are
    exact; ``transport`` or ``http`` let tests (or callers with special needs) supply httpx parts.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        wait_policy: WaitPolicy | None = None,
        breaker: CircuitBreaker | bool = True,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        rng: RandomSource = random.random,
        on_structural_failure: StructuralHook | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._setup(url, retry, wait_policy, breaker, clock, rng, on_structural_failure)
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http or httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers=headers,
            auth=auth,
            transport=transport,
            limits=_LIMITS,
            follow_redirects=True,  # a follower Overlord answers 307 to the leader, as Druid's does
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    submit = SyncMethod(_ops.submit)
    submission = SyncMethod(_ops.submission)
    status = SyncMethod(_ops.status)
    statuses = SyncMethod(_ops.statuses)
    tasks = SyncMethod(_ops.tasks)
    waiting_tasks = SyncMethod(_ops.waiting_tasks)
    pending_tasks = SyncMethod(_ops.pending_tasks)
    running_tasks = SyncMethod(_ops.running_tasks)
    complete_tasks = SyncMethod(_ops.complete_tasks)
    payload = SyncMethod(_ops.payload)
    log = SyncMethod(_ops.log_text)
    follow_log = SyncStreamMethod(_ops.follow_log)
    report = SyncMethod(_ops.report)
    shutdown = SyncMethod(_ops.shutdown)
    shutdown_all = SyncMethod(_ops.shutdown_all)
    delete_pending_segments = SyncMethod(_ops.delete_pending_segments)
    workers = SyncMethod(_ops.workers)
    suggest_max_num_concurrent_sub_tasks = SyncMethod(_ops.suggest_max_num_concurrent_sub_tasks)
    leader = SyncMethod(_ops.leader)
    is_leader = SyncMethod(_ops.is_leader)
    health = SyncMethod(_ops.health)
    datasources = SyncMethod(_ops.datasources)
    segments = SyncMethod(_ops.segments)
    wait = SyncMethod(_ops.wait)
    submit_and_wait = SyncMethod(_ops.submit_and_wait)
    wait_many = SyncMethod(_ops.wait_many)
    reconcile = SyncMethod(_reconcile.reconcile)
    sql = SyncMethod(_sql_ops.sql)
    cancel_sql = SyncMethod(_sql_ops.cancel_sql)
    sql_task = SyncMethod(_sql_ops.sql_task)

    def reconciler(
        self,
        local_states: _reconcile.LocalStates,
        on_result: Callable[[_reconcile.ReconcileResult], Any],
        *,
        interval: float = 30.0,
        datasource: str | None = None,
    ) -> _reconcile.ThreadReconciler:
        """A background reconciliation loop in a thread; call ``start()`` / ``stop()``."""
        return _reconcile.ThreadReconciler(self, local_states, on_result, interval=interval, datasource=datasource)


class AsyncClient(_Settings):
    """Asyncio client: the same methods as ``Client``, awaited; many waits share one event loop."""

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        wait_policy: WaitPolicy | None = None,
        breaker: CircuitBreaker | bool = True,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: RandomSource = random.random,
        on_structural_failure: StructuralHook | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._setup(url, retry, wait_policy, breaker, clock, rng, on_structural_failure)
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout,
            headers=headers,
            auth=auth,
            transport=transport,
            limits=_LIMITS,
            follow_redirects=True,  # a follower Overlord answers 307 to the leader, as Druid's does
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    submit = AsyncMethod(_ops.submit)
    submission = AsyncMethod(_ops.submission)
    status = AsyncMethod(_ops.status)
    statuses = AsyncMethod(_ops.statuses)
    tasks = AsyncMethod(_ops.tasks)
    waiting_tasks = AsyncMethod(_ops.waiting_tasks)
    pending_tasks = AsyncMethod(_ops.pending_tasks)
    running_tasks = AsyncMethod(_ops.running_tasks)
    complete_tasks = AsyncMethod(_ops.complete_tasks)
    payload = AsyncMethod(_ops.payload)
    log = AsyncMethod(_ops.log_text)
    follow_log = AsyncStreamMethod(_ops.follow_log)
    report = AsyncMethod(_ops.report)
    shutdown = AsyncMethod(_ops.shutdown)
    shutdown_all = AsyncMethod(_ops.shutdown_all)
    delete_pending_segments = AsyncMethod(_ops.delete_pending_segments)
    workers = AsyncMethod(_ops.workers)
    suggest_max_num_concurrent_sub_tasks = AsyncMethod(_ops.suggest_max_num_concurrent_sub_tasks)
    leader = AsyncMethod(_ops.leader)
    is_leader = AsyncMethod(_ops.is_leader)
    health = AsyncMethod(_ops.health)
    datasources = AsyncMethod(_ops.datasources)
    segments = AsyncMethod(_ops.segments)
    wait = AsyncMethod(_ops.wait)
    submit_and_wait = AsyncMethod(_ops.submit_and_wait)
    wait_many = AsyncMethod(_ops.wait_many)
    reconcile = AsyncMethod(_reconcile.reconcile)
    sql = AsyncMethod(_sql_ops.sql)
    cancel_sql = AsyncMethod(_sql_ops.cancel_sql)
    sql_task = AsyncMethod(_sql_ops.sql_task)

    def reconciler(
        self,
        local_states: _reconcile.LocalStates,
        on_result: Callable[[_reconcile.ReconcileResult], Any],
        *,
        interval: float = 30.0,
        datasource: str | None = None,
    ) -> _reconcile.AsyncReconciler:
        """A background reconciliation loop on the event loop; ``start()`` / ``await stop()``."""
        return _reconcile.AsyncReconciler(self, local_states, on_result, interval=interval, datasource=datasource)
