"""End to end: index_parallel sub-tasks, appendToExisting versions and live reports while running."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import API, index_spec, payload_of, read_rows, run_task, segments, start_service, wait_until
from tests.conftest import ServiceProcess


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start_service(tmp_path_factory.mktemp("parallel"), capacity=3)
    yield service
    service.stop()


@pytest.fixture
def inputs(svc: ServiceProcess, request: pytest.FixtureRequest) -> Path:
    d = svc.data_dir.parent / "inputs" / request.node.name
    d.mkdir(parents=True)
    return d


def rows(day: str, n: int, page: str) -> str:
    return "".join(f'{{"ts":"2024-05-{day}T{i % 24:02d}:00:00Z","page":"{page}","n":{i}}}\n' for i in range(n))


def test_two_sub_tasks_publish_together_with_summed_stats(svc: ServiceProcess, inputs: Path) -> None:
    (inputs / "a.json").write_text(rows("01", 30, "a") + "garbage\n")
    (inputs / "b.json").write_text(rows("01", 20, "b") + rows("02", 10, "b"))
    spec = index_spec(
        "par_ds",
        {"type": "local", "baseDir": str(inputs), "filter": "*.json"},
        {"type": "json"},
        dims=["page", {"type": "long", "name": "n"}],
        tuning={"maxNumConcurrentSubTasks": 2, "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 25}},
    )
    parent = svc.submit(spec)
    status = svc.wait_for(parent, timeout=60)
    assert status["status"] == "SUCCESS", status
    tasks = svc.http.get(f"{API}/tasks").json()
    subs = [t for t in tasks if t["type"] == "single_phase_sub_task"]
    assert len(subs) == 2
    assert all(t["groupId"] == parent and t["status"] == "SUCCESS" for t in subs)
    for t in subs:
        payload = svc.http.get(f"{API}/task/{t['id']}").json()["payload"]
        assert payload["supervisorTaskId"] == parent
        assert payload["context"]["priority"] == 50
    report = svc.http.get(f"{API}/task/{parent}/reports").json()
    bs = payload_of(report)["rowStats"]["totals"]["buildSegments"]  # the parallel supervisor task's shape
    assert (bs["processed"], bs["unparseable"]) == (60, 1)
    assert len(payload_of(report)["unparseableEvents"]["buildSegments"]) == 1
    segs = segments(svc, "par_ds")
    day1 = [s for s in segs if s["interval"].startswith("2024-05-01")]
    assert len({s["version"] for s in day1}) == 1
    assert sorted(s["shardSpec"]["partitionNum"] for s in day1) == list(range(len(day1)))
    assert len(day1) >= 2 and all(s["shardSpec"]["partitions"] == len(day1) for s in day1)
    assert len(read_rows(segs)) == 60
    assert not (svc.data_dir / "segments" / "_staging" / parent).exists()
    assert not list(svc.data_dir.rglob(f"_staging/{parent}"))


def test_append_to_existing_vs_overwrite_versions(svc: ServiceProcess, inputs: Path) -> None:
    for name, page in (("first", "a"), ("second", "b"), ("third", "c")):
        (inputs / f"{name}.json").write_text(rows("03", 3, page))

    def ingest(name: str, append: bool) -> None:
        spec = index_spec("ver_ds", {"type": "local", "files": [str(inputs / f"{name}.json")]}, {"type": "json"},
                          dims=["page"], append=append)  # fmt: skip
        status, _ = run_task(svc, spec)
        assert status["status"] == "SUCCESS", status

    ingest("first", False)
    (v1,) = segments(svc, "ver_ds")
    ingest("second", True)
    appended = segments(svc, "ver_ds")
    assert [(s["version"], s["shardSpec"]["partitionNum"]) for s in appended] == [
        (v1["version"], 0),
        (v1["version"], 1),
    ]
    assert sorted({r["page"] for r in read_rows(appended)}) == ["a", "b"]
    ingest("third", False)
    (v3,) = segments(svc, "ver_ds")
    assert v3["version"] > v1["version"] and v3["shardSpec"]["partitionNum"] == 0
    assert {r["page"] for r in read_rows([v3])} == {"c"}


def test_live_report_while_running(svc: ServiceProcess, inputs: Path) -> None:
    """A FIFO input: the first 9 MB arrive at once, the rest only after the test saw the live report."""
    fifo = inputs / "slow.json"
    os.mkfifo(fifo)
    release = threading.Event()
    line = b'{"ts":"2024-06-01T01:00:00Z","page":"p","n":1}\n'
    first = 9_000_000 // len(line)

    def writer() -> None:
        with fifo.open("wb") as out:
            out.write(line * first)
            out.flush()
            release.wait(30)
            out.write(line * 10)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    spec = index_spec("live_ds", {"type": "local", "files": [str(fifo)]}, {"type": "json"}, dims=["page"])
    task_id = svc.submit(spec)
    try:

        def live() -> dict | None:
            r = svc.http.get(f"{API}/task/{task_id}/reports")
            if r.status_code != 200:
                return None
            p = r.json()["ingestionStatsAndErrors"]["payload"]
            totals = (p.get("rowStats") or {}).get("totals", {}).get("buildSegments", {})
            return p if p["ingestionState"] == "BUILD_SEGMENTS" and totals.get("processed", 0) > 0 else None

        p = wait_until(live, timeout=30)
        assert svc.http.get(f"{API}/task/{task_id}/status").json()["status"]["status"] == "RUNNING"
        assert set(p["rowStats"]["movingAverages"]["buildSegments"]) == {"1m", "5m", "15m"}
        assert p["rowStats"]["totals"]["buildSegments"]["processed"] <= first
        chat = svc.http.get(f"/druid/worker/v1/chat/{task_id}/rowStats")
        assert chat.status_code == 200 and "buildSegments" in chat.json()["totals"]
    finally:
        release.set()
    status = svc.wait_for(task_id, timeout=60)
    assert status["status"] == "SUCCESS", status
    report = svc.http.get(f"{API}/task/{task_id}/reports").json()
    assert payload_of(report)["rowStats"]["buildSegments"]["processed"] == first + 10
    thread.join(5)


def test_parent_shutdown_stops_sub_tasks_and_cleans_staging(svc: ServiceProcess, inputs: Path) -> None:
    fifos = [inputs / "s0.json", inputs / "s1.json"]
    release = threading.Event()

    def writer(path: Path) -> None:
        with path.open("wb") as out:
            out.write(rows("04", 5, "x").encode())
            out.flush()
            release.wait(30)

    for f in fifos:
        os.mkfifo(f)
    threads = [threading.Thread(target=writer, args=(f,), daemon=True) for f in fifos]
    for t in threads:
        t.start()
    spec = index_spec("stop_ds", {"type": "local", "files": [str(f) for f in fifos]}, {"type": "json"},
                      dims=["page"], tuning={"maxNumConcurrentSubTasks": 2})  # fmt: skip
    parent = svc.submit(spec)
    try:

        def subs_running() -> list[dict]:
            subs = [t for t in svc.http.get(f"{API}/tasks").json() if t["groupId"] == parent and t["id"] != parent]
            return subs if len(subs) == 2 and all(t["runnerStatusCode"] == "RUNNING" for t in subs) else []

        try:
            subs = wait_until(subs_running, timeout=15)
        except AssertionError:
            raise AssertionError(svc.http.get(f"{API}/tasks").json()) from None
        assert svc.http.post(f"{API}/task/{parent}/shutdown").status_code == 200
        release.set()
        status = svc.wait_for(parent, timeout=30)
        assert status["status"] == "FAILED"
        for t in subs:
            assert svc.wait_for(t["id"], timeout=30)["status"] == "FAILED"
    finally:
        release.set()
    assert segments(svc, "stop_ds") == []
    assert not list(svc.data_dir.rglob(f"_staging/{parent}"))
    assert not list(svc.data_dir.rglob("stop_ds/*"))
