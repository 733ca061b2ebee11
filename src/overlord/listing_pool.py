"""A small thread pool for heavy reads (task listings) that shares identical reads in flight.

Why: a listing of thousands of completed tasks costs tens of milliseconds of store reading and JSON
rendering. Done on the event loop, a few hundred listers starve every status poll; in this pool they
wait without holding the loop, and listings that arrive together with the same key share one read
(the key includes the queue's completion count, so a listing never misses a task that completed
before it was asked for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ListingPool:
    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="listing")
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}
        self.computed = 0  # reads actually run (the rest were shared)

    async def run(self, key: Hashable, compute: Callable[[], T]) -> T:
        future = self._in_flight.get(key)
        if future is None:
            self.computed += 1
            future = asyncio.get_running_loop().run_in_executor(self._executor, compute)
            self._in_flight[key] = future
            future.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(future)  # type: ignore[no-any-return]

    def _forget(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failed read is re-raised to its waiters, never logged as lost

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
