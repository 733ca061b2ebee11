"""Two real Overlords on one PostgreSQL database: one leads, the other redirects; failover and fencing.

Each Overlord has its own data directory; they share deep storage, task logs and the peons' base
task directory (so the new leader's local runner can adopt the peons the old one started).
``OVERLORD_PEON_JOURNAL`` records every peon that started working, to prove no task ran twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import ServiceProcess
from tests.e2e.tcp_proxy import TcpProxy

from overlord.client import Client

API = "/druid/indexer/v1"
FAILOVER_S = 15.0

pytestmark = pytest.mark.postgres


def overlords(service_factory, pg_url: str, tmp_path: Path, count: int = 2) -> list[ServiceProcess]:  # type: ignore[no-untyped-def]
    shared = {
        "druid_storage_storageDirectory": str(tmp_path / "deep"),
        "druid_indexer_logs_directory": str(tmp_path / "logs"),
        "druid_worker_baseTaskDirs": str(tmp_path / "tasks"),
        "OVERLORD_PEON_JOURNAL": str(tmp_path / "journal"),
    }
    return [
        service_factory(
            data_dir=tmp_path / f"var-{i}", capacity=2, extra_env=shared, extra_args=["--metadata-url", pg_url]
        )
        for i in range(count)
    ]


def is_leader(svc: ServiceProcess) -> bool:
    r = svc.http.get(f"{API}/isLeader")
    assert r.status_code in (200, 404) and r.json() == {"leader": r.status_code == 200}, r.text
    return r.status_code == 200


def wait_leader(svc: ServiceProcess, timeout: float = FAILOVER_S + 5) -> float:
    started = time.monotonic()
    while not is_leader(svc):
        assert time.monotonic() - started < timeout, f"{svc.url} did not become the leader in {timeout}s"
        time.sleep(0.05)
    return time.monotonic() - started


def journal(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "journal"
    lines = path.read_text().split("\n") if path.exists() else []
    return Counter(line.split()[0] for line in lines if line.strip())


def test_the_follower_redirects_the_api_to_the_leader_and_both_tell_the_truth(
    pg_url: str, service_factory, tmp_path: Path
) -> None:
    a, b = overlords(service_factory, pg_url, tmp_path)
    a.start()
    b.start()
    assert is_leader(a) and not is_leader(b)
    for svc in (a, b):
        leader = svc.http.get(f"{API}/leader")
        assert leader.status_code == 200 and leader.text == a.url
        assert svc.http.get("/status/health").status_code == 200  # answered locally
        assert svc.http.get("/status").status_code == 200

    r = b.http.get(f"{API}/tasks", params={"state": "complete", "max": 5})
    assert r.status_code == 307 and r.headers["location"] == f"{a.url}{API}/tasks?state=complete&max=5"
    r = b.http.post(f"{API}/task", json={"type": "noop"})
    assert r.status_code == 307 and r.headers["location"] == f"{a.url}{API}/task"
    assert b.http.get("/_tasks").status_code == 307
    assert b.http.post(f"{API}/action", json={}).status_code == 307  # peons' task actions too

    with httpx.Client(base_url=b.url, follow_redirects=True, timeout=30) as follow:
        r = follow.post(f"{API}/task", json={"type": "noop", "runTime": 0})
        assert r.status_code == 200, r.text
        task_id = r.json()["task"]
    assert a.wait_for(task_id)["statusCode"] == "SUCCESS"
    with Client(b.url) as client:  # the project's client follows the redirect too
        submitted = client.submit({"type": "noop", "runTime": 0})
        assert client.wait(submitted, timeout=30).status.status_code == "SUCCESS"
        assert client.is_leader() is False and client.leader() == a.url
    assert journal(tmp_path) == Counter({task_id: 1, submitted: 1})


def test_kill9_of_the_leader_fails_over_within_15s_adopting_running_peons_and_losing_nothing(
    pg_url: str, service_factory, tmp_path: Path
) -> None:
    a, b = overlords(service_factory, pg_url, tmp_path)
    a.start()
    b.start()
    time.sleep(2.5)  # one renewal: the leader knows its follower, so its peons can fall back to it
    running = [a.submit({"type": "noop", "runTime": 20000}) for _ in range(2)]
    queued = [a.submit({"type": "noop", "runTime": 500}) for _ in range(2)]
    for task_id in running:
        a.wait_for(task_id, states=("RUNNING",))
    a.kill9()
    took = wait_leader(b)
    assert took < FAILOVER_S
    for task_id in running:  # adopted, still running
        status = b.http.get(f"{API}/task/{task_id}/status").json()["status"]
        assert status["statusCode"] == "RUNNING", status
    for task_id in running + queued:
        assert b.wait_for(task_id, timeout=60)["statusCode"] == "SUCCESS"
    assert journal(tmp_path) == Counter(dict.fromkeys(running + queued, 1))

    a.start()  # the old leader comes back as a follower
    assert not is_leader(a) and is_leader(b)
    assert a.http.get(f"{API}/leader").text == b.url
    r = a.http.get(f"{API}/task/{running[0]}/status")
    assert r.status_code == 307 and r.headers["location"].startswith(b.url)


def test_a_frozen_leader_that_lost_its_lease_writes_nothing_when_it_wakes_up(
    pg_url: str, service_factory, tmp_path: Path
) -> None:
    a, b = overlords(service_factory, pg_url, tmp_path)
    a.start()
    b.start()
    long_task = a.submit({"type": "noop", "runTime": 120000})
    a.wait_for(long_task, states=("RUNNING",))
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        wait_leader(b)
        b.http.post(f"{API}/task/{long_task}/shutdown")  # the new leader stops the adopted peon
        ended = b.wait_for(long_task, timeout=30)
        assert ended["statusCode"] == "FAILED"
        newer = b.submit({"type": "noop", "runTime": 0})
        assert b.wait_for(newer)["statusCode"] == "SUCCESS"
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    # a wakes up believing it leads, and sees its peon gone: it must write nothing of that, but step down
    deadline = time.monotonic() + 10
    while is_leader(a) or a.http.get(f"{API}/leader").text != b.url:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    after = b.http.get(f"{API}/task/{long_task}/status").json()["status"]
    assert after["statusCode"] == "FAILED" and after["errorMsg"] == ended["errorMsg"]
    assert after["duration"] == ended["duration"]
    assert is_leader(b) and not is_leader(a)
    log_text = a.log_file.read_text()
    assert "is no longer the leader" in log_text
    assert "Traceback" not in log_text


def test_postgres_down_refuses_submits_steps_the_leader_down_and_everything_resumes(
    pg_url: str, service_factory, tmp_path: Path
) -> None:
    pg = sa.make_url(pg_url)
    proxy = TcpProxy((pg.host or "127.0.0.1", pg.port or 5432))
    try:
        through_proxy = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        svc = service_factory(
            data_dir=tmp_path / "var",
            capacity=2,
            extra_env={"overlord_leader_leaseDuration": "PT4S", "overlord_leader_renewPeriod": "PT1S"},
            extra_args=["--metadata-url", through_proxy],
        ).start()
        assert is_leader(svc)
        spanning = svc.submit({"type": "noop", "runTime": 8000})
        svc.wait_for(spanning, states=("RUNNING",))

        proxy.down()
        cut = time.monotonic()
        r = svc.http.post(f"{API}/task", json={"type": "noop", "id": "refused_during_outage"})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "druidException" and "try again" in r.json()["errorMessage"]
        while is_leader(svc):
            assert time.monotonic() - cut < 4 + 3, "the leader did not step down after its lease ran out"
            time.sleep(0.05)
        assert svc.http.get(f"{API}/tasks").status_code == 503  # no leader anywhere: retry later

        proxy.up()
        wait_leader(svc, timeout=10)
        after = svc.submit({"type": "noop", "runTime": 0})
        assert svc.wait_for(after)["statusCode"] == "SUCCESS"
        assert svc.wait_for(spanning, timeout=60)["statusCode"] == "SUCCESS"  # adopted again in the new term
        assert svc.http.get(f"{API}/task/refused_during_outage/status").status_code == 404  # nothing half-stored
    finally:
        proxy.close()
