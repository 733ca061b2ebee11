"""Deep storage in an S3-compatible bucket (Druid's ``druid.storage.type=s3``).

Segments go to ``<baseKey>/<key>`` in ``druid.storage.bucket``. Load specs keep Druid's S3 shape,
``{"type": "s3_zip", "bucket": ..., "key": ..., "S3Schema": "s3n"}``, as Druid's S3 pusher writes
them; the object at ``key`` is our Parquet segment file (``.../index.parquet``), not a zip, which
Druid's own S3 load spec also accepts for non-zip keys. A load spec is trusted only when it names
this bucket and a plain key below the base key.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, BinaryIO, cast

from overlord.core.protocols import LoadSpec
from overlord.errors import InvalidInput
from overlord.storage.deep_storage import COPY_CHUNK, clean_key
from overlord.storage.s3 import S3Location, S3Objects, clean_object_key, delete_keys, list_keys, s3_errors

LOAD_SPEC_TYPE = "s3_zip"
SPOOL_BYTES = 32 << 20  # an opened segment stays in memory up to this size, then spills to a temp file


class S3DeepStorage(S3Objects):
    """Segment files as objects below a base key in one bucket."""

    load_spec_type = LOAD_SPEC_TYPE

    def __init__(self, location: S3Location, client: Any = None) -> None:
        super().__init__(location, client)
        self.bucket = location.bucket

    # -- keys and load specs -----------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.location.key(clean_key(key))

    def _spec(self, object_key: str) -> LoadSpec:
        return {"type": LOAD_SPEC_TYPE, "bucket": self.bucket, "key": object_key, "S3Schema": "s3n"}

    def key_of(self, load_spec: LoadSpec) -> str:
        """The object key a load spec names, refused unless it is a plain key below this base key."""
        if not isinstance(load_spec, dict) or load_spec.get("type") != LOAD_SPEC_TYPE:
            raise InvalidInput(f"Invalid load spec {load_spec!r}: expected type [{LOAD_SPEC_TYPE}]")
        bucket, key = load_spec.get("bucket"), load_spec.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"Invalid load spec {load_spec!r}: missing [key]")
        if bucket != self.bucket:
            raise InvalidInput(f"Load spec bucket [{bucket}] is not deep storage's bucket [{self.bucket}]")
        clean_object_key(key, "load spec key")
        if not self.location.under_prefix(key) or key == self.location.prefix:
            raise InvalidInput(
                f"Load spec key [{key}] is outside deep storage [s3://{self.bucket}/{self.location.prefix}]"
            )
        return key

    def contains(self, load_spec: LoadSpec) -> bool:
        try:
            self.key_of(load_spec)
        except InvalidInput:
            return False
        return True

    # -- objects -------------------------------------------------------------------------------------

    def write(self, key: str, source: str | BinaryIO) -> LoadSpec:
        """One PUT (multipart for large files, aborted on failure): the object appears whole or not at all."""
        dst = self._key(key)
        with s3_errors(self.location, "PutObject", dst):
            if isinstance(source, str):
                self._client.upload_file(source, self.bucket, dst)
            else:
                self._client.upload_fileobj(source, self.bucket, dst)
        return self._spec(dst)

    def copy(self, load_spec: LoadSpec, key: str) -> LoadSpec:
        """A server-side copy: the bytes never pass through this process (one CopyObject, up to 5 GB)."""
        src = self.key_of(load_spec)
        dst = self._key(key)
        with s3_errors(self.location, "CopyObject", src):
            self._client.copy_object(CopySource={"Bucket": self.bucket, "Key": src}, Bucket=self.bucket, Key=dst)
        return self._spec(dst)

    def open(self, load_spec: LoadSpec) -> BinaryIO:
        """The whole object, downloaded once into a seekable spool (Parquet readers seek to the footer)."""
        key = self.key_of(load_spec)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115  (the caller closes it)
        try:
            with s3_errors(self.location, "GetObject", key):
                body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
                with body:
                    shutil.copyfileobj(body, spool, COPY_CHUNK)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return cast(BinaryIO, spool)

    def delete(self, load_spec: LoadSpec) -> None:
        key = self.key_of(load_spec)
        with s3_errors(self.location, "DeleteObject", key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def _under(self, key_prefix: str) -> list[str]:
        root = self._key(key_prefix)
        keys = (o["Key"] for o in list_keys(self._client, self.location, root))
        return sorted(k for k in keys if k == root or k.startswith(root + "/"))

    def delete_prefix(self, key_prefix: str) -> int:
        return delete_keys(self._client, self.location, self._under(key_prefix))

    def list(self, key_prefix: str) -> list[LoadSpec]:
        return [self._spec(k) for k in self._under(key_prefix)]
