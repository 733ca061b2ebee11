"""``noop``: Druid's do-nothing task, for exercising and benchmarking the machinery.

Fields (Druid's plus two of ours, which Druid's NoopTask lacks): ``runTime`` (ms to sleep,
default 2500 as in Druid), ``isReadyTime`` accepted and ignored, ``fail`` (false, true or an
error message: end FAILED with it) and ``logLines`` (lines to write to the task log, default 1).
An ``interval`` is locked before the task runs and held until it ends.
"""

from __future__ import annotations

import time
from typing import Any

from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidSpec
from overlord.isotime import Interval
from overlord.runner.toolbox import TaskResult, TaskToolbox

_FIELDS = {
    "type",
    "id",
    "groupId",
    "dataSource",
    "runTime",
    "isReadyTime",
    "fail",
    "logLines",
    "context",
    "resource",
    "interval",
    "firehose",
}


def validate(payload: dict[str, Any], ctx: SubmitContext) -> dict[str, Any]:
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise InvalidSpec(f"Unknown field [{unknown[0]}] for task type [noop]", field=unknown[0])
    for name, maximum in (("runTime", 2**63 - 1), ("isReadyTime", 2**63 - 1), ("logLines", 2**31 - 1)):
        value = payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum):
            raise InvalidSpec(
                f"Invalid value for field [{name}]: must be an integer between 0 and {maximum}", field=name
            )
    fail = payload.get("fail")
    if fail is not None and not isinstance(fail, bool | str):
        raise InvalidSpec("Invalid value for field [fail]: must be a boolean or an error message", field="fail")
    interval = payload.get("interval")
    if interval is not None:
        if not isinstance(interval, str):
            raise InvalidSpec("Invalid value for field [interval]: must be an ISO-8601 interval", field="interval")
        Interval.parse(interval, field="interval")
    payload.setdefault("dataSource", "none")  # Druid's NoopTask default
    return payload


def run(toolbox: TaskToolbox) -> TaskResult:
    payload = toolbox.payload
    run_time_ms = payload.get("runTime", 2500)
    lines = payload.get("logLines", 1)
    for i in range(lines):
        toolbox.log.info("noop task[%s] log line %d of %d", toolbox.task_id, i + 1, lines)
    if run_time_ms:
        time.sleep(run_time_ms / 1000)
    fail = payload.get("fail")
    if fail:
        return TaskResult.failure(fail if isinstance(fail, str) else "noop task was told to fail")
    return TaskResult.ok()


def lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    """A noop with an ``interval`` holds a lock on it while it runs (a maintenance window)."""
    raw = payload.get("interval")
    return [Interval.parse(raw, field="interval")] if isinstance(raw, str) else []


NOOP = register(TaskType(name="noop", run=f"{__name__}:run", validate=validate, lock_intervals=lock_intervals))
