"""The index_parallel parent polls its sub-tasks less often as they run longer."""

from __future__ import annotations

import pytest

from overlord.tasks import parallel


def test_poll_interval_grows_with_the_run_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "POLL_INTERVAL_S", 0.05)
    assert parallel.poll_interval(0.0) == 0.05
    assert parallel.poll_interval(1.0) == 0.05  # short runs: as often as before
    assert parallel.poll_interval(5.0) == pytest.approx(0.1)  # the end is seen at most 2 % late
    assert parallel.poll_interval(600.0) == parallel.POLL_MAX_S


def test_tests_can_still_poll_without_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "POLL_INTERVAL_S", 0.0)
    assert parallel.poll_interval(0.0) == 0.0
