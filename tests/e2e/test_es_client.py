"""The official ``elasticsearch`` Python client, unmodified, against a real service."""

from __future__ import annotations  # noqa: I001

import time
import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from tests.conftest import ServiceProcess

pytestmark = pytest.mark.filterwarnings("ignore::elasticsearch.exceptions.GeneralAvailabilityWarning")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(data_dir=tmp_path_factory.mktemp("esc") / "var", capacity=3).start()
    yield proc
    proc.stop()


@pytest.fixture
def es(svc: ServiceProcess) -> Iterator[Elasticsearch]:
    client = Elasticsearch(svc.url, max_retries=0, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def tag(svc: ServiceProcess, es: Elasticsearch) -> Iterator[str]:
    value = f"c-{uuid.uuid4().hex[:10]}"
    yield value
    es.perform_request("POST", "/_tasks/_cancel", params={"x_opaque_id": value, "wait_for_completion": "true"})


def submit(svc: ServiceProcess, tag: str, run_ms: int = 30_000, **spec: object) -> str:
    return svc.submit({"type": "noop", "runTime": run_ms, **spec}, headers={"X-Opaque-Id": tag})


def test_connects_and_reads_cluster_info(es):
    assert es.ping()
    info = es.info()
    assert info["version"]["number"].startswith("9.") and info["tagline"] == "You Know, for Search"


def test_list_get_and_cancel_a_parent_with_children(svc, es, tag):
    parent = submit(svc, tag)
    children = [submit(svc, tag, groupId=parent) for _ in range(2)]
    for task_id in (parent, *children):
        svc.wait_for(task_id, states=("RUNNING",))
    listed = es.tasks.list(actions="*noop*", group_by="parents", detailed=True)
    (pid,) = [k for k, t in listed["tasks"].items() if t["headers"].get("X-Opaque-Id") == tag]
    assert len(listed["tasks"][pid]["children"]) == 2
    assert listed["tasks"][pid]["description"].startswith(f"task[{parent}]")
    kids = es.tasks.list(parent_task_id=pid, group_by="none")["tasks"]
    assert {k["parent_task_id"] for k in kids} == {pid}
    got = es.tasks.get(task_id=pid)
    assert got["completed"] is False and got["task"]["cancellable"] is True
    cancelled = es.tasks.cancel(task_id=pid, wait_for_completion=True)
    node = pid.split(":")[0]
    assert cancelled["nodes"][node]["tasks"][pid]["cancelled"] is True
    done = es.tasks.get(task_id=pid)
    assert done["completed"] is True and done["error"]["type"] == "task_cancelled_exception"
    for task_id in children:
        assert svc.wait_for(task_id)["statusCode"] == "FAILED"
    assert es.tasks.list(parent_task_id=pid)["nodes"] == {}


def test_wait_for_completion_through_the_client(svc, es, tag):
    task_id = submit(svc, tag, run_ms=600)
    svc.wait_for(task_id, states=("RUNNING",))
    listed = es.tasks.list(actions="indexer:*", detailed=True, group_by="none")["tasks"]
    (mine,) = [t for t in listed if f"task[{task_id}]" in t["description"]]
    started = time.monotonic()
    done = es.tasks.get(task_id=f"{mine['node']}:{mine['id']}", wait_for_completion=True, timeout="20s")
    assert done["completed"] is True and done["response"]["status"]["statusCode"] == "SUCCESS"
    assert time.monotonic() - started < 15


def test_cancel_by_actions_and_cat_tasks(svc, es, tag):
    ids = [submit(svc, tag) for _ in range(2)]
    for task_id in ids:
        svc.wait_for(task_id, states=("RUNNING",))
    text = es.cat.tasks(v=True, actions=["*noop*"])
    assert text.body.splitlines()[0].split()[:2] == ["action", "task_id"]
    rows = es.cat.tasks(format="json", h=["ti", "x_opaque_id"], detailed=True)
    assert sum(1 for r in rows if r["x_opaque_id"] == tag) == 2
    node = es.info()["cluster_uuid"]
    resp = es.options(opaque_id=tag).tasks.cancel(nodes=[node], actions=["*noop*"], wait_for_completion=True)
    assert resp.meta.headers["x-opaque-id"] == tag
    assert len(resp["nodes"][node]["tasks"]) >= 2
    for task_id in ids:
        assert svc.wait_for(task_id)["statusCode"] == "FAILED"


def test_errors_map_to_client_exceptions(es):
    node = es.info()["cluster_uuid"]
    with pytest.raises(NotFoundError) as nf:
        es.tasks.get(task_id=f"{node}:999")
    assert nf.value.error == "resource_not_found_exception"
    with pytest.raises(BadRequestError) as bad:
        es.tasks.list(group_by="bogus")  # type: ignore[arg-type]
    assert bad.value.body["error"]["reason"] == "[group_by] must be one of [nodes], [parents] or [none] but was [bogus]"
    with pytest.raises(BadRequestError):
        es.tasks.get(task_id="not-an-id")
    missing = es.tasks.cancel(task_id=f"{node}:999")
    assert missing["node_failures"][0]["caused_by"]["reason"] == f"task [{node}:999] is missing"
