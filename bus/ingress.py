"""The ingress stage: the one place a department's message is read and judged.

Order of checks, cheapest first: hardened parse and envelope header; the AMQP properties, if
the sender set any, agree with the envelope; the resource exists and the sender is its
provider; the version the header names exists; the payload is in the specification's
namespace; then one XSD pass over envelope and payload together. A message that passes is
forwarded byte for byte, with its routing fields in headers; one that fails is dead-lettered
with the reason, rule, line and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from lxml import etree
from schemas import SafeParser, SchemaSet, ValidationError

from bus.broker import Incoming
from bus.envelope import Envelope, read_envelope
from bus.errors import BusError, HeaderMismatch
from bus.names import Header, Names
from bus.routing import Resource, RoutingTable
from bus.stage import CLAIM, Delivery, Failed, Forward, Outcome, Publish
from bus.topology import Topology

if TYPE_CHECKING:
    from bus.app import Context


class IngressStage:
    name: ClassVar[str] = "ingress"
    dedupe: ClassVar[str | None] = CLAIM
    dead_letters: ClassVar[bool] = True

    def __init__(self, names: Names, table: RoutingTable, schemas: SchemaSet, parser: SafeParser) -> None:
        self.names = names
        self.table = table
        self.schemas = schemas
        self.parser = parser
        self._to = names.routing_exchange()

    def queues(self) -> list[str]:
        return [self.names.ingress_queue()]

    def declare(self, topology: Topology) -> None:
        # Compile every version of every routed specification now: a broken XSD stops the
        # worker at start, and no message waits for a compilation.
        for spec in sorted({r.specification for r in self.table.resources.values()}):
            for version in self.schemas.versions(spec):
                self.schemas.validator(spec, version)
        topology.dead_letters()
        topology.retry()
        topology.ingress()
        topology.routing()

    def decode(self, incoming: Incoming) -> Delivery:
        envelope, root = read_envelope(incoming.body, self.parser, self.schemas, check_depth=False)
        return Delivery(incoming, envelope, root)

    def handle(self, batch: Sequence[Delivery]) -> list[Outcome]:
        return [self._judge(d) for d in batch]

    def _judge(self, delivery: Delivery) -> Outcome:
        env = delivery.envelope
        assert env is not None
        try:
            # checked here, not in decode, so that the dead letter carries the envelope's id
            _check_properties(delivery.incoming, env.message_id, env.sender, env.resource, env.version)
            resource = self.check(env, delivery.parsed)
        except (BusError, ValidationError) as exc:
            return Failed(exc)
        if self.schemas.status(resource.specification, env.version) == "deprecated":
            self.schemas.count_deprecated(resource.specification, env.version, env.sender)
        return Forward((Publish(self._to, env.resource, env),))


    def check(self, env: Envelope, root: etree._Element) -> Resource:
        """The envelope's resource, if its sender may submit it and it follows the specification.

        Also used by adapters (the SOAP gateway, inbound adapters) to refuse a message to its
        sender at once, with the same reasons the ingress would dead-letter it for.

        Raises:
            BusError: unknown resource, or the sender is not its provider.
            ValidationError: the envelope or payload breaks the schema (rule, line, column).
        """
        try:
            resource = self.table.authorise(env.sender, env.resource)
            validator = self.schemas.validator(resource.specification, env.version)
        except (BusError, ValidationError):
            # A malformed header explains an unknown resource or version better than the
            # lookup does: report the envelope's own schema violation first, if any.
            self.schemas.envelope().check(root, env.body, self.parser)
            raise
        validator.check(root, env.body, self.parser)
        return resource


def _check_properties(incoming: Incoming, message_id: str, sender: str, resource: str, version: str) -> None:
    """Departments may publish with AMQP properties; if they do, they must tell the truth."""
    if incoming.message_id and incoming.message_id.lower() != message_id:
        raise HeaderMismatch(
            f"AMQP message_id {incoming.message_id} differs from the envelope's MessageId {message_id}"
        )
    headers = incoming.headers
    if not headers:
        return
    for name, value in ((Header.SENDER, sender), (Header.RESOURCE, resource), (Header.VERSION, version)):
        given = headers.get(name)
        if given is not None and given != value:
            raise HeaderMismatch(f"AMQP header {name}={given!r} differs from the envelope's {value!r}")


def create(context: Context) -> IngressStage:
    """Entry point of the `govbus.stages` group."""
    return IngressStage(context.names, context.table, context.schemas, context.parser)
