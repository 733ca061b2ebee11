"""Deep storage and task logs rebuilt from the URI a peon receives: the same code on any machine.

``file:///abs/dir`` (or a plain path) is a local folder; ``s3://bucket/prefix?endpoint=...`` is S3,
whose client library (boto3, the ``s3`` extra) is imported only when a client is made.
"""

from __future__ import annotations

from pathlib import Path

from overlord.core.protocols import DeepStorage, TaskLogs
from overlord.storage.deep_storage import FsDeepStorage
from overlord.storage.s3 import SCHEME
from overlord.storage.s3_deep_storage import S3DeepStorage
from overlord.storage.s3_task_logs import S3TaskLogs
from overlord.storage.task_logs import FsTaskLogs


def open_deep_storage(uri: str) -> DeepStorage:
    if uri.startswith(SCHEME):
        return S3DeepStorage.from_uri(uri)
    return FsDeepStorage.from_uri(uri)


def open_task_logs(uri: str | Path) -> TaskLogs:
    if str(uri).startswith(SCHEME):
        return S3TaskLogs.from_uri(str(uri))
    return FsTaskLogs.from_uri(uri)
