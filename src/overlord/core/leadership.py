"""Leadership among Overlords that share one metadata store: follower, campaign, leader, step down.

Several Overlords may run on one PostgreSQL database; one of them leads (runs the queue, the runner
and the duties) and the others answer the API with redirects to it. The leader is whoever holds the
store's lease (``LeaseStore``): it renews the lease every ``renew_ms`` and steps down as soon as it
cannot be sure it still holds it: a renewal refused (another node took over), or no successful
renewal for ``lease_ms`` (measured from the moment the last good renewal was *sent*, so the leader's
own deadline always falls before the store lets anyone else take over). Followers campaign when
the lease runs out, so a failover takes at most ``lease_ms`` plus one campaign.

Every term has an epoch, bumped at each takeover. The store checks it in every write transaction
(``fence_token``), so a deposed leader that wakes up (SIGSTOP/SIGCONT, a lost connection) cannot
write, and its refused write steps it down (``fenced``) instead. Without a lease store (SQLite: the
data-directory lock already makes the Overlord alone) the node leads from the start, for ever.

Time comes from the injected clock; the store calls run on two threads of their own (a busy default
executor must not delay a renewal), each bounded by ``call_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from overlord.clock import Clock
from overlord.core.protocols import LeaseStore, LeaseView

log = logging.getLogger(__name__)

T = TypeVar("T")


class Role(enum.Enum):
    FOLLOWER = "follower"
    LEADER = "leader"


@dataclass(frozen=True)
class LeadershipConfig:
    lease_ms: int = 10_000  # overlord.leader.leaseDuration
    renew_ms: int = 2_000  # overlord.leader.renewPeriod

    def __post_init__(self) -> None:
        if self.renew_ms <= 0 or self.lease_ms < 2 * self.renew_ms:
            raise ValueError(
                f"overlord.leader.leaseDuration [{self.lease_ms} ms] must be at least twice "
                f"overlord.leader.renewPeriod [{self.renew_ms} ms], which must be positive"
            )


class Leadership:
    """The state machine of one Overlord's leadership; ``tick`` is one step, ``run`` loops it."""

    def __init__(
        self,
        lease: LeaseStore | None,
        *,
        node_id: str,
        url: str,
        clock: Clock,
        config: LeadershipConfig,
        on_elected: Callable[[int], Awaitable[None]],
        on_deposed: Callable[[str], Awaitable[None]],
        call_timeout_s: float | None = None,
    ) -> None:
        self.lease = lease
        self.node_id = node_id
        self.url = url
        self.clock = clock
        self.config = config
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self.call_timeout_s = call_timeout_s if call_timeout_s is not None else config.renew_ms / 1000
        self.role = Role.FOLLOWER
        self.epoch: int | None = None  # the term this node leads, None while following
        self.leader_url: str | None = None  # as last seen in the store
        self.peer_urls: list[str] = []  # the other Overlords alive, as last seen in the store
        self.transitions = 0  # elections and step-downs so far (tests wait on it)
        self._valid_until = 0.0  # monotonic: the leader must step down by then without a renewal
        self._ready = False  # the leader's takeover finished: it may serve the API
        self._fenced: str | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="leadership")

    # -- what the rest of the service asks -------------------------------------------------------

    def is_leader(self) -> bool:
        """Leading and ready: the takeover (recovery, adoption) finished and the lease is still sure."""
        if self.role is not Role.LEADER or self._fenced is not None or not self._ready:
            return False
        return self.lease is None or self.clock.monotonic() < self._valid_until

    def fence_token(self) -> tuple[str, int] | None:
        """What a write transaction must find in the store's lease (holder, epoch); None: refuse."""
        if self.role is not Role.LEADER or self._fenced is not None or self.epoch is None:
            return None
        return self.node_id, self.epoch

    def fenced(self, reason: str) -> None:
        """A write found another term in the store: stop leading at once. Safe from any thread."""
        if self._fenced is not None or self.role is not Role.LEADER:
            return
        self._fenced = reason
        log.warning("Write refused, another Overlord leads now: %s", reason)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # -- the state machine -----------------------------------------------------------------------

    async def tick(self) -> float:
        """One step: renew (leader) or campaign (follower). Returns the seconds until the next step."""
        renew_s = self.config.renew_ms / 1000
        if self.lease is None:
            if self.role is not Role.LEADER:
                await self._elect(0, self.clock.monotonic())
            return renew_s
        await self._announce()
        if self.role is Role.LEADER:
            return await self._renew()
        return await self._campaign()

    async def _renew(self) -> float:
        assert self.lease is not None and self.epoch is not None
        renew_s = self.config.renew_ms / 1000
        if self._fenced is not None:
            await self.step_down(self._fenced)
            return 0.0
        sent = self.clock.monotonic()
        try:
            held = await self._call(self.lease.renew, self.node_id, self.epoch, self.config.lease_ms)
        except Exception as exc:
            left = self._valid_until - self.clock.monotonic()
            if left <= 0:
                await self.step_down(f"the lease could not be renewed for {self.config.lease_ms} ms ({_why(exc)})")
                return renew_s
            log.warning("Renewing the leader lease failed (%s); %.1fs left before stepping down", _why(exc), left)
            return min(renew_s / 2, left)
        if not held:
            await self.step_down("another Overlord holds the leader lease")
            return 0.0
        self._valid_until = sent + self.config.lease_ms / 1000
        return renew_s

    async def _campaign(self) -> float:
        assert self.lease is not None
        renew_s = self.config.renew_ms / 1000
        sent = self.clock.monotonic()
        try:
            view = await self._call(self.lease.campaign, self.node_id, self.url, self.config.lease_ms)
        except Exception as exc:
            log.warning("Campaigning for leadership failed: %s", _why(exc))
            return renew_s
        if view.holder == self.node_id:
            await self._elect(view.epoch, sent)
            return renew_s
        self._see(view)
        # wake up right when the lease runs out, not up to a renew period later
        return max(0.05, min(renew_s, view.expires_in_ms / 1000 + 0.05))

    async def _elect(self, epoch: int, sent: float) -> None:
        self.role, self.epoch, self._fenced = Role.LEADER, epoch, None
        self._valid_until = sent + self.config.lease_ms / 1000
        self.leader_url = self.url
        self.transitions += 1
        log.info("This Overlord (%s) is the leader now, term %d", self.url, epoch)
        try:
            await self._on_elected(epoch)
        except Exception as exc:
            log.exception("Taking over as leader failed")
            await self.step_down(f"taking over failed: {_why(exc)}")
            return
        self._ready = True

    async def step_down(self, reason: str) -> None:
        """Stop leading: writes are refused from now on, then the leader's work stops; peons keep
        running (the next leader adopts them). The lease is released when the store still agrees."""
        if self.role is not Role.LEADER:
            return
        epoch = self.epoch
        self.role, self.epoch, self.leader_url, self._ready = Role.FOLLOWER, None, None, False
        self.transitions += 1
        log.warning("This Overlord (%s) is no longer the leader: %s", self.url, reason)
        try:
            await self._on_deposed(reason)
        except Exception:
            log.exception("Stepping down did not finish cleanly")
        self._fenced = None
        if self.lease is not None and epoch is not None:
            with contextlib.suppress(Exception):
                await self._call(self.lease.release, self.node_id, epoch)

    def _see(self, view: LeaseView) -> None:
        url = view.url if view.expires_in_ms > 0 else None
        if url != self.leader_url:
            log.info("The leader is %s", url or "unknown (no Overlord holds the lease)")
        self.leader_url = url

    async def _announce(self) -> None:
        assert self.lease is not None
        try:
            await self._call(self.lease.announce, self.node_id, self.url)
            urls = await self._call(self.lease.members, 3 * self.config.lease_ms)
        except Exception:
            return  # the lease calls that follow say what is wrong
        self.peer_urls = [u for u in urls if u != self.url]

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        call = asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
        return await asyncio.wait_for(call, self.call_timeout_s)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the first step now (a lone Overlord leads when ``start`` returns), then loop."""
        self._loop = asyncio.get_running_loop()
        delay = await self.tick()
        self._task = asyncio.create_task(self._run(delay), name="leadership")

    async def _run(self, delay: float) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                delay = await self.tick()
            except Exception:  # the loop must outlive any one bad step
                log.exception("Leadership step failed")
                delay = self.config.renew_ms / 1000

    async def stop_campaigning(self) -> None:
        """Stop the loop (the service is stopping); the lease is kept until ``release``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def release(self) -> None:
        """Give the lease up so a follower takes over at once (after the service stopped writing); the
        last call: the lease store is closed."""
        epoch = self.epoch
        self.role, self.epoch, self._ready = Role.FOLLOWER, None, False
        if self.lease is not None and epoch is not None:
            try:
                await self._call(self.lease.release, self.node_id, epoch)
            except Exception as exc:
                log.warning("Releasing the leader lease failed (%s); it expires on its own", _why(exc))
        if self.lease is not None:
            self.lease.close()
        self._threads.shutdown(wait=False)


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
