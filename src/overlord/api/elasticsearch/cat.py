"""``GET /_cat/tasks``: Elasticsearch's cat table (columns, aliases, ``h``, ``s``, ``v``, ``help``, ``format``).

Operators type these by hand and pipe them to ``sort``/``awk``, so column names, aliases,
defaults and the padding rules are Elasticsearch's own (RestTasksAction and RestTable).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from overlord.api.elasticsearch.errors import illegal_argument
from overlord.api.elasticsearch.params import format_time_nanos, parse_bool, simple_match, split_list
from overlord.api.elasticsearch.render import EsTask, group_parents
from overlord.api.elasticsearch.state import ES_VERSION, NodeInfo

CAT_PARAMS = frozenset({"format", "h", "help", "v", "s", "bytes", "time", "ts", "pri", "size", "full_id", "detailed"})


@dataclass(frozen=True)
class Column:
    name: str
    aliases: tuple[str, ...] = ()
    default: bool = True
    desc: str = "not available"


COLUMNS = (
    Column("id", (), False, "id of the task with the node"),
    Column("action", ("ac",), True, "task action"),
    Column("task_id", ("ti",), True, "unique task id"),
    Column("parent_task_id", ("pti",), True, "parent task id"),
    Column("type", ("ty",), True, "task type"),
    Column("start_time", ("start",), True, "start time in ms"),
    Column("timestamp", ("ts", "hms", "hhmmss"), True, "start time in HH:MM:SS"),
    Column("running_time_ns", ("time",), False, "running time ns"),
    Column("running_time", ("time",), True, "running time"),
    Column("node_id", ("ni",), False, "unique node id"),
    Column("ip", ("i",), True, "ip address"),
    Column("port", ("po",), False, "bound transport port"),
    Column("node", ("n",), True, "node name"),
    Column("version", ("v",), False, "es version"),
    Column("x_opaque_id", (), False, "X-Opaque-ID header"),
)
DESCRIPTION = Column("description", ("desc",), True, "task action")


class Nanos(int):
    """A duration cell: sorts as a number, renders with the ``time`` parameter's unit."""


_TIME_FACTORS = {"nanos": 1, "micros": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_TIME_FACTORS["d"] = 86_400 * 10**9


def _columns(detailed: bool) -> tuple[Column, ...]:
    return (*COLUMNS, DESCRIPTION) if detailed else COLUMNS


def _row(task: EsTask, node: NodeInfo, full_id: bool, detailed: bool) -> dict[str, Any]:
    """``node``: this Overlord; the node columns name where the task runs (a cluster worker, or here)."""
    where = task.runs_on or node
    row: dict[str, Any] = {
        "id": task.number,
        "action": task.action,
        "task_id": task.task_id,
        "parent_task_id": str(task.parent) if task.parent is not None else "-",
        "type": task.type,
        "start_time": task.start_ms,
        "timestamp": dt.datetime.fromtimestamp(task.start_ms / 1000, dt.UTC).strftime("%H:%M:%S"),
        "running_time_ns": task.running_ns,
        "running_time": Nanos(task.running_ns),
        "node_id": where.id if full_id else where.id[:4],
        "ip": where.ip,
        "port": where.port,
        "node": where.name,
        "version": ES_VERSION,
        "x_opaque_id": task.headers.get("X-Opaque-Id", "-"),
    }
    if detailed:
        row["description"] = task.description
    return row


def _ordered(tasks: list[EsTask]) -> list[EsTask]:
    """Rows as Elasticsearch builds them: task groups by start time, each parent before its children."""
    out: list[EsTask] = []

    def walk(groups: list[tuple[EsTask, list[Any]]]) -> None:
        for task, children in sorted(groups, key=lambda g: g[0].start_ms):
            out.append(task)
            walk(children)

    walk(group_parents(tasks))
    return out


def _render(value: Any, time_unit: str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, Nanos):
        factor = _TIME_FACTORS.get(time_unit or "")
        return str(int(value) // factor) if factor else format_time_nanos(int(value))
    return str(value)


def _display(params: Mapping[str, str], columns: tuple[Column, ...]) -> list[tuple[str, str]]:
    """(column, heading) pairs: ``h`` names, aliases and wildcards, else the default columns."""
    show_ts = parse_bool(params, "ts", True)
    names = {c.name for c in columns}
    if "h" not in params:
        return [(c.name, c.name) for c in columns if c.default and (show_ts or c.name != "timestamp")]
    wanted: list[str] = []
    for h in split_list(params["h"]):
        if "*" in h:
            wanted += [c.name for c in columns if simple_match([h], c.name) or simple_match([h], ",".join(c.aliases))]
        else:
            wanted.append(h)
    out: list[tuple[str, str]] = []
    for h in dict.fromkeys(wanted):
        if h in names:
            pair = (h, h)
        else:
            match = next((c for c in columns for a in c.aliases if a == h), None)
            if match is None:
                continue
            pair = (match.name, h)
        if show_ts or pair[0] != "timestamp":
            out.append(pair)
    return out


def _sort(rows: list[dict[str, Any]], params: Mapping[str, str], columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    keys = split_list(params.get("s"))
    if not keys:
        return rows
    lookup = {c.name: c.name for c in columns}
    for c in columns:
        for a in c.aliases:
            lookup.setdefault(a, c.name)
    order: list[tuple[str, bool]] = []
    for key in keys:
        name, reverse = key, False
        if key.endswith(":desc"):
            name, reverse = key[: -len(":desc")], True
        elif key.endswith(":asc"):
            name = key[: -len(":asc")]
        if name not in lookup:
            raise illegal_argument(f"Unable to sort by unknown sort key `{name}`")
        order.append((lookup[name], reverse))
    for column, reverse in reversed(order):  # stable sorts, last key first
        rows = sorted(rows, key=functools.partial(_row_sort_key, column), reverse=reverse)
    return rows


def _row_sort_key(column: str, row: dict[str, Any]) -> Any:
    return _sort_key(row[column])


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, int):
        return (1, value)
    return (2, str(value))


def help_text(detailed: bool) -> str:
    cols = _columns(detailed)
    widths = [
        max(len(c.name) for c in cols),
        max(len(",".join(c.aliases)) for c in cols),
        max(len(c.desc) for c in cols),
    ]
    lines = [
        f"{c.name.ljust(widths[0])} | {','.join(c.aliases).ljust(widths[1])} | {c.desc.ljust(widths[2])}\n"
        for c in cols
    ]
    return "".join(lines)


def cat_table(
    tasks: list[EsTask], node: NodeInfo, params: Mapping[str, str], *, as_json: bool
) -> str | list[dict[str, str | None]]:
    """The text table (or, for ``format=json``, a list of objects whose values are all strings)."""
    detailed = parse_bool(params, "detailed")
    full_id = parse_bool(params, "full_id")
    verbose = parse_bool(params, "v")
    columns = _columns(detailed)
    display = _display(params, columns)
    rows = _sort([_row(t, node, full_id, detailed) for t in _ordered(tasks)], params, columns)
    unit = params.get("time")
    if as_json:
        return [{heading: _render(r[name], unit) for name, heading in display} for r in rows]
    cells = [[_render(r[name], unit) or "" for name, _ in display] for r in rows]
    widths = [len(h) if verbose else 0 for _, h in display]
    for line in cells:
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))
    out: list[str] = []
    if verbose:
        cells.insert(0, [h for _, h in display])
    last = len(display) - 1
    for line in cells:
        out.append(" ".join(cell if i == last else cell.ljust(widths[i]) for i, cell in enumerate(line)) + "\n")
    return "".join(out)
