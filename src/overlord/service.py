"""Assembles the service: settings -> store, task logs, runner, queue, HTTP app; start and stop."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import gc
import logging
import os
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import overlord.tasks  # noqa: F401  (registers the built-in task types)
from overlord import __version__
from overlord.clock import SYSTEM_CLOCK, Clock
from overlord.config import Settings
from overlord.core.auto_compaction import DutyResult, run_duty
from overlord.core.duties import Duty, DutyRunner
from overlord.core.leadership import Leadership, LeadershipConfig, Role
from overlord.core.lock_intervals import declared_lock_intervals
from overlord.core.locks import TaskLockbox
from overlord.core.protocols import DeepStorage, SegmentStore, TaskLogs, TaskRunner, TaskStore
from overlord.core.queue import QueueConfig, TaskQueue
from overlord.core.retention import LogRetention, RetentionResult
from overlord.core.task import Location, SubmitContext, TaskRecord
from overlord.core.task_actions import TaskActionHandler
from overlord.errors import ConfigError, ObjectStoreError
from overlord.isotime import Interval
from overlord.listing_pool import ListingPool
from overlord.runner.local import LocalTaskRunner
from overlord.runner.toolbox import PeonRuntime
from overlord.storage.compaction_configs import CompactionConfigs
from overlord.storage.config_audit import ConfigStore
from overlord.storage.deep_storage import FsDeepStorage
from overlord.storage.leader_lease import SqlLeaseStore, install_fence
from overlord.storage.metadata import MetadataStore
from overlord.storage.s3 import S3Location
from overlord.storage.segment_store import SqlSegmentStore
from overlord.storage.task_logs import FsTaskLogs
from overlord.storage.uris import open_deep_storage, open_task_logs

if TYPE_CHECKING:
    from overlord.sql.engine import SqlEngine

log = logging.getLogger(__name__)


class StatusCache:
    """Rendered status bodies of completed tasks, which never change: spares the store on hot polls."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, task_id: str) -> bytes | None:
        return self._items.get(task_id)

    def put(self, task_id: str, body: bytes) -> None:
        self._items[task_id] = body
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def discard(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            self._items.pop(task_id, None)


class Service:
    """One Overlord: everything the HTTP layer calls into."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        runner_factory: Callable[[Service], TaskRunner] | None = None,
    ) -> None:
        """``runner_factory`` replaces the runner that ``druid.indexer.runner.type`` names (tests, embedding)."""
        settings.data_dir = settings.data_dir.resolve()
        settings.base_task_dirs = [p.resolve() for p in settings.base_task_dirs]
        self.settings = settings
        self.clock = clock
        self.version = __version__
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._lock_data_dir(settings.data_dir)
        self.store: TaskStore = MetadataStore.from_url(settings.effective_metadata_url)
        self.task_logs: TaskLogs = self._task_logs()
        self.deep_storage: DeepStorage = self._deep_storage()
        self.status_cache = StatusCache()
        self.live_reports: dict[str, bytes] = {}  # posted by running peons; gone when the task ends
        self.listings = ListingPool()
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        self.location = Location(host, settings.port, -1)
        self.advertised_url = f"http://{host}:{settings.port}"
        self._runner_factory = runner_factory
        self.leadership = self._leadership()
        self._build_leader_parts()
        self.started_ms = clock.now_ms()
        self._sql: SqlEngine | None = None
        self._sql_lock = threading.Lock()
        self.compaction_configs = CompactionConfigs(self.store)
        self.configs = ConfigStore(self.store)  # type: ignore[arg-type]
        self.retention = LogRetention(self.store, self.task_logs, clock, settings.logs_kill_duration_to_retain_ms)
        self.duties = DutyRunner(self._duties(), clock=clock)

    def _build_leader_parts(self) -> None:
        """What one term of leadership runs on: a new leader starts from the store, never from what an
        earlier term of this process left in memory."""
        settings, clock, runner_factory = self.settings, self.clock, self._runner_factory
        self.runner: TaskRunner = runner_factory(self) if runner_factory is not None else self._runner()
        self.lockbox = TaskLockbox(clock)
        assert isinstance(self.store, MetadataStore)
        self.segments: SegmentStore = SqlSegmentStore(self.store)
        self.queue = TaskQueue(
            store=self.store,
            runner=self.runner,
            clock=clock,
            lockbox=self.lockbox,
            segments=self.segments,
            config=QueueConfig(
                max_size=settings.queue_max_size,
                force_time_chunk_lock=settings.force_time_chunk_lock,
                default_context=settings.default_task_context,
                location=self.location,
                submit_context=SubmitContext(
                    allowed_input_dirs=[p.resolve() for p in settings.effective_allowed_input_dirs],
                    http_max_idle_time_ms=settings.http_max_idle_time_ms,
                ),
            ),
        )
        self.actions = TaskActionHandler(
            lockbox=self.lockbox,
            segments=self.segments,
            deep_storage=self.deep_storage,
            clock=clock,
            active=self.queue.active,
            force_time_chunk_lock=settings.force_time_chunk_lock,
            batch_segment_allocation=settings.batch_segment_allocation,
            on_locks_changed=self.queue.persist_locks,
        )
        self.queue.add_completion_listener(self._on_task_complete)

    @staticmethod
    def _lock_data_dir(data_dir: Path) -> IO[str]:
        """One service per data directory: a second one would corrupt the first one's state."""
        handle = (data_dir / "overlord.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigError(f"Another Overlord is already using the data directory {data_dir}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _leadership(self) -> Leadership:
        """Overlords sharing a PostgreSQL store elect their leader through it and fence every write
        with its term; on SQLite the data-directory lock already makes this one the only one."""
        s = self.settings
        engine = getattr(self.store, "engine", None)
        lease = SqlLeaseStore(engine.url) if engine is not None and SqlLeaseStore.supports(engine) else None
        leadership = Leadership(
            lease,
            node_id=self._node_id(),
            url=self.advertised_url,
            clock=self.clock,
            config=LeadershipConfig(s.leader_lease_ms, s.leader_renew_ms),
            on_elected=self._become_leader,
            on_deposed=self._stop_leading,
        )
        if lease is not None and engine is not None:
            install_fence(engine, leadership, idle_in_transaction_ms=max(1_000, s.leader_lease_ms // 2))
        return leadership

    def _node_id(self) -> str:
        """This data directory's lasting identity: a restart takes its own lease back without waiting."""
        path = self.settings.data_dir / "node-id"
        try:
            return path.read_text().strip() or self._new_node_id(path)
        except FileNotFoundError:
            return self._new_node_id(path)

    @staticmethod
    def _new_node_id(path: Path) -> str:
        node_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
        path.write_text(node_id)
        return node_id

    # -- implementations, picked by Druid's property names ----------------------------------------

    @property
    def sql(self) -> SqlEngine:
        """The SQL engine, built on first use (off the event loop, see api.sql): DuckDB and sqlglot stay
        out of start-up."""
        if self._sql is None:
            with self._sql_lock:
                if self._sql is None:
                    from overlord.sql.engine import SqlEngine

                    s = self.settings
                    self._sql = SqlEngine(
                        self.segments, self.deep_storage, max_rows=s.sql_max_rows, threads=s.sql_threads
                    )
        return self._sql

    @property
    def sql_started(self) -> bool:
        return self._sql is not None

    def _task_logs(self) -> TaskLogs:
        if self.settings.logs_type == "s3":
            return open_task_logs(self._checked_s3("druid.indexer.logs.s3Bucket", self._task_logs_uri()))
        if self.settings.logs_type != "file":
            raise ConfigError(f"druid.indexer.logs.type [{self.settings.logs_type}] is not supported; use file or s3")
        return FsTaskLogs.from_uri(self.settings.effective_task_logs_dir.resolve())

    def _deep_storage(self) -> DeepStorage:
        if self.settings.storage_type == "s3":
            return open_deep_storage(self._checked_s3("druid.storage.bucket", self._deep_storage_uri()))
        if self.settings.storage_type != "local":
            raise ConfigError(f"druid.storage.type [{self.settings.storage_type}] is not supported; use local or s3")
        return FsDeepStorage.from_uri(f"file://{self.settings.deep_storage_dir.resolve()}")

    def _s3_location(self, bucket_prop: str, bucket: str | None, prefix: str) -> S3Location:
        s = self.settings
        if not bucket:
            raise ConfigError(f"{bucket_prop} must be set for S3 storage")
        endpoint = s.s3_endpoint_url
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"  # Druid's druid.s3.protocol default
        return S3Location(bucket, prefix, endpoint, s.s3_signing_region, s.s3_path_style)

    def _deep_storage_uri(self) -> str:
        """What the peon rebuilds its deep storage from: endpoint and bucket, never credentials."""
        s = self.settings
        if s.storage_type == "s3":
            return self._s3_location("druid.storage.bucket", s.storage_bucket, s.storage_base_key).uri
        return f"file://{s.deep_storage_dir.resolve()}"

    def _task_logs_uri(self) -> str:
        s = self.settings
        if s.logs_type == "s3":
            return self._s3_location("druid.indexer.logs.s3Bucket", s.logs_s3_bucket, s.logs_s3_prefix).uri
        return str(s.effective_task_logs_dir.resolve())

    @staticmethod
    def _checked_s3(bucket_prop: str, uri: str) -> str:
        """Reach the bucket once at start-up, so a wrong bucket, credentials or endpoint stops the service."""
        try:
            S3Location.from_uri(uri).check()
        except ObjectStoreError as exc:
            raise ConfigError(f"{bucket_prop}: {exc.message}") from None
        return uri

    def _runner(self) -> TaskRunner:
        s = self.settings
        if s.runner_type == "dask":
            return self._dask_runner()
        if s.runner_type != "local":
            raise ConfigError(f"druid.indexer.runner.type [{s.runner_type}] is not supported; use [local] or [dask]")
        return LocalTaskRunner(
            capacity=s.worker_capacity,
            base_task_dirs=[Path(p) for p in s.effective_base_task_dirs],
            base_task_dir_size=s.base_task_dir_size,
            task_logs=self.task_logs,
            location=self.location,
            runtime=self.peon_runtime(),
            clock=self.clock,
            shutdown_grace_ms=s.shutdown_grace_ms,
            on_exit=lambda exit_: self.queue.on_runner_exit(exit_),
            log_max_bytes=s.log_max_bytes,
        )

    def _dask_runner(self) -> TaskRunner:
        """Peons on a Dask cluster; they reach this Overlord by its advertised URL (the extra ``overlord[dask]``)."""
        s = self.settings
        if not s.dask_scheduler:
            raise ConfigError("druid.indexer.runner.type [dask] needs overlord.runner.dask.scheduler=tcp://host:port")
        try:
            from overlord.runner.dask import DaskTaskRunner
        except ImportError as exc:
            raise ConfigError(f"The dask runner needs Dask: pip install 'overlord[dask]' ({exc})") from None
        return DaskTaskRunner(
            scheduler=s.dask_scheduler,
            runtime=dataclasses.replace(self.peon_runtime(), overlord_url=self.advertised_url),
            clock=self.clock,
            shutdown_grace_ms=s.shutdown_grace_ms,
            on_exit=lambda exit_: self.queue.on_runner_exit(exit_),
            base_task_dir=s.dask_base_task_dir,
            gate_timeout_ms=s.dask_gate_timeout_ms,
            on_placed=lambda task_id, location: self.queue.on_runner_placed(task_id, location),
        )

    def runner_health(self) -> str | None:
        """Why the runner cannot run tasks now (the Dask scheduler unreachable, no usable worker); None if it can."""
        return self.runner.health()

    def peon_runtime(self) -> PeonRuntime:
        """Settings a task needs inside its peon (the peon reads no config of its own)."""
        s = self.settings
        return PeonRuntime(
            overlord_url=f"http://{'127.0.0.1' if s.host in ('0.0.0.0', '') else s.host}:{s.port}",
            deep_storage=self._deep_storage_uri(),
            task_logs=self._task_logs_uri(),
            allowed_input_dirs=tuple(str(p.resolve()) for p in s.effective_allowed_input_dirs),
            store_empty_columns=s.store_empty_columns,
            action_retry_s=s.action_retry_ms / 1000,
            log_max_bytes=s.log_max_bytes,
            overlord_urls=tuple(self.leadership.peer_urls),
        )

    async def start(self) -> None:
        """Start as a follower and campaign; the leader's work starts when this node wins (at once on
        SQLite, or when no other Overlord holds the lease)."""
        await self.leadership.start()
        if self.leadership.role is Role.FOLLOWER and isinstance(self.runner, LocalTaskRunner):
            await self.runner.start()  # warms the fork server up now: a takeover then need not wait for it
            await self.runner.stop(kill_running=False)
        # Long-lived state (modules, settings, recovered tasks) need not be traced by every full
        # collection; fewer, cheaper GC passes keep the listing endpoints' tail latency down.
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        log.info("Overlord %s started as %s: %s, data dir %s", self.version, self.leadership.role.value,
                 self.advertised_url, self.settings.data_dir)  # fmt: skip

    async def _become_leader(self, epoch: int) -> None:
        """A won election: restore tasks, locks and pending segments from the store, adopt the peons
        still running, start the duties."""
        if epoch > 0:  # on PostgreSQL another leader may have written since these parts were built
            self._build_leader_parts()
        loop = asyncio.get_running_loop()

        # revocations can happen on a lockAcquire worker thread: hop to the loop, the queue's thread
        def on_revoked(task_id: str, _lock: object) -> None:
            loop.call_soon_threadsafe(self.queue.on_revoked, task_id)

        self.lockbox.add_revocation_listener(on_revoked)
        await self.runner.start()
        self.queue.recover()
        self.duties.start()

    async def _stop_leading(self, reason: str) -> None:
        """Leadership lost: stop scheduling and the duties; the peons keep running for the next leader."""
        self.queue.stopping = True
        await self.duties.stop()
        await self.runner.stop(kill_running=False)
        self.live_reports.clear()

    def is_leader(self) -> bool:
        """Whether this Overlord leads now (``/isLeader`` of the Overlord and the Coordinator APIs)."""
        return self.leadership.is_leader()

    def leader_url(self) -> str | None:
        """The leader's advertised URL as last seen, None when no Overlord holds the lease."""
        return self.advertised_url if self.leadership.is_leader() else self.leadership.leader_url

    async def stop(self) -> None:
        await self.leadership.stop_campaigning()
        leading = self.leadership.role is Role.LEADER  # a follower's runner holds no peons of its own
        self.queue.stopping = True
        await self.duties.stop()
        running = self.runner.running_ids()
        await self.runner.stop(kill_running=leading and not self.settings.restore_tasks_on_restart)
        if leading and not self.settings.restore_tasks_on_restart:
            for rec in list(self.queue.active.values()):
                if rec.id in running:
                    self.queue.fail_on_stop(rec)
        await self.leadership.release()
        self.listings.close()
        if self._sql is not None:
            self._sql.close()
        self.store.close()
        self._lock_file.close()

    # -- background duties ----------------------------------------------------------------------

    def _duties(self) -> list[Duty]:
        """The service's background work; the queue's duties are async, so they run on the loop (its thread)."""
        s = self.settings
        duties = [
            Duty("schedule-tick", 0.5, self._schedule_tick),
            Duty("auto-compaction", s.compaction_period_ms / 1000, self._compaction_tick),
        ]
        if s.logs_kill_enabled:
            duties.append(
                Duty("log-retention", s.logs_kill_delay_ms / 1000, self._retention_tick,
                     initial_delay_s=s.logs_kill_initial_delay_ms / 1000)
            )  # fmt: skip
        return duties

    async def _schedule_tick(self) -> None:
        """Save completions the store refused, and re-check WAITING tasks (lock timeouts wake nobody)."""
        self.queue.flush_unsaved()
        self.queue.schedule()
        self._refresh_peon_runtime()

    def _refresh_peon_runtime(self) -> None:
        """Peons launched from now on know the Overlords alive now: where to go if this one goes away."""
        runner = self.runner  # the local and the Dask runner both hand peons a runtime
        runtime = getattr(runner, "runtime", None)
        if isinstance(runtime, PeonRuntime) and runtime.overlord_urls != tuple(self.leadership.peer_urls):
            runner.runtime = self.peon_runtime()  # type: ignore[attr-defined]

    async def _compaction_tick(self) -> DutyResult:
        return self.run_compaction_duty()

    async def _retention_tick(self) -> RetentionResult:
        result = await asyncio.to_thread(self.retention.run_once)  # file and row deletes off the loop
        self.status_cache.discard(result.tasks_deleted)
        return result

    def run_compaction_duty(self) -> DutyResult:
        """Submit compaction tasks for fragmented chunks of configured data sources (not busy ones)."""

        def busy(ds: str) -> list[Interval]:
            held = [lock.interval for _, lock in self.lockbox.all_locks(ds)]
            queued = [
                iv
                for rec in self.queue.active.values()
                if rec.datasource == ds
                for iv in declared_lock_intervals(rec.payload or {})
            ]
            return held + queued

        return run_duty(
            self.compaction_configs.all(),
            visible_segments=self.segments.visible_segments,
            busy_intervals=busy,
            submit=self.queue.submit,
        )

    # -- what running tasks post, and reading logs and reports wherever they are ----------------

    def _on_task_complete(self, done: TaskRecord) -> None:
        """Forget the live report; remove a parallel task's staging area once it and its sub-tasks ended."""
        self.live_reports.pop(done.id, None)
        parent = done.id if done.type in ("index_parallel", "query_controller") else None
        if parent is None and done.type in ("single_phase_sub_task", "query_worker"):
            stored = self.store.get_task(done.id, with_payload=True)
            parent = (stored.payload or {}).get("supervisorTaskId") if stored is not None else None
        if not isinstance(parent, str) or parent in self.queue.active:
            return
        if any((r.payload or {}).get("supervisorTaskId") == parent for r in self.queue.active.values()):
            return
        asyncio.get_running_loop().run_in_executor(None, self._remove_staging, parent)

    def _remove_staging(self, parent_id: str) -> None:
        try:
            removed = self.deep_storage.delete_prefix(f"_staging/{parent_id}")
        except Exception:
            log.exception("Could not remove the staging area of task[%s]", parent_id)
            return
        if removed:
            log.info("Removed %d staged files of task[%s]", removed, parent_id, extra={"task_id": parent_id})

    def read_log(self, rec: TaskRecord, offset: int) -> Iterator[bytes] | None:
        """A running task's log from its runner, else the pushed one from task-log storage, else the one
        its runner still holds because pushing it failed."""
        chunks = self.runner.read_log(rec.id, offset) if rec.active else None
        if chunks is None:
            try:
                chunks = self.task_logs.read_log(rec.id, offset)
            except OSError as exc:
                log.warning("Reading the log of task[%s] failed: %s", rec.id, exc, extra={"task_id": rec.id})
        if chunks is None:
            chunks = self.runner.read_log(rec.id, offset)
        return chunks

    def read_report(self, rec: TaskRecord) -> bytes | None:
        """The live report while a task runs, then its completion report."""
        if rec.active:
            live = self.live_reports.get(rec.id)
            if live is not None:
                return live
        try:
            return self.task_logs.read_report(rec.id)
        except OSError as exc:
            log.warning("Reading the report of task[%s] failed: %s", rec.id, exc, extra={"task_id": rec.id})
            return None
