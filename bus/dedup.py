"""Idempotency by message id: each consumer remembers what it has finished.

The scope of a memory is the queue the message was consumed from, so that the router and each
subscriber's delivery remember separately. An id is remembered only once its effect is safe
(outputs confirmed or committed), and before the input is acknowledged: a crash in between
makes the broker redeliver, and the redelivery is recognised and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Column, DateTime, Engine, String, Table, delete, select

from bus.db import IdempotentInsert, metadata, utcnow

processed_message = Table(
    "processed_message",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("message_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
)


class Deduplicator:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = IdempotentInsert(engine, processed_message)

    def seen(self, scope: str, ids: Iterable[str]) -> set[str]:
        """Those of `ids` already finished in `scope`: one query for a whole batch."""
        ids = list(ids)
        if not ids:
            return set()
        query = select(processed_message.c.message_id).where(
            processed_message.c.scope == scope, processed_message.c.message_id.in_(ids)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record (scope, message id) pairs as finished, in one transaction."""
        now = utcnow()
        rows = [{"scope": s, "message_id": m, "processed_at": now} for s, m in pairs]
        if rows:
            with self.engine.begin() as conn:
                self._insert(conn, rows)

    def prune(self, keep: timedelta) -> int:
        """Forget ids older than `keep`; returns how many. A redelivery older than that is
        no longer recognised, so `keep` must exceed any plausible outage plus retry time."""
        with self.engine.begin() as conn:
            return conn.execute(
                delete(processed_message).where(processed_message.c.processed_at < utcnow() - keep)
            ).rowcount
