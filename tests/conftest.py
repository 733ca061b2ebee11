"""Fixtures shared by every tier: a real service process on a free port, and PostgreSQL discovery."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Hundreds of tests start services and CLIs as subprocesses; where the environment says not to write
# bytecode (PYTHONDONTWRITEBYTECODE), each of them compiled every module of src/ again (~0.5 s).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_exited(pid: int) -> bool:
    """True once ``pid`` has ended: gone from /proc, or a zombie (its work is over, nobody reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X")


def wait_exited(pid: int, timeout: float = 20.0) -> None:
    """Poll until ``pid`` has ended: a positive event to wait for, never a fixed sleep after a kill."""
    deadline = time.monotonic() + timeout
    while not process_exited(pid):
        assert time.monotonic() < deadline, f"process {pid} still running after {timeout}s"
        time.sleep(0.01)


@dataclass
class ServiceProcess:
    """A real ``overlord start`` in a subprocess, driven over HTTP."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    capacity: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"service-{self.port}.log"

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        env = {**os.environ, **self.extra_env}
        args = [
            sys.executable, "-m", "overlord", "start",
            "--port", str(self.port), "--data-dir", str(self.data_dir), "--capacity", str(self.capacity),
            *self.extra_args,
        ]  # fmt: skip
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir.parent)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.log_file.read_text()}")
            try:
                if self.client.get("/status/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"service did not start:\n{self.log_file.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def http(self) -> httpx.Client:
        assert self.client is not None
        return self.client

    def wait_for(self, task_id: str, timeout: float = 30.0, states: tuple[str, ...] = ("SUCCESS", "FAILED")) -> dict:
        """Poll the status (short interval, generous deadline) until it reaches one of ``states``."""
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            r = self.http.get(f"/druid/indexer/v1/task/{task_id}/status")
            if r.status_code == 200:
                body = r.json()["status"]
                if body["statusCode"] in states or body["runnerStatusCode"] in states:
                    return body
            time.sleep(0.02)
        raise AssertionError(f"task {task_id} did not reach {states} in {timeout}s; last status {body}")

    def peon_pid(self, task_id: str, timeout: float = 10.0) -> int:
        """The peon's pid, from the local runner's handle the service keeps for adopting after restarts."""
        import json

        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{self.data_dir / 'metadata.db'}")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    q = sa.text("select runner_handle from overlord_tasks where id = :i")
                    handle = conn.execute(q, {"i": task_id}).scalar()
                pid = json.loads(handle)["pid"] if handle else None
                if pid:
                    return int(pid)
                time.sleep(0.02)
        finally:
            engine.dispose()
        raise AssertionError(f"no pid recorded for {task_id}")

    def submit(self, spec: dict, **kwargs: object) -> str:
        r = self.http.post("/druid/indexer/v1/task", json=spec, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return str(r.json()["task"])


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[callable]:
    started: list[ServiceProcess] = []

    def make(**kwargs: object) -> ServiceProcess:
        data_dir = kwargs.pop("data_dir", None) or tmp_path / "var"
        svc = ServiceProcess(data_dir=data_dir, **kwargs)  # type: ignore[arg-type]
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.stop()


@pytest.fixture
def service(service_factory) -> ServiceProcess:  # type: ignore[no-untyped-def]
    """A started service with 2 slots in a fresh data directory."""
    return service_factory().start()


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One started service (2 slots) for a module's tests that need a service but not a fresh one.

    A start costs ~2 s. Tests that count or list every task, need idle slots or restart the service
    take the function-scoped ``service``.
    """
    proc = ServiceProcess(data_dir=tmp_path_factory.mktemp("shared") / "var").start()
    yield proc
    proc.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (skipped locally without PostgreSQL, fails under CI)."""
    from tests.pg import drop_database, fresh_database_url

    url = fresh_database_url()
    yield url
    drop_database(url)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests import style_checks

    style_checks.start_if_selected(items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests import style_checks
    from tests.pg import drop_template

    style_checks.stop()

    with contextlib.suppress(Exception):  # best effort: a leftover template is harmless
        drop_template()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One moto S3 server for the run (skipped locally without moto, fails under CI); see tests/s3.py."""
    from tests.s3 import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: object, monkeypatch: pytest.MonkeyPatch) -> object:
    """The S3 server, with its credentials in this process's environment (the standard AWS chain)."""
    for key, value in s3_server.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    return s3_server
