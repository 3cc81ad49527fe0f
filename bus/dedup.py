"""Idempotency by message id, in the scope of the queue a message was consumed from (so that
the router and each subscriber's delivery keep separate accounts). Two ways, by stage:

CLAIM, at the entry, where a sender may send the same message twice, at once, to two
competing workers: claims for a whole batch are taken in one statement (INSERT ... ON CONFLICT
DO NOTHING RETURNING) before it is handled, and a message whose id is claimed already is a
duplicate, acknowledged without being handled, unless the broker marks it redelivered
(whoever claimed it lost its channel before acknowledging: the claim proves nothing), or it
comes back from a retry or a replay. A message dead-lettered gives its claim back, so that
its sender may send it again, corrected, under the same id.

RECORD, inside, where only a redelivery makes a duplicate: ids are recorded after handling,
before the acknowledgement, batched; only a message that may be a duplicate (redelivered by
the broker, or marked so by the stage before it, which handled a redelivery) is looked up
before handling. The rest cost no database round trip on their way: measured here at 500
msg/s, a lookup per hop took p50 latency end to end from 7 to 18 ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Column, DateTime, Engine, String, Table, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from bus.db import HeldConnection, IdempotentInsert, metadata, utcnow

message_claim = Table(
    "message_claim",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("message_id", String(64), primary_key=True),
    Column("claimed_at", DateTime(timezone=True), nullable=False, index=True),
)


class Deduplicator:
    """Claims for one worker; not to be shared between threads (it holds a connection)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._claim = dialect.insert(message_claim).on_conflict_do_nothing().returning(message_claim.c.message_id)
        self._record = IdempotentInsert(engine, message_claim)
        # A claim lost in a PostgreSQL crash costs at most a duplicate that the next stage
        # recognises; not waiting for its WAL flush keeps a commit off each hop's latency.
        setup = ["SET synchronous_commit TO off"] if engine.dialect.name == "postgresql" else []
        self._held = HeldConnection(engine, setup)

    def claim(self, scope: str, ids: Iterable[str]) -> set[str]:
        """Claim `ids` in `scope`; returns those that were not claimed before."""
        now = utcnow()
        rows = [{"scope": scope, "message_id": m, "claimed_at": now} for m in dict.fromkeys(ids)]
        if not rows:
            return set()
        with self._held.transaction() as conn:
            return set(conn.execute(self._claim, rows).scalars())

    def seen(self, scope: str, ids: Iterable[str]) -> set[str]:
        """Those of `ids` claimed or recorded in `scope` already."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return set()
        query = select(message_claim.c.message_id).where(message_claim.c.scope == scope, message_claim.c.message_id.in_(ids))
        with self._held.transaction() as conn:
            return set(conn.execute(query).scalars())

    def record(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record (scope, message id) pairs as handled."""
        now = utcnow()
        rows = [{"scope": s, "message_id": m, "claimed_at": now} for s, m in dict.fromkeys(pairs)]
        if rows:
            with self._held.transaction() as conn:
                self._record(conn, rows)

    def release(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Give back (scope, message id) claims."""
        pairs = list(pairs)
        if pairs:
            with self._held.transaction() as conn:
                conn.execute(
                    delete(message_claim).where(tuple_(message_claim.c.scope, message_claim.c.message_id).in_(pairs))
                )

    def prune(self, keep: timedelta) -> int:
        """Forget claims older than `keep`; returns how many. A redelivery older than that is
        no longer recognised, so `keep` must exceed any plausible outage plus retry time."""
        with self._held.transaction() as conn:
            return conn.execute(delete(message_claim).where(message_claim.c.claimed_at < utcnow() - keep)).rowcount

    def close(self) -> None:
        self._held.close()
