"""S3 settings: Druid's property names, and locations that refuse what S3 would misread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from overlord.config import load_settings
from overlord.errors import ConfigError
from overlord.runner import fork_server
from overlord.storage.s3 import S3Location


def test_druid_s3_properties_from_a_properties_file(tmp_path: Path) -> None:
    props = tmp_path / "runtime.properties"
    props.write_text(
        "druid.storage.type=s3\ndruid.storage.bucket=segs\ndruid.storage.baseKey=druid/segments\n"
        "druid.indexer.logs.type=s3\ndruid.indexer.logs.s3Bucket=logs\ndruid.indexer.logs.s3Prefix=druid/logs\n"
        "druid.s3.endpoint.url=http://127.0.0.1:9000\ndruid.s3.endpoint.signingRegion=eu-west-1\n"
        "druid.s3.enablePathStyleAccess=true\n"
    )
    s = load_settings(config_file=props, environ={})
    assert (s.storage_type, s.storage_bucket, s.storage_base_key) == ("s3", "segs", "druid/segments")
    assert (s.logs_type, s.logs_s3_bucket, s.logs_s3_prefix) == ("s3", "logs", "druid/logs")
    assert (s.s3_endpoint_url, s.s3_signing_region, s.s3_path_style) == ("http://127.0.0.1:9000", "eu-west-1", True)
    env = load_settings(environ={"druid_storage_bucket": "other", "druid_s3_enablePathStyleAccess": "false"})
    assert env.storage_bucket == "other" and env.s3_path_style is False
    with pytest.raises(ConfigError, match=r"Invalid boolean \[maybe\]"):
        load_settings(environ={"druid_s3_enablePathStyleAccess": "maybe"})


def test_location_uri_round_trip_and_defaults() -> None:
    loc = S3Location("segs", "/druid/segments/", "http://127.0.0.1:9000", "eu-west-1", path_style=True)
    assert loc.prefix == "druid/segments" and loc.key("ds/x") == "druid/segments/ds/x"
    assert loc.uri.startswith("s3://segs/druid/segments?")
    assert S3Location.from_uri(loc.uri) == loc
    odd = S3Location("segs", "a b/ü+%/c", "https://s3.example.com")
    assert S3Location.from_uri(odd.uri) == odd
    bare = S3Location.from_uri("s3://segs")
    assert (bare.prefix, bare.endpoint, bare.region, bare.path_style) == ("", None, None, False)
    assert bare.key("ds/x") == "ds/x" and bare.under_prefix("anything")


@pytest.mark.parametrize("bucket", ["", "A_B", "x", "bad/bucket", "-starts-with-dash"])
def test_bad_bucket_names_are_config_errors(bucket: str) -> None:
    with pytest.raises(ConfigError, match="Invalid S3 bucket name"):
        S3Location(bucket)


@pytest.mark.parametrize("prefix", ["a/../b", "a//b", "./a", "a/."])
def test_prefixes_s3_could_misread_are_config_errors(prefix: str) -> None:
    with pytest.raises(ConfigError, match="S3 key prefix"):
        S3Location("segs", prefix)


def test_fork_server_preloads_boto3_only_for_s3() -> None:
    assert "overlord.storage.s3_warm" not in fork_server.preload(fork_server.HEAVY, s3=False)
    assert fork_server.preload(fork_server.HEAVY, s3=True)[-2:] == [
        "overlord.storage.s3_warm",
        "overlord.runner.gc_freeze",
    ]
    assert "overlord.storage.s3_warm" not in fork_server.preload(fork_server.LEAN, s3=True)  # its peons use no S3
    with pytest.raises(ConfigError, match="Invalid S3 URI"):
        S3Location.from_uri("s3:///no-bucket")


def test_without_boto3_start_up_refuses_and_a_task_fails_with_an_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from overlord.errors import ObjectStoreError
    from overlord.storage.s3_deep_storage import S3DeepStorage

    monkeypatch.setitem(sys.modules, "botocore.config", None)  # import fails as if boto3 were absent
    loc = S3Location("segs", "base")
    with pytest.raises(ConfigError, match=r"pip install 'overlord\[s3\]'"):
        loc.check()
    with pytest.raises(ObjectStoreError, match=r"S3 storage needs boto3.*bucket \[segs\]"):
        S3DeepStorage(loc).list("ds")
