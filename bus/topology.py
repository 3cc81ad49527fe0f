"""The broker's exchanges and queues, declared as kombu entities.

Declaring is idempotent: `govbus topology declare` declares everything, and each worker
declares what it uses when it starts. Every durable queue is a quorum queue. Stage queues
carry a delivery limit, past which RabbitMQ itself dead-letters a message that keeps killing
its consumer, so that not even a poison message loops forever or is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kombu import Exchange, Queue, binding

from bus.config import Settings
from bus.errors import ConfigError
from bus.names import Header, Names


class Topology:
    """Declares on one channel; on the in-memory transport, only what it can represent."""

    def __init__(self, raw_channel: Any, settings: Settings, names: Names) -> None:
        self.channel = raw_channel
        self.settings = settings
        self.names = names
        self.embedded = settings.embedded

    def _exchange(self, name: str, kind: str) -> Exchange:
        return Exchange(name, type=kind, durable=True, auto_delete=False)

    def _stage_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.settings.delivery_limit,
            "x-dead-letter-exchange": self.names.dead_letter_exchange(),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        }

    def _declare(self, entity: Exchange | Queue) -> None:
        try:
            entity.maybe_bind(self.channel)
            entity.declare()
        except Exception as exc:
            if "PRECONDITION_FAILED" in str(exc) or "inequivalent" in str(exc):
                raise ConfigError(
                    f"{entity.name} already exists on the broker with other arguments ({exc}); "
                    "delete it (rabbitmqctl delete_queue / the management UI) or use another GOVBUS_PREFIX"
                ) from None
            raise

    def _stage_queue(self, name: str, exchange: Exchange, keys: Iterable[str]) -> None:
        self._declare(exchange)
        self._declare(
            Queue(
                name,
                bindings=[binding(exchange, routing_key=k) for k in keys],
                durable=True,
                auto_delete=False,
                queue_arguments=self._stage_arguments(),
            )
        )

    def ingress(self) -> None:
        self._stage_queue(self.names.ingress_queue(), self._exchange(self.names.ingress_exchange(), "topic"), ["#"])

    def routing(self) -> None:
        self._stage_queue(self.names.routing_queue(), self._exchange(self.names.routing_exchange(), "topic"), ["#"])

    def deliver(self, department: str) -> None:
        self._stage_queue(
            self.names.deliver_queue(department), self._exchange(self.names.deliver_exchange(), "direct"), [department]
        )

    def retry(self) -> None:
        if self.embedded:  # no TTL dead-lettering in memory: the channel keeps timers instead
            return
        exchange = self._exchange(self.names.retry_exchange(), "headers")
        self._declare(exchange)
        for delay in self.settings.retry.delays_ms():
            self._declare(
                Queue(
                    self.names.retry_queue(delay),
                    exchange=exchange,
                    binding_arguments={"x-match": "all", Header.DELAY: str(delay)},
                    durable=True,
                    auto_delete=False,
                    queue_arguments={
                        "x-queue-type": "quorum",
                        "x-message-ttl": delay,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )

    def dead_letters(self) -> None:
        exchange = self._exchange(self.names.dead_letter_exchange(), "fanout")
        self._declare(exchange)
        self._declare(
            Queue(
                self.names.dead_letter_queue(),
                exchange=exchange,
                routing_key="",
                durable=True,
                auto_delete=False,
                queue_arguments={"x-queue-type": "quorum"},
            )
        )

    def control(self, worker: str) -> str:
        """The fanout exchange for reload notices, and this worker's own transient queue on it."""
        exchange = self._exchange(self.names.control_exchange(), "fanout")
        self._declare(exchange)
        name = self.names.control_queue(worker)
        self._declare(Queue(name, exchange=exchange, routing_key="", durable=False, auto_delete=True, exclusive=True))
        return name

    def query(self, resource: str) -> str:
        """The query exchange and the queue of `resource`'s responder. Queries are answered
        while the asker waits, or not at all: the queue is transient and a query expires with
        its asker's timeout, so nothing stale is answered after a restart."""
        exchange = self._exchange(self.names.query_exchange(), "direct")
        self._declare(exchange)
        name = self.names.query_queue(resource)
        self._declare(Queue(name, exchange=exchange, routing_key=resource, durable=False, auto_delete=True))
        return name

    def query_exchange(self) -> None:
        self._declare(self._exchange(self.names.query_exchange(), "direct"))

    def reply(self, process: str) -> str:
        """A process's own queue for answers to its queries; gone with its connection."""
        name = self.names.reply_queue(process)
        self._declare(Queue(name, durable=False, auto_delete=True, exclusive=True))
        return name

    def everything(self, subscribers: Iterable[str]) -> list[str]:
        """Declare the whole topology; returns the queue names, for the operator."""
        self.dead_letters()
        self.retry()
        self._declare(self._exchange(self.names.control_exchange(), "fanout"))
        self.ingress()
        self.routing()
        queues = [self.names.dead_letter_queue(), self.names.ingress_queue(), self.names.routing_queue()]
        for department in subscribers:
            self.deliver(department)
            queues.append(self.names.deliver_queue(department))
        if not self.embedded:
            queues += [self.names.retry_queue(d) for d in self.settings.retry.delays_ms()]
        return queues
