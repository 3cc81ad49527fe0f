"""The raw baseline: a pika relay hop, or a sink, with the guarantees govbus keeps.

    python -m bench.raw_relay relay URL SOURCE_QUEUE EXCHANGE ROUTING_KEY
    python -m bench.raw_relay sink URL SOURCE_QUEUE COUNT OUTPUT_JSON

A relay publishes each delivery persistently with `mandatory` and publisher confirms on the
same channel it consumes from, and acknowledges an input only when its copy is confirmed: with
one publish per delivery, in order, the confirm's sequence number is the delivery tag, so the
broker's (often `multiple`) confirm is passed straight on as the ack. The sink acknowledges
with `multiple` every 100 messages and records when each message arrived.
"""

from __future__ import annotations

import json
import sys
import time

import pika

PREFETCH = 500


def relay(url: str, source: str, exchange: str, routing_key: str) -> None:
    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: pika.channel.Channel) -> None:
        def on_confirm(frame: pika.frame.Method) -> None:
            method = frame.method
            if isinstance(method, pika.spec.Basic.Ack):
                channel.basic_ack(method.delivery_tag, multiple=method.multiple)
            else:
                channel.basic_nack(method.delivery_tag, multiple=method.multiple, requeue=True)

        def on_message(ch: pika.channel.Channel, deliver: pika.spec.Basic.Deliver, properties: pika.BasicProperties, body: bytes) -> None:
            ch.basic_publish(exchange, routing_key, body, properties, mandatory=True)

        channel.confirm_delivery(on_confirm)
        channel.basic_qos(prefetch_count=PREFETCH, callback=lambda _frame: channel.basic_consume(source, on_message))

    connection = pika.SelectConnection(pika.URLParameters(url), on_open_callback=on_open)
    connection.ioloop.start()


def sink(url: str, source: str, count: int, output: str) -> None:
    arrived: dict[str, float] = {}
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    last_tag = 0
    for deliver, properties, _body in channel.consume(source, inactivity_timeout=None):
        arrived[properties.message_id] = time.time()
        last_tag = deliver.delivery_tag
        if last_tag % 100 == 0 or len(arrived) >= count:
            channel.basic_ack(last_tag, multiple=True)
        if len(arrived) >= count:
            break
    with open(output, "w") as f:
        json.dump(arrived, f)
    connection.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "relay":
        relay(*args)
    else:
        sink(args[0], args[1], int(args[2]), args[3])
