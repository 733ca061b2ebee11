"""Imported last by a fork server: everything imported before it moves out of the collector's reach.

A forked peon inherits the fork server's heap copy-on-write. Without this, the peon's first collections
walk the whole inherited heap (tens of MB of module objects), writing to every page they touch, so
the kernel copies those pages into every peon: about a third of a noop peon's CPU. ``gc.freeze()``
puts the inherited objects in the permanent generation, which collections skip (see the ``gc`` docs
on fork without exec).
"""

from __future__ import annotations

import gc

gc.collect()  # the garbage of the imports, so its pages are not frozen along with the rest
gc.freeze()
