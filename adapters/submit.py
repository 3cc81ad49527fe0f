"""Submitting to the ingress on a department's behalf, with the answer at once.

The SOAP gateway and the inbound adapters hand envelopes to a `Submitter`. It judges each
one as the ingress will (the same code: `IngressStage.check`), as the department it acts for,
so that a refused envelope goes back to its sender with the reason (rule, line, column)
instead of becoming a dead letter nobody at the department sees. An accepted one is published
to the ingress and counts as received only when the broker has confirmed it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from schemas import ValidationError

from bus.broker import Broker, Channel, publish_confirmed
from bus.deadletter import DeadLetterStore
from bus.envelope import Envelope, read_envelope
from bus.errors import BusError, Failure, NotAuthorized, TransientError, failure_of
from bus.ingress import IngressStage
from bus.names import Header

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.adapters")

# How often a long-running submitter looks whether the routing table changed.
_TABLE_CHECK = 5.0


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one submitted envelope: accepted (confirmed by the broker) or refused
    with a `Failure` (its code, message, and the rule, line and column of a schema error)."""

    message_id: str | None
    failure: Failure | None = None

    @property
    def accepted(self) -> bool:
        return self.failure is None


class Submitter:
    """Judges and publishes envelopes for departments. Safe to share between threads: the
    judging runs in parallel, the publishing takes turns on one confirmed channel."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._broker: Broker | None = None
        self._channel: Channel | None = None
        self._stage = self._new_stage()
        self._version = self._read_version()
        self._checked = time.monotonic()

    def _new_stage(self) -> IngressStage:
        c = self.context
        return IngressStage(c.names, c.table, c.schemas, c.parser)

    def _read_version(self) -> int | None:
        try:
            return self.context.routing_source.version()
        except Exception:  # the catalogue is away: keep judging on the table in hand
            return None

    def _current_stage(self) -> IngressStage:
        now = time.monotonic()
        if now - self._checked >= _TABLE_CHECK:
            self._checked = now
            version = self._read_version()
            if version is not None and version != self._version:
                try:
                    self.context.reload()
                    self._stage, self._version = self._new_stage(), version
                except Exception as exc:
                    log.warning("routing table not reloaded for submissions (%s); still on the one in hand", exc)
        return self._stage

    def judge(self, data: bytes, department: str) -> Envelope:
        """The envelope in `data`, if `department` may submit it and it is valid.

        Raises:
            ValidationError: not XML, not an envelope, or the payload breaks its schema.
            BusError: the sender is not `department`, or not the resource's provider.
        """
        stage = self._current_stage()
        env, root = read_envelope(data, stage.parser, stage.schemas, check_depth=False)
        if env.sender != department:
            raise NotAuthorized(f"department {department} may submit only as itself, not as sender {env.sender}")
        stage.check(env, root)
        return env

    def submit(self, bodies: Sequence[bytes], department: str) -> list[Receipt]:
        """Judge each body and publish the accepted ones; one receipt per body, in order.

        Raises:
            TransientError: the broker cannot be reached or did not confirm; nothing of this
                call counts as received, and the caller should try again.
        """
        receipts: list[Receipt | None] = []
        accepted: list[Envelope] = []
        for data in bodies:
            try:
                env = self.judge(data, department)
            except (ValidationError, BusError) as exc:
                receipts.append(Receipt(_message_id_of(data, self), failure_of(exc)))
                continue
            accepted.append(env)
            receipts.append(None)
        refusals = self.publish(accepted) if accepted else []
        given = iter(zip(accepted, refusals, strict=True))
        out = []
        for receipt in receipts:
            if receipt is not None:
                out.append(receipt)
                continue
            env, refused = next(given)
            failure = None if refused is None else Failure("broker_refused", refused, False)
            out.append(Receipt(env.message_id, failure))
        return out

    def dead_letter(self, data: bytes, receipt: Receipt, adapter: str, *, key: str | None = None,
                    where: str | None = None) -> int:
        """Keep a record that an inbound adapter read and the ingress refused as a dead letter,
        so that nothing is lost silently: operators see it with its reason (`govbus dlq list`),
        and once the cause is fixed, replay it to the ingress. Stored once per adapter and
        record (`key`: the record's own identity in its source; by default its message id,
        else its content), however often it is read again; `where` says which record it was.
        Returns the dead letter's id."""
        failure = receipt.failure
        assert failure is not None, "only refusals are dead letters"
        if where:
            failure = replace(failure, message=f"{failure.message} ({where})")
        try:
            env, _ = read_envelope(data, self._stage.parser, self._stage.schemas)
            sender, resource = env.sender, env.resource
        except ValidationError:
            sender = resource = None
        key = key or receipt.message_id or hashlib.sha256(data).hexdigest()
        names = self.context.names
        return DeadLetterStore(self.context.engine).add(
            data, failure, stage=f"adapter {adapter}"[:32], origin_exchange=names.ingress_exchange(),
            origin_routing_key=f"{sender}.{resource}" if sender else "unknown", message_id=receipt.message_id,
            sender=sender, resource=resource, dead_letter_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"adapter|{adapter}|{key}")),
        )

    def publish(self, envelopes: Sequence[Envelope]) -> list[str | None]:
        """Publish judged envelopes to the ingress with confirms: None per message taken."""
        names = self.context.names
        messages = [
            (names.ingress_exchange(), f"{e.sender}.{e.resource}", e.body, e.message_id, e.correlation_id,
             {Header.SENDER: e.sender, Header.RESOURCE: e.resource, Header.VERSION: e.version})
            for e in envelopes
        ]
        with self._lock:
            for attempt in (1, 2):  # a connection lost while idle is opened again once
                try:
                    broker, channel = self._connected()
                    return publish_confirmed(broker, channel, messages, timeout=10.0)
                except Exception as exc:
                    self._drop()
                    if attempt == 2 or isinstance(exc, BusError):
                        raise TransientError(f"the bus cannot take submissions now: {exc}") from exc
        raise AssertionError("unreachable")

    def _connected(self) -> tuple[Broker, Channel]:
        if self._broker is None or self._channel is None:
            broker = Broker(self.context.settings.broker_url)
            broker.connect()
            self._broker, self._channel = broker, broker.channel()
        return self._broker, self._channel

    def _drop(self) -> None:
        if self._broker is not None:
            try:
                self._broker.close()
            except Exception:  # already broken: nothing more to release
                pass
        self._broker = self._channel = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _message_id_of(data: bytes, submitter: Submitter) -> str | None:
    """The MessageId of a refused envelope, when its header can be read at all."""
    try:
        env, _ = read_envelope(data, submitter._stage.parser, submitter._stage.schemas)
    except ValidationError:
        return None
    return env.message_id
