"""Imported first by the lean fork server: keeps modules no peon uses out of its heap.

httpx imports its command-line entry point (click, rich, pygments: ~5 MB of heap, 0.2 s of imports)
inside ``try: ... except ImportError``; a None entry in ``sys.modules`` makes that import fail.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
