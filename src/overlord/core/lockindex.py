"""Where the lockbox keeps its locks: posses (a lock and its holders) indexed by interval.

Overlap queries bisect on interval starts (bounded by the longest interval seen), so a lock request
touches only nearby locks instead of every lock of the data source.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from overlord.core.lockpolicy import TaskLock
from overlord.isotime import Interval


@dataclass(eq=False)
class LockPosse:
    """A lock and the tasks (all of one group) holding it."""

    lock: TaskLock
    task_ids: set[str] = field(default_factory=set)


class LockIndex:
    """One data source's posses by interval, so overlap queries touch only nearby intervals."""

    def __init__(self) -> None:
        self.by_interval: dict[Interval, list[LockPosse]] = {}
        self.keys: list[Interval] = []  # sorted
        self.starts: list[int] = []
        self.max_len = 0

    def add(self, posse: LockPosse) -> None:
        iv = posse.lock.interval
        bucket = self.by_interval.get(iv)
        if bucket is None:
            bucket = self.by_interval[iv] = []
            i = bisect.bisect_left(self.keys, iv)
            self.keys.insert(i, iv)
            self.starts.insert(i, iv.start)
            self.max_len = max(self.max_len, iv.end - iv.start)
        bucket.append(posse)

    def remove(self, posse: LockPosse) -> None:
        iv = posse.lock.interval
        bucket = self.by_interval[iv]
        bucket.remove(posse)
        if not bucket:
            del self.by_interval[iv]
            i = bisect.bisect_left(self.keys, iv)
            del self.keys[i], self.starts[i]

    def overlapping(self, iv: Interval) -> list[LockPosse]:
        lo = bisect.bisect_left(self.starts, iv.start - self.max_len)
        hi = bisect.bisect_left(self.starts, iv.end)
        out: list[LockPosse] = []
        for key in self.keys[lo:hi]:
            if key.end > iv.start:
                out.extend(self.by_interval[key])
        return out

    def __iter__(self) -> Iterator[LockPosse]:
        for key in self.keys:
            yield from self.by_interval[key]
