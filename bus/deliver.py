"""The deliver stage: hands each subscriber's messages to how that department takes them.

How a department takes its deliveries is an `Outbound`, found by name in the
`govbus.adapters` entry-point group: the built-in `inbox` stores them in the platform's
database for the department to collect (or fetch over SOAP); adapters add SOAP push,
front-end tables and more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from sqlalchemy import Column, DateTime, Engine, Index, Integer, LargeBinary, String, Table, UniqueConstraint

from bus.broker import Incoming
from bus.db import HeldConnection, IdempotentInsert, db_error_text, metadata, utcnow
from bus.envelope import Envelope
from bus.errors import ConfigError, TransientError
from bus.names import Names
from bus.routing import Department
from bus.stage import DONE, RECORD, Delivery, Failed, Outcome
from bus.topology import Topology

if TYPE_CHECKING:
    from bus.app import Context


class Outbound(Protocol):
    """Where one department's deliveries go."""

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Deliver a batch; one result per envelope, None when it is safely delivered.

        Must be idempotent by message id: after a crash the same message may come again.
        Raising fails the whole batch (a TransientError is retried).
        """
        ...


inbox = Table(
    "inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("department", String(32), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("correlation_id", String(64)),
    Column("sender", String(32), nullable=False),
    Column("resource", String(64), nullable=False),
    Column("version", String(16), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
    # A department that pulls its deliveries (SOAP Fetch) leases them: a fetched message is
    # hidden until visible_at, and comes back then unless it was acknowledged.
    Column("visible_at", DateTime(timezone=True)),
    Column("fetches", Integer, nullable=False, server_default="0"),
    Column("acked_at", DateTime(timezone=True)),
    UniqueConstraint("department", "message_id", name="uq_inbox_department_message"),
    Index("ix_inbox_waiting", "department", "acked_at", "id"),
)


class InboxOutbound:
    """Stores deliveries in the `inbox` table, one transaction per batch, once per message."""

    direction = "outbound"
    summary = "the platform's inbox table, for the department to fetch (SOAP Fetch and Ack)"
    settings = ()

    def __init__(self, department: Department, context: Context) -> None:
        self.department = department.code
        self.engine: Engine = context.engine
        self._insert = IdempotentInsert(self.engine, inbox)
        self._held = HeldConnection(self.engine)

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        now = utcnow()
        rows = [
            {
                "department": self.department,
                "message_id": e.message_id,
                "correlation_id": e.correlation_id,
                "sender": e.sender,
                "resource": e.resource,
                "version": e.version,
                "operation": e.operation,
                "body": e.body,
                "delivered_at": now,
            }
            for e in envelopes
        ]
        try:
            with self._held.transaction() as conn:
                self._insert(conn, rows)
        except Exception as exc:  # locked, restarting, unreachable: all worth retrying
            raise TransientError(f"inbox of {self.department} unavailable: {db_error_text(exc)}") from exc
        return [None] * len(envelopes)


class DeliverStage:
    name: ClassVar[str] = "deliver"
    dedupe: ClassVar[str | None] = RECORD
    dead_letters: ClassVar[bool] = True

    def __init__(self, names: Names, outbounds: dict[str, Outbound]) -> None:
        self.names = names
        self.outbounds = outbounds
        self._department_of = {names.deliver_queue(code): code for code in outbounds}

    def queues(self) -> list[str]:
        return list(self._department_of)

    def declare(self, topology: Topology) -> None:
        topology.dead_letters()
        topology.retry()
        for code in self.outbounds:
            topology.deliver(code)

    def decode(self, incoming: Incoming) -> Delivery:
        return Delivery(
            incoming, Envelope.from_amqp(incoming.body, incoming.message_id, incoming.correlation_id, incoming.headers)
        )

    def handle(self, batch: Sequence[Delivery]) -> list[Outcome]:
        by_queue: dict[str, list[int]] = {}
        for i, delivery in enumerate(batch):
            by_queue.setdefault(delivery.incoming.queue, []).append(i)
        outcomes: list[Outcome] = [DONE] * len(batch)
        for queue, indexes in by_queue.items():
            outbound = self.outbounds[self._department_of[queue]]
            envelopes = [batch[i].envelope for i in indexes]
            try:
                results = outbound.deliver(envelopes)  # type: ignore[arg-type]
            except Exception as exc:
                results = [exc] * len(indexes)
            for i, result in zip(indexes, results, strict=True):
                if result is not None:
                    outcomes[i] = Failed(result)
        return outcomes


def create(context: Context) -> DeliverStage:
    """Entry point: a deliver stage for every subscriber (or those `context.departments` names)."""
    subscribers = context.table.subscribers()
    if context.departments:
        known = {d.code for d in subscribers}
        missing = sorted(set(context.departments) - known)
        if missing:
            raise ConfigError(f"no subscriptions for department(s) {', '.join(missing)}; subscribers: {', '.join(sorted(known)) or 'none'}")
        subscribers = [d for d in subscribers if d.code in context.departments]
    return DeliverStage(context.names, {d.code: context.outbound(d) for d in subscribers})
