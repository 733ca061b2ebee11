"""Bodies over the limit (413 before they are read), deep JSON, bounded id lists, query integers,
control characters in paths and query strings: each refused with a 4xx naming what was wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from overlord.config import Settings, load_settings
from overlord.errors import ConfigError
from tests.api.conftest import Api, P, assert_druid_error, assert_es_error

pytestmark = pytest.mark.anyio

LIMIT = 256 * 1024


def _limited(root: Path) -> Settings:
    """A small body limit, set through the property (as an operator would)."""
    start = root / "start"
    start.mkdir()
    return load_settings(
        environ={"druid_server_http_maxRequestBodySize": f"{LIMIT // 1024}KiB"},
        overrides={"data_dir": root / "var", "start_dir": start, "worker_capacity": 1},
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _limited(tmp_path)


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _limited(tmp_path_factory.mktemp("limits"))


def test_the_default_limit_is_10_mib() -> None:
    assert Settings().max_request_body_bytes == 10 * 1024 * 1024


def _noop_of_size(size: int) -> bytes:
    head = b'{"type":"noop","runTime":0,"logLines":1,"fail":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def test_a_body_at_the_limit_is_accepted(api: Api) -> None:
    body = _noop_of_size(LIMIT)
    assert len(body) == LIMIT
    r = await api.http.post(f"{P}/task", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


async def test_content_length_over_the_limit_is_413_without_reading(shared_api: Api) -> None:
    reads = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal reads
        for _ in range(100):
            reads += 1
            yield b"x" * 4096

    headers = {"content-type": "application/json", "content-length": str(LIMIT + 1)}
    r = await shared_api.http.post(f"{P}/task", content=body(), headers=headers)
    body_json = assert_druid_error(r, 413, "maxRequestBodySize", str(LIMIT))
    assert body_json["errorCode"] == "requestTooLarge"
    assert reads == 0


async def test_a_chunked_body_is_cut_off_once_past_the_limit(shared_api: Api) -> None:
    reads = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal reads
        for _ in range(1000):  # 4 MB in all, 16 times the limit
            reads += 1
            yield b" " * 4096

    r = await shared_api.http.post(f"{P}/task", content=body(), headers={"content-type": "application/json"})
    assert_druid_error(r, 413, "maxRequestBodySize")
    assert reads <= LIMIT // 4096 + 2
    assert "content-length" not in r.request.headers


async def test_es_routes_answer_413_in_their_own_shape(shared_api: Api) -> None:
    r = await shared_api.http.post("/_tasks/_cancel", content=b"x" * (LIMIT + 1))
    assert_es_error(r, 413, "maxRequestBodySize")


async def test_health_answers_beside_a_refused_body(shared_api: Api) -> None:
    r = await shared_api.http.post(f"{P}/task", content=b"[" * (LIMIT * 4))
    assert r.status_code == 413
    assert (await shared_api.http.get("/status/health")).json() is True


def _noop_nested(levels: int) -> bytes:
    """A noop spec whose JSON is ``levels`` deep (as text: orjson cannot write past 254 levels)."""
    inner = b'{"a":' * (levels - 2) + b"{}" + b"}" * (levels - 2)
    return b'{"type":"noop","runTime":0,"context":' + inner + b"}"


@pytest.mark.parametrize("levels", [65, 256, 900])
async def test_json_nested_too_deep_is_400(shared_api: Api, levels: int) -> None:
    r = await shared_api.http.post(
        f"{P}/task", content=_noop_nested(levels), headers={"content-type": "application/json"}
    )
    assert_druid_error(r, 400, "nested deeper than 64")


async def test_json_64_levels_deep_is_stored(api: Api) -> None:
    body = _noop_nested(64)
    r = await api.http.post(f"{P}/task", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    task = r.json()["task"]
    payload = (await api.http.get(f"{P}/task/{task}")).json()["payload"]
    depth, node = 1, payload
    while isinstance(node, dict) and node:
        node = node.get("context", node.get("a"))
        depth += 1
    assert depth == 64


@pytest.mark.parametrize("route", ["/action", "/taskStatus"])
async def test_depth_limit_holds_on_every_json_route(shared_api: Api, route: str) -> None:
    r = await shared_api.http.post(
        f"{P}{route}", content=b"[" * 100 + b"]" * 100, headers={"content-type": "application/json"}
    )
    assert_druid_error(r, 400, "nested deeper than 64")


async def test_task_status_id_lists_are_bounded(shared_api: Api) -> None:
    ok = await shared_api.http.post(f"{P}/taskStatus", json=[f"t{i}" for i in range(10_000)])
    assert ok.status_code == 200 and ok.json() == {}
    r = await shared_api.http.post(f"{P}/taskStatus", json=[f"t{i}" for i in range(10_001)])
    assert_druid_error(r, 400, "10001", "10000")


async def test_task_status_refuses_a_nul_in_an_id(shared_api: Api) -> None:
    r = await shared_api.http.post(f"{P}/taskStatus", json=["fine", "a\x00b"])
    assert_druid_error(r, 400, "taskIds[1]", "U+0000")


INT_PARAMS = [
    (f"{P}/tasks?max=9223372036854775808", "max"),
    (f"{P}/tasks?max=2147483648", "max"),
    (f"{P}/tasks?max=-1", "max"),
    (f"{P}/tasks?max=abc", "max"),
    (f"{P}/tasks?state=complete&max=99999999999999999999999", "max"),
    (f"{P}/completeTasks?n=9223372036854775808", "n"),
    (f"{P}/completeTasks?n=-5", "n"),
]


@pytest.mark.parametrize(("url", "name"), INT_PARAMS)
async def test_query_integers_are_range_checked(shared_api: Api, url: str, name: str) -> None:
    r = await shared_api.http.get(url)
    assert_druid_error(r, 400, f"[{name}]")


async def test_query_integers_at_the_bounds_are_accepted(shared_api: Api) -> None:
    assert (await shared_api.http.get(f"{P}/tasks?max=2147483647")).status_code == 200
    assert (await shared_api.http.get(f"{P}/completeTasks?n=0")).status_code == 200


async def test_log_offset_is_range_checked(api: Api) -> None:
    task = (await api.http.post(f"{P}/task", json={"type": "noop", "runTime": 0})).json()["task"]
    for raw in ("9223372036854775808", "-9223372036854775808", "1e3"):
        r = await api.http.get(f"{P}/task/{task}/log", params={"offset": raw})
        assert_druid_error(r, 400, "[offset]")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("/_tasks?size=2147483648", "[size]"),
        ("/_tasks?size=99999999999999999999999", "[size]"),
        ("/_tasks?timeout=99999999999999999999d", "failed to parse"),
        ("/_tasks?timeout=9223372036854775807s", "failed to parse"),
        ("/_cat/tasks?timeout=106752d", "failed to parse"),
    ],
)
async def test_es_integers_are_range_checked_in_es_shape(shared_api: Api, url: str, needle: str) -> None:
    r = await shared_api.http.get(url)
    assert_es_error(r, 400, needle)


PATH_ROUTES = [
    ("GET", f"{P}/task/a%00b/status", "taskId"),
    ("GET", f"{P}/task/a%00b", "taskId"),
    ("GET", f"{P}/task/a%00b/log", "taskId"),
    ("GET", f"{P}/task/a%00b/reports", "taskId"),
    ("GET", f"{P}/task/a%00b/report", "taskId"),
    ("POST", f"{P}/task/a%00b/shutdown", "taskId"),
    ("POST", f"{P}/datasources/a%00b/shutdownAllTasks", "datasource"),
    ("DELETE", f"{P}/pendingSegments/a%00b", "datasource"),
    ("GET", "/druid/worker/v1/chat/a%00b/liveReports", "taskId"),
    ("GET", "/druid/worker/v1/chat/a%1fb/rowStats", "taskId"),
    ("GET", "/druid/coordinator/v1/metadata/datasources/a%00b", None),
    ("GET", f"{P}/task/a%C2%85b/status", "taskId"),
    ("GET", f"{P}/tasks?datasource=a%00b", "datasource"),
    ("GET", f"{P}/tasks?type=%0a", "type"),
]


@pytest.mark.parametrize(("method", "url", "name"), PATH_ROUTES)
async def test_control_characters_in_the_request_line_are_400(
    shared_api: Api, method: str, url: str, name: str
) -> None:
    r = await shared_api.http.request(method, url)
    assert_druid_error(r, 400, "control character", *([f"[{name}]"] if name else []))


@pytest.mark.parametrize("url", ["/_tasks/a%00b:1", "/_tasks?parent_task_id=a%00b:1", "/_cat/tasks?h=%00"])
async def test_control_characters_on_es_routes_answer_in_es_shape(shared_api: Api, url: str) -> None:
    r = await shared_api.http.get(url)
    assert_es_error(r, 400, "control character")


async def test_ordinary_requests_pass_the_limits(shared_api: Api) -> None:
    r = await shared_api.http.get(f"{P}/tasks", params={"datasource": "wiki edits", "max": "5"})
    assert r.status_code == 200 and r.json() == []
    r = await shared_api.http.get(f"{P}/task/no%20such%20task/status")
    assert r.status_code == 404


def test_the_limit_is_configurable_and_validated() -> None:
    assert load_settings(environ={"druid_server_http_maxRequestBodySize": "1MiB"}).max_request_body_bytes == 2**20
    with pytest.raises(ConfigError):
        load_settings(environ={"druid_server_http_maxRequestBodySize": "0"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "noop", "runTime": 0, "context": {"priority": 2**31}}, "context.priority"),
        ({"type": "noop", "runTime": 0, "context": {"priority": 2**63}}, "context.priority"),
        ({"type": "noop", "runTime": 0, "context": {"priority": -(2**31) - 1}}, "context.priority"),
        ({"type": "noop", "runTime": 2**63}, "runTime"),
        ({"type": "noop", "runTime": 0, "logLines": 2**31}, "logLines"),
    ],
)
async def test_body_integers_beyond_the_store_columns_are_400(
    shared_api: Api, body: dict[str, object], field: str
) -> None:
    r = await shared_api.http.post(f"{P}/task", json=body)
    assert_druid_error(r, 400, f"[{field}]")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataSource": "a\x00b"}, "dataSource"),
        ({"dataSource": "../x"}, "dataSource"),
        ({"dataSource": "x" * 256}, "dataSource"),
        ({"dataSource": "ok", "taskPriority": 2**63}, "taskPriority"),
    ],
)
async def test_compaction_configs_are_refused_naming_the_field(api: Api, body: dict[str, object], field: str) -> None:
    r = await api.http.post("/druid/coordinator/v1/config/compaction", json=body)
    assert_druid_error(r, 400, f"[{field}]")
    assert (await api.http.get("/druid/coordinator/v1/config/compaction")).json()["compactionConfigs"] == []
