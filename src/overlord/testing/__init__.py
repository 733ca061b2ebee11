"""In-memory implementations of the core protocols, for tests and embedding (see ``core/protocols.py``)."""

from overlord.testing.runner import InMemoryTaskRunner
from overlord.testing.storage import InMemoryDeepStorage, InMemoryTaskLogs

__all__ = ["InMemoryDeepStorage", "InMemoryTaskLogs", "InMemoryTaskRunner"]
