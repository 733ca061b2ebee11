"""Imported last by a fork server: readies its heap for forking peons, which inherit it copy-on-write.

Without ``gc.freeze()``, a peon's first collections walk the whole inherited heap (tens of MB of
module objects), writing to every page they touch, so the kernel copies those pages into every peon:
about a third of a noop peon's CPU. ``gc.freeze()`` puts the inherited objects in the permanent
generation, which collections skip (see the ``gc`` docs on fork without exec).

Before that: httpx's first-client costs are paid here once (in a server whose tasks use it), and the
standard library's after-fork hooks (threading's and logging's) are run a few times, while the server
has only its main thread (what they reset is then in the state a fresh child finds it in): CPython
rewrites a function's bytecode in place once it has run a few times, so each hook is specialized once
here instead of in every peon, where each such write would copy a page (~30 pages a peon).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable

HOOK_CALLS = 16  # over CPython's quickening delay (3.11: a function is specialized at its 8th call)


def _child_hooks() -> list[Callable[[], object]]:
    names = [(threading, "_after_fork"), (logging, "_after_at_fork_child_reinit_locks")]
    return [getattr(module, name) for module, name in names if hasattr(module, name)]


def rehearse_child_hooks() -> None:
    if threading.active_count() != 1 or threading.current_thread() is not threading.main_thread():
        return  # another thread may hold the locks these reset
    for hook in _child_hooks():
        for _ in range(HOOK_CALLS):
            hook()


if "httpx" in sys.modules:  # a server whose peons call the Overlord (the lean one's never import httpx)
    import httpx

    httpx.Client(verify=False).close()  # its first-client costs (OpenSSL configuration, imports: ~20 ms)
rehearse_child_hooks()
gc.collect()  # the garbage of the imports, so its pages are not frozen along with the rest
gc.freeze()
