"""Dynamic configs (Druid's ``druid_config``) and their audit trail (``druid_audit``) in the metadata store.

Registered on the shared ``metadata_obj``: ``create_all`` makes the two tables in an existing data
directory, so no schema version changes. A write stores the new value and its audit entry in one
transaction, so the history never misses a change that took effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from overlord.isotime import Interval
from overlord.storage.metadata import MetadataStore, metadata_obj

configs = sa.Table(
    "overlord_config",
    metadata_obj,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
)

audit = sa.Table(
    "overlord_audit",
    metadata_obj,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("audit_key", sa.String(255), nullable=False),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("ip", sa.String(255), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_overlord_audit_key_type_created", "audit_key", "type", "created_ms"),
)


@dataclass(frozen=True)
class AuditInfo:
    """Who changed a config and why (Druid's ``X-Druid-Author`` and ``X-Druid-Comment`` headers)."""

    author: str = ""
    comment: str = ""
    ip: str = ""


@dataclass(frozen=True)
class AuditEntry:
    key: str
    type: str
    info: AuditInfo
    created_ms: int
    payload: str


class ConfigStore:
    """Named JSON configs with an audit entry per change."""

    def __init__(self, store: MetadataStore) -> None:
        self.engine = store.engine

    def get(self, name: str) -> Any | None:
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(configs.c.payload).where(configs.c.name == name)).scalar()
        return orjson.loads(text) if text is not None else None

    def set(self, name: str, value: Any, info: AuditInfo, now_ms: int) -> None:
        payload = orjson.dumps(value).decode()
        with self.engine.begin() as conn:
            conn.execute(configs.delete().where(configs.c.name == name))
            conn.execute(configs.insert().values(name=name, payload=payload))
            conn.execute(
                audit.insert().values(
                    audit_key=name,
                    type=name,
                    author=info.author,
                    comment=info.comment,
                    ip=info.ip,
                    created_ms=now_ms,
                    payload=payload,
                )
            )

    def history(self, name: str, *, interval: Interval | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Newest first: the last ``limit`` entries, or those made within ``interval``."""
        q = sa.select(audit).where(audit.c.audit_key == name, audit.c.type == name)
        if interval is not None:
            q = q.where(audit.c.created_ms >= interval.start, audit.c.created_ms < interval.end)
        q = q.order_by(audit.c.created_ms.desc(), audit.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            AuditEntry(
                r["audit_key"], r["type"], AuditInfo(r["author"], r["comment"], r["ip"]), r["created_ms"], r["payload"]
            )
            for r in rows
        ]
