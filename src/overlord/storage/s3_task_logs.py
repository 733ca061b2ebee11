"""Task logs and reports in an S3-compatible bucket (Druid's ``druid.indexer.logs.type=s3``).

Druid's layout: ``<s3Prefix>/<taskId>/log`` and ``<s3Prefix>/<taskId>/report.json`` in
``druid.indexer.logs.s3Bucket``. A push is one PUT, so readers see the old object or the new one;
reads stream ranges in chunks; retention judges objects by their LastModified time, as Druid does.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from overlord.storage.s3 import S3Objects, delete_keys, error_code, list_keys, s3_errors
from overlord.storage.task_logs import READ_CHUNK, check_task_id

LOG_NAME = "log"
REPORT_NAME = "report.json"


class S3TaskLogs(S3Objects):
    """Pushed task logs and reports as objects below ``s3Prefix``."""

    def _key(self, task_id: str, name: str) -> str:
        check_task_id(task_id)
        return self.location.key(f"{task_id}/{name}")

    def _put(self, key: str, source: str | BinaryIO) -> None:
        with s3_errors(self.location, "PutObject", key):
            if isinstance(source, str):
                self._client.upload_file(source, self.location.bucket, key)
            else:
                self._client.upload_fileobj(source, self.location.bucket, key)

    def push_log(self, task_id: str, source: str | BinaryIO, *, finished: bool = False) -> None:
        self._put(self._key(task_id, LOG_NAME), source)

    def push_report(self, task_id: str, report: bytes) -> None:
        self._put(self._key(task_id, REPORT_NAME), io.BytesIO(bytes(report)))

    def read_log(self, task_id: str, offset: int = 0) -> Iterator[bytes] | None:
        """Druid's offsets map onto HTTP ranges: ``bytes=N-`` from byte N, ``bytes=-N`` for the last N."""
        key = self._key(task_id, LOG_NAME)
        extra = {"Range": f"bytes={offset}-" if offset > 0 else f"bytes=-{-offset}"} if offset else {}
        try:
            with s3_errors(self.location, "GetObject", key):
                body = self._client.get_object(Bucket=self.location.bucket, Key=key, **extra)["Body"]
        except FileNotFoundError:
            return None
        except OSError as exc:
            if error_code(exc) == "InvalidRange":  # the object exists; the range starts at or past its end
                return iter(())
            raise
        return _stream(body)

    def read_report(self, task_id: str) -> bytes | None:
        key = self._key(task_id, REPORT_NAME)
        try:
            with s3_errors(self.location, "GetObject", key):
                body = self._client.get_object(Bucket=self.location.bucket, Key=key)["Body"]
                with body:
                    return bytes(body.read())
        except FileNotFoundError:
            return None

    def delete(self, task_id: str) -> None:
        delete_keys(self._client, self.location, [self._key(task_id, LOG_NAME), self._key(task_id, REPORT_NAME)])

    def kill_older_than(self, cutoff_ms: int) -> int:
        root = self.location.key("")
        doomed = [
            o["Key"]
            for o in list_keys(self._client, self.location, root)
            if o["Key"].endswith((f"/{LOG_NAME}", f"/{REPORT_NAME}"))
            and int(o["LastModified"].timestamp() * 1000) < cutoff_ms
        ]
        return delete_keys(self._client, self.location, doomed)


def _stream(body: Any) -> Iterator[bytes]:
    try:
        while chunk := body.read(READ_CHUNK):
            yield bytes(chunk)
    finally:
        body.close()
