"""What S3 deep storage and S3 task logs share: where the objects are, a client, and errors that name them.

An ``S3Location`` is a bucket, a key prefix and how to reach the endpoint; it travels to the peon as a
URI (``s3://bucket/prefix?endpoint=http://host:port&region=r&pathStyle=true``), never with secrets:
every process finds its credentials through the AWS SDK's standard chain (environment variables,
shared config and credentials files, instance roles).

boto3 rather than ``pyarrow.fs.S3FileSystem``: Arrow keeps a directory emulation on top of S3 (deleting
the last object of a "folder" writes an empty ``folder/`` marker object, so a kill leaves objects
behind) and completes a multipart upload when a failing writer is closed, so a half-written segment
would become visible. boto3 talks plain S3: objects appear whole or not at all, and deletes delete.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn, Self
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from overlord.errors import ConfigError, InvalidInput, ObjectStoreError

SCHEME = "s3://"
DELETE_BATCH = 1000  # S3's DeleteObjects limit
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_session_lock = threading.Lock()
_loader: Any = None

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403"}


def clean_object_key(key: str, what: str = "S3 key") -> str:
    """A key made only of plain segments: no empty, ``.`` or ``..`` part that a server might normalise."""
    parts = key.split("/") if isinstance(key, str) else []
    if not parts or any(p in ("", ".", "..") for p in parts) or "\x00" in key or "\\" in key:
        raise InvalidInput(f"Invalid {what} [{key!r}]: must be a relative path of plain segments")
    return key


@dataclass(frozen=True)
class S3Location:
    """A bucket and key prefix, plus how to reach the endpoint (Druid's ``druid.s3.*`` properties)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    path_style: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not _BUCKET.match(self.bucket):
            raise ConfigError(f"Invalid S3 bucket name [{self.bucket}]")
        prefix = self.prefix.strip("/")
        if prefix:
            try:
                clean_object_key(prefix, "S3 key prefix")
            except InvalidInput as exc:
                raise ConfigError(exc.message) from None
        object.__setattr__(self, "prefix", prefix)

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def under_prefix(self, key: str) -> bool:
        return not self.prefix or key.startswith(self.prefix + "/")

    @property
    def uri(self) -> str:
        query = {"endpoint": self.endpoint, "region": self.region, "pathStyle": "true" if self.path_style else None}
        text = urlencode({k: v for k, v in query.items() if v})
        return f"{SCHEME}{self.bucket}/{quote(self.prefix)}" + (f"?{text}" if text else "")

    @classmethod
    def from_uri(cls, uri: str) -> S3Location:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"Invalid S3 URI [{uri}]: expected s3://bucket/prefix")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            bucket=parts.netloc,
            prefix=unquote(parts.path).strip("/"),
            endpoint=query.get("endpoint") or None,
            region=query.get("region") or None,
            path_style=query.get("pathStyle", "").lower() == "true",
        )

    def client(self, *, attempts: int = 4, connect_timeout: float = 5.0) -> Any:
        """A boto3 S3 client; boto3 is the ``s3`` extra, imported only when S3 is configured."""
        try:
            from botocore.config import Config
        except ImportError:
            raise ConfigError("S3 storage needs boto3: pip install 'overlord[s3]'") from None
        config = Config(
            s3={"addressing_style": "path" if self.path_style else "auto"},
            connect_timeout=connect_timeout,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": attempts},
        )
        return boto3_session().client("s3", endpoint_url=self.endpoint, region_name=self.region, config=config)

    def lazy_client(self) -> Any:
        """A client for a storage's first use, inside a task: boto3 missing fails that use as an OSError."""
        try:
            return self.client()
        except ConfigError as exc:
            raise ObjectStoreError(f"{exc.message} (bucket [{self.bucket}])", bucket=self.bucket) from None

    def check(self) -> None:
        """Reach the bucket once (start-up): a missing bucket, refused credentials or a dead endpoint
        raise ObjectStoreError naming the bucket, never a later silent failure."""
        client = self.client(attempts=2, connect_timeout=3.0)
        with s3_errors(self, "HeadBucket", self.prefix or "/", bucket_404=True):
            client.head_bucket(Bucket=self.bucket)
        with s3_errors(self, "ListObjectsV2", self.prefix or "/"):
            client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(""), MaxKeys=1)


def boto3_session() -> Any:
    """A new boto3 session (credentials resolved afresh) sharing one per-process loader of service
    models, inherited by forked peons: a client then costs ~0.1 s instead of ~2 s on a busy machine."""
    import boto3.session
    import botocore.session

    global _loader
    core = botocore.session.get_session()
    with _session_lock:
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)


def warm_up() -> None:
    """Import boto3 and load S3's models without resolving credentials or touching the network
    (the fork server does this, so every peon forked from it makes its S3 clients at once)."""
    offline = {"endpoint_url": "http://127.0.0.1:9", "aws_access_key_id": "-", "aws_secret_access_key": "-"}
    boto3_session().client("s3", region_name="us-east-1", **offline)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError anywhere in the exception's chain."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return str(code)
        seen = seen.__cause__ or seen.__context__
    return None


def is_missing_key(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def raise_for(loc: S3Location, op: str, key: str, exc: BaseException, *, bucket_404: bool = False) -> NoReturn:
    """Turn a boto3 failure into ObjectStoreError whose message names the bucket and the key."""
    where = f"key [{key}] in bucket [{loc.bucket}]"
    code = error_code(exc)
    if code == "NoSuchBucket" or (bucket_404 and code in ("404", "NotFound")):
        message = f"S3 bucket [{loc.bucket}] does not exist ({op} of key [{key}])"
    elif code in _DENIED:
        message = f"S3 refused the credentials ({code}) for {op} of {where}; check the AWS credential chain"
    elif code is not None:
        message = f"S3 {op} of {where} failed: {code}: {exc}"
    elif type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        message = f"No AWS credentials found for {op} of {where} (environment, shared config files)"
    else:
        endpoint = loc.endpoint or "the AWS default endpoint"
        message = f"S3 endpoint [{endpoint}] unreachable for {op} of {where}: {exc}"
    raise ObjectStoreError(message, bucket=loc.bucket, key=key) from exc


@contextlib.contextmanager
def s3_errors(loc: S3Location, op: str, key: str, *, bucket_404: bool = False) -> Iterator[None]:
    """Every boto3 and transfer failure inside becomes an ObjectStoreError naming the bucket and key.

    Missing keys stay what callers expect (FileNotFoundError); errors of our own pass through.
    """
    try:
        yield
    except (ObjectStoreError, InvalidInput, FileNotFoundError):
        raise
    except Exception as exc:
        if not _from_boto(exc):
            raise
        if not bucket_404 and is_missing_key(exc):
            raise FileNotFoundError(f"s3://{loc.bucket}/{key}") from exc
        raise_for(loc, op, key, exc, bucket_404=bucket_404)


def _from_boto(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.split(".")[0] in ("botocore", "boto3", "s3transfer", "urllib3"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def list_keys(client: Any, loc: S3Location, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object whose key starts with ``prefix`` (paginated), as S3 returns them."""
    with s3_errors(loc, "ListObjectsV2", prefix):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
            yield from page.get("Contents") or ()


def delete_keys(client: Any, loc: S3Location, keys: list[str]) -> int:
    """Delete keys in batches of 1000; a key already gone is not an error."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        with s3_errors(loc, "DeleteObjects", batch[0]):
            answer = client.delete_objects(
                Bucket=loc.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise ObjectStoreError(
                f"S3 DeleteObjects of key [{first.get('Key')}] in bucket [{loc.bucket}] failed: "
                f"{first.get('Code')}: {first.get('Message')}",
                bucket=loc.bucket,
                key=first.get("Key"),
            )
    return len(keys)


class S3Objects:
    """What S3 deep storage and S3 task logs share: a location, and a client made on first use (a peon
    whose task never touches storage never pays for one)."""

    def __init__(self, location: S3Location, client: Any = None) -> None:
        self.location = location
        if client is not None:
            self.__dict__["_client"] = client

    @cached_property
    def _client(self) -> Any:
        return self.location.lazy_client()

    @classmethod
    def from_uri(cls, uri: str) -> Self:
        return cls(S3Location.from_uri(uri))

    @property
    def uri(self) -> str:
        return self.location.uri
