"""Named crash points for crash-safety testing: ``OVERLORD_FAILPOINTS=name[,name...]`` makes the
process kill itself with SIGKILL when it reaches one of them, exactly as a power cut would.

The crash tests start the service with a failpoint set, then restart it without and check that
nothing was lost, nothing ran twice and the start-up succeeded. Unset, a check costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(p.strip() for p in os.environ.get("OVERLORD_FAILPOINTS", "").split(",") if p.strip())

LAUNCHED_NOT_RECORDED = "launched-not-recorded"  # a peon is forked, RUNNING is not written yet
RECORDED_NOT_RELEASED = "recorded-not-released"  # RUNNING is written, the peon still waits at its gate
COMPLETED_NOT_CLEANED = "completed-not-cleaned"  # the completion is committed, the clean-up not done


def hit(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
