"""The SOAP gateway as legacy department systems use it: over real HTTP, from nothing but the
WSDL URL, on the platform's own server (`bus.http.create_app` on uvicorn, as `govbus serve`
hosts it) with every stage running; on the in-memory transport and on RabbitMQ.

The clients are zeep and http.client only: nothing here imports spyne.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest
import uvicorn
import zeep
import zeep.exceptions
from lxml import etree
from sqlalchemy import select
from zeep.wsse.username import UsernameToken

from adapters.gateway.credentials import CredentialStore
from adapters.query import Responder
from bus.query import Query
from adapters.tables import audit
from bus.app import Context, open_context
from bus.broker import Broker
from bus.config import Settings
from bus.deliver import inbox
from bus.http import create_app
from bus.routing import Department
from tests.conftest import inbox_ids, make_settings, management, running, wait_until
from tests.samples import person_envelope

SOAP11 = "/soap/exchange"
SOAP12 = "/soap/exchange12"
NS = "urn:govbus:exchange:1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-soap-message-security-1.0#Base64Binary"
VISIBILITY = 2.0  # seconds a fetched delivery stays hidden, in these tests


# -- the platform, served -------------------------------------------------------------------


@dataclass
class Served:
    """A running platform: its context, base URL and the departments' gateway secrets."""

    context: Context
    app: Any
    base: str
    secrets: dict[str, str]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def client(self, department: str, secret: str | None = None, *, digest: bool = True, path: str = SOAP11,
               host: str | None = None) -> zeep.Client:
        """A zeep client that knows the WSDL URL only, signing as `department`."""
        base = self.base if host is None else f"http://{host}:{self.port}"
        token = UsernameToken(department, secret if secret is not None else self.secrets[department], use_digest=digest)
        return zeep.Client(f"{base}{path}?wsdl", wsse=token)

    def post(self, body: bytes, path: str = SOAP11, headers: dict[str, str] | None = None) -> tuple[int, etree._Element]:
        """POST a SOAP request with http.client; the status and the parsed answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", path, body, {"Content-Type": "text/xml; charset=utf-8", **(headers or {})})
            response = connection.getresponse()
            return response.status, etree.fromstring(response.read())
        finally:
            connection.close()

    def audit(self) -> list[Any]:
        with self.context.engine.connect() as conn:
            return list(conn.execute(select(audit).order_by(audit.c.id)).all())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(context: Context, *, stages: bool = True, secrets: dict[str, str] | None = None) -> Iterator[Served]:
    """The platform's HTTP app on uvicorn in a thread and (with `stages`) every stage running.

    `secrets`: the departments' gateway secrets, already stored; by default new ones are made
    and stored for GA, GS, MZ, RS and GSW."""
    if secrets is None:
        secrets = {d: f"{d.lower()}-secret-{uuid.uuid4().hex[:8]}" for d in ("GA", "GS", "MZ", "RS", "GSW")}
        store = CredentialStore(context.engine, context.settings.data_dir)
        for department, secret in secrets.items():
            store.set(department, secret, "test")
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        context.declare(broker)  # as `govbus serve` does; without stages too, so that submissions are routable
    finally:
        broker.close()
    app = create_app(context)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 15, "the HTTP server to start")
    try:
        with running(context) if stages else contextlib.nullcontext():
            yield Served(context, app, f"http://127.0.0.1:{port}", secrets)
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.soap_gateway.close()


@pytest.fixture
def settings(broker_url: str, tmp_path: Path) -> Settings:
    return make_settings(broker_url, tmp_path, fetch_visibility=VISIBILITY)


@pytest.fixture
def served(context: Context) -> Iterator[Served]:
    with serving(context) as platform:
        yield platform


# -- hand-written requests, as old systems build them ---------------------------------------


def security_header(username: str, secret: str, *, digest: bool = True, nonce: bytes | None = None,
                    created: str | None = None) -> str:
    """A wsse:Security header with a UsernameToken, the digest computed by hand."""
    nonce = os.urandom(16) if nonce is None else nonce
    created = created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if digest:
        password = base64.b64encode(hashlib.sha1(nonce + created.encode() + secret.encode()).digest()).decode()
        kind = "PasswordDigest"
    else:
        password, kind = escape(secret), "PasswordText"
    return (
        f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}" soapenv:mustUnderstand="1">'
        f"<wsse:UsernameToken><wsse:Username>{username}</wsse:Username>"
        f'<wsse:Password Type="{PROFILE}#{kind}">{password}</wsse:Password>'
        f'<wsse:Nonce EncodingType="{BASE64}">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


def soap11(operation: str, header: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:ex="{NS}">'
        f"<soapenv:Header>{header}</soapenv:Header><soapenv:Body>{operation}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def submit_request(envelope: bytes | str, header: str) -> bytes:
    """Submit with the envelope in CDATA, as many legacy clients wrap XML in a string."""
    text = envelope.decode() if isinstance(envelope, bytes) else envelope
    return soap11(f"<ex:Submit><ex:envelope><![CDATA[{text}]]></ex:envelope></ex:Submit>", header)


def fault_code(answer: etree._Element) -> str:
    return answer.findtext(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultcode") or ""


def receipt_of(answer: etree._Element) -> tuple[str | None, str | None]:
    receipt = answer.find(f".//{{{NS}}}receipt")
    assert receipt is not None, etree.tostring(answer)
    return receipt.findtext(f"{{{NS}}}messageId"), receipt.findtext(f"{{{NS}}}accepted")


def refusal_of(error: zeep.exceptions.Fault) -> dict[str, str]:
    """The Refusal detail of a fault, field by field."""
    assert error.detail is not None, f"no detail in {error.code}: {error.message}"
    refusal = error.detail.find(f"{{{NS}}}Refusal")
    assert refusal is not None, etree.tostring(error.detail)
    return {etree.QName(child).localname: child.text or "" for child in refusal}


def line_of(body: bytes, text: str) -> int:
    return next(n for n, line in enumerate(body.decode().splitlines(), 1) if text in line)


# -- Submit ---------------------------------------------------------------------------------


def test_a_client_that_knows_only_the_wsdl_url_submits_and_hears_why_a_refusal(served: Served) -> None:
    ga = served.client("GA")
    valid = person_envelope()
    receipt = ga.service.Submit(envelope=valid.body.decode())
    assert (receipt.messageId, receipt.accepted) == (valid.message_id, True)

    invalid = person_envelope(Sex="5")  # GB/T 2261.1 has no code 5
    with pytest.raises(zeep.exceptions.Fault) as refused:
        ga.service.Submit(envelope=invalid.body.decode())
    assert refused.value.code.split(":")[-1] == "Client.schema_violation"
    detail = refusal_of(refused.value)
    assert detail["code"] == "schema_violation" and detail["rule"] == "cvc-enumeration-valid"
    assert int(detail["line"]) == line_of(invalid.body, "<p:Sex>") and int(detail["column"]) > 0
    assert "'5'" in detail["message"] and f"line {detail['line']}" in refused.value.message

    with pytest.raises(zeep.exceptions.Fault) as unknown:
        ga.service.Submit(envelope=person_envelope(resource="GA-404").body.decode())
    assert unknown.value.code.split(":")[-1] == "Client.unknown_resource"
    assert refusal_of(unknown.value)["code"] == "unknown_resource"

    # the accepted one reaches both subscribers of GA-001; the refused ones nobody
    wait_until(lambda: valid.message_id in inbox_ids(served.context, "MZ") and valid.message_id in inbox_ids(served.context, "RS"),
               message="the submitted envelope in the subscribers' inboxes")
    assert inbox_ids(served.context, "MZ") == [valid.message_id]

    # SOAP 1.2 on its own path, same operations and codes (a Sender fault with its subcode)
    ga12 = served.client("GA", path=SOAP12)
    again = person_envelope()
    assert ga12.service.Submit(envelope=again.body.decode()).messageId == again.message_id
    with pytest.raises(zeep.exceptions.Fault) as refused12:
        ga12.service.Submit(envelope=invalid.body.decode())
    assert refused12.value.code.split(":")[-1] == "Sender"
    assert [q.localname for q in refused12.value.subcodes] == ["schema_violation"]
    assert refusal_of(refused12.value)["line"] == detail["line"]
    wait_until(lambda: again.message_id in inbox_ids(served.context, "MZ"), message="the SOAP 1.2 submission delivered")


def test_the_wsdl_names_the_address_the_client_used(served: Served) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        for path, binding in ((SOAP11, "http://schemas.xmlsoap.org/wsdl/soap/"),
                              (SOAP12, "http://schemas.xmlsoap.org/wsdl/soap12/")):
            for host in (f"localhost:{served.port}", "gateway.zhszwb.gov.cn:8443", f"127.0.0.1:{served.port}"):
                connection.request("GET", f"{path}?wsdl", headers={"Host": host})
                response = connection.getresponse()
                assert response.status == 200
                wsdl = etree.fromstring(response.read())
                addresses = wsdl.findall(f".//{{{binding}}}address")
                assert [a.get("location") for a in addresses] == [f"http://{host}{path}"]
                assert wsdl.get("targetNamespace") == NS
    finally:
        connection.close()
    # a client that reached the gateway by another name posts back to that name
    envelope = person_envelope()
    receipt = served.client("GA", host="localhost").service.Submit(envelope=envelope.body.decode())
    assert receipt.messageId == envelope.message_id


def test_a_hand_written_soap11_request_as_old_systems_send(served: Served) -> None:
    envelope = person_envelope()
    status, answer = served.post(submit_request(envelope.body, security_header("GA", served.secrets["GA"])),
                                 headers={"SOAPAction": '"Submit"'})
    assert status == 200, etree.tostring(answer)
    assert receipt_of(answer) == (envelope.message_id, "true")

    # an envelope file that declares GBK travels as text: it is stored as the UTF-8 it now is
    gbk = person_envelope(Name="林晓梅")
    text = gbk.body.decode().replace('encoding="UTF-8"', 'encoding="GBK"')
    status, answer = served.post(submit_request(text, security_header("GA", served.secrets["GA"])))
    assert status == 200, etree.tostring(answer)
    wait_until(lambda: {envelope.message_id, gbk.message_id} <= set(inbox_ids(served.context, "MZ")),
               message="both hand-written submissions delivered")
    with served.context.engine.connect() as conn:
        bodies = dict(conn.execute(select(inbox.c.message_id, inbox.c.body).where(inbox.c.department == "MZ")).all())
    assert bytes(bodies[envelope.message_id]) == envelope.body  # byte for byte, Chinese included
    assert bytes(bodies[gbk.message_id]) == gbk.body  # the declaration says UTF-8 again

    # a refusal is HTTP 500 with the fault code, as SOAP 1.1 clients expect
    status, answer = served.post(submit_request(person_envelope(Sex="5").body, security_header("GA", served.secrets["GA"])))
    assert (status, fault_code(answer)) == (500, "soap11env:Client.schema_violation")
    line = answer.findtext(f".//detail/{{{NS}}}Refusal/{{{NS}}}line")
    assert line is not None and int(line) > 1


# -- Fetch, Ack, Query ------------------------------------------------------------------------


def test_a_department_fetches_and_acknowledges_its_deliveries(served: Served) -> None:
    ga, mz = served.client("GA"), served.client("MZ")
    sent = [person_envelope() for _ in range(3)]
    for envelope in sent:
        ga.service.Submit(envelope=envelope.body.decode())
    ids = [e.message_id for e in sent]
    wait_until(lambda: set(ids) <= set(inbox_ids(served.context, "MZ")), message="three deliveries to MZ")
    order = [i for i in inbox_ids(served.context, "MZ") if i in ids]

    first = mz.service.Fetch(max=2)
    assert [d.messageId for d in first] == order[:2]
    delivered = {e.message_id: e for e in sent}
    for d in first:
        assert (d.sender, d.resource, d.version, d.fetches) == ("GA", "GA-001", "1.0", 1)
        assert d.envelope == delivered[d.messageId].body.decode()
    rest = mz.service.Fetch(max=10)  # the first two are leased: only the third comes
    assert [d.messageId for d in rest] == order[2:]

    assert mz.service.Ack(ids=[*order[:2], str(uuid.uuid4())]) == order[:2]  # an unknown id is ignored
    assert served.client("GSW").service.Ack(ids=[order[2]]) == []  # not GSW's delivery
    # the third, fetched and not acknowledged, comes back after the visibility timeout
    back = wait_until(lambda: mz.service.Fetch(max=10), timeout=VISIBILITY + 10, message="the unacknowledged delivery back")
    assert [(d.messageId, d.fetches) for d in back] == [(order[2], 2)]  # type: ignore[union-attr]
    assert mz.service.Ack(ids=[order[2]]) == [order[2]]
    assert served.context.engine.connect().execute(  # nothing of MZ's waits any more
        select(inbox.c.message_id).where(inbox.c.department == "MZ", inbox.c.acked_at.is_(None))).all() == []

    for count in (0, 501):
        with pytest.raises(zeep.exceptions.Fault) as invalid:
            mz.service.Fetch(max=count)
        assert invalid.value.code.split(":")[-1] == "Client.invalid" and "500" in invalid.value.message


class Register(Responder):
    """GA's population register: answers with the asker and the criteria; "slow" too late."""

    def answer(self, query: Query) -> bytes:
        if query.criteria == "slow":
            time.sleep(2.0)
        return f"<Answer asker='{query.asker}'>{escape(query.criteria)}</Answer>".encode()


def test_a_subscriber_queries_the_provider_through_the_gateway(served: Served) -> None:
    register = Register(Department("GA", "市公安局", "responder", {"resources": "GA-001"}), served.context, name="ga-register")
    stop = threading.Event()
    thread = threading.Thread(target=register.run, args=(stop,), daemon=True)
    thread.start()
    try:
        mz = served.client("MZ")

        def answered() -> str | None:
            try:
                return mz.service.Query(resource="GA-001", criteria="440402199003072316")  # type: ignore[no-any-return]
            except zeep.exceptions.Fault as error:
                assert error.code.split(":")[-1] == "Server.no_responder", error.message
                return None  # the responder is not listening yet

        assert wait_until(answered, message="the responder's answer") == "<Answer asker='MZ'>440402199003072316</Answer>"

        with pytest.raises(zeep.exceptions.Fault) as denied:  # GSW subscribes to GS-001 only
            served.client("GSW").service.Query(resource="GA-001", criteria="x")
        assert denied.value.code.split(":")[-1] == "Client.not_authorized"
        assert [(r.username, r.operation, r.outcome) for r in served.audit()][-1] == ("GSW", "Query", "forbidden")

        served.app.state.soap_gateway.query_timeout = 0.5
        with pytest.raises(zeep.exceptions.Fault) as late:
            mz.service.Query(resource="GA-001", criteria="slow")
        assert late.value.code.split(":")[-1] == "Server.query_timeout"

        with pytest.raises(zeep.exceptions.Fault) as nobody:  # RS subscribes to GS-001; nobody answers it
            served.client("RS").service.Query(resource="GS-001", criteria="x")
        assert nobody.value.code.split(":")[-1] == "Server.no_responder"
    finally:
        stop.set()
        thread.join(10)


def test_concurrent_submissions_each_get_their_receipt_and_arrive_once(served: Served) -> None:
    """Callers at once share the broker's confirms; each still hears of its own envelope."""
    batches = [[person_envelope() for _ in range(6)] for _ in range(8)]
    answers: dict[str, tuple[int, tuple[str | None, str | None]]] = {}

    def caller(envelopes: list[Any]) -> None:
        for envelope in envelopes:
            status, answer = served.post(submit_request(envelope.body, security_header("GA", served.secrets["GA"])))
            answers[envelope.message_id] = (status, receipt_of(answer) if status == 200 else (None, None))

    threads = [threading.Thread(target=caller, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [e.message_id for batch in batches for e in batch]
    assert answers == {i: (200, (i, "true")) for i in ids}
    wait_until(lambda: len(inbox_ids(served.context, "MZ")) >= len(ids), message="every submission delivered")
    assert sorted(inbox_ids(served.context, "MZ")) == sorted(ids)


def test_a_broker_that_cannot_take_a_submission_is_a_server_fault_to_retry(amqp_url: str, tmp_path: Path) -> None:
    context = open_context(make_settings(amqp_url, tmp_path))
    try:
        with serving(context, stages=False) as platform:
            vhost = amqp_url.rsplit("/", 1)[1]
            exchange = context.names.ingress_exchange()
            management("DELETE", f"/exchanges/{vhost}/{quote(exchange, safe='')}")
            status, answer = platform.post(submit_request(person_envelope().body, security_header("GA", platform.secrets["GA"])))
            assert (status, fault_code(answer)) == (500, "soap11env:Server.unavailable")
            assert "try again later" in (answer.findtext(".//faultstring") or "")
            # once the broker takes it again (topology declared anew), the retry goes through
            broker = Broker(context.settings.broker_url)
            broker.connect()
            try:
                context.declare(broker)
            finally:
                broker.close()
            envelope = person_envelope()
            status, answer = platform.post(submit_request(envelope.body, security_header("GA", platform.secrets["GA"])))
            assert status == 200 and receipt_of(answer) == (envelope.message_id, "true")
    finally:
        context.engine.dispose()
