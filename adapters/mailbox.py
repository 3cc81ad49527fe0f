"""Deliveries that a department pulls (SOAP Fetch and Ack), leased from the inbox table.

A department that cannot host a service keeps the default outbound, `inbox`: the deliver
stage stores its deliveries in the platform's `inbox` table, once per message id. `Fetch`
leases the oldest waiting ones: they are hidden for `GOVBUS_FETCH_VISIBILITY` seconds and
come back after that unless acknowledged, so a client that crashes between Fetch and Ack
loses nothing; it may see a message again (its `fetches` count says so) and must drop repeats
by message id. Acknowledged rows stay, with the time of the ack, for tracing.

Leases live in the database, not on a broker channel, so that any gateway process can answer
the Ack of a Fetch another one served, and a gateway restart loses no lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select, update

from bus.db import utcnow
from bus.deliver import inbox
from bus.errors import BusError

if TYPE_CHECKING:
    from bus.app import Context

MAX_FETCH = 500


class InvalidRequest(BusError):
    code = "invalid"


@dataclass(frozen=True, slots=True)
class Fetched:
    message_id: str
    correlation_id: str | None
    sender: str
    resource: str
    version: str
    operation: str
    body: bytes
    fetches: int  # 1 the first time; more means it was fetched before and not acknowledged


class Mailbox:
    """Fetch and Ack of one platform database's inbox. Safe to share between threads only
    through separate connections: each call checks one out of the engine's pool."""

    def __init__(self, context: Context) -> None:
        self.engine = context.engine
        self.visibility = timedelta(seconds=context.settings.fetch_visibility)
        self._postgres = self.engine.dialect.name == "postgresql"

    def fetch(self, department: str, max: int) -> list[Fetched]:
        """Lease up to `max` of the department's waiting deliveries, oldest first.

        Raises:
            InvalidRequest: `max` outside 1..500.
        """
        if not 1 <= max <= MAX_FETCH:
            raise InvalidRequest(f"max must be between 1 and {MAX_FETCH}, got {max}")
        now = utcnow()
        waiting = (
            select(inbox.c.id)
            .where(inbox.c.department == department, inbox.c.acked_at.is_(None),
                   or_(inbox.c.visible_at.is_(None), inbox.c.visible_at <= now))
            .order_by(inbox.c.id)
            .limit(max)
        )
        if self._postgres:
            # two gateways fetching for the same department at once get different messages
            waiting = waiting.with_for_update(skip_locked=True)
        statement = (
            update(inbox)
            .where(inbox.c.id.in_(waiting.scalar_subquery()))
            .values(visible_at=now + self.visibility, fetches=inbox.c.fetches + 1)
            .returning(inbox.c.id, inbox.c.message_id, inbox.c.correlation_id, inbox.c.sender, inbox.c.resource,
                       inbox.c.version, inbox.c.operation, inbox.c.body, inbox.c.fetches)
        )
        with self.engine.begin() as conn:
            rows = sorted(conn.execute(statement).all())  # RETURNING keeps no order
        return [Fetched(r.message_id, r.correlation_id, r.sender, r.resource, r.version, r.operation, bytes(r.body),
                        r.fetches) for r in rows]

    def ack(self, department: str, message_ids: Sequence[str]) -> list[str]:
        """Acknowledge deliveries by message id; they are not fetched again. Acking twice is
        harmless; ids that are not the department's are ignored.

        Returns the given ids that are acknowledged now (including those acked before)."""
        ids = sorted({m.strip() for m in message_ids if m and m.strip()})
        if not ids:
            return []
        if len(ids) > MAX_FETCH:
            raise InvalidRequest(f"at most {MAX_FETCH} ids per Ack, got {len(ids)}")
        mine = and_(inbox.c.department == department, inbox.c.message_id.in_(ids))
        with self.engine.begin() as conn:
            conn.execute(update(inbox).where(mine, inbox.c.acked_at.is_(None)).values(acked_at=utcnow()))
            done = set(conn.execute(select(inbox.c.message_id).where(mine, inbox.c.acked_at.is_not(None))).scalars())
        return [m for m in ids if m in done]

    def waiting(self, department: str) -> int:
        """How many deliveries the department has not acknowledged yet."""
        with self.engine.connect() as conn:
            return conn.execute(  # type: ignore[no-any-return]
                select(func.count()).select_from(inbox).where(inbox.c.department == department, inbox.c.acked_at.is_(None))
            ).scalar_one()
