"""Elasticsearch's Task Management API over Overlord's tasks: ``/_tasks``, ``/_cat/tasks`` and ``/``.

Listing reads only the in-memory active tasks (the queue's cache of committed state), so its
cost does not grow with the number of finished tasks; ``GET /_tasks/{id}`` falls back to the
metadata store, which keeps finished tasks retrievable the way Elasticsearch's ``.tasks`` does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.elasticsearch import nodes
from overlord.api.elasticsearch.cat import CAT_PARAMS, cat_table, help_text
from overlord.api.elasticsearch.errors import EsError, illegal_argument, not_found
from overlord.api.elasticsearch.mapping import action_for
from overlord.api.elasticsearch.params import (
    TaskId,
    check_params,
    group_by,
    node_selected,
    parse_bool,
    parse_size,
    parse_task_id,
    parse_time_nanos,
    simple_match,
    split_list,
    validation_failed,
)
from overlord.api.elasticsearch.render import (
    CANCEL_REASON,
    SHUTDOWN_PREFIX,
    EsTask,
    from_record,
    from_transport,
    headers_of,
    is_cancelled,
    json_response,
    list_body,
)
from overlord.api.elasticsearch.state import Cluster, EsState, NodeInfo, WaitOutcome, es_state, es_version_info
from overlord.api.home import home_page, wants_home_page
from overlord.core.task import RunnerState, StatusCode, TaskRecord
from overlord.errors import TaskNotFound

FORWARDED = ("X-Opaque-Id", "traceparent")
DEFAULT_WAIT_S = 30.0
SELECTION_PARAMS = frozenset({"nodes", "actions", "parent_task_id", "x_opaque_id"})
LIST_PARAMS = SELECTION_PARAMS | {"detailed", "group_by", "wait_for_completion", "timeout", "size", "cursor"}
GET_PARAMS = frozenset({"wait_for_completion", "timeout"})
CANCEL_PARAMS = SELECTION_PARAMS | {"wait_for_completion", "group_by"}
CAT_TASK_PARAMS = CAT_PARAMS | SELECTION_PARAMS | {"wait_for_completion", "timeout"}
CANCEL_BATCH = 50
"""Tasks a cancel renders or shuts down between yields to the event loop (each shutdown of a waiting
or pending task is a store write), so other requests are answered while thousands are cancelled."""


# -- plumbing ------------------------------------------------------------------------------------


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _caller_headers(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in FORWARDED if name in request.headers}


def _json(request: Request, params: dict[str, str], body: Any, status: int = 200) -> Response:
    return json_response(params, body, status)


def _timeout_s(params: dict[str, str]) -> float:
    nanos = parse_time_nanos(params.get("timeout"), "timeout")
    return DEFAULT_WAIT_S if nanos is None or nanos < 0 else nanos / 1e9


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away. These routes never read their body, so what arrives
    before the disconnect (the request's body) is dropped."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _gone() -> Response:
    """The answer to a request whose client left while it waited (nginx's 499, for the access log)."""
    return Response(status_code=499)


def failed_node(node_id: str, cause: EsError) -> dict[str, Any]:
    """One entry of ``node_failures`` (Elasticsearch's FailedNodeException)."""
    return {
        "type": "failed_node_exception",
        "reason": f"Failed node [{node_id}]",
        "node_id": node_id,
        "caused_by": cause.cause(),
    }


# -- selection (list, cat and cancel share it, as in Elasticsearch) ------------------------------


@dataclass(frozen=True)
class Selection:
    nodes: list[str]
    actions: list[str]
    parent: TaskId | None
    opaque_ids: list[str]

    @classmethod
    def parse(cls, params: dict[str, str]) -> Selection:
        return cls(
            nodes=split_list(params.get("nodes")),
            actions=split_list(params.get("actions")),
            parent=parse_task_id(params.get("parent_task_id")),
            opaque_ids=split_list(params.get("x_opaque_id")),
        )

    def node_ok(self, n: NodeInfo, *, local: bool) -> bool:
        return node_selected(self.nodes, node_id=n.id, name=n.name, host=n.host, ip=n.ip, roles=n.roles, local=local)

    def matches(self, state: EsState, rec: TaskRecord) -> bool:
        if self.actions and not simple_match(self.actions, action_for(rec.type)):
            return False
        if self.parent is not None:
            if rec.group_id == rec.id or not state.knows_node(self.parent.node, refresh=False):
                return False
            if state.number_of(rec.group_id) != self.parent.number:
                return False
        if self.opaque_ids:
            parent = state.service.queue.active.get(rec.group_id) if rec.group_id != rec.id else None
            if headers_of(state, rec, parent).get("X-Opaque-Id") not in self.opaque_ids:
                return False
        return True


def select_records(state: EsState, sel: Selection, cluster: Cluster) -> list[TaskRecord]:
    """Active Overlord tasks matching the selection, on the nodes it selects: a running task is on its cluster
    worker, every other one on this Overlord."""
    recs = [rec for rec in state.service.queue.active.values() if sel.matches(state, rec)]
    if not sel.nodes:
        return recs
    chosen = {n.id for n in cluster.nodes if sel.node_ok(n, local=n is cluster.local)}
    return [rec for rec in recs if cluster.node_of(rec.id).id in chosen]


def select_tasks(state: EsState, sel: Selection, *, detailed: bool, transport: bool = True) -> list[EsTask]:
    now_ms = state.service.clock.now_ms()
    active = state.service.queue.active
    cluster = state.cluster()
    tasks = [
        from_record(state, rec, now_ms, detailed=detailed, parent=active.get(rec.group_id), cluster=cluster)
        for rec in select_records(state, sel, cluster)
    ]
    if transport and sel.parent is None and sel.node_ok(state.node, local=True):
        now_ns = time.monotonic_ns()
        for t in list(state.inflight.values()):
            if sel.actions and not simple_match(sel.actions, t.action):
                continue
            if sel.opaque_ids and t.headers.get("X-Opaque-Id") not in sel.opaque_ids:
                continue
            tasks.append(from_transport(state, t, now_ns, detailed=detailed))
    tasks.sort(key=lambda t: (t.start_ms, t.number))
    return tasks


def _encode_cursor(task: EsTask) -> str:
    return base64.urlsafe_b64encode(f"{task.start_ms}:{task.number}".encode()).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    try:
        start, number = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        return int(start), int(number)
    except (ValueError, UnicodeDecodeError):
        raise illegal_argument(f"invalid [cursor] value [{raw}]: pass back the [next_cursor] of a listing") from None


def _page(tasks: list[EsTask], params: dict[str, str]) -> tuple[list[EsTask], str | None]:
    """Our paging extension (``size``, ``cursor``): Elasticsearch's own ``_tasks`` has none."""
    size = parse_size(params)
    after = _decode_cursor(params.get("cursor"))
    if after is not None:
        tasks = [t for t in tasks if (t.start_ms, t.number) > after]
    if size is None or len(tasks) <= size:
        return tasks, None
    return tasks[:size], _encode_cursor(tasks[size - 1])


async def _wait_listed(
    request: Request, state: EsState, tasks: list[EsTask], timeout_s: float
) -> list[dict[str, Any]] | None:
    """``wait_for_completion`` on a listing; a timeout is a node failure, as in Elasticsearch; None
    when the client went away."""
    ids = [t.druid_id for t in tasks if t.druid_id is not None]
    outcome = await state.wait_for(ids, timeout_s, lambda: _disconnected(request))
    if outcome is WaitOutcome.DONE:
        return []
    if outcome is WaitOutcome.GONE:
        return None
    cause = EsError("Timed out waiting for completion of tasks", type="timeout_exception", status=429)
    return [failed_node(state.node.id, cause)]


# -- routes --------------------------------------------------------------------------------------


async def list_tasks(request: Request) -> Response:
    params = _params(request)
    check_params(request.url.path, params, LIST_PARAMS)
    state = es_state(request.app)
    detailed = parse_bool(params, "detailed")
    group = group_by(params)
    wait = parse_bool(params, "wait_for_completion")
    timeout_s = _timeout_s(params)
    sel = Selection.parse(params)
    with state.transport_task("cluster:monitor/tasks/lists", _caller_headers(request)):
        tasks, cursor = _page(select_tasks(state, sel, detailed=detailed), params)
        failures = await _wait_listed(request, state, tasks, timeout_s) if wait else []
        if failures is None:
            return _gone()
        if failures:
            tasks = []
        body = list_body(state, tasks, group, human=parse_bool(params, "human"), node_failures=failures)
    if cursor is not None:
        body["next_cursor"] = cursor
    return _json(request, params, body)


def _find(state: EsState, tid: TaskId) -> TaskRecord | None:
    rec = state.service.store.get_task_by_number(tid.number)
    if rec is None:
        return None
    return state.service.queue.active.get(rec.id, rec)


def task_result(state: EsState, rec: TaskRecord, human: bool) -> dict[str, Any]:
    """Elasticsearch's TaskResult: ``completed``, ``task``, then ``error`` or ``response`` once finished."""
    svc = state.service
    if rec.payload is None:
        stored = svc.store.get_task(rec.id, with_payload=True)
        rec = rec.with_(payload=stored.payload if stored else None)
    parent = svc.queue.get(rec.group_id) if rec.group_id != rec.id else None
    task = from_record(state, rec, svc.clock.now_ms(), detailed=True, parent=parent)
    body: dict[str, Any] = {"completed": not rec.active, "task": task.to_json(human)}
    if rec.active:
        return body
    if rec.status_code is StatusCode.SUCCESS:
        raw = svc.read_report(rec)
        try:
            report = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            report = None
        body["response"] = {"status": rec.status_json(), "report": report}
    else:
        cancelled = is_cancelled(state, rec)
        body["error"] = {
            "type": "task_cancelled_exception" if cancelled else "task_failed_exception",
            "reason": f"task cancelled [{CANCEL_REASON}]" if cancelled else (rec.error_msg or "Task failed"),
            "task_status": rec.status_json(),
        }
    return body


async def get_task(request: Request) -> Response:
    params = _params(request)
    check_params(request.url.path, params, GET_PARAMS)
    raw_id = request.path_params["task_id"]
    tid = parse_task_id(raw_id)
    if tid is None:
        raise validation_failed("task id is required")
    state = es_state(request.app)
    wait = parse_bool(params, "wait_for_completion")
    timeout_s = _timeout_s(params)
    human = parse_bool(params, "human")
    with state.transport_task("cluster:monitor/task/get", _caller_headers(request)):
        if not state.knows_node(tid.node):
            raise not_found(
                f"task [{tid}] belongs to the node [{tid.node}] which isn't part of the cluster "
                "and there is no record of the task"
            )
        transport = state.inflight.get(tid.number) if tid.node == state.node.id else None
        rec = _find(state, tid)
        if rec is None and transport is not None:
            task = from_transport(state, transport, time.monotonic_ns(), detailed=True)
            return _json(request, params, {"completed": False, "task": task.to_json(human)})
        if rec is None:
            raise not_found(f"task [{tid}] isn't running and hasn't stored its results")
        if rec.active and wait:
            outcome = await state.wait_for([rec.id], timeout_s, lambda: _disconnected(request))
            if outcome is WaitOutcome.GONE:
                return _gone()
            if outcome is WaitOutcome.TIMEOUT:
                raise EsError("Timed out waiting for completion of task", type="timeout_exception", status=429)
            rec = state.service.queue.get(rec.id) or rec
        body = task_result(state, rec, human)
    return _json(request, params, body)


def _children_by_parent(state: EsState) -> dict[str, list[str]]:
    """Active sub-tasks by their group (parent) id, in one pass over the active tasks."""
    children: dict[str, list[str]] = {}
    for r in state.service.queue.active.values():
        if r.group_id != r.id:
            children.setdefault(r.group_id, []).append(r.id)
    return children


def _shutdown(state: EsState, task_id: str) -> None:
    with contextlib.suppress(TaskNotFound):  # it finished meanwhile
        state.service.queue.shutdown(task_id, f"{SHUTDOWN_PREFIX}: task cancelled [{CANCEL_REASON}]")


async def cancel_tasks(request: Request) -> Response:
    params = _params(request)
    check_params(request.url.path, params, CANCEL_PARAMS)
    state = es_state(request.app)
    raw_id = request.path_params.get("task_id")
    tid = parse_task_id(raw_id)
    sel = Selection.parse(params)
    group = group_by(params)
    wait = parse_bool(params, "wait_for_completion")
    if tid is not None and sel.nodes:
        raise validation_failed("task id cannot be used together with node ids")
    failures: list[dict[str, Any]] = []
    with state.transport_task("cluster:admin/tasks/cancel", _caller_headers(request)):
        targets: list[TaskRecord] = []
        if tid is not None:
            known = state.knows_node(tid.node)
            rec = _find(state, tid) if known else None
            if not known:
                failures.append(
                    failed_node(tid.node, EsError(f"No such node [{tid.node}]", type="no_such_node_exception"))
                )
            elif rec is not None and rec.active and sel.matches(state, rec):
                targets = [rec]
            else:
                missing = rec is None or not rec.active
                if tid.number in state.inflight and rec is None:
                    missing = False
                reason = f"task [{tid}] is missing" if missing else f"task [{tid}] doesn't support this operation"
                failures.append(failed_node(state.node.id, not_found(reason)))
        cluster = state.cluster()
        if tid is None:
            targets = select_records(state, sel, cluster)
        now_ms = state.service.clock.now_ms()
        active = state.service.queue.active
        snapshot: list[EsTask] = []
        for i, r in enumerate(targets, 1):
            parent = active.get(r.group_id)
            snapshot.append(
                from_record(state, r, now_ms, detailed=False, parent=parent, force_cancelled=True, cluster=cluster)
            )
            if i % CANCEL_BATCH == 0:
                await asyncio.sleep(0)
        children = _children_by_parent(state)
        stopping = list(dict.fromkeys(t for rec in targets for t in (rec.id, *children.get(rec.id, ()))))
        # queued tasks first: a slot freed by a stopped peon must not launch a task about to be cancelled
        order = sorted(stopping, key=lambda t: t in active and active[t].runner_state is RunnerState.RUNNING)
        for i, task_id in enumerate(order, 1):
            if task_id in active:  # else it ended meanwhile (or with its parent)
                _shutdown(state, task_id)
            if i % CANCEL_BATCH == 0:
                await asyncio.sleep(0)
        if wait:
            grace_s = state.service.settings.shutdown_grace_ms / 1000
            outcome = await state.wait_for(
                stopping, max(DEFAULT_WAIT_S, 2 * grace_s + 5), lambda: _disconnected(request)
            )
            if outcome is WaitOutcome.GONE:
                return _gone()
        body = list_body(state, snapshot, group, human=parse_bool(params, "human"), node_failures=failures)
    return _json(request, params, body)


def _cat_format(request: Request, params: dict[str, str]) -> bool:
    """True for JSON: ``format=json``, or an Accept header whose first choice is JSON."""
    fmt = params.get("format")
    if fmt is not None:
        fmt = fmt.lower()
        if fmt in ("yaml", "smile", "cbor"):
            raise illegal_argument(f"Unsupported format [{fmt}]: _cat answers in [text] or [json]")
        return fmt == "json"
    first = request.headers.get("accept", "").split(",")[0].split(";")[0].strip().lower()
    return first in ("application/json", "application/vnd.elasticsearch+json")


async def cat_tasks(request: Request) -> Response:
    params = _params(request)
    check_params(request.url.path, params, CAT_TASK_PARAMS)
    state = es_state(request.app)
    detailed = parse_bool(params, "detailed")
    if parse_bool(params, "help"):
        return Response(help_text(detailed), media_type="text/plain; charset=UTF-8")
    as_json = _cat_format(request, params)
    wait = parse_bool(params, "wait_for_completion")
    timeout_s = _timeout_s(params)
    sel = Selection.parse(params)
    with state.transport_task("cluster:monitor/tasks/lists", _caller_headers(request)):
        tasks = select_tasks(state, sel, detailed=detailed)
        failures = await _wait_listed(request, state, tasks, timeout_s) if wait else []
        if failures is None:
            return _gone()
        if failures:
            tasks = []
        table = cat_table(tasks, state.node, params, as_json=as_json)
    if isinstance(table, list):
        return _json(request, {k: v for k, v in params.items() if k != "format"}, table)
    return Response(table, media_type="text/plain; charset=UTF-8")


async def root(request: Request) -> Response:
    """The cluster-info document Elasticsearch clients read when they connect; a browser gets the home page."""
    state = es_state(request.app)
    if wants_home_page(request):
        return home_page(request, node_name=state.node.name)
    params = _params(request)
    check_params(request.url.path, params, ())
    body = {
        "name": state.node.name,
        "cluster_name": "overlord",
        "cluster_uuid": state.node.id,
        "version": es_version_info(),
        "tagline": "You Know, for Search",
    }
    return _json(request, params, body)


def routes() -> list[Route]:
    return [
        *nodes.routes(),
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/_tasks", list_tasks, methods=["GET"]),
        Route("/_tasks/_cancel", cancel_tasks, methods=["POST"]),
        Route("/_tasks/{task_id}", get_task, methods=["GET"]),
        Route("/_tasks/{task_id}/_cancel", cancel_tasks, methods=["POST"]),
        Route("/_cat/tasks", cat_tasks, methods=["GET"]),
    ]
