"""Druid's Tasks API under ``/druid/indexer/v1``: parse, call the core, shape the JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from overlord.api.errors import JSONResponse, druid_error
from overlord.api.task_status import TaskStatusEndpoint
from overlord.core.ids import check_lookup_id
from overlord.core.task import RunnerState, TaskRecord, find_task_type, needs_import
from overlord.errors import InvalidInput, NotFound, StoreUnavailable, TaskNotFound
from overlord.isotime import Interval, format_ms

if TYPE_CHECKING:
    from overlord.service import Service

PREFIX = "/druid/indexer/v1"
NO_LOG = "No log was found for this task. The task may not exist, or it may not have begun running yet."
NO_REPORTS = "No task reports were found for this task. The task may not exist, or it may not have completed yet."
_STATES = ("pending", "waiting", "running", "complete")
FORWARDED_HEADERS = ("X-Opaque-Id", "traceparent")


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _task_not_found(task_id: str) -> TaskNotFound:
    return TaskNotFound(f"Cannot find any task with id: [{task_id}]", taskId=task_id)


async def read_json_body(request: Request) -> Any:
    """The request's JSON body; a wrong content type is 415 and malformed JSON 400, both in Druid's shape."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not (content_type in ("application/json", "text/json") or content_type.endswith("+json")):
        raise _UnsupportedMediaType(
            f"Unsupported Content-Type [{content_type}]: send the task spec as application/json"
        )
    body = await request.body()
    if not body.strip():
        raise InvalidInput("Request body is empty: expected a JSON document")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON in request body: {exc}") from None
    check_json_depth(value)
    return value


MAX_JSON_DEPTH = 64  # no Druid spec nests deeper than about 10; orjson cannot write back past 254
MAX_STATUS_IDS = 10_000  # ids per POST /taskStatus: one bounded store query, one bounded answer
MAX_INT = 2**31 - 1  # Druid parses max, n and offset-like parameters as Java ints and longs
MAX_LONG = 2**63 - 1


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse documents nested deeper than ``limit`` (a 400): they cannot be stored or re-rendered."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise InvalidInput(f"Request body is nested deeper than {limit} levels", maxDepth=limit)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


class _UnsupportedMediaType(InvalidInput):
    """Unsupported media type."""

    http_status = 415
    error_code = "unsupportedMediaType"


def _forwarded_headers(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}


async def submit_task(request: Request) -> Response:
    payload = await read_json_body(request)
    type_name = payload.get("type") if isinstance(payload, dict) else None
    if isinstance(type_name, str) and needs_import(type_name):  # a type's first use imports its code: off the loop
        await run_in_threadpool(find_task_type, type_name)
    task_id = service_of(request).queue.submit(payload, _forwarded_headers(request))
    return JSONResponse({"task": task_id})


def parse_int_param(raw: str, name: str, *, minimum: int, maximum: int) -> int:
    """A query integer in ``[minimum, maximum]``, else a 400 naming the parameter (never a 500 later)."""
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"Invalid value for parameter [{name}]: [{raw}] is not an integer", field=name) from None
    if not minimum <= value <= maximum:
        bounds = f"a non-negative integer up to {maximum}" if minimum == 0 else f"between {minimum} and {maximum}"
        raise InvalidInput(f"Invalid value for parameter [{name}]: [{raw}] must be {bounds}", field=name)
    return value


def _parse_max(raw: str | None, name: str = "max") -> int | None:
    if raw is None or raw == "":
        return None
    return parse_int_param(raw, name, minimum=0, maximum=MAX_INT)


def _check_state(state: str | None) -> None:
    if state is not None and state not in _STATES:
        raise InvalidInput(f"Invalid task state[{state}]. Must be one of [{', '.join(_STATES)}].")


def _complete_tasks(
    svc: Service, datasource: str | None, task_type: str | None, interval: Interval | None, limit: int | None
) -> list[TaskRecord]:
    if interval is None:
        now = svc.clock.now_ms()
        interval = Interval(now - svc.settings.recently_finished_threshold_ms, now + 1)
    return svc.store.list_complete(
        datasource=datasource,
        task_type=task_type,
        created_after_ms=interval.start,
        created_before_ms=interval.end,
        limit=limit,
    )


def _active_tasks(svc: Service, state: str | None, datasource: str | None, task_type: str | None) -> list[TaskRecord]:
    wanted = None if state is None else RunnerState(state.upper())
    return [
        rec
        for rec in svc.queue.active_in_state(wanted)
        if (datasource is None or rec.datasource == datasource) and (task_type is None or rec.type == task_type)
    ]


MAX_LISTED_ERROR_CHARS = 100  # Druid's TaskStatus.MAX_ERROR_MSG_LENGTH


def listed_status(rec: TaskRecord) -> dict[str, Any]:
    """A listing's TaskStatusPlus: errorMsg cut as Druid cuts it; the task's own status keeps it whole."""
    status = rec.status_json()
    msg = status["errorMsg"]
    if msg is not None and len(msg) > MAX_LISTED_ERROR_CHARS:
        status["errorMsg"] = msg[:MAX_LISTED_ERROR_CHARS] + "..."
    return status


def _rendered(recs: list[TaskRecord]) -> list[tuple[str, bytes]]:
    """Each task's id with its listed JSON (the id lets a listing drop a task it saw twice)."""
    return [(r.id, orjson.dumps(listed_status(r))) for r in recs]


async def listing_response(
    request: Request,
    *,
    state: str | None,
    datasource: str | None = None,
    created_interval: Interval | None = None,
    max_complete: int | None = None,
    task_type: str | None = None,
) -> Response:
    """A task listing that cannot starve status polls: the active part is taken on the loop (memory,
    cheap); the complete part, a store read of up to thousands of rows and its rendering, runs in the
    listing pool, and identical listings that arrive together share one read."""
    _check_state(state)
    svc = service_of(request)
    active = _rendered(_active_tasks(svc, state, datasource, task_type)) if state != "complete" else []
    complete: list[tuple[str, bytes]] = []
    if state in (None, "complete"):
        key = (datasource, task_type, created_interval, max_complete, svc.queue.completions)
        complete = await svc.listings.run(
            key, lambda: _rendered(_complete_tasks(svc, datasource, task_type, created_interval, max_complete))
        )
        if active and complete:  # a task that ended while the store was read is in both: list it once, ended
            ended = {task_id for task_id, _ in complete}
            active = [item for item in active if item[0] not in ended]
    bodies = [body for _, body in complete] + [body for _, body in active]
    return Response(b"[" + b",".join(bodies) + b"]", media_type="application/json")


async def get_tasks(request: Request) -> Response:
    q = request.query_params
    state = q.get("state")
    raw_interval = q.get("createdTimeInterval")
    interval = Interval.parse(raw_interval.replace("_", "/"), field="createdTimeInterval") if raw_interval else None
    return await listing_response(
        request,
        state=state.lower() if state else None,
        datasource=q.get("datasource"),
        created_interval=interval,
        max_complete=_parse_max(q.get("max")),
        task_type=q.get("type"),
    )


def _state_listing(state: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        q = request.query_params
        limit = _parse_max(q.get("n"), "n") if state == "complete" else None
        return await listing_response(request, state=state, max_complete=limit, task_type=q.get("type") or None)

    return endpoint


def _get_record(request: Request, *, with_payload: bool = False) -> TaskRecord:
    task_id = request.path_params["task_id"]
    svc = service_of(request)
    rec = svc.queue.active.get(task_id)
    if rec is not None and (rec.payload is not None or not with_payload):
        return rec
    rec = svc.store.get_task(task_id, with_payload=with_payload)
    if rec is None:
        raise _task_not_found(task_id)
    return rec


async def get_task_payload(request: Request) -> Response:
    rec = _get_record(request, with_payload=True)
    return JSONResponse({"task": rec.id, "payload": rec.payload})


async def get_task_log(request: Request) -> Response:
    rec = _get_record(request)
    offset = parse_int_param(request.query_params.get("offset", "0"), "offset", minimum=-MAX_LONG, maximum=MAX_LONG)
    svc = service_of(request)
    chunks = await run_in_threadpool(svc.read_log, rec, offset)
    if chunks is None:
        raise NotFound(NO_LOG, taskId=rec.id)
    return StreamingResponse(iterate_in_threadpool(chunks), media_type="text/plain; charset=utf-8")


async def get_task_reports(request: Request) -> Response:
    rec = _get_record(request)
    report = await run_in_threadpool(service_of(request).read_report, rec)
    if report is None:
        raise NotFound(NO_REPORTS, taskId=rec.id)
    return Response(report, media_type="application/json")


async def shutdown_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    service_of(request).queue.shutdown(task_id)
    return JSONResponse({"task": task_id})


async def shutdown_all(request: Request) -> Response:
    datasource = request.path_params["datasource"]
    service_of(request).queue.shutdown_datasource(datasource)
    return JSONResponse({"dataSource": datasource})


async def bulk_status(request: Request) -> Response:
    if not (await request.body()).strip():
        return druid_error(400, "No Task IDs provided.")
    ids = await read_json_body(request)
    if not isinstance(ids, list) or not ids:
        return druid_error(400, "No Task IDs provided.")
    if len(ids) > MAX_STATUS_IDS:
        raise InvalidInput(
            f"Too many task ids: [{len(ids)}] is more than the limit of {MAX_STATUS_IDS} per request", field="taskIds"
        )
    if not all(isinstance(i, str) for i in ids):
        raise InvalidInput("Invalid request body: expected a JSON list of task id strings")
    for i, task_id in enumerate(ids):
        check_lookup_id(task_id, f"taskIds[{i}]")
    svc = service_of(request)
    found: dict[str, TaskRecord] = {}
    missing = []
    for task_id in ids:
        rec = svc.queue.active.get(task_id)
        if rec is not None:
            found[task_id] = rec
        else:
            missing.append(task_id)
    for rec in svc.store.get_tasks(missing):
        found[rec.id] = rec
    body = {
        task_id: {
            "id": rec.id,
            "status": rec.status_code.value,
            "duration": rec.duration,
            "errorMsg": rec.error_msg,
            "location": rec.location.to_json(),
        }
        for task_id in ids
        if (rec := found.get(task_id)) is not None
    }
    return JSONResponse(body)


async def delete_pending_segments(request: Request) -> Response:
    """Pending segments created within ``interval`` (all when absent); refused, as Druid does, when an
    active task of the data source was created at or before the interval's end."""
    datasource = request.path_params["datasource"]
    raw = request.query_params.get("interval")
    interval = Interval.parse(raw.replace("_", "/"), field="interval") if raw else None  # None: eternity
    svc = service_of(request)
    active = [r.created_ms for r in svc.queue.active.values() if r.datasource == datasource]
    if active and (interval is None or interval.end > min(active)):
        first = format_ms(min(active))
        raise InvalidInput(
            f"Cannot delete pendingSegments because there is at least one active task created at {first}",
            dataSource=datasource,
            interval=str(interval) if interval else "eternity",
        )
    deleted = await run_in_threadpool(svc.segments.delete_pending_segments, datasource, interval)
    return JSONResponse({"numDeleted": deleted})


async def total_worker_capacity(request: Request) -> Response:
    """Druid's TotalWorkerCapacityResponse; no auto-scaler here, so the maximum is -1 as in Druid."""
    runner = service_of(request).runner
    return JSONResponse(
        {
            "currentClusterCapacity": runner.capacity(),
            "maximumCapacityWithAutoScale": -1,
            "usedClusterCapacity": runner.used_slots(),
        }
    )


TASK_SEGMENTS_GONE = (
    "Segment IDs committed by a task action are not persisted anymore."
    " Use the metric 'segment/added/bytes' to identify the segments created by a task."
)


async def get_task_segments(request: Request) -> Response:
    """Deprecated in Druid, which now answers 404 with this text for every task; so does this service."""
    _get_record(request)
    raise NotFound(TASK_SEGMENTS_GONE, taskId=request.path_params["task_id"])


async def get_workers(request: Request) -> Response:
    svc = service_of(request)
    host = svc.settings.host
    return JSONResponse(
        [
            {
                "worker": {
                    "scheme": "http",
                    "host": info.host,
                    "ip": host,
                    "capacity": info.capacity,
                    "version": "0",
                    "category": "_default_worker_category",
                },
                "currCapacityUsed": len(info.running),
                "currParallelIndexCapacityUsed": 0,
                "availabilityGroups": info.running,
                "runningTasks": info.running,
                "lastCompletedTaskTime": format_ms(info.last_completed_ms) if info.last_completed_ms else None,
                "blacklistedUntil": None,
                **({"unusableBecause": info.problem} if info.problem else {}),
            }
            for info in svc.runner.workers()
        ]
    )


async def get_leader(request: Request) -> Response:
    """The leader's advertised URL, from any Overlord; 503 while no Overlord holds the lease."""
    url = service_of(request).leader_url()
    if url is None:
        raise StoreUnavailable("No Overlord is the leader right now (an election is under way); try again shortly")
    return PlainTextResponse(url)


async def is_leader(request: Request) -> Response:
    """Druid's answer: 200 with leader=true on the leader, 404 with leader=false elsewhere."""
    leading = service_of(request).is_leader()
    return JSONResponse({"leader": leading}, 200 if leading else 404)


def routes() -> list[Route]:
    p = PREFIX
    return [
        # hottest first: routes match in order
        Route(f"{p}/task/{{task_id}}/status", TaskStatusEndpoint(), methods=["GET"]),
        Route(f"{p}/task", submit_task, methods=["POST"]),
        Route(f"{p}/tasks", get_tasks, methods=["GET"]),
        Route(f"{p}/waitingTasks", _state_listing("waiting"), methods=["GET"]),
        Route(f"{p}/pendingTasks", _state_listing("pending"), methods=["GET"]),
        Route(f"{p}/runningTasks", _state_listing("running"), methods=["GET"]),
        Route(f"{p}/completeTasks", _state_listing("complete"), methods=["GET"]),
        Route(f"{p}/task/{{task_id}}", get_task_payload, methods=["GET"]),
        Route(f"{p}/task/{{task_id}}/log", get_task_log, methods=["GET"]),
        Route(f"{p}/task/{{task_id}}/reports", get_task_reports, methods=["GET"]),
        Route(f"{p}/task/{{task_id}}/report", get_task_reports, methods=["GET"]),
        Route(f"{p}/task/{{task_id}}/shutdown", shutdown_task, methods=["POST"]),
        Route(f"{p}/datasources/{{datasource}}/shutdownAllTasks", shutdown_all, methods=["POST"]),
        Route(f"{p}/taskStatus", bulk_status, methods=["POST"]),
        Route(f"{p}/pendingSegments/{{datasource}}", delete_pending_segments, methods=["DELETE"]),
        Route(f"{p}/workers", get_workers, methods=["GET"]),
        Route(f"{p}/totalWorkerCapacity", total_worker_capacity, methods=["GET"]),
        Route(f"{p}/task/{{task_id}}/segments", get_task_segments, methods=["GET"]),
        Route(f"{p}/leader", get_leader, methods=["GET"]),
        Route(f"{p}/isLeader", is_leader, methods=["GET"]),
    ]
