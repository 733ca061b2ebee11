"""Legacy ``merge``, ``append`` and ``same_interval_merge`` tasks (Druid's older reference).

Accepted for old clients and run as a ``compact`` over the interval they name (the umbrella of
their ``segments``, or ``interval``), with their ``aggregations`` as the combining metricsSpec.
Prefer ``compact``: it reads the visible segments of the interval itself, where these forms list
segments that may have been overshadowed since.
"""

from __future__ import annotations

from typing import Any

from overlord.core.task import SubmitContext, TaskType, register
from overlord.errors import InvalidSpec
from overlord.isotime import Interval
from overlord.runner.toolbox import TaskResult, TaskToolbox
from overlord.tasks import compact
from overlord.tasks.reporting import check_lock_timeout

_COMMON = {"type", "id", "groupId", "resource", "context", "dataSource", "aggregations", "indexSpec"}
_FIELDS = {
    "merge": _COMMON | {"segments", "rollup", "segmentWriteOutMediumFactory"},
    "append": _COMMON | {"segments", "segmentWriteOutMediumFactory"},
    "same_interval_merge": _COMMON | {"interval", "rollup", "buildV9Directly", "segmentWriteOutMediumFactory"},
}


def _umbrella(segments: object) -> str:
    if not isinstance(segments, list) or not segments:
        raise InvalidSpec("segments: expected a non-empty list of segments", field="segments")
    ivs = []
    for i, s in enumerate(segments):
        try:
            ivs.append(Interval.parse(str(s["interval"])))
        except Exception:
            raise InvalidSpec(
                f"segments[{i}].interval: missing or invalid interval", field=f"segments[{i}].interval"
            ) from None
    return str(Interval(min(i.start for i in ivs), max(i.end for i in ivs)))


def to_compact(payload: dict[str, Any]) -> dict[str, Any]:
    """The equivalent ``compact`` payload; errors name the legacy field."""
    kind = str(payload.get("type"))
    unknown = sorted(set(payload) - _FIELDS[kind])
    if unknown:
        raise InvalidSpec(f"{unknown[0]}: unknown field for task type [{kind}]", field=unknown[0])
    interval = payload.get("interval") if kind == "same_interval_merge" else _umbrella(payload.get("segments"))
    if interval is None:
        raise InvalidSpec("interval: missing required field", field="interval")
    out: dict[str, Any] = {"type": "compact", "dataSource": payload.get("dataSource"), "interval": interval}
    for key in ("id", "groupId", "context", "resource"):
        if key in payload:
            out[key] = payload[key]
    if payload.get("aggregations") is not None:
        out["metricsSpec"] = payload["aggregations"]
    if kind == "append":
        out["granularitySpec"] = {"rollup": False}
    elif payload.get("rollup") is not None:
        out["granularitySpec"] = {"rollup": payload["rollup"]}
    return out


def validate(payload: dict[str, Any], ctx: SubmitContext | None = None) -> dict[str, Any]:
    check_lock_timeout(payload, ctx)
    try:
        compact.parse_config(to_compact(payload))
    except InvalidSpec as exc:
        if exc.message.startswith("metricsSpec"):
            msg = "aggregations" + exc.message[len("metricsSpec") :]
            raise InvalidSpec(msg, field="aggregations") from None
        raise
    return payload


def lock_intervals(payload: dict[str, Any]) -> list[Interval]:
    return compact.lock_intervals(to_compact(payload))


def run(toolbox: TaskToolbox) -> TaskResult:
    toolbox.log.info("Task type [%s] is legacy; running it as a compact task", toolbox.payload.get("type"))
    cfg = compact.parse_config(to_compact(toolbox.payload))
    try:
        return compact.run_compaction(toolbox, cfg)
    finally:
        compact.log_peak_memory(toolbox)


for _name in ("merge", "append", "same_interval_merge"):
    register(
        TaskType(
            name=_name,
            run=f"{__name__}:run",
            validate=validate,
            lock_intervals=lock_intervals,
            description="legacy; prefer compact",
        )
    )
