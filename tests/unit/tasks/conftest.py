"""Fixtures for task tests: an in-memory Overlord wired into every ActionClient."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_overlord import FakeOverlord

from overlord.tasks.action_client import ActionClient


@pytest.fixture
def overlord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOverlord:
    fake = FakeOverlord(tmp_path, [tmp_path])
    monkeypatch.setattr(ActionClient, "default_transport", fake.transport())
    monkeypatch.setattr("overlord.tasks.parallel.POLL_INTERVAL_S", 0.0)
    return fake
