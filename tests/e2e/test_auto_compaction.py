"""Automatic compaction end to end: a config over HTTP, the duty submits compact tasks, chunks compact."""

from __future__ import annotations

import time

from tests.conftest import ServiceProcess
from tests.e2e.ingest_helpers import API, index_spec, read_rows, run_task, segments


def _inline(rows: list[str]) -> dict:
    return {"type": "inline", "data": "\n".join(rows)}


def _settled(svc: ServiceProcess, count: int) -> tuple[list[dict], list[dict]]:
    """Poll until ``count`` segments, all compacted, are visible and every compact task has ended."""
    deadline = time.monotonic() + 60
    while True:
        segs = segments(svc, "wiki")
        compacts = svc.http.get(f"{API}/tasks", params={"type": "compact"}).json()
        compacted = len(segs) == count and all(s.get("lastCompactionState") for s in segs)
        if compacted and compacts and all(t["statusCode"] != "RUNNING" for t in compacts):
            return segs, compacts
        assert time.monotonic() < deadline, (segs, compacts)
        time.sleep(0.1)


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
        json={
            "dataSource": "wiki",
            "skipOffsetFromLatest": "PT0S",
            "maxRowsPerSegment": 2,  # each chunk compacts into two segments: only their state marks them done
            "taskContext": {"note": "auto"},
        },
    )
    assert r.status_code == 200
    after, compacts = _settled(svc, count=4)
    assert read_rows(after, sort_by=("__time", "page")) == rows_before
    assert len(compacts) == 2 and all(t["statusCode"] == "SUCCESS" for t in compacts)
    payload = svc.http.get(f"{API}/task/{compacts[0]['id']}").json()["payload"]
    assert payload["context"]["note"] == "auto" and payload["context"]["priority"] == 25

    # Further passes leave compacted chunks alone. No pass counter is served, so a later chunk is the
    # witness: the duty picks the oldest candidate first, so by the time it has compacted a newer
    # fragmented chunk, any pass that still took the old chunks for candidates would have resubmitted them.
    for batch in range(2):
        rows = [f'{{"ts": "2024-01-03T0{batch}:00:00Z", "page": "q{batch}", "n": {batch}}}']
        status, _ = run_task(svc, index_spec("wiki", _inline(rows), fmt, dims=["page"], append=True))
        assert status["statusCode"] == "SUCCESS", status
    _, compacts = _settled(svc, count=5)
    assert len(compacts) == 3 and all(t["statusCode"] == "SUCCESS" for t in compacts), compacts
    intervals = sorted(
        svc.http.get(f"{API}/task/{t['id']}").json()["payload"]["ioConfig"]["inputSpec"]["interval"] for t in compacts
    )
    assert [iv[:10] for iv in intervals] == ["2024-01-01", "2024-01-02", "2024-01-03"], intervals
