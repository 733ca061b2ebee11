"""Which allocator Arrow uses while ingesting: jemalloc, unless the operator chose one.

pyarrow's wheels default to mimalloc, which returns freed memory to the OS within milliseconds and
maps new memory as transparent huge pages. Ingestion frees and reallocates tens of MiB per 8 MiB
input chunk, so with mimalloc each chunk faults in and zeroes fresh 2 MiB pages again: measured
0.8-1.5 kernel CPU-s per 1M wikiticker rows, against 0.5-0.9 with jemalloc (same user time, peak
RSS no higher; see benchmarks/RESULTS-ingest.md, 2026-12-02). Arrow buffers remember the pool
they came from, so switching the default while other buffers are alive is safe.
"""

from __future__ import annotations

import contextlib
import os
import threading

import pyarrow as pa

ENV = "ARROW_DEFAULT_MEMORY_POOL"  # Arrow's own setting; when set, the operator's choice stands
_lock = threading.Lock()
_done = False


def use_ingest_pool() -> str:
    """Make jemalloc the process's default Arrow pool (once); return the pool's backend name.

    Kept as is when ``ARROW_DEFAULT_MEMORY_POOL`` is set, when the default is not mimalloc (someone
    already chose), or when this pyarrow build has no jemalloc.
    """
    global _done
    with _lock:
        if not _done:
            _done = True
            if not os.environ.get(ENV) and pa.default_memory_pool().backend_name == "mimalloc":
                with contextlib.suppress(NotImplementedError):  # a build without jemalloc keeps its pool
                    pa.set_memory_pool(pa.jemalloc_memory_pool())
        return pa.default_memory_pool().backend_name
