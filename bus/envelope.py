"""The envelope: what one exchanged message is, as XML and as an AMQP message.

The XML document (envelope schema `urn:zhuhai:govbus:envelope`, version 1.0) is the contract
with departments. Inside the platform the routing fields also travel as AMQP properties and
headers, so that only the ingress stage ever parses a body; later stages read headers only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree
from schemas import ENVELOPE_NS, SafeParser, SchemaSet, SchemaViolation

from bus.errors import Undecodable
from bus.names import Header

OPERATIONS = ("upsert", "delete", "snapshot", "query", "reply")
_E = f"{{{ENVELOPE_NS}}}"
_FIELDS = {
    f"{_E}MessageId": "message_id",
    f"{_E}CorrelationId": "correlation_id",
    f"{_E}Sender": "sender",
    f"{_E}Resource": "resource",
    f"{_E}Version": "version",
    f"{_E}Operation": "operation",
    f"{_E}CreatedAt": "created_at",
}
_REQUIRED = ("message_id", "sender", "resource", "version", "operation", "created_at")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on the bus. Immutable: a stage that changes it returns `copy(...)`.

    `body` is the whole XML document, byte for byte as the sender wrote it. `attempt` counts
    the failed attempts so far; `last_error` says why the last one failed.
    """

    message_id: str
    sender: str
    resource: str
    version: str
    operation: str
    created_at: str
    body: bytes
    correlation_id: str | None = None
    attempt: int = 0
    last_error: str | None = None

    def copy(self, **changes: Any) -> Envelope:
        return replace(self, **changes)

    def headers(self) -> dict[str, Any]:
        """AMQP headers repeating the routing fields (message and correlation id are properties)."""
        headers: dict[str, Any] = {
            Header.SENDER: self.sender,
            Header.RESOURCE: self.resource,
            Header.VERSION: self.version,
            Header.OPERATION: self.operation,
        }
        if self.attempt:
            headers[Header.ATTEMPT] = self.attempt
        if self.last_error:
            headers[Header.LAST_ERROR] = self.last_error
        return headers

    @classmethod
    def from_amqp(
        cls, body: bytes, message_id: str | None, correlation_id: str | None, headers: dict[str, Any]
    ) -> Envelope:
        """Rebuild from an AMQP message published by a stage; never parses the body.

        Raises:
            Undecodable: a routing header or the message id is missing.
        """
        try:
            return cls(
                message_id=message_id or _missing("message_id property"),
                sender=headers[Header.SENDER],
                resource=headers[Header.RESOURCE],
                version=headers[Header.VERSION],
                operation=headers.get(Header.OPERATION, "upsert"),
                created_at="",
                body=body,
                correlation_id=correlation_id,
                attempt=int(headers.get(Header.ATTEMPT, 0)),
                last_error=headers.get(Header.LAST_ERROR),
            )
        except KeyError as exc:
            raise Undecodable(f"message lacks the {exc.args[0]} header") from None
        except ValueError:
            raise Undecodable(f"{Header.ATTEMPT} header is not a number") from None


def _missing(what: str) -> str:
    raise Undecodable(f"message lacks its {what}")


def new_message_id() -> str:
    return str(uuid.uuid4())


def build_envelope(
    sender: str,
    resource: str,
    version: str,
    payload: bytes | etree._Element,
    *,
    operation: str = "upsert",
    correlation_id: str | None = None,
    message_id: str | None = None,
    created_at: datetime | None = None,
) -> Envelope:
    """Wrap one payload element in a new envelope, as a department's system would.

    Raises:
        ValueError: an operation not in OPERATIONS, or a message id that is not a UUID.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    if isinstance(payload, etree._Element):
        payload = etree.tostring(payload, encoding="utf-8")
    message_id = str(uuid.UUID(message_id)) if message_id else new_message_id()
    created = (created_at or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
    correlation = (
        f"    <env:CorrelationId>{escape(correlation_id)}</env:CorrelationId>\n" if correlation_id else ""
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<env:Envelope xmlns:env="{ENVELOPE_NS}">\n'
        "  <env:Header>\n"
        f"    <env:MessageId>{message_id}</env:MessageId>\n"
        f"{correlation}"
        f"    <env:Sender>{escape(sender)}</env:Sender>\n"
        f"    <env:Resource>{escape(resource)}</env:Resource>\n"
        f"    <env:Version>{escape(version)}</env:Version>\n"
        f"    <env:Operation>{operation}</env:Operation>\n"
        f"    <env:CreatedAt>{created}</env:CreatedAt>\n"
        "  </env:Header>\n"
        "  <env:Body>\n"
    ).encode() + payload + b"\n  </env:Body>\n</env:Envelope>\n"
    return Envelope(
        message_id=message_id,
        sender=sender,
        resource=resource,
        version=version,
        operation=operation,
        created_at=created,
        body=body,
        correlation_id=correlation_id,
    )


def read_envelope(
    data: bytes, parser: SafeParser, schemas: SchemaSet, *, check_depth: bool = True
) -> tuple[Envelope, etree._Element]:
    """Parse untrusted bytes and read the envelope header; the payload is not validated yet.

    Returns the envelope and the parsed root, for `Validator.check`. With `check_depth=False`
    the depth limit is left to that check (given the parser), which skips it when the
    specification bounds the depth anyway.

    Raises:
        ValidationError: not XML, hostile XML, or not an envelope with a complete header; the
            error names the XSD rule, line and column.
    """
    root = parser.parse(data, check_depth=check_depth)
    found: dict[str, str] = {}
    header = root.find(f"{_E}Header") if root.tag == f"{_E}Envelope" else None
    if header is not None:
        for child in header:
            name = _FIELDS.get(child.tag)  # type: ignore[arg-type]
            if name:
                # a comment inside a field splits its text: read all of it, as the XSD does
                value = child.text if not len(child) else "".join(child.itertext())
                if value:
                    found[name] = value.strip()
    if any(name not in found for name in _REQUIRED) or found["operation"] not in OPERATIONS:
        # Let the envelope schema say precisely what is wrong, with rule, line and column.
        schemas.envelope().check(root, data, parser)
        raise SchemaViolation("not a govbus envelope", rule="envelope", line=root.sourceline)
    correlation = found.get("correlation_id")
    return (
        Envelope(
            message_id=found["message_id"].lower(),
            sender=found["sender"],
            resource=found["resource"],
            version=found["version"],
            operation=found["operation"],
            created_at=found["created_at"],
            body=data,
            correlation_id=correlation.lower() if correlation else None,
        ),
        root,
    )
