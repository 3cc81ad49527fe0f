"""Idempotency by message id: a stage claims each message id before it handles it.

The scope of a claim is the queue the message was consumed from, so that the router and each
subscriber's delivery claim separately. Claims for a whole batch are taken in one statement
(INSERT ... ON CONFLICT DO NOTHING RETURNING), before the batch is handled. A message whose
id is already claimed in its scope is a duplicate, and is acknowledged without being handled
again, unless:

- the broker marks it redelivered: whoever claimed it lost its channel before acknowledging,
  so the claim proves nothing and the message is handled again (a copy its first handling may
  have published is recognised by the next stage's claim);
- it comes back from a retry (attempt > 0) or is replayed by an operator.

A message dead-lettered gives its claim back, so that its sender may send it again, corrected,
with the same id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Column, DateTime, Engine, String, Table, delete, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from bus.db import HeldConnection, metadata, utcnow

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
