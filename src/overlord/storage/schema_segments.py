"""Tables the segment store added after the first release, registered on the shared ``metadata_obj``.

They live here rather than in ``metadata.py`` so the task table's schema and the segment store's can
change independently; ``MetadataStore.create_schema`` imports this module so ``create_all`` makes them,
and creating a missing table is all an existing data directory needs.
"""

from __future__ import annotations

import sqlalchemy as sa

from overlord.storage.metadata import metadata_obj

datasource_metadata = sa.Table(
    "overlord_datasource_metadata",
    metadata_obj,
    sa.Column("datasource", sa.String(255), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
"""Druid's ``druid_dataSource`` table: one committed metadata record per data source (stream offsets)."""
