"""A circuit breaker, so a client stops hammering a service that keeps failing.

Closed: calls go through; ``failure_threshold`` transient failures in a row open it.
Open: calls fail at once with ``CircuitOpenError`` for ``reset_timeout`` seconds.
Half-open: one trial call goes through; success closes the breaker, failure opens it again.
Only transient failures count (connection errors, 5xx, 429): a 4xx proves the service is alive.
"""

from __future__ import annotations

import logging
import threading
from enum import StrEnum

from overlord.client.errors import CircuitOpenError
from overlord.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"  # normal operation
    OPEN = "open"  # failing fast
    HALF_OPEN = "half_open"  # letting one trial call through


class CircuitBreaker:
    """Counts consecutive transient failures; thread-safe so one sync Client can be shared."""

    def __init__(self, failure_threshold: int = 8, reset_timeout: float = 15.0, clock: Clock = SYSTEM_CLOCK) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started_at: float | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock.monotonic() - self._opened_at >= self.reset_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Raise ``CircuitOpenError`` unless a call may go out now."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return
            now = self.clock.monotonic()
            # A trial abandoned (cancelled) without a verdict must not keep the breaker open forever.
            stale = self._trial_started_at is not None and now - self._trial_started_at >= self.reset_timeout
            if state is BreakerState.HALF_OPEN and (self._trial_started_at is None or stale):
                self._trial_started_at = now
                return
            assert self._opened_at is not None
            remaining = max(0.0, self.reset_timeout - (self.clock.monotonic() - self._opened_at))
        raise CircuitOpenError(
            f"Circuit open after {self._failures} consecutive failures; retry in {remaining:.1f}s",
            retry_after=remaining,
        )

    def record_success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("circuit closed", extra={"action": "breaker_close"})
            self._failures = 0
            self._opened_at = None
            self._trial_started_at = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            was_trial = self._trial_started_at is not None
            self._trial_started_at = None
            if was_trial or (self._opened_at is None and self._failures >= self.failure_threshold):
                self._opened_at = self.clock.monotonic()
                log.warning(
                    "circuit opened",
                    extra={"action": "breaker_open", "failures": self._failures},
                )

    def reset(self) -> None:
        self.record_success()
