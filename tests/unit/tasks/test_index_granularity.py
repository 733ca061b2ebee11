"""An index task with a period segment granularity, appending, against the REAL task-action handler.

The fake Overlord re-implemented allocation and so hid a bug: ``segmentGranularity: "PT6H"`` with
``appendToExisting: true`` failed in ``segmentAllocate`` with "Invalid field
[action.preferredSegmentGranularity]". Here the task's ActionClient talks, through an
``httpx.MockTransport``, to a TaskActionHandler over SQLite on an event loop in a thread (as the
service runs it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_overlord import FakeOverlord

from overlord.clock import SYSTEM_CLOCK
from overlord.core.locks import TaskLockbox
from overlord.core.task import TaskRecord
from overlord.core.task_actions import TaskActionHandler
from overlord.errors import OverlordError
from overlord.isotime import Interval
from overlord.storage.deep_storage import FsDeepStorage
from overlord.storage.metadata import MetadataStore
from overlord.storage.segment_store import SegmentMetadata
from overlord.tasks import index
from overlord.tasks.action_client import ActionClient

ROWS = [
    '{"ts":"2020-01-01T01:00:00Z","dim":"a","v":1}',
    '{"ts":"2020-01-01T07:00:00Z","dim":"b","v":2}',
]
FIRST = "2020-01-01T00:00:00.000Z/2020-01-01T06:00:00.000Z"
SECOND = "2020-01-01T06:00:00.000Z/2020-01-01T12:00:00.000Z"


class RealActions:
    """The real handler on its own event loop, answering the ActionClient's HTTP calls."""

    def __init__(self, root: Path) -> None:
        self.fake = FakeOverlord(root, [root])  # only for building toolboxes
        self.store = MetadataStore.from_url(f"sqlite:///{root / 'metadata.db'}")
        self.segments = SegmentMetadata(self.store)
        self.lockbox = TaskLockbox(SYSTEM_CLOCK)
        self.handler = TaskActionHandler(
            lockbox=self.lockbox,
            segments=self.segments,
            deep_storage=FsDeepStorage.from_uri(f"file://{self.fake.deep}"),
            clock=SYSTEM_CLOCK,
            active={},
            force_time_chunk_lock=False,
            batch_segment_allocation=True,
            on_locks_changed=lambda _task_id: None,
        )
        self.actions: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/druid/indexer/v1/action", request.url.path
        body = json.loads(request.content)
        self.actions.append(body["action"])
        future = asyncio.run_coroutine_threadsafe(self.handler.perform(body["task"], body["action"]), self.loop)
        try:
            return httpx.Response(200, json={"result": future.result(30)})
        except OverlordError as exc:
            return httpx.Response(exc.http_status, json={"error": "druidException", "errorMessage": exc.message})

    def run(self, payload: dict[str, Any]) -> bool:
        """Run the task as the queue would: active while it runs, its locks released when it ends."""
        task_id = payload["id"]
        rec = TaskRecord(task_id, task_id, payload["type"], "ds", 0, 0, payload=payload)
        self.handler.active[task_id] = rec
        self.lockbox.add_task(task_id, task_id, rec.type, 50, "ds")
        try:
            return index.run(self.fake.toolbox(payload)).success
        finally:
            self.lockbox.remove_task(task_id)
            del self.handler.active[task_id]

    def used(self) -> list[tuple[str, str, int]]:
        segs = self.segments.used_segments("ds", Interval.parse("2020-01-01/2020-01-02"))
        return sorted((str(s.interval), s.version, s.partition_num) for s in segs)


@pytest.fixture
def real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RealActions]:
    actions = RealActions(tmp_path)
    monkeypatch.setattr(ActionClient, "default_transport", httpx.MockTransport(actions.handle))
    yield actions
    actions.close()


def spec(task_id: str, rows: list[str], granularity: object, append: bool) -> dict[str, Any]:
    return {
        "type": "index_parallel",
        "id": task_id,
        "spec": {
            "dataSchema": {
                "dataSource": "ds",
                "timestampSpec": {"column": "ts", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["dim"]},
                "metricsSpec": [{"type": "count", "name": "count"}],
                "granularitySpec": {"segmentGranularity": granularity, "queryGranularity": "none"},
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "inline", "data": "\n".join(rows)},
                "inputFormat": {"type": "json"},
                "appendToExisting": append,
            },
            "tuningConfig": {"type": "index_parallel"},
        },
    }


@pytest.mark.parametrize("granularity", ["PT6H", {"type": "period", "period": "PT6H"}])
def test_append_with_a_six_hour_period_adds_partitions(real: RealActions, granularity: object) -> None:
    assert real.run(spec("first", ROWS, granularity, append=False))
    (first, v1, p1), (second, v2, p2) = real.used()
    assert (first, p1, second, p2) == (FIRST, 0, SECOND, 0)

    assert real.run(spec("append", ROWS[1:], granularity, append=True))
    allocs = [a for a in real.actions if a["type"] == "segmentAllocate"]
    assert allocs, "appending allocates its segments"
    assert real.used() == [(FIRST, v1, 0), (SECOND, v2, 0), (SECOND, v2, 1)]  # appended to the existing version
