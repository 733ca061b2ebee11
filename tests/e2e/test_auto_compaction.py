"""Automatic compaction end to end: a config over HTTP, the duty submits compact tasks, chunks compact."""

from __future__ import annotations

import time

from tests.e2e.ingest_helpers import API, index_spec, read_rows, run_task, segments


def _inline(rows: list[str]) -> dict:
    return {"type": "inline", "data": "\n".join(rows)}


def test_duty_compacts_fragmented_chunks(service_factory):
    svc = service_factory(capacity=2, extra_env={"druid_coordinator_period_indexingPeriod": "300"}).start()
    fmt = {"type": "json"}
    for batch in range(3):  # three appends: three segments in each of two daily chunks
        rows = [f'{{"ts": "2024-01-0{d}T0{batch}:00:00Z", "page": "p{batch}", "n": {batch}}}' for d in (1, 2)]
        status, _ = run_task(svc, index_spec("wiki", _inline(rows), fmt, dims=["page"], append=True))
        assert status["statusCode"] == "SUCCESS", status
    before = segments(svc, "wiki")
    assert len(before) == 6
    rows_before = read_rows(before, sort_by=("__time", "page"))

    r = svc.http.post(
        "/druid/coordinator/v1/config/compaction",
        json={"dataSource": "wiki", "skipOffsetFromLatest": "PT0S", "taskContext": {"note": "auto"}},
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 60
    while len(segments(svc, "wiki")) != 2:
        assert time.monotonic() < deadline, segments(svc, "wiki")
        time.sleep(0.2)
    after = segments(svc, "wiki")
    assert all(s.get("lastCompactionState") for s in after)
    assert read_rows(after, sort_by=("__time", "page")) == rows_before
    compacts = [t for t in svc.http.get(f"{API}/tasks", params={"type": "compact"}).json()]
    assert len(compacts) == 2 and all(t["statusCode"] == "SUCCESS" for t in compacts)
    payload = svc.http.get(f"{API}/task/{compacts[0]['id']}").json()["payload"]
    assert payload["context"]["note"] == "auto" and payload["context"]["priority"] == 25
    time.sleep(1.0)  # further passes find nothing left to do
    assert len(svc.http.get(f"{API}/tasks", params={"type": "compact"}).json()) == 2
