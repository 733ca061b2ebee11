"""Request parameters parsed the way Elasticsearch parses them, with its error messages.

Clients and scripts written against Elasticsearch depend on its exact rules (a bare ``?detailed``
means true, ``timeout=10`` without a unit is an error, unknown parameters are rejected with a
"did you mean" hint), so those rules are reproduced here rather than loosened.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from overlord.api.elasticsearch.errors import EsError, illegal_argument

# Accepted on every route (Elasticsearch's BaseRestHandler.ALWAYS_SUPPORTED, plus error_trace).
COMMON_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path", "format"})
MAX_INT = 2**31 - 1
MAX_LONG = 2**63 - 1


def parse_bool(params: Mapping[str, str], key: str, default: bool = False) -> bool:
    """A bare key means true; otherwise only ``true`` and ``false`` (Elasticsearch's Booleans)."""
    raw = params.get(key)
    if raw is None:
        return default
    if raw in ("", "true"):
        return True
    if raw == "false":
        return False
    raise illegal_argument(f"Failed to parse value [{raw}] as only [true] or [false] are allowed.")


_TIME_UNITS = (
    ("nanos", 1),
    ("micros", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
)


def parse_time_nanos(raw: str | None, setting: str) -> int | None:
    """Elasticsearch's TimeValue.parseTimeValue: units nanos..d, ``-1`` and ``0`` bare; result in nanos."""
    if raw is None:
        return None
    normalized = raw.strip().lower()
    if normalized in ("-1", "0"):
        return int(normalized)
    for suffix, factor in _TIME_UNITS:
        if normalized.endswith(suffix):  # checked in Elasticsearch's order: "ms" before "s" and "m"
            number = normalized[: -len(suffix)].strip()
            try:
                value = int(number)
            except ValueError:
                try:
                    float(number)
                except ValueError:
                    raise illegal_argument(f"failed to parse [{raw}]") from None
                raise illegal_argument(f"failed to parse [{raw}], fractional time values are not supported") from None
            if value < -1:
                raise illegal_argument(
                    f"failed to parse setting [{setting}] with value [{raw}] as a time value: "
                    "negative durations are not supported"
                )
            if value > MAX_LONG or value * factor > MAX_LONG:  # a Java long in Elasticsearch
                raise illegal_argument(f"failed to parse [{raw}]")
            return value * factor
    raise illegal_argument(
        f"failed to parse setting [{setting}] with value [{raw}] as a time value: unit is missing or unrecognized"
    )


def format_time_nanos(nanos: int) -> str:
    """Elasticsearch's TimeValue.toString(): the largest whole unit, one truncated decimal."""
    if nanos < 0:
        return str(nanos)
    if nanos == 0:
        return "0s"
    value, suffix = float(nanos), "nanos"
    for name, factor in reversed(_TIME_UNITS):
        if nanos >= factor:
            value, suffix = nanos / factor, name
            break
    whole = int(value)
    tenth = int((value - whole) * 10 + 1e-9)
    return f"{whole}.{tenth}{suffix}" if tenth else f"{whole}{suffix}"


@dataclass(frozen=True)
class TaskId:
    """Elasticsearch's ``node:number`` task id."""

    node: str
    number: int

    def __str__(self) -> str:
        return f"{self.node}:{self.number}"


def parse_task_id(raw: str | None) -> TaskId | None:
    """None for unset (missing, empty or ``unset``); a 400 ``malformed task id`` for anything else bad."""
    if raw is None or raw == "" or raw == "unset":
        return None
    node, sep, number = raw.partition(":")
    if not sep:
        raise illegal_argument(f"malformed task id {raw}")
    try:
        value = int(number, 10)
    except ValueError:
        raise illegal_argument(
            f"malformed task id {raw}",
            caused_by={"type": "number_format_exception", "reason": f'For input string: "{number}"'},
        ) from None
    if not re.fullmatch(r"[+-]?\d+", number) or not -(2**63) <= value < 2**63:
        raise illegal_argument(f"malformed task id {raw}")
    return TaskId(node, value)


def split_list(raw: str | None) -> list[str]:
    """Elasticsearch's splitStringByCommaToArray, dropping empty entries."""
    if not raw:
        return []
    return [part.strip() for part in raw.split(",") if part.strip()]


def simple_match(patterns: Iterable[str], value: str) -> bool:
    """Elasticsearch's Regex.simpleMatch: ``*`` is the only wildcard."""
    for pattern in patterns:
        if "*" not in pattern:
            if pattern == value:
                return True
        elif fnmatch.fnmatchcase(value, pattern.replace("[", "[[]").replace("?", "[?]")):
            return True
    return False


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance.getDistance: 1 - edits / longest length."""
    if not a or not b:
        return 0.0 if a != b else 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def check_params(path: str, params: Mapping[str, str], allowed: Iterable[str]) -> None:
    """Reject unknown parameters as Elasticsearch words it, with its "did you mean" suggestions."""
    candidates = set(allowed) | COMMON_PARAMS
    invalid = sorted(k for k in params if k not in candidates)
    if not invalid:
        return
    pieces = []
    for name in invalid:
        scored = sorted(((s, c) for c in candidates if (s := _similarity(name, c)) > 0.5), key=lambda t: (-t[0], t[1]))
        piece = f"[{name}]"
        if scored:
            keys = [c for _, c in scored]
            piece += (
                f" -> did you mean [{keys[0]}]?" if len(keys) == 1 else f" -> did you mean any of [{', '.join(keys)}]?"
            )
        pieces.append(piece)
    plural = "s" if len(invalid) > 1 else ""
    raise illegal_argument(f"request [{path}] contains unrecognized parameter{plural}: {', '.join(pieces)}")


def check_format(params: Mapping[str, str], allowed: tuple[str, ...] = ("json",)) -> str | None:
    fmt = params.get("format")
    if fmt is None or fmt.lower() in allowed:
        return fmt.lower() if fmt else None
    raise illegal_argument(f"Unsupported format [{fmt}]: this service answers in [{', '.join(allowed)}]")


def parse_size(params: Mapping[str, str]) -> int | None:
    """``size`` (our paging extension): a positive integer."""
    raw = params.get("size")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = MAX_INT + 1
    if value > MAX_INT:  # Elasticsearch's Integer.parseInt fails alike on text and on overflow
        raise illegal_argument(f"Failed to parse int parameter [size] with value [{raw}]")
    if value < 1:
        raise illegal_argument(f"[size] must be a positive integer but was [{raw}]")
    return value


def group_by(params: Mapping[str, str]) -> str:
    value = params.get("group_by", "nodes")
    if value not in ("nodes", "parents", "none"):
        raise illegal_argument(f"[group_by] must be one of [nodes], [parents] or [none] but was [{value}]")
    return value


def validation_failed(*messages: str) -> EsError:
    """Elasticsearch's ActionRequestValidationException."""
    text = "Validation Failed: " + "".join(f"{i}: {m};" for i, m in enumerate(messages, 1))
    return EsError(text, type="action_request_validation_exception")


def node_selected(
    specs: list[str], *, node_id: str, name: str, host: str, ip: str, roles: Iterable[str], local: bool = True
) -> bool:
    """Elasticsearch's node specification for one node: ``_all``, ``_local`` and ``_master`` (this service,
    ``local``), ids, names, host names and addresses (with ``*`` wildcards), and ``role:true|false``."""
    if not specs:
        return True
    selected = False
    role_set = set(roles)
    for spec in specs:
        if spec in ("_all", "*"):
            selected = True
        elif spec in ("_local", "_master"):
            selected = selected or local
        elif ":" in spec:
            role, _, flag = spec.partition(":")
            if role in role_set:  # role:true adds the nodes with the role, role:false removes them
                selected = flag.strip().lower() == "true"
        elif simple_match([spec], node_id) or simple_match([spec], name) or spec in (host, ip):
            selected = True
    return selected
