"""Deterministic task ids, so a resubmission after a dropped answer attaches instead of duplicating.

The id hashes what the task *does* (type, data source, intervals, input, schema), not how it is
tuned or labelled: ``tuningConfig``, ``context`` and ``id`` are left out. Two specs that would write
the same segments get the same id, and the service's "already exists" answer tells us it is ours.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

_IGNORED_TOP = frozenset({"id", "context", "tuningConfig", "resource", "groupId"})
_IGNORED_IN_SPEC = frozenset({"tuningConfig"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


def content_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a task spec that decides its effect."""
    content = {k: v for k, v in spec.items() if k not in _IGNORED_TOP and v is not None}
    inner = content.get("spec")
    if isinstance(inner, Mapping):
        content["spec"] = {k: v for k, v in inner.items() if k not in _IGNORED_IN_SPEC and v is not None}
    return content


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON: equal content always gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def spec_hash(spec: Mapping[str, Any], length: int = 16) -> str:
    """Hex SHA-256 of the spec's canonical content, shortened."""
    return hashlib.sha256(canonical_json(content_of(spec)).encode()).hexdigest()[:length]


def data_source_of(spec: Mapping[str, Any]) -> str | None:
    """Where Druid keeps the data source: top level (compact, kill) or ``spec.dataSchema``."""
    top = spec.get("dataSource")
    if isinstance(top, str):
        return top
    inner = spec.get("spec")
    if isinstance(inner, Mapping):
        schema = inner.get("dataSchema")
        name = schema.get("dataSource") if isinstance(schema, Mapping) else None
        if isinstance(name, str):
            return name
    return None


def deterministic_task_id(spec: Mapping[str, Any], attempt: int = 0) -> str:
    """``<type>_<dataSource>_<hash16>``; ``attempt`` > 0 appends ``_a<n>`` for a deliberate rerun.

    A rerun after a failure needs a new id (the failed task keeps the old one), yet stays
    deterministic, so a rerun's own resubmission still attaches.
    """
    task_type = str(spec.get("type") or "task")
    ds = data_source_of(spec) or "nods"
    safe_ds = _UNSAFE.sub("_", ds)[:100]
    task_id = f"{_UNSAFE.sub('_', task_type)}_{safe_ds}_{spec_hash(spec)}"
    return f"{task_id}_a{attempt}" if attempt > 0 else task_id


def is_same_spec(ours: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """True when the stored payload is the spec we sent; the server may have filled in defaults.

    Every field we set must be present with an equal value; fields only the stored payload has
    (defaults the server added) are allowed.
    """
    return _covers(content_of(stored), content_of(ours))


def _covers(stored: Any, ours: Any) -> bool:
    if isinstance(ours, Mapping):
        if not isinstance(stored, Mapping):
            return False
        return all(
            stored.get(k) is None if v is None else (k in stored and _covers(stored[k], v)) for k, v in ours.items()
        )
    if isinstance(ours, list):
        if not isinstance(stored, list) or len(stored) != len(ours):
            return False
        return all(_covers(s, o) for s, o in zip(stored, ours, strict=True))
    if isinstance(ours, bool) or isinstance(stored, bool):
        return ours is stored
    if isinstance(ours, int | float) and isinstance(stored, int | float):
        return float(ours) == float(stored)
    return bool(ours == stored)
