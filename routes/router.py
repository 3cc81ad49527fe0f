"""The router stage: one copy of each message per recipient.

A recipient with neither a field mask nor a content filter gets the message byte for byte,
decided from headers alone. Only for the others is the body parsed, once per message: a
filter (XPath 1.0, the payload's namespace bound to `r`) decides whether the copy goes; a
mask removes every data item the subscription was not granted (the envelope header stays).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from lxml import etree
from schemas import ENVELOPE_NS, SafeParser

from bus.broker import Incoming
from bus.envelope import Envelope
from bus.names import Names
from bus.routing import Route, RoutingTable
from bus.stage import DONE, RECORD, Delivery, Forward, Outcome, Publish
from bus.topology import Topology

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.router")
_BODY = f"{{{ENVELOPE_NS}}}Body"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def mask(envelope: etree._Element, allowed: frozenset[str]) -> bytes:
    """The envelope with only the `allowed` data items (paths such as /Person/Name or
    /LegalEntity/RegisteredCapital/@currency) left in its payload."""
    document = copy.deepcopy(envelope)
    payload = document.find(_BODY)[0]  # type: ignore[index]

    def keep(element: etree._Element, path: str) -> bool:
        for name in list(element.attrib):
            if f"{path}/@{_local(name)}" not in allowed:
                del element.attrib[name]
        children = [c for c in element if isinstance(c.tag, str)]
        if not children:
            return path in allowed
        kept = False
        for child in children:
            if keep(child, f"{path}/{_local(child.tag)}"):
                kept = True
            else:
                element.remove(child)
        return kept

    keep(payload, f"/{_local(payload.tag)}")
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8")


class RouterStage:
    name: ClassVar[str] = "router"
    dedupe: ClassVar[str | None] = RECORD
    dead_letters: ClassVar[bool] = True

    def __init__(self, names: Names, table: RoutingTable, parser: SafeParser | None = None) -> None:
        self.names = names
        self.table = table
        self.parser = parser or SafeParser()
        self._to = names.deliver_exchange()
        self._unsubscribed: set[str] = set()
        self._filters: dict[tuple[str, str], etree.XPath] = {}

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
            publishes = self._copies(env, routes)
            outcomes.append(Forward(publishes) if publishes else DONE)
        return outcomes

    def _copies(self, env: Envelope, routes: tuple[Route, ...]) -> tuple[Publish, ...]:
        publishes = []
        document: Any = None
        masked: dict[frozenset[str], bytes] = {}  # subscribers granted the same items share one copy
        for route in routes:
            if route.filter is None and route.items is None:
                publishes.append(Publish(self._to, route.subscriber, env))
                continue
            if document is None:
                # parsed by the ingress already; trusted, but parsed the same hardened way
                document = self.parser.parse(env.body)
            payload = document.find(_BODY)[0]
            if route.filter is not None and not self._matches(route.filter, payload):
                continue
            if route.items is None:
                body = env.body
            elif (body := masked.get(route.items)) is None:
                body = masked[route.items] = mask(document, route.items)
            publishes.append(Publish(self._to, route.subscriber, env.copy(body=body)))
        return tuple(publishes)

    def _matches(self, expression: str, payload: etree._Element) -> bool:
        namespace = etree.QName(payload).namespace or ""
        compiled = self._filters.get((expression, namespace))
        if compiled is None:
            compiled = self._filters[(expression, namespace)] = etree.XPath(expression, namespaces={"r": namespace})
        result = compiled(payload)
        return bool(result) if not isinstance(result, float) else result != 0.0


def create(context: Context) -> RouterStage:
    """Entry point of the `govbus.stages` group."""
    return RouterStage(context.names, context.table, context.parser)
