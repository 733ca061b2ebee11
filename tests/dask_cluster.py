"""A real Dask cluster for tests: a scheduler and workers as separate processes, bound to 127.0.0.1.

Workers are started the way users start them (``dask worker ... --resources slots=N``), each in its
own process group, so that killing a worker's group with SIGKILL is a worker (nanny and worker
process) dying at once, as when its machine goes away. Without ``distributed`` the tests are
skipped with the reason, except under ``CI``, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port


def require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        reason = f"distributed is not installed ({exc}); pip install -e '.[dask]'"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so the Dask tests may not be skipped)")
        pytest.skip(reason)


@dataclass
class DaskCluster:
    """``start()`` runs the scheduler and ``workers`` workers with ``slots`` slots each."""

    base: Path
    workers: int = 2
    slots: int = 2
    threads: int = 4
    port: int = field(default_factory=free_port)
    scheduler_proc: subprocess.Popen[bytes] | None = None
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.base.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with (self.base / f"{name}.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=self.base, start_new_session=True,
            )  # fmt: skip

    def start_scheduler(self) -> None:
        self.scheduler_proc = self._spawn(
            "scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        )

    def start_worker(self, resources: str | None = None) -> subprocess.Popen[bytes]:
        n = len(self.worker_procs)
        args = ["worker", self.address, "--host", "127.0.0.1", "--no-dashboard", "--nworkers", "1",
                "--nthreads", str(self.threads), "--local-directory", str(self.base / f"worker-{n}"),
                "--death-timeout", "60"]  # fmt: skip
        resources = resources if resources is not None else f"slots={self.slots}"
        if resources:
            args += ["--resources", resources]
        proc = self._spawn(f"worker-{n}", args)
        self.worker_procs.append(proc)
        return proc

    def start(self, timeout: float = 60.0) -> DaskCluster:
        require_distributed()
        self.start_scheduler()
        for _ in range(self.workers):
            self.start_worker()
        self.wait_for_workers(self.workers, timeout)
        return self

    def scheduler_info(self) -> dict:
        """The scheduler's identity (its workers), read through a short-lived client."""
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            return dict(client.scheduler_info(n_workers=-1))

    def peon_pids(self, task_id: str) -> list[int]:
        """Pids of a task's peons, as the workers' peon registries list them."""
        from distributed import Client

        from overlord.runner import dask_worker

        with Client(self.address, timeout=10, set_as_default=False) as client:
            answers = client.run(dask_worker.snapshot, on_error="return")
        return [int(p["pid"]) for peons in answers.values() if isinstance(peons, dict)
                for p in peons.values() if p["taskId"] == task_id]  # fmt: skip

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                info = self.scheduler_info()
                if len(info["workers"]) >= count:
                    return info
                last = info["workers"]
            except Exception as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"Dask cluster did not get {count} workers in {timeout}s: {last}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.base.glob("*.log")))

    def worker_index(self, address: str) -> int:
        """Which of ``worker_procs`` listens at ``address`` (its log names it)."""
        for i in range(len(self.worker_procs)):
            if re.search(rf"Start worker at:\s+{re.escape(address)}\s", (self.base / f"worker-{i}.log").read_text()):
                return i
        raise AssertionError(f"no worker at {address}:\n{self.logs()}")

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker's whole process group (nanny and worker), as if its machine died."""
        proc = self.worker_procs[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_scheduler(self) -> None:
        if self.scheduler_proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.scheduler_proc.pid, signal.SIGKILL)
            self.scheduler_proc.wait(10)
            self.scheduler_proc = None

    def stop(self) -> None:
        for proc in [*self.worker_procs, self.scheduler_proc]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.worker_procs, self.scheduler_proc]:
            if proc is None:
                continue
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.worker_procs.clear()
        self.scheduler_proc = None


@contextlib.contextmanager
def running_cluster(base: Path, workers: int = 2, slots: int = 2) -> Iterator[DaskCluster]:
    """A started cluster for a test module's fixture, stopped on the way out."""
    require_distributed()
    cluster = DaskCluster(base, workers=workers, slots=slots)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
