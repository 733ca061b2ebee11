"""An in-memory TaskRunner: no processes; the test (or embedding program) ends tasks when it likes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from overlord.core.protocols import ExitListener, LaunchSpec, RunnerExit, WorkerInfo


@dataclass
class MemoryPeon:
    spec: LaunchSpec
    released: bool = False
    shutdown_reason: str | None = None
    log: bytearray = field(default_factory=bytearray)
    commands: list[dict[str, Any]] = field(default_factory=list)


class InMemoryTaskRunner:
    """Launched tasks stay "running" until ``finish`` (or a shutdown, when ``end_on_shutdown``)."""

    def __init__(self, capacity: int, on_exit: ExitListener, *, end_on_shutdown: bool = False) -> None:
        self._capacity = capacity
        self.on_exit = on_exit
        self.end_on_shutdown = end_on_shutdown
        self.running: dict[str, MemoryPeon] = {}
        self.started: list[str] = []  # ids released to work, in order (a task twice here = a double run)
        self.aborted: list[str] = []
        self.shutdowns: dict[str, str] = {}
        self.survivors: set[str] = set()  # ids ``adopt`` finds alive (set by a test before a "restart")
        self._launches = 0
        self.unhealthy: str | None = None  # a test sets a reason to act as a cluster runner that lost its cluster

    def resize(self, capacity: int) -> None:
        self._capacity = capacity

    async def start(self) -> None:
        return None

    async def stop(self, *, kill_running: bool) -> None:
        if kill_running:
            self.running.clear()

    def capacity(self) -> int:
        return self._capacity

    def used_slots(self) -> int:
        return len(self.running)

    def free_slot_count(self) -> int:
        return self._capacity - len(self.running)

    def running_ids(self) -> set[str]:
        return set(self.running)

    def health(self) -> str | None:
        return self.unhealthy

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo("memory", self._capacity, sorted(self.running))]

    def launch(self, spec: LaunchSpec) -> str:
        if self.free_slot_count() <= 0:
            raise RuntimeError("no free worker slot")
        self._launches += 1
        self.running[spec.task_id] = MemoryPeon(spec)
        return orjson.dumps({"memory": self._launches}).decode()

    def release(self, task_id: str) -> None:
        peon = self.running.get(task_id)
        if peon is not None and not peon.released:
            peon.released = True
            self.started.append(task_id)

    def abort(self, task_id: str) -> None:
        if self.running.pop(task_id, None) is not None:
            self.aborted.append(task_id)

    def adopt(self, handles: Mapping[str, str]) -> set[str]:
        alive = {task_id for task_id in handles if task_id in self.survivors}
        for task_id in alive:
            self.running.setdefault(task_id, MemoryPeon(LaunchSpec(task_id, {}, "", ""), released=True))
        for task_id in handles:
            if task_id not in alive:
                self.on_exit(RunnerExit(task_id, None, "Peon of this task died while the Overlord was down", 0))
        return alive

    def shutdown(self, task_id: str, reason: str) -> bool:
        peon = self.running.get(task_id)
        if peon is None:
            return False
        self.shutdowns[task_id] = reason
        peon.shutdown_reason = peon.shutdown_reason or reason
        if self.end_on_shutdown:
            self.finish(task_id, success=False, error=reason)
        return True

    def command(self, task_id: str, command: dict[str, Any]) -> bool:
        peon = self.running.get(task_id)
        if peon is None or not peon.released:
            return False
        peon.commands.append(command)
        return True

    def read_log(self, task_id: str, offset: int) -> Iterator[bytes] | None:
        peon = self.running.get(task_id)
        if peon is None:
            return None
        data = bytes(peon.log)
        start = max(0, len(data) + offset) if offset < 0 else min(offset, len(data))
        return iter([data[start:]])

    def finish(self, task_id: str, success: bool | None = True, error: str | None = None, duration_ms: int = 5) -> None:
        """End a running task: the exit event the queue completes it from."""
        peon = self.running.pop(task_id)
        if peon.shutdown_reason is not None:
            success, error = False, peon.shutdown_reason
        self.on_exit(RunnerExit(task_id, success, error, duration_ms))
