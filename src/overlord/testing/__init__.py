"""In-memory implementations of the core protocols, for tests and embedding (see ``core/protocols.py``)."""

from overlord.testing.lease import InMemoryLeaseStore
from overlord.testing.runner import InMemoryTaskRunner
from overlord.testing.storage import InMemoryDeepStorage, InMemoryTaskLogs
from overlord.testing.stores import InMemorySegmentStore, InMemoryTaskStore

__all__ = [
    "InMemoryDeepStorage",
    "InMemoryLeaseStore",
    "InMemorySegmentStore",
    "InMemoryTaskLogs",
    "InMemoryTaskRunner",
    "InMemoryTaskStore",
]
