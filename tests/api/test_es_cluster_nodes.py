"""Cluster workers as Elasticsearch nodes, in process: a runner that reports two cluster workers (as the Dask
runner does) and places tasks where the test says. The e2e twin on a real Dask cluster is
tests/e2e/test_dask_cluster_views.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from overlord.api.app import create_app
from overlord.api.elasticsearch.state import split_address, worker_node_id
from overlord.config import load_settings
from overlord.core.protocols import WorkerInfo
from overlord.service import Service
from overlord.testing.runner import InMemoryTaskRunner

pytestmark = pytest.mark.anyio

API = "/druid/indexer/v1"
A, B = "tcp://10.0.0.5:38001", "tcp://[fd00::7]:38002"


class ClusterRunner(InMemoryTaskRunner):
    """The in-memory runner, reporting cluster workers; ``placement`` (task id -> worker address) is the test's."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.placement: dict[str, str] = {}
        self.addresses = [A, B]

    def workers(self) -> list[WorkerInfo]:
        return [self._worker(i, address) for i, address in enumerate(self.addresses)]

    def _worker(self, i: int, address: str) -> WorkerInfo:
        running = sorted(t for t, a in self.placement.items() if a == address and t in self.running)
        problem = None if address == A else "no [slots] resource"
        capacity = 2 if problem is None else 0
        return WorkerInfo(address.split("://")[1], capacity, running, problem=problem, address=address,
                          name=f"worker-{i}")  # fmt: skip


@contextlib.asynccontextmanager
async def cluster_service(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ClusterRunner]]:
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path / "var", "worker_capacity": 2,
                                                    "start_dir": tmp_path})  # fmt: skip
    runners: list[ClusterRunner] = []

    def make_runner(svc: Service) -> ClusterRunner:
        runners.append(ClusterRunner(2, on_exit=lambda e: svc.queue.on_runner_exit(e)))
        return runners[0]

    app = create_app(Service(settings, runner_factory=make_runner))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://overlord.test") as http:
            yield http, runners[0]


async def submit(http: httpx.AsyncClient) -> str:
    r = await http.post(f"{API}/task", json={"type": "noop"})
    assert r.status_code == 200, r.text
    return str(r.json()["task"])


async def es_id_of(http: httpx.AsyncClient, task_id: str) -> str:
    listed = (await http.get("/_tasks", params={"detailed": "true", "group_by": "none"})).json()["tasks"]
    (task,) = [t for t in listed if t.get("description", "").startswith(f"task[{task_id}]")]
    return f"{task['node']}:{task['id']}"


async def test_tasks_are_grouped_under_their_worker_and_keep_their_id(tmp_path: Path) -> None:
    async with cluster_service(tmp_path) as (http, runner):
        on_a, waiting, queued = await submit(http), await submit(http), await submit(http)
        runner.placement[on_a] = A  # ``waiting``: launched, not placed by the scheduler yet
        handed_out = await es_id_of(http, on_a)
        overlord, number = handed_out.split(":")
        nodes = (await http.get("/_tasks", params={"actions": "*noop*"})).json()["nodes"]
        a_id = worker_node_id(A)
        assert set(nodes) == {overlord, a_id}, nodes  # B runs nothing: it is not in a listing grouped by node
        assert {k: v for k, v in nodes[a_id].items() if k != "tasks"} == {
            "name": "worker-0", "transport_address": "10.0.0.5:38001", "host": "10.0.0.5", "ip": "10.0.0.5:38001",
            "roles": ["ingest"], "attributes": {"slots": "2", "used_slots": "1"},
        }  # fmt: skip
        assert list(nodes[a_id]["tasks"]) == [handed_out] and nodes[a_id]["tasks"][handed_out]["node"] == overlord
        assert len(nodes[overlord]["tasks"]) == 2  # the one not placed yet and the queued one
        assert await es_id_of(http, waiting) in nodes[overlord]["tasks"]
        assert await es_id_of(http, queued) in nodes[overlord]["tasks"]

        # a worker's node id names the same task; after the worker left too (this Overlord listed it)
        assert (await http.get(f"/_tasks/{a_id}:{number}")).json()["task"]["id"] == int(number)
        runner.addresses = [B]
        nodes = (await http.get("/_tasks", params={"actions": "*noop*"})).json()["nodes"]
        assert list(nodes) == [overlord] and handed_out in nodes[overlord]["tasks"], nodes
        assert (await http.get(f"/_tasks/{a_id}:{number}")).status_code == 200
        gone = await http.get(f"/_tasks/{worker_node_id('tcp://10.9.9.9:1')}:{number}")
        assert gone.status_code == 404 and "isn't part of the cluster" in gone.json()["error"]["reason"], gone.text
        stranger = await http.post(f"/_tasks/nosuchnode:{number}/_cancel")
        assert stranger.json()["node_failures"][0]["caused_by"]["type"] == "no_such_node_exception"

        # cancelling by the worker's id stops the task
        runner.addresses = [A, B]
        cancelled = (await http.post(f"/_tasks/{a_id}:{number}/_cancel")).json()
        assert list(cancelled["nodes"]) == [a_id] and handed_out in cancelled["nodes"][a_id]["tasks"], cancelled
        assert on_a in runner.shutdowns


async def test_node_selection_and_nodes_info(tmp_path: Path) -> None:
    async with cluster_service(tmp_path) as (http, runner):
        on_a, queued = await submit(http), await submit(http)
        runner.placement[on_a] = A
        a_id, b_id = worker_node_id(A), worker_node_id(B)
        overlord = (await es_id_of(http, queued)).split(":")[0]

        async def node_ids(spec: str) -> set[str]:
            return set((await http.get("/_tasks", params={"nodes": spec, "actions": "*noop*"})).json()["nodes"])

        assert await node_ids(a_id) == {a_id}
        assert await node_ids("worker-*") == {a_id}
        assert await node_ids("10.0.0.5") == {a_id}
        assert await node_ids("_local") == await node_ids("_master") == {overlord}
        assert await node_ids("_all") == {overlord, a_id}
        rows = (await http.get("/_cat/tasks", params={"format": "json", "h": "ti,ni,i,po,n", "full_id": "true",
                                                      "actions": "*noop*"})).json()  # fmt: skip
        es_id = await es_id_of(http, on_a)
        (row,) = [r for r in rows if r["ti"] == es_id]
        assert row == {"ti": row["ti"], "ni": a_id, "i": "10.0.0.5", "po": "38001", "n": "worker-0"}, rows

        info = (await http.get("/_nodes")).json()
        assert info["_nodes"] == {"total": 3, "successful": 3, "failed": 0} and info["cluster_name"] == "overlord"
        assert list(info["nodes"]) == [overlord, a_id, b_id]
        b = info["nodes"][b_id]
        assert (b["host"], b["ip"], b["transport_address"]) == ("fd00::7", "fd00::7", "fd00::7:38002"), b
        assert b["attributes"] == {"slots": "0", "used_slots": "0", "unusable_because": "no [slots] resource"}
        assert set((await http.get(f"/_nodes/{b_id}")).json()["nodes"]) == {b_id}
        assert set((await http.get("/_nodes/_local")).json()["nodes"]) == {overlord}
        assert len((await http.get("/_nodes/_all/os")).json()["nodes"]) == 3
        assert (await http.get("/_nodes/_all/os")).json()["nodes"] == (await http.get("/_nodes/jvm")).json()["nodes"]
        bad = await http.get("/_nodes", params={"bogus": "1"})
        assert bad.status_code == 400 and "bogus" in bad.json()["error"]["reason"]


def test_worker_addresses_split_into_host_and_port() -> None:
    assert split_address("tcp://10.0.0.5:38001") == ("10.0.0.5", 38001)
    assert split_address("tls://[fd00::7]:38002") == ("fd00::7", 38002)
    assert split_address("inproc://10.0.0.5/123/1") == ("10.0.0.5/123/1", 0)
    assert split_address("ucx://host-a:7") == ("host-a", 7)
    assert worker_node_id("tcp://10.0.0.5:38001") == worker_node_id("tcp://10.0.0.5:38001") != worker_node_id(B)
    assert len(worker_node_id(A)) == 22
