"""In-memory twins of ``DeepStorage`` and ``TaskLogs``: the same contracts, no files.

For tests and for embedding the Overlord without a disk. They pass the same contract suites as the
filesystem implementations, so code tested against them behaves the same on a real deep storage.
"""

from __future__ import annotations

import io
import posixpath
import shutil
import threading
from collections.abc import Iterator
from typing import BinaryIO

from overlord.clock import SYSTEM_CLOCK, Clock
from overlord.core.protocols import LoadSpec
from overlord.errors import InvalidInput
from overlord.storage.deep_storage import clean_key, load_spec_path
from overlord.storage.task_logs import READ_CHUNK, check_task_id, start_of_range


def _read_all(source: str | BinaryIO) -> bytes:
    buf = io.BytesIO()
    if isinstance(source, str):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, buf)
    else:
        shutil.copyfileobj(source, buf)
    return buf.getvalue()


class InMemoryDeepStorage:
    """Segment files as bytes in a dict, addressed by ``{"type": "memory", "path": "<base>/<key>"}``."""

    def __init__(self, base: str = "/in-memory", load_spec_type: str = "memory") -> None:
        self.base = posixpath.normpath(base)
        self.load_spec_type = load_spec_type
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _path_of(self, load_spec: LoadSpec) -> str:
        raw = load_spec_path(load_spec, self.load_spec_type)
        path = posixpath.normpath(raw)
        if not path.startswith(self.base + "/"):
            raise InvalidInput(f"Load spec path [{raw}] is outside deep storage [{self.base}]")
        return path

    def _root(self, key_prefix: str) -> str:
        return posixpath.join(self.base, clean_key(key_prefix))

    def _under(self, root: str) -> list[str]:
        return sorted(p for p in self._files if p == root or p.startswith(root + "/"))

    def write(self, key: str, source: str | BinaryIO) -> LoadSpec:
        path = self._root(key)
        data = _read_all(source)
        with self._lock:
            self._files[path] = data
        return {"type": self.load_spec_type, "path": path}

    def copy(self, load_spec: LoadSpec, key: str) -> LoadSpec:
        with self.open(load_spec) as src:
            return self.write(key, src)

    def open(self, load_spec: LoadSpec) -> BinaryIO:
        path = self._path_of(load_spec)
        with self._lock:
            data = self._files.get(path)
        if data is None:
            raise FileNotFoundError(path)
        return io.BytesIO(data)

    def delete(self, load_spec: LoadSpec) -> None:
        path = self._path_of(load_spec)
        with self._lock:
            self._files.pop(path, None)

    def delete_prefix(self, key_prefix: str) -> int:
        root = self._root(key_prefix)
        with self._lock:
            doomed = self._under(root)
            for path in doomed:
                del self._files[path]
        return len(doomed)

    def list(self, key_prefix: str) -> list[LoadSpec]:
        root = self._root(key_prefix)
        with self._lock:
            return [{"type": self.load_spec_type, "path": p} for p in self._under(root)]

    def contains(self, load_spec: LoadSpec) -> bool:
        try:
            self._path_of(load_spec)
        except InvalidInput:
            return False
        return True


class InMemoryTaskLogs:
    """Task logs and reports as bytes in dicts; "modified" times come from the injected clock."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._logs: dict[str, tuple[bytes, int]] = {}
        self._reports: dict[str, tuple[bytes, int]] = {}
        self._lock = threading.Lock()

    def push_log(self, task_id: str, source: str | BinaryIO, *, finished: bool = False) -> None:
        check_task_id(task_id)
        data = _read_all(source)
        with self._lock:
            self._logs[task_id] = (data, self.clock.now_ms())

    def push_report(self, task_id: str, report: bytes) -> None:
        check_task_id(task_id)
        with self._lock:
            self._reports[task_id] = (bytes(report), self.clock.now_ms())

    def read_log(self, task_id: str, offset: int = 0) -> Iterator[bytes] | None:
        check_task_id(task_id)
        with self._lock:
            entry = self._logs.get(task_id)
        if entry is None:
            return None
        data = entry[0]
        return _chunks(data, start_of_range(len(data), offset))

    def read_report(self, task_id: str) -> bytes | None:
        check_task_id(task_id)
        with self._lock:
            entry = self._reports.get(task_id)
        return entry[0] if entry is not None else None

    def delete(self, task_id: str) -> None:
        check_task_id(task_id)
        with self._lock:
            self._logs.pop(task_id, None)
            self._reports.pop(task_id, None)

    def kill_older_than(self, cutoff_ms: int) -> int:
        removed = 0
        with self._lock:
            for files in (self._logs, self._reports):
                for task_id in [t for t, (_, mtime) in files.items() if mtime < cutoff_ms]:
                    del files[task_id]
                    removed += 1
        return removed


def _chunks(data: bytes, start: int) -> Iterator[bytes]:
    view = memoryview(data)
    for pos in range(start, len(data), READ_CHUNK):
        yield bytes(view[pos : pos + READ_CHUNK])
