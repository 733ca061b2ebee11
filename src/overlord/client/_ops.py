"""Every client operation, written once as a sans-IO generator (see ``_protocol``).

``Client`` and ``AsyncClient`` expose these as methods; the first parameter, the ``Context``, is
bound by the client. Docstrings here are the methods' docstrings.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from overlord.client import errors
from overlord.client._protocol import (
    COORDINATOR,
    INDEXER,
    Context,
    Emit,
    Op,
    Request,
    Sleep,
    call,
    call_json,
    error_for,
    log,
    quote,
    send,
)
from overlord.client.backoff import Backoff
from overlord.client.classify import explain_failure
from overlord.client.classify import suggest_max_num_concurrent_sub_tasks as _suggest
from overlord.client.idempotency import deterministic_task_id, is_same_spec
from overlord.client.models import (
    DataSegment,
    Submission,
    TaskReport,
    TaskStatus,
    WaitResult,
    WorkerInfo,
    parse_status,
)
from overlord.client.specs import _Spec, to_druid

ProgressHook = Callable[[TaskStatus, TaskReport | None], None]
"""Called at every successful poll with the status and, if asked for, the live report."""


def _task(task_id: str, suffix: str = "") -> str:
    return f"{INDEXER}/task/{quote(task_id)}{suffix}"


def _statuses(body: Any) -> list[TaskStatus]:
    return [parse_status(item) for item in body or []]


# --- single endpoints -------------------------------------------------------------------------


def status(ctx: Context, task_id: str) -> Op[TaskStatus]:
    """The task's status (``GET /task/{id}/status``); ``NotFoundError`` when unknown."""
    body = yield from call_json(ctx, Request("GET", _task(task_id, "/status")))
    return parse_status(body)


def statuses(ctx: Context, task_ids: Sequence[str]) -> Op[dict[str, TaskStatus]]:
    """Statuses of many tasks in one request (``POST /taskStatus``); unknown ids are left out."""
    if not task_ids:
        return {}
    body = yield from call_json(ctx, Request("POST", f"{INDEXER}/taskStatus", json=list(task_ids)))
    return {tid: TaskStatus.model_validate({"id": tid, **item}) for tid, item in (body or {}).items()}


def tasks(
    ctx: Context,
    *,
    state: str | None = None,
    datasource: str | None = None,
    created_time_interval: str | None = None,
    max: int | None = None,
    type: str | None = None,
) -> Op[list[TaskStatus]]:
    """Tasks, filtered (``GET /tasks``); ``state`` is pending, waiting, running or complete."""
    params = {
        "state": state,
        "datasource": datasource,
        "createdTimeInterval": created_time_interval.replace("/", "_") if created_time_interval else None,
        "max": max,
        "type": type,
    }
    query = {k: v for k, v in params.items() if v is not None}
    body = yield from call_json(ctx, Request("GET", f"{INDEXER}/tasks", params=query))
    return _statuses(body)


def waiting_tasks(ctx: Context) -> Op[list[TaskStatus]]:
    """Tasks waiting for their locks (``GET /waitingTasks``)."""
    return _statuses((yield from call_json(ctx, Request("GET", f"{INDEXER}/waitingTasks"))))


def pending_tasks(ctx: Context) -> Op[list[TaskStatus]]:
    """Tasks waiting for a worker slot (``GET /pendingTasks``)."""
    return _statuses((yield from call_json(ctx, Request("GET", f"{INDEXER}/pendingTasks"))))


def running_tasks(ctx: Context) -> Op[list[TaskStatus]]:
    """Tasks on a worker (``GET /runningTasks``)."""
    return _statuses((yield from call_json(ctx, Request("GET", f"{INDEXER}/runningTasks"))))


def complete_tasks(ctx: Context, n: int | None = None) -> Op[list[TaskStatus]]:
    """Recently completed tasks, newest first (``GET /completeTasks?n=``)."""
    params = {"n": n} if n is not None else None
    return _statuses((yield from call_json(ctx, Request("GET", f"{INDEXER}/completeTasks", params=params))))


def payload(ctx: Context, task_id: str) -> Op[dict[str, Any]]:
    """The stored task spec (``GET /task/{id}``)."""
    body = yield from call_json(ctx, Request("GET", _task(task_id)))
    return dict(body.get("payload") or {}) if isinstance(body, dict) else {}


def log_text(ctx: Context, task_id: str, offset: int | None = None) -> Op[str]:
    """The task log from byte ``offset`` (negative: the last bytes); ``NotFoundError`` if none yet."""
    params = {"offset": offset} if offset is not None else None
    response = yield from call(ctx, Request("GET", _task(task_id, "/log"), params=params))
    return response.text


def report(ctx: Context, task_id: str) -> Op[TaskReport]:
    """The live or completion report (``GET /task/{id}/reports``); ``NotFoundError`` if none yet."""
    body = yield from call_json(ctx, Request("GET", _task(task_id, "/reports")))
    return TaskReport.model_validate(body or {})


def _report_or_none(ctx: Context, task_id: str) -> Op[TaskReport | None]:
    try:
        return (yield from report(ctx, task_id))
    except (errors.NotFoundError, errors.TransientError):
        return None


def shutdown(ctx: Context, task_id: str) -> Op[str]:
    """Ask the service to stop a task (``POST /task/{id}/shutdown``); returns the id."""
    body = yield from call_json(ctx, Request("POST", _task(task_id, "/shutdown")))
    log.info("shutdown requested", extra={"task_id": task_id, "action": "shutdown"})
    return str(body.get("task", task_id)) if isinstance(body, dict) else task_id


def shutdown_all(ctx: Context, datasource: str) -> Op[str]:
    """Stop every active task of a data source; ``NotFoundError`` when none is active."""
    path = f"{INDEXER}/datasources/{quote(datasource)}/shutdownAllTasks"
    body = yield from call_json(ctx, Request("POST", path))
    return str(body.get("dataSource", datasource)) if isinstance(body, dict) else datasource


def delete_pending_segments(ctx: Context, datasource: str) -> Op[int]:
    """Clean the data source's pending segments (``DELETE /pendingSegments/{ds}``); returns how many."""
    path = f"{INDEXER}/pendingSegments/{quote(datasource)}"
    body = yield from call_json(ctx, Request("DELETE", path))
    return int(body.get("numDeleted", 0)) if isinstance(body, dict) else 0


def workers(ctx: Context) -> Op[list[WorkerInfo]]:
    """Workers with their capacity and running tasks (``GET /workers``)."""
    body = yield from call_json(ctx, Request("GET", f"{INDEXER}/workers"))
    return [WorkerInfo.model_validate(item) for item in body or []]


def suggest_max_num_concurrent_sub_tasks(ctx: Context, *, reserve: int = 1, cap: int | None = None) -> Op[int]:
    """A ``maxNumConcurrentSubTasks`` that fits the workers' free slots right now."""
    return _suggest((yield from workers(ctx)), reserve=reserve, cap=cap)


def leader(ctx: Context) -> Op[str]:
    """The current leader's URL (``GET /leader``)."""
    return (yield from call(ctx, Request("GET", f"{INDEXER}/leader"))).text.strip()


def is_leader(ctx: Context) -> Op[bool]:
    """Whether this server leads (``GET /isLeader``); a follower answers 404 with leader=false."""
    request = Request("GET", f"{INDEXER}/isLeader")
    response = yield from send(ctx, request)
    if response.status_code not in (200, 404):
        raise error_for(request, response)
    body = response.json()
    return bool(body.get("leader")) if isinstance(body, dict) else False


def health(ctx: Context) -> Op[bool]:
    """True when the service answers its health check (``GET /status/health``)."""
    response = yield from call(ctx, Request("GET", "/status/health"))
    return response.text.strip().lower() == "true"


def datasources(ctx: Context) -> Op[list[str]]:
    """Data sources with segments (coordinator ``GET /metadata/datasources``)."""
    body = yield from call_json(ctx, Request("GET", f"{COORDINATOR}/metadata/datasources"))
    return [str(name) for name in body or []]


def segments(ctx: Context, datasource: str) -> Op[list[DataSegment]]:
    """A data source's published segments, full metadata."""
    path = f"{COORDINATOR}/metadata/datasources/{quote(datasource)}/segments"
    body = yield from call_json(ctx, Request("GET", path, params={"full": ""}))
    return [DataSegment.model_validate(item) for item in body or []]


# --- submit and wait --------------------------------------------------------------------------


def submit(
    ctx: Context,
    spec: _Spec | Mapping[str, Any],
    *,
    task_id: str | None = None,
    attempt: int = 0,
    validate: bool = True,
) -> Op[str]:
    """Submit a task; returns its id. Idempotent: resubmitting the same spec attaches to the task.

    The id is ``task_id``, else the spec's ``id``, else derived from the spec's content. If the
    service already has that id (say our first answer was lost), this returns the id: a derived id
    proves the same content; a chosen id is checked against the stored spec, and a different one
    raises ``SpecMismatchError``. ``submission`` also says whether it attached.
    """
    outcome = yield from submission(ctx, spec, task_id=task_id, attempt=attempt, validate=validate)
    return outcome.task_id


def submission(
    ctx: Context,
    spec: _Spec | Mapping[str, Any],
    *,
    task_id: str | None = None,
    attempt: int = 0,
    validate: bool = True,
) -> Op[Submission]:
    """``submit``, answering whether a new task was queued or an existing one was attached to.

    When it attached through a derived id, ``next_attempt`` is the first ``attempt`` whose id the
    service does not know yet: pass it to run the same spec again.
    """
    body = to_druid(spec, validate=validate)
    derived = deterministic_task_id(body, attempt)
    tid = task_id or body.get("id") or derived
    body = {**body, "id": tid}
    extra = {"task_id": tid, "action": "submit"}
    request = Request("POST", f"{INDEXER}/task", json=body)
    response = yield from send(ctx, request)
    if response.ok:
        answer = response.json()
        got = answer.get("task", tid) if isinstance(answer, dict) else tid
        log.info("submitted task %s", got, extra=extra)
        return Submission(task_id=str(got), attached=False)
    error = error_for(request, response)
    if not isinstance(error, errors.TaskAlreadyExists):
        raise error
    # A derived id already encodes the content: only a chosen id needs the stored spec compared
    # (the service may store a normalised form, e.g. intervals rewritten to full ISO instants).
    stored = None if tid == derived else (yield from _stored_payload(ctx, tid))
    if stored is not None and not is_same_spec(body, stored):
        raise errors.SpecMismatchError(
            f"Task[{tid}] already exists with a different spec",
            status_code=400,
            error_code=error.druid_error_code,
            body=error.body,
            method="POST",
            path=request.path,
        )
    log.info("attached to existing task %s", tid, extra={**extra, "action": "attach"})
    existing = yield from status(ctx, tid)
    rerun = None
    if tid == derived:
        rerun = attempt + 1
        while rerun < attempt + _MAX_ATTEMPT_PROBES and (yield from _exists(ctx, deterministic_task_id(body, rerun))):
            rerun += 1
    return Submission(task_id=tid, attached=True, existing=existing, next_attempt=rerun)


_MAX_ATTEMPT_PROBES = 20


def _exists(ctx: Context, task_id: str) -> Op[bool]:
    try:
        yield from status(ctx, task_id)
    except errors.NotFoundError:
        return False
    return True


def _stored_payload(ctx: Context, task_id: str) -> Op[dict[str, Any] | None]:
    """The stored spec, tolerating a brief 404 (the id exists, the payload may not be visible yet)."""
    start = ctx.clock.monotonic()
    attempt = 0
    while True:
        try:
            return (yield from payload(ctx, task_id))
        except errors.NotFoundError:
            if ctx.clock.monotonic() - start >= ctx.wait.not_found_grace:
                return None
        yield Sleep(ctx.wait.poll.delay(attempt, ctx.rng))
        attempt += 1


def wait(
    ctx: Context,
    task_id: str,
    *,
    timeout: float | None = None,
    not_found_grace: float = 0.0,
    on_update: ProgressHook | None = None,
    live_report: bool | None = None,
) -> Op[WaitResult]:
    """Poll until the task ends; returns status and report, raises ``TaskFailedError`` on FAILED.

    Polls back off exponentially with full jitter up to the policy's max interval. ``timeout``
    (default: the wait policy's; ``math.inf`` for none) bounds the whole wait. Transient errors
    while polling are logged and polled through until the timeout. A 404 is tolerated for
    ``not_found_grace`` seconds before the task counts as lost (``submit_and_wait`` sets it).
    ``live_report`` (default: the policy's) also fetches the live report for ``on_update``.
    """
    policy = ctx.wait
    fetch_live = policy.fetch_live_report if live_report is None else live_report
    limit = policy.timeout if timeout is None else timeout
    start = ctx.clock.monotonic()
    deadline = None if limit is None or math.isinf(limit) else start + limit
    extra = {"task_id": task_id, "action": "wait"}
    attempt = 0
    seen: TaskStatus | None = None
    last_state: str | None = None
    while True:
        try:
            request = Request("GET", _task(task_id, "/status"))
            response = yield from send(ctx, request)
            if response.status_code == 404:
                elapsed = ctx.clock.monotonic() - start
                if seen is not None or elapsed >= not_found_grace:
                    if seen is None and not_found_grace <= 0:
                        raise error_for(request, response)
                    raise errors.TaskLostError(f"Task[{task_id}] is no longer known to the service", task_id=task_id)
            elif not response.ok:
                raise error_for(request, response)
            else:
                current = parse_status(response.json())
                seen = current
                if current.state != last_state:
                    log.info("task %s is %s", task_id, current.state, extra={**extra, "state": current.state})
                    last_state = current.state
                if current.is_terminal:
                    return (yield from _finish(ctx, current, on_update))
                if on_update is not None:
                    live = (yield from _report_or_none(ctx, task_id)) if fetch_live else None
                    on_update(current, live)
        except errors.TransientError as exc:
            log.warning("polling task %s failed: %s", task_id, exc, extra={**extra, "error": str(exc)})
        delay = policy.poll.delay(attempt, ctx.rng)
        attempt += 1
        if deadline is not None:
            remaining = deadline - ctx.clock.monotonic()
            if remaining <= 0:
                raise errors.WaitTimeoutError(
                    f"Task[{task_id}] did not finish within {limit}s", task_id=task_id, last_status=seen
                )
            delay = min(delay, remaining)
        yield Sleep(delay)


def _finish(ctx: Context, final: TaskStatus, on_update: ProgressHook | None) -> Op[WaitResult]:
    """Fetch the completion report (briefly retrying a 404) and raise on FAILED."""
    final_report = yield from _final_report(ctx, final.id, final.type)
    return _conclude(ctx, final, final_report, on_update)


def _conclude(
    ctx: Context, final: TaskStatus, final_report: TaskReport | None, on_update: ProgressHook | None
) -> WaitResult:
    """The result of a task that ended: returned on SUCCESS, raised as ``TaskFailedError`` on FAILED."""
    if on_update is not None:
        on_update(final, final_report)
    extra = {"task_id": final.id, "action": "finish", "state": str(final.status_code)}
    if final.status_code == "SUCCESS":
        log.info("task %s succeeded", final.id, extra=extra)
        return WaitResult(status=final, report=final_report)
    verdict = explain_failure(final, final_report)
    failure = errors.TaskFailedError(status=final, report=final_report, kind=verdict.kind)
    log.warning(
        "task %s failed (%s, %s): %s",
        final.id,
        verdict.kind,
        verdict.reason,
        failure.error_msg,
        extra={**extra, "kind": verdict.kind, "reason": verdict.reason},
    )
    if verdict.kind == "structural" and ctx.on_structural_failure is not None:
        try:
            ctx.on_structural_failure(failure)
        except Exception:
            log.exception("structural-failure hook raised", extra=extra)
    raise failure


def _final_report(ctx: Context, task_id: str, task_type: str | None = None) -> Op[TaskReport | None]:
    start = ctx.clock.monotonic()
    grace = 0.0 if task_type in ctx.wait.reportless_types else ctx.wait.report_grace
    attempt = 0
    while True:
        found = yield from _report_or_none(ctx, task_id)
        remaining = grace - (ctx.clock.monotonic() - start)
        if found is not None or remaining <= 0:
            return found
        yield Sleep(min(ctx.wait.poll.delay(attempt, ctx.rng), remaining))
        attempt += 1


def submit_and_wait(
    ctx: Context,
    spec: _Spec | Mapping[str, Any],
    *,
    task_id: str | None = None,
    attempt: int = 0,
    timeout: float | None = None,
    on_update: ProgressHook | None = None,
    live_report: bool | None = None,
    validate: bool = True,
) -> Op[WaitResult]:
    """``submit`` then ``wait``, tolerating a brief 404 right after the submit."""
    tid = yield from submit(ctx, spec, task_id=task_id, attempt=attempt, validate=validate)
    grace = ctx.wait.not_found_grace
    return (
        yield from wait(ctx, tid, timeout=timeout, not_found_grace=grace, on_update=on_update, live_report=live_report)
    )


def wait_many(
    ctx: Context, task_ids: Sequence[str], *, timeout: float | None = None
) -> Op[dict[str, WaitResult | errors.ClientError]]:
    """Wait for many tasks with one bulk status request per poll (no thread or coroutine each).

    Returns, per id, a ``WaitResult`` or the error that ended its wait (``TaskFailedError``,
    ``TaskLostError``, ``WaitTimeoutError``). Completion reports not there yet share one
    ``report_grace`` window (the bulk status does not say a task's type, so it cannot tell a
    reportless task), instead of one window per task.
    """
    limit = ctx.wait.timeout if timeout is None else timeout
    start = ctx.clock.monotonic()
    results: dict[str, WaitResult | errors.ClientError] = {}
    pending = list(dict.fromkeys(task_ids))
    awaiting: dict[str, tuple[TaskStatus, float]] = {}  # ended, report not seen yet: (status, give up at)
    attempt = 0
    found: dict[str, TaskStatus] = {}
    while pending or awaiting:
        if pending:
            try:
                found = yield from statuses(ctx, pending)
            except errors.TransientError as exc:
                log.warning("bulk status failed: %s", exc, extra={"action": "wait_many"})
                found = {}
        now = ctx.clock.monotonic()
        elapsed = now - start
        for tid in list(pending):
            current = found.get(tid)
            if current is not None and current.is_terminal:
                pending.remove(tid)
                grace = 0.0 if current.type in ctx.wait.reportless_types else ctx.wait.report_grace
                awaiting[tid] = (current, now + grace)
            elif current is None and elapsed >= ctx.wait.not_found_grace:
                pending.remove(tid)
                results[tid] = errors.TaskLostError(f"Task[{tid}] is not known to the service", task_id=tid)
        for tid, (final, give_up_at) in list(awaiting.items()):
            final_report = yield from _report_or_none(ctx, tid)
            if final_report is None and ctx.clock.monotonic() < give_up_at:
                continue
            del awaiting[tid]
            try:
                results[tid] = _conclude(ctx, final, final_report, None)
            except errors.TaskFailedError as failure:
                results[tid] = failure
        if not (pending or awaiting):
            break
        delay = ctx.wait.poll.delay(attempt, ctx.rng)
        attempt += 1
        if awaiting:
            soonest = min(give_up_at for _, give_up_at in awaiting.values())
            delay = max(0.0, min(delay, soonest - ctx.clock.monotonic()))
        if pending and limit is not None and not math.isinf(limit):
            remaining = start + limit - ctx.clock.monotonic()
            if remaining <= 0:
                for tid in pending:
                    message = f"Task[{tid}] did not finish within {limit}s"
                    results[tid] = errors.WaitTimeoutError(message, task_id=tid, last_status=found.get(tid))
                pending = []
                if not awaiting:
                    break
            delay = min(delay, max(remaining, 0.0))
        yield Sleep(delay)
    return {tid: results[tid] for tid in dict.fromkeys(task_ids)}


# --- logs -------------------------------------------------------------------------------------


def follow_log(ctx: Context, task_id: str, *, offset: int = 0, poll: Backoff | None = None) -> Op[None]:
    """Stream the task log as it grows, until the task ends; yields text chunks.

    A negative ``offset`` starts that many bytes before the current end (the whole log is read
    once to learn where the end is).
    """
    interval = poll or Backoff(initial=0.5, multiplier=1.5, max_interval=2.0, jitter=False)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    position = max(offset, 0)
    skip_to_tail = offset < 0
    attempt = 0
    ended = False
    while True:
        request = Request("GET", _task(task_id, "/log"), params={"offset": position})
        response = yield from send(ctx, request)
        got_data = False
        if response.ok and response.content:
            chunk = response.content
            if skip_to_tail:
                chunk = chunk[offset:]
                skip_to_tail = False
            position += len(response.content)
            text = decoder.decode(chunk)
            if text:
                yield Emit(text)
            got_data = True
            attempt = 0
        elif response.status_code != 404 and not response.ok:
            raise error_for(request, response)
        skip_to_tail = False
        if not got_data:
            if ended:
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield Emit(tail)
                return None
            current = yield from status(ctx, task_id)
            # One more read after the end: the last lines may land after the status changed.
            ended = current.is_terminal
            if ended:
                continue
        yield Sleep(interval.delay(attempt, ctx.rng))
        attempt += 1
