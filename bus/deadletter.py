"""Dead letters: captured from the dead-letter queue into the database, for operators.

Every dead letter keeps the original body and headers and says why (reason code, text, XSD
rule, line, column), where (stage, queue, original exchange and routing key), how often
(attempts) and when (first and last failure). An operator lists and inspects them, replays
them to where they were first published once the cause is fixed, or discards them with a
reason; both are recorded, nothing is deleted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, DateTime, Engine, Integer, LargeBinary, String, Table, Text, select, update

from bus.broker import Broker, Incoming, publish_confirmed
from bus.db import HeldConnection, IdempotentInsert, db_error_text, metadata, utcnow
from bus.errors import BusError, Failure, TransientError
from bus.names import Header, Names
from bus.stage import DONE, Delivery, Failed, Outcome
from bus.topology import Topology

if TYPE_CHECKING:
    from bus.app import Context

dead_letter = Table(
    "dead_letter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dead_letter_id", String(64), nullable=False, unique=True),
    Column("message_id", String(64), index=True),
    Column("correlation_id", String(64)),
    Column("sender", String(32)),
    Column("resource", String(64)),
    Column("reason", String(64), nullable=False, index=True),
    Column("reason_text", Text, nullable=False),
    Column("rule", String(128)),
    Column("line", Integer),
    Column("column", Integer),
    Column("stage", String(32)),
    Column("queue", String(200)),
    Column("attempts", Integer, nullable=False),
    Column("origin_exchange", String(200), nullable=False),
    Column("origin_routing_key", String(255), nullable=False),
    Column("first_failure", String(40)),
    Column("last_failure", String(40)),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("captured_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, index=True, default="pending"),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", String(64)),
    Column("resolution", Text),
)

STATUSES = ("pending", "replayed", "discarded")
# What the bus adds while a message fails; a replay starts afresh without it.
_FAILURE_HEADERS = {
    Header.ATTEMPT, Header.LAST_ERROR, Header.DELAY, Header.ORIGIN_EXCHANGE, Header.ORIGIN_ROUTING_KEY,
    Header.FIRST_FAILURE, Header.LAST_FAILURE, Header.REASON, Header.REASON_TEXT, Header.RULE, Header.LINE,
    Header.COLUMN, Header.STAGE, Header.QUEUE, Header.DEAD_LETTER_ID, Header.REPLAYED_FROM,
    Header.POSSIBLE_DUPLICATE,
}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _row(incoming: Incoming, now: datetime, delivery_limit: int) -> dict[str, Any]:
    """The database row of a dead letter. Never raises: whatever reached the dead-letter
    queue, however odd its headers, is kept."""
    h = incoming.headers
    if Header.REASON in h:
        reason, text = h[Header.REASON], h.get(Header.REASON_TEXT, "")
        exchange, key = h.get(Header.ORIGIN_EXCHANGE, ""), h.get(Header.ORIGIN_ROUTING_KEY, "")
        dead_letter_id = h.get(Header.DEAD_LETTER_ID) or str(uuid.uuid4())
        queue, stage = h.get(Header.QUEUE), h.get(Header.STAGE)
        attempts = _int(h.get(Header.ATTEMPT))
    else:  # dead-lettered by RabbitMQ itself: over the delivery limit, or rejected
        deaths = h.get("x-death")
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        cause = str(h.get("x-first-death-reason") or death.get("reason") or "unknown")
        reason = "delivery_limit" if cause == "delivery_limit" else f"broker_{cause}"
        queue = h.get("x-first-death-queue") or death.get("queue")
        text = f"RabbitMQ dead-lettered the message from {queue} ({cause})"
        if cause == "delivery_limit":
            text += ": it was delivered too often without being acknowledged (did it crash its consumer?)"
        exchange = str(h.get("x-first-death-exchange") or death.get("exchange") or "")
        keys = death.get("routing-keys") or [incoming.routing_key]
        key = str(keys[0])
        stage = None
        # RabbitMQ 3.10 does not say how often it delivered the message; past the limit
        # means delivered once more than the limit allows
        attempts = delivery_limit + 1 if cause == "delivery_limit" else _int(h.get("x-delivery-count"))
        # the same broker dead-lettering, delivered twice, must be stored once
        dead_letter_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{incoming.message_id}|{queue}|{death.get('time')}|{death.get('count')}"))
    return {
        "dead_letter_id": _text(dead_letter_id, 64),
        "message_id": _text(incoming.message_id, 64),
        "correlation_id": _text(incoming.correlation_id, 64),
        "sender": _text(h.get(Header.SENDER), 32),
        "resource": _text(h.get(Header.RESOURCE), 64),
        "reason": _text(reason, 64),
        "reason_text": _text(text, 4000) or "",
        "rule": _text(h.get(Header.RULE), 128),
        "line": _int(h.get(Header.LINE)),
        "column": _int(h.get(Header.COLUMN)),
        "stage": _text(stage, 32),
        "queue": _text(queue, 200),
        "attempts": attempts or 1,
        "origin_exchange": _text(exchange, 200) or "",
        "origin_routing_key": _text(key, 255) or "",
        "first_failure": _text(h.get(Header.FIRST_FAILURE), 40),
        "last_failure": _text(h.get(Header.LAST_FAILURE), 40),
        "headers": json.dumps(h, default=str, ensure_ascii=False),
        "body": bytes(incoming.body),
        "captured_at": now,
        "status": "pending",
    }


class CaptureStage:
    """Moves dead letters from the queue into the database, idempotently."""

    name: ClassVar[str] = "deadletter"
    dedupe: ClassVar[str | None] = None  # one message may die twice (replayed, failed again)
    dead_letters: ClassVar[bool] = False  # there is no further place to send it: requeue

    def __init__(self, names: Names, engine: Engine, delivery_limit: int) -> None:
        self.names = names
        self.engine = engine
        self.delivery_limit = delivery_limit
        self._insert = IdempotentInsert(engine, dead_letter)
        self._held = HeldConnection(engine)

    def queues(self) -> list[str]:
        return [self.names.dead_letter_queue()]

    def declare(self, topology: Topology) -> None:
        topology.dead_letters()

    def decode(self, incoming: Incoming) -> Delivery:
        return Delivery(incoming, None)

    def handle(self, batch: Sequence[Delivery]) -> list[Outcome]:
        now = utcnow()
        rows = [_row(d.incoming, now, self.delivery_limit) for d in batch]
        try:
            with self._held.transaction() as conn:
                self._insert(conn, rows)
        except Exception as exc:
            if len(rows) == 1:
                raise TransientError(f"cannot store dead letter: {db_error_text(exc)}") from exc
            # one odd row must not hold back the others: store them one by one
            return [self._one(d) for d in batch]
        return [DONE] * len(batch)

    def _one(self, delivery: Delivery) -> Outcome:
        try:
            return self.handle([delivery])[0]
        except Exception as exc:
            return Failed(exc)


def create(context: Context) -> CaptureStage:
    """Entry point of the `govbus.stages` group."""
    return CaptureStage(context.names, context.engine, context.settings.delivery_limit)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A captured dead letter, as operators see it."""

    id: int
    message_id: str | None
    correlation_id: str | None
    sender: str | None
    resource: str | None
    reason: str
    reason_text: str
    rule: str | None
    line: int | None
    column: int | None
    stage: str | None
    queue: str | None
    attempts: int
    origin_exchange: str
    origin_routing_key: str
    first_failure: str | None
    last_failure: str | None
    headers: dict[str, Any]
    body: bytes
    captured_at: datetime
    status: str
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None

    def where(self) -> str:
        """', line L, column C' for XML errors, else ''."""
        if not self.line:
            return ""
        return f", line {self.line}" + (f", column {self.column}" if self.column else "")

    def explain(self) -> str:
        """One line for people: reason code, text, XSD rule, line and column."""
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{self.reason}: {self.reason_text}{rule}{self.where()}"


class DeadLetterStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self, *, status: str | None = "pending", reason: str | None = None, limit: int = 50) -> list[DeadLetter]:
        """Newest first."""
        query = select(dead_letter).order_by(dead_letter.c.id.desc()).limit(limit)
        if status:
            query = query.where(dead_letter.c.status == status)
        if reason:
            query = query.where(dead_letter.c.reason == reason)
        with self.engine.connect() as conn:
            return [_dead_letter(r) for r in conn.execute(query).mappings()]

    def get(self, id: int) -> DeadLetter:
        """Raises BusError if there is no dead letter `id`."""
        with self.engine.connect() as conn:
            row = conn.execute(select(dead_letter).where(dead_letter.c.id == id)).mappings().first()
        if row is None:
            raise BusError(f"no dead letter #{id}")
        return _dead_letter(row)

    def replay(self, ids: Sequence[int], broker: Broker, who: str) -> dict[int, str | None]:
        """Publish each pending dead letter again where it was first published, with its
        failure headers removed; mark it replayed once the broker confirms.

        Returns, per id, None when replayed or the reason it was not.
        """
        letters = {i: self._pending(i) for i in ids}
        ready = {i: d for i, d in letters.items() if isinstance(d, DeadLetter)}
        results: dict[int, str | None] = {i: d for i, d in letters.items() if isinstance(d, str)}
        if ready:
            channel = broker.channel()
            outcomes = publish_confirmed(
                broker,
                channel,
                [
                    (
                        d.origin_exchange, d.origin_routing_key, d.body, d.message_id, d.correlation_id,
                        {**{k: v for k, v in d.headers.items() if k not in _FAILURE_HEADERS and not k.startswith("x-")},
                         Header.REPLAYED_FROM: str(i)},
                    )
                    for i, d in ready.items()
                ],
            )
            for i, failure in zip(ready, outcomes, strict=True):
                results[i] = failure
                if failure is None:
                    self._resolve(i, "replayed", who, f"replayed to {ready[i].origin_exchange or '(default)'} {ready[i].origin_routing_key}")
        return results

    def add(self, body: bytes, failure: Failure, *, stage: str, origin_exchange: str, origin_routing_key: str,
            message_id: str | None = None, sender: str | None = None, resource: str | None = None,
            dead_letter_id: str | None = None) -> int:
        """Store a dead letter for a message refused before it reached the broker (an adapter
        read it from a department's table, folder or service); a replay publishes it to
        `origin_exchange`. With the same `dead_letter_id` it is stored once.

        Returns its id (the one stored before, for a `dead_letter_id` already stored).
        """
        now = utcnow()
        row = {
            "dead_letter_id": dead_letter_id or str(uuid.uuid4()),
            "message_id": _text(message_id, 64), "correlation_id": None, "sender": _text(sender, 32),
            "resource": _text(resource, 64), "reason": failure.code[:64], "reason_text": failure.message[:4000],
            "rule": _text(failure.rule, 128), "line": failure.line, "column": failure.column, "stage": stage[:32],
            "queue": None, "attempts": 1, "origin_exchange": origin_exchange, "origin_routing_key": origin_routing_key,
            "first_failure": now.isoformat(), "last_failure": now.isoformat(),
            "headers": json.dumps({Header.SENDER: sender, Header.RESOURCE: resource} if sender else {}, ensure_ascii=False),
            "body": bytes(body), "captured_at": now, "status": "pending",
        }
        with self.engine.begin() as conn:
            IdempotentInsert(self.engine, dead_letter)(conn, [row])
            found = conn.execute(select(dead_letter.c.id).where(dead_letter.c.dead_letter_id == row["dead_letter_id"])).scalar()
        return found  # type: ignore[no-any-return]

    def discard(self, ids: Sequence[int], reason: str, who: str) -> dict[int, str | None]:
        """Mark pending dead letters discarded, with the operator's reason."""
        if not reason.strip():
            raise BusError("a discard needs a reason")
        results: dict[int, str | None] = {}
        for i in ids:
            found = self._pending(i)
            results[i] = found if isinstance(found, str) else None
            if results[i] is None:
                self._resolve(i, "discarded", who, reason.strip())
        return results

    def _pending(self, id: int) -> DeadLetter | str:
        try:
            letter = self.get(id)
        except BusError as exc:
            return exc.message
        if letter.status != "pending":
            return f"dead letter #{id} is already {letter.status}"
        return letter

    def _resolve(self, id: int, status: str, who: str, note: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(dead_letter)
                .where(dead_letter.c.id == id, dead_letter.c.status == "pending")
                .values(status=status, resolved_at=utcnow(), resolved_by=who, resolution=note)
            )


def _dead_letter(row: Any) -> DeadLetter:
    values = dict(row)
    values.pop("dead_letter_id")
    values["headers"] = json.loads(values["headers"])
    return DeadLetter(**values)
