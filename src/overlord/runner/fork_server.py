"""The local runner's fork server: peons are forked from it with the task code already imported.

Its start is slow (it imports every task type), so ``overlord start`` starts it before importing
the service, and the two imports overlap on separate cores; the runner's own start then finds it
running. Starting it again is a no-op, so both callers may.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver

PRELOAD = ["__main__", "overlord.cli", "overlord.runner.peon", "overlord.tasks.builtin"]
S3_PRELOAD = ["overlord.storage.s3_warm"]  # boto3 and its endpoint data, for peons on S3 storage
LAST = ["overlord.runner.gc_freeze"]  # after everything else: freezes what was imported


def preload(*, s3: bool) -> list[str]:
    """What the fork server imports before forking its first peon."""
    return [*PRELOAD, *(S3_PRELOAD if s3 else []), *LAST]


def start(*, s3: bool) -> None:
    """Start the fork server unless it runs already (blocks until it is spawned, not until it has imported)."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload(s3=s3))
    multiprocessing.forkserver.ensure_running()
