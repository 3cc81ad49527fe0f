"""Hostile XML through the real pipeline, on both transports.

A department's system (or whoever holds its credentials) publishes raw bytes to the ingress
exchange, with no message id and no govbus headers. Whatever it sends must be dead-lettered with
a reason an operator can filter on, never delivered, never able to read a local file into
anything the platform stores or logs, never able to make the platform open a connection, and
never able to stop the worker: a valid message sent afterwards still arrives.
"""

from __future__ import annotations

import gzip
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree
from schemas import XmlLimits
from sqlalchemy import select

from bus.app import Context
from bus.broker import Broker, publish_confirmed
from bus.config import Settings
from bus.deadletter import DeadLetter, DeadLetterStore
from bus.deliver import inbox
from bus.envelope import build_envelope

from tests.conftest import inbox_ids, make_settings, running, wait_until
from tests.samples import PERSON_NS, person, person_envelope

MAX_BYTES = 64 * 1024  # room for the entity attacks, so that the size limit does not preempt them
# Envelope / Body / Person / Name: a person envelope is exactly 4 elements deep. Limits are
# inclusive, so every valid message in this module sits exactly on the depth limit.
MAX_DEPTH = 4
ROUTING_KEY = "GA.GA-001"
# A line of the file an external entity tries to read; it must never show up anywhere.
SECRET = Path("/etc/passwd").read_text().splitlines()[0]


@pytest.fixture
def settings(broker_url: str, tmp_path: Path) -> Settings:
    """Small XML limits, so that 'too large' and 'too deep' are cheap to send."""
    return make_settings(broker_url, tmp_path, xml=XmlLimits(max_bytes=MAX_BYTES, max_depth=MAX_DEPTH))


class Trap:
    """A listening TCP port nobody should ever connect to. The kernel completes a connect()
    into the listen backlog even when nobody calls accept(), so checking afterwards is enough."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]

    def connections(self) -> list[tuple[str, int]]:
        peers = []
        while True:
            try:
                conn, peer = self.sock.accept()
            except BlockingIOError:
                return peers
            conn.close()
            peers.append(peer)


@pytest.fixture
def trap() -> Iterator[Trap]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        yield Trap(sock)


# -- hostile documents ------------------------------------------------------------------------
# Most are a valid person envelope with one thing changed, as a hostile department would send
# them: were the hostile part ignored or expanded, the rest would pass every check. Entities
# land in <p:Phone>, whose pattern facet would echo an expanded value into the reason text.


def _with_doctype(subset: str, phone: str) -> bytes:
    body = person_envelope().body
    body = re.sub(rb"<p:Phone>[^<]*</p:Phone>", f"<p:Phone>{phone}</p:Phone>".encode(), body)
    declaration, rest = body.split(b"\n", 1)
    return declaration + b"\n" + f"<!DOCTYPE env:Envelope{subset}>\n".encode() + rest


def billion_laughs(_: int) -> bytes:
    # The classic: ten levels of ten-fold expansion, a billion "lol"s from under 1 KB.
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    return _with_doctype(f" [{entities}]", "&lol9;")


def quadratic_blowup(_: int) -> bytes:
    # One 20 KB entity referenced 5,000 times: 100 MB from 35 KB, under naive nesting limits.
    return _with_doctype(f' [<!ENTITY a "{"x" * 20_000}">]', "&a;" * 5_000)


def external_entity_file(_: int) -> bytes:
    return _with_doctype(' [<!ENTITY xxe SYSTEM "file:///etc/passwd">]', "&xxe;")


def external_entity_network(port: int) -> bytes:
    return _with_doctype(f' [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/x">]', "&xxe;")


def external_parameter_entity(port: int) -> bytes:
    # Out-of-band XXE: a parameter entity pulls in a DTD from the attacker's server.
    return _with_doctype(f' [<!ENTITY % remote SYSTEM "http://127.0.0.1:{port}/evil.dtd"> %remote;]', "13926981234")


def external_dtd(port: int) -> bytes:
    return _with_doctype(f' SYSTEM "http://127.0.0.1:{port}/envelope.dtd"', "13926981234")


def oversized(_: int) -> bytes:
    body = person_envelope().body
    return body + b" " * (MAX_BYTES + 1 - len(body))  # trailing whitespace is well-formed


def too_deep(_: int) -> bytes:
    # one level past the limit, inside an otherwise ordinary envelope
    payload = person().replace(b"<p:Name>", b"<p:Name><p:Name>").replace(b"</p:Name>", b"</p:Name></p:Name>")
    return build_envelope("GA", "GA-001", "1.0", payload).body


def far_too_deep(_: int) -> bytes:
    # past libxml2's own nesting limit (256) as well
    payload = f'<p:Person xmlns:p="{PERSON_NS}">'.encode() + b"<p:Name>" * 1_000 + b"</p:Name>" * 1_000 + b"</p:Person>"
    return build_envelope("GA", "GA-001", "1.0", payload).body


def malformed(_: int) -> bytes:
    body = person_envelope().body
    return body[: len(body) // 2]  # cut off mid-document, as a broken upload would be


def wrong_namespace(_: int) -> bytes:
    # the person record, word for word, but in a namespace no specification of GA-001 has
    payload = person().replace(PERSON_NS.encode(), b"urn:example:not-govbus:person")
    return build_envelope("GA", "GA-001", "1.0", payload).body


def not_xml(_: int) -> bytes:
    return gzip.compress(person_envelope().body, mtime=0)  # a department that compresses


def empty(_: int) -> bytes:
    return b""


ATTACKS: dict[str, tuple[Callable[[int], bytes], str]] = {
    "billion_laughs": (billion_laughs, "forbidden_xml"),
    "quadratic_blowup": (quadratic_blowup, "forbidden_xml"),
    "external_entity_file": (external_entity_file, "forbidden_xml"),
    "external_entity_network": (external_entity_network, "forbidden_xml"),
    "external_parameter_entity": (external_parameter_entity, "forbidden_xml"),
    "external_dtd": (external_dtd, "forbidden_xml"),
    "oversized": (oversized, "xml_too_large"),
    "too_deep": (too_deep, "xml_too_deep"),
    "far_too_deep": (far_too_deep, "xml_too_deep"),
    "malformed": (malformed, "malformed_xml"),
    "wrong_namespace": (wrong_namespace, "wrong_namespace"),
    "not_xml": (not_xml, "malformed_xml"),
    "empty": (empty, "malformed_xml"),
}


# -- helpers ----------------------------------------------------------------------------------


def publish_raw(context: Context, bodies: list[bytes], message_id: str | None = None) -> None:
    """Publish bytes to the ingress exchange with confirms, and nothing else: no message id, no
    headers, the way a hostile (or merely careless) department would."""
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        messages = [(context.names.ingress_exchange(), ROUTING_KEY, b, message_id, None, {}) for b in bodies]
        assert publish_confirmed(broker, broker.channel(), messages) == [None] * len(bodies)
    finally:
        broker.close()


def deliveries(context: Context) -> list[tuple[str, str]]:
    """(department, message id) of everything in every inbox."""
    with context.engine.connect() as conn:
        return sorted((d, m) for d, m in conn.execute(select(inbox.c.department, inbox.c.message_id)))


def stored_texts(context: Context, letters: list[DeadLetter]) -> list[str]:
    """Everything the platform keeps that a person can read, as text."""
    with context.engine.connect() as conn:
        bodies = list(conn.execute(select(inbox.c.body)).scalars())
    texts = [b.decode("utf-8", "replace") for b in bodies]
    for letter in letters:
        texts += [letter.body.decode("utf-8", "replace"), letter.reason_text, str(letter.headers)]
    return texts


def send_valid_and_wait(context: Context) -> str:
    """A valid message, published raw like the attacks; returns its id once both subscribers
    have it."""
    env = person_envelope()
    publish_raw(context, [env.body])
    wait_until(
        lambda: env.message_id in inbox_ids(context, "MZ") and env.message_id in inbox_ids(context, "RS"),
        timeout=8,
        message="the valid message sent after the attack",
    )
    return env.message_id


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_document_is_dead_lettered_and_the_bus_carries_on(
    context: Context, attack: str, trap: Trap, caplog: pytest.LogCaptureFixture
) -> None:
    make, reason = ATTACKS[attack]
    hostile = make(trap.port)
    store = DeadLetterStore(context.engine)
    caplog.set_level(logging.INFO)
    with running(context):
        publish_raw(context, [hostile])
        wait_until(store.list, timeout=8, message=f"the {attack} document to be dead-lettered")
        valid = send_valid_and_wait(context)
    letters = store.list()
    assert [(d.reason, d.stage) for d in letters] == [(reason, "ingress")], [d.reason_text for d in letters]
    [letter] = letters
    # kept byte for byte, where it came from, refused at once (permanent: no retries)
    assert letter.body == hostile
    assert (letter.origin_exchange, letter.origin_routing_key) == (context.names.ingress_exchange(), ROUTING_KEY)
    assert letter.queue == context.names.ingress_queue()
    assert letter.attempts == 1
    assert letter.reason_text
    # only the valid message reached anyone
    assert deliveries(context) == sorted([("MZ", valid), ("RS", valid)])
    # nothing read from the local file, and nobody called out
    for text in stored_texts(context, letters) + [caplog.text]:
        assert SECRET not in text
    assert trap.connections() == []


def test_a_burst_of_attacks_does_not_disturb_a_valid_message_among_them(context: Context, trap: Trap) -> None:
    """Every attack and one valid message in one publish, so that the worker takes them in one
    batch: each attack is dead-lettered once, the valid one is delivered once."""
    attacks = {name: make(trap.port) for name, (make, _) in ATTACKS.items()}
    env = person_envelope()
    bodies = list(attacks.values())
    bodies.insert(len(bodies) // 2, env.body)
    store = DeadLetterStore(context.engine)

    def captured() -> set[str]:
        stored = {d.body for d in store.list(limit=100)}
        return {name for name, body in attacks.items() if body in stored}

    with running(context):
        publish_raw(context, bodies)
        wait_until(lambda: inbox_ids(context, "MZ") and inbox_ids(context, "RS"), timeout=8, message="the valid message")
        deadline = time.monotonic() + 8
        while captured() != set(attacks) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted(set(attacks) - captured()) == [], "attacks never dead-lettered"
    letters = store.list(limit=100)
    assert len(letters) == len(attacks)  # each once
    assert {d.stage for d in letters} == {"ingress"}
    assert deliveries(context) == sorted([("MZ", env.message_id), ("RS", env.message_id)])
    for text in stored_texts(context, letters):
        assert SECRET not in text
    assert trap.connections() == []


def test_a_document_exactly_at_the_limits_is_delivered(context: Context) -> None:
    """Both limits are inclusive: MAX_BYTES bytes and MAX_DEPTH levels pass."""
    env = person_envelope()
    body = env.body + b" " * (MAX_BYTES - len(env.body))
    assert len(body) == MAX_BYTES
    depth = max(len(list(e.iterancestors())) + 1 for e in etree.fromstring(body).iter())
    assert depth == MAX_DEPTH
    store = DeadLetterStore(context.engine)
    with running(context):
        publish_raw(context, [body], message_id=env.message_id)
        wait_until(lambda: inbox_ids(context, "MZ") and inbox_ids(context, "RS"), timeout=8, message="the delivery")
    assert deliveries(context) == sorted([("MZ", env.message_id), ("RS", env.message_id)])
    assert store.list() == []
