"""BENCH pipeline: persistent 2 KB person messages through ingress, router and deliver on
RabbitMQ and PostgreSQL, against a raw pika relay making the same two hops in the same run.

Both sides get the same N messages preloaded into their first queue, run one process per hop
(govbus: `govbus worker --stage ...`; raw: two relays and a sink) on the same broker, and are
timed from the first to the last arrival at the end of the line. govbus does more on the way:
it validates every message against its XSD, checks the sender, remembers finished ids per
stage in PostgreSQL, and commits each delivery to the subscriber's inbox table.
"""

from __future__ import annotations

import argparse

from bench.common import GovbusRun, RawRun, bench_line, person_messages, publish_all, scratch_database, scratch_vhost


def rate(arrivals: dict[str, float]) -> float:
    times = sorted(arrivals.values())
    return (len(times) - 1) / (times[-1] - times[0])


def measure_raw(n: int, messages: list) -> float:  # type: ignore[type-arg]
    with scratch_vhost() as url:
        raw = RawRun(url)
        raw.declare()
        publish_all(url, "raw.in", "k", messages)
        raw.start(n)
        try:
            return rate(raw.wait(timeout=600))
        finally:
            raw.stop()


def measure_govbus(n: int, messages: list, **env: str) -> float:  # type: ignore[type-arg]
    with scratch_vhost() as url, scratch_database() as database:
        run = GovbusRun(url, database, **env)
        run.declare()
        publish_all(url, "bench.ingress", "GA.GA-001", messages)
        run.start()
        try:
            run.wait(n, timeout=600)
            return rate(run.arrival_times())
        finally:
            run.stop()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="messages (default 20000)")
    args = parser.parse_args(argv)
    messages = person_messages(args.n)
    raw = measure_raw(args.n, messages)
    ours = measure_govbus(args.n, messages)
    return bench_line(
        "pipeline", ours / raw, ">=0.6", n=args.n, size="2KB", govbus_msg_s=f"{ours:.0f}", raw_pika_msg_s=f"{raw:.0f}",
        layout="3 processes each, quorum queues, PostgreSQL",
    )


if __name__ == "__main__":
    main()
