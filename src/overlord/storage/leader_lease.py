"""The leader lease in PostgreSQL, and the fence every write transaction of the metadata store passes.

One row (``overlord_leader_lease``) says who leads, at which URL, in which term (``epoch``) and until
when, by the database's clock (so Overlords with skewed clocks agree). Taking it over is one
``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` statement that bumps the epoch, so two
followers can never both win. The lease is renewed on its own small engine with short statement and
lock timeouts, so a renewal never waits behind the store's own work or hangs on a dead server.

The fence (``install_fence``) is one hook on the metadata store's engine: the first write statement
of every transaction first reads the lease row ``FOR SHARE`` and proceeds only when it still names
this node's term. The shared row lock makes the check hold until the commit: a takeover's epoch bump
waits for write transactions under way, and a write that starts after the bump sees it and is
refused (``NotLeader``), which steps the node down. A leader frozen in the middle of a write
transaction (SIGSTOP) cannot block a takeover for long: PostgreSQL ends sessions idle in a
transaction after half a lease (``idle_in_transaction_session_timeout``), rolling the write back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from overlord.core.protocols import LeaseView
from overlord.errors import NotLeader
from overlord.storage.metadata import metadata_obj

if TYPE_CHECKING:
    from overlord.core.protocols import LeaseStore

log = logging.getLogger(__name__)

LEASE_NAME = "overlord"

leader_lease = sa.Table(
    "overlord_leader_lease",
    metadata_obj,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("url", sa.String(1024), nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
)

overlord_nodes = sa.Table(
    "overlord_nodes",
    metadata_obj,
    sa.Column("node_id", sa.String(255), primary_key=True),
    sa.Column("url", sa.String(1024), nullable=False),
    sa.Column("seen_ms", sa.BigInteger, nullable=False),
)

_NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

_CAMPAIGN = sa.text(f"""
    INSERT INTO overlord_leader_lease AS l (name, holder, url, epoch, expires_ms)
    VALUES (:name, :node, :url, 1, {_NOW_MS} + :dur)
    ON CONFLICT (name) DO UPDATE
       SET holder = EXCLUDED.holder, url = EXCLUDED.url, epoch = l.epoch + 1, expires_ms = EXCLUDED.expires_ms
     WHERE l.expires_ms <= {_NOW_MS} OR l.holder = EXCLUDED.holder
    RETURNING l.holder, l.url, l.epoch, l.expires_ms - {_NOW_MS}
""")
_READ = sa.text(f"SELECT holder, url, epoch, expires_ms - {_NOW_MS} FROM overlord_leader_lease WHERE name = :name")
_RENEW = sa.text(f"""
    UPDATE overlord_leader_lease SET expires_ms = {_NOW_MS} + :dur
     WHERE name = :name AND holder = :node AND epoch = :epoch
""")
_RELEASE = sa.text(f"""
    UPDATE overlord_leader_lease SET expires_ms = {_NOW_MS} - 1
     WHERE name = :name AND holder = :node AND epoch = :epoch
""")
_ANNOUNCE = sa.text(f"""
    INSERT INTO overlord_nodes (node_id, url, seen_ms) VALUES (:node, :url, {_NOW_MS})
    ON CONFLICT (node_id) DO UPDATE SET url = EXCLUDED.url, seen_ms = EXCLUDED.seen_ms
""")
_MEMBERS = sa.text(f"SELECT url FROM overlord_nodes WHERE seen_ms >= {_NOW_MS} - :within ORDER BY url")
_FENCE = "SELECT holder, epoch FROM overlord_leader_lease WHERE name = 'overlord' FOR SHARE"
_WRITES = ("INSERT", "UPDATE", "DELETE")
_CHECKED = "overlord_fence_checked"


class SqlLeaseStore:
    """The leader lease on PostgreSQL; satisfies ``LeaseStore``."""

    def __init__(self, url: sa.URL | str, *, timeout_ms: int = 2_000) -> None:
        options = f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}"
        self.engine = sa.create_engine(
            url,
            pool_size=1,
            max_overflow=2,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, timeout_ms // 1000), "options": options},
        )

    @classmethod
    def supports(cls, engine: Engine) -> bool:
        return engine.dialect.name == "postgresql"

    def campaign(self, node_id: str, url: str, duration_ms: int) -> LeaseView:
        params = {"name": LEASE_NAME, "node": node_id, "url": url, "dur": duration_ms}
        with self.engine.begin() as conn:
            row = conn.execute(_CAMPAIGN, params).first() or conn.execute(_READ, params).first()
        assert row is not None
        return LeaseView(row[0], row[1], int(row[2]), int(row[3]))

    def renew(self, node_id: str, epoch: int, duration_ms: int) -> bool:
        params = {"name": LEASE_NAME, "node": node_id, "epoch": epoch, "dur": duration_ms}
        with self.engine.begin() as conn:
            return conn.execute(_RENEW, params).rowcount == 1

    def release(self, node_id: str, epoch: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(_RELEASE, {"name": LEASE_NAME, "node": node_id, "epoch": epoch})

    def read(self) -> LeaseView | None:
        with self.engine.connect() as conn:
            row = conn.execute(_READ, {"name": LEASE_NAME}).first()
        return LeaseView(row[0], row[1], int(row[2]), int(row[3])) if row is not None else None

    def announce(self, node_id: str, url: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_ANNOUNCE, {"node": node_id, "url": url})

    def members(self, within_ms: int) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(_MEMBERS, {"within": within_ms})]

    def close(self) -> None:
        self.engine.dispose()


class Fence(Protocol):
    """What the write hook asks the node (``overlord.core.leadership.Leadership``)."""

    def fence_token(self) -> tuple[str, int] | None: ...

    def fenced(self, reason: str) -> None: ...


def install_fence(engine: Engine, fence: Fence, *, idle_in_transaction_ms: int) -> None:
    """Make every write transaction on ``engine`` check, in the same transaction, that this node still
    holds the lease in its term; otherwise the write is refused with NotLeader and the node steps down."""

    @sa.event.listens_for(engine, "connect")
    def _session(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"SET idle_in_transaction_session_timeout = {int(idle_in_transaction_ms)}")
        cur.close()
        dbapi_conn.commit()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _check(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        txn = conn.get_transaction()
        if (txn is not None and conn.info.get(_CHECKED) is txn) or statement.lstrip()[:6].upper() not in _WRITES:
            return
        token = fence.fence_token()
        if token is None:
            raise NotLeader("This Overlord is not the leader: it may not write to the metadata store")
        cur = conn.connection.dbapi_connection.cursor()
        try:
            cur.execute(_FENCE)
            row = cur.fetchone()
        finally:
            cur.close()
        found = (row[0], int(row[1])) if row is not None else None
        if found != token:
            why = f"the lease names {found[0]} in term {found[1]}" if found else "the lease is gone"
            fence.fenced(f"{why}, not this Overlord's term {token[1]}")
            raise NotLeader(f"This Overlord is no longer the leader ({why}); nothing was written")
        conn.info[_CHECKED] = txn  # checked once per transaction: the row lock holds until its end

    @sa.event.listens_for(engine, "commit")
    def _committed(conn: Any) -> None:
        conn.info.pop(_CHECKED, None)

    @sa.event.listens_for(engine, "rollback")
    def _rolled_back(conn: Any) -> None:
        conn.info.pop(_CHECKED, None)

    engine.dispose()  # connections made before the hook lack the session setting


if TYPE_CHECKING:

    def _satisfies_protocol(store: SqlLeaseStore) -> LeaseStore:
        return store
