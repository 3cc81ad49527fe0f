"""The base libraries' consumer: the `masterdata` outbound, from deliveries to assertions.

The base libraries subscribe to person and legal-entity resources through the catalogue like
any department; the department that stands for them (e.g. RKK 人口库) takes its deliveries
through this outbound (entry point `masterdata` of the group `govbus.adapters`). Each
delivered envelope, a single record or a batch (`PersonBatch`, `LegalEntityBatch` of the 1.1
specifications), of operation upsert, snapshot or delete, becomes `Record`s, and each batch
of deliveries is applied to the store in one transaction (`MasterData.apply`), which is
idempotent by (message id, position) and safe against out-of-order delivery.

The payload was validated by the ingress already; here it is only read, in one tight loop
over the record elements (this is the bulk path: a batch message carries a thousand records).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, ClassVar

import psycopg
from lxml import etree
from schemas import ENVELOPE_NS, SafeParser, ValidationError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, TimeoutError as PoolTimeout

from bus.db import db_error_text
from bus.envelope import Envelope
from bus.errors import BusError, TransientError, Undecodable
from bus.routing import Department
from masterdata.model import ATTRIBUTES, ENTITY, KEY_OF, PERSON, Record

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.masterdata")

PERSON_NS = "urn:zhuhai:govbus:person"
ENTITY_NS = "urn:zhuhai:govbus:legal-entity"
#: payload namespace -> (kind, single record element, batch element)
PAYLOADS = {
    PERSON_NS: (PERSON, "Person", "PersonBatch"),
    ENTITY_NS: (ENTITY, "LegalEntity", "LegalEntityBatch"),
}
#: extract times without an offset are the platform's local time: China Standard Time (no DST)
LOCAL_TIME = timezone(timedelta(hours=8), "CST")
#: deliveries applied in one transaction at most; a larger delivered batch is applied in parts
#: (each envelope's result is that of its part), so that no transaction grows without bound
MAX_RECORDS_PER_APPLY = 20_000
# Operations that carry records; `query` and `reply` are conversations, not data.
_OPERATIONS = ("upsert", "snapshot", "delete")
_TRUE = ("true", "1")
_E = f"{{{ENVELOPE_NS}}}"
_BODY, _HEADER, _CREATED = f"{_E}Body", f"{_E}Header", f"{_E}CreatedAt"


class Refused(BusError):
    """The base library cannot take this message, and never will as it is: dead-lettered."""

    code = "masterdata_refused"


class _Shape:
    """Clark names of one kind's elements, looked up once."""

    __slots__ = ("kind", "record", "batch", "key", "updated", "names")

    def __init__(self, namespace: str, kind: str, record: str, batch: str) -> None:
        ns = f"{{{namespace}}}"
        self.kind = kind
        self.record = ns + record
        self.batch = ns + batch
        self.key = ns + KEY_OF[kind]
        self.updated = ns + "RecordUpdatedAt"
        self.names = {ns + name: name for name in ATTRIBUTES[kind]}


_SHAPES = {ns: _Shape(ns, *spec) for ns, spec in PAYLOADS.items()}
_CAPITAL = f"{{{ENTITY_NS}}}RegisteredCapital"


def parse_time(text: str) -> datetime:
    """An xs:dateTime as an aware UTC datetime; without an offset it is China Standard Time.

    Raises:
        ValueError: not a date and time Python can read (e.g. year 0 or 24:00:00).
    """
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=LOCAL_TIME)
    return value.astimezone(timezone.utc)


def records_of(envelope: Envelope, root: etree._Element) -> list[Record]:
    """The records one delivered envelope carries, in payload order (`position` = index).

    `root` is the parsed envelope document. Values are the texts of the child elements named
    in `ATTRIBUTES[kind]`, trimmed; an empty or absent element is not asserted. A registered
    capital in another currency than CNY reads "<amount> <currency>", so that departments'
    amounts compare only in the same currency. The source time is the record's
    RecordUpdatedAt, else the envelope's CreatedAt; the source record id is the record's
    `sourceRecordId`, else its key as given, else "<message id>/<position>".

    Raises:
        Refused: not a person or legal-entity payload, an operation that carries no records,
            or a record with an unreadable time; permanent for this message.
    """
    if envelope.operation not in _OPERATIONS:
        raise Refused(
            f"message {envelope.message_id}: the masterdata outbound takes operations {', '.join(_OPERATIONS)}, "
            f"not {envelope.operation}"
        )
    body = root.find(_BODY)
    payload = body[0] if body is not None and len(body) else None
    if payload is None or not isinstance(payload.tag, str):
        raise Refused(f"message {envelope.message_id} has no payload")
    namespace = etree.QName(payload).namespace or ""
    shape = _SHAPES.get(namespace)
    if shape is None:
        raise Refused(
            f"message {envelope.message_id}: the masterdata outbound takes person and legal-entity payloads, "
            f"not {{{namespace}}}{etree.QName(payload).localname}; subscribe the base library to those resources only"
        )
    if payload.tag == shape.record:
        elements = [payload]
    elif payload.tag == shape.batch:
        elements = [e for e in payload if e.tag == shape.record]
    else:
        raise Refused(f"message {envelope.message_id}: {etree.QName(payload).localname} is not a record or a batch of records")
    header = root.find(_HEADER)
    created_text = header.findtext(_CREATED) if header is not None else None
    envelope_time = _time(created_text, envelope, "CreatedAt") if created_text else None
    deleting = envelope.operation == "delete"
    names, key_tag, updated_tag = shape.names, shape.key, shape.updated
    department, message_id, kind = envelope.sender, envelope.message_id, shape.kind
    records = []
    for position, element in enumerate(elements):
        key = ""
        updated = None
        values: dict[str, str] = {}
        for child in element:
            tag = child.tag
            name = names.get(tag)  # type: ignore[call-overload]
            if name is not None:
                text = child.text
                if text is not None and (text := text.strip()):
                    if tag == _CAPITAL and (currency := child.get("currency")) and currency != "CNY":
                        text = f"{text} {currency}"
                    values[name] = text
            elif tag == key_tag:
                key = (child.text or "").strip()
            elif tag == updated_tag and child.text:
                updated = child.text
        source_time = _time(updated, envelope, "RecordUpdatedAt", position) if updated else envelope_time
        if source_time is None:
            raise Refused(f"message {message_id}: record {position} has no RecordUpdatedAt and the envelope no CreatedAt")
        source_id = element.get("sourceRecordId") or key or f"{message_id}/{position}"
        records.append(
            Record(
                kind=kind, key=key, department=department, source_record_id=source_id.strip(), source_time=source_time,
                message_id=message_id, position=position, values=values,
                deleted=deleting or element.get("deleted", "false").strip() in _TRUE,
            )
        )
    return records


def _time(text: str, envelope: Envelope, what: str, position: int | None = None) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        where = f"record {position}'s " if position is not None else ""
        raise Refused(f"message {envelope.message_id}: {where}{what} {text.strip()!r} is not a readable time") from None


def _transient(exc: BaseException) -> bool:
    """An error worth retrying: the store's own transient errors, and database errors of the
    connection, a lock, a restart or a serialization conflict; not one the same data would
    cause again (a value too long, a constraint). The store's COPY raises psycopg's errors
    unwrapped, the rest comes wrapped by SQLAlchemy."""
    if isinstance(exc, BusError):
        return not exc.permanent
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout,
                        psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    driver = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(driver, "sqlstate", None) or ""
    # 40: transaction rollback (serialization, deadlock); 53: insufficient resources;
    # 57: operator intervention (shutdown); 08: connection exception
    return state[:2] in ("40", "53", "57", "08")


class MasterdataOutbound:
    """The base libraries as a department's outbound: deliveries become assertions.

    `deliver` reads every envelope into records and applies them in one transaction per
    delivered batch (in parts of at most MAX_RECORDS_PER_APPLY records). Idempotent by
    message id: the store keeps each (message id, position) once. An envelope that cannot be
    read fails alone, permanently (dead-lettered with the reason); a database that cannot be
    reached fails the batch with a TransientError (retried with backoff). If the store
    refuses a part for a reason the same data would cause again, the part's envelopes are
    applied one by one, so that one bad message does not hold up the others.
    """

    direction: ClassVar[str] = "outbound"
    summary: ClassVar[str] = "the natural-person and legal-entity base libraries (人口、法人基础信息库): records become assertions and golden records"
    settings: ClassVar[tuple[()]] = ()

    def __init__(self, department: Department, context: Context) -> None:
        # imported here: the bulk loader reads this module's constants and needs no store
        from masterdata.store import MasterData

        self.department = department.code
        self.parser: SafeParser = context.parser
        self.store = MasterData(context.engine)

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(envelopes)
        parts: list[list[tuple[int, list[Record]]]] = [[]]
        size = 0
        for i, envelope in enumerate(envelopes):
            try:
                records = records_of(envelope, self.parser.parse(envelope.body))
            except (ValidationError, BusError) as exc:
                results[i] = exc if isinstance(exc, BusError) else Undecodable(f"message {envelope.message_id}: {exc}")
                continue
            if size and size + len(records) > MAX_RECORDS_PER_APPLY:
                parts.append([])
                size = 0
            parts[-1].append((i, records))
            size += len(records)
        for n, part in enumerate(parts):
            try:
                self._apply(part, results, envelopes)
            except TransientError as exc:  # the parts applied so far stay done; the rest is retried
                for i, _ in (entry for later in parts[n:] for entry in later):
                    results[i] = exc
                break
        return results

    def _apply(self, part: list[tuple[int, list[Record]]], results: list[BaseException | None],
               envelopes: Sequence[Envelope]) -> None:
        """Apply one part; results of envelopes the store refused go into `results`.

        Raises:
            TransientError: the store cannot be reached now; nothing of this part is applied.
        """
        if not part:
            return
        try:
            self.store.apply([r for _, records in part for r in records])
            return
        except Exception as exc:
            if _transient(exc):
                raise TransientError(f"base library of {self.department} unavailable: {db_error_text(exc)}") from exc
            if len(part) == 1:
                results[part[0][0]] = _refusal(exc, envelopes[part[0][0]])
                return
            log.warning("%s: a batch of %d messages was refused (%s); applying them one by one",
                        self.department, len(part), db_error_text(exc))
        for i, records in part:
            try:
                self.store.apply(records)
            except Exception as exc:
                if _transient(exc):
                    raise TransientError(f"base library of {self.department} unavailable: {db_error_text(exc)}") from exc
                results[i] = _refusal(exc, envelopes[i])


def _refusal(exc: BaseException, envelope: Envelope) -> BaseException:
    """What a message the store refused fails with: the store's own BusError as it is; a
    database error, which the same data would cause again, as a permanent error with the
    driver's first line; anything else (a bug) unchanged, retried and then dead-lettered."""
    if isinstance(exc, BusError):
        return exc
    if isinstance(exc, DBAPIError):
        return Refused(f"the base library refused message {envelope.message_id}: {db_error_text(exc)}")
    return exc
