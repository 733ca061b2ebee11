"""Overlord tasks as Elasticsearch TaskInfo, and the list shapes (by node, by parent, flat).

Field order follows Elasticsearch's TaskInfo.toXContent exactly; some clients and many scripts
compare responses textually, and ``filter_path``/``human`` behave as they do there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from overlord.api.elasticsearch.errors import illegal_argument
from overlord.api.elasticsearch.mapping import TASK_TYPE, TRANSPORT_TYPE, action_for
from overlord.api.elasticsearch.params import TaskId, format_time_nanos, parse_bool, simple_match
from overlord.api.elasticsearch.state import Cluster, EsState, NodeInfo, TransportTask
from overlord.core.queue import USER_SHUTDOWN
from overlord.core.task import RunnerState, TaskRecord

SHUTDOWN_PREFIX = "Task was shut down"
CANCEL_REASON = "by user request"
INHERITED_HEADERS = ("X-Opaque-Id", "traceparent")


@dataclass
class EsTask:
    """One task as Elasticsearch describes it; ``druid_id`` is None for API requests.

    ``node`` is the node part of its id, always this Overlord's: an id handed out keeps naming the task for
    its whole life. ``runs_on`` is where it runs now (a cluster worker), which groups it by node; None is
    this Overlord."""

    node: str
    number: int
    type: str
    action: str
    start_ms: int
    running_ns: int
    cancellable: bool
    cancelled: bool
    headers: dict[str, str]
    parent: TaskId | None = None
    description: str | None = None
    status: dict[str, Any] | None = None
    druid_id: str | None = None
    runs_on: NodeInfo | None = None

    @property
    def task_id(self) -> str:
        return f"{self.node}:{self.number}"

    def to_json(self, human: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "id": self.number, "type": self.type, "action": self.action}
        if self.status is not None:
            out["status"] = self.status
        if self.description is not None:
            out["description"] = self.description
        if human:
            out["start_time"] = format_date(self.start_ms)
        out["start_time_in_millis"] = self.start_ms
        if human:
            out["running_time"] = format_time_nanos(self.running_ns)
        out["running_time_in_nanos"] = self.running_ns
        out["cancellable"] = self.cancellable
        if self.cancellable:
            out["cancelled"] = self.cancelled
        if self.parent is not None:
            out["parent_task_id"] = str(self.parent)
        out["headers"] = self.headers
        return out


def format_date(ms: int) -> str:
    """Elasticsearch's default date rendering: ISO 8601 in UTC with milliseconds."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _row_stats(report: Any, depth: int = 0) -> Any:
    """Find Druid's ``rowStats`` in a live or completion report, wherever the task type nests it."""
    if not isinstance(report, dict) or depth > 4:
        return None
    if "rowStats" in report:
        return report["rowStats"]
    for value in report.values():
        found = _row_stats(value, depth + 1)
        if found is not None:
            return found
    return None


def is_cancelled(state: EsState, rec: TaskRecord) -> bool:
    """Cancelled = asked to stop: a running peon with a shutdown reason, or a task that ended so."""
    if rec.active:
        return rec.id in state.service.queue.shutting_down
    return bool(rec.error_msg and (rec.error_msg.startswith(SHUTDOWN_PREFIX) or rec.error_msg == USER_SHUTDOWN))


def task_status(state: EsState, rec: TaskRecord, report: bytes | None = None) -> dict[str, Any]:
    """The ``status`` of ``detailed``: Druid's states, location and the live row stats when reported."""
    status: dict[str, Any] = {
        "status_code": rec.status_code.value,
        "runner_status_code": rec.runner_state.value,
        "queue_insertion_time_in_millis": rec.queue_insertion_ms,
        "location": {"host": rec.location.host, "port": rec.location.port, "tls_port": rec.location.tls_port},
    }
    if rec.duration >= 0 and not rec.active:
        status["duration_in_millis"] = rec.duration
    if report is None and rec.runner_state is RunnerState.RUNNING:
        report = state.service.read_report(rec)
    if report:
        try:
            stats = _row_stats(orjson.loads(report))
        except orjson.JSONDecodeError:
            stats = None
        if stats is not None:
            status["row_stats"] = stats
    return status


def parent_of(state: EsState, rec: TaskRecord) -> TaskId | None:
    if rec.group_id == rec.id:
        return None
    return TaskId(state.node.id, state.number_of(rec.group_id))


def headers_of(state: EsState, rec: TaskRecord, parent: TaskRecord | None) -> dict[str, str]:
    """The task's own headers over its parent's X-Opaque-Id/traceparent: children carry the caller's id."""
    if parent is None or not parent.headers:
        return rec.headers
    inherited = {k: v for k, v in parent.headers.items() if k in INHERITED_HEADERS}
    return {**inherited, **rec.headers} if inherited else rec.headers


def from_record(
    state: EsState,
    rec: TaskRecord,
    now_ms: int,
    *,
    detailed: bool,
    parent: TaskRecord | None = None,
    force_cancelled: bool = False,
    cluster: Cluster | None = None,
) -> EsTask:
    """``cluster``: the nodes a listing read once for all its tasks (read here when not given)."""
    if cluster is None and rec.runner_state is RunnerState.RUNNING:
        cluster = state.cluster()
    runs_on = cluster.placement.get(rec.id) if cluster is not None else None
    end_ms = now_ms if rec.active else (rec.completed_ms or rec.created_ms + max(rec.duration, 0))
    if parent is None and rec.group_id != rec.id:
        parent = state.service.queue.active.get(rec.group_id)
    task = EsTask(
        node=state.node.id,
        number=state.number_of(rec.id),
        type=TASK_TYPE,
        action=action_for(rec.type),
        start_ms=rec.created_ms,
        running_ns=max(0, end_ms - rec.created_ms) * 1_000_000,
        cancellable=True,
        cancelled=force_cancelled or is_cancelled(state, rec),
        headers=headers_of(state, rec, parent),
        parent=parent_of(state, rec),
        druid_id=rec.id,
        runs_on=runs_on,
    )
    if detailed:
        task.description = state.description_of(rec)
        task.status = task_status(state, rec)
    return task


def from_transport(state: EsState, t: TransportTask, now_ns: int, *, detailed: bool) -> EsTask:
    return EsTask(
        node=state.node.id,
        number=t.number,
        type=TRANSPORT_TYPE,
        action=t.action,
        start_ms=t.start_ms,
        running_ns=max(0, now_ns - t.start_ns),
        cancellable=False,
        cancelled=False,
        headers=t.headers,
        description=t.description if detailed else None,
    )


# -- list shapes ---------------------------------------------------------------------------------


def _failures(task_failures: list[dict[str, Any]], node_failures: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if task_failures:
        out["task_failures"] = task_failures
    if node_failures:
        out["node_failures"] = node_failures
    return out


def group_parents(tasks: list[EsTask]) -> list[tuple[EsTask, list[Any]]]:
    """Elasticsearch's TaskGroup tree: children under their parent; orphans (parent not listed) on top."""
    by_id: dict[str, tuple[EsTask, list[Any]]] = {t.task_id: (t, []) for t in tasks}
    top: list[tuple[EsTask, list[Any]]] = []
    for t in tasks:
        node = by_id[t.task_id]
        holder = by_id.get(str(t.parent)) if t.parent is not None else None
        if holder is not None and holder is not node:
            holder[1].append(node)
        else:
            top.append(node)
    return top


def _group_json(group: tuple[EsTask, list[Any]], human: bool) -> dict[str, Any]:
    task, children = group
    out = task.to_json(human)
    if children:
        out["children"] = [_group_json(c, human) for c in children]
    return out


def list_body(
    state: EsState,
    tasks: list[EsTask],
    group: str,
    *,
    human: bool = False,
    task_failures: list[dict[str, Any]] | None = None,
    node_failures: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ListTasksResponse (also the cancel response) grouped as ``group_by`` asks."""
    body = _failures(task_failures or [], node_failures or [])
    if group == "none":
        body["tasks"] = [t.to_json(human) for t in tasks]
    elif group == "parents":
        body["tasks"] = {g[0].task_id: _group_json(g, human) for g in group_parents(tasks)}
    else:
        nodes: dict[str, Any] = {}
        for t in tasks:
            where = t.runs_on or state.node
            entry = nodes.get(where.id)
            if entry is None:
                entry = nodes[where.id] = {**where.to_json(), "tasks": {}}
            entry["tasks"][t.task_id] = t.to_json(human)
        body["nodes"] = nodes
    return body


# -- filter_path ---------------------------------------------------------------------------------

_MISSING = object()


def _match_key(pattern: str, key: str) -> bool:
    return pattern == key if "*" not in pattern else simple_match([pattern], key)


def _filter(value: Any, paths: list[list[str]]) -> Any:
    if any(not p for p in paths):
        return value
    if isinstance(value, list):
        kept = [v for item in value if (v := _filter(item, paths)) is not _MISSING]
        return kept if kept else _MISSING
    if not isinstance(value, Mapping):
        return _MISSING
    out: dict[str, Any] = {}
    for key, child in value.items():
        nxt: list[list[str]] = []
        for p in paths:
            head = p[0]
            if head == "**":
                nxt.append(p)
                if len(p) > 1 and _match_key(p[1], key):
                    nxt.append(p[2:])
            elif _match_key(head, key):
                nxt.append(p[1:])
        if nxt:
            kept = _filter(child, nxt)
            if kept is not _MISSING:
                out[key] = kept
    return out if out else _MISSING


def _exclude(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_exclude(v, paths) for v in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, child in value.items():
        nxt: list[list[str]] = []
        drop = False
        for p in paths:
            head = p[0]
            if head == "**":
                nxt.append(p)
                if len(p) > 1 and _match_key(p[1], key):
                    drop = drop or len(p) == 2
                    nxt.append(p[2:])
            elif _match_key(head, key):
                drop = drop or len(p) == 1
                nxt.append(p[1:])
        if drop:
            continue
        out[key] = _exclude(child, [p for p in nxt if p]) if nxt else child
    return out


def apply_filter_path(body: Any, raw: str | None) -> Any:
    """Elasticsearch's ``filter_path``: dotted paths, ``*`` within a name, ``**`` any depth, ``-`` excludes."""
    if not raw:
        return body
    specs = [s.strip() for s in raw.split(",") if s.strip()]
    includes = [s.split(".") for s in specs if not s.startswith("-")]
    excludes = [s[1:].split(".") for s in specs if s.startswith("-")]
    if includes:
        body = _filter(body, includes)
        if body is _MISSING:
            return {}
    if excludes:
        body = _exclude(body, excludes)
    return body


def json_response(params: Mapping[str, str], body: Any, status: int = 200) -> Response:
    """JSON with Elasticsearch's response parameters applied: ``filter_path`` and ``pretty``."""
    fmt = params.get("format")
    if fmt is not None and fmt.lower() != "json":
        raise illegal_argument(f"Unsupported format [{fmt}]: this API answers in [json]")
    body = apply_filter_path(body, params.get("filter_path"))
    pretty = parse_bool(params, "pretty")
    content = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n" if pretty else orjson.dumps(body)
    return Response(content, status, media_type="application/json")


def tasks_in_order(tasks: Iterable[EsTask]) -> list[EsTask]:
    return sorted(tasks, key=lambda t: (t.start_ms, t.number))
