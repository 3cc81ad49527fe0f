"""Interoperability with an independent AMQP client, on RabbitMQ only.

A department needs nothing of govbus to take part: with pika it publishes its envelope to the
ingress exchange (persistent, with publisher confirms, no govbus headers, no message id) and
consumes from its own delivery queue. What it gets must be its envelope byte for byte, with the
routing fields as properties and headers, still persistent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from bus.app import STAGES, Context, open_context
from bus.deadletter import DeadLetterStore
from bus.names import Header

from tests.conftest import make_settings, management, running, wait_until
from tests.samples import person_envelope

ROUTING_KEY = "GA.GA-001"


@pytest.fixture
def rabbit_context(amqp_url: str, tmp_path: Path) -> Iterator[Context]:
    context = open_context(make_settings(amqp_url, tmp_path))
    yield context
    context.engine.dispose()


@pytest.fixture
def department(amqp_url: str) -> Iterator[BlockingChannel]:
    """A department's own AMQP client: pika, on the test's vhost."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        yield channel
    finally:
        connection.close()


def publish(channel: BlockingChannel, context: Context, body: bytes, properties: pika.BasicProperties) -> None:
    """Publish to the ingress exchange and wait for the broker's confirm; pika raises
    UnroutableError or NackError if the broker did not take it."""
    channel.basic_publish(context.names.ingress_exchange(), ROUTING_KEY, body, properties, mandatory=True)


def get(channel: BlockingChannel, queue: str) -> tuple | None:
    method, properties, body = channel.basic_get(queue, auto_ack=False)
    return (method, properties, body) if method is not None else None


def ready(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def test_a_pika_department_envelope_reaches_the_subscriber_queue_intact(
    rabbit_context: Context, department: BlockingChannel
) -> None:
    env = person_envelope()
    names = rabbit_context.names
    # no deliver stage: the copies stay in the subscribers' queues for the department to take
    with running(rabbit_context, stages=("ingress", "router")):
        publish(department, rabbit_context, env.body, pika.BasicProperties(delivery_mode=2))
        method, properties, body = wait_until(
            lambda: get(department, names.deliver_queue("MZ")), timeout=8, message="the copy for MZ"
        )
        department.basic_ack(method.delivery_tag)
        rs = wait_until(lambda: get(department, names.deliver_queue("RS")), timeout=8, message="the copy for RS")
        department.basic_ack(rs[0].delivery_tag)
    assert body == env.body
    assert properties.message_id == env.message_id
    assert properties.delivery_mode == 2
    assert {k: properties.headers.get(k) for k in (Header.SENDER, Header.RESOURCE, Header.VERSION)} == {
        Header.SENDER: "GA",
        Header.RESOURCE: "GA-001",
        Header.VERSION: "1.0",
    }
    assert (method.exchange, method.routing_key) == (names.deliver_exchange(), "MZ")
    assert (rs[2], rs[1].message_id) == (env.body, env.message_id)
    # one copy per subscriber, and no subscriber of GA-001's is left out or served twice
    for code in ("MZ", "RS", "GSW", "DSW"):
        assert ready(department, names.deliver_queue(code)) == 0, code


@pytest.mark.parametrize("lie", ["sender_header", "message_id_property"])
def test_properties_contradicting_the_envelope_are_dead_lettered(
    rabbit_context: Context, department: BlockingChannel, lie: str
) -> None:
    env = person_envelope()  # from GA
    other_id = str(uuid.uuid4())
    properties, told = {
        "sender_header": (pika.BasicProperties(delivery_mode=2, headers={Header.SENDER: "MZ"}), ["'MZ'", "'GA'"]),
        "message_id_property": (pika.BasicProperties(delivery_mode=2, message_id=other_id), [other_id, env.message_id]),
    }[lie]
    store = DeadLetterStore(rabbit_context.engine)
    with running(rabbit_context, stages=("ingress", "router", "deadletter")):
        publish(department, rabbit_context, env.body, properties)
        wait_until(store.list, timeout=8, message="the dead letter")
        for code in ("MZ", "RS"):
            assert ready(department, rabbit_context.names.deliver_queue(code)) == 0, code
    [letter] = store.list()
    assert (letter.reason, letter.stage) == ("header_mismatch", "ingress")
    assert letter.body == env.body
    assert letter.attempts == 1
    for fragment in told:  # the reason says what contradicts what
        assert fragment in letter.reason_text, letter.reason_text


def test_every_queue_is_a_durable_quorum_queue(rabbit_context: Context, vhost: str) -> None:
    names = rabbit_context.names
    settings = rabbit_context.settings
    with running(rabbit_context, stages=STAGES):
        queues = {q["name"]: q for q in management("GET", f"/queues/{quote(vhost, safe='')}")}  # type: ignore[union-attr]
    # each worker's queue of reload notices lives as long as its connection: the one exception
    control = {n: q for n, q in queues.items() if n.startswith(names.control_queue(""))}
    assert len(control) == 1
    assert all(q["exclusive"] and q["auto_delete"] and not q["durable"] for q in control.values())
    queues = {n: q for n, q in queues.items() if n not in control}
    stage_queues = [names.ingress_queue(), names.routing_queue()] + [
        names.deliver_queue(code) for code in ("MZ", "RS", "GSW", "DSW")
    ]
    expected = stage_queues + [names.dead_letter_queue()] + [names.retry_queue(d) for d in settings.retry.delays_ms()]
    assert sorted(queues) == sorted(expected)
    for name, queue in queues.items():
        assert (queue["type"], queue["arguments"].get("x-queue-type"), queue["durable"], queue["auto_delete"]) == (
            "quorum", "quorum", True, False,
        ), name
    # a message that keeps killing its consumer is dead-lettered by RabbitMQ, not looped forever
    for name in stage_queues:
        arguments = queues[name]["arguments"]
        assert arguments.get("x-delivery-limit") == settings.delivery_limit, name
        assert arguments.get("x-dead-letter-exchange") == names.dead_letter_exchange(), name
