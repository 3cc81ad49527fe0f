"""The envelope: built as a department builds it, read as the ingress reads it, and rebuilt
from AMQP headers as every later stage rebuilds it."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone

import pytest
from lxml import etree

from bus.envelope import Envelope, build_envelope, read_envelope
from bus.errors import BusError, Undecodable, failure_of
from bus.names import Header
from schemas import MalformedXml, SafeParser, SchemaSet, SchemaViolation
from tests.samples import PERSON_NS, person

PARSER = SafeParser()
SCHEMAS = SchemaSet()


def line_of(data: bytes, needle: str) -> tuple[int, int]:
    """1-based line and column (in characters) of the first `needle` in `data`."""
    for number, text in enumerate(data.decode().splitlines(), 1):
        if needle in text:
            return number, text.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the document")


def handwritten(message_id: str, correlation_id: str | None = None, **header: str) -> bytes:
    """An envelope written by hand, as a department's own XML library would write it."""
    values = {"Sender": "GA", "Resource": "GA-001", "Version": "1.0", "Operation": "upsert",
              "CreatedAt": "2024-05-06T07:08:09+08:00"}
    values.update(header)
    correlation = f"    <env:CorrelationId>{correlation_id}</env:CorrelationId>\n" if correlation_id else ""
    fields = "".join(f"    <env:{k}>{v}</env:{k}>\n" for k, v in values.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<env:Envelope xmlns:env="urn:zhuhai:govbus:envelope">\n'
        "  <env:Header>\n"
        f"    <env:MessageId>{message_id}</env:MessageId>\n"
        f"{correlation}"
        f"{fields}"
        "  </env:Header>\n"
        "  <env:Body>\n"
    ).encode() + person() + b"\n  </env:Body>\n</env:Envelope>\n"


# --- build_envelope ---------------------------------------------------------------------------


def test_built_envelope_is_valid_against_the_person_specification():
    env = build_envelope("GA", "GA-001", "1.0", person(), correlation_id=str(uuid.uuid4()), operation="snapshot")
    root = PARSER.parse(env.body)
    SCHEMAS.validator("person", "1.0").check(root, env.body)  # raises on any violation
    assert root.find(f"{{urn:zhuhai:govbus:envelope}}Body/{{{PERSON_NS}}}Person") is not None


def test_built_envelope_without_correlation_id_is_valid_too():
    env = build_envelope("GA", "GA-001", "1.0", person())
    SCHEMAS.validator("person", "1.0").check(PARSER.parse(env.body), env.body)
    assert env.correlation_id is None
    assert b"CorrelationId" not in env.body


def test_built_envelope_accepts_a_parsed_payload_element():
    payload = etree.fromstring(person(Name="李娜"))
    env = build_envelope("GA", "GA-001", "1.0", payload)
    SCHEMAS.validator("person", "1.0").check(PARSER.parse(env.body), env.body)
    assert "李娜".encode() in env.body


def test_built_envelope_fields_match_its_document():
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    correlation = str(uuid.uuid4())
    env = build_envelope("GA", "GA-001", "1.0", person(), operation="reply", correlation_id=correlation,
                         created_at=created)
    read, _ = read_envelope(env.body, PARSER, SCHEMAS)
    assert read == env
    assert env.created_at == "2024-01-02T03:04:05.000+00:00"
    assert env.operation == "reply"
    assert env.attempt == 0 and env.last_error is None


def test_built_envelope_lower_cases_a_given_message_id():
    given = str(uuid.uuid4()).upper()
    env = build_envelope("GA", "GA-001", "1.0", person(), message_id=given)
    assert env.message_id == given.lower()
    assert f"<env:MessageId>{given.lower()}</env:MessageId>".encode() in env.body


def test_every_built_envelope_gets_its_own_message_id():
    ids = {build_envelope("GA", "GA-001", "1.0", person()).message_id for _ in range(20)}
    assert len(ids) == 20
    for message_id in ids:
        assert str(uuid.UUID(message_id)) == message_id


def test_build_envelope_refuses_an_unknown_operation():
    with pytest.raises(ValueError, match="operation must be one of upsert, delete, snapshot, query, reply"):
        build_envelope("GA", "GA-001", "1.0", person(), operation="insert")


# --- read_envelope ----------------------------------------------------------------------------


def test_read_envelope_reads_every_header_field():
    message_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = handwritten(message_id, correlation_id, Sender="GS", Resource="GS-001/A", Version="2.13",
                       Operation="delete", CreatedAt="2024-05-06T07:08:09+08:00")
    env, root = read_envelope(data, PARSER, SCHEMAS)
    assert env.message_id == message_id
    assert env.correlation_id == correlation_id
    assert env.sender == "GS"
    assert env.resource == "GS-001/A"
    assert env.version == "2.13"
    assert env.operation == "delete"
    assert env.created_at == "2024-05-06T07:08:09+08:00"
    assert env.body == data
    assert env.attempt == 0 and env.last_error is None
    assert root.tag == "{urn:zhuhai:govbus:envelope}Envelope"


def test_read_envelope_without_correlation_id():
    env, _ = read_envelope(handwritten(str(uuid.uuid4())), PARSER, SCHEMAS)
    assert env.correlation_id is None


def test_read_envelope_lower_cases_upper_case_ids():
    message_id, correlation_id = str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper()
    data = handwritten(message_id, correlation_id)
    env, _ = read_envelope(data, PARSER, SCHEMAS)
    assert env.message_id == message_id.lower()
    assert env.correlation_id == correlation_id.lower()
    # the body is still the sender's, byte for byte
    assert env.body == data


def test_read_envelope_strips_whitespace_around_header_values():
    data = handwritten(str(uuid.uuid4())).replace(b"<env:Sender>GA</env:Sender>", b"<env:Sender>\n  GA\n</env:Sender>")
    env, _ = read_envelope(data, PARSER, SCHEMAS)
    assert env.sender == "GA"


def test_read_envelope_accepts_a_comment_before_the_header():
    # A comment is allowed anywhere by the envelope XSD, the contract with departments.
    data = handwritten(str(uuid.uuid4())).replace(b"  <env:Header>", b"  <!-- exported by HJ-2000 -->\n  <env:Header>")
    SCHEMAS.envelope().check(PARSER.parse(data), data)  # the contract says: valid
    env, _ = read_envelope(data, PARSER, SCHEMAS)
    assert (env.sender, env.resource, env.version) == ("GA", "GA-001", "1.0")


# When a field is missing, XSD reports it at the element found in its place (or at the Header
# when nothing follows): the rule is cvc-complex-type.2.4 either way.
@pytest.mark.parametrize(
    "missing, reported_at",
    [
        ("MessageId", "<env:Sender>"),
        ("Sender", "<env:Resource>"),
        ("Resource", "<env:Version>"),
        ("Version", "<env:Operation>"),
        ("Operation", "<env:CreatedAt>"),
        ("CreatedAt", "<env:Header>"),
    ],
)
def test_missing_header_field_names_the_xsd_rule_and_line(missing, reported_at):
    full = build_envelope("GA", "GA-001", "1.0", person()).body
    data = b"".join(line for line in full.splitlines(keepends=True) if f"<env:{missing}>".encode() not in line)
    with pytest.raises(SchemaViolation) as caught:
        read_envelope(data, PARSER, SCHEMAS)
    error = caught.value
    assert missing in error.message
    assert (error.line, error.column) == line_of(data, reported_at)
    assert error.rule == "cvc-complex-type.2.4"


def test_empty_header_field_is_a_pattern_violation_on_its_line():
    data = handwritten(str(uuid.uuid4()), Sender="")
    with pytest.raises(SchemaViolation) as caught:
        read_envelope(data, PARSER, SCHEMAS)
    assert caught.value.rule == "cvc-pattern-valid"
    assert (caught.value.line, caught.value.column) == line_of(data, "<env:Sender>")


def test_unknown_operation_is_an_enumeration_violation():
    data = handwritten(str(uuid.uuid4()), Operation="insert")
    with pytest.raises(SchemaViolation) as caught:
        read_envelope(data, PARSER, SCHEMAS)
    assert caught.value.rule == "cvc-enumeration-valid"
    assert caught.value.line == line_of(data, "<env:Operation>")[0]


def test_a_payload_without_envelope_is_refused():
    with pytest.raises(SchemaViolation) as caught:
        read_envelope(person(), PARSER, SCHEMAS)
    assert caught.value.rule == "cvc-elt.1"
    assert caught.value.line == 1


def test_read_envelope_refuses_malformed_xml():
    data = handwritten(str(uuid.uuid4())).replace(b"</env:Header>", b"</env:Headr>")
    with pytest.raises(MalformedXml) as caught:
        read_envelope(data, PARSER, SCHEMAS)
    assert caught.value.rule == "ERR_TAG_NAME_MISMATCH"
    assert caught.value.line == line_of(data, "</env:Headr>")[0]


# --- Envelope ---------------------------------------------------------------------------------


def test_envelope_is_immutable():
    env = build_envelope("GA", "GA-001", "1.0", person())
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.sender = "MZ"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.attempt += 1  # type: ignore[misc]
    assert env.sender == "GA" and env.attempt == 0


def test_copy_returns_a_changed_copy_and_leaves_the_original():
    env = build_envelope("GA", "GA-001", "1.0", person(), correlation_id=str(uuid.uuid4()))
    retried = env.copy(attempt=2, last_error="database locked")
    assert (retried.attempt, retried.last_error) == (2, "database locked")
    assert (env.attempt, env.last_error) == (0, None)
    assert retried is not env
    assert dataclasses.replace(retried, attempt=0, last_error=None) == env


def test_copy_refuses_an_unknown_field():
    env = build_envelope("GA", "GA-001", "1.0", person())
    with pytest.raises(TypeError):
        env.copy(attempts=1)


def test_headers_carry_the_routing_fields():
    env = build_envelope("GA", "GA-001", "1.0", person(), operation="delete")
    assert env.headers() == {
        Header.SENDER: "GA",
        Header.RESOURCE: "GA-001",
        Header.VERSION: "1.0",
        Header.OPERATION: "delete",
    }


def test_headers_carry_attempt_and_last_error_once_an_attempt_failed():
    env = build_envelope("GA", "GA-001", "1.0", person()).copy(attempt=3, last_error="timeout")
    headers = env.headers()
    assert headers[Header.ATTEMPT] == 3
    assert headers[Header.LAST_ERROR] == "timeout"
    assert headers[Header.SENDER] == "GA"


def test_from_amqp_rebuilds_what_a_stage_published():
    env = build_envelope("GA", "GA-001", "1.0", person(), operation="snapshot", correlation_id=str(uuid.uuid4()))
    env = env.copy(attempt=1, last_error="adapter down")
    rebuilt = Envelope.from_amqp(env.body, env.message_id, env.correlation_id, env.headers())
    # created_at lives in the body only; later stages never parse the body
    assert rebuilt == env.copy(created_at="")


def test_from_amqp_without_operation_header_means_upsert():
    env = build_envelope("GA", "GA-001", "1.0", person())
    headers = {k: v for k, v in env.headers().items() if k != Header.OPERATION}
    assert Envelope.from_amqp(env.body, env.message_id, None, headers).operation == "upsert"


@pytest.mark.parametrize("header", [Header.SENDER, Header.RESOURCE, Header.VERSION])
def test_from_amqp_without_a_routing_header_is_undecodable(header):
    env = build_envelope("GA", "GA-001", "1.0", person())
    headers = {k: v for k, v in env.headers().items() if k != header}
    with pytest.raises(Undecodable, match=header):
        Envelope.from_amqp(env.body, env.message_id, None, headers)


@pytest.mark.parametrize("message_id", [None, ""])
def test_from_amqp_without_message_id_is_undecodable(message_id):
    env = build_envelope("GA", "GA-001", "1.0", person())
    with pytest.raises(Undecodable, match="message_id"):
        Envelope.from_amqp(env.body, message_id, None, env.headers())


def test_from_amqp_with_a_non_numeric_attempt_is_undecodable():
    env = build_envelope("GA", "GA-001", "1.0", person())
    with pytest.raises(Undecodable, match=Header.ATTEMPT):
        Envelope.from_amqp(env.body, env.message_id, None, {**env.headers(), Header.ATTEMPT: "twice"})


def test_undecodable_is_dead_lettered_at_once():
    failure = failure_of(Undecodable("message lacks the govbus-sender header"))
    assert isinstance(Undecodable("x"), BusError)
    assert (failure.code, failure.permanent) == ("undecodable", True)
