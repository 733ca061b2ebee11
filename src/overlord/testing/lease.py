"""In-memory twin of ``LeaseStore``: one lease with a fencing epoch, timed by an injected clock.

It follows the same rules as the SQL lease (``overlord.storage.leader_lease``) and passes the same
contract suite (``tests/integration/test_leader_lease_contract.py``). ``fail`` makes every call raise,
to play a database that went away.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from overlord.clock import Clock
from overlord.core.protocols import LeaseView

if TYPE_CHECKING:
    from overlord.core.protocols import LeaseStore


class InMemoryLeaseStore:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.holder: str | None = None
        self.url: str | None = None
        self.epoch = 0
        self.expires_ms = 0
        self.seen: dict[str, tuple[str, int]] = {}  # node id -> (url, last announced)
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def _view(self) -> LeaseView:
        return LeaseView(self.holder, self.url, self.epoch, self.expires_ms - self.clock.now_ms())

    def campaign(self, node_id: str, url: str, duration_ms: int) -> LeaseView:
        with self._lock:
            self._check()
            now = self.clock.now_ms()
            if self.holder is None or self.expires_ms <= now or self.holder == node_id:
                self.holder, self.url, self.epoch = node_id, url, self.epoch + 1
                self.expires_ms = now + duration_ms
            return self._view()

    def renew(self, node_id: str, epoch: int, duration_ms: int) -> bool:
        with self._lock:
            self._check()
            if self.holder != node_id or self.epoch != epoch:
                return False
            self.expires_ms = self.clock.now_ms() + duration_ms
            return True

    def release(self, node_id: str, epoch: int) -> None:
        with self._lock:
            self._check()
            if self.holder == node_id and self.epoch == epoch:
                self.expires_ms = 0

    def announce(self, node_id: str, url: str) -> None:
        with self._lock:
            self._check()
            self.seen[node_id] = (url, self.clock.now_ms())

    def members(self, within_ms: int) -> list[str]:
        with self._lock:
            self._check()
            cutoff = self.clock.now_ms() - within_ms
            return sorted(url for url, at in self.seen.values() if at >= cutoff)

    def close(self) -> None:
        pass

    def check_fence(self, token: tuple[str, int] | None) -> bool:
        """What the SQL store checks in every write transaction: the writer holds the current term."""
        with self._lock:
            return token is not None and token == (self.holder, self.epoch)


if TYPE_CHECKING:

    def _satisfies_protocol(store: InMemoryLeaseStore) -> LeaseStore:
        return store
