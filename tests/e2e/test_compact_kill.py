"""End to end: compaction of many small segments into fewer with identical data, and kill of unused ones."""

from __future__ import annotations

from pathlib import Path

from ingest_helpers import API, index_spec, payload_of, read_rows, run_task, segments, start_service

ROWS = "".join(
    f'{{"ts":"2024-07-0{1 + i % 2}T{i % 24:02d}:{i % 60:02d}:00Z","page":"p{i % 7}","added":{i}}}\n' for i in range(120)
)


def test_compact_then_kill(tmp_path: Path) -> None:
    svc = start_service(tmp_path, capacity=2)
    try:
        data = tmp_path / "rows.json"
        data.write_text(ROWS)
        spec = index_spec(
            "cmp_ds",
            {"type": "local", "files": [str(data)]},
            {"type": "json"},
            dims=["page"],
            metrics=[{"type": "count", "name": "count"}, {"type": "longSum", "name": "added", "fieldName": "added"}],
            rollup=True,
            tuning={"partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 10}},
        )
        status, _ = run_task(svc, spec)
        assert status["status"] == "SUCCESS", status
        small = segments(svc, "cmp_ds")
        assert len(small) == 12
        before = read_rows(small, ("__time", "page"))

        compact = {
            "type": "compact",
            "dataSource": "cmp_ds",
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": "2024-07-01/2024-07-03"}},
            "tuningConfig": {"type": "compact", "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 50}},
        }
        status, report = run_task(svc, compact)
        assert status["status"] == "SUCCESS", status
        assert status["type"] == "compact"
        assert set(report) == {"ingestionStatsAndErrors_0", "ingestionStatsAndErrors_1", "taskContext"}
        for key in ("ingestionStatsAndErrors_0", "ingestionStatsAndErrors_1"):
            p = payload_of(report, key)
            assert (p["segmentsRead"], p["segmentsPublished"]) == (6, 2)
            assert p["rowStats"]["buildSegments"]["processed"] == 60
        big = segments(svc, "cmp_ds")
        assert len(big) == 4
        assert all(s["version"] > small[0]["version"] for s in big)
        assert read_rows(big, ("__time", "page")) == before
        state = big[0]["lastCompactionState"]
        assert state["partitionsSpec"] == {"type": "dynamic", "maxRowsPerSegment": 50, "maxTotalRows": None}
        assert state["granularitySpec"]["rollup"] is True

        kill = {"type": "kill", "dataSource": "cmp_ds", "interval": "2024-07-01/2024-07-03"}
        status, report = run_task(svc, kill)
        assert status["status"] == "SUCCESS", status
        assert report["killUnusedSegments"]["payload"]["numSegmentsKilled"] == 12
        assert all(not Path(s["loadSpec"]["path"]).exists() for s in small)
        assert all(Path(s["loadSpec"]["path"]).exists() for s in big)
        assert segments(svc, "cmp_ds") == big
        log = svc.http.get(f"{API}/task/{status['id']}/log").text
        assert "Killed 12 unused segments" in log
    finally:
        svc.stop()
