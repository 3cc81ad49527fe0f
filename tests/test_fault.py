"""Fault: the broker drops every connection while 5,000 messages flow.

The stages run as separate worker processes on RabbitMQ and PostgreSQL, as in production.
`rabbitmqctl close_all_connections` is run twice mid-flow (for this test's vhost only). The
workers must reconnect by themselves, and each subscriber's inbox must end up holding every
message exactly once: what was unacknowledged is redelivered, and the copies are recognised
by message id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bus.app import open_context
from bus.deadletter import DeadLetterStore

from tests.conftest import DATA, inbox_ids, make_settings, submit, wait_until
from tests.samples import random_people

GOVBUS = str(Path(sys.executable).with_name("govbus"))
STAGES = ("ingress", "router", "deliver", "deadletter")


def close_all_connections(vhost: str) -> None:
    result = subprocess.run(
        ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "fault test"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"rabbitmqctl failed: {result.stderr}"


def test_workers_recover_and_every_message_arrives_exactly_once(vhost, amqp_url, pg_url, tmp_path):
    settings = make_settings(amqp_url, tmp_path, database_url=pg_url)
    env = {
        **os.environ,
        "GOVBUS_BROKER_URL": amqp_url,
        "GOVBUS_DATABASE_URL": pg_url,
        "GOVBUS_ROUTES": str(DATA / "routes.toml"),
        "GOVBUS_PREFIX": settings.prefix,
    }
    subprocess.run([GOVBUS, "topology", "declare"], env=env, check=True, capture_output=True)
    context = open_context(settings)
    people = random_people(5000)
    expected = sorted(e.message_id for e in people)
    submit(context, people)

    logs = {stage: tmp_path / f"{stage}.log" for stage in STAGES}
    workers = [
        subprocess.Popen([GOVBUS, "worker", "--stage", stage], env=env, stdout=subprocess.DEVNULL,
                         stderr=logs[stage].open("wb"))
        for stage in STAGES
    ]
    try:
        wait_until(lambda: len(inbox_ids(context, "MZ")) >= 500, 60, "the first deliveries")
        close_all_connections(vhost)
        wait_until(lambda: len(inbox_ids(context, "MZ")) >= 2500, 60, "deliveries after the first reconnect")
        close_all_connections(vhost)
        wait_until(
            lambda: len(inbox_ids(context, "MZ")) >= 5000 and len(inbox_ids(context, "RS")) >= 5000,
            120, "every message in both inboxes",
        )
        assert all(w.poll() is None for w in workers), "a worker exited instead of reconnecting"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)

    for department in ("MZ", "RS"):
        delivered = inbox_ids(context, department)
        twice = [m for m, n in Counter(delivered).items() if n > 1]
        assert not twice, f"{department} got {len(twice)} messages more than once"
        assert sorted(delivered) == expected, f"{department} is missing {len(set(expected) - set(delivered))} messages"
    assert DeadLetterStore(context.engine).list(status=None) == []
    reconnected = [s for s in STAGES if "reconnecting" in logs[s].read_text()]
    assert set(reconnected) == set(STAGES), f"only {reconnected} noticed the closed connections"
    # every worker stopped cleanly on SIGTERM and said what it did, reconnections included
    assert all(w.returncode == 0 for w in workers), [w.returncode for w in workers]
    assert "deliver: done" in logs["deliver"].read_text()
    context.engine.dispose()
