"""What only S3 storage promises: Druid's layout and load specs, no leftover objects, faults that name
the bucket and key, and the start-up check. Runs against moto's server (tests/s3.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from overlord.errors import ObjectStoreError
from overlord.storage.s3 import S3Location
from overlord.storage.s3_deep_storage import S3DeepStorage
from overlord.storage.s3_task_logs import S3TaskLogs
from overlord.storage.uris import open_deep_storage, open_task_logs
from tests.conftest import free_port
from tests.s3 import MotoServer


def location(server: Any, bucket: str, prefix: str = "druid/segments", endpoint: str | None = None) -> S3Location:
    return S3Location(bucket, prefix, endpoint or server.endpoint, "us-east-1", path_style=True)


def test_uri_round_trip_carries_no_secrets(s3_env: Any) -> None:
    loc = location(s3_env, "my-bucket", "base/key")
    assert S3Location.from_uri(loc.uri) == loc
    assert "secret" not in loc.uri.lower() and s3_env.secret_key not in loc.uri
    assert isinstance(open_deep_storage(loc.uri), S3DeepStorage)
    assert isinstance(open_task_logs(loc.uri), S3TaskLogs)
    assert S3Location.from_uri("s3://b-1/").prefix == ""


def test_segments_use_druids_s3_load_spec_and_leave_nothing_behind(s3_env: Any, tmp_path: Path) -> None:
    bucket = s3_env.new_bucket()
    storage = S3DeepStorage(location(s3_env, bucket))
    staged = storage.write("_staging/t1/s0/index.parquet", io.BytesIO(b"PAR1"))
    final = storage.copy(staged, "wiki/2016-06-27T00:00:00.000Z_2016-06-28T00:00:00.000Z/v1/0/index.parquet")
    assert final == {
        "type": "s3_zip",
        "bucket": bucket,
        "key": "druid/segments/wiki/2016-06-27T00:00:00.000Z_2016-06-28T00:00:00.000Z/v1/0/index.parquet",
        "S3Schema": "s3n",
    }
    assert storage.delete_prefix("_staging/t1") == 1
    assert s3_env.keys(bucket) == [final["key"]]
    storage.delete(final)
    assert s3_env.keys(bucket) == [], "no folder markers or other objects left after a delete"


def test_task_logs_use_druids_layout(s3_env: Any) -> None:
    bucket = s3_env.new_bucket()
    logs = S3TaskLogs(location(s3_env, bucket, "druid/indexing-logs"))
    logs.push_log("index_wiki_1", io.BytesIO(b"hello"))
    logs.push_report("index_wiki_1", b"{}")
    prefix = "druid/indexing-logs/index_wiki_1"
    assert s3_env.keys(bucket) == [f"{prefix}/log", f"{prefix}/report.json"]
    logs.delete("index_wiki_1")
    assert s3_env.keys(bucket) == []


def test_empty_base_key_puts_segments_at_the_bucket_root(s3_env: Any) -> None:
    bucket = s3_env.new_bucket()
    storage = S3DeepStorage(location(s3_env, bucket, ""))
    spec = storage.write("ds/seg", io.BytesIO(b"x"))
    assert spec["key"] == "ds/seg" and storage.list("ds") == [spec]
    assert not storage.contains({**spec, "key": "/ds/seg"})


# -- faults: every failure names the bucket and the key ----------------------------------------------


def test_missing_bucket_names_bucket_and_key(s3_env: Any) -> None:
    storage = S3DeepStorage(location(s3_env, "no-such-bucket"))
    logs = S3TaskLogs(location(s3_env, "no-such-bucket", "logs"))
    spec = {"type": "s3_zip", "bucket": "no-such-bucket", "key": "druid/segments/ds/x", "S3Schema": "s3n"}
    calls = [
        lambda: storage.write("ds/x", io.BytesIO(b"x")),
        lambda: storage.open(spec),
        lambda: storage.list("ds"),
        lambda: storage.delete(spec),
        lambda: storage.copy(spec, "ds/y"),
        lambda: logs.push_log("t", io.BytesIO(b"x")),
        lambda: logs.read_log("t"),
        lambda: logs.read_report("t"),
        lambda: logs.kill_older_than(0),
    ]
    for call in calls:
        with pytest.raises(ObjectStoreError, match=r"bucket \[no-such-bucket\]") as info:
            call()
        assert "key [" in str(info.value) and isinstance(info.value, OSError)
    with pytest.raises(ObjectStoreError, match=r"S3 bucket \[no-such-bucket\] does not exist"):
        location(s3_env, "no-such-bucket").check()


def test_unreachable_endpoint_names_endpoint_bucket_and_key(s3_env: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    loc = location(s3_env, "some-bucket", endpoint=dead)
    storage = S3DeepStorage(loc, loc.client(attempts=1, connect_timeout=1))
    with pytest.raises(ObjectStoreError) as info:
        storage.write("ds/x", io.BytesIO(b"x"))
    assert f"S3 endpoint [{dead}] unreachable" in str(info.value)
    assert "key [druid/segments/ds/x] in bucket [some-bucket]" in str(info.value)
    with pytest.raises(ObjectStoreError, match="unreachable"):
        loc.check()


def test_missing_credentials_are_named(s3_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3DeepStorage(location(s3_env, "some-bucket"))
    with pytest.raises(ObjectStoreError, match=r"No AWS credentials found .*key \[druid/segments/ds/x\] in bucket"):
        storage.write("ds/x", io.BytesIO(b"x"))


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second moto server that checks credentials (IAM), with one user allowed S3."""
    server = MotoServer(tmp_path_factory.mktemp("moto-auth"), auth_after=3).start()
    try:
        server.make_access_key()
        yield server
    finally:
        server.stop()


def test_wrong_credentials_name_bucket_and_key(auth_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in auth_server.env().items():
        monkeypatch.setenv(key, value)
    bucket = auth_server.new_bucket()
    good = S3DeepStorage(location(auth_server, bucket))
    spec = good.write("ds/x", io.BytesIO(b"x"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    bad = location(auth_server, bucket)
    refused = rf"S3 refused the credentials \(\w+\) for \w+ of key \[.*\] in bucket \[{bucket}\]"
    with pytest.raises(ObjectStoreError, match=refused):
        S3DeepStorage(bad).open(spec)
    with pytest.raises(ObjectStoreError, match="refused the credentials"):
        bad.check()


def test_a_failed_large_write_leaves_no_object_and_no_open_upload(s3_env: Any) -> None:
    """A source that breaks after several multipart parts: the upload is aborted, nothing appears."""
    bucket = s3_env.new_bucket()
    storage = S3DeepStorage(location(s3_env, bucket))

    class BreaksLate(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            if self.served >= 20 << 20:
                raise OSError("disk went away")
            n = len(b)
            b[:n] = b"x" * n
            self.served += n
            return n

    with pytest.raises(OSError, match="disk went away"):
        storage.write("ds/big", BreaksLate())  # type: ignore[arg-type]
    assert s3_env.keys(bucket) == []
    assert s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
