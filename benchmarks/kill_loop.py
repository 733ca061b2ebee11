"""Crash loop: kill -9 the service at random moments while noop and index tasks flood in, then count the damage.

Each run of a set starts ``overlord start`` (one data directory and one port for the whole set, so peons that
outlive a kill find their Overlord again), waits for ``GET /status/health``, lets a client thread submit tasks
for a random while and kills the service process (never its peons) with SIGKILL. After the last run the
service is started once more, the flood stops and every acknowledged task must end. Counted per backend:
  (a) lost: acknowledged submits (200 with a task id) the service does not know at the end, or that never
      reach SUCCESS/FAILED within --drain-timeout;
  (b) run twice: task ids written more than once to the peon journal ($OVERLORD_PEON_JOURNAL: each peon
      appends ``<task id> <pid>`` when it starts the task's work);
  (c) failed restarts: starts that did not answer health 200 within 30 s (their log tail is printed).
Also listed, as information: tasks FAILED although not told to fail, with their errorMsg (a kill -9 may
legitimately fail a task whose peon was interrupted). Exit status 1 if (a), (b) or (c) is not zero.

Usage: python benchmarks/kill_loop.py [--runs 30] [--seed 1] [--backend sqlite|postgresql|both] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _service import ROOT, free_port  # noqa: E402

API = "/druid/indexer/v1"
HEALTH_TIMEOUT_S = 30.0
TERMINAL = ("SUCCESS", "FAILED")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class SetResult:
    """What one set of runs on one metadata backend found."""

    backend: str
    runs: int
    seed: int
    submitted: int = 0
    refused: int = 0
    lost: list[str] = field(default_factory=list)
    run_twice: list[str] = field(default_factory=list)
    failed_restarts: list[int] = field(default_factory=list)
    unexpected_failures: dict[str, str] = field(default_factory=dict)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    leftover_peons: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _rows(rng: random.Random, day: int) -> str:
    return "\n".join(
        f'{{"ts":"2015-09-{day:02d}T{h:02d}:{rng.randrange(60):02d}:00Z","page":"p{rng.randrange(50)}",'
        f'"user":"u{rng.randrange(9)}","added":{rng.randrange(1000)}}}'
        for h in range(24)
        for _ in range(2)
    )


def index_spec(rng: random.Random, task_type: str) -> dict[str, Any]:
    """A small inline ingestion (48 rows, one day) into one of four data sources."""
    day = rng.randrange(1, 29)
    return {
        "type": task_type,
        "spec": {
            "dataSchema": {
                "dataSource": f"kill_ds{rng.randrange(4)}",
                "timestampSpec": {"column": "ts", "format": "auto"},
                "dimensionsSpec": {"dimensions": ["page", "user"]},
                "metricsSpec": [{"type": "longSum", "name": "added", "fieldName": "added"}],
                "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "none", "rollup": False},
            },
            "ioConfig": {
                "type": task_type,
                "inputSource": {"type": "inline", "data": _rows(rng, day)},
                "inputFormat": {"type": "json"},
                "appendToExisting": rng.random() < 0.5,
            },
            "tuningConfig": {"type": task_type},
        },
    }


def random_task(rng: random.Random) -> tuple[dict[str, Any], bool]:
    """(spec, expected to fail): mostly short noops, some told to fail, some index tasks."""
    r = rng.random()
    if r < 0.70:
        return {"type": "noop", "runTime": rng.randrange(0, 300)}, False
    if r < 0.80:
        return {"type": "noop", "runTime": rng.randrange(0, 100), "fail": "told to fail by kill_loop"}, True
    return index_spec(rng, "index" if r < 0.90 else "index_parallel"), False


class Flood(threading.Thread):
    """Submits tasks until stopped, keeping at most ``backlog`` tasks active so the final drain stays short."""

    def __init__(self, url: str, seed: int, backlog: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rng, self.backlog = url, random.Random(seed), backlog
        self.acked: dict[str, bool] = {}  # task id -> expected to fail
        self.refused = 0
        self.stopped = threading.Event()

    def active(self, http: httpx.Client) -> int:
        return sum(len(http.get(f"{API}/{kind}Tasks").json()) for kind in ("running", "pending", "waiting"))

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stopped.is_set():
                try:
                    if self.active(http) >= self.backlog:
                        self.stopped.wait(0.2)
                        continue
                    for _ in range(self.rng.randint(1, 6)):
                        spec, expect_fail = random_task(self.rng)
                        r = http.post(f"{API}/task", json=spec)
                        if r.status_code == 200 and "task" in r.json():
                            self.acked[r.json()["task"]] = expect_fail
                        else:
                            self.refused += 1
                except (httpx.TransportError, ValueError):
                    self.stopped.wait(0.05)  # the service is down or was killed mid-answer: not acknowledged
                self.stopped.wait(self.rng.uniform(0, 0.3))


class Service:
    """One ``overlord start`` process at a time, on the set's fixed port and data directory."""

    def __init__(
        self, work: Path, port: int, capacity: int, metadata_url: str | None, journal: Path, log_level: str = "warning"
    ) -> None:
        self.work, self.port, self.capacity, self.log_level = work, port, capacity, log_level
        self.metadata_url, self.journal = metadata_url, journal
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path = work / "service.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> bool:
        """Start and wait for health 200; False (log tail printed) if it is not healthy within 30 s."""
        self.starts += 1
        self.log = self.work / f"service-{self.starts:03d}.log"
        args = [sys.executable, "-m", "overlord", "start", "--port", str(self.port), "--data-dir",
                str(self.work / "var"), "--capacity", str(self.capacity), "--log-level", self.log_level]  # fmt: skip
        if self.metadata_url:
            args += ["--metadata-url", self.metadata_url]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OVERLORD_PEON_JOURNAL": str(self.journal)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.work)
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/status/health", timeout=2).status_code == 200:
                    return True
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace").splitlines()[-12:]
        print(f"    start {self.starts} not healthy in {HEALTH_TIMEOUT_S:.0f} s (exit {self.proc.poll()}):", flush=True)
        print("\n".join("      | " + line for line in tail), flush=True)
        self.kill()
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def drain(url: str, acked: dict[str, bool], timeout: float, result: SetResult) -> None:
    """Wait for every acknowledged task to end; sort each into an outcome."""
    pending = set(acked)
    last: dict[str, dict[str, Any] | None] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as http:
        while pending and time.monotonic() < deadline:
            for task_id in sorted(pending):
                r = http.get(f"{API}/task/{task_id}/status")
                last[task_id] = r.json().get("status") if r.status_code == 200 else None
                status = last[task_id]
                if status is not None and status.get("statusCode") in TERMINAL:
                    pending.discard(task_id)
            if pending:
                time.sleep(0.5)
    for task_id, expect_fail in acked.items():
        status = last.get(task_id)
        if status is None:
            result.lost.append(task_id)
            result.outcomes["unknown to the service"] += 1
        elif status.get("statusCode") not in TERMINAL:
            result.lost.append(task_id)
            result.outcomes[f"still {status.get('statusCode')} after the drain"] += 1
        elif status["statusCode"] == "FAILED" and not expect_fail:
            result.unexpected_failures[task_id] = str(status.get("errorMsg"))
            result.outcomes["FAILED (not told to)"] += 1
        else:
            result.outcomes[status["statusCode"] + (" (told to fail)" if expect_fail else "")] += 1


def journal_findings(journal: Path, result: SetResult) -> None:
    """Task ids the journal holds more than once; peons of this set still alive (killed, by pid)."""
    lines = journal.read_text().split() if journal.exists() else []
    entries = list(zip(lines[0::2], lines[1::2], strict=True))
    counts = collections.Counter(task_id for task_id, _ in entries)
    result.run_twice = sorted(task_id for task_id, n in counts.items() if n > 1)
    marker = f"OVERLORD_PEON_JOURNAL={journal}".encode()
    for pid in {int(p) for _, p in entries}:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # ended, or not ours to read
        if marker in environ.split(b"\0"):
            result.leftover_peons.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def work_directory(keep: bool) -> Any:
    """The set's data directory: a temporary one, or (--keep) one left in place for the post-mortem."""
    if not keep:
        with tempfile.TemporaryDirectory(prefix="kill-loop-") as tmp:
            yield tmp
        return
    tmp = tempfile.mkdtemp(prefix="kill-loop-")
    print(f"  data directory kept: {tmp}", flush=True)
    yield tmp


@contextlib.contextmanager
def metadata_database(backend: str, admin_url: str, keep: bool = False) -> Any:
    """None for SQLite (the data directory's file); a fresh PostgreSQL database, dropped afterwards unless kept."""
    if backend == "sqlite":
        yield None
        return
    import psycopg

    name = f"overlord_kill_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        if keep:
            print(f"  PostgreSQL database kept: {name}", flush=True)
        else:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_set(backend: str, args: argparse.Namespace) -> SetResult:
    result = SetResult(backend=backend, runs=args.runs, seed=args.seed)
    rng = random.Random(f"{args.seed}-{backend}")
    t0 = time.monotonic()
    print(f"== {backend}: {args.runs} runs, seed {args.seed}", flush=True)
    with work_directory(args.keep) as tmp, metadata_database(backend, args.pg_admin_url, args.keep) as db:
        work = Path(tmp)
        journal = work / "peon-journal.txt"
        svc = Service(work, free_port(), args.capacity, db, journal, args.service_log_level)
        flood = Flood(svc.url, rng.randrange(2**32), args.backlog)
        flood.start()
        try:
            for run in range(1, args.runs + 1):
                if not svc.start():
                    result.failed_restarts.append(run)
                    continue
                delay = rng.uniform(args.min_delay, args.max_delay)
                time.sleep(delay)
                svc.kill()
                print(f"  run {run:2d}: killed after {delay:.2f} s, {len(flood.acked)} acknowledged so far", flush=True)
                time.sleep(rng.uniform(0, args.max_down))
            final_ok = any(svc.start() for _ in range(3))
            if not final_ok:
                result.failed_restarts.append(args.runs + 1)
            flood.stopped.set()
            flood.join(30)
            result.submitted, result.refused = len(flood.acked), flood.refused
            if final_ok:
                drain(svc.url, dict(flood.acked), args.drain_timeout, result)
            else:
                result.lost = sorted(flood.acked)
                result.outcomes["unverifiable: the service never started again"] = len(flood.acked)
        finally:
            flood.stopped.set()
            svc.stop()
            journal_findings(journal, result)
    result.seconds = time.monotonic() - t0
    return result


def report(results: list[SetResult]) -> None:
    for res in results:
        print(f"\n-- {res.backend}: outcomes {dict(res.outcomes)}; {res.refused} submits refused or cut by a kill")
        if res.failed_restarts:
            print(f"   failed restarts at runs {res.failed_restarts} (run {res.runs + 1} is the final start)")
        for task_id in res.run_twice[:20]:
            print(f"   run twice: {task_id}")
        for task_id in res.lost[:10]:
            print(f"   lost: {task_id}")
        if len(res.lost) > 10:
            print(f"   ... and {len(res.lost) - 10} more lost")
        if res.leftover_peons:
            print(f"   peons still alive after the drain (killed): {res.leftover_peons}")
        restart_related = {t: m for t, m in res.unexpected_failures.items() if _mentions_restart(m)}
        print(f"   (d) FAILED by the restart/peon death (information): {len(restart_related)}")
        for msg, n in collections.Counter(m[:150] for m in restart_related.values()).most_common(8):
            print(f"       {n:4d} x {msg}")
        others = {t: m for t, m in res.unexpected_failures.items() if t not in restart_related}
        if others:
            print(f"   other FAILED tasks not told to fail: {len(others)}")
            for msg, n in collections.Counter(m[:150] for m in others.values()).most_common(8):
                print(f"       {n:4d} x {msg}")
    print(f"\n{'backend':<11}{'runs':>6}{'submitted':>11}{'lost':>7}{'run twice':>11}", end="")
    print(f"{'failed restarts':>17}{'seed':>7}{'minutes':>9}  final start")
    for res in results:
        final = "FAILED (lost = unverifiable)" if res.runs + 1 in res.failed_restarts else "ok"
        print(
            f"{res.backend:<11}{res.runs:>6}{res.submitted:>11}{len(res.lost):>7}{len(res.run_twice):>11}"
            f"{len(res.failed_restarts):>17}{res.seed:>7}{res.seconds / 60:>9.1f}  {final}"
        )


def _mentions_restart(msg: str) -> bool:
    low = msg.lower()
    return any(w in low for w in ("overlord", "restart", "died", "was down", "sigkill", "killed"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL, help="where to create the fresh database")
    ap.add_argument("--capacity", type=int, default=2)
    ap.add_argument("--backlog", type=int, default=12, help="active tasks above which the flood pauses")
    ap.add_argument("--min-delay", type=float, default=0.1, help="seconds from healthy to kill, at least")
    ap.add_argument("--max-delay", type=float, default=4.0, help="seconds from healthy to kill, at most")
    ap.add_argument("--max-down", type=float, default=1.0, help="seconds the service stays down, at most")
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--service-log-level", default="warning", help="info: the service logs say what each start did")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and database for a post-mortem")
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = [run_set(b, args) for b in backends]
    report(results)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    bad = any(r.lost or r.run_twice or r.failed_restarts for r in results)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
