"""Task tokens: the secret that lets a running task, and only it, call task actions and peon endpoints.

A token is made at each launch and handed to the peon through its launch gate; the store keeps only
its sha256, so a reader of the database (or of any listing) cannot act as the task.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from overlord.core.task import TaskRecord
from overlord.errors import Forbidden, Unauthenticated


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the store keeps of a task token (sha256, hex): enough to check one, useless to steal."""
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(active: Mapping[str, TaskRecord], task_id: str, token: str | None) -> TaskRecord:
    """The active task ``task_id`` if ``token`` is its token; 401 without a token, 403 otherwise."""
    if not token:
        raise Unauthenticated(taskId=task_id)
    rec = active.get(task_id)
    if rec is None or rec.token_hash is None or not hmac.compare_digest(rec.token_hash, token_digest(token)):
        raise Forbidden(f"The token is not the token of running task[{task_id}]", taskId=task_id)
    return rec
