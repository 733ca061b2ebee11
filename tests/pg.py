"""Finding PostgreSQL for tests: ``OVERLORD_TEST_PG_URL`` or 127.0.0.1:5432 (trust auth, user postgres).

Each test gets a fresh database cloned from a template made once per run (as procrastinate does).
Where PostgreSQL is missing the tests are skipped with the reason, except under ``CI``, where they fail.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEMPLATE = f"overlord_test_template_{os.getpid()}"


def admin_url() -> str:
    url = os.environ.get("OVERLORD_TEST_PG_URL", DEFAULT_URL)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _admin_engine() -> sa.Engine:
    return sa.create_engine(admin_url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def require_postgres() -> sa.Engine:
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        engine.dispose()
        reason = f"PostgreSQL not reachable at {admin_url()}: {type(exc).__name__}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so the PostgreSQL leg may not be skipped)")
        pytest.skip(reason)
    return engine


_template_ready = False


def fresh_database_url() -> str:
    """A new, empty database with the schema, cloned from a per-run template."""
    global _template_ready
    from overlord.storage.metadata import MetadataStore

    engine = require_postgres()
    try:
        with engine.connect() as conn:
            if not _template_ready:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
                conn.execute(sa.text(f'CREATE DATABASE "{TEMPLATE}"'))
                store = MetadataStore.from_url(_with_db(TEMPLATE))
                store.close()
                _template_ready = True
            name = f"overlord_test_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    finally:
        engine.dispose()
    return _with_db(name)


def drop_database(url: str) -> None:
    name = sa.make_url(url).database
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def drop_template() -> None:
    if _template_ready:
        drop_database(_with_db(TEMPLATE))


def _with_db(name: str) -> str:
    return sa.make_url(admin_url()).set(database=name).render_as_string(hide_password=False)
