"""Task-log retention (``druid.indexer.logs.kill.*``): old logs and completed-task rows go away."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from overlord.clock import Clock
from overlord.core.protocols import TaskLogs, TaskStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionResult:
    logs_deleted: int
    tasks_deleted: list[str]


class LogRetention:
    """Deletes task logs older than ``durationToRetain`` and the completed-task rows created before then.

    Depends on the protocols only, so it runs the same over any task store and any log storage.
    """

    def __init__(self, store: TaskStore, task_logs: TaskLogs, clock: Clock, duration_to_retain_ms: int) -> None:
        self.store = store
        self.task_logs = task_logs
        self.clock = clock
        self.duration_to_retain_ms = duration_to_retain_ms

    def run_once(self) -> RetentionResult:
        cutoff = self.clock.now_ms() - self.duration_to_retain_ms
        logs_deleted = self.task_logs.kill_older_than(cutoff)
        tasks_deleted = self.store.delete_complete_before(cutoff)
        for task_id in tasks_deleted:
            self.task_logs.delete(task_id)
        if logs_deleted or tasks_deleted:
            log.info("Retention removed %d log files and %d completed tasks", logs_deleted, len(tasks_deleted))
        return RetentionResult(logs_deleted, tasks_deleted)
