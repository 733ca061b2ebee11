"""End to end: a real ``overlord start`` with S3 deep storage and S3 task logs (moto's server on 127.0.0.1).

Druid's quickstart ingestion, compaction and kill leave exactly the objects they should; logs and
reports are served from S3 after the task ends; a wrong bucket stops start-up with a clear message;
a bucket that vanishes while a task runs fails that task with an errorMsg naming the bucket and key.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import API, index_spec, payload_of, run_task, segments, wait_until
from tests.conftest import ServiceProcess
from tests.s3 import MotoServer, s3_properties

from overlord.ingest import wikiticker

SEGMENTS = "druid/segments/"
LOGS = "druid/indexing-logs/"


@pytest.fixture
def buckets(s3_server: MotoServer) -> Iterator[tuple[str, str]]:
    deep, logs = s3_server.new_bucket(), s3_server.new_bucket()
    yield deep, logs


def s3_service(tmp_path: Path, server: MotoServer, env: dict[str, str], **kw: Any) -> ServiceProcess:
    return ServiceProcess(data_dir=tmp_path / "var", extra_env={**server.env(), **env}, **kw)


def s3_rows(server: MotoServer, segs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of segments read straight from their S3 objects (never through the service)."""
    client = server.client()
    tables = []
    for s in segs:
        spec = s["loadSpec"]
        assert spec["type"] == "s3_zip" and set(spec) == {"type", "bucket", "key", "S3Schema"}, spec
        body = client.get_object(Bucket=spec["bucket"], Key=spec["key"])["Body"].read()
        tables.append(pq.read_table(io.BytesIO(body)))
    rows = pa.concat_tables(tables, promote_options="permissive").to_pylist()
    return sorted(rows, key=lambda r: (r["__time"], str(r.get("page")), str(r.get("user")), str(r.get("added"))))


def test_quickstart_compaction_and_kill_on_s3(tmp_path: Path, s3_server: MotoServer, buckets: tuple[str, str]) -> None:
    deep, logs = buckets
    svc = s3_service(tmp_path, s3_server, s3_properties(s3_server, bucket=deep, logs_bucket=logs), capacity=3).start()
    try:
        base = tmp_path / "quickstart" / "tutorial"
        for part in range(2):
            wikiticker.write_file(base / f"wikiticker-2015-09-12-sampled-{part}.json.gz", 1000, seed=part)
        spec: Any = wikiticker.quickstart_spec("quickstart/tutorial/", "wikiticker-2015-09-12-sampled-*.json.gz")
        spec["spec"]["tuningConfig"] = {
            "type": "index_parallel",
            "maxNumConcurrentSubTasks": 2,  # sub-tasks stage in S3, the parent copies server-side
            "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 400},
        }
        status, report = run_task(svc, spec, timeout=90)
        assert status["status"] == "SUCCESS", status
        assert payload_of(report)["rowStats"]["totals"]["buildSegments"]["processed"] == 2000  # parallel shape
        small = segments(svc, "wikipedia_auto")
        assert len(small) >= 5
        assert all(s["loadSpec"]["bucket"] == deep and s["loadSpec"]["key"].startswith(SEGMENTS) for s in small)
        before = s3_rows(s3_server, small)
        assert len(before) == 2000
        wait_until(lambda: not s3_server.keys(deep, SEGMENTS + "_staging/"), timeout=20)
        assert s3_server.keys(deep) == sorted(s["loadSpec"]["key"] for s in small)

        # the log and the report are read back from the task-log bucket, in Druid's layout
        task_id = status["id"]
        wait_until(lambda: f"{LOGS}{task_id}/log" in s3_server.keys(logs, LOGS + task_id), timeout=20)
        assert f"{LOGS}{task_id}/report.json" in s3_server.keys(logs, LOGS + task_id)
        log_text = svc.http.get(f"{API}/task/{task_id}/log").text
        stored = s3_server.client().get_object(Bucket=logs, Key=f"{LOGS}{task_id}/log")["Body"].read().decode()
        assert log_text == stored and task_id in log_text
        assert svc.http.get(f"{API}/task/{task_id}/log", params={"offset": -20}).text == stored[-20:]
        assert svc.http.get(f"{API}/task/{task_id}/reports").json() == report

        compact = {
            "type": "compact",
            "dataSource": "wikipedia_auto",
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": "2015-09-12/2015-09-13"}},
            "tuningConfig": {"type": "compact", "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 5000}},
        }
        status, report = run_task(svc, compact, timeout=90)
        assert status["status"] == "SUCCESS", status
        (big,) = segments(svc, "wikipedia_auto")
        assert s3_rows(s3_server, [big]) == before, "compaction read every segment from S3"

        kill = {"type": "kill", "dataSource": "wikipedia_auto", "interval": "2015-09-12/2015-09-13"}
        status, report = run_task(svc, kill, timeout=60)
        assert status["status"] == "SUCCESS", status
        assert report["killUnusedSegments"]["payload"]["numSegmentsKilled"] == len(small)
        assert s3_server.keys(deep) == [big["loadSpec"]["key"]], "killed segments' objects are gone, nothing else"
        assert f"Killed {len(small)} unused segments" in svc.http.get(f"{API}/task/{status['id']}/log").text
    finally:
        svc.stop()


@pytest.mark.parametrize("which", ["deep", "logs"])
def test_wrong_bucket_stops_start_up(tmp_path: Path, s3_server: MotoServer, which: str) -> None:
    env = s3_properties(s3_server, bucket="no-such-deep" if which == "deep" else None)
    env |= s3_properties(s3_server, logs_bucket="no-such-logs" if which == "logs" else None)
    svc = s3_service(tmp_path, s3_server, env)
    with pytest.raises(RuntimeError, match="service exited early") as info:
        svc.start()
    assert svc.proc is not None and svc.proc.returncode == 2
    prop = "druid.storage.bucket" if which == "deep" else "druid.indexer.logs.s3Bucket"
    bucket = f"no-such-{which}"
    assert f"error: {prop}: S3 bucket [{bucket}] does not exist" in str(info.value)


def test_unreachable_endpoint_stops_start_up(tmp_path: Path, s3_server: MotoServer) -> None:
    from tests.conftest import free_port

    env = s3_properties(s3_server, bucket="some-bucket") | {"druid_s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    svc = s3_service(tmp_path, s3_server, env)
    with pytest.raises(RuntimeError, match="service exited early") as info:
        svc.start(timeout=60)
    assert "error: druid.storage.bucket: S3 endpoint [http://127.0.0.1:" in str(info.value)
    assert "unreachable" in str(info.value) and "bucket [some-bucket]" in str(info.value)


def test_wrong_credentials_stop_start_up(tmp_path: Path) -> None:
    """moto with IAM checks on: a secret that does not match the access key is refused at start."""
    server = MotoServer(tmp_path, auth_after=3).start()
    try:
        server.make_access_key()
        bucket = server.new_bucket()
        svc = s3_service(tmp_path, server, s3_properties(server, bucket=bucket) | {"AWS_SECRET_ACCESS_KEY": "wrong"})
        with pytest.raises(RuntimeError, match="service exited early") as info:
            svc.start()
        refused = "error: druid.storage.bucket: S3 refused the credentials (403) for HeadBucket"
        assert f"{refused} of key [druid/segments] in bucket [{bucket}]" in str(info.value)
    finally:
        server.stop()


def test_s3_without_a_bucket_stops_start_up(tmp_path: Path, s3_server: MotoServer) -> None:
    svc = s3_service(tmp_path, s3_server, {"druid_storage_type": "s3"})
    with pytest.raises(RuntimeError, match="service exited early") as info:
        svc.start()
    assert "error: druid.storage.bucket must be set for S3 storage" in str(info.value)


def test_bucket_vanishing_mid_task_fails_it_naming_bucket_and_key(
    tmp_path: Path, s3_server: MotoServer, buckets: tuple[str, str]
) -> None:
    deep, logs = buckets
    svc = s3_service(tmp_path, s3_server, s3_properties(s3_server, bucket=deep, logs_bucket=logs)).start()
    try:
        fifo = tmp_path / "rows.json"
        os.mkfifo(fifo)  # the task blocks reading it: running, and not yet written anything
        spec = index_spec("vanish", {"type": "local", "files": [str(fifo)]}, {"type": "json"}, task_type="index")
        task_id = svc.submit(spec)
        svc.wait_for(task_id, states=("RUNNING",))
        s3_server.drop_bucket(deep)
        writer = threading.Thread(target=fifo.write_text, args=('{"ts":"2024-01-01T00:00:00Z","page":"a"}\n',))
        writer.start()
        status = svc.wait_for(task_id, timeout=60)
        writer.join(10)
        assert status["status"] == "FAILED", status
        msg = status["errorMsg"]
        assert f"S3 bucket [{deep}] does not exist" in msg, msg
        assert "key [druid/segments/vanish/2024-01-01T000000.000Z_2024-01-02T000000.000Z/" in msg, msg
        assert segments(svc, "vanish") == [], "nothing published"
    finally:
        svc.stop()


@pytest.mark.postgres
def test_postgres_metadata_with_s3_storage(
    tmp_path: Path, s3_server: MotoServer, buckets: tuple[str, str], pg_url: str
) -> None:
    """PostgreSQL for metadata, S3 for segments and logs: the combination a cluster runs."""
    deep, logs = buckets
    env = s3_properties(s3_server, bucket=deep, logs_bucket=logs)
    svc = s3_service(tmp_path, s3_server, env, extra_args=["--metadata-url", pg_url]).start()
    try:
        data = tmp_path / "rows.json"
        data.write_text("".join(f'{{"ts":"2024-03-0{1 + i % 3}T00:00:00Z","page":"p{i % 4}"}}\n' for i in range(30)))
        spec = index_spec("pg_s3", {"type": "local", "files": [str(data)]}, {"type": "json"}, dims=["page"])
        status, _ = run_task(svc, spec, timeout=60)
        assert status["status"] == "SUCCESS", status
        segs = segments(svc, "pg_s3")
        assert len(segs) == 3 and len(s3_rows(s3_server, segs)) == 30
        svc.stop()
        svc.start()  # the segments' S3 load specs survive in PostgreSQL
        assert segments(svc, "pg_s3") == segs
        kill = {"type": "kill", "dataSource": "pg_s3", "interval": "2024-03-01/2024-03-04", "markAsUnused": True}
        status, _ = run_task(svc, kill, timeout=60)
        assert status["status"] == "SUCCESS", status
        assert s3_server.keys(deep) == []
        assert not (svc.data_dir / "metadata.db").exists()
    finally:
        svc.stop()
