"""Elasticsearch's Task Management API over HTTP against a real service: every parameter and error.

One service is shared by the module (starting one costs more than most tests); each test tags its
tasks with its own X-Opaque-Id and cancels them when done, so tests stay independent.
"""

from __future__ import annotations  # noqa: I001

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ServiceProcess

API = "/druid/indexer/v1"
TASKINFO_ORDER = [
    "node", "id", "type", "action", "status", "description", "start_time_in_millis",
    "running_time_in_nanos", "cancellable", "cancelled", "parent_task_id", "headers",
]  # fmt: skip


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(data_dir=tmp_path_factory.mktemp("es") / "var", capacity=3).start()
    yield proc
    proc.stop()


@pytest.fixture
def tag(svc: ServiceProcess) -> Iterator[str]:
    """A unique X-Opaque-Id for this test's tasks; they are all cancelled afterwards."""
    value = f"t-{uuid.uuid4().hex[:10]}"
    yield value
    svc.http.post(f"/_tasks/_cancel?x_opaque_id={value}&wait_for_completion", timeout=60)


def submit(svc: ServiceProcess, tag: str, run_ms: int = 30_000, **spec: object) -> str:
    return svc.submit({"type": "noop", "runTime": run_ms, **spec}, headers={"X-Opaque-Id": tag})


def node_id(svc: ServiceProcess) -> str:
    return str(svc.http.get("/").json()["cluster_uuid"])


def es_id(svc: ServiceProcess, druid_id: str) -> str:
    """The ES id of a Druid task, found through the detailed description (which names the Druid id)."""
    body = svc.http.get("/_tasks?detailed&group_by=none&actions=indexer:*").json()
    for t in body["tasks"]:
        if f"task[{druid_id}]" in t["description"]:
            return f"{t['node']}:{t['id']}"
    raise AssertionError(f"{druid_id} not listed")


def mine(svc: ServiceProcess, tag: str, extra: str = "") -> list[dict]:
    return svc.http.get(f"/_tasks?group_by=none&x_opaque_id={tag}{extra}").json()["tasks"]


def wait_running(svc: ServiceProcess, *ids: str) -> None:
    for task_id in ids:
        svc.wait_for(task_id, states=("RUNNING",))


def assert_es_error(r, status: int, type_: str, reason: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error", "status"] and body["status"] == status
    err = body["error"]
    assert err["type"] == type_ and err["root_cause"][0]["type"] == type_
    if reason is not None:
        assert err["reason"] == reason and err["root_cause"][0]["reason"] == reason
    return err


# -- listing --------------------------------------------------------------------------------------


def test_list_groups_by_node_with_taskinfo_in_es_order(svc, tag):
    task_id = submit(svc, tag)
    wait_running(svc, task_id)
    r = svc.http.get("/_tasks?detailed", headers={"X-Opaque-Id": "lister"})
    assert r.status_code == 200 and r.headers["x-opaque-id"] == "lister"
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    nodes = r.json()["nodes"]
    (nid, node), *_ = nodes.items()
    assert nid == node_id(svc) and len(nid) == 22
    assert list(node) == ["name", "transport_address", "host", "ip", "roles", "tasks"]
    assert node["transport_address"] == node["ip"] == f"127.0.0.1:{svc.port}"
    tasks = node["tasks"]
    ours = next(t for t in tasks.values() if f"task[{task_id}]" in t.get("description", ""))
    assert list(ours) == [k for k in TASKINFO_ORDER if k != "parent_task_id"]
    assert ours["type"] == "persistent" and ours["action"] == "indexer:admin/noop"
    assert ours["cancellable"] is True and ours["cancelled"] is False
    assert ours["headers"] == {"X-Opaque-Id": tag}
    assert ours["status"]["runner_status_code"] == "RUNNING" and ours["status"]["status_code"] == "RUNNING"
    assert ours["running_time_in_nanos"] > 0 and ours["start_time_in_millis"] <= time.time() * 1000
    assert f"{nid}:{ours['id']}" in tasks
    lister = [t for t in tasks.values() if t["action"] == "cluster:monitor/tasks/lists"]
    assert lister and lister[0]["headers"] == {"X-Opaque-Id": "lister"} and lister[0]["cancellable"] is False
    assert "cancelled" not in lister[0]
    plain = svc.http.get("/_tasks").json()["nodes"][nid]["tasks"][f"{nid}:{ours['id']}"]
    assert "description" not in plain and "status" not in plain


def test_group_by_parents_none_and_parent_filter(svc, tag):
    parent = submit(svc, tag)
    children = [submit(svc, tag, groupId=parent) for _ in range(2)]
    wait_running(svc, parent, *children)
    pid = es_id(svc, parent)
    tree = svc.http.get(f"/_tasks?group_by=parents&x_opaque_id={tag}").json()["tasks"]
    assert list(tree) == [pid]
    kids = tree[pid]["children"]
    assert len(kids) == 2 and all(k["parent_task_id"] == pid for k in kids)
    assert all(k["headers"] == {"X-Opaque-Id": tag} for k in kids)
    assert "children" not in kids[0]
    flat = svc.http.get(f"/_tasks?group_by=none&parent_task_id={pid}").json()["tasks"]
    assert sorted(t["id"] for t in flat) == sorted(k["id"] for k in kids)
    assert list(flat[0]) == [k for k in TASKINFO_ORDER if k not in ("status", "description")]
    orphans = svc.http.get(f"/_tasks?group_by=parents&parent_task_id={pid}").json()["tasks"]
    assert len(orphans) == 2  # children whose parent is not in the result are listed at the top
    nothing = svc.http.get(f"/_tasks?parent_task_id={pid.split(':')[0]}:1")
    assert nothing.status_code == 200 and nothing.json() == {"nodes": {}}
    cat = svc.http.get(f"/_cat/tasks?parent_task_id={pid}&h=pti").text.split()
    assert cat == [pid, pid]


def test_actions_and_nodes_filters(svc, tag):
    wait_running(svc, submit(svc, tag))
    nid = node_id(svc)
    name = svc.http.get("/").json()["name"]

    def actions(query: str) -> set[str]:
        body = svc.http.get(f"/_tasks?group_by=none&{query}").json()
        return {t["action"] for t in body["tasks"]}

    assert actions("actions=*noop*") == {"indexer:admin/noop"}
    assert actions("actions=indexer:*,cluster:monitor/tasks/lists") == {
        "indexer:admin/noop",
        "cluster:monitor/tasks/lists",
    }
    assert actions("actions=cluster:*") == {"cluster:monitor/tasks/lists"}
    assert actions("actions=*search") == set()
    for spec in ("_local", "_all", "_master", nid, nid[:5] + "*", name, "master:true", "127.0.0.1"):
        assert "indexer:admin/noop" in actions(f"nodes={spec}"), spec
    for spec in ("someone-else", "zz*", "_all,master:false", "data:true"):
        assert svc.http.get(f"/_tasks?nodes={spec}").json() == {"nodes": {}}, spec


def test_waiting_tasks_belong_to_this_node_and_page_with_size_and_cursor(svc, tag):
    ids = [submit(svc, tag) for _ in range(4)]  # capacity 3 (minus other tests' leftovers): some wait
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [t["status"]["runner_status_code"] for t in mine(svc, tag, "&detailed")]
        if states.count("RUNNING") == 3:
            break
        time.sleep(0.02)
    assert sorted(states) == ["PENDING", "RUNNING", "RUNNING", "RUNNING"]
    first = svc.http.get(f"/_tasks?x_opaque_id={tag}&size=3&group_by=none").json()
    assert len(first["tasks"]) == 3 and "next_cursor" in first
    rest = svc.http.get(f"/_tasks?x_opaque_id={tag}&size=3&group_by=none&cursor={first['next_cursor']}").json()
    assert len(rest["tasks"]) == 1 and "next_cursor" not in rest
    listed = {t["id"] for t in first["tasks"] + rest["tasks"]}
    assert listed == {int(es_id(svc, i).split(":")[1]) for i in ids}


def test_list_wait_for_completion_and_its_timeout(svc, tag):
    quick = submit(svc, tag, run_ms=800)
    started = time.monotonic()
    r = svc.http.get(f"/_tasks?x_opaque_id={tag}&wait_for_completion&timeout=20s")
    assert r.status_code == 200
    assert svc.http.get(f"{API}/task/{quick}/status").json()["status"]["statusCode"] == "SUCCESS"
    assert time.monotonic() - started < 15
    submit(svc, tag)
    r = svc.http.get(f"/_tasks?x_opaque_id={tag}&wait_for_completion=true&timeout=150ms")
    body = r.json()
    assert r.status_code == 200 and body["nodes"] == {}
    failure = body["node_failures"][0]
    assert failure["type"] == "failed_node_exception" and failure["caused_by"]["type"] == "timeout_exception"


# -- get ------------------------------------------------------------------------------------------


def test_get_running_finished_failed_and_unknown(svc, tag):
    running = submit(svc, tag)
    ok = submit(svc, tag, run_ms=0)
    bad = submit(svc, tag, run_ms=0, fail="boom")
    wait_running(svc, running)
    svc.wait_for(ok)
    svc.wait_for(bad)
    rid = es_id(svc, running)
    body = svc.http.get(f"/_tasks/{rid}").json()
    assert body["completed"] is False and list(body) == ["completed", "task"]
    assert body["task"]["description"].startswith(f"task[{running}]") and "status" in body["task"]
    nid = rid.split(":")[0]
    from overlord.core.task import task_number

    done = svc.http.get(f"/_tasks/{nid}:{task_number(ok)}").json()
    assert done["completed"] is True and done["response"]["status"]["statusCode"] == "SUCCESS"
    assert done["task"]["headers"] == {"X-Opaque-Id": tag}
    failed = svc.http.get(f"/_tasks/{nid}:{task_number(bad)}").json()
    assert failed["completed"] is True and "response" not in failed
    assert failed["error"]["type"] == "task_failed_exception" and failed["error"]["reason"] == "boom"
    assert_es_error(
        svc.http.get(f"/_tasks/{nid}:12345"),
        404,
        "resource_not_found_exception",
        f"task [{nid}:12345] isn't running and hasn't stored its results",
    )
    assert_es_error(svc.http.get("/_tasks/other:1"), 404, "resource_not_found_exception")
    assert_es_error(svc.http.get("/_tasks/nonsense"), 400, "illegal_argument_exception", "malformed task id nonsense")


def test_get_wait_for_completion_and_timeout_error(svc, tag):
    quick = submit(svc, tag, run_ms=700)
    wait_running(svc, quick)
    qid = es_id(svc, quick)
    body = svc.http.get(f"/_tasks/{qid}?wait_for_completion=true&timeout=20s").json()
    assert body["completed"] is True and body["response"]["status"]["statusCode"] == "SUCCESS"
    slow = submit(svc, tag)
    wait_running(svc, slow)
    r = svc.http.get(f"/_tasks/{es_id(svc, slow)}?wait_for_completion&timeout=100ms", headers={"X-Opaque-Id": "w"})
    assert_es_error(r, 429, "timeout_exception", "Timed out waiting for completion of task")
    assert r.headers["x-opaque-id"] == "w"


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_parent_propagates_to_children_and_waits(svc, tag):
    parent = submit(svc, tag)
    child = submit(svc, tag, groupId=parent)
    wait_running(svc, parent, child)
    pid = es_id(svc, parent)
    r = svc.http.post(f"/_tasks/{pid}/_cancel?wait_for_completion")
    assert r.status_code == 200
    tasks = r.json()["nodes"][pid.split(":")[0]]["tasks"]
    assert list(tasks) == [pid] and tasks[pid]["cancelled"] is True
    for task_id in (parent, child):
        status = svc.http.get(f"{API}/task/{task_id}/status").json()["status"]
        assert status["statusCode"] == "FAILED" and status["errorMsg"].startswith("Task was shut down")
    got = svc.http.get(f"/_tasks/{pid}").json()
    assert got["completed"] is True and got["error"]["type"] == "task_cancelled_exception"
    assert got["task"]["cancelled"] is True


def test_cancelled_shows_until_stopped(svc, tag):
    task_id = submit(svc, tag)
    wait_running(svc, task_id)
    tid = es_id(svc, task_id)
    assert svc.http.post(f"/_tasks/{tid}/_cancel").status_code == 200
    body = svc.http.get(f"/_tasks/{tid}").json()
    assert body["completed"] or body["task"]["cancelled"] is True
    svc.wait_for(task_id)


def test_cancel_by_selection_waiting_tasks_and_failures(svc, tag):
    ids = [submit(svc, tag) for _ in range(4)]
    wait_running(svc, ids[0])
    r = svc.http.post(f"/_tasks/_cancel?actions=*noop*&x_opaque_id={tag}&group_by=none")
    assert r.status_code == 200
    cancelled = r.json()["tasks"]
    assert len(cancelled) == 4 and all(t["cancelled"] for t in cancelled)
    for task_id in ids:
        assert svc.wait_for(task_id)["statusCode"] == "FAILED"
    nid = node_id(svc)
    assert svc.http.post(f"/_tasks/_cancel?x_opaque_id={tag}").json() == {"nodes": {}}
    assert svc.http.post("/_tasks/_cancel?nodes=elsewhere").json() == {"nodes": {}}
    missing = svc.http.post(f"/_tasks/{nid}:42/_cancel").json()
    assert missing["nodes"] == {}
    failure = missing["node_failures"][0]
    assert failure == {
        "type": "failed_node_exception",
        "reason": f"Failed node [{nid}]",
        "node_id": nid,
        "caused_by": {"type": "resource_not_found_exception", "reason": f"task [{nid}:42] is missing"},
    }
    other = svc.http.post("/_tasks/ghost:7/_cancel").json()
    assert other["node_failures"][0]["caused_by"]["type"] == "no_such_node_exception"
    assert_es_error(
        svc.http.post(f"/_tasks/{nid}:42/_cancel?nodes=_local"),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: task id cannot be used together with node ids;",
    )
    assert_es_error(svc.http.post("/_tasks/bad/_cancel"), 400, "illegal_argument_exception", "malformed task id bad")


# -- _cat/tasks -----------------------------------------------------------------------------------


def test_cat_tasks_text_json_headers_sorting_and_help(svc, tag):
    parent = submit(svc, tag)
    child = submit(svc, tag, groupId=parent)
    wait_running(svc, parent, child)
    q = f"x_opaque_id={tag}"
    text = svc.http.get(f"/_cat/tasks?{q}&v")
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert lines[0].split() == [
        "action", "task_id", "parent_task_id", "type", "start_time", "timestamp", "running_time", "ip", "node",
    ]  # fmt: skip
    pid = es_id(svc, parent)
    assert [ln.split()[1] for ln in lines[1:]] == [pid, es_id(svc, child)]  # parent first, then its child
    assert lines[1].split()[2] == "-" and lines[2].split()[2] == pid
    rows = svc.http.get(f"/_cat/tasks?{q}&format=json&h=id,ti,x_opaque_id,port,node_id,version&full_id").json()
    assert all(isinstance(v, str) for row in rows for v in row.values())
    assert (
        rows[0]["x_opaque_id"] == tag and rows[0]["port"] == str(svc.port) and rows[0]["node_id"] == pid.split(":")[0]
    )
    assert list(rows[0]) == ["id", "ti", "x_opaque_id", "port", "node_id", "version"]
    desc = svc.http.get(f"/_cat/tasks?{q}&format=json&h=ti&s=ti:desc").json()
    assert [r["ti"] for r in desc] == sorted((r["ti"] for r in desc), reverse=True)
    detailed = svc.http.get(f"/_cat/tasks?{q}&detailed&format=json").json()
    assert detailed[0]["description"].startswith(f"task[{parent}]")
    assert_es_error(
        svc.http.get("/_cat/tasks?s=nope"),
        400,
        "illegal_argument_exception",
        "Unable to sort by unknown sort key `nope`",
    )
    help_text = svc.http.get("/_cat/tasks?help").text
    assert help_text.splitlines()[0].split("|")[0].strip() == "id"
    assert svc.http.get(f"/_cat/tasks?{q}&h=ti&ts=false").text.split() == [pid, es_id(svc, child)]


# -- errors, headers, media types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/_tasks?group_by=x", "[group_by] must be one of [nodes], [parents] or [none] but was [x]"),
        ("/_tasks?parent_task_id=abc", "malformed task id abc"),
        ("/_tasks?timeout=10", "failed to parse setting [timeout] with value [10] as a time value: unit is missing "
         "or unrecognized"),
        ("/_tasks?detailed=yes", "Failed to parse value [yes] as only [true] or [false] are allowed."),
        ("/_tasks?detaild", "request [/_tasks] contains unrecognized parameter: [detaild] -> did you mean [detailed]?"),
        ("/_cat/tasks?v=2", "Failed to parse value [2] as only [true] or [false] are allowed."),
        ("/_tasks/n:1?timeout=1.5s", "failed to parse [1.5s], fractional time values are not supported"),
        ("/_tasks?size=0", "[size] must be a positive integer but was [0]"),
        ("/_tasks?cursor=!!", "invalid [cursor] value [!!]: pass back the [next_cursor] of a listing"),
    ],
)  # fmt: skip
def test_bad_parameters_are_400_in_es_shape(svc, url, reason):
    r = svc.http.get(url, headers={"X-Opaque-Id": "bad-param"})
    assert_es_error(r, 400, "illegal_argument_exception", reason)
    assert r.headers["x-opaque-id"] == "bad-param" and r.headers["x-elastic-product"] == "Elasticsearch"


def test_common_parameters_pretty_human_filter_path(svc, tag):
    wait_running(svc, submit(svc, tag))
    pretty = svc.http.get(f"/_tasks?pretty&x_opaque_id={tag}&error_trace")
    assert pretty.text.startswith("{\n  ") and pretty.text.endswith("\n")
    human = mine(svc, tag, "&human")[0]
    assert human["start_time"].endswith("Z") and human["running_time"][-1].isalpha()
    filtered = svc.http.get(f"/_tasks?x_opaque_id={tag}&filter_path=nodes.*.tasks.*.action").json()
    (node,) = filtered["nodes"].values()
    assert [set(t) for t in node["tasks"].values()] == [{"action"}]


def test_headers_routes_and_media_types(svc, tag):
    druid = svc.http.get("/status/health", headers={"X-Opaque-Id": "d1"})
    assert "x-elastic-product" not in druid.headers and druid.headers["x-opaque-id"] == "d1"  # ES routes only
    druid_404 = svc.http.get(f"{API}/task/nope/status", headers={"X-Opaque-Id": "d2"})
    assert druid_404.status_code == 404 and druid_404.json()["error"] == "druidException"
    assert druid_404.headers["x-opaque-id"] == "d2"
    assert_es_error(svc.http.get("/_nothing"), 400, "illegal_argument_exception")
    assert_es_error(svc.http.delete("/_tasks"), 405, "status_exception")
    info = svc.http.get("/", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=8"})
    assert info.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=8"
    body = info.json()
    assert list(body) == ["name", "cluster_name", "cluster_uuid", "version", "tagline"]
    assert body["version"]["build_flavor"] == "default" and body["version"]["number"].split(".")[0] == "9"
    assert svc.http.head("/").status_code == 200
    bad = svc.http.get("/_tasks", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=6"})
    assert_es_error(bad, 400, "media_type_header_exception")
    compat = "application/vnd.elasticsearch+json; compatible-with=9"
    r = svc.http.post(
        f"{API}/task",
        content=b'{"type": "noop", "runTime": 30000}',
        headers={"Content-Type": compat, "Accept": compat, "X-Opaque-Id": tag, "traceparent": "00-abc-def-01"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    (listed,) = mine(svc, tag)
    assert listed["headers"] == {"X-Opaque-Id": tag, "traceparent": "00-abc-def-01"}


def test_node_id_and_finished_tasks_survive_restart(service_factory, tmp_path):
    first = service_factory(data_dir=tmp_path / "restart").start()
    task_id = first.submit({"type": "noop", "runTime": 0})
    first.wait_for(task_id)
    nid = node_id(first)
    from overlord.storage.metadata import task_number

    first.stop()
    second = service_factory(data_dir=tmp_path / "restart").start()
    assert node_id(second) == nid
    body = second.http.get(f"/_tasks/{nid}:{task_number(task_id)}").json()
    assert body["completed"] is True and body["response"]["status"]["id"] == task_id
