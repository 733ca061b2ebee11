"""An S3-compatible server for tests: moto's server mode, a separate process bound to 127.0.0.1.

Credentials reach every process the standard way, through environment variables (``env()``), and
the machine's own ``~/.aws`` files are masked so a developer's profile never leaks into a test.
Each test makes its own bucket (``new_bucket``), so one server serves the whole run. Where moto is
not installed the tests skip with the reason, except under ``CI``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ACCESS_KEY = "overlord-test-key"
SECRET_KEY = "overlord-test-secret"
REGION = "us-east-1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_moto() -> None:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        reason = f"moto[server] and boto3 are needed for the S3 tests: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so the S3 tests may not be skipped)")
        pytest.skip(reason)


@dataclass
class MotoServer:
    """``moto_server`` on a free loopback port; ``auth_after`` turns on moto's IAM checks after that
    many unauthenticated calls (then only keys made through ``make_access_key`` are accepted)."""

    workdir: Path
    auth_after: int | None = None
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        require_moto()
        env = {**os.environ, **self.env()}
        if self.auth_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.auth_after)
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with (self.workdir / f"moto-{self.port}.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / f"moto-{self.port}.log").read_text()
            try:
                if httpx.get(f"{self.endpoint}/moto-api/data.json", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def env(self) -> dict[str, str]:
        """The credential chain every process of a test uses: environment variables only."""
        missing = str(self.workdir / "no-such-aws-file")
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, **creds: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=creds.get("key", self.access_key),
            aws_secret_access_key=creds.get("secret", self.secret_key),
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"ovl-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents") or ())

    def drop_bucket(self, bucket: str) -> None:
        client = self.client()
        for key in self.keys(bucket):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)

    def make_access_key(self) -> None:
        """With IAM checks on: a user allowed everything on S3; its key becomes this server's key."""
        import boto3

        iam = boto3.session.Session().client(
            "iam", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="x"
        )
        iam.create_user(UserName="overlord")
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
        iam.put_user_policy(UserName="overlord", PolicyName="s3", PolicyDocument=policy)
        key = iam.create_access_key(UserName="overlord")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]


def s3_properties(server: MotoServer, *, bucket: str | None = None, logs_bucket: str | None = None) -> dict[str, str]:
    """Druid's properties, as environment variables, for S3 deep storage and/or S3 task logs."""
    props = {"druid_s3_endpoint_url": server.endpoint, "druid_s3_enablePathStyleAccess": "true"}
    if bucket:
        props |= {"druid_storage_type": "s3", "druid_storage_bucket": bucket, "druid_storage_baseKey": "druid/segments"}
    if logs_bucket:
        props |= {
            "druid_indexer_logs_type": "s3",
            "druid_indexer_logs_s3Bucket": logs_bucket,
            "druid_indexer_logs_s3Prefix": "druid/indexing-logs",
        }
    return props
