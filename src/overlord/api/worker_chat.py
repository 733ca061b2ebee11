"""The peon's chat endpoints (``/druid/worker/v1/chat/{taskId}/...``), served by the Overlord.

Local tasks' ``location`` points at this service (a Dask task's names its worker with port -1,
Druid's "nothing serves here"), so these answer for every running task from the live report its
peon keeps in its task directory or posts to the Overlord.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import NO_REPORTS, service_of
from overlord.api.errors import JSONResponse
from overlord.core.task import StatusCode, TaskRecord
from overlord.errors import InvalidInput, NotFound, NotRunningYet, TaskNotFound
from overlord.tasks.report_names import PARALLEL_PHASE, PARALLEL_SUBTASKS_REPORT

PREFIX = "/druid/worker/v1/chat"


def _live_report(request: Request) -> dict[str, Any]:
    task_id = request.path_params["task_id"]
    svc = service_of(request)
    rec = svc.queue.active.get(task_id)
    if rec is None:
        if svc.store.get_task(task_id) is None:
            raise TaskNotFound(f"Cannot find any task with id: [{task_id}]", taskId=task_id)
        raise NotFound(f"Task[{task_id}] is not running: live reports exist only while it runs", taskId=task_id)
    raw = svc.read_report(rec)
    if raw is None:
        raise NotFound(NO_REPORTS, taskId=task_id)
    return orjson.loads(raw)  # type: ignore[no-any-return]


def _payload(report: dict[str, Any]) -> dict[str, Any]:
    entry = report.get("ingestionStatsAndErrors") or {}
    return entry.get("payload") or {}


async def live_reports(request: Request) -> Response:
    return JSONResponse(_live_report(request))


async def row_stats(request: Request) -> Response:
    return JSONResponse(_payload(_live_report(request)).get("rowStats", {}))


async def unparseable_events(request: Request) -> Response:
    return JSONResponse(_payload(_live_report(request)).get("unparseableEvents", {}))


# -- index_parallel's chat endpoints (Druid's ParallelIndexSupervisorTask) ---------------------------


def _parallel_specs(request: Request) -> list[dict[str, Any]] | None:
    """The running index_parallel task's sub-task specs, from its live report; None in sequential mode."""
    task_id = request.path_params["task_id"]
    svc = service_of(request)
    rec = svc.queue.active.get(task_id)
    if rec is None or rec.type != "index_parallel":
        if rec is None and svc.store.get_task(task_id) is None:
            raise TaskNotFound(f"Cannot find any task with id: [{task_id}]", taskId=task_id)
        raise NotFound(f"Task[{task_id}] is not a running index_parallel task", taskId=task_id)
    raw = svc.read_report(rec)
    entry = (orjson.loads(raw) if raw else {}).get(PARALLEL_SUBTASKS_REPORT)
    return None if not isinstance(entry, dict) else list(entry["payload"]["specs"])


def _running_specs(request: Request) -> list[dict[str, Any]]:
    specs = _parallel_specs(request)
    if specs is None:
        raise NotRunningYet("task is not running yet", taskId=request.path_params["task_id"])
    return specs


def _attempts(request: Request, spec: dict[str, Any]) -> list[TaskRecord]:
    queue = service_of(request).queue
    return [rec for task_id in spec["taskIds"] if (rec := queue.get(task_id)) is not None]


async def parallel_mode(request: Request) -> Response:
    return JSONResponse("sequential" if _parallel_specs(request) is None else "parallel")


async def parallel_phase(request: Request) -> Response:
    if _parallel_specs(request) is None:
        raise InvalidInput("task is running in the sequential mode", taskId=request.path_params["task_id"])
    return JSONResponse(PARALLEL_PHASE)


async def parallel_progress(request: Request) -> Response:
    """Druid's ParallelIndexingPhaseProgress, counted from the sub-tasks' own records."""
    specs = _running_specs(request)
    last = [attempts[-1] for s in specs if (attempts := _attempts(request, s))]
    running = sum(1 for r in last if r.active)
    succeeded = sum(1 for r in last if r.status_code is StatusCode.SUCCESS)
    failed = sum(1 for r in last if r.status_code is StatusCode.FAILED)
    return JSONResponse(
        {
            "running": running,
            "succeeded": succeeded,
            "failed": failed,
            "complete": succeeded + failed,
            "total": running + succeeded + failed,
            "estimatedExpectedSucceeded": len(specs),
        }
    )


async def running_subtasks(request: Request) -> Response:
    return JSONResponse([r.id for s in _running_specs(request) for r in _attempts(request, s) if r.active])


def _specs_where(request: Request, active: bool) -> list[dict[str, Any]]:
    out = []
    for s in _running_specs(request):
        attempts = _attempts(request, s)
        if attempts and attempts[-1].active == active:
            out.append(s["spec"])
    return out


async def subtask_specs(request: Request) -> Response:
    return JSONResponse([s["spec"] for s in _running_specs(request)])


async def running_subtask_specs(request: Request) -> Response:
    return JSONResponse(_specs_where(request, active=True))


async def complete_subtask_specs(request: Request) -> Response:
    return JSONResponse(_specs_where(request, active=False))


def _one_spec(request: Request) -> dict[str, Any]:
    spec_id = request.path_params["spec_id"]
    for s in _running_specs(request):
        if s["spec"]["id"] == spec_id:
            return s
    raise NotFound(f"Sub-task spec[{spec_id}] not found", specId=spec_id)


async def subtask_spec(request: Request) -> Response:
    return JSONResponse(_one_spec(request)["spec"])


async def subtask_spec_state(request: Request) -> Response:
    """Druid's SubTaskSpecStatus: the spec, its running attempt's status and its finished attempts'."""
    s = _one_spec(request)
    attempts = _attempts(request, s)
    current = next((r.status_json() for r in attempts if r.active), None)
    history = [r.status_json() for r in attempts if not r.active]
    return JSONResponse({"spec": s["spec"], "currentStatus": current, "taskHistory": history})


async def subtask_spec_history(request: Request) -> Response:
    s = _one_spec(request)
    history = [r.status_json() for r in _attempts(request, s) if not r.active]
    if not history:
        raise NotFound(f"Sub-task spec[{s['spec']['id']}] has no finished attempt yet", specId=s["spec"]["id"])
    return JSONResponse(history)


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/{{task_id}}/liveReports", live_reports, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/rowStats", row_stats, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/unparseableEvents", unparseable_events, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/mode", parallel_mode, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/phase", parallel_phase, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/progress", parallel_progress, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtasks/running", running_subtasks, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtaskspecs", subtask_specs, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtaskspecs/running", running_subtask_specs, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtaskspecs/complete", complete_subtask_specs, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtaskspec/{{spec_id}}", subtask_spec, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtaskspec/{{spec_id}}/state", subtask_spec_state, methods=["GET"]),
        Route(f"{PREFIX}/{{task_id}}/subtaskspec/{{spec_id}}/history", subtask_spec_history, methods=["GET"]),
    ]
