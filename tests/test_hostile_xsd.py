"""Malformed and hostile XSDs handed in by standards staff.

The registry takes a specification only when it is a well-formed XML Schema with a namespace of
its own, compiles, declares a payload element, and refers to nothing but files of its own
folder. Anything else is refused with the reason (a rule and a message naming the file), by
`inspect_specification` and by the registry's `publish` and `check` alike, and nothing is
registered. Nothing is ever fetched from the network: a listening port named by the hostile
file must never see a connection.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from bus.db import make_engine, migrate
from bus.envelope import build_envelope
from schemas import (
    ENVELOPE_NS,
    InvalidSpecification,
    Registry,
    SchemaSet,
    SchemaViolation,
)
from schemas.registry import Entry
from schemas.safety import inspect_specification

NS = "urn:zhuhai:govbus:parcel"
GLOBAL = '  <xs:element name="Parcel" type="xs:string"/>'


def schema(*body: str, namespace: str | None = NS) -> str:
    """An XSD whose body starts on line 3 (the line a refusal should point at)."""
    target = f' targetNamespace="{namespace}" xmlns:t="{namespace}"' if namespace else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"{target} elementFormDefault="qualified">\n'
        + "\n".join(body)
        + "\n</xs:schema>\n"
    )


# -- a port nobody may connect to ------------------------------------------------------------


@pytest.fixture
def trap() -> Iterator[socket.socket]:
    """A listening socket: the kernel queues a connection even if nobody accepts it, so a
    short accept afterwards tells whether anything tried to fetch from it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def assert_never_contacted(sock: socket.socket) -> None:
    sock.settimeout(0.05)
    try:
        conn, peer = sock.accept()
    except TimeoutError:
        return
    conn.close()
    pytest.fail(f"something connected to the trap port from {peer}: a schema location was fetched")


def outcome(call: Callable[[], object], seconds: float = 20.0) -> BaseException | None:
    """Run `call` and return what it raised (None if nothing). A fetch that waits for an answer
    the trap never gives would hang: fail instead of waiting for ever."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 -- handed back to the test, which judges it
            raised.append(exc)
        else:
            raised.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s: waiting on the network?")
    return raised[0]


# -- the registry ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with the shipped specifications. Every refusal below leaves it unchanged
    (each test checks that), so one serves the module."""
    folder = tmp_path_factory.mktemp("registry")
    engine = make_engine(f"sqlite:///{folder / 'govbus.db'}")
    migrate(engine)
    registry = Registry(engine, folder / "xsd")
    registry.bootstrap()
    yield registry
    engine.dispose()


def snapshot(registry: Registry) -> list[Entry]:
    return registry.entries()


# -- the hostile cases -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A folder to build, the main file in it, and the refusal expected."""

    files: Callable[[Path, int], dict[str, str]]  # (spec folder, trap port) -> name: text
    rule: str
    says: str  # in the message, besides the file's name
    line: int | None = None  # where the refusal points
    main: str = "parcel.xsd"
    names: str = "parcel.xsd"  # the file the message names


CASES = {
    "not well-formed": Case(
        lambda d, p: {"parcel.xsd": schema('  <xs:element name="Parcel" type="xs:string">')},
        "ERR_TAG_NAME_MISMATCH", "Opening and ending tag mismatch", line=4,
    ),
    "not a schema": Case(
        lambda d, p: {"parcel.xsd": '<?xml version="1.0"?>\n<html><body>规范</body></html>\n'},
        "xs-schema-root", "is not an XML Schema: its root is <html>", line=2,
    ),
    "a DOCTYPE with an external entity": Case(
        lambda d, p: {"parcel.xsd": schema(GLOBAL).replace(
            "<xs:schema",
            f'<!DOCTYPE xs:schema [<!ENTITY e SYSTEM "http://127.0.0.1:{p}/e">]>\n<xs:schema', 1,
        )},
        "no-doctype", "DOCTYPE declarations are not accepted", line=2,
    ),
    "an internal entity declaration": Case(
        lambda d, p: {"parcel.xsd": schema(GLOBAL).replace(
            "<xs:schema", '<!DOCTYPE xs:schema [<!ENTITY a "aaaaaaaaaa">]>\n<xs:schema', 1,
        )},
        "no-doctype", "DOCTYPE declarations are not accepted", line=2,
    ),
    "no targetNamespace": Case(
        lambda d, p: {"parcel.xsd": schema(GLOBAL, namespace=None)},
        "target-namespace", "has no targetNamespace", line=2,
    ),
    "the envelope's namespace": Case(
        lambda d, p: {"parcel.xsd": schema(GLOBAL, namespace=ENVELOPE_NS)},
        "target-namespace", f"uses the reserved namespace {ENVELOPE_NS}", line=2,
    ),
    "an import over http": Case(
        lambda d, p: {"parcel.xsd": schema(
            f'  <xs:import namespace="urn:other" schemaLocation="http://127.0.0.1:{p}/x.xsd"/>', GLOBAL)},
        "local-references", "nothing is fetched from the network", line=3,
    ),
    "an import over https": Case(
        lambda d, p: {"parcel.xsd": schema(
            f'  <xs:import namespace="urn:other" schemaLocation="https://127.0.0.1:{p}/x.xsd"/>', GLOBAL)},
        "local-references", "nothing is fetched from the network", line=3,
    ),
    "an import over ftp": Case(
        lambda d, p: {"parcel.xsd": schema(
            f'  <xs:import namespace="urn:other" schemaLocation="ftp://127.0.0.1:{p}/x.xsd"/>', GLOBAL)},
        "local-references", "nothing is fetched from the network", line=3,
    ),
    "an include of a file: URL": Case(
        lambda d, p: {"parcel.xsd": schema('  <xs:include schemaLocation="file:///etc/passwd"/>', GLOBAL)},
        "local-references", "refers to file:///etc/passwd", line=3,
    ),
    "an include from outside the folder": Case(
        lambda d, p: {"parcel.xsd": schema('  <xs:include schemaLocation="../outside.xsd"/>', GLOBAL)},
        "local-references", "refers to ../outside.xsd, outside the specification's folder", line=3,
    ),
    "an include by absolute path": Case(
        lambda d, p: {"parcel.xsd": schema(
            f'  <xs:include schemaLocation="{d.parent / "outside.xsd"}"/>', GLOBAL)},
        "local-references", "by relative path", line=3,
    ),
    "an include of a file that is not there": Case(
        lambda d, p: {"parcel.xsd": schema('  <xs:include schemaLocation="types.xsd"/>', GLOBAL)},
        "local-references", "refers to types.xsd, which is not there", line=3,
    ),
    "an included file that imports over http": Case(
        lambda d, p: {
            "parcel.xsd": schema('  <xs:include schemaLocation="types.xsd"/>', GLOBAL),
            "types.xsd": schema(
                f'  <xs:import namespace="urn:other" schemaLocation="http://127.0.0.1:{p}/x.xsd"/>'),
        },
        "local-references", "nothing is fetched from the network", line=3, names="types.xsd",
    ),
    "an included file with a DOCTYPE": Case(
        lambda d, p: {
            "parcel.xsd": schema('  <xs:include schemaLocation="types.xsd"/>', GLOBAL),
            "types.xsd": schema().replace(
                "<xs:schema", f'<!DOCTYPE xs:schema [<!ENTITY e SYSTEM "http://127.0.0.1:{p}/e">]>\n<xs:schema', 1),
        },
        "no-doctype", "DOCTYPE declarations are not accepted", line=2, names="types.xsd",
    ),
    "a type that is not defined": Case(
        lambda d, p: {"parcel.xsd": schema('  <xs:element name="Parcel" type="t:NoSuchType"/>')},
        "schema-compiles", "is not a valid schema", line=3,
    ),
    "no global element": Case(
        lambda d, p: {"parcel.xsd": schema(
            '  <xs:simpleType name="CodeType"><xs:restriction base="xs:string"/></xs:simpleType>')},
        "global-element", "declares no global element",
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def hostile(request: pytest.FixtureRequest, tmp_path: Path, trap: socket.socket) -> tuple[Case, Path]:
    case = CASES[request.param]
    folder = tmp_path / "parcel"
    folder.mkdir()
    # A real file just outside the folder: refusing it must not depend on it being missing.
    (tmp_path / "outside.xsd").write_text(schema(GLOBAL), encoding="utf-8")
    for name, text in case.files(folder, port_of(trap)).items():
        (folder / name).write_text(text, encoding="utf-8")
    return case, folder / case.main


def assert_refused(error: BaseException | None, case: Case) -> None:
    assert isinstance(error, InvalidSpecification), f"not refused as an invalid specification: {error!r}"
    assert error.rule == case.rule, str(error)
    assert case.says in error.message, error.message
    assert case.names in error.message, error.message
    if case.line is not None:
        assert error.line == case.line, str(error)
    assert "\n" not in str(error)


def test_inspection_refuses_it_with_the_reason(hostile: tuple[Case, Path], trap: socket.socket) -> None:
    case, main = hostile
    assert_refused(outcome(lambda: inspect_specification(main, forbidden_namespaces=(ENVELOPE_NS,))), case)
    assert_never_contacted(trap)


def test_publishing_refuses_it_and_registers_nothing(
    hostile: tuple[Case, Path], trap: socket.socket, registry: Registry
) -> None:
    case, main = hostile
    before = snapshot(registry)
    assert_refused(outcome(lambda: registry.publish(main, "parcel", "1.0", who="standards")), case)
    assert_refused(outcome(lambda: registry.publish(main, "person", "1.1", who="standards")), case)
    assert_refused(outcome(lambda: registry.publish(main, "parcel", "1.0", draft=True, who="standards")), case)
    assert snapshot(registry) == before
    assert_never_contacted(trap)


def test_checking_refuses_it(hostile: tuple[Case, Path], trap: socket.socket, registry: Registry) -> None:
    case, main = hostile
    assert_refused(outcome(lambda: registry.check(main, "person")), case)
    assert_refused(outcome(lambda: registry.check(main, "person", "2.0", "NONE")), case)
    assert_never_contacted(trap)


def test_an_import_by_namespace_alone_fetches_nothing(tmp_path: Path, trap: socket.socket, registry: Registry) -> None:
    # A namespace is a name, not a location, even when it looks like a URL.
    folder = tmp_path / "by-namespace"
    folder.mkdir()
    main = folder / "by-namespace.xsd"
    main.write_text(schema(f'  <xs:import namespace="http://127.0.0.1:{port_of(trap)}/x.xsd"/>', GLOBAL), encoding="utf-8")
    assert outcome(lambda: inspect_specification(main)) is None
    assert outcome(lambda: registry.publish(main, "by-namespace", "1.0")) is None
    validator = SchemaSet(registry=registry).validator("by-namespace", "1.0")
    envelope = build_envelope("GA", "GA-001", "1.0", f'<t:Parcel xmlns:t="{NS}">包裹</t:Parcel>'.encode())
    validator.check(etree.fromstring(envelope.body), envelope.body)
    assert_never_contacted(trap)


# -- a specification in two files of its own folder -------------------------------------------

TYPES = schema(
    '  <xs:simpleType name="TrackingNumberType">',
    '    <xs:annotation><xs:documentation xml:lang="zh">邮件号码</xs:documentation></xs:annotation>',
    '    <xs:restriction base="xs:string"><xs:pattern value="[A-Z]{2}[0-9]{9}CN"/></xs:restriction>',
    "  </xs:simpleType>",
)
MAIN = schema(
    '  <xs:include schemaLocation="types.xsd"/>',
    '  <xs:element name="Parcel">',
    "    <xs:complexType><xs:sequence>",
    '      <xs:element name="TrackingNumber" type="t:TrackingNumberType"/>',
    "    </xs:sequence></xs:complexType>",
    "  </xs:element>",
)


def parcel(number: str) -> bytes:
    return f'<t:Parcel xmlns:t="{NS}"><t:TrackingNumber>{number}</t:TrackingNumber></t:Parcel>'.encode()


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    folder = tmp_path / "handed-in" / "parcel"
    folder.mkdir(parents=True)
    (folder / "parcel.xsd").write_text(MAIN, encoding="utf-8")
    (folder / "types.xsd").write_text(TYPES, encoding="utf-8")
    (folder / "notes.xsd").write_text("not referred to, not part of the specification", encoding="utf-8")
    return folder / "parcel.xsd"


def test_an_include_of_a_sibling_file_is_taken_with_both_files(two_files: Path) -> None:
    folder = two_files.parent.resolve()
    assert inspect_specification(two_files, forbidden_namespaces=(ENVELOPE_NS,)) == [
        folder / "parcel.xsd", folder / "types.xsd",
    ]


def test_both_files_reach_another_machine_through_the_database(two_files: Path, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'govbus.db'}")
    migrate(engine)
    try:
        published = Registry(engine, tmp_path / "cache-here").publish(two_files, "parcel", "1.0", who="standards")
        assert (published.outcome, published.entry.status, published.entry.namespace) == ("published", "published", NS)
        sources = {name: (two_files.parent / name).read_bytes() for name in ("parcel.xsd", "types.xsd")}
        shutil.rmtree(tmp_path / "handed-in")  # the files handed in are gone; the database has them

        elsewhere = Registry(engine, tmp_path / "cache-elsewhere")
        folder = elsewhere.folder("parcel", "1.0")
        assert folder.is_relative_to((tmp_path / "cache-elsewhere").resolve())
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".xsd"} == sources
        assert elsewhere.main_path("parcel", "1.0") == folder / "parcel.xsd"

        validator = SchemaSet(registry=elsewhere).validator("parcel", "1.0")
        valid = build_envelope("GA", "GA-001", "1.0", parcel("EA123456789CN"))
        validator.check(etree.fromstring(valid.body), valid.body)
        # the pattern lives in types.xsd: enforced only if that file was written out too
        invalid = build_envelope("GA", "GA-001", "1.0", parcel("12345"))
        with pytest.raises(SchemaViolation) as refused:
            validator.check(etree.fromstring(invalid.body), invalid.body)
        assert refused.value.rule == "cvc-pattern-valid"
        assert "12345" in refused.value.message
    finally:
        engine.dispose()


@pytest.mark.parametrize("location", ["types.xsd", "common/types.xsd"])
def test_an_edited_included_file_is_judged_afresh(tmp_path: Path, location: str) -> None:
    # Standards staff check, edit the included file, check again: the second answer must be
    # about the file as it now is, wherever in the folder it lives.
    engine = make_engine(f"sqlite:///{tmp_path / 'govbus.db'}")
    migrate(engine)
    folder = tmp_path / "handed-in"
    (folder / location).parent.mkdir(parents=True)
    main = folder / "parcel.xsd"
    main.write_text(MAIN.replace('schemaLocation="types.xsd"', f'schemaLocation="{location}"'), encoding="utf-8")
    (folder / location).write_text(TYPES, encoding="utf-8")
    try:
        registry = Registry(engine, tmp_path / "cache")
        registry.publish(main, "parcel", "1.0", who="standards")
        assert registry.check(main, "parcel", "1.1") == ("BACKWARD", [])
        (folder / location).write_text(TYPES.replace("[A-Z]{2}[0-9]{9}CN", "E[A-Z][0-9]{9}CN"), encoding="utf-8")
        _, findings = registry.check(main, "parcel", "1.1")  # the pattern now admits fewer numbers
        assert [(f.rule, f.path) for f in findings] == [("pattern-changed", "/Parcel/TrackingNumber")]
    finally:
        engine.dispose()
