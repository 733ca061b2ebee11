"""``GET /``: a home page for browsers, Elasticsearch's banner for its clients and for scripts;
``X-Elastic-Product`` only on Elasticsearch's routes."""

from __future__ import annotations

import pytest

from overlord import __version__
from tests.api.conftest import Api, P

pytestmark = pytest.mark.anyio

BROWSER = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
}
ES_PY = {  # what elasticsearch-py 8/9 sends
    "accept": "application/vnd.elasticsearch+json; compatible-with=9",
    "user-agent": "elasticsearch-py/9.0.0 (Python/3.12.0; elastic-transport/9.0.0)",
    "x-elastic-client-meta": "es=9.0.0,py=3.12.0,t=9.0.0,ur=2.2.3",
}


async def test_a_browser_gets_the_home_page(api: Api) -> None:
    r = await api.http.get("/", headers=BROWSER)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "x-elastic-product" not in r.headers
    page = r.text
    assert f"Overlord <small>{__version__}</small>" in page
    for link in (f"{P}/tasks", "/_tasks?detailed&amp;pretty", "/_cat/tasks?v", "/status/health"):
        assert f"href='{link}'" in page
    assert "https://druid.apache.org/docs/latest/api-reference/tasks-api" in page
    for path in (f"{P}/tasks", "/_cat/tasks?v", "/status/health"):  # the links work
        assert (await api.http.get(path)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        ES_PY,
        {"accept": "application/json", "user-agent": "elasticsearch-py/8.15.0 (Python/3.12.0)"},
        {"user-agent": "elastic-transport-python/9.0.0", "accept": "text/html"},  # the client's agent wins
        {"accept": "*/*", "user-agent": "curl/8.5.0"},  # curl: the banner, as from Elasticsearch
        {},
    ],
)
async def test_elasticsearch_clients_and_scripts_get_the_banner(api: Api, headers: dict[str, str]) -> None:
    r = await api.http.get("/", headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["tagline"] == "You Know, for Search" and body["version"]["number"].startswith("9.")
    assert r.headers["x-elastic-product"] == "Elasticsearch"


async def test_head_ping_of_the_elasticsearch_client(api: Api) -> None:
    r = await api.http.head("/", headers=ES_PY)
    assert r.status_code == 200 and r.headers["x-elastic-product"] == "Elasticsearch"


async def test_product_header_only_on_elasticsearch_routes(api: Api) -> None:
    for path in (f"{P}/tasks", "/status", "/status/health", "/druid/coordinator/v1/metadata/datasources"):
        r = await api.http.get(path, headers={"X-Opaque-Id": "o1"})
        assert r.status_code == 200 and "x-elastic-product" not in r.headers, path
        assert r.headers["x-opaque-id"] == "o1"  # still echoed everywhere
    missing = await api.http.get(f"{P}/task/nope/status")
    assert missing.status_code == 404 and "x-elastic-product" not in missing.headers
    for path in ("/_tasks", "/_cat/tasks", "/_nothing"):
        assert (await api.http.get(path)).headers["x-elastic-product"] == "Elasticsearch", path
