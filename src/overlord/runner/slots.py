"""Worker slots and their scratch space, allocated as Druid's "task storage sizes" section says.

With 5 slots, 2 base dirs and 300 GB per dir: slots go round-robin (A gets 3, B gets 2) and
every slot gets the same share, the largest that fits the busiest dir: 300 GB / 3 = 100 GB.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Slot:
    index: int
    base_dir: Path
    quota_bytes: int | None  # None: no quota configured


def allocate_slots(capacity: int, base_dirs: list[Path], dir_size: int | None) -> list[Slot]:
    """Assign ``capacity`` slots to base dirs round-robin, each with an equal disk quota."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    if not base_dirs:
        raise ValueError("at least one base task dir is needed")
    per_dir_max = math.ceil(capacity / len(base_dirs))
    quota = dir_size // per_dir_max if dir_size is not None else None
    return [Slot(i, base_dirs[i % len(base_dirs)], quota) for i in range(capacity)]


def directory_size(path: Path) -> int:
    """Bytes used by the files under ``path`` (what a slot's quota limits)."""
    total = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
    return total
