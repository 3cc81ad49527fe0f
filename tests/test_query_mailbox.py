"""Queries over the bus and the pull mailbox, below the SOAP gateway: the same behaviour on the
in-memory transport and on RabbitMQ, and leases that survive in the database."""

from __future__ import annotations

import threading
import time

import pytest

from adapters.mailbox import InvalidRequest, Mailbox
from adapters.query import Responder
from bus.errors import BusError, NotAuthorized
from bus.query import NoResponder, Query, QueryClient, QueryRefused, QueryTimeout
from bus.routing import Department

from tests.conftest import inbox_ids, make_settings, running, submit, wait_until
from tests.samples import person_envelope


class Registry(Responder):
    """GA's population register: echoes the criteria; "slow" answers too late, "refuse" refuses."""

    def answer(self, query: Query) -> bytes:
        if query.criteria == "slow":
            time.sleep(1.5)
        if query.criteria == "refuse":
            raise BusError("查询条件不完整: 需要身份证号")
        return f"<Answer asker='{query.asker}'>{query.criteria}</Answer>".encode()


@pytest.fixture
def responder(context):
    registry = Registry(Department("GA", "市公安局", "responder", {"resources": "GA-001"}), context, name="ga-registry")
    stop = threading.Event()
    thread = threading.Thread(target=registry.run, args=(stop,), daemon=True)
    thread.start()
    client = QueryClient(context)
    # the responder's queue exists once it consumes: ask until the answer comes
    wait_until(lambda: _answers(client), message="the responder to listen")
    yield client
    client.close()
    stop.set()
    thread.join(5)


def _answers(client: QueryClient) -> bool:
    try:
        return bool(client.ask("MZ", "GA-001", "ping", timeout=2))
    except NoResponder:
        return False


def test_a_subscriber_gets_the_providers_answer(responder):
    assert responder.ask("MZ", "GA-001", "440402199003072316", timeout=5) == b"<Answer asker='MZ'>440402199003072316</Answer>"
    # many threads at once, each gets its own answer
    answers: dict[int, bytes] = {}

    def ask(i: int) -> None:
        answers[i] = responder.ask("RS", "GA-001", f"q{i}", timeout=5)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert answers == {i: f"<Answer asker='RS'>q{i}</Answer>".encode() for i in range(8)}


def test_queries_are_refused_timed_out_or_denied_with_their_reason(responder):
    with pytest.raises(NotAuthorized, match="no active subscription"):
        responder.ask("GSW", "GA-001", "x", timeout=2)  # GSW subscribes to GS-001 only
    with pytest.raises(QueryRefused, match="需要身份证号") as refused:
        responder.ask("MZ", "GA-001", "refuse", timeout=5)
    assert refused.value.code == "bus_error"
    with pytest.raises(QueryTimeout):
        responder.ask("MZ", "GA-001", "slow", timeout=0.5)
    # the client goes on after a timeout
    assert responder.ask("MZ", "GA-001", "after", timeout=5) == b"<Answer asker='MZ'>after</Answer>"


def test_a_query_nobody_serves_fails_at_once(context):
    client = QueryClient(context)
    try:
        started = time.monotonic()
        with pytest.raises(NoResponder):
            client.ask("RS", "GS-001", "91440400MA4UH3C25X", timeout=10)
        assert time.monotonic() - started < 5
    finally:
        client.close()


def test_fetched_deliveries_come_back_unless_acknowledged(broker_url, tmp_path):
    from bus.app import open_context

    context = open_context(make_settings(broker_url, tmp_path, fetch_visibility=0.5))
    envelopes = [person_envelope() for _ in range(3)]
    with running(context):
        submit(context, envelopes)
        wait_until(lambda: len(inbox_ids(context, "MZ")) == 3, message="deliveries to MZ")
    mailbox = Mailbox(context)
    first = mailbox.fetch("MZ", 2)
    assert [f.message_id for f in first] == [e.message_id for e in envelopes[:2]]
    assert [f.fetches for f in first] == [1, 1]
    assert first[0].body == envelopes[0].body
    # leased: the next fetch gets only the third; a department acks only its own deliveries
    assert [f.message_id for f in mailbox.fetch("MZ", 10)] == [envelopes[2].message_id]
    assert mailbox.ack("GSW", [envelopes[0].message_id]) == []
    assert mailbox.ack("MZ", [envelopes[0].message_id, "not-an-id"]) == [envelopes[0].message_id]
    time.sleep(0.6)  # past the visibility timeout
    again = mailbox.fetch("MZ", 10)
    assert [f.message_id for f in again] == [e.message_id for e in envelopes[1:]]
    assert [f.fetches for f in again] == [2, 2]
    assert sorted(mailbox.ack("MZ", [f.message_id for f in again])) == sorted(e.message_id for e in envelopes[1:])
    assert mailbox.fetch("MZ", 10) == [] and mailbox.waiting("MZ") == 0
    with pytest.raises(InvalidRequest):
        mailbox.fetch("MZ", 0)
    context.engine.dispose()


def test_two_gateways_fetching_at_once_on_postgresql_never_get_the_same_delivery(pg_url, tmp_path):
    from bus.app import open_context
    from bus.deliver import InboxOutbound

    context = open_context(make_settings("memory://", tmp_path, database_url=pg_url))
    envelopes = [person_envelope() for _ in range(200)]
    InboxOutbound(Department("MZ", "市民政局"), context).deliver(envelopes)
    mailboxes = [Mailbox(context), Mailbox(context)]
    got: list[list[str]] = [[], []]

    def drain(i: int) -> None:
        while batch := mailboxes[i].fetch("MZ", 7):
            got[i] += [f.message_id for f in batch]

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got[0] + got[1]) == sorted(e.message_id for e in envelopes)  # each once
    assert Mailbox(context).waiting("MZ") == 200  # fetched, not acknowledged
    context.engine.dispose()
