"""Synchronous queries over the bus: a department asks, the resource's responder answers.

The protocol only; who answers is composed elsewhere: a provider's responder adapter
(`adapters.query.Responder`), or a platform service such as the base libraries.

SOAP `Query(resource, criteria)` is a request and a reply with a correlation id: the gateway
publishes the query to the query exchange (routing key: the resource code), with its own
reply queue and the asker in headers, and waits for the answer with that correlation id, or
faults on timeout.

Default deny, as for deliveries: only a department with an active subscription to the
resource may query it. A query no responder is bound for fails at once (the broker returns
it) rather than waiting for the timeout. Queries are not durable: an answer nobody waits for
any more is dropped, and a responder skips queries whose asker has given up.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bus.broker import UNROUTABLE, Broker, Channel, Incoming
from bus.errors import BusError, NotAuthorized, TransientError, UnknownResource
from bus.names import Header
from bus.topology import Topology

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.adapters")

_DEADLINE = "govbus-deadline"  # epoch seconds after which the asker no longer waits


class QueryTimeout(BusError):
    code = "query_timeout"
    permanent = False


class NoResponder(BusError):
    code = "no_responder"
    permanent = False


class QueryRefused(BusError):
    """The responder answered with a refusal; `code` is its reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Query:
    resource: str
    criteria: str
    asker: str
    correlation_id: str


@dataclass(slots=True)
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: bytes | None = None
    error: BusError | None = None

    def settle(self, answer: bytes | None = None, error: BusError | None = None) -> None:
        self.answer, self.error = answer, error
        self.done.set()


def may_query(context: Context, department: str, resource: str) -> None:
    """Raises UnknownResource, or NotAuthorized when `department` does not subscribe to `resource`."""
    table = context.table
    found = table.resources.get(resource)
    if found is None:
        raise UnknownResource(f"no information resource with code {resource}")
    if department != found.provider and all(r.subscriber != department for r in table.routes(resource)):
        raise NotAuthorized(
            f"department {department} has no active subscription to resource {resource} ({found.name}); "
            "apply for it in the catalogue"
        )


class QueryClient:
    """Asks queries for any number of threads over one connection, which a background
    thread owns (a broker connection is not safe to share between threads)."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._id = uuid.uuid4().hex[:12]
        self._requests: queue.Queue[tuple[str, str, bytes, dict[str, Any], _Pending]] = queue.Queue()
        self._waiting: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def ask(self, department: str, resource: str, criteria: str, timeout: float) -> bytes:
        """The responder's answer to `criteria` about `resource`, asked as `department`.

        Raises:
            UnknownResource, NotAuthorized: nothing was asked.
            NoResponder: no responder serves the resource now.
            QueryTimeout: no answer within `timeout` seconds.
            QueryRefused: the responder refused (its reason code and text).
            TransientError: the broker cannot be reached.
        """
        may_query(self.context, department, resource)
        self._ensure_running()
        correlation = str(uuid.uuid4())
        pending = _Pending()
        headers = {Header.REPLY_TO: self.context.names.reply_queue(self._id), Header.ASKER: department,
                   _DEADLINE: f"{time.time() + timeout:.3f}"}
        with self._lock:
            self._waiting[correlation] = pending
        self._requests.put((correlation, resource, criteria.encode("utf-8"), headers, pending))
        if not pending.done.wait(timeout):
            with self._lock:
                self._waiting.pop(correlation, None)
            raise QueryTimeout(f"no answer to the query on {resource} within {timeout:g} s; try again later")
        if pending.error is not None:
            raise pending.error
        assert pending.answer is not None
        return pending.answer

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(5)

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="query-client", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._serve()
            except Exception as exc:  # the broker went away: fail what waits, connect again
                log.warning("query client lost the broker (%s); reconnecting", exc)
                with self._lock:
                    waiting, self._waiting = self._waiting, {}
                for pending in waiting.values():
                    pending.settle(error=TransientError(f"the bus cannot take queries now: {exc}"))
                self._closed.wait(1.0)

    def _serve(self) -> None:
        context = self.context
        broker = Broker(context.settings.broker_url)
        broker.connect()
        try:
            channel = broker.channel()
            assert broker.connection is not None
            topology = Topology(broker.connection.default_channel, context.settings, context.names)
            topology.query_exchange()
            channel.consume(topology.reply(self._id), lambda incoming: self._on_answer(channel, incoming))
            sent: dict[int, str] = {}  # publish sequence number -> correlation id
            while not self._closed.is_set():
                while True:
                    try:
                        correlation, resource, body, headers, pending = self._requests.get_nowait()
                    except queue.Empty:
                        break
                    if not pending.done.is_set():
                        seq = channel.publish(context.names.query_exchange(), resource, body, correlation, correlation, headers)
                        sent[seq] = correlation
                for seq, failure in channel.take_confirms():
                    correlation = sent.pop(seq, "")
                    if failure is not None:
                        with self._lock:
                            pending = self._waiting.pop(correlation, None)
                        if pending is not None:
                            error = (NoResponder("no service answers queries on this resource now; try again later")
                                     if failure.startswith(UNROUTABLE) else TransientError(failure))
                            pending.settle(error=error)
                broker.drain(0.01)
                broker.heartbeat_check()
        finally:
            broker.close()

    def _on_answer(self, channel: Channel, incoming: Incoming) -> None:
        channel.ack([incoming.tag])
        with self._lock:
            pending = self._waiting.pop(incoming.correlation_id or "", None)
        if pending is None:
            return  # its asker gave up
        error = incoming.headers.get(Header.ANSWER_ERROR)
        if error:
            pending.settle(error=QueryRefused(str(error), str(incoming.headers.get(Header.ANSWER_ERROR_TEXT, ""))))
        else:
            pending.settle(answer=bytes(incoming.body))


def serve_queries(context: Context, codes: Sequence[str], answer: Callable[[Query], bytes], stop: threading.Event,
                  name: str = "responder") -> None:
    """Answer the queries on the resources `codes` with `answer` until `stop`.

    `answer` returns the answer (XML) or raises a BusError to refuse with its code and text;
    any other exception is answered as `responder_error`, never left to time out.

    Raises:
        the broker's errors: the caller reconnects.
    """
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        channel = broker.channel()
        channel.qos(10)
        assert broker.connection is not None
        topology = Topology(broker.connection.default_channel, context.settings, context.names)

        def on_query(incoming: Incoming) -> None:
            headers = incoming.headers
            reply_to = str(headers.get(Header.REPLY_TO, ""))
            deadline = float(headers.get(_DEADLINE, 0) or 0)
            if not reply_to or (deadline and time.time() > deadline):
                channel.ack([incoming.tag])  # nobody waits for it any more
                return
            query = Query(incoming.routing_key, bytes(incoming.body).decode("utf-8", "replace"),
                          str(headers.get(Header.ASKER, "")), incoming.correlation_id or "")
            reply: dict[str, Any] = {}
            try:
                body = answer(query)
            except BusError as exc:
                body, reply = b"", {Header.ANSWER_ERROR: exc.code, Header.ANSWER_ERROR_TEXT: exc.message}
            except Exception as exc:  # a bug in the responder: the asker gets a reason, not a timeout
                log.exception("%s: answering a query on %s failed", name, query.resource)
                body, reply = b"", {Header.ANSWER_ERROR: "responder_error", Header.ANSWER_ERROR_TEXT: f"{type(exc).__name__}: {exc}"}
            channel.publish("", reply_to, body, str(uuid.uuid4()), query.correlation_id, reply)
            channel.ack([incoming.tag])  # an answer lost with the asker's queue is not worth redoing

        for code in codes:
            channel.consume(topology.query(code), on_query)
        log.info("%s answers queries on %s", name, ", ".join(codes))
        while not stop.is_set():
            broker.drain(0.05)
            channel.take_confirms()
            broker.heartbeat_check()
    finally:
        broker.close()
