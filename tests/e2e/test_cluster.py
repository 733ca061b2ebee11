"""The whole cluster end to end: two Overlords on one PostgreSQL database, peons on a Dask scheduler with
2 workers (2 slots each), segments and task logs in S3 (moto), every process bound to 127.0.0.1.

The steps share one cluster and run in order: Druid's quickstart through the follower, an
``index_parallel`` spread over both workers, compaction and kill; then a worker killed mid-ingestion;
then the leader killed mid-ingestion. Tasks that must stay running read a FIFO, so they are mid-ingestion
until the test writes their rows (no timing guesses). Missing services skip locally, fail under CI.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ingest_helpers import API, index_spec, payload_of, segments, wait_until
from test_dask_runner import dask_env, workers_by_host
from test_high_availability import FAILOVER_S, is_leader, wait_leader
from test_s3_service import s3_rows
from tests.conftest import ServiceProcess, wait_exited
from tests.dask_cluster import DaskCluster, require_distributed
from tests.s3 import MotoServer, require_moto, s3_properties

from overlord.ingest import wikiticker

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(150)]

SEGMENTS = "druid/segments/"


@dataclass
class Cluster:
    base: Path
    dask: DaskCluster
    s3: MotoServer
    deep: str
    overlords: list[ServiceProcess]

    def leader(self) -> ServiceProcess:
        return next(o for o in self.overlords if o.proc is not None and is_leader(o))

    def follower(self) -> ServiceProcess:
        return next(o for o in self.overlords if o.proc is not None and not is_leader(o))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: MotoServer) -> Iterator[Cluster]:
    from tests.pg import drop_database, fresh_database_url

    require_distributed()
    require_moto()
    pg_url = fresh_database_url()
    base = tmp_path_factory.mktemp("cluster")
    dask = DaskCluster(base / "dask", workers=2, slots=2)
    dask.env = s3_server.env()  # peons on the workers find their S3 credentials the standard way
    deep, logs = s3_server.new_bucket(), s3_server.new_bucket()
    env = {**s3_server.env(), **dask_env(dask), **s3_properties(s3_server, bucket=deep, logs_bucket=logs)}
    overlords = [
        ServiceProcess(data_dir=base / f"var-{i}", extra_env=env, extra_args=["--metadata-url", pg_url])
        for i in range(2)
    ]
    try:
        dask.start()
        for o in overlords:
            o.start()
        assert is_leader(overlords[0]) and not is_leader(overlords[1])
        time.sleep(2.5)  # one lease renewal: the leader knows its follower, so its peons can fall back to it
        wait_until(lambda: len(overlords[0].http.get(f"{API}/workers").json()) == 2, timeout=30)
        yield Cluster(base, dask, s3_server, deep, overlords)
    finally:
        for o in overlords:
            o.stop()
        dask.stop()
        drop_database(pg_url)


def fifo_index_spec(ds: str, fifo: Path) -> dict[str, Any]:
    """An ``index`` task reading a FIFO: it is running, mid-ingestion, until someone writes the rows."""
    return index_spec(ds, {"type": "local", "files": [str(fifo)]}, {"type": "json"}, dims=["page"], task_type="index")


def fifo_rows(day: int, count: int = 10) -> str:
    return "".join(f'{{"ts":"2024-06-{day:02d}T{i % 24:02d}:00:00Z","page":"p{i}"}}\n' for i in range(count))


def feed(fifo: Path, text: str) -> threading.Thread:
    writer = threading.Thread(target=fifo.write_text, args=(text,), daemon=True)
    writer.start()
    return writer


def make_fifo(path: Path) -> Path:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def status_via(client: httpx.Client, task_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"{API}/task/{task_id}/status")
        if r.status_code == 200:
            body = r.json()["status"]
            if body["statusCode"] in ("SUCCESS", "FAILED"):
                return body
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end in {timeout}s; last status {body}")


def test_1_quickstart_via_the_follower_parallel_over_both_workers_compact_and_kill(cluster: Cluster) -> None:
    leader, follower = cluster.leader(), cluster.follower()
    tutorial = cluster.base / "quickstart" / "tutorial"
    wikiticker.write_file(tutorial / "wikiticker-2015-09-12-sampled.json.gz", 2000)
    spec = wikiticker.quickstart_spec(str(tutorial), "wikiticker-2015-09-12-sampled.json.gz")
    with httpx.Client(base_url=follower.url, follow_redirects=True, timeout=30) as via_follower:
        r = via_follower.post(f"{API}/task", json=spec)
        assert r.status_code == 200 and r.history[0].status_code == 307, r.text
        quickstart = r.json()["task"]
        status = status_via(via_follower, quickstart)
        assert status["status"] == "SUCCESS", status
        report = via_follower.get(f"{API}/task/{quickstart}/reports").json()
    assert payload_of(report)["rowStats"]["buildSegments"]["processed"] == 2000
    wiki = segments(leader, "wikipedia_auto")
    assert wiki and all(s["loadSpec"]["bucket"] == cluster.deep for s in wiki)
    before = s3_rows(cluster.s3, wiki)
    assert len(before) == 2000

    inputs = cluster.base / "inputs"
    inputs.mkdir()
    for i in range(4):
        rows = "".join(f'{{"ts":"2024-05-0{i + 1}T{h:02d}:00:00Z","page":"p{i}","n":{h}}}\n' for h in range(24))
        (inputs / f"part-{i}.json").write_text(rows)
    spec = index_spec("cluster_par", {"type": "local", "baseDir": str(inputs), "filter": "*.json"}, {"type": "json"},
                      dims=["page"], tuning={"maxNumConcurrentSubTasks": 4})  # fmt: skip
    parent = leader.submit(spec)
    assert leader.wait_for(parent, timeout=120)["statusCode"] == "SUCCESS"
    subs = [t for t in leader.http.get(f"{API}/tasks").json() if t["type"] == "single_phase_sub_task"]
    assert len(subs) == 4 and all(t["status"] == "SUCCESS" for t in subs), subs
    where = {re.search(r"in \S*/(worker-\d)/", leader.http.get(f"{API}/task/{t['id']}/log").text).group(1)  # type: ignore[union-attr]
             for t in subs}  # fmt: skip
    assert where == {"worker-0", "worker-1"}, where
    assert len(s3_rows(cluster.s3, segments(leader, "cluster_par"))) == 96

    compact = {
        "type": "compact",
        "dataSource": "wikipedia_auto",
        "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": "2015-09-12/2015-09-13"}},
    }
    status = leader.wait_for(leader.submit(compact), timeout=90)
    assert status["status"] == "SUCCESS", status
    compacted = segments(leader, "wikipedia_auto")
    assert compacted != wiki and s3_rows(cluster.s3, compacted) == before

    kill = {"type": "kill", "dataSource": "wikipedia_auto", "interval": "2015-09-12/2015-09-13", "markAsUnused": True}
    status = leader.wait_for(leader.submit(kill), timeout=60)
    assert status["status"] == "SUCCESS", status
    assert segments(leader, "wikipedia_auto") == []
    assert cluster.s3.keys(cluster.deep, SEGMENTS + "wikipedia_auto/") == [], "killed interval's objects are gone"
    assert len(cluster.s3.keys(cluster.deep, SEGMENTS + "cluster_par/")) == len(segments(leader, "cluster_par"))


def test_2_worker_killed_mid_ingestion_fails_its_tasks_only(cluster: Cluster) -> None:
    leader = cluster.leader()
    fifos = [make_fifo(cluster.base / "worker-kill" / f"rows-{day}.json") for day in range(1, 5)]
    ids = [leader.submit(fifo_index_spec("cluster_worker_kill", fifo)) for fifo in fifos]
    wait_until(lambda: sum(len(w["runningTasks"]) for w in workers_by_host(leader).values()) == 4, timeout=60)
    victim_host = sorted(workers_by_host(leader))[0]
    victims = set(workers_by_host(leader)[victim_host]["runningTasks"])
    assert len(victims) == 2, workers_by_host(leader)
    pids = [p for t in victims for p in wait_until(lambda t=t: cluster.dask.peon_pids(t), timeout=20)]
    index = cluster.dask.worker_index(f"tcp://{victim_host}")
    cluster.dask.kill_worker(index)
    try:
        for task_id in victims:
            status = leader.wait_for(task_id, timeout=20)
            assert status["status"] == "FAILED" and victim_host in status["errorMsg"], status
        for pid in pids:
            wait_exited(pid, 5)
        writers = [
            feed(fifo, fifo_rows(day))
            for day, (fifo, t) in enumerate(zip(fifos, ids, strict=True), 1)
            if t not in victims
        ]
        for task_id in set(ids) - victims:
            assert leader.wait_for(task_id, timeout=60)["status"] == "SUCCESS"
        for writer in writers:
            writer.join(10)
        published = segments(leader, "cluster_worker_kill")
        survivors_days = {f"2024-06-{day:02d}" for day, t in enumerate(ids, 1) if t not in victims}
        assert {s["interval"][:10] for s in published} == survivors_days, published
        assert len(s3_rows(cluster.s3, published)) == 20
        assert not [k for k in cluster.s3.keys(cluster.deep, SEGMENTS) if any(v in k for v in victims)]
    finally:
        cluster.dask.start_worker()  # what a supervisor does; the next step needs both workers
        cluster.dask.wait_for_workers(2)


def test_3_leader_killed_mid_ingestion_follower_takes_over_within_15s(cluster: Cluster) -> None:
    old, new = cluster.leader(), cluster.follower()
    wait_until(lambda: len(workers_by_host(old)) == 2, timeout=30)
    fifo = make_fifo(cluster.base / "leader-kill" / "rows.json")
    ingest = old.submit(fifo_index_spec("cluster_leader_kill", fifo))
    old.wait_for(ingest, timeout=30, states=("RUNNING",))
    wait_until(lambda: cluster.dask.peon_pids(ingest), timeout=20)
    others = [old.submit({"type": "noop", "runTime": 3000}) for _ in range(4)]  # 3 slots free: one waits
    old.kill9()
    took = wait_leader(new)
    print(f"failover: the follower leads {took:.1f}s after kill -9 of the leader")
    assert took < FAILOVER_S
    assert new.http.get(f"{API}/task/{ingest}/status").json()["status"]["statusCode"] == "RUNNING"
    writer = feed(fifo, fifo_rows(20, count=50))
    status = new.wait_for(ingest, timeout=60)
    writer.join(10)
    assert status["status"] == "SUCCESS", status
    assert len(s3_rows(cluster.s3, segments(new, "cluster_leader_kill"))) == 50
    for task_id in others:  # nothing lost, nothing run twice
        done = new.wait_for(task_id, timeout=60)
        if done["status"] == "FAILED":
            # Submitted to Dask milliseconds before the kill: a peon no worker had started when the
            # leader's Dask client died is gone with it, and fails as vanished (never runs twice).
            assert "is no longer on the Dask cluster" in done["errorMsg"], done
            continue
        assert done["status"] == "SUCCESS", done
        log = new.http.get(f"{API}/task/{task_id}/log").text
        assert log.count(f"Running task[{task_id}]") == 1, log
    log = new.http.get(f"{API}/task/{ingest}/log").text
    assert log.count(f"Running task[{ingest}]") == 1, log
    with contextlib.suppress(Exception):
        old.start()  # back as a follower
        assert not is_leader(old) and is_leader(new)
