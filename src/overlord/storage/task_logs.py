"""Task-log storage: where logs and reports go when a task ends (Druid's ``druid.indexer.logs``).

A local folder by default. Pushing is a copy then an atomic rename, so a reader never
sees half a log; a failed push leaves the worker's copy in place for ``GET /log``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


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

    def push_log(self, task_id: str, source: str | BinaryIO) -> None:
        dst = self.log_path(task_id)
        tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
        if isinstance(source, str):
            shutil.copyfile(source, tmp)
        else:
            with tmp.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        os.replace(tmp, dst)

    def push_report(self, task_id: str, report: bytes) -> None:
        dst = self.report_path(task_id)
        tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(report)
        os.replace(tmp, dst)

    def read_log(self, task_id: str, offset: int = 0) -> Iterator[bytes] | None:
        return read_chunks(self.log_path(task_id), offset)

    def read_report(self, task_id: str) -> bytes | None:
        try:
            return self.report_path(task_id).read_bytes()
        except FileNotFoundError:
            return None

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


def read_chunks(path: Path, offset: int, chunk: int = 64 * 1024) -> Iterator[bytes] | None:
    """A file from Druid's log ``offset`` in chunks (never whole in memory); None if it does not exist."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None

    def chunks() -> Iterator[bytes]:
        with f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size + offset) if offset < 0 else min(offset, size))
            while data := f.read(chunk):
                yield data

    return chunks()
