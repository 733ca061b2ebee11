"""How an Overlord task looks as an Elasticsearch task: action names and human-readable descriptions.

Elasticsearch clients filter tasks by ``actions`` wildcards (``*index*``, ``indexer:*``), so every
task type gets one stable action name, grouped the way Elasticsearch groups its own actions
(``category:area/verb``). Sub-tasks of a parallel index job share their parent's prefix, so
``actions=*index_parallel*`` finds a job and all its workers.
"""

from __future__ import annotations

from typing import Any

# Elasticsearch's ``type`` field: which kind of task object runs it. Overlord tasks are stored and
# survive restarts, which is what Elasticsearch calls a persistent task.
TASK_TYPE = "persistent"
TRANSPORT_TYPE = "transport"

_ACTIONS = {
    "index_parallel": "indexer:data/write/index_parallel",
    "index": "indexer:data/write/index",
    "compact": "indexer:data/write/compact",
    "kill": "indexer:admin/segments/kill",
    "archive": "indexer:admin/segments/archive",
    "move": "indexer:admin/segments/move",
    "restore": "indexer:admin/segments/restore",
    "noop": "indexer:admin/noop",
}
_SUB_TASK_TYPES = ("single_phase_sub_task", "partial_")


def action_for(task_type: str) -> str:
    """The stable action name of a task type; unknown types still get a predictable one."""
    action = _ACTIONS.get(task_type)
    if action is not None:
        return action
    if task_type.startswith(_SUB_TASK_TYPES):
        return f"indexer:data/write/index_parallel/{task_type}"
    return f"indexer:task/{task_type}"


def _intervals(payload: dict[str, Any]) -> list[str]:
    found = payload.get("interval") or payload.get("intervals")
    if found is None:
        spec = payload.get("spec") or payload.get("ingestionSpec") or {}
        schema = spec.get("dataSchema") if isinstance(spec, dict) else None
        gran = schema.get("granularitySpec") if isinstance(schema, dict) else None
        found = gran.get("intervals") if isinstance(gran, dict) else None
        if found is None and isinstance(payload.get("ioConfig"), dict):
            found = payload["ioConfig"].get("interval")
    if isinstance(found, str):
        return [found]
    if isinstance(found, list):
        return [str(i) for i in found]
    return []


def _input(payload: dict[str, Any]) -> str | None:
    spec = payload.get("spec") or payload.get("ingestionSpec") or {}
    io = spec.get("ioConfig") if isinstance(spec, dict) else None
    if not isinstance(io, dict):
        io = payload.get("ioConfig") if isinstance(payload.get("ioConfig"), dict) else None
    source = io.get("inputSource") if io else None
    if not isinstance(source, dict):
        return None
    parts = [str(source.get("type", "?"))]
    for key in ("baseDir", "filter", "uris", "prefixes", "files", "paths", "dataSource"):
        value = source.get(key)
        if value:
            shown = (
                ", ".join(map(str, value[:3])) + (", ..." if len(value) > 3 else "")
                if isinstance(value, list)
                else value
            )
            parts.append(f"{key}[{shown}]")
    return " ".join(parts)


def describe(task_id: str, task_type: str, datasource: str | None, payload: dict[str, Any] | None) -> str:
    """What ``detailed`` shows: the Druid task id (ES numbers are opaque), data source, intervals, input."""
    parts = [f"task[{task_id}]", f"type[{task_type}]"]
    if datasource:
        parts.append(f"dataSource[{datasource}]")
    if payload:
        intervals = _intervals(payload)
        if intervals:
            parts.append(f"interval[{', '.join(intervals)}]")
        source = _input(payload)
        if source:
            parts.append(f"input[{source}]")
        if task_type == "noop" and "runTime" in payload:
            parts.append(f"runTime[{payload['runTime']}ms]")
    return ", ".join(parts)
