"""ListingPool: heavy reads off the loop, identical reads in flight shared, failures passed to every waiter."""

from __future__ import annotations

import asyncio
import threading

import pytest

from overlord.listing_pool import ListingPool


def test_identical_reads_in_flight_are_shared_and_different_keys_are_not() -> None:
    pool = ListingPool(workers=2)
    gate = threading.Event()
    calls: list[str] = []

    def read(name: str) -> str:
        calls.append(name)
        gate.wait(5)
        return f"rows of {name}"

    async def main() -> list[str]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not gate.is_set():
                ticks += 1
                await asyncio.sleep(0)

        waiting = [asyncio.ensure_future(pool.run("a", lambda: read("a"))) for _ in range(50)]
        other = asyncio.ensure_future(pool.run("b", lambda: read("b")))
        ticking = asyncio.ensure_future(ticker())
        while ticks < 200:  # the loop keeps running while both reads are held in the pool
            await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*waiting, other)
        await ticking
        return results

    try:
        results = asyncio.run(main())
    finally:
        pool.close()
    assert results == ["rows of a"] * 50 + ["rows of b"]
    assert sorted(calls) == ["a", "b"] and pool.computed == 2


def test_a_failed_read_reaches_every_waiter_and_the_next_call_reads_again() -> None:
    pool = ListingPool(workers=1)
    attempts: list[int] = []

    def failing() -> str:
        attempts.append(1)
        raise OSError("database is locked")

    async def main() -> None:
        first = await asyncio.gather(*(pool.run("k", failing) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(e, OSError) for e in first)
        assert await pool.run("k", lambda: "ok") == "ok"

    try:
        asyncio.run(main())
    finally:
        pool.close()
    assert len(attempts) == 1


def test_a_closed_pool_refuses_new_reads() -> None:
    pool = ListingPool()
    pool.close()
    with pytest.raises(RuntimeError):
        asyncio.run(pool.run("k", lambda: 1))
