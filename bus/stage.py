"""What a stage is: a plain class that turns a batch of deliveries into outcomes.

A stage knows nothing of acks, confirms, retries or dead letters: the worker (`bus.worker`)
does all of that from the outcomes, so that a stage can be tested with a list in and a list
out. Stages are found through the `govbus.stages` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bus.broker import Incoming
from bus.envelope import Envelope

if TYPE_CHECKING:
    from bus.topology import Topology


@dataclass(slots=True)
class Delivery:
    """An incoming message and what the stage's `decode` made of it. `parsed` is the stage's
    own scratch (the ingress keeps the parsed tree there for validation)."""

    incoming: Incoming
    envelope: Envelope | None
    parsed: Any = None


@dataclass(frozen=True, slots=True)
class Publish:
    exchange: str
    routing_key: str
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Forward:
    """Publish these; the input is done when the broker has confirmed all of them."""

    publishes: tuple[Publish, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Done:
    """The stage's effect is committed; the input is done."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The input could not be handled: retried or dead-lettered by the error's kind."""

    error: BaseException


Outcome = Forward | Done | Failed
DONE = Done()

# How a stage keeps idempotency by message id (see bus.dedup):
#: the entry, where senders may send a message twice: every id is claimed before handling
CLAIM = "claim"
#: inner stages, where only a redelivery makes a duplicate: ids are recorded after handling,
#: and checked before only for a message that may be a duplicate
RECORD = "record"


class Stage(Protocol):
    """One step of the pipeline, run by a worker as a competing consumer of its queues."""

    name: ClassVar[str]
    #: CLAIM, RECORD or None (no idempotency by message id)
    dedupe: ClassVar[str | None]
    #: on failure, retry then dead-letter; if False, the input is requeued instead
    dead_letters: ClassVar[bool]

    def queues(self) -> list[str]:
        """The queues this stage consumes."""
        ...

    def declare(self, topology: Topology) -> None:
        """Declare everything the stage consumes from and publishes to."""
        ...

    def decode(self, incoming: Incoming) -> Delivery:
        """Read what the stage needs from a message; raising dead-letters it at once."""
        ...

    def handle(self, batch: Sequence[Delivery]) -> list[Outcome]:
        """One outcome per delivery, in order. Raising fails the whole batch transiently."""
        ...
