"""Retry policy (transient only, exact pauses, Retry-After) and the circuit breaker."""

from __future__ import annotations

import pytest
from client_fakes import FakeOverlord, FakeTime

from overlord.client import (
    NO_RETRY,
    Backoff,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Client,
    RetryPolicy,
    ServiceUnavailable,
    errors,
)


def test_5xx_is_retried_with_exact_backoff(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t")
    fake.fail("GET", "/t/status", status=503, times=2)
    assert client.status("t").id == "t"
    assert ftime.sleeps == [0.05, 0.1]  # rng 0.5 of caps 0.1, 0.2
    assert fake.count("GET", "/t/status") == 3


def test_5xx_outlasting_the_policy_raises_server_error(client: Client, fake: FakeOverlord) -> None:
    fake.add("t")
    fake.fail("GET", "/t/status", status=500, times=10)
    with pytest.raises(errors.ServerError) as info:
        client.status("t")
    assert info.value.status_code == 500
    assert isinstance(info.value, errors.TransientError)
    assert fake.count("GET", "/t/status") == 4


def test_429_is_retried_and_retry_after_is_a_floor(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.fail("POST", "/task", status=429, times=1, **{"Retry-After": "3"})
    client.submit({"type": "noop", "dataSource": "ds"})
    assert ftime.sleeps == [3.0]


def test_429_when_queue_stays_full_is_typed(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.fail("POST", "/task", status=429, times=5)
    with (
        Client("http://x", transport=fake.transport, sleep=ftime.sleep, retry=NO_RETRY) as c,
        pytest.raises(errors.TooManyRequests) as info,
    ):
        c.submit({"type": "noop"})
    assert isinstance(info.value, errors._server.QueueFull)
    assert ftime.sleeps == []


def test_4xx_is_never_retried(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.fail("POST", "/task", status=400, times=3)
    with pytest.raises(errors.BadRequest):
        client.submit({"type": "noop"})
    assert fake.count("POST", "/task") == 1 and ftime.sleeps == []


def test_connection_errors_are_retried_then_raise(client: Client, fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t")
    fake.connect_error("GET", "/t/status", times=2)
    assert client.status("t").id == "t"
    fake.connect_error("GET", "/t/status", times=4)
    with pytest.raises(ServiceUnavailable) as info:
        client.status("t")
    assert "ConnectError" in str(info.value)


def test_caller_sets_the_policy(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t")
    fake.fail("GET", "/t/status", status=502, times=6)
    policy = RetryPolicy(max_attempts=7, backoff=Backoff(initial=1.0, max_interval=2.0, jitter=False))
    with Client("http://x", transport=fake.transport, sleep=ftime.sleep, retry=policy) as c:
        assert c.status("t").id == "t"
    assert ftime.sleeps == [1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    fake.fail("GET", "/t/status", status=502, times=1)
    narrow = RetryPolicy(retry_statuses=frozenset({503}), retry_all_5xx=False)
    with (
        Client("http://x", transport=fake.transport, sleep=ftime.sleep, retry=narrow) as c,
        pytest.raises(errors.ServerError),
    ):
        c.status("t")


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy().delay(0, lambda: 0.5, retry_after=99.0) == 30.0


def test_breaker_opens_fails_fast_then_half_opens(fake: FakeOverlord, ftime: FakeTime) -> None:
    fake.add("t")
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10.0, clock=ftime.clock)
    with Client("http://x", transport=fake.transport, sleep=ftime.sleep, retry=NO_RETRY, breaker=breaker) as c:
        fake.connect_error("GET", "/t/status", times=3)
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                c.status("t")
        assert breaker.state is BreakerState.OPEN
        sent = len(fake.requests)
        with pytest.raises(CircuitOpenError) as info:
            c.status("t")
        assert len(fake.requests) == sent  # nothing went out
        assert info.value.retry_after == pytest.approx(10.0)
        ftime.clock.advance(10.0)
        assert breaker.state is BreakerState.HALF_OPEN
        fake.connect_error("GET", "/t/status")
        with pytest.raises(ServiceUnavailable):
            c.status("t")  # the trial fails: open again
        assert breaker.state is BreakerState.OPEN
        ftime.clock.advance(10.0)
        assert c.status("t").id == "t"  # the trial succeeds: closed
        assert breaker.state is BreakerState.CLOSED


def test_breaker_lets_one_trial_through_when_half_open() -> None:
    from overlord.clock import ManualClock

    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    clock.advance(5.0)
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the trial is out
    clock.advance(5.0)
    breaker.before_call()  # the trial was abandoned: a new one may go
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_4xx_counts_as_success_for_the_breaker(fake: FakeOverlord, ftime: FakeTime) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=ftime.clock)
    with Client("http://x", transport=fake.transport, sleep=ftime.sleep, retry=NO_RETRY, breaker=breaker) as c:
        for _ in range(5):
            with pytest.raises(errors.NotFoundError):
                c.status("missing")
    assert breaker.state is BreakerState.CLOSED


def test_breaker_can_be_disabled(fake: FakeOverlord, ftime: FakeTime) -> None:
    with Client("http://x", transport=fake.transport, sleep=ftime.sleep, breaker=False) as c:
        assert c.breaker is None
