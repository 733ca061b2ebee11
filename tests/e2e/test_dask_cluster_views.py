"""The cluster as the APIs show it on the Dask runner: Elasticsearch nodes (the task list grouped by node,
``_cat/tasks``, ``GET /_nodes``) list each Dask worker with the tasks it runs, and a running task's Druid
location is its worker's. A real ``overlord start``, a scheduler and 2 workers (2 slots each) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch
from ingest_helpers import API, wait_until
from tests.conftest import ServiceProcess
from tests.dask_cluster import DaskCluster, running_cluster

pytestmark = pytest.mark.filterwarnings("ignore::elasticsearch.exceptions.GeneralAvailabilityWarning")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with running_cluster(tmp_path_factory.mktemp("dask"), workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def svc(cluster: DaskCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        "druid_indexer_runner_type": "dask",
        "overlord_runner_dask_scheduler": cluster.address,
        "druid_indexer_runner_taskShutdownLinkTimeout": "PT3S",
    }
    service = ServiceProcess(data_dir=tmp_path_factory.mktemp("views") / "var", extra_env=env).start()
    wait_until(lambda: len(service.http.get(f"{API}/workers").json()) == 2, timeout=30)
    yield service
    service.stop()


@pytest.fixture
def es(svc: ServiceProcess) -> Iterator[Elasticsearch]:
    client = Elasticsearch(svc.url, max_retries=0, request_timeout=30)
    yield client
    client.close()


def running_by_worker(svc: ServiceProcess) -> dict[str, list[str]]:
    """Worker address (``tcp://ip:port``) -> the tasks ``GET /workers`` says it runs."""
    return {f"tcp://{w['worker']['host']}": w["runningTasks"] for w in svc.http.get(f"{API}/workers").json()}


def all_placed(svc: ServiceProcess, count: int) -> dict[str, list[str]] | None:
    running = running_by_worker(svc)
    return running if sum(map(len, running.values())) == count else None


def placed_location(svc: ServiceProcess, task_id: str) -> dict | None:
    """The task's location once it names its worker (no port), else None."""
    location = svc.http.get(f"{API}/task/{task_id}/status").json()["status"]["location"]
    return location if location["port"] == -1 else None


def es_ids(svc: ServiceProcess) -> dict[str, str]:
    """Druid task id -> Elasticsearch task id, from a flat detailed listing."""
    tasks = svc.http.get("/_tasks", params={"detailed": "true", "group_by": "none", "actions": "*noop*"}).json()
    return {t["description"].split("]")[0].removeprefix("task["): f"{t['node']}:{t['id']}" for t in tasks["tasks"]}


def test_workers_are_nodes_with_their_tasks_and_ids_stay_the_same(
    svc: ServiceProcess, cluster: DaskCluster, es: Elasticsearch
) -> None:
    first = svc.submit({"type": "noop", "runTime": 120_000})
    handed_out = es_ids(svc)[first]  # what a caller got back while the task may still be pending
    ids = [first, *(svc.submit({"type": "noop", "runTime": 120_000}) for _ in range(3))]
    queued = svc.submit({"type": "noop", "runTime": 0})  # 4 slots, all taken: this one stays PENDING
    try:
        placed = wait_until(lambda: all_placed(svc, 4), 30)
        overlord = handed_out.split(":")[0]
        names = {a: str(w["name"]) for a, w in cluster.scheduler_info()["workers"].items()}
        # the Druid location of a running task is its worker's host, with no port: the peon serves nothing
        for address, tasks in placed.items():
            for task_id in tasks:
                loc = wait_until(lambda t=task_id: placed_location(svc, t), 10)
                assert loc == {"host": "127.0.0.1", "port": -1, "tlsPort": -1}, (address, loc)
        running = {t["id"]: t["location"] for t in svc.http.get(f"{API}/runningTasks").json()}
        assert set(running) == set(ids) and all(loc["port"] == -1 for loc in running.values()), running
        pending = svc.http.get(f"{API}/task/{queued}/status").json()["status"]
        assert pending["runnerStatusCode"] == "PENDING" and pending["location"]["host"] is None, pending

        listed = es.tasks.list(detailed=True, group_by="nodes")["nodes"]
        assert len(listed) == 3, listed  # this Overlord (the pending task, the listing itself) and both workers
        by_node = {node_id: node for node_id, node in listed.items() if node_id != overlord}
        for node in by_node.values():
            address = "tcp://" + node["transport_address"]
            assert node["name"] == names[address] and node["host"] == "127.0.0.1", node
            assert node["ip"] == node["transport_address"] and node["roles"] == ["ingest"], node
            assert node["attributes"] == {"slots": "2", "used_slots": "2"}, node
            on_it = {t["description"].split("]")[0].removeprefix("task["): (key, t) for key, t in node["tasks"].items()}
            assert sorted(on_it) == sorted(placed[address]), (node, placed)
            for key, task in on_it.values():  # the id keeps this Overlord's node: it is an identifier, not a place
                assert key.startswith(f"{overlord}:") and task["node"] == overlord, task
                assert task["status"]["location"] == {"host": "127.0.0.1", "port": -1, "tls_port": -1}, task
        here = listed[overlord]
        assert any(t["description"].startswith(f"task[{queued}]") for t in here["tasks"].values()), here
        assert "attributes" not in here and here["roles"] == ["ingest", "master"], here
        assert es_ids(svc)[first] == handed_out

        worker_id, worker = next(iter(by_node.items()))
        # selecting nodes: a worker's id selects what it runs; _local selects this Overlord (queued tasks)
        only = svc.http.get("/_tasks", params={"nodes": worker_id, "actions": "*noop*"}).json()["nodes"]
        assert list(only) == [worker_id] and len(only[worker_id]["tasks"]) == 2, only
        local = svc.http.get("/_tasks", params={"nodes": "_local", "actions": "*noop*"}).json()["nodes"]
        assert list(local) == [overlord] and len(local[overlord]["tasks"]) == 1, local

        # _cat/tasks names the node where each task runs
        rows = svc.http.get("/_cat/tasks", params={"format": "json", "h": "ti,n,po,ni", "full_id": "true",
                                                    "detailed": "true", "actions": "*noop*"}).json()  # fmt: skip
        nodes_of = {r["ti"]: (r["n"], r["po"], r["ni"]) for r in rows}
        worker_port = worker["transport_address"].rsplit(":", 1)[1]
        for key in worker["tasks"]:
            assert nodes_of[key] == (worker["name"], worker_port, worker_id), rows

        # GET /_nodes lists every node, through the official client too
        info = es.nodes.info()
        assert info["_nodes"]["total"] == 3 and set(info["nodes"]) == set(listed), info
        assert info["nodes"][worker_id]["ip"] == "127.0.0.1" and info["nodes"][worker_id]["attributes"]["slots"] == "2"
        assert set(es.nodes.info(node_id="_local")["nodes"]) == {overlord}

        # the id handed out resolves for the task's whole life, and so does one put together from its worker
        key = next(iter(worker["tasks"]))
        number = key.split(":")[1]
        assert es.tasks.get(task_id=key)["completed"] is False
        assert es.tasks.get(task_id=f"{worker_id}:{number}")["task"]["id"] == int(number)
        cancelled = es.tasks.cancel(task_id=f"{worker_id}:{number}", wait_for_completion=True)
        assert not cancelled.get("node_failures"), cancelled
        done = es.tasks.get(task_id=key)
        assert done["completed"] is True and done["error"]["type"] == "task_cancelled_exception", done
        assert es.tasks.get(task_id=handed_out)["task"]["id"] == int(handed_out.split(":")[1])
    finally:
        svc.http.post("/_tasks/_cancel", params={"actions": "*noop*", "wait_for_completion": "true"}, timeout=60)
    assert svc.wait_for(queued, timeout=30)["status"] in ("SUCCESS", "FAILED")


def test_a_finished_task_keeps_its_workers_host(svc: ServiceProcess) -> None:
    task_id = svc.submit({"type": "noop", "runTime": 3000})
    svc.wait_for(task_id, timeout=30, states=("RUNNING",))
    assert svc.wait_for(task_id, timeout=30)["status"] == "SUCCESS"
    status = svc.http.get(f"{API}/task/{task_id}/status").json()["status"]
    assert status["location"] == {"host": "127.0.0.1", "port": -1, "tlsPort": -1}, status
