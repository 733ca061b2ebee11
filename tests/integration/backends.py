"""Backends for the contract suites: every store protocol runs on SQLite, PostgreSQL and memory.

PostgreSQL legs skip locally when it is not reachable (with the reason) and fail under ``CI``. Each
test module gets one database cloned from the per-run template (``tests/pg.py``) and each test starts
from its tables emptied: cloning a database per test costs about a second, emptying it a few milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.storage.metadata import MetadataStore, metadata_obj

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ALL_BACKENDS = [*SQL_BACKENDS, "memory"]


def open_sql_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    """An empty SQL metadata store with the schema: a new SQLite file, or the module's PostgreSQL database."""
    if backend == "sqlite":
        return MetadataStore.from_url(f"sqlite:///{tmp_path / 'm.db'}")
    store = MetadataStore.from_url(request.getfixturevalue("pg_module_url"))
    with store.engine.begin() as conn:
        for table in metadata_obj.sorted_tables:  # DELETE, not TRUNCATE: on a few rows it is many times faster
            conn.execute(table.delete())
    return store
