"""The local runner's task directories: made for a launch, recycled when light, set aside when done.

Creating a directory or a file costs ~0.15-0.6 ms on some disks and a rename ~25 us, so a light
task's finished directory is emptied and renamed to the next task's id instead of removed and made
again (at most ``MAX_RECYCLED`` kept per base directory). A finished directory is first renamed out
of its task's path (``FREE_PREFIX``, ``DONE_PREFIX``), so a crash at any point leaves one that belongs
to no task, which the runner's orphan clean-up removes at the next start (pushing a log still there).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from overlord.runner.peon import PID_FILE
from overlord.runner.toolbox import LOG_FILE, STATUS_FILE

SMALL_DIR_FILES, SMALL_DIR_BYTES = 16, 1 << 20  # what is_small_dir() calls small
DONE_PREFIX = ".done-"  # a finished task's directory, renamed while its log is pushed and it is removed
FREE_PREFIX = ".free-"  # a finished light task's directory, emptied, kept for a next launch (see TaskDirs.recycle)
RECYCLABLE = frozenset({LOG_FILE, PID_FILE, STATUS_FILE})
MAX_RECYCLED = 4  # emptied directories kept per base directory


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` from its start, padded with spaces to its old length, without truncating it:
    on ext4, a file truncated and written again is flushed to disk when closed (auto_da_alloc), and
    truncating a file whose blocks are on disk costs ~0.2 ms; creating a file costs as much."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        os.pwrite(fd, data.ljust(size, b" "), 0)
    finally:
        os.close(fd)


def is_small_dir(path: Path) -> bool:
    """A few small files and no subdirectory: a light task's directory, cleaned up without a thread."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for count, entry in enumerate(entries):
                if count >= SMALL_DIR_FILES or entry.is_dir(follow_symlinks=False):
                    return False
                total += entry.stat(follow_symlinks=False).st_size
                if total > SMALL_DIR_BYTES:
                    return False
    except OSError:
        return False
    return True


def set_aside(task_dir: Path) -> Path:
    """Out of the way at once: the same task may be launched again into its old path."""
    aside = task_dir.with_name(f"{DONE_PREFIX}{uuid.uuid4().hex}")
    try:
        os.rename(task_dir, aside)
    except OSError:
        return task_dir
    return aside


class TaskDirs:
    """Emptied task directories kept per base directory, handed to the next launches."""

    def __init__(self) -> None:
        self._recycled: dict[Path, list[Path]] = {}  # base dir -> emptied task directories ready for a launch

    def new(self, base: Path, task_id: str) -> Path:
        """An empty directory for the task: a recycled one renamed (creating a directory and its files
        costs ~0.4 ms each on some disks, a rename ~25 us), else a new one."""
        task_dir = base / task_id
        recycled = self._recycled.get(base)
        if recycled:
            free = recycled.pop()
            try:
                os.rename(free, task_dir)
                return task_dir
            except OSError:  # the task's old directory is still there (a relaunch)
                recycled.append(free)
        try:
            task_dir.mkdir()
        except FileExistsError:  # a launch of this task that never started (or a clean-up cut short)
            shutil.rmtree(task_dir, ignore_errors=True)
            task_dir.mkdir()
        except FileNotFoundError:
            task_dir.mkdir(parents=True)
        return task_dir

    def recycle(self, task_dir: Path) -> bool:
        """Keep a finished light task's directory (its log pushed) for a next launch, emptied: renamed
        out of the way first (a crash then leaves a directory the orphan clean-up just removes), its log
        removed if still there (it marks a task started); its pid file and status are overwritten in place
        by the next task's; False if it is not one to keep."""
        recycled = self._recycled.setdefault(task_dir.parent, [])
        if len(recycled) >= MAX_RECYCLED:
            return False
        names: set[str] = set()
        try:
            with os.scandir(task_dir) as entries:
                for entry in entries:
                    if entry.name not in RECYCLABLE or not entry.is_file(follow_symlinks=False):
                        return False
                    names.add(entry.name)
        except OSError:
            return False
        free = task_dir.with_name(f"{FREE_PREFIX}{uuid.uuid4().hex}")
        try:
            os.rename(task_dir, free)
        except OSError:
            return False
        try:
            if LOG_FILE in names:  # removed, not truncated: see write_in_place
                os.unlink(free / LOG_FILE)
        except OSError:
            shutil.rmtree(free, ignore_errors=True)
            return True
        recycled.append(free)
        return True
