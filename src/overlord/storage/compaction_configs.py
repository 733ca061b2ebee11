"""Automatic-compaction configs, one row per data source, in the metadata store."""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from overlord.core.auto_compaction import CompactionConfig
from overlord.storage.metadata import MetadataStore, compaction_configs


class CompactionConfigs:
    def __init__(self, store: MetadataStore) -> None:
        self.engine = store.engine

    def put(self, config: CompactionConfig) -> None:
        payload = orjson.dumps(config.to_json()).decode()
        with self.engine.begin() as conn:
            conn.execute(compaction_configs.delete().where(compaction_configs.c.datasource == config.data_source))
            conn.execute(compaction_configs.insert().values(datasource=config.data_source, payload=payload))

    def get(self, datasource: str) -> CompactionConfig | None:
        q = sa.select(compaction_configs.c.payload).where(compaction_configs.c.datasource == datasource)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return CompactionConfig.parse(orjson.loads(row[0])) if row else None

    def all(self) -> list[CompactionConfig]:
        q = sa.select(compaction_configs.c.payload).order_by(compaction_configs.c.datasource)
        with self.engine.connect() as conn:
            return [CompactionConfig.parse(orjson.loads(r[0])) for r in conn.execute(q)]

    def delete(self, datasource: str) -> bool:
        with self.engine.begin() as conn:
            q = compaction_configs.delete().where(compaction_configs.c.datasource == datasource)
            return bool(conn.execute(q).rowcount)
