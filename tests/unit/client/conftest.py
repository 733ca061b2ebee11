"""Fixtures for the client tests; the fake itself lives in ``client_fakes``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_fakes import FAST_RETRY, FAST_WAIT, FakeOverlord, FakeTime

from overlord.client import Client


@pytest.fixture
def fake() -> FakeOverlord:
    return FakeOverlord()


@pytest.fixture
def ftime() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(fake: FakeOverlord, ftime: FakeTime) -> Iterator[Client]:
    c = Client(
        "http://overlord.test",
        transport=fake.transport,
        clock=ftime.clock,
        sleep=ftime.sleep,
        rng=lambda: 0.5,
        retry=FAST_RETRY,
        wait_policy=FAST_WAIT,
    )
    yield c
    c.close()
