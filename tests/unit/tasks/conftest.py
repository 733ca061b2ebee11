"""Fixtures for task tests: the real action handler behind an ASGI app, wired into every ActionClient
and task client, over each deep storage (a local folder and the in-memory twin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from overlord_harness import OverlordHarness

from overlord.core.protocols import DeepStorage
from overlord.storage.deep_storage import FsDeepStorage
from overlord.tasks.action_client import ActionClient
from overlord.testing import InMemoryDeepStorage


@pytest.fixture(params=["fs", "memory"])
def overlord(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OverlordHarness]:
    storage: DeepStorage = InMemoryDeepStorage()
    if request.param == "fs":
        storage = FsDeepStorage.from_uri(f"file://{tmp_path / 'deep'}")
    harness = OverlordHarness(tmp_path, [tmp_path], storage)
    monkeypatch.setattr(ActionClient, "default_transport", harness.transport())
    monkeypatch.setattr("overlord.tasks.parallel.POLL_INTERVAL_S", 0.0)
    yield harness
    harness.close()
