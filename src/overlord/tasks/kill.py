"""``kill``: permanently delete the unused segments of an interval, files and metadata.

Only segments the Overlord lists as unused (``retrieveUnusedSegments``) are touched, so a used
segment can never be deleted. The task locks the interval first, as Druid's kill task does, so no
task publishes into it meanwhile; it deletes the files through deep storage by their load specs
(a load spec pointing outside deep storage is skipped) and then the metadata (``segmentNuke``).
"""

from __future__ import annotations

from typing import Any

from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidSpec
from overlord.isotime import Interval
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.tasks.action_client import ActionClient
from overlord.tasks.reporting import check_lock_timeout

_FIELDS = {
    "type",
    "id",
    "groupId",
    "resource",
    "context",
    "dataSource",
    "interval",
    "markAsUnused",
    "batchSize",
    "limit",
}


def _interval(payload: dict[str, Any]) -> Interval:
    value = payload.get("interval")
    if not isinstance(value, str):
        raise InvalidSpec("interval: missing required field (an ISO-8601 interval)", field="interval")
    try:
        iv = Interval.parse(value)
    except Exception as exc:
        raise InvalidSpec(f"interval: {getattr(exc, 'message', exc)}", field="interval") from None
    if iv.start >= iv.end:
        raise InvalidSpec("interval: interval is empty", field="interval")
    return iv


def validate(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field for task type [kill]", field=unknown[0])
    ds = payload.get("dataSource")
    if not isinstance(ds, str) or not ds.strip() or "/" in ds:
        raise InvalidSpec("dataSource: missing or invalid dataSource", field="dataSource")
    _interval(payload)
    if payload.get("markAsUnused") not in (None, False, True):
        raise InvalidSpec("markAsUnused: expected true or false", field="markAsUnused")
    check_lock_timeout(payload, ctx)
    return payload


def lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    return [_interval(payload)]


def run(toolbox: TaskToolbox) -> TaskResult:
    payload = toolbox.payload
    ds, iv = payload["dataSource"], _interval(payload)
    deep_storage = toolbox.deep_storage
    with ActionClient.for_toolbox(toolbox) as client:
        client.lock_acquire(str(iv))
        marked = client.mark_segments_unused(ds, str(iv)) if payload.get("markAsUnused") else 0
        unused = client.retrieve_unused_segments(ds, str(iv))
        toolbox.log.info("Found %d unused segments of dataSource[%s] in %s", len(unused), ds, iv)
        deleted = 0
        for seg in unused:
            load_spec = seg.get("loadSpec")
            if not deep_storage.contains(load_spec or {}):
                toolbox.log.warning(
                    "Not deleting %s of segment[%s]: outside deep storage", load_spec, seg.get("identifier")
                )
                continue
            deep_storage.delete(load_spec or {})
            deleted += 1
        if unused:
            client.segment_nuke(unused)
    toolbox.log.info(
        "Killed %d unused segments of dataSource[%s] in %s: deleted %d files, nuked %d metadata entries",
        len(unused), ds, iv, deleted, len(unused),
    )  # fmt: skip
    toolbox.write_report(
        {
            "killUnusedSegments": {
                "type": "killUnusedSegments",
                "taskId": toolbox.task_id,
                "payload": {
                    "numSegmentsKilled": len(unused),
                    "numBatchesProcessed": 1 if unused else 0,
                    "numSegmentsMarkedAsUnused": marked,
                },
            }
        }
    )
    return TaskResult.ok()


KILL = register(TaskType(name="kill", run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals))
