"""A follower's API, in process: 307 to the leader for everything but health, status and leadership;
503 while no leader is known. (Two real Overlords on PostgreSQL: tests/e2e/test_high_availability.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.core.leadership import Role
from tests.api.inprocess import API, inprocess_service

pytestmark = pytest.mark.anyio

LEADER = "http://leader.test:8090"


async def test_the_leader_serves_and_says_so(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        for path in (f"{API}/isLeader", "/druid/coordinator/v1/isLeader"):
            r = await ov.http.get(path)
            assert (r.status_code, r.json()) == (200, {"leader": True})
        r = await ov.http.get(f"{API}/leader")
        assert (r.status_code, r.text) == (200, ov.service.advertised_url)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{API}/task"),
        ("GET", f"{API}/tasks?state=running&max=3"),
        ("GET", f"{API}/task/t1/status"),
        ("POST", f"{API}/action"),
        ("POST", f"{API}/peon/t1/status"),
        ("GET", "/druid/coordinator/v1/datasources"),
        ("GET", "/_tasks?detailed=true"),
        ("GET", "/_cat/tasks"),
    ],
)
async def test_a_follower_redirects_every_api_call_to_the_same_place_on_the_leader(
    tmp_path: Path, method: str, path: str
) -> None:
    async with inprocess_service(tmp_path) as ov:
        ov.service.leadership.role, ov.service.leadership.leader_url = Role.FOLLOWER, LEADER
        r = await ov.http.request(method, path, content=b'{"type": "noop"}')
        assert r.status_code == 307 and r.headers["location"] == LEADER + path and r.content == b""


async def test_a_follower_answers_health_status_and_leadership_itself(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        ov.service.leadership.role, ov.service.leadership.leader_url = Role.FOLLOWER, LEADER
        assert (await ov.http.get("/status/health")).status_code == 200
        assert (await ov.http.get("/status")).json()["version"] == ov.service.version
        assert (await ov.http.get("/status/selfDiscovered/status")).status_code == 200
        for path in (f"{API}/isLeader", "/druid/coordinator/v1/isLeader"):
            r = await ov.http.get(path)
            assert (r.status_code, r.json()) == (404, {"leader": False})
        r = await ov.http.get(f"{API}/leader")
        assert (r.status_code, r.text) == (200, LEADER)


async def test_without_a_known_leader_a_follower_answers_503_to_retry(tmp_path: Path) -> None:
    async with inprocess_service(tmp_path) as ov:
        ov.service.leadership.role, ov.service.leadership.leader_url = Role.FOLLOWER, None
        r = await ov.http.post(f"{API}/task", json={"type": "noop"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"] == "druidException" and "no leader is known" in r.json()["errorMessage"]
        r = await ov.http.get(f"{API}/leader")
        assert r.status_code == 503 and "No Overlord is the leader" in r.json()["errorMessage"]
        ov.service.leadership.role = Role.LEADER  # let the service stop as the leader it was
