"""The Dask task runner (``druid.indexer.runner.type=dask``): each task's peon runs on a Dask worker.

Users start a scheduler and workers with Dask's own CLI; a worker's ``slots`` resource is its task
capacity and every task takes one slot. Each launch is one Dask task (``dask_worker.run_task``),
submitted with ``retries=0``, restricted to the workers this runner has checked (they have a
``slots`` resource and this package imports there) and handed to ``fire_and_forget`` so that it
outlives this Overlord's client. The peon itself is a real process on the worker.

- Two-phase launch: the peon waits at its gate until ``release`` sets the launch's gate variable
  (with the token, deleted once read); ``abort`` sets it to abort. A launch the Overlord never
  released exits after ``overlord.runner.dask.gateTimeout`` and says so in its state variable, so a
  restarted Overlord launches that task again instead of failing it.
- Dask never reruns a task: the worker side refuses a second run of a launch, and this runner
  fails a task as soon as the worker it runs on leaves the cluster (naming the worker), then
  cancels the Dask task.
- Restart: ``adopt`` takes the handles back provisionally; once the scheduler answers, each one is
  matched with the cluster (the scheduler's ``processing`` map, the launch's state variable and the
  workers' peon registries): running peons are kept, finished ones complete with their status,
  unreleased ones are requeued, vanished ones fail, and peons of no task are killed.
- The scheduler unreachable (at start or later): the API keeps serving, capacity is 0, tasks stay
  PENDING, ``health()`` says why, and the runner reconnects every few seconds.
- ``read_log`` reads a running peon's log from its worker in chunks through ``Client.run``.
- Placement: the scheduler picks the worker after the launch; once a peon is seen on a worker,
  ``on_placed`` gets the task's location there (the worker's host; port -1, Druid's "not served", since a
  peon serves no HTTP: the Overlord answers its chat endpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from distributed import Client, Event, Future, Variable, fire_and_forget
from distributed.client import FutureCancelledError
from distributed.comm.addressing import get_address_host

from overlord.clock import Clock
from overlord.core.protocols import ExitListener, LaunchSpec, PlacementListener, RunnerExit, WorkerInfo
from overlord.core.task import Location
from overlord.runner import dask_worker
from overlord.runner.local import describe_exit
from overlord.runner.toolbox import PeonRuntime

log = logging.getLogger(__name__)

TICK_S = 0.5
RECONNECT_S = 2.0
START_WAIT_S = 5.0
CONNECT_TIMEOUT_S = 3.0
PEONS_TIMEOUT_S = 5.0
STATE_TIMEOUT_S = 2.0  # reading a launch's state variable: a loaded scheduler can take more than 0.2 s
RPC_TIMEOUT_S = 10.0
SLOTS = "slots"


RESUBMIT = re.compile(r"-r\d+$")


def worker_location(address: str) -> Location:
    """A task's Druid location on the worker at ``address`` (``tcp://host:port``): the worker's host, and no
    port (-1, as Druid writes a port nothing listens on) because the peon serves nothing there."""
    return Location(get_address_host(address), -1, -1)


def launch_part(key: Any) -> str:
    """A launch's first key, from the key of any of its submissions (``<key>-r<n>`` after a resubmit)."""
    return RESUBMIT.sub("", str(key))


@dataclass
class DaskLaunch:
    task_id: str
    launch_id: str
    key: str
    started_monotonic: float
    future: Future | None = None  # None when adopted after a restart: watched through the scheduler
    token: str | None = None
    released: bool = False
    worker: str | None = None  # address, once the scheduler placed it
    shutdown_reason: str | None = None
    adopted: bool = False
    unseen_ticks: int = 0
    pending_commands: list[dict[str, Any]] = field(default_factory=list)
    submit_args: tuple[Any, ...] = ()  # to submit it again while it has not started (see _resubmit_stranded)
    allowed: list[str] | None = None  # the workers the current submission may go to
    resubmits: int = 0

    def handle(self) -> str:
        return orjson.dumps({"runner": "dask", "launch": self.launch_id, "key": self.key}).decode()


@dataclass
class ClusterWorker:
    address: str
    host: str
    slots: int
    name: str = ""
    problem: str | None = None  # why it takes no tasks
    last_completed_ms: int | None = None


class DaskTaskRunner:
    """Runs tasks' peons on a Dask cluster (the ``dask`` runner type)."""

    def __init__(
        self,
        *,
        scheduler: str,
        runtime: PeonRuntime,
        clock: Clock,
        shutdown_grace_ms: int,
        on_exit: ExitListener,
        base_task_dir: str = "",
        gate_timeout_ms: int = 600_000,
        on_placed: PlacementListener | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.runtime = runtime
        self.clock = clock
        self.grace_s = shutdown_grace_ms / 1000
        self.on_exit = on_exit
        self.on_placed = on_placed
        self.base_task_dir = base_task_dir
        self.gate_timeout_s = gate_timeout_ms / 1000
        self.running: dict[str, DaskLaunch] = {}
        self.cluster: dict[str, ClusterWorker] = {}
        self.client: Client | None = None
        self._problem: str | None = f"Not connected to the Dask scheduler {scheduler} yet"
        self._adopting = False  # a sweep of the cluster is due after ``adopt``
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._first_answer = asyncio.Event()  # the first tick ended, well or not

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching the cluster; wait a little for the first answer, never for the scheduler to come up."""
        self._loop = asyncio.get_running_loop()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="dask-runner-monitor")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_answer.wait(), START_WAIT_S)

    async def stop(self, *, kill_running: bool) -> None:
        if kill_running and self.client is not None:
            for task_id in list(self.running):
                self.shutdown(task_id, "The Overlord is stopping")
            deadline = time.monotonic() + self.grace_s + 2
            while self.running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for task in list(self._background):
            task.cancel()
        await self._drop_client()

    def health(self) -> str | None:
        """Why this runner cannot run tasks right now (for /status/health); None when it can."""
        return self._problem

    # -- slots -----------------------------------------------------------------------------------

    def capacity(self) -> int:
        if self.client is None:
            return 0
        return sum(w.slots for w in self.cluster.values() if w.problem is None)

    def used_slots(self) -> int:
        return len(self.running)

    def free_slot_count(self) -> int:
        return max(0, self.capacity() - len(self.running))

    def running_ids(self) -> set[str]:
        return set(self.running)

    def workers(self) -> list[WorkerInfo]:
        on: dict[str, list[str]] = {}
        for launch in self.running.values():
            if launch.worker is not None:
                on.setdefault(launch.worker, []).append(launch.task_id)
        return [
            WorkerInfo(
                host=w.host,
                capacity=w.slots if w.problem is None else 0,
                running=sorted(on.get(address, [])),
                last_completed_ms=w.last_completed_ms,
                problem=w.problem,
                address=address,
                name=w.name or address,
            )
            for address, w in sorted(self.cluster.items())
        ]

    def _usable(self) -> list[str]:
        return sorted(a for a, w in self.cluster.items() if w.problem is None)

    # -- launching -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> str:
        if self.client is None or self._loop is None:
            raise RuntimeError(f"Not connected to the Dask scheduler {self.scheduler}")
        launch_id = uuid.uuid4().hex
        key = f"overlord-peon-{spec.task_id}-{launch_id[:12]}"
        doc = {"id": spec.task_id, "payload": spec.payload, "run": spec.run, "runtime": self.runtime.to_json()}
        launch = DaskLaunch(spec.task_id, launch_id, key, self.clock.monotonic(), token=spec.token,
                            submit_args=(spec.task_id, launch_id, doc, self.base_task_dir, self.grace_s,
                                         self.gate_timeout_s))  # fmt: skip
        self.running[spec.task_id] = launch
        self._submit(self.client, launch, key)
        log.info("Submitted the peon of task[%s] to Dask as %s", spec.task_id, key, extra={"task_id": spec.task_id})
        return launch.handle()

    def _submit(self, client: Client, launch: DaskLaunch, key: str) -> None:
        launch.allowed = self._usable()
        future = client.submit(dask_worker.run_task, *launch.submit_args, key=key, resources={SLOTS: 1},
                               workers=launch.allowed, allow_other_workers=False, retries=0, pure=False)  # fmt: skip
        fire_and_forget(future)
        launch.future = future
        self._spawn(self._watch_future(launch, future))

    def _resubmit_stranded(self, client: Client) -> None:
        """A launch still waiting for a slot whose allowed workers all left is submitted again for the workers
        usable now (the scheduler would keep it waiting for them forever). It never started, so this cannot run
        it twice; the old submission is cancelled first, and its run would find the launch's marker anyway."""
        usable = set(self._usable())
        for launch in self.running.values():
            if launch.worker is not None or launch.future is None or not launch.submit_args or not usable:
                continue
            if launch.allowed is None or set(launch.allowed) & set(self.cluster):
                continue
            launch.resubmits += 1
            log.info("Task[%s] waited for workers that left; submitting it again for %s", launch.task_id,
                     sorted(usable), extra={"task_id": launch.task_id})  # fmt: skip
            old, launch.future = launch.future, None
            self._spawn(client.cancel([old], force=True))
            self._submit(client, launch, f"{launch.key}-r{launch.resubmits}")

    def release(self, task_id: str) -> None:
        launch = self.running.get(task_id)
        if launch is None or launch.released:
            return
        token, launch.token, launch.released = launch.token, None, True
        self._spawn(self._retrying(launch, lambda c: Variable(dask_worker.gate_name(launch.launch_id), client=c)
                                   .set({"token": token})))  # fmt: skip

    def abort(self, task_id: str) -> None:
        launch = self.running.pop(task_id, None)
        if launch is None:
            return
        self._spawn(self._retrying(None, lambda c: Variable(dask_worker.gate_name(launch.launch_id), client=c)
                                   .set({"abort": True})))  # fmt: skip

    def shutdown(self, task_id: str, reason: str) -> bool:
        launch = self.running.get(task_id)
        if launch is None:
            return False
        if launch.shutdown_reason is None:
            launch.shutdown_reason = reason
            self._spawn(self._retrying(launch, lambda c: Event(dask_worker.stop_name(launch.launch_id), client=c)
                                       .set()))  # fmt: skip
        return True

    def command(self, task_id: str, command: dict[str, Any]) -> bool:
        launch = self.running.get(task_id)
        if launch is None or not launch.released:
            return False
        launch.pending_commands.append(command)
        self._spawn(self._deliver_commands(launch))
        return True

    def read_log(self, task_id: str, offset: int) -> Iterator[bytes] | None:
        """Chunks of the log on the task's worker, fetched as they are consumed. Blocks: call it off the loop."""
        launch = self.running.get(task_id)
        if launch is None:
            return None
        return self._log_chunks(launch, offset)

    def _log_chunks(self, launch: DaskLaunch, offset: int) -> Iterator[bytes]:
        while launch.worker is not None and self.client is not None and self._loop is not None:
            worker, client = launch.worker, self.client

            async def fetch(worker: str = worker, client: Client = client, offset: int = offset) -> Any:
                return await client.run(dask_worker.read_log_chunk, launch.launch_id, offset, workers=[worker],
                                        on_error="return")  # fmt: skip

            try:
                answer = asyncio.run_coroutine_threadsafe(fetch(), self._loop).result(RPC_TIMEOUT_S)
            except Exception as exc:
                log.warning("Reading the log of task[%s] on %s failed: %s", launch.task_id, worker, exc)
                return
            part = answer.get(worker)
            if not isinstance(part, tuple) or not part[0]:
                return
            data, offset = part
            yield data

    # -- adoption after a restart ----------------------------------------------------------------

    def adopt(self, handles: Mapping[str, str]) -> set[str]:
        """Take the handles back provisionally; the monitor matches them with the cluster once it answers."""
        adopted: set[str] = set()
        for task_id, raw in handles.items():
            try:
                handle = orjson.loads(raw)
                launch = DaskLaunch(task_id, str(handle["launch"]), str(handle["key"]), self.clock.monotonic(),
                                    released=True, adopted=True)  # fmt: skip
            except (orjson.JSONDecodeError, KeyError, TypeError):
                why = f"Task's runner handle could not be read after a restart (not a Dask runner handle): {raw!r}"
                self._report_later(RunnerExit(task_id, None, why, 0))
                continue
            self.running[task_id] = launch
            adopted.add(task_id)
        self._adopting = True
        return adopted

    async def _reconcile_adopted(self, client: Client) -> None:
        """Once after a restart: match adopted launches with the workers' peons; kill peons of no task."""
        answers = await client.run(dask_worker.snapshot, workers=self._usable(), on_error="return")
        by_launch = {launch.launch_id: launch for launch in self.running.values()}
        for address, peons in answers.items():
            if not isinstance(peons, dict):
                continue
            for launch_id, info in peons.items():
                launch = by_launch.get(launch_id)
                if launch is None:
                    log.warning("Killing the peon of task[%s] on %s: its launch belongs to no task", info["taskId"],
                                address)  # fmt: skip
                    await client.run(dask_worker.kill_launch, launch_id, workers=[address], on_error="return")
                    continue
                self._placed(launch, address)
                if launch.adopted and info.get("phase") == "gate":  # recorded, never released: did no work
                    self.running.pop(launch.task_id, None)
                    await Variable(dask_worker.gate_name(launch_id), client=client).set({"abort": True})
                    why = f"Peon on {address} was never released before the Overlord restarted"
                    self._report(RunnerExit(launch.task_id, None, why, 0, started=False))
                elif launch.adopted:
                    log.info("Adopted the peon of task[%s] on %s", launch.task_id, address,
                             extra={"task_id": launch.task_id})  # fmt: skip
        self._adopting = False

    # -- exits -----------------------------------------------------------------------------------

    async def _watch_future(self, launch: DaskLaunch, future: Future) -> None:
        """The launch's result as soon as Dask has it. A future cancelled under us (our client lost the
        scheduler) says nothing about the peon: the launch is then watched through the scheduler."""
        try:
            result = await future
        except FutureCancelledError:
            if launch.future is future:
                launch.future, launch.adopted = None, True
            return
        except Exception as exc:  # KilledWorker: the worker running it died (allowed-failures exhausted)
            if launch.future is future:
                why = self._died_message(launch, f"{type(exc).__name__}: {exc}")
                self._finish(launch, None, why, keep_marker=True)
            return
        self._on_result(launch, result)

    def _died_message(self, launch: DaskLaunch, detail: str) -> str:
        where = f"Dask worker {launch.worker}" if launch.worker else "its Dask worker"
        return f"The peon's task ended without a status: {where} died or left the cluster ({detail})"

    def _on_result(self, launch: DaskLaunch, result: Any) -> None:
        if self.running.get(launch.task_id) is not launch:
            return  # aborted, or already failed (its worker left)
        if not isinstance(result, dict):
            self._finish(launch, None, f"The peon's task returned an unexpected result: {result!r}")
            return
        phase, worker = result.get("phase"), result.get("worker")
        if worker:
            launch.worker = str(worker)
        if phase == "refused":
            prior = result.get("prior") or {}
            why = (f"Dask worker {prior.get('worker')} died while running this task's peon; Dask tried to run it "
                   f"again on {worker}, which the Overlord refuses (a task never runs twice)")  # fmt: skip
            self._finish(launch, None, why)
        elif phase == "done":
            status = result.get("status")
            if launch.shutdown_reason is not None:
                self._finish(launch, False, launch.shutdown_reason)
            elif isinstance(status, dict) and status.get("status") in ("SUCCESS", "FAILED"):
                ok = status["status"] == "SUCCESS"
                self._finish(launch, ok, None if ok else status.get("errorMsg"))
            else:
                how = describe_exit(result.get("exitcode"))
                self._finish(launch, None, f"Peon process [pid {result.get('pid')}] on Dask worker {worker} {how} "
                                           "without reporting a status")  # fmt: skip
            if result.get("pushError"):
                log.warning("Task[%s]: its worker could not push its log: %s", launch.task_id, result["pushError"])
        elif phase in ("gate-expired", "died"):
            why = f"Peon on Dask worker {worker} ended at its launch gate ({phase})"
            self._finish(launch, None, why, started=False)
        else:
            self._finish(launch, None, f"The peon's task on {worker} ended in phase [{phase}]")

    def _finish(self, launch: DaskLaunch, success: bool | None, error_msg: str | None, *, started: bool = True,
                keep_marker: bool = False) -> None:  # fmt: skip
        """Report the exit. ``keep_marker`` when the Dask task may not be over (its worker died): its state
        variable stays, so that a run Dask starts again elsewhere refuses to start the task."""
        if self.running.get(launch.task_id) is not launch:
            return
        del self.running[launch.task_id]
        if launch.shutdown_reason is not None and success is not True:
            success, error_msg = False, launch.shutdown_reason
        worker = self.cluster.get(launch.worker or "")
        if worker is not None:
            worker.last_completed_ms = self.clock.now_ms()
        duration = int((self.clock.monotonic() - launch.started_monotonic) * 1000)
        if launch.future is not None and success is None and self.client is not None:
            self._spawn(self.client.cancel([launch.future], force=True))  # Dask must not run it elsewhere
        self._report(RunnerExit(launch.task_id, success, error_msg, duration, started=started))
        if not keep_marker:
            self._spawn(self._retrying(None, lambda c: Variable(dask_worker.state_name(launch.launch_id), client=c)
                                   .delete()))  # fmt: skip

    def _report(self, exit_: RunnerExit) -> None:
        log.info("Task[%s] peon ended: %s", exit_.task_id, "SUCCESS" if exit_.success else exit_.error_msg,
                 extra={"task_id": exit_.task_id})  # fmt: skip
        self.on_exit(exit_)

    def _report_later(self, exit_: RunnerExit) -> None:
        if self._loop is not None:
            self._loop.call_soon(self._report, exit_)
        else:
            self._report(exit_)

    # -- the monitor: connection, workers, placements, vanished peons --------------------------------

    async def _monitor_loop(self) -> None:
        announced: str | None = None
        while True:
            try:
                client = self.client
                if client is None:
                    client = await self._connect()
                    self.client = client
                    log.info("Connected to the Dask scheduler %s", self.scheduler)
                async with asyncio.timeout(RPC_TIMEOUT_S):
                    await self._tick(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._first_answer.set()
                self._problem = f"Dask scheduler {self.scheduler} is unreachable ({type(exc).__name__}: {exc})"
                self.cluster.clear()
                if self._problem != announced:
                    log.warning("%s; tasks stay PENDING; retrying every %.0fs", self._problem, RECONNECT_S)
                    announced = self._problem
                await self._drop_client()
                await asyncio.sleep(RECONNECT_S)
                continue
            self._first_answer.set()
            if self._problem is None and announced is not None:
                log.info("Dask scheduler %s is reachable again", self.scheduler)
                announced = None
            await asyncio.sleep(TICK_S)

    async def _connect(self) -> Client:
        connecting = Client(self.scheduler, asynchronous=True, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        try:
            client: Client = await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S + 5)  # type: ignore[arg-type]
        except BaseException:
            # a failed or cancelled start leaves the client's connection attempts and rpc pool on this loop:
            # closed here, not left for the loop's shutdown to cancel (which could then wait on them forever)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connecting.close(), 2)
            raise
        return client

    async def _drop_client(self) -> None:
        """Close the client; its launches are watched through the scheduler from now on, as adopted ones are
        (closing it cancels our futures, not the fire-and-forget tasks)."""
        client, self.client = self.client, None
        for launch in self.running.values():
            launch.future, launch.adopted = None, True
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)

    async def _tick(self, client: Client) -> None:
        identity = await client.scheduler.identity()
        await self._refresh_workers(client, identity.get("workers") or {})
        processing = await client.scheduler.processing()
        assigned = {launch_part(key) for keys in processing.values() for key in keys}  # maybe still queued there
        peons = await self._peons(client)
        for launch in list(self.running.values()):
            if launch.worker is not None and launch.worker not in self.cluster:
                why = f"Dask worker {launch.worker} died or left the cluster while running this task's peon"
                self._finish(launch, None, why, keep_marker=True)
                continue
            address = peons.get(launch.launch_id) if peons is not None else launch.worker
            if address is not None:
                launch.unseen_ticks, launch.submit_args = 0, ()
                self._placed(launch, address)
                if launch.pending_commands:
                    self._spawn(self._deliver_commands(launch))
            elif launch.adopted and peons is not None:
                launch.unseen_ticks = 0 if launch.key in assigned else launch.unseen_ticks + 1
                if launch.unseen_ticks >= 2:
                    await self._settle_vanished(client, launch)
        if self._adopting:
            await self._reconcile_adopted(client)
        self._resubmit_stranded(client)
        usable = self._usable()
        self._problem = (
            None
            if usable
            else f"Dask scheduler {self.scheduler} has no usable workers"
            + ("" if not self.cluster else ": " + "; ".join(f"{w.address}: {w.problem}" for w in self.cluster.values()))
        )

    def _placed(self, launch: DaskLaunch, address: str) -> None:
        """The launch's peon runs on ``address``: the first time it is seen there (or after a restart), the
        task's location moves to that worker."""
        seen, launch.worker = launch.worker, address
        if self.on_placed is not None and seen != address and self.running.get(launch.task_id) is launch:
            self.on_placed(launch.task_id, worker_location(address))

    async def _peons(self, client: Client) -> dict[str, str] | None:
        """Launch id -> address of every peon the usable workers run now (the scheduler's ``processing`` also
        lists tasks a worker holds queued for a slot); None when a worker is too slow to answer."""
        try:
            answers = await asyncio.wait_for(
                client.run(dask_worker.snapshot, workers=self._usable(), on_error="return"), PEONS_TIMEOUT_S
            )
        except TimeoutError:
            return None
        return {
            launch_id: address
            for address, by_launch in answers.items()
            if isinstance(by_launch, dict)
            for launch_id in by_launch
        }

    async def _settle_vanished(self, client: Client, launch: DaskLaunch) -> None:
        """An adopted launch the scheduler no longer runs: finished while we were away, or lost."""
        known = await client.scheduler.get_task_status(keys=[launch.key])
        if known.get(launch.key) in ("released", "waiting", "no-worker", "queued", "processing"):
            launch.unseen_ticks = 0  # still waiting for a slot
            return
        try:
            state = await Variable(dask_worker.state_name(launch.launch_id), client=client).get(timeout=STATE_TIMEOUT_S)
        except TimeoutError:
            state = None
        if isinstance(state, dict) and state.get("phase") not in ("gate", "running"):
            self._on_result(launch, state)
            return
        worker = state.get("worker") if isinstance(state, dict) else launch.worker
        where = f" on Dask worker {worker}" if worker else ""
        why = (f"The peon of this task{where} is no longer on the Dask cluster (its worker or the scheduler went "
               "away while the Overlord was not watching)")  # fmt: skip
        self._finish(launch, None, why, keep_marker=True)

    async def _refresh_workers(self, client: Client, found: dict[str, dict[str, Any]]) -> None:
        for address in [a for a in self.cluster if a not in found]:
            log.warning("Dask worker %s left the cluster", address)
            del self.cluster[address]
        new = {a: info for a, info in found.items() if a not in self.cluster}
        if not new:
            return
        probes = await client.run(dask_worker.probe, workers=list(new), on_error="return")
        for address, info in new.items():
            slots = int((info.get("resources") or {}).get(SLOTS, 0))
            threads = int(info.get("nthreads") or 0)
            host = address.split("://", 1)[-1]
            name = str(info.get("name") if info.get("name") is not None else address)
            answer = probes.get(address)
            problem: str | None = None
            if slots < 1:
                problem = f'no [{SLOTS}] resource (start it with --resources "{SLOTS}=N"): it takes no tasks'
            elif not isinstance(answer, dict):
                problem = f"the overlord package cannot run there ({type(answer).__name__}: {answer}): no tasks"
            if slots > threads > 0 and problem is None:
                log.warning("Dask worker %s has %d slots but %d threads: it runs %d tasks at once", address, slots,
                            threads, threads)  # fmt: skip
                slots = threads
            self.cluster[address] = ClusterWorker(address, host, slots, name, problem)
            if problem is None:
                log.info("Dask worker %s joined with %d task slots", address, slots)
            else:
                log.warning("Dask worker %s is not usable: %s", address, problem)

    # -- background calls to the cluster ---------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retrying(self, launch: DaskLaunch | None, call: Callable[[Client], Any]) -> None:
        """One call to the scheduler, retried while the scheduler is away and the launch still runs (a clean-up
        call with no launch: for a minute)."""
        tries = 0
        while (launch is None and tries < 30) or (launch is not None and self.running.get(launch.task_id) is launch):
            tries += 1
            client = self.client
            if client is not None:
                try:
                    async with asyncio.timeout(RPC_TIMEOUT_S):
                        answer = call(client)
                        if inspect.isawaitable(answer):  # some of Dask's calls only send a message
                            await answer
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("A call to the Dask scheduler failed, retrying: %s", exc)
            await asyncio.sleep(RECONNECT_S)

    async def _deliver_commands(self, launch: DaskLaunch) -> None:
        client, worker = self.client, launch.worker
        if client is None or worker is None or not launch.pending_commands:
            return
        commands, launch.pending_commands = launch.pending_commands, []
        for command in commands:
            await client.run(dask_worker.send_command, launch.launch_id, command, workers=[worker], on_error="return")
