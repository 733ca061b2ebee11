"""What the Elasticsearch-compatible API keeps between requests: this node's identity, the API
requests in flight (shown as short-lived transport tasks), and waiters for task completion; and the
cluster's nodes as one request sees them (this Overlord, and each worker of a cluster runner).

Nothing here is a second source of truth about tasks: the TaskQueue and the MetadataStore are.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import itertools
import os
import socket
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overlord import __version__
from overlord.api.elasticsearch.mapping import describe
from overlord.core.protocols import WorkerInfo
from overlord.core.task import TaskRecord, task_number

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from overlord.service import Service

# The Elasticsearch version this API answers as (its wire format and parameters), not Overlord's.
ES_VERSION = "9.0.0"
ROLES = ("ingest", "master")
WORKER_ROLES = ("ingest",)
NODE_ID_FILE = "node_id"


def load_node_id(data_dir: Path) -> str:
    """A node id like Elasticsearch's (22 url-safe characters), written once so it survives restarts."""
    path = data_dir / NODE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    node_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    tmp = path.with_name(f".{NODE_ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(node_id + "\n")
    os.replace(tmp, path)
    return node_id


@dataclass(frozen=True)
class NodeInfo:
    """An Elasticsearch node: this service (which queues every task and runs them on the local runner), or
    a worker of a cluster runner (which runs the tasks placed on it)."""

    id: str
    name: str
    host: str
    ip: str
    port: int
    roles: tuple[str, ...] = ROLES
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def transport_address(self) -> str:
        return f"{self.ip}:{self.port}"

    def to_json(self) -> dict[str, object]:
        """The node fields of a task list grouped by node (ListTasksResponse: ``attributes`` only when set)."""
        out: dict[str, object] = {
            "name": self.name,
            "transport_address": self.transport_address,
            "host": self.host,
            "ip": self.transport_address,
            "roles": list(self.roles),
        }
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out


def worker_node_id(address: str) -> str:
    """A cluster worker's node id, derived from its address: the same on every Overlord and after restarts
    (22 url-safe characters, as Elasticsearch's ids are)."""
    digest = hashlib.sha256(f"overlord-worker:{address}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def split_address(address: str) -> tuple[str, int]:
    """Host and port of a worker address such as ``tcp://10.0.0.5:38001`` or ``tls://[::1]:38001`` (port 0 if none)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
        return hostport.strip("[]"), 0
    return host.strip("[]"), int(port)


def worker_node(worker: WorkerInfo) -> NodeInfo:
    """A cluster worker as a node; its attributes carry its task slots, those in use and why it is unusable."""
    assert worker.address is not None
    host, port = split_address(worker.address)
    attributes = [("slots", str(worker.capacity)), ("used_slots", str(len(worker.running)))]
    if worker.problem:
        attributes.append(("unusable_because", worker.problem))
    return NodeInfo(worker_node_id(worker.address), worker.name or worker.address, host, host, port, WORKER_ROLES,
                    tuple(attributes))  # fmt: skip


@dataclass(frozen=True)
class Cluster:
    """The nodes as one request sees them: this Overlord first, then each cluster worker, and which worker
    runs which task. Waiting and pending tasks, and every task of the local runner, are on this Overlord."""

    local: NodeInfo
    workers: tuple[NodeInfo, ...] = ()
    placement: Mapping[str, NodeInfo] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        return (self.local, *self.workers)

    def node_of(self, task_id: str) -> NodeInfo:
        return self.placement.get(task_id, self.local)


def _node_info(svc: Service) -> NodeInfo:
    host = svc.location.host or socket.gethostname()
    bind = svc.settings.host
    if bind in ("0.0.0.0", "::", ""):
        try:
            ip = socket.gethostbyname(host)
        except OSError:
            ip = "127.0.0.1"
    else:
        ip = bind
    return NodeInfo(load_node_id(svc.settings.data_dir), socket.gethostname(), host, ip, svc.settings.port)


class WaitOutcome(enum.Enum):
    """How a ``wait_for_completion`` ended."""

    DONE = "done"
    TIMEOUT = "timeout"
    GONE = "gone"  # the client disconnected: nobody is left to answer


@dataclass
class TransportTask:
    """An API request being served, listed like Elasticsearch lists its own transport actions."""

    number: int
    action: str
    start_ms: int
    start_ns: int
    headers: dict[str, str]
    description: str = ""


@dataclass
class EsState:
    """Per-service state of the ES API; created on first use and kept on ``app.state``."""

    service: Service
    node: NodeInfo
    inflight: dict[int, TransportTask] = field(default_factory=dict)
    _waiters: dict[str, list[asyncio.Future[TaskRecord]]] = field(default_factory=dict)
    _numbers: dict[str, int] = field(default_factory=dict)
    _descriptions: dict[str, str] = field(default_factory=dict)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _worker_ids: set[str] = field(default_factory=set)  # every worker node this process has listed

    def cluster(self) -> Cluster:
        """This Overlord and the runner's cluster workers now, with the tasks each one runs."""
        workers: list[NodeInfo] = []
        placement: dict[str, NodeInfo] = {}
        for info in self.service.runner.workers():
            if info.address is None:
                continue  # this service's own slots: the tasks are on this node
            node = worker_node(info)
            workers.append(node)
            placement.update(dict.fromkeys(info.running, node))
        if len(self._worker_ids) > 10_000:
            self._worker_ids.clear()
        self._worker_ids.update(n.id for n in workers)
        return Cluster(self.node, tuple(workers), placement)

    def knows_node(self, node_id: str, *, refresh: bool = True) -> bool:
        """Whether a task id's node part names this Overlord or a worker it has listed (``refresh``: or lists
        now). Task ids are always handed out with this Overlord's node id; a worker's id, put together from a
        listing grouped by node, names the same task (the number alone identifies it)."""
        if node_id == self.node.id or node_id in self._worker_ids:
            return True
        return refresh and any(n.id == node_id for n in self.cluster().workers)

    def number_of(self, task_id: str) -> int:
        """The task's stable ES number (a hash), memoised because listings ask for it on every request."""
        number = self._numbers.get(task_id)
        if number is None:
            if len(self._numbers) > 200_000:
                self._numbers.clear()
            number = self._numbers[task_id] = task_number(task_id)
        return number

    def description_of(self, rec: TaskRecord) -> str:
        """A task's ``description``; specs never change, so active tasks' descriptions are memoised."""
        text = self._descriptions.get(rec.id)
        if text is None:
            text = describe(rec.id, rec.type, rec.datasource, rec.payload)
            if rec.active and rec.payload is not None:
                self._descriptions[rec.id] = text
        return text

    @contextlib.contextmanager
    def transport_task(self, action: str, headers: dict[str, str]) -> Iterator[TransportTask]:
        """Register the current request as a transport task for as long as it is served."""
        task = TransportTask(next(self._counter), action, self.service.clock.now_ms(), time.monotonic_ns(), headers)
        self.inflight[task.number] = task
        try:
            yield task
        finally:
            self.inflight.pop(task.number, None)

    # -- completion ------------------------------------------------------------------------------

    def _on_complete(self, rec: TaskRecord) -> None:
        self._descriptions.pop(rec.id, None)
        for fut in self._waiters.pop(rec.id, ()):
            if not fut.done():
                fut.set_result(rec)

    async def wait_for(
        self,
        task_ids: list[str],
        timeout_s: float,
        gone: Callable[[], Awaitable[object]] | None = None,
    ) -> WaitOutcome:
        """Wait until none of ``task_ids`` is active any more, the timeout passes, or ``gone()``
        returns (the client disconnected): a waiter nobody will read must not hold its futures."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[TaskRecord]] = []
        for task_id in task_ids:
            if task_id in self.service.queue.active:
                fut: asyncio.Future[TaskRecord] = loop.create_future()
                self._waiters.setdefault(task_id, []).append(fut)
                futures.append(fut)
        if not futures:
            return WaitOutcome.DONE
        all_done = asyncio.gather(*futures)
        watcher = asyncio.ensure_future(gone()) if gone is not None else None
        deadline = loop.time() + max(0.0, timeout_s)
        try:
            watched: set[asyncio.Future[Any]] = {all_done} if watcher is None else {all_done, watcher}
            await asyncio.wait(watched, timeout=max(0.0, timeout_s), return_when=FIRST_COMPLETED)
            if watcher is not None and watcher.done() and not all_done.done() and watcher.exception() is not None:
                # watching failed (the request's receive raised): wait as if not watching
                await asyncio.wait({all_done}, timeout=max(0.0, deadline - loop.time()))
        finally:
            gone_now = False
            if watcher is not None:
                if watcher.done() and not watcher.cancelled():
                    gone_now = watcher.exception() is None
                watcher.cancel()
            all_done.cancel()
            self._forget(task_ids, futures)
        if all_done.done() and not all_done.cancelled():
            return WaitOutcome.DONE
        return WaitOutcome.GONE if gone_now else WaitOutcome.TIMEOUT

    def waiter_count(self) -> int:
        """Completion waiters registered now (each holds a future until its request ends)."""
        return sum(len(w) for w in self._waiters.values())

    def _forget(self, task_ids: list[str], futures: list[asyncio.Future[TaskRecord]]) -> None:
        mine = set(map(id, futures))
        for task_id in task_ids:
            waiters = self._waiters.get(task_id)
            if waiters:
                waiters[:] = [f for f in waiters if id(f) not in mine]
                if not waiters:
                    del self._waiters[task_id]


def es_state(app: Starlette) -> EsState:
    """The app's EsState, made on first use (the node id file is read or written then, once)."""
    state: EsState | None = getattr(app.state, "es", None)
    if state is None:
        svc: Service = app.state.service
        state = EsState(service=svc, node=_node_info(svc))
        svc.queue.add_completion_listener(state._on_complete)
        app.state.es = state
    return state


def es_version_info() -> dict[str, object]:
    return {
        "number": ES_VERSION,
        "build_flavor": "default",
        "build_type": "overlord",
        "build_hash": "overlord-" + __version__,
        "build_date": "2025-01-01T00:00:00.000Z",
        "build_snapshot": False,
        "lucene_version": "10.1.0",
        "minimum_wire_compatibility_version": "8.18.0",
        "minimum_index_compatibility_version": "8.0.0",
    }
