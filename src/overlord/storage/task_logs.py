"""Task-log storage: where logs and reports go when a task ends (Druid's ``druid.indexer.logs``).

A local folder by default. Pushing is a copy then an atomic rename, so a reader never
sees half a log; a failed push leaves the worker's copy in place for ``GET /log``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class TaskLogs:
    """Pushed task logs and reports, one pair of files per task id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def log_path(self, task_id: str) -> Path:
        return self.directory / f"{task_id}.log"

    def report_path(self, task_id: str) -> Path:
        return self.directory / f"{task_id}.report.json"

    def push(self, task_id: str, log_file: Path, report_file: Path | None) -> None:
        """Copy the task's log (and report, if any) into storage; raises OSError on failure."""
        self._copy(log_file, self.log_path(task_id))
        if report_file is not None and report_file.exists():
            self._copy(report_file, self.report_path(task_id))

    def has_log(self, task_id: str) -> bool:
        return self.log_path(task_id).exists()

    def delete(self, task_id: str) -> None:
        for path in (self.log_path(task_id), self.report_path(task_id)):
            path.unlink(missing_ok=True)

    def kill_older_than(self, cutoff_ms: int) -> int:
        """Delete logs and reports last modified before cutoff (Druid judges by modified time)."""
        removed = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.is_file() and entry.stat().st_mtime * 1000 < cutoff_ms:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed

    @staticmethod
    def _copy(src: Path, dst: Path) -> None:
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def read_slice(path: Path, offset: int) -> bytes:
    """Druid's log offset: bytes from ``offset``, or the last ``-offset`` bytes when negative."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size + offset) if offset < 0 else min(offset, size)
        f.seek(start)
        return f.read()
