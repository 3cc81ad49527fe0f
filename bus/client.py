"""Submitting envelope files as a department would, and finding out what became of them.

Used by `govbus send`, `govbus demo` and the tests. On the embedded default the broker lives
in this process, so `run_embedded` runs every stage here until the messages have settled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from schemas import SafeParser, SchemaSet, ValidationError
from sqlalchemy import select

from bus.app import STAGES, Context
from bus.broker import Broker, Channel, publish_confirmed
from bus.deadletter import DeadLetter, DeadLetterStore, dead_letter
from bus.deliver import inbox
from bus.envelope import read_envelope
from bus.names import Header, Names

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Submission:
    """One file handed to the ingress: its message id, if the file could be read as an
    envelope, and why the broker refused it, if it did."""

    path: Path
    message_id: str | None
    resource: str | None
    refused: str | None = None
    unreadable: str | None = None


def submission_message(data: bytes, names: Names, parser: SafeParser, schemas: SchemaSet):  # type: ignore[no-untyped-def]
    """The AMQP message a department sends for `data`: envelope fields as properties and
    headers when the body can be read, the bare body otherwise (the ingress will explain)."""
    try:
        env, _ = read_envelope(data, parser, schemas)
    except ValidationError as exc:
        return (names.ingress_exchange(), "unknown", data, None, None, {}), None, str(exc)
    headers = {Header.SENDER: env.sender, Header.RESOURCE: env.resource, Header.VERSION: env.version}
    return (names.ingress_exchange(), f"{env.sender}.{env.resource}", data, env.message_id, env.correlation_id, headers), env, None


def send_files(broker: Broker, channel: Channel, paths: Sequence[Path], names: Names,
               parser: SafeParser, schemas: SchemaSet, rewrite: Callable[[bytes], bytes] | None = None) -> list[Submission]:
    """Publish each file to the ingress with confirms. Raises OSError for an unreadable file."""
    messages, readings = [], []
    for path in paths:
        data = path.read_bytes()
        if rewrite is not None:
            data = rewrite(data)
        message, env, problem = submission_message(data, names, parser, schemas)
        messages.append(message)
        readings.append((path, env, problem))
    outcomes = publish_confirmed(broker, channel, messages)
    return [
        Submission(path, env.message_id if env else None, env.resource if env else None, refused, problem)
        for (path, env, problem), refused in zip(readings, outcomes, strict=True)
    ]


def run_embedded(context: Context, act: Callable[[Broker, Channel], T], *, settle: float = 0.3) -> T:
    """On the in-memory transport: declare everything, do `act` with a publishing channel,
    then run every stage in this process until nothing has moved for `settle` seconds."""
    assert context.settings.embedded, "run_embedded is for the in-memory transport"
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        context.declare(broker)
        result = act(broker, broker.channel())
        context.worker(STAGES).run(threading.Event(), idle_exit=settle, reconnect=False)
        return result
    finally:
        broker.close()


@dataclass(frozen=True, slots=True)
class Fate:
    """What became of one message: the departments it reached and its dead letters."""

    delivered_to: tuple[str, ...]
    dead_letters: tuple[DeadLetter, ...]


def fates(context: Context, message_ids: Sequence[str]) -> dict[str, Fate]:
    ids = [m for m in message_ids if m]
    store = DeadLetterStore(context.engine)
    with context.engine.connect() as conn:
        delivered = conn.execute(
            select(inbox.c.message_id, inbox.c.department).where(inbox.c.message_id.in_(ids)).order_by(inbox.c.department)
        ).all()
        dead = conn.execute(
            select(dead_letter.c.id, dead_letter.c.message_id).where(dead_letter.c.message_id.in_(ids)).order_by(dead_letter.c.id)
        ).all()
    return {
        m: Fate(
            tuple(d for mid, d in delivered if mid == m),
            tuple(store.get(i) for i, mid in dead if mid == m),
        )
        for m in ids
    }
