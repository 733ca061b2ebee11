"""Persisted task locks: the lockbox's snapshot per task, so a restarted Overlord gives them back.

The lockbox itself lives in memory (``overlord.core.locks``); this table only lets it survive a
restart, so it is written on every grant and release and read once at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from overlord.storage.metadata import task_locks


class SqlLockStore:
    """Task locks in the metadata database.

    It remembers which tasks have stored locks (read once at start, then kept up to date: the
    Overlord is the only writer), so the clean-up at every task's end costs no write transaction
    for the many tasks that held none.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.connect() as conn:
            self._tasks_with_locks = {r[0] for r in conn.execute(sa.select(task_locks.c.task_id).distinct())}

    def save_task_locks(self, task_id: str, entries: Sequence[dict[str, Any]]) -> None:
        """Replace the stored locks of one task (lockbox snapshot entries)."""
        if not entries and task_id not in self._tasks_with_locks:
            return
        with self.engine.begin() as conn:
            conn.execute(task_locks.delete().where(task_locks.c.task_id == task_id))
            if entries:
                conn.execute(
                    task_locks.insert(),
                    [
                        {"task_id": task_id, "seq": i, "payload": orjson.dumps(e).decode()}
                        for i, e in enumerate(entries)
                    ],
                )
        if entries:
            self._tasks_with_locks.add(task_id)
        else:
            self._tasks_with_locks.discard(task_id)

    def load_task_locks(self) -> list[dict[str, Any]]:
        """Every stored entry, by task id and then in the order it was saved."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(task_locks.c.payload).order_by(task_locks.c.task_id, task_locks.c.seq))
            return [orjson.loads(r[0]) for r in rows]

    def delete_task_locks(self, task_ids: Iterable[str]) -> None:
        ids = [t for t in task_ids if t in self._tasks_with_locks]
        self._tasks_with_locks.difference_update(ids)
        if ids:
            with self.engine.begin() as conn:
                conn.execute(task_locks.delete().where(task_locks.c.task_id.in_(ids)))
