"""Fixtures of the contract suites (backends in ``backends.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from overlord.storage.metadata import MetadataStore
from tests.integration.backends import SQL_BACKENDS, open_sql_store


@pytest.fixture(scope="module")
def pg_module_url() -> Iterator[str]:
    """One PostgreSQL database per test module, cloned from the template (skipped without PostgreSQL)."""
    from tests.pg import drop_database, fresh_database_url

    url = fresh_database_url()
    yield url
    drop_database(url)


@pytest.fixture(params=SQL_BACKENDS)
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """An empty SQL metadata store, for what only the SQL stores promise (restarts, concurrent writers)."""
    store = open_sql_store(request.param, request, tmp_path)
    yield store
    store.close()
