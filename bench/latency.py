"""BENCH latency: ingress to delivery at a steady 500 msg/s, against the raw relay's.

A paced publisher sends persistent 2 KB person messages at a fixed rate (with pipelined
confirms, as a department system would) into govbus's ingress, with one worker process per
stage on RabbitMQ and PostgreSQL; each message's latency runs from just before its publish to
the time the deliver stage wrote it to the subscriber's inbox (the row's delivered_at, taken
before the batch's INSERT and COMMIT). The raw baseline is the same publisher feeding two pika
relays and a sink that notes each arrival.
"""

from __future__ import annotations

import argparse
import time

from bench.common import GovbusRun, RawRun, bench_line, percentile, person_messages, scratch_database, scratch_vhost
from bus.broker import Broker
from bus.names import Header


def paced_publish(url: str, exchange: str, routing_key: str, envelopes: list, rate: float) -> dict[str, float]:  # type: ignore[type-arg]
    """Publish at `rate` per second; returns each message id's publish time."""
    broker = Broker(url)
    broker.connect()
    channel = broker.channel()
    sent: dict[str, float] = {}
    confirmed = 0
    start = time.monotonic() + 0.2
    for i, e in enumerate(envelopes):
        due = start + i / rate
        while True:
            for _seq, failure in channel.take_confirms():
                if failure:
                    raise RuntimeError(failure)
                confirmed += 1
            wait = due - time.monotonic()
            if wait <= 0:
                break
            broker.drain(min(wait, 0.01))
        sent[e.message_id] = time.time()
        channel.publish(exchange, routing_key, e.body, e.message_id, None,
                        {Header.SENDER: e.sender, Header.RESOURCE: e.resource, Header.VERSION: e.version})
        broker.drain(0)  # sends it now
    deadline = time.monotonic() + 30
    while confirmed < len(envelopes) and time.monotonic() < deadline:
        confirmed += len(channel.take_confirms())
        broker.drain(0.05)
    broker.close()
    return sent


def latencies(sent: dict[str, float], arrived: dict[str, float]) -> list[float]:
    missing = set(sent) - set(arrived)
    if missing:
        raise RuntimeError(f"{len(missing)} messages never arrived")
    return [(arrived[m] - t) * 1000 for m, t in sent.items()]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    n = int(args.rate * args.seconds)
    messages = person_messages(n + 1, seed=11)
    warm, messages = messages[0], messages[1:]

    with scratch_vhost() as url:
        raw = RawRun(url)
        raw.declare()
        raw.start(n + 1)
        time.sleep(1.0)  # the relays connect
        paced_publish(url, "raw.in", "k", [warm], args.rate)
        sent = paced_publish(url, "raw.in", "k", messages, args.rate)
        raw_ms = latencies(sent, raw.wait(timeout=120))
        raw.stop()

    with scratch_vhost() as url, scratch_database() as database:
        run = GovbusRun(url, database)
        run.declare()
        run.start()
        paced_publish(url, "bench.ingress", "GA.GA-001", [warm], args.rate)
        run.wait(1, timeout=60)  # every worker is up and warm
        sent = paced_publish(url, "bench.ingress", "GA.GA-001", messages, args.rate)
        run.wait(n + 1, timeout=120)
        ours_ms = latencies(sent, run.arrival_times())
        run.stop()

    p = {name: (percentile(v, 50), percentile(v, 99)) for name, v in (("ours", ours_ms), ("raw", raw_ms))}
    return bench_line(
        "latency", p["ours"][1] / p["raw"][1], "p99<25ms", rate=f"{args.rate:.0f}/s", n=n,
        govbus_p50_ms=f"{p['ours'][0]:.1f}", govbus_p99_ms=f"{p['ours'][1]:.1f}",
        raw_p50_ms=f"{p['raw'][0]:.1f}", raw_p99_ms=f"{p['raw'][1]:.1f}",
        govbus_max_ms=f"{max(ours_ms):.1f}",
    )


if __name__ == "__main__":
    main()
