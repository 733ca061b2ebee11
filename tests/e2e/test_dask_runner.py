"""End to end on the Dask runner: a real ``overlord start`` with ``druid.indexer.runner.type=dask`` and a
real scheduler with 2 workers (2 slots each), all on 127.0.0.1."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import API, index_spec, payload_of, read_rows, run_task, segments, wait_until
from tests.conftest import ServiceProcess, wait_exited
from tests.dask_cluster import DaskCluster, require_distributed, running_cluster

from overlord.ingest import wikiticker


def dask_env(cluster: DaskCluster, **extra: str) -> dict[str, str]:
    return {
        "druid_indexer_runner_type": "dask",
        "overlord_runner_dask_scheduler": cluster.address,
        "druid_indexer_runner_taskShutdownLinkTimeout": "PT3S",
        **extra,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with running_cluster(tmp_path_factory.mktemp("dask"), workers=2) as c:
        yield c


@pytest.fixture
def svc(cluster: DaskCluster, tmp_path: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(data_dir=tmp_path / "var", extra_env=dask_env(cluster)).start()
    wait_until(lambda: service.http.get(f"{API}/workers").json(), timeout=30)
    yield service
    service.stop()


def workers_by_host(svc: ServiceProcess) -> dict[str, dict]:
    return {w["worker"]["host"]: w for w in svc.http.get(f"{API}/workers").json()}


def test_noop_tasks_run_on_the_workers_and_workers_show_them(svc: ServiceProcess, cluster: DaskCluster) -> None:
    workers = workers_by_host(svc)
    assert len(workers) == 2 and all(w["worker"]["capacity"] == 2 for w in workers.values()), workers
    ids = [svc.submit({"type": "noop", "runTime": 4000, "logLines": 3}) for _ in range(4)]
    running = wait_until(lambda: sum(len(w["runningTasks"]) for w in workers_by_host(svc).values()) == 4, timeout=30)
    assert running
    assert all(len(w["runningTasks"]) == 2 for w in workers_by_host(svc).values())  # 2 slots each, all in use
    capacity = svc.http.get(f"{API}/totalWorkerCapacity").json()
    assert (capacity["currentClusterCapacity"], capacity["usedClusterCapacity"]) == (4, 4), capacity
    es = svc.http.get("/_tasks", params={"detailed": "true"}).json()
    es_ids = {t["description"] for node in es["nodes"].values() for t in node["tasks"].values()}
    assert all(any(task_id in d for d in es_ids) for task_id in ids), es
    fifth = svc.submit({"type": "noop", "runTime": 0})
    assert svc.http.get(f"{API}/task/{fifth}/status").json()["status"]["runnerStatusCode"] == "PENDING"
    # the log of a task running on a worker, through the Overlord
    log = wait_until(lambda: b"log line 3 of 3" in svc.http.get(f"{API}/task/{ids[0]}/log").content, timeout=30)
    assert log
    for task_id in [*ids, fifth]:
        assert svc.wait_for(task_id, timeout=60)["status"] == "SUCCESS"
    assert b"log line" in svc.http.get(f"{API}/task/{ids[0]}/log").content  # pushed by the peon when it ended
    assert all(not w["runningTasks"] for w in workers_by_host(svc).values())


def test_shutdown_of_a_running_task_within_the_timeout(svc: ServiceProcess, cluster: DaskCluster) -> None:
    task_id = svc.submit({"type": "noop", "runTime": 600_000})
    svc.wait_for(task_id, timeout=30, states=("RUNNING",))
    pid = wait_until(lambda: cluster.peon_pids(task_id), timeout=30)[0]
    started = time.monotonic()
    assert svc.http.post(f"{API}/task/{task_id}/shutdown").status_code == 200
    status = svc.wait_for(task_id, timeout=20)
    assert time.monotonic() - started < 3 + 2  # taskShutdownLinkTimeout is PT3S
    assert status["status"] == "FAILED" and "shutdown" in status["errorMsg"].lower(), status
    wait_exited(pid, 5)


def test_quickstart_and_index_parallel_spread_over_both_workers(svc: ServiceProcess) -> None:
    base = svc.data_dir.parent / "quickstart" / "tutorial"
    wikiticker.write_file(base / "wikiticker-2015-09-12-sampled.json.gz", 2000)
    spec = wikiticker.quickstart_spec(str(base), "wikiticker-2015-09-12-sampled.json.gz")
    status, report = run_task(svc, spec, timeout=90)
    assert status["status"] == "SUCCESS", status
    assert payload_of(report)["rowStats"]["buildSegments"]["processed"] == 2000

    inputs = svc.data_dir.parent / "inputs"
    inputs.mkdir()
    for i in range(4):
        rows = "".join(f'{{"ts":"2024-05-0{i + 1}T{h:02d}:00:00Z","page":"p{i}","n":{h}}}\n' for h in range(24))
        (inputs / f"part-{i}.json").write_text(rows)
    spec = index_spec("dask_par", {"type": "local", "baseDir": str(inputs), "filter": "*.json"}, {"type": "json"},
                      dims=["page"], tuning={"maxNumConcurrentSubTasks": 4})  # fmt: skip
    parent = svc.submit(spec)
    status = svc.wait_for(parent, timeout=120)
    assert status["statusCode"] == "SUCCESS", status
    subs = [t for t in svc.http.get(f"{API}/tasks").json() if t["type"] == "single_phase_sub_task"]
    assert len(subs) == 4 and all(t["status"] == "SUCCESS" for t in subs)
    # a peon logs its task directory, which is under its worker's local directory (worker-0, worker-1)
    where = {re.search(r"in \S*/(worker-\d)/", svc.http.get(f"{API}/task/{t['id']}/log").text).group(1)  # type: ignore[union-attr]
             for t in subs}  # fmt: skip
    assert where == {"worker-0", "worker-1"}, where
    assert len(read_rows(segments(svc, "dask_par"))) == 96


def test_worker_killed_mid_task_fails_its_tasks_naming_it(tmp_path: Path) -> None:
    require_distributed()
    cluster = DaskCluster(tmp_path / "dask", workers=2, slots=2).start()
    svc = ServiceProcess(data_dir=tmp_path / "var", extra_env=dask_env(cluster)).start()
    try:
        wait_until(lambda: len(svc.http.get(f"{API}/workers").json()) == 2, timeout=30)
        ids = [svc.submit({"type": "noop", "runTime": 8000}) for _ in range(4)]
        wait_until(lambda: sum(len(w["runningTasks"]) for w in workers_by_host(svc).values()) == 4, timeout=30)
        victim_host = sorted(workers_by_host(svc))[0]
        victims = workers_by_host(svc)[victim_host]["runningTasks"]
        pids = [p for t in victims for p in wait_until(lambda t=t: cluster.peon_pids(t), timeout=20)]
        index = cluster.worker_index(f"tcp://{victim_host}")
        killed_at = time.monotonic()
        cluster.kill_worker(index)
        for task_id in victims:
            status = svc.wait_for(task_id, timeout=20)
            assert status["status"] == "FAILED" and victim_host in status["errorMsg"], status
        assert time.monotonic() - killed_at < 10
        for pid in pids:  # no orphan peon goes on working
            wait_exited(pid, 5)
        for task_id in set(ids) - set(victims):
            assert svc.wait_for(task_id, timeout=30)["status"] == "SUCCESS"
        assert not [p for t in victims for p in cluster.peon_pids(t)]  # Dask did not run them again elsewhere
        assert victim_host not in workers_by_host(svc)
    finally:
        svc.stop()
        cluster.stop()


def test_overlord_kill9_and_restart_adopts_the_running_peon(cluster: DaskCluster, tmp_path: Path) -> None:
    env = dask_env(cluster)
    first = ServiceProcess(data_dir=tmp_path / "var", extra_env=env).start()
    wait_until(lambda: first.http.get(f"{API}/workers").json(), timeout=30)
    task_id = first.submit({"type": "noop", "runTime": 6000})
    first.wait_for(task_id, timeout=30, states=("RUNNING",))
    (pid,) = wait_until(lambda: cluster.peon_pids(task_id), timeout=30)
    first.kill9()
    second = ServiceProcess(data_dir=tmp_path / "var", port=first.port, extra_env=env).start()
    try:
        assert second.http.get(f"{API}/task/{task_id}/status").json()["status"]["statusCode"] == "RUNNING"
        assert second.wait_for(task_id, timeout=60)["status"] == "SUCCESS"
        wait_exited(pid, 10)
        log = second.http.get(f"{API}/task/{task_id}/log").text
        assert log.count(f"Running task[{task_id}]") == 1, log  # adopted, not run again
    finally:
        second.stop()


def test_scheduler_down_at_start_then_up(tmp_path: Path) -> None:
    require_distributed()
    cluster = DaskCluster(tmp_path / "dask", workers=1, slots=2)
    svc = ServiceProcess(data_dir=tmp_path / "var", extra_env=dask_env(cluster)).start()
    try:
        task_id = svc.submit({"type": "noop", "runTime": 0})
        time.sleep(1)
        assert svc.http.get(f"{API}/task/{task_id}/status").json()["status"]["runnerStatusCode"] == "PENDING"
        assert svc.http.get(f"{API}/workers").json() == []
        assert wait_until(lambda: f"Dask scheduler {cluster.address} is unreachable" in svc.log_file.read_text())
        assert svc.http.get("/status/health").json() is True  # alive: the API serves
        not_ready = svc.http.get("/status/ready")
        assert not_ready.status_code == 503 and cluster.address in not_ready.json()["reason"], not_ready.text
        cluster.start()
        assert svc.wait_for(task_id, timeout=60)["status"] == "SUCCESS"
        assert len(svc.http.get(f"{API}/workers").json()) == 1
        assert wait_until(lambda: svc.http.get("/status/ready").json() == {"ready": True})
    finally:
        svc.stop()
        cluster.stop()


def test_scheduler_lost_while_running_then_back(tmp_path: Path) -> None:
    """Tasks submitted while the scheduler is away stay PENDING and run when it is back; a task that was
    running stays RUNNING while nothing can be known, then ends FAILED naming its worker (a Dask worker
    closes when it loses its scheduler, and its peon dies with it)."""
    require_distributed()
    cluster = DaskCluster(tmp_path / "dask", workers=1, slots=2).start()
    svc = ServiceProcess(data_dir=tmp_path / "var", extra_env=dask_env(cluster)).start()
    try:
        wait_until(lambda: svc.http.get(f"{API}/workers").json(), timeout=30)
        [worker] = cluster.scheduler_info()["workers"]
        long = svc.submit({"type": "noop", "runTime": 600_000})
        wait_until(lambda: workers_by_host(svc)[worker.split("://")[1]]["runningTasks"] == [long], timeout=30)
        cluster.stop_scheduler()
        wait_until(lambda: svc.http.get(f"{API}/workers").json() == [], timeout=30)
        task_id = svc.submit({"type": "noop", "runTime": 0})
        time.sleep(1)
        assert svc.http.get(f"{API}/task/{task_id}/status").json()["status"]["runnerStatusCode"] == "PENDING"
        assert svc.http.get(f"{API}/task/{long}/status").json()["status"]["status"] == "RUNNING"  # nobody knows yet
        cluster.start_scheduler()
        status = svc.wait_for(long, timeout=60)  # its worker closed when it lost the scheduler
        assert status["status"] == "FAILED" and worker.split("://")[1] in status["errorMsg"], status
        cluster.start_worker()  # what a supervisor (systemd, dask-jobqueue, Kubernetes) does
        assert svc.wait_for(task_id, timeout=90)["status"] == "SUCCESS"
    finally:
        svc.stop()
        cluster.stop()


def test_a_worker_without_slots_is_reported_and_takes_no_task(svc: ServiceProcess, cluster: DaskCluster) -> None:
    proc = cluster.start_worker(resources="")
    try:
        cluster.wait_for_workers(3)
        bad = wait_until(lambda: [w for w in svc.http.get(f"{API}/workers").json() if "unusableBecause" in w],
                         timeout=30)  # fmt: skip
        assert bad[0]["worker"]["capacity"] == 0 and "slots" in bad[0]["unusableBecause"]
        assert "is not usable" in svc.log_file.read_text()
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
        cluster.worker_procs.remove(proc)


def test_a_worker_without_the_package_is_reported_and_takes_no_task(
    svc: ServiceProcess, cluster: DaskCluster, tmp_path: Path
) -> None:
    stub = tmp_path / "stub" / "overlord"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("overlord is not installed on this worker")\n')
    cluster.env["PYTHONPATH"] = str(stub.parent)
    try:
        proc = cluster.start_worker()
    finally:
        del cluster.env["PYTHONPATH"]
    try:
        cluster.wait_for_workers(3)
        bad = wait_until(lambda: [w for w in svc.http.get(f"{API}/workers").json() if "unusableBecause" in w],
                         timeout=30)  # fmt: skip
        assert bad[0]["worker"]["capacity"] == 0 and "overlord" in bad[0]["unusableBecause"], bad
        ids = [svc.submit({"type": "noop", "runTime": 0}) for _ in range(6)]
        assert all(svc.wait_for(t, timeout=60)["status"] == "SUCCESS" for t in ids)  # none went to that worker
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
        cluster.worker_procs.remove(proc)
