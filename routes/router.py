"""The router stage: one copy of each message per recipient, from headers alone."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from bus.broker import Incoming
from bus.envelope import Envelope
from bus.names import Names
from bus.routing import RoutingTable
from bus.stage import DONE, RECORD, Delivery, Forward, Outcome, Publish
from bus.topology import Topology

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.router")


class RouterStage:
    name: ClassVar[str] = "router"
    dedupe: ClassVar[str | None] = RECORD
    dead_letters: ClassVar[bool] = True

    def __init__(self, names: Names, table: RoutingTable) -> None:
        self.names = names
        self.table = table
        self._to = names.deliver_exchange()
        self._unsubscribed: set[str] = set()

    def queues(self) -> list[str]:
        return [self.names.routing_queue()]

    def declare(self, topology: Topology) -> None:
        topology.dead_letters()
        topology.retry()
        topology.routing()
        # every subscriber's queue exists before the first copy is published to it
        for department in self.table.subscribers():
            topology.deliver(department.code)

    def decode(self, incoming: Incoming) -> Delivery:
        return Delivery(
            incoming, Envelope.from_amqp(incoming.body, incoming.message_id, incoming.correlation_id, incoming.headers)
        )

    def handle(self, batch: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for delivery in batch:
            env = delivery.envelope
            assert env is not None
            routes = self.table.routes(env.resource)
            if not routes:
                # Default deny: without a subscription nothing is delivered. Accepted all the
                # same: the provider did nothing wrong.
                if env.resource not in self._unsubscribed:
                    self._unsubscribed.add(env.resource)
                    log.info("resource %s has no subscribers: its messages are accepted, not delivered", env.resource)
                outcomes.append(DONE)
                continue
            outcomes.append(Forward(tuple(Publish(self._to, r.subscriber, env) for r in routes)))
        return outcomes


def create(context: Context) -> RouterStage:
    """Entry point of the `govbus.stages` group."""
    return RouterStage(context.names, context.table)
