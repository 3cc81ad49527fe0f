"""Hardened parsing and validation, judged by their error reports: the reason, the rule, and a
line and column that lead a department's developer to the offending spot of their document."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from bus.envelope import build_envelope
from bus.errors import failure_of
from schemas import (
    ForbiddenXml,
    MalformedXml,
    SafeParser,
    SchemaSet,
    SchemaViolation,
    UnknownSpecification,
    UnknownVersion,
    WrongNamespace,
    XmlLimits,
    XmlTooDeep,
    XmlTooLarge,
)
from schemas.registry import RESERVED, XSD_ROOT
from schemas.validation import rule_name
from tests.samples import LEGAL_NS, PERSON_NS, credit_code, id_number, legal_entity, person

PARSER = SafeParser()
SCHEMAS = SchemaSet()


def at(data: bytes, token: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based line and column, in characters, of the `occurrence`-th `token` in `data`."""
    text = data.decode("utf-8")
    index = -1
    for _ in range(occurrence):
        index = text.index(token, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def person_envelope(payload: bytes) -> bytes:
    return build_envelope("GA", "GA-001", "1.0", payload).body


def legal_envelope(payload: bytes) -> bytes:
    return build_envelope("GS", "GS-001", "1.0", payload).body


def check(spec: str, data: bytes) -> None:
    SCHEMAS.validator(spec, "1.0").check(PARSER.parse(data), data)


def violation(spec: str, data: bytes) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as caught:
        check(spec, data)
    return caught.value


# --- malformed XML ----------------------------------------------------------------------------

# (document, libxml2 rule, the offending token, which occurrence of it)
MALFORMED = [
    pytest.param(b"<a>\n  <b>\n  </c>\n</a>\n", "ERR_TAG_NAME_MISMATCH", "</c>", 1, id="end-tag-mismatch"),
    pytest.param(
        person_envelope(person()).replace(b"</p:Address>", b"</p:Adress>"),
        "ERR_TAG_NAME_MISMATCH", "</p:Adress>", 1, id="mismatch-after-chinese-text",
    ),
    pytest.param("<a>\n  <b>café &nbsp;</b>\n</a>".encode(), "ERR_UNDECLARED_ENTITY", "&nbsp;", 1, id="html-entity"),
    pytest.param(b"<a>\n  <b>A & B</b>\n</a>", "ERR_NAME_REQUIRED", "& ", 1, id="bare-ampersand"),
    pytest.param(b"<a>\n  <b x='1' x='2'/>\n</a>", "ERR_ATTRIBUTE_REDEFINED", "x='2'", 1, id="attribute-twice"),
    pytest.param(b"<a>\n  <b x=1/>\n</a>", "ERR_ATTRIBUTE_NOT_STARTED", "1/>", 1, id="unquoted-attribute"),
    pytest.param(b"<a>\n  <1b/>\n</a>", "ERR_NAME_REQUIRED", "1b", 1, id="bad-element-name"),
    pytest.param(b"<a/>\n<b/>\n", "ERR_DOCUMENT_END", "<b/>", 1, id="two-roots"),
    pytest.param(b"\xef\xbb\xbf<a>\n</b>", "ERR_TAG_NAME_MISMATCH", "</b>", 1, id="after-byte-order-mark"),
]


@pytest.mark.parametrize("data, rule, token, occurrence", MALFORMED)
def test_malformed_xml_names_the_libxml2_rule_and_points_at_the_error(data, rule, token, occurrence):
    with pytest.raises(MalformedXml) as caught:
        PARSER.parse(data)
    error = caught.value
    assert error.rule == rule
    line, column = at(data.removeprefix(b"\xef\xbb\xbf"), token, occurrence)
    assert error.line == line
    # libxml2 stops on the offending token or just past it; either way, on that token
    assert column <= error.column <= column + len(token), (error.column, column)


def test_malformed_xml_message_and_text_carry_the_position_once():
    data = b"<a>\n  <b>\n  </c>\n</a>\n"
    with pytest.raises(MalformedXml) as caught:
        PARSER.parse(data)
    error = caught.value
    assert error.message == "Opening and ending tag mismatch: b line 2 and c"
    assert str(error) == f"{error.message} [ERR_TAG_NAME_MISMATCH] (line 3, column {error.column})"
    assert error.code == "malformed_xml"


def test_truncated_document_points_at_its_end():
    data = b"<a>\n  <b>text"
    with pytest.raises(MalformedXml) as caught:
        PARSER.parse(data)
    assert caught.value.line == 2


def test_empty_document_is_malformed():
    with pytest.raises(MalformedXml) as caught:
        PARSER.parse(b"")
    assert caught.value.rule == "ERR_DOCUMENT_EMPTY"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'<!DOCTYPE a [<!ENTITY x "y">]>\n<a>&x;</a>', id="internal-subset"),
        pytest.param(b'<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "http://example.com/a.dtd">\n<a/>', id="external"),
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
            b' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n<lolz>&lol2;</lolz>',
            id="entity-expansion",
        ),
        pytest.param(b'\xef\xbb\xbf<!DOCTYPE a>\n<a/>', id="after-byte-order-mark"),
    ],
)
def test_doctype_is_forbidden_and_located(data):
    with pytest.raises(ForbiddenXml) as caught:
        PARSER.parse(data)
    assert caught.value.rule == "no-doctype"
    # a byte order mark is an encoding signature, not a character an editor shows
    assert (caught.value.line, caught.value.column) == at(data.removeprefix(b"\xef\xbb\xbf"), "<!DOCTYPE")


# --- schema violations ------------------------------------------------------------------------

# (person field, bad value, XSD rule)
PERSON_VIOLATIONS = [
    ("Sex", "5", "cvc-enumeration-valid"),  # GB/T 2261.1
    ("Ethnicity", "57", "cvc-enumeration-valid"),  # GB 3304 ends at 56, then 97 and 98
    ("Ethnicity", "1", "cvc-enumeration-valid"),
    ("MaritalStatus", "50", "cvc-enumeration-valid"),  # GB/T 4766
    ("Division", "110101", "cvc-enumeration-valid"),  # GB/T 2260: Beijing, not Zhuhai
    ("IdNumber", id_number()[:17], "cvc-pattern-valid"),  # GB 11643: 18 characters
    ("IdNumber", id_number()[:17] + "x", "cvc-pattern-valid"),  # the check character is an upper-case X
    ("IdNumber", id_number(birth="19901301"), "cvc-pattern-valid"),  # month 13
    ("Phone", "123", "cvc-pattern-valid"),
    ("BirthDate", "1990-02-30", "cvc-datatype-valid.1.2.1"),
    pytest.param("Name", "名" * 51, "cvc-maxLength-valid", id="Name-51-characters"),
    pytest.param("Name", "", "cvc-minLength-valid", id="Name-empty"),
]


@pytest.mark.parametrize("field, value, rule", PERSON_VIOLATIONS)
def test_person_violation_names_the_rule_and_the_element(field, value, rule):
    data = person_envelope(person(**{field: value}))
    error = violation("person", data)
    assert f"Element '{field}'" in error.message
    assert (error.line, error.column) == at(data, f"<p:{field}>")
    assert error.rule == rule


@pytest.mark.parametrize(
    "fields",
    [
        {"Ethnicity": "98"},
        {"Ethnicity": "97"},
        {"Ethnicity": "56"},
        {"MaritalStatus": "21"},
        {"MaritalStatus": "90"},
        {"Division": "440402"},
        {"Division": "440400"},
        {"Sex": "9"},
        {"Phone": "0756-2212345"},
        {"IdNumber": id_number("440403", "20010229", 7)},  # the pattern checks form, not calendars
        pytest.param({"Name": "名" * 50}, id="Name-50-characters"),
        {"Sex": None, "BirthDate": None, "Ethnicity": None, "Division": None, "Address": None, "Phone": None,
         "MaritalStatus": None},
    ],
)
def test_person_codes_accepted(fields):
    check("person", person_envelope(person(**fields)))


def test_id_number_with_check_character_x_is_accepted():
    number = next(n for n in (id_number(sequence=s) for s in range(1000)) if n.endswith("X"))
    check("person", person_envelope(person(IdNumber=number)))


def test_legal_entity_sample_is_valid():
    check("legal-entity", legal_envelope(legal_entity()))


@pytest.mark.parametrize("letter", ["I", "O", "S", "V", "Z"])
def test_credit_code_with_a_letter_gb_32100_excludes_is_refused(letter):
    code = credit_code()
    bad = code[:10] + letter + code[11:]
    data = legal_envelope(legal_entity(CreditCode=bad))
    error = violation("legal-entity", data)
    assert error.rule == "cvc-pattern-valid"
    assert (error.line, error.column) == at(data, "<le:CreditCode>")


def test_credit_code_of_wrong_length_is_refused():
    data = legal_envelope(legal_entity(CreditCode=credit_code()[:17]))
    assert violation("legal-entity", data).rule == "cvc-pattern-valid"


def test_header_violation_points_at_the_header_element():
    data = build_envelope("ga", "GA-001", "1.0", person()).body
    error = violation("person", data)
    assert error.rule == "cvc-pattern-valid"
    assert "Element 'Sender'" in error.message
    assert (error.line, error.column) == at(data, "<env:Sender>")


def test_missing_element_is_cvc_complex_type_2_4_at_the_element_found_instead():
    data = person_envelope(person(Name=None))
    error = violation("person", data)
    assert "Name" in error.message
    assert (error.line, error.column) == at(data, "<p:Sex>")
    assert error.rule == "cvc-complex-type.2.4"


def test_missing_last_element_is_cvc_complex_type_2_4_at_the_parent():
    only_id = {k: None for k in ("Name", "Sex", "BirthDate", "Ethnicity", "Division", "Address", "Phone", "MaritalStatus")}
    data = person_envelope(person(**only_id))
    error = violation("person", data)
    assert (error.line, error.column) == at(data, "<p:Person")
    assert error.rule == "cvc-complex-type.2.4"


def test_unexpected_element_is_cvc_complex_type_2_4_at_that_element():
    data = person_envelope(person().replace(b"<p:Sex>", b"<p:Nickname>Zhiqiang</p:Nickname><p:Sex>"))
    error = violation("person", data)
    assert (error.line, error.column) == at(data, "<p:Nickname>")
    assert error.rule == "cvc-complex-type.2.4"


def test_repeated_element_is_reported_at_the_repetition():
    data = person_envelope(person().replace(b"</p:Name>", b"</p:Name><p:Name>Again</p:Name>"))
    error = violation("person", data)
    assert "Element 'Name'" in error.message
    assert (error.line, error.column) == at(data, "<p:Name>", occurrence=2)


def test_pretty_printed_payload_gives_each_element_its_own_line():
    payload = person(Sex="5").replace(b"><p:", b">\n      <p:")
    data = person_envelope(payload)
    error = violation("person", data)
    assert error.rule == "cvc-enumeration-valid"
    line, column = at(data, "<p:Sex>")
    assert (error.line, error.column) == (line, 7)
    assert line > at(data, "<p:Person")[0]


def test_every_violation_is_listed_the_first_one_reported():
    data = person_envelope(person(Sex="5", Phone="123"))
    error = violation("person", data)
    assert error.rule == "cvc-enumeration-valid"
    assert error.message.endswith("(and 1 more)")
    assert [(rule, line, column) for rule, line, column, _ in error.details] == [
        ("cvc-enumeration-valid", *at(data, "<p:Sex>")),
        ("cvc-pattern-valid", *at(data, "<p:Phone>")),
    ]


def test_violation_message_has_no_namespace_noise():
    error = violation("person", person_envelope(person(Sex="5")))
    assert "{urn:" not in error.message
    assert "'5'" in error.message


def test_violation_becomes_a_dead_letter_failure_with_rule_and_position():
    data = person_envelope(person(Sex="5"))
    failure = failure_of(violation("person", data))
    assert (failure.code, failure.permanent, failure.rule) == ("schema_violation", True, "cvc-enumeration-valid")
    assert (failure.line, failure.column) == at(data, "<p:Sex>")


# --- rule_name --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "libxml2, rule",
    [
        ("SCHEMAV_CVC_COMPLEX_TYPE_2_4", "cvc-complex-type.2.4"),
        ("SCHEMAV_CVC_COMPLEX_TYPE_3_2_2", "cvc-complex-type.3.2.2"),
        ("SCHEMAV_CVC_ENUMERATION_VALID", "cvc-enumeration-valid"),
        ("SCHEMAV_CVC_PATTERN_VALID", "cvc-pattern-valid"),
        ("SCHEMAV_CVC_DATATYPE_VALID_1_2_1", "cvc-datatype-valid.1.2.1"),
        ("SCHEMAV_CVC_ELT_1", "cvc-elt.1"),
        ("SCHEMAV_CVC_TYPE_3_1_1", "cvc-type.3.1.1"),
        # libxml2 reports a missing or unexpected child under this name; XSD calls it 2.4
        ("SCHEMAV_ELEMENT_CONTENT", "cvc-complex-type.2.4"),
        # facet rules are spelt as the XSD spec spells them
        ("SCHEMAV_CVC_MAXLENGTH_VALID", "cvc-maxLength-valid"),
        ("SCHEMAV_CVC_MINLENGTH_VALID", "cvc-minLength-valid"),
        ("SCHEMAV_CVC_TOTALDIGITS_VALID", "cvc-totalDigits-valid"),
        ("SCHEMAV_CVC_MININCLUSIVE_VALID", "cvc-minInclusive-valid"),
    ],
)
def test_rule_name(libxml2, rule):
    assert rule_name(libxml2) == rule


# --- namespaces and payload elements ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload, namespace",
    [
        (b'<x:Person xmlns:x="urn:example:other"><x:IdNumber>1</x:IdNumber></x:Person>', "urn:example:other"),
        (b"<Person><IdNumber>1</IdNumber></Person>", ""),
        (legal_entity(), LEGAL_NS),
    ],
)
def test_payload_in_the_wrong_namespace(payload, namespace):
    data = person_envelope(payload)
    with pytest.raises(WrongNamespace) as caught:
        check("person", data)
    error = caught.value
    assert error.rule == "payload-namespace"
    assert f"'{namespace}'" in error.message
    assert f"'{PERSON_NS}'" in error.message
    assert error.line == at(data, "Person>" if namespace != LEGAL_NS else "<le:LegalEntity")[0]


def test_person_payload_in_the_legal_entity_specification_is_in_the_wrong_namespace():
    with pytest.raises(WrongNamespace):
        check("legal-entity", legal_envelope(person()))


def test_payload_element_not_declared_by_the_specification():
    data = person_envelope(f'<p:Nobody xmlns:p="{PERSON_NS}"><p:Name>x</p:Name></p:Nobody>'.encode())
    error = violation("person", data)
    assert error.rule == "payload-element"
    assert "Nobody" in error.message
    assert error.line == at(data, "<p:Nobody")[0]


def test_validator_knows_its_namespace_and_payload_elements():
    validator = SCHEMAS.validator("person", "1.0")
    assert validator.namespace == PERSON_NS
    assert validator.roots == {f"{{{PERSON_NS}}}Person"}


# --- specifications and versions --------------------------------------------------------------


def test_specifications_and_versions():
    shipped = sorted(p.name for p in XSD_ROOT.iterdir() if p.is_dir() and p.name not in RESERVED)
    assert {"legal-entity", "person"} <= set(shipped)
    assert SCHEMAS.specifications() == shipped
    assert SCHEMAS.versions("person") == ["1.0", "1.1"]


@pytest.mark.parametrize("name", ["marriage", "Person", "envelopes", "../person", "person/1.0", ""])
def test_unknown_specification(name):
    with pytest.raises(UnknownSpecification):
        SCHEMAS.validator(name, "1.0")


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(UnknownVersion) as caught:
        SCHEMAS.validator("person", "9.9")
    assert "'9.9'" in caught.value.message
    assert "known: 1.0" in caught.value.message


@pytest.fixture
def trap(tmp_path: Path) -> tuple[SchemaSet, Path]:
    """A schema folder with a valid-looking person.xsd planted beside it, outside it."""
    root = tmp_path / "registry" / "xsd"
    shutil.copytree(XSD_ROOT, root)
    outside = tmp_path / "registry" / "planted"
    outside.mkdir()
    shutil.copy(XSD_ROOT / "person" / "1.0" / "person.xsd", outside / "person.xsd")
    return SchemaSet(root), tmp_path / "registry"


@pytest.mark.parametrize("version", ["../../planted", "../../etc", "1.0/../../../planted", "/etc", "1.0/", " 1.0", "1.0\n"])
def test_path_traversal_in_the_version_is_an_unknown_version(trap, monkeypatch, version):
    schemas, _registry = trap
    assert (schemas.root / "person" / "../../planted/person.xsd").is_file()  # the bait is reachable
    root = schemas.root.resolve()
    touched: list[Path] = []
    for method in ("is_file", "is_dir", "exists", "iterdir", "open", "read_bytes", "stat"):
        original = getattr(Path, method)

        def spy(self, *args, _original=original, **kwargs):
            touched.append(self)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Path, method, spy)
    with pytest.raises(UnknownVersion):
        schemas.validator("person", version)
    monkeypatch.undo()
    outside = [p for p in touched if not p.resolve().is_relative_to(root)]
    assert outside == []


def test_validator_is_compiled_once_per_name_and_version():
    schemas = SchemaSet()
    first = schemas.validator("person", "1.0")
    assert schemas.validator("person", "1.0") is first
    assert schemas.validator("legal-entity", "1.0") is not first
    assert schemas.envelope() is schemas.envelope()
    assert SchemaSet().validator("person", "1.0") is not first  # each set keeps its own cache


def test_validator_cache_holds_under_concurrent_first_use():
    schemas = SchemaSet()
    found = []
    threads = [threading.Thread(target=lambda: found.append(schemas.validator("person", "1.0"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and all(v is found[0] for v in found)


def test_a_failed_lookup_is_not_cached():
    schemas = SchemaSet()
    for _ in range(2):
        with pytest.raises(UnknownVersion):
            schemas.validator("person", "2.0")


# --- size and depth limits --------------------------------------------------------------------


def test_size_limit_is_inclusive():
    data = person_envelope(person())
    SafeParser(XmlLimits(max_bytes=len(data))).parse(data)
    with pytest.raises(XmlTooLarge) as caught:
        SafeParser(XmlLimits(max_bytes=len(data) - 1)).parse(data)
    assert str(len(data)) in caught.value.message
    assert caught.value.code == "xml_too_large"


def test_size_limit_is_checked_before_parsing():
    # a body over the limit is refused for its size, even when it is not XML at all
    with pytest.raises(XmlTooLarge):
        SafeParser(XmlLimits(max_bytes=100)).parse(b"<" * 101)


def nested(depth: int) -> bytes:
    return b"<e>" * depth + b"</e>" * depth


def test_depth_limit_is_inclusive():
    parser = SafeParser(XmlLimits(max_depth=5))
    parser.parse(nested(5))
    with pytest.raises(XmlTooDeep) as caught:
        parser.parse(nested(6))
    assert "5" in caught.value.message
    assert caught.value.code == "xml_too_deep"


def test_envelope_depth_against_the_limit():
    # Envelope / Body / Person / Name: four levels
    data = person_envelope(person())
    SafeParser(XmlLimits(max_depth=4)).parse(data)
    with pytest.raises(XmlTooDeep):
        SafeParser(XmlLimits(max_depth=3)).parse(data)


def test_default_depth_limit_is_64():
    PARSER.parse(nested(64))
    with pytest.raises(XmlTooDeep):
        PARSER.parse(nested(65))


def test_deeper_than_libxml2_allows_is_too_deep_not_malformed():
    with pytest.raises(XmlTooDeep):
        SafeParser(XmlLimits(max_depth=256)).parse(nested(300))


@pytest.mark.parametrize(
    "limits",
    [{"max_bytes": 0}, {"max_bytes": -1}, {"max_depth": 0}, {"max_depth": -5}, {"max_depth": 257}],
)
def test_xml_limits_reject_nonsense(limits):
    with pytest.raises(ValueError):
        XmlLimits(**limits)


def test_xml_limits_accept_the_extremes():
    assert XmlLimits(max_bytes=1, max_depth=1).max_depth == 1
    assert XmlLimits(max_depth=256).max_depth == 256
