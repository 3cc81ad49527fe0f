"""Compiled validators of data specification versions.

Each (name, version) compiles once into a `Validator` that checks a whole envelope in one pass:
the envelope schema, with its body narrowed from "one element of any other namespace, lax" to
"one element of this specification, strict", and the specification it imports. Valid
messages then cost one libxml2 validation and nothing else; only a failure is looked at
further, to say what is wrong and where.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from pathlib import Path

from lxml import etree

from schemas.errors import SchemaViolation, UnknownSpecification, UnknownVersion, UnpublishedVersion, WrongNamespace
from schemas.model import load_model
from schemas.parsing import SafeParser, line_and_column
from schemas.registry import ENVELOPE, ENVELOPE_NS, NAME, RESERVED, VERSION, XSD_ROOT, Registry, version_key

ENVELOPE_SPEC = ("envelope", "1.0")
_REFRESH = 30.0  # seconds between reloads of the registry's statuses
log = logging.getLogger("govbus.schemas")
_XS = "{http://www.w3.org/2001/XMLSchema}"
_CLARK = re.compile(r"\{[^}'\s]*\}(?=\w)")
_BODY = f"{{{ENVELOPE_NS}}}Body"
_ELEMENT_IN_MESSAGE = re.compile(r"Element '(?:\{[^}]*\})?([^']+)'")


# libxml2 names a few XSD rules its own way; and XSD spells facet names in camel case.
_LIBXML2_RULES = {"SCHEMAV_ELEMENT_CONTENT": "cvc-complex-type.2.4", "SCHEMAV_ELEMCONT": "cvc-complex-type.2.4"}
_FACETS = {f.lower(): f for f in ("maxLength", "minLength", "totalDigits", "fractionDigits", "minInclusive",
                                  "maxInclusive", "minExclusive", "maxExclusive", "whiteSpace")}


def rule_name(type_name: str) -> str:
    """libxml2's SCHEMAV_CVC_COMPLEX_TYPE_2_4 -> the XSD rule id cvc-complex-type.2.4."""
    if type_name in _LIBXML2_RULES:
        return _LIBXML2_RULES[type_name]
    words = [_FACETS.get(w, w) for w in type_name.removeprefix("SCHEMAV_").lower().split("_")]
    numbers: list[str] = []
    while words and words[-1].isdigit():
        numbers.insert(0, words.pop())
    return "-".join(words) + "".join("." + n for n in numbers)


_LAX_BODY = b'<xs:any namespace="##other" processContents="lax" minOccurs="1" maxOccurs="1"/>'


def _specialised_envelope(envelope: Path, spec: tuple[str, Path] | None) -> etree._ElementTree:
    """The envelope schema, its body narrowed to the specification's elements, validated
    strictly: one XSD pass then checks header, payload namespace and payload together."""
    text = envelope.read_bytes()
    if spec is not None:
        namespace, main = spec
        if _LAX_BODY not in text:
            raise RuntimeError(f"{envelope} no longer declares its body as {_LAX_BODY.decode()}")
        strict = f'<xs:any namespace="{namespace}" processContents="strict" minOccurs="1" maxOccurs="1"/>'
        text = text.replace(_LAX_BODY, strict.encode())
        opening = text.index(b">", text.index(b"<xs:schema")) + 1
        text = text[:opening] + f'<xs:import namespace="{namespace}" schemaLocation="{main.as_uri()}"/>'.encode() + text[opening:]
    return etree.fromstring(text, etree.XMLParser(no_network=True, resolve_entities=False), base_url=envelope.as_uri()).getroottree()


class Validator:
    """One data specification version, wrapped in the envelope, compiled.

    Attributes:
        name, version: the specification.
        namespace: its target namespace; a payload must be in it.
        roots: Clark names of its global elements, the payload elements it admits.
        max_depth: how deep a valid envelope of it can be (None: unbounded).
    """

    def __init__(self, name: str, version: str, main: Path, envelope: Path) -> None:
        main, envelope = main.resolve(), envelope.resolve()
        self.name = name
        self.version = version
        spec = etree.parse(str(main), etree.XMLParser(no_network=True, resolve_entities=False))
        self.namespace = spec.getroot().get("targetNamespace", "")
        self.envelope_only = self.namespace == ENVELOPE_NS
        self.roots = frozenset(
            f"{{{self.namespace}}}{el.get('name')}" for el in spec.getroot().iterchildren(f"{_XS}element")
        )
        self._schema = etree.XMLSchema(_specialised_envelope(envelope, None if self.envelope_only else (self.namespace, main)))
        self._lock = threading.Lock()
        # Envelope/Header/field is 3 deep, Envelope/Body/payload... is 2 + the payload's depth.
        payload = None if self.envelope_only else load_model(main).max_depth
        self.max_depth = None if payload is None else max(3, 2 + payload)

    def __repr__(self) -> str:
        return f"<Validator {self.name}:{self.version}>"

    def check(self, envelope: etree._Element, data: bytes, parser: SafeParser | None = None) -> None:
        """Validate a parsed envelope whose body should hold one of this specification's roots.

        `data` is the source the envelope was parsed from; it gives errors their column.
        `parser`, if given, is the parser that read it with `check_depth=False`: its depth
        limit is enforced here, for free when the schema itself bounds the depth below it.

        Raises:
            XmlTooDeep: deeper than the parser's limit.
            WrongNamespace: the payload is in another namespace.
            SchemaViolation: any other rule broken, with rule, line and column of the first.
        """
        if parser is not None and (self.max_depth is None or self.max_depth > parser.limits.max_depth):
            parser.check_depth(envelope)
        # libxml2 schema contexts keep per-validation state: one validation at a time each.
        with self._lock:
            if self._schema.validate(envelope):
                return
            errors = list(self._schema.error_log)
        if parser is not None and self.max_depth is not None:
            parser.check_depth(envelope)  # too deep, and invalid because of it: say so
        body = envelope.find(_BODY)
        payload = body[0] if body is not None and len(body) else None
        if payload is not None and payload.tag not in self.roots and not self.envelope_only:
            self._wrong_payload(envelope, data, payload)
        raise _violation(errors, envelope, data)

    def _wrong_payload(self, envelope: etree._Element, data: bytes, payload: etree._Element) -> None:
        if not isinstance(payload.tag, str):  # a comment or PI first: the schema will say
            return
        ns = etree.QName(payload).namespace or ""
        where = {"line": payload.sourceline, "column": _start_tag_column(envelope, data, payload)}
        if ns != self.namespace:
            raise WrongNamespace(
                f"payload <{etree.QName(payload).localname}> is in namespace '{ns}', "
                f"specification {self.name}:{self.version} requires '{self.namespace}'",
                rule="payload-namespace", **where,
            )
        raise SchemaViolation(
            f"payload <{etree.QName(payload).localname}> is not an element of "
            f"specification {self.name}:{self.version}",
            rule="payload-element", **where,
        )


def _violation(errors: list[etree._LogEntry], root: etree._Element, data: bytes) -> SchemaViolation:
    details = []
    for entry in errors:
        line, column = _position(entry, root, data)
        details.append((rule_name(entry.type_name), line, column, _CLARK.sub("", entry.message.strip())))
    rule, line, column, message = details[0]
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    error = SchemaViolation(message, rule=rule, line=line, column=column)
    error.details = details  # type: ignore[attr-defined]
    return error


def _position(entry: etree._LogEntry, root: etree._Element, data: bytes) -> tuple[int, int | None]:
    """Line and column of a validation error: libxml2 gives a line only, and the element's
    path; the column is that of the element's start tag."""
    element = None
    if entry.path:
        namespaces = {el.prefix: etree.QName(el).namespace for el in root.iter() if isinstance(el.tag, str) and el.prefix}
        try:
            found = root.getroottree().xpath(entry.path, namespaces=namespaces)
            element = found[0] if found and isinstance(found[0], etree._Element) else None
        except etree.XPathError:
            element = None
    if element is not None and element.sourceline == entry.line:
        return entry.line, entry.column or _start_tag_column(root, data, element)
    match = _ELEMENT_IN_MESSAGE.search(entry.message)
    column = _nth_tag_column(data, entry.line, match.group(1), 0) if match else None
    return entry.line, entry.column or column


def _start_tag_column(root: etree._Element, data: bytes, element: etree._Element) -> int | None:
    line = element.sourceline or 0
    local = etree.QName(element).localname
    # the how-manieth start tag of that name on its line this element is
    nth = 0
    for other in root.iter(element.tag):
        if other is element:
            break
        if other.sourceline == line:
            nth += 1
    return _nth_tag_column(data, line, local, nth)


def _nth_tag_column(data: bytes, line: int, local: str, nth: int) -> int | None:
    if line < 1:
        return None
    start = 0
    for _ in range(line - 1):
        start = data.find(b"\n", start) + 1
        if start == 0:
            return None
    end = data.find(b"\n", start)
    text = data[start : end if end >= 0 else len(data)]
    found = list(re.finditer(rb"<(?:[\w.-]+:)?" + re.escape(local.encode()) + rb"[\s/>]", text))
    return line_and_column(data, start + found[nth].start())[1] if nth < len(found) else None


class SchemaSet:
    """Compiled validators per (name, version), cached for the life of the process.

    With a `Registry`, versions and their status come from the database (reloaded every 30
    seconds; a version not seen yet is looked up at once), and files from the registry's
    cache folder. Without one, the specifications shipped
    under `schemas/xsd/` are all there is, all published.
    """

    def __init__(self, root: Path = XSD_ROOT, *, registry: Registry | None = None) -> None:
        self.registry = registry
        self.root = root
        self._cache: dict[tuple[str, str], Validator] = {}
        self._lock = threading.Lock()
        self._status: dict[tuple[str, str], str] = {}
        self._loaded = -_REFRESH
        self._uses: Counter[tuple[str, str, str]] = Counter()
        self._uses_flushed = time.monotonic()

    def _refresh(self, *, missing: bool = False) -> None:
        now = time.monotonic()
        if now - self._loaded < (1.0 if missing else _REFRESH):
            return
        if self.registry is None:
            self._status = {
                (spec.name, folder.name): "published"
                for spec in self.root.iterdir() if spec.is_dir() and NAME.match(spec.name) and spec.name not in RESERVED
                for folder in spec.iterdir() if VERSION.match(folder.name) and (folder / f"{spec.name}.xsd").is_file()
            }
        else:
            self._status = {(e.name, e.version): e.status for e in self.registry.entries()}
        self._loaded = now

    def specifications(self) -> list[str]:
        """Names of the registered specifications, envelope excluded."""
        self._refresh()
        return sorted({name for name, _ in self._status})

    def versions(self, name: str) -> list[str]:
        """Versions of `name` that messages may name (published or deprecated), oldest first.

        Raises UnknownSpecification.
        """
        self._refresh()
        if name not in {n for n, _ in self._status}:
            self._refresh(missing=True)
        found = [v for (n, v), status in self._status.items() if n == name]
        if not found:
            raise UnknownSpecification(f"no data specification named '{name}'")
        return sorted((v for v in found if self._status[(name, v)] != "draft"), key=version_key)

    def status(self, name: str, version: str) -> str:
        """draft, published or deprecated. Raises UnknownSpecification, UnknownVersion."""
        self._refresh()
        status = self._status.get((name, version))
        if status is not None:
            return status
        if self.registry is not None and NAME.match(name) and VERSION.match(version):
            # published since the last reload, perhaps: one lookup by key, taken at once
            entry = self.registry.entry(name, version)  # raises for the unknown
            self._status[(name, version)] = entry.status
            return entry.status
        self._refresh(missing=True)
        status = self._status.get((name, version))
        if status is None:
            known = ", ".join(self.versions(name)) or "none"  # raises for an unknown name
            raise UnknownVersion(f"specification '{name}' has no version '{version}' (known: {known})")
        return status

    def path(self, name: str, version: str) -> Path:
        """The main XSD file of a version messages may name.

        Raises UnknownSpecification, UnknownVersion, UnpublishedVersion.
        """
        if (name, version) == ENVELOPE_SPEC:
            return self.root / ENVELOPE / version / f"{ENVELOPE}.xsd"
        if not NAME.match(name) or not VERSION.match(version):
            if not NAME.match(name):
                raise UnknownSpecification(f"no data specification named '{name}'")
            raise UnknownVersion(f"'{version}' is not a version of specification '{name}'")
        if self.status(name, version) == "draft":
            raise UnpublishedVersion(f"version {version} of specification '{name}' is a draft, not published yet")
        if self.registry is None:
            return self.root / name / version / f"{name}.xsd"
        return self.registry.main_path(name, version)

    def validator(self, name: str, version: str) -> Validator:
        """The compiled validator of (name, version), compiled once per process.

        Raises:
            UnknownSpecification, UnknownVersion, UnpublishedVersion.
        """
        # A version once compiled stays valid: versions are deprecated, never withdrawn.
        key = (name, version)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                found = Validator(name, version, self.path(name, version), self.path(*ENVELOPE_SPEC))
                self._cache[key] = found
        return found

    def envelope(self) -> Validator:
        """The envelope on its own: checks headers when the payload's specification is unknown."""
        return self.validator(*ENVELOPE_SPEC)

    def count_deprecated(self, name: str, version: str, sender: str) -> None:
        """Note a message accepted under a deprecated version. The first from each sender is
        logged and recorded at once; the rest are recorded every ten seconds."""
        key = (name, version, sender)
        first = key not in self._uses
        self._uses[key] += 1
        if first:
            log.warning("department %s sent a message under deprecated version %s of %s", sender, version, name)
        if self.registry is not None and (first or time.monotonic() - self._uses_flushed > 10.0):
            pending = {k: n for k, n in self._uses.items() if n}
            try:
                self.registry.record_uses(pending)
            except Exception as exc:  # counts are for the standards staff, not worth a message
                log.warning("could not record the use of deprecated versions: %s", exc)
                return
            for k in pending:
                self._uses[k] = 0
            self._uses_flushed = time.monotonic()
