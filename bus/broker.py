"""The connection to the broker, and a stage's channel on it.

The same stage code runs on RabbitMQ (kombu's py-amqp transport) and on kombu's in-memory
transport. What differs is hidden here:

- Publisher confirms are pipelined on RabbitMQ: `publish` returns a sequence number at once and
  the broker's acks, nacks and returns are collected as they arrive (kombu's own
  `confirm_publish` waits for each confirm, which caps a stage near 1,000 msg/s here).
- The in-memory transport has no confirms and ignores `mandatory`: a message no queue takes
  would vanish. Its channel checks routability itself and confirms at once.
- Delayed retry is a TTL queue on RabbitMQ; in memory it is a timer in this process.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import amqp
import kombu

from bus.errors import BrokerRefused
from bus.names import Header
from bus.transport import Publisher
from bus.transport import Transport as BufferedTransport

# A confirm's outcome: None when the broker took the message, else why it did not; the why
# of a message no queue took starts with UNROUTABLE.
Confirm = tuple[int, str | None]
UNROUTABLE = "unroutable"


@dataclass(slots=True)
class Incoming:
    """One message as it came off a queue, before any stage looked at it."""

    body: bytes
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    tag: int
    exchange: str
    routing_key: str
    redelivered: bool
    queue: str


class Channel:
    """A stage's channel: consume with manual acks, publish with confirms, delay."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._seq = 0
        self._confirms: list[Confirm] = []
        self._consumers: list[str] = []

    def cancel(self) -> None:
        """Stop consuming: no more deliveries after those already on their way."""
        for tag in self._consumers:
            self.raw.basic_cancel(tag)
        self._consumers = []

    def close(self) -> None:
        """Close the channel; what it has not acknowledged goes back to its queues."""
        try:
            self.raw.close()
        except Exception:  # closing a channel of a broken connection: it is gone either way
            pass

    def qos(self, prefetch: int) -> None:
        self.raw.basic_qos(0, prefetch, False)

    def take_confirms(self) -> list[Confirm]:
        """Confirms that arrived since the last call, as (sequence number, failure or None)."""
        confirms, self._confirms = self._confirms, []
        return confirms

    def reject(self, tag: int, requeue: bool = True) -> None:
        self.raw.basic_reject(tag, requeue=requeue)

    def next_due(self) -> float | None:
        """Monotonic time at which `tick` has delayed messages to publish, if any."""
        return None

    def tick(self) -> None:
        """Publish delayed messages whose time has come."""

    def consume(self, queue: str, callback: Callable[[Incoming], None]) -> None:
        raise NotImplementedError

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        correlation_id: str | None,
        headers: dict[str, Any],
    ) -> int:
        """Publish persistently with `mandatory`; returns the sequence number its confirm
        will carry. Never waits for the broker."""
        raise NotImplementedError

    def publish_delayed(
        self, delay_ms: int, queue: str, body: bytes, message_id: str, correlation_id: str | None,
        headers: dict[str, Any], retry_exchange: str,
    ) -> int:
        """Publish so that the message reaches `queue` after `delay_ms`."""
        raise NotImplementedError

    def ack(self, tags: list[int]) -> None:
        """Acknowledge `tags`, which must be every unacknowledged delivery up to the last."""
        raise NotImplementedError


class AmqpChannel(Channel):
    def __init__(self, raw: amqp.Channel) -> None:
        super().__init__(raw)
        raw.auto_decode = False  # bodies stay bytes: lxml refuses str with an XML declaration
        raw.confirm_select()
        raw.events["basic_ack"].add(self._on_ack)
        raw.events["basic_nack"].add(self._on_nack)
        raw.events["basic_return"].add(self._on_return)
        self._publisher = Publisher(raw)
        self._low = 1  # lowest sequence number that may still be unconfirmed
        self._keys: dict[int, tuple[str, str, str]] = {}
        self._returned: dict[tuple[str, str, str], str] = {}

    def consume(self, queue: str, callback: Callable[[Incoming], None]) -> None:
        def on_message(m: amqp.Message) -> None:
            p = m.properties
            info = m.delivery_info
            body = m.body
            if not isinstance(body, bytes):  # py-amqp gives '' for an empty body
                body = body.encode() if isinstance(body, str) else bytes(body)
            callback(
                Incoming(
                    body, p.get("message_id"), p.get("correlation_id"),
                    p.get("application_headers") or {}, info["delivery_tag"], info["exchange"],
                    info["routing_key"], info["redelivered"], queue,
                )
            )

        self._consumers.append(self.raw.basic_consume(queue=queue, callback=on_message, no_ack=False))

    def publish(self, exchange, routing_key, body, message_id, correlation_id, headers):  # type: ignore[no-untyped-def]
        self._publisher.publish(exchange, routing_key, body, message_id, correlation_id, headers)
        self._seq += 1
        self._keys[self._seq] = (message_id, exchange, routing_key)
        return self._seq

    def publish_delayed(self, delay_ms, queue, body, message_id, correlation_id, headers, retry_exchange):  # type: ignore[no-untyped-def]
        # The headers exchange picks the retry queue by delay; on expiry the queue dead-letters
        # through the default exchange with the routing key unchanged: the origin queue.
        return self.publish(
            retry_exchange, queue, body, message_id, correlation_id, {**headers, Header.DELAY: str(delay_ms)}
        )

    def ack(self, tags: list[int]) -> None:
        if tags:
            self.raw.basic_ack(tags[-1], multiple=True)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: amqp.Message) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same publish.
        key = (message.properties.get("message_id"), exchange, routing_key)
        self._returned[key] = getattr(exc, "reply_text", None) or str(exc)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, None)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, "the broker refused the message (basic.nack)")

    def _settle(self, tag: int, multiple: bool, failure: str | None) -> None:
        for seq in range(self._low, tag + 1) if multiple else (tag,):
            key = self._keys.pop(seq, None)
            if key is None:
                continue
            outcome = failure
            if self._returned and key in self._returned:
                outcome = f"{UNROUTABLE}: no queue bound to exchange '{key[1]}' for routing key '{key[2]}' ({self._returned.pop(key)})"
            self._confirms.append((seq, outcome))
        while self._low <= self._seq and self._low not in self._keys:
            self._low += 1


class MemoryChannel(Channel):
    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self._timers: list[tuple[float, int, tuple[Any, ...]]] = []
        self._order = itertools.count()

    def consume(self, queue: str, callback: Callable[[Incoming], None]) -> None:
        def on_message(m: Any) -> None:
            p = m.properties
            info = m.delivery_info
            callback(
                Incoming(
                    m.body, p.get("message_id"), p.get("correlation_id"), dict(m.headers or {}),
                    m.delivery_tag, info.get("exchange", ""), info.get("routing_key", ""),
                    bool(info.get("redelivered")), queue,
                )
            )

        tag = uuid.uuid4().hex
        self.raw.basic_consume(queue=queue, no_ack=False, callback=on_message, consumer_tag=tag)
        self._consumers.append(tag)

    def _routable(self, exchange: str, routing_key: str) -> bool:
        raw = self.raw
        if not exchange:
            return bool(raw._has_queue(routing_key))
        try:
            table = raw.get_table(exchange)
            return bool(raw.typeof(exchange).lookup(table, exchange, routing_key, None))
        except KeyError:
            return False

    def _put(self, exchange: str, routing_key: str, body: bytes, message_id: str,
             correlation_id: str | None, headers: dict[str, Any]) -> str | None:
        if not self._routable(exchange, routing_key):
            return f"{UNROUTABLE}: no queue bound to exchange '{exchange}' for routing key '{routing_key}'"
        message = self.raw.prepare_message(
            body,
            content_type="application/xml",
            headers=dict(headers),
            properties={"message_id": message_id, "correlation_id": correlation_id, "delivery_mode": 2},
        )
        self.raw.basic_publish(message, exchange=exchange, routing_key=routing_key)
        return None

    def publish(self, exchange, routing_key, body, message_id, correlation_id, headers):  # type: ignore[no-untyped-def]
        self._seq += 1
        self._confirms.append((self._seq, self._put(exchange, routing_key, body, message_id, correlation_id, headers)))
        return self._seq

    def publish_delayed(self, delay_ms, queue, body, message_id, correlation_id, headers, retry_exchange):  # type: ignore[no-untyped-def]
        # Not durable, like everything on this transport: the timer lives in this process.
        due = time.monotonic() + delay_ms / 1000
        heapq.heappush(self._timers, (due, next(self._order), (queue, body, message_id, correlation_id, headers)))
        self._seq += 1
        self._confirms.append((self._seq, None))
        return self._seq

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def tick(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, message = heapq.heappop(self._timers)
            # The retry was confirmed when it was scheduled; a queue deleted meanwhile loses
            # it, as a deleted queue on RabbitMQ would.
            self._put("", *message)

    def ack(self, tags: list[int]) -> None:
        for tag in tags:  # the virtual transport ignores `multiple`
            self.raw.basic_ack(tag)


class Broker:
    """One connection for the stages of a process."""

    def __init__(self, url: str, *, heartbeat: int = 30) -> None:
        self.url = url
        self.embedded = url.startswith("memory://")
        self.heartbeat = 0 if self.embedded else heartbeat
        self.connection: kombu.Connection | None = self._new()
        #: exceptions after which reconnecting is the cure
        self.errors: tuple[type[BaseException], ...] = tuple(self.connection.connection_errors) + (OSError,)
        #: the broker refused an operation (an exchange deleted, say) and closed the channel
        self.channel_errors: tuple[type[BaseException], ...] = tuple(self.connection.channel_errors)
        self._next_beat = 0.0

    def _new(self) -> kombu.Connection:
        if self.embedded:
            return kombu.Connection(self.url, transport_options={"polling_interval": 0.005})
        transport = BufferedTransport if self.url.startswith("amqp://") else None
        return kombu.Connection(self.url, heartbeat=self.heartbeat, connect_timeout=5, transport=transport)

    def connect(self) -> None:
        if self.connection is None:
            self.connection = self._new()
        self.connection.connect()

    def channel(self) -> Channel:
        assert self.connection is not None
        raw = self.connection.channel()
        return MemoryChannel(raw) if self.embedded else AmqpChannel(raw)

    def drain(self, timeout: float) -> bool:
        """Handle one event (a delivery or a confirm); False if none came within `timeout`."""
        assert self.connection is not None
        try:
            self.connection.drain_events(timeout=timeout)
            return True
        except socket.timeout:
            return False

    def heartbeat_check(self) -> None:
        now = time.monotonic()
        if self.heartbeat and now >= self._next_beat and self.connection is not None:
            self.connection.heartbeat_check()
            self._next_beat = now + 1.0

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # closing a broken connection may raise anything; it is gone anyway
                pass
            self.connection = None


def publish_confirmed(
    broker: Broker,
    channel: Channel,
    messages: list[tuple[str, str, bytes, str | None, str | None, dict[str, Any]]],
    timeout: float = 30.0,
) -> list[str | None]:
    """Publish (exchange, routing key, body, message id, correlation id, headers) tuples, all
    at once, then wait for their confirms: for command-line tools, not the message path.

    Returns, per message, None when the broker took it, or why it did not.

    Raises:
        TimeoutError: the broker did not confirm within `timeout` seconds.
    """
    try:
        seqs = [channel.publish(*m) for m in messages]
        results: dict[int, str | None] = {}
        deadline = time.monotonic() + timeout
        while True:
            results.update(channel.take_confirms())
            if all(s in results for s in seqs):
                return [results[s] for s in seqs]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the broker confirmed {len(results)} of {len(seqs)} messages in {timeout:.0f}s")
            broker.drain(min(remaining, 0.5))
    except broker.channel_errors as exc:
        hint = "; is the topology declared (govbus topology declare)?" if "NOT_FOUND" in str(exc) else ""
        raise BrokerRefused(f"the broker refused the publish: {getattr(exc, 'reply_text', exc)}{hint}") from None
