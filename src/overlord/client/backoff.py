"""Backoff and retry policies: plain values, so the timing of every retry and poll is testable exactly.

Delays use "full jitter" (a uniform draw between 0 and the exponential cap): many clients polling
one service spread out instead of arriving in waves. The random source is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

RandomSource = Callable[[], float]
"""Returns a float in [0, 1); ``random.random`` by default, a constant in tests."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: ``delay(n) = max(floor, U(0, min(cap, initial * factor**n)))``."""

    initial: float = 0.5
    multiplier: float = 2.0
    max_interval: float = 10.0
    min_interval: float = 0.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max_interval < 0 or self.min_interval < 0:
            raise ValueError("backoff intervals must be >= 0")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")

    def cap(self, attempt: int) -> float:
        """The upper bound of the n-th delay (attempt counts from 0)."""
        # Bound the exponent so huge attempt counts do not overflow the float.
        exponent = min(attempt, 1024)
        try:
            raw = self.initial * self.multiplier**exponent
        except OverflowError:
            raw = float("inf")
        return min(self.max_interval, raw)

    def delay(self, attempt: int, rng: RandomSource) -> float:
        cap = self.cap(attempt)
        value = cap * rng() if self.jitter else cap
        return max(self.min_interval, value)


DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures of one request are retried, how often and how far apart.

    Only transient failures are retried: connection errors and the statuses in ``retry_statuses``
    (5xx and 429 by default). A 4xx answer is final: repeating it cannot change the outcome.
    """

    max_attempts: int = 4
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, max_interval=5.0))
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_all_5xx: bool = True
    retry_connect_errors: bool = True
    max_retry_after: float = 30.0
    """Upper bound for a server's Retry-After header, so a bad header cannot park the caller."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def retries_status(self, status_code: int) -> bool:
        return status_code in self.retry_statuses or (self.retry_all_5xx and 500 <= status_code < 600)

    def delay(self, attempt: int, rng: RandomSource, retry_after: float | None = None) -> float:
        """The pause before retry ``attempt`` (from 0); a Retry-After header is a lower bound."""
        delay = self.backoff.delay(attempt, rng)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.max_retry_after)
        return delay


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class WaitPolicy:
    """How ``wait`` polls a task's status until it ends.

    ``timeout`` bounds the whole wait (None = forever). ``not_found_grace`` is how long a 404 is
    tolerated right after a submit (the service may not list a task it just accepted); past it the
    task counts as lost. ``report_grace`` is how long to wait for the completion report after the
    task ended (the report is pushed after the status changes).
    """

    poll: Backoff = field(default_factory=lambda: Backoff(initial=0.5, max_interval=10.0, min_interval=0.05))
    timeout: float | None = None
    not_found_grace: float = 10.0
    report_grace: float = 5.0
    reportless_types: frozenset[str] = frozenset({"noop", "kill", "archive", "move", "restore"})
    """Task types that never write a report: their 404 is final, no ``report_grace`` is spent."""
    fetch_live_report: bool = False
    """Also fetch the live report at each poll (for progress displays)."""
