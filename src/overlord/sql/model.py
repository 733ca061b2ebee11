"""What the SQL engine takes from the service and gives back, as plain values.

Kept apart from the engine so the HTTP layer can build and read them without loading DuckDB and
sqlglot, which the service loads on its first query rather than at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from overlord.core.task import TaskRecord
from overlord.sql.system_tables import ServerInfo


@dataclass(frozen=True)
class ReadModel:
    """What the system tables are built from; ``active_tasks`` is captured on the event loop."""

    active_tasks: Sequence[TaskRecord] = ()
    complete_tasks: Callable[[], Sequence[TaskRecord]] = lambda: ()
    server: ServerInfo = field(default_factory=lambda: ServerInfo("localhost", 8090, "0", 0))


@dataclass(frozen=True)
class Result:
    columns: list[str]
    types: list[pa.DataType]
    rows: list[tuple[Any, ...]]
