"""Fixtures for task tests: an in-memory Overlord wired into every ActionClient and task client,
over each deep storage (a local folder and the in-memory twin)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_overlord import FakeOverlord

from overlord.core.protocols import DeepStorage
from overlord.storage.deep_storage import FsDeepStorage
from overlord.tasks.action_client import ActionClient
from overlord.testing import InMemoryDeepStorage


@pytest.fixture(params=["fs", "memory"])
def overlord(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOverlord:
    storage: DeepStorage = InMemoryDeepStorage()
    if request.param == "fs":
        storage = FsDeepStorage.from_uri(f"file://{tmp_path / 'deep'}")
    fake = FakeOverlord(tmp_path, [tmp_path], deep_storage=storage)
    monkeypatch.setattr(ActionClient, "default_transport", fake.transport())
    monkeypatch.setattr("overlord.tasks.parallel.POLL_INTERVAL_S", 0.0)
    return fake
