"""Druid's lock listings: ``POST /lockedIntervals/v2`` and ``GET|POST /activeLocks``, from the lockbox.

A LockFilterPolicy is ``{"datasource", "priority", "intervals"?, "context"?}``: the locks of that data
source held at that priority or above (overlapping ``intervals`` when given); revoked locks are left
out, as Druid leaves them out.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import PREFIX, read_json_body, service_of
from overlord.api.errors import JSONResponse, druid_error
from overlord.core.lockpolicy import TaskLock
from overlord.errors import InvalidInput
from overlord.isotime import Interval


def _policies(body: Any) -> list[tuple[str, int, list[Interval]]]:
    if not isinstance(body, list):
        raise InvalidInput("Invalid request body: expected a JSON list of lock filter policies")
    out = []
    for i, p in enumerate(body):
        if not isinstance(p, dict) or not isinstance(p.get("datasource"), str) or not p["datasource"]:
            raise InvalidInput(f"lockFilterPolicies[{i}].datasource: required", field=f"[{i}].datasource")
        priority = p.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidInput(f"lockFilterPolicies[{i}].priority: must be an integer", field=f"[{i}].priority")
        raw = p.get("intervals") or []
        if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
            raise InvalidInput(
                f"lockFilterPolicies[{i}].intervals: must be a list of intervals", field=f"[{i}].intervals"
            )
        out.append((p["datasource"], priority, [Interval.parse(r, field=f"[{i}].intervals") for r in raw]))
    return out


def _matching(request: Request, policies: list[tuple[str, int, list[Interval]]]) -> dict[str, list[TaskLock]]:
    lockbox = service_of(request).lockbox
    found: dict[str, list[TaskLock]] = {}
    for ds, priority, intervals in policies:
        for _tasks, lock in lockbox.all_locks(ds):
            if lock.revoked or lock.priority < priority:
                continue
            if intervals and not any(lock.interval.overlaps(iv) for iv in intervals):
                continue
            found.setdefault(ds, []).append(lock)
    return found


async def _read_policies(request: Request) -> list[tuple[str, int, list[Interval]]] | None:
    if not (await request.body()).strip():
        return None
    body = await read_json_body(request)
    return _policies(body) if body else None


async def locked_intervals_v2(request: Request) -> Response:
    policies = await _read_policies(request)
    if policies is None:
        return druid_error(400, "No filter provided")
    return JSONResponse(
        {ds: sorted({str(lock.interval) for lock in locks}) for ds, locks in _matching(request, policies).items()}
    )


async def active_locks(request: Request) -> Response:
    """POST filters as Druid does; GET (no body) lists every active lock."""
    policies: list[tuple[str, int, list[Interval]]]
    if request.method == "GET":
        policies = [
            (ds, -(2**31), []) for ds in {lock.data_source for _t, lock in service_of(request).lockbox.all_locks()}
        ]
    else:
        found = await _read_policies(request)
        if found is None:
            return druid_error(400, "No filter provided")
        policies = found
    locks = _matching(request, policies)
    return JSONResponse({"datasourceToLocks": {ds: [lock.to_json() for lock in v] for ds, v in locks.items()}})


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/lockedIntervals/v2", locked_intervals_v2, methods=["POST"]),
        Route(f"{PREFIX}/activeLocks", active_locks, methods=["GET", "POST"]),
    ]
