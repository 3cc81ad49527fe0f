"""The exchange web service (spyne, document/literal, namespace `urn:govbus:exchange:1`).

Operations, each called as the department whose WS-Security UsernameToken signs the call:

- `Submit(envelope)` -> `receipt {messageId, accepted}`: the envelope XML as text, judged as
  the ingress will judge it and published to the ingress; the receipt comes once the broker
  confirmed it.
- `Query(resource, criteria)` -> `answer`: the provider's answer (XML as text).
- `Fetch(max)` -> `delivery*`: up to `max` (1..500) of the department's deliveries; one not
  acknowledged comes back after the mailbox's visibility timeout.
- `Ack(ids*)` -> `ids*`: the ids acknowledged (unknown ids and other departments' are ignored).

Faults have stable codes a client can branch on: `Client.authentication_failed` (nothing
said on why: that is in `gateway_audit`), `Client.<reason>` for a refused envelope or query
(`schema_violation`, `not_authorized`, `unknown_resource`, ... the bus's reason codes) with a
`Refusal {code, message, rule, line, column}` detail, `Client.invalid` for a bad argument,
and, on the platform's side, `Server.unavailable` (try again later), `Server.query_timeout`
and `Server.no_responder` (nobody answers queries on the resource now). A Submit refused
for acting as another department, and a Query of a resource not subscribed to, are audited.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from schemas import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bus.db import db_error_text
from bus.envelope import Envelope
from bus.errors import BusError, Failure, NotAuthorized, TransientError, failure_of

from adapters.gateway.credentials import CredentialStore
from adapters.gateway.wsse import FORBIDDEN, AuthenticationFailed, Authenticator
from adapters.submit import Submitter

with warnings.catch_warnings():  # spyne 2.14 imports `cgi` and six's importer: noise on 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", ImportWarning)
    from spyne import Application, Boolean, ComplexModel, Fault, Integer32, ServiceBase, Unicode, rpc
    from spyne.protocol._outbase import OutProtocolBase
    from spyne.protocol.soap import Soap11, Soap12
    from spyne.server.wsgi import WsgiApplication  # noqa: F401  (for adapters.gateway.http)

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.gateway")

NS = "urn:govbus:exchange:1"
MAX_FETCH = 500
MAX_ACK = 500
QUERY_TIMEOUT = 25.0  # seconds: under the 30 s read timeout most SOAP clients default to

# spyne logs every Fault raised by an operation with a traceback: they are answers, and the
# gateway logs (and audits) what an operator needs. Unexpected exceptions it still logs, as
# CRITICAL ("spyne.application.server"), before answering "Server: Internal Error".
logging.getLogger("spyne.application").setLevel(logging.CRITICAL)


class Receipt(ComplexModel):
    """An accepted envelope: the broker has it, under this message id."""

    __namespace__ = NS
    _type_info = [("messageId", Unicode), ("accepted", Boolean)]


class Delivery(ComplexModel):
    """One delivery to the calling department; `fetches` counts how often it was fetched."""

    __namespace__ = NS
    _type_info = [
        ("messageId", Unicode), ("correlationId", Unicode), ("sender", Unicode), ("resource", Unicode),
        ("version", Unicode), ("operation", Unicode), ("fetches", Integer32), ("envelope", Unicode),
    ]


def _required(kind: Any) -> Any:
    return kind(min_occurs=1, nillable=False)


class ExchangeService(ServiceBase):
    """The operations; the behaviour is the `Gateway`'s, reached through the application."""

    __service_name__ = "ExchangeService"

    @rpc(_required(Unicode), _returns=Receipt, _out_variable_name="receipt")
    def Submit(ctx, envelope):  # type: ignore[no-untyped-def]  # noqa: N802, N805
        return ctx.app.gateway.submit(ctx, envelope)

    @rpc(_required(Unicode), _required(Unicode), _returns=Unicode, _out_variable_name="answer")
    def Query(ctx, resource, criteria):  # type: ignore[no-untyped-def]  # noqa: N802, N805
        return ctx.app.gateway.query(ctx, resource, criteria)

    @rpc(_required(Integer32), _returns=Delivery.customize(max_occurs="unbounded"), _out_variable_name="delivery")
    def Fetch(ctx, max):  # type: ignore[no-untyped-def]  # noqa: N802, N805, A002
        return ctx.app.gateway.fetch(ctx, max)

    @rpc(Unicode(max_occurs="unbounded"), _returns=Unicode(max_occurs="unbounded"), _out_variable_name="ids")
    def Ack(ctx, ids):  # type: ignore[no-untyped-def]  # noqa: N802, N805
        return ctx.app.gateway.ack(ctx, ids)


class Soap12Http(Soap12):
    """SOAP 1.2 with the HTTP statuses its HTTP binding asks for: 400 for a Sender (Client)
    fault, 500 for a Receiver (Server) one. spyne's SOAP 1.2 keeps SOAP 1.1's 500 for every
    fault; its protocol base maps them as SOAP 1.2 wants (and 405, 413 as HTTP does)."""

    fault_to_http_response_code = OutProtocolBase.fault_to_http_response_code


class ExchangeApplication(Application):  # type: ignore[misc]
    """The service on one SOAP version, bound to the gateway its operations call."""

    def __init__(self, gateway: Gateway, soap12: bool = False) -> None:
        protocol = Soap12Http if soap12 else Soap11
        # lxml validates each request against the service's own schema: a missing or
        # mistyped argument is refused before it reaches the gateway.
        super().__init__([ExchangeService], tns=NS, name="Exchange",
                         in_protocol=protocol(validator="lxml"), out_protocol=protocol())
        self.gateway = gateway


# -- faults ---------------------------------------------------------------------------------


def fault(code: str, message: str, failure: Failure | None = None) -> Fault:
    """A Fault with code `code` ("Client.x" or "Server.x"); with `failure`, the `Refusal`
    detail (code, message, rule, line, column) in the service's namespace."""
    detail = None
    if failure is not None:
        fields = {"code": failure.code, "message": failure.message, "rule": failure.rule,
                  "line": failure.line, "column": failure.column}
        # a dict (not an element): the only detail form spyne's SOAP 1.2 writer accepts
        detail = {f"{{{NS}}}Refusal": {f"{{{NS}}}{k}": str(v) for k, v in fields.items() if v is not None}}
    return Fault(faultcode=code, faultstring=message, detail=detail)


def refusal(failure: Failure) -> Fault:
    """The fault for a refused envelope or query: `Client.<reason>` when the caller must change
    something; when trying again later may succeed, `Server.unavailable` for the platform's
    own trouble, else `Server.<reason>` (`query_timeout`, `no_responder`)."""
    if failure.permanent and failure.code != "broker_refused":
        return fault(f"Client.{failure.code}", failure.describe(), failure)
    if failure.code in ("transient", "broker_refused", "stage_error"):
        return fault("Server.unavailable", f"the bus cannot take it now, try again later: {failure.message}", failure)
    return fault(f"Server.{failure.code}", failure.message, failure)


AUTHENTICATION_FAILED = "authentication failed: check the department code, the secret and the clock (WS-Security UsernameToken)"

# -- text <-> bytes ---------------------------------------------------------------------------

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?\?>")
_ENCODING = re.compile(rb"""encoding\s*=\s*(["'])([A-Za-z0-9._-]+)\1""")


def envelope_bytes(text: str) -> bytes:
    """UTF-8 bytes of an envelope received as text; an XML declaration naming another encoding
    (GBK, say) is made to say UTF-8, which is what the text now is. A byte order mark, and
    blank lines before the declaration (which XML forbids there), are dropped."""
    text = text.lstrip("\ufeff")
    if text[:1].isspace() and text.lstrip().startswith("<?xml"):
        text = text.lstrip()
    data = text.encode("utf-8")
    head = _DECLARATION.match(data)
    if head is not None:
        fixed = _ENCODING.sub(b'encoding="UTF-8"', head.group(0), count=1)
        data = fixed + data[head.end():]
    return data


def envelope_text(data: bytes) -> str:
    """The text of an envelope's bytes, decoded by the encoding its declaration names."""
    head = _DECLARATION.match(data)
    found = _ENCODING.search(head.group(0)) if head is not None else None
    if found is None or found.group(2).lower() in (b"utf-8", b"utf8"):
        return data.decode("utf-8", errors="replace")
    try:
        text = data.decode(found.group(2).decode("ascii"))
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")
    return envelope_bytes(text).decode("utf-8")  # the declaration now says UTF-8, as the text is


# -- the behaviour ----------------------------------------------------------------------------


class _Slot:
    __slots__ = ("envelope", "done", "refused", "error")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.done = False
        self.refused: str | None = None
        self.error: BaseException | None = None


class GroupPublisher:
    """Publishes judged envelopes for concurrent callers in shared rounds: while one round
    waits for its confirms, the envelopes that arrive queue up and go together in the next.
    A confirm costs about a millisecond whatever the round's size, so under concurrency the
    gateway is not capped near 1,000 submissions a second; alone, a call costs what it would."""

    def __init__(self, submitter: Submitter) -> None:
        self.submitter = submitter
        self._pending: list[_Slot] = []
        self._cond = threading.Condition()
        self._busy = False

    def publish(self, envelope: Envelope) -> str | None:
        """None once the broker confirmed `envelope`, else why it did not take it.

        Raises:
            TransientError: the broker cannot be reached; try again later.
        """
        slot = _Slot(envelope)
        with self._cond:
            self._pending.append(slot)
            while self._busy and not slot.done:
                self._cond.wait()
            if slot.done:
                return self._result(slot)
            self._busy = True
            batch, self._pending = self._pending, []
        try:
            refusals = self.submitter.publish([s.envelope for s in batch])
            for s, refused in zip(batch, refusals, strict=True):
                s.refused = refused
        except BaseException as exc:  # every caller of the round hears of it
            for s in batch:
                s.error = exc
        finally:
            with self._cond:
                for s in batch:
                    s.done = True
                self._busy = False
                self._cond.notify_all()
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot) -> str | None:
        if slot.error is not None:
            raise slot.error
        return slot.refused


class Gateway:
    """What the operations do, for both SOAP versions; one per process, shared by threads.

    The mailbox (`adapters.mailbox`) and the query client (`bus.query`) are loaded when
    first used, so that Submit works in an installation that has neither.
    """

    def __init__(self, context: Context, *, query_timeout: float = QUERY_TIMEOUT) -> None:
        self.context = context
        self.query_timeout = query_timeout
        self.submitter = Submitter(context)
        self.publisher = GroupPublisher(self.submitter)
        self.credentials = CredentialStore(context.engine, context.settings.data_dir)
        self.auth = Authenticator(context.engine, self.credentials)
        self._lock = threading.Lock()
        self._mailbox: Any = None
        self._query: Any = None

    def caller(self, ctx: Any, operation: str) -> str:
        """The department that signed this call.

        Raises:
            Fault: Client.authentication_failed, or Server.unavailable when the nonce cannot
                be checked.
        """
        try:
            return self.auth.authenticate(ctx.in_header_doc, _remote(ctx), operation)
        except AuthenticationFailed:
            raise fault("Client.authentication_failed", AUTHENTICATION_FAILED) from None
        except TransientError as exc:
            log.error("gateway: %s", exc.message)
            raise fault("Server.unavailable", "the gateway cannot check credentials now; try again later") from None

    def submit(self, ctx: Any, text: str) -> Receipt:
        department = self.caller(ctx, "Submit")
        try:
            envelope = self.submitter.judge(envelope_bytes(text), department)
        except (ValidationError, BusError) as exc:
            failure = failure_of(exc)
            if failure.code == NotAuthorized.code:
                self.auth.audit(department, _remote(ctx), "Submit", FORBIDDEN, failure.message)
            raise refusal(failure) from None
        try:
            refused = self.publisher.publish(envelope)
        except TransientError as exc:
            log.error("gateway: submission from %s not taken: %s", department, exc.message)
            raise fault("Server.unavailable", "the bus cannot take submissions now; try again later") from None
        if refused is not None:
            log.error("gateway: the broker refused %s from %s: %s", envelope.message_id, department, refused)
            raise fault("Server.unavailable", f"the bus did not take the message ({refused}); try again later")
        return Receipt(messageId=envelope.message_id, accepted=True)

    def query(self, ctx: Any, resource: str, criteria: str) -> str:
        department = self.caller(ctx, "Query")
        client = self._service("query")
        try:
            answer = client.ask(department, resource, criteria, self.query_timeout)
        except (ValidationError, BusError) as exc:
            failure = failure_of(exc)
            if failure.code == NotAuthorized.code:
                self.auth.audit(department, _remote(ctx), "Query", FORBIDDEN, failure.message)
            raise refusal(failure) from None
        return envelope_text(answer)

    def fetch(self, ctx: Any, count: int) -> list[Delivery]:
        department = self.caller(ctx, "Fetch")
        if not 1 <= count <= MAX_FETCH:
            raise fault("Client.invalid", f"max must be from 1 to {MAX_FETCH}, got {count}")
        mailbox = self._service("mailbox")
        try:
            fetched = mailbox.fetch(department, count)
        except BusError as exc:
            raise refusal(failure_of(exc)) from None
        except SQLAlchemyError as exc:
            log.error("gateway: the mailbox of %s cannot be read: %s", department, db_error_text(exc))
            raise fault("Server.unavailable", "the mailbox cannot be read now; try again later") from None
        return [
            Delivery(messageId=f.message_id, correlationId=f.correlation_id, sender=f.sender, resource=f.resource,
                     version=f.version, operation=f.operation, fetches=f.fetches, envelope=envelope_text(f.body))
            for f in fetched
        ]

    def ack(self, ctx: Any, ids: Sequence[str] | None) -> list[str]:
        department = self.caller(ctx, "Ack")
        given = list(dict.fromkeys(i.strip() for i in ids or () if i and i.strip()))  # once each, in order
        if len(given) > MAX_ACK:
            raise fault("Client.invalid", f"at most {MAX_ACK} ids per Ack, got {len(given)}")
        if not given:
            return []
        mailbox = self._service("mailbox")
        try:
            done = set(mailbox.ack(department, given))
        except BusError as exc:
            raise refusal(failure_of(exc)) from None
        except SQLAlchemyError as exc:
            log.error("gateway: the mailbox of %s cannot be written: %s", department, db_error_text(exc))
            raise fault("Server.unavailable", "the mailbox cannot be written now; try again later") from None
        return [i for i in given if i in done]  # in the caller's order

    def _service(self, which: str) -> Any:
        """The shared Mailbox or QueryClient, made on first use."""
        attr = f"_{which}"
        with self._lock:
            if getattr(self, attr) is None:
                try:
                    if which == "mailbox":
                        from adapters.mailbox import Mailbox as Made
                    else:
                        from bus.query import QueryClient as Made
                except ImportError:
                    log.error("gateway: adapters.%s is not installed; %s calls fail", which, which)
                    raise fault("Server.unavailable", f"this platform does not offer the {which} yet") from None
                setattr(self, attr, Made(self.context))
            return getattr(self, attr)

    def close(self) -> None:
        """Release the broker and database connections this gateway holds."""
        self.submitter.close()
        self.auth.close()
        if self._query is not None:
            self._query.close()


def _remote(ctx: Any) -> str | None:
    environ = getattr(ctx.transport, "req_env", None) or {}
    return environ.get("REMOTE_ADDR")  # type: ignore[no-any-return]
