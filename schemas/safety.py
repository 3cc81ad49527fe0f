"""What an XSD must be before the registry takes it.

Standards staff hand in files; the registry refuses, with the reason, one that is not
well-formed, is not a schema, declares a DTD, has no target namespace, imports or includes
over the network or from outside its own folder, or does not compile. Nothing is ever fetched
from the network: locations are checked before any schema processor sees the file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from lxml import etree

from schemas.errors import InvalidSpecification, ValidationError
from schemas.parsing import SafeParser, XmlLimits

XS = "{http://www.w3.org/2001/XMLSchema}"
_REFERENCES = (f"{XS}import", f"{XS}include", f"{XS}redefine", f"{XS}override")
_PARSER = SafeParser(XmlLimits(max_bytes=5 * 1024 * 1024, max_depth=64))


def inspect_specification(main: Path, *, forbidden_namespaces: tuple[str, ...] = ()) -> list[Path]:
    """The files making up the specification whose main XSD is `main`: itself and what it
    imports or includes from its folder, main first.

    Raises:
        InvalidSpecification: the first reason the files cannot be taken, naming the file
            (and line, where there is one).
    """
    folder = main.resolve().parent
    files: list[Path] = []
    pending = [main.resolve()]
    namespace = None
    while pending:
        path = pending.pop(0)
        if path in files:
            continue
        files.append(path)
        root = _parse(path, main)
        if root.tag != f"{XS}schema":
            raise InvalidSpecification(f"{path.name} is not an XML Schema: its root is <{etree.QName(root).localname}>",
                                       rule="xs-schema-root", line=root.sourceline)
        if namespace is None:
            namespace = root.get("targetNamespace")
            if not namespace:
                raise InvalidSpecification(f"{path.name} has no targetNamespace: a payload needs its own namespace",
                                           rule="target-namespace", line=root.sourceline)
            if namespace in forbidden_namespaces:
                raise InvalidSpecification(f"{path.name} uses the reserved namespace {namespace}",
                                           rule="target-namespace", line=root.sourceline)
        for reference in root.iter(*_REFERENCES):
            location = reference.get("schemaLocation")
            if location is None:
                continue  # an import by namespace alone: nothing is loaded for it
            target = _local_target(location, path, folder, reference)
            pending.append(target)
    _compile(main, files)
    return files


def _parse(path: Path, main: Path) -> etree._Element:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidSpecification(f"cannot read {path.name}: {exc.strerror}") from None
    try:
        return _PARSER.parse(data)
    except ValidationError as exc:
        raise InvalidSpecification(f"{path.name}: {exc.message}", rule=exc.rule, line=exc.line, column=exc.column) from None


def _local_target(location: str, path: Path, folder: Path, reference: etree._Element) -> Path:
    where = {"line": reference.sourceline}
    parsed = urlparse(location)
    if parsed.scheme or parsed.netloc or location.startswith(("/", "\\")):
        raise InvalidSpecification(
            f"{path.name} refers to {location}: a specification may only import or include files "
            "of its own folder, by relative path; nothing is fetched from the network", rule="local-references", **where,
        )
    target = (path.parent / location).resolve()
    if not target.is_relative_to(folder):
        raise InvalidSpecification(
            f"{path.name} refers to {location}, outside the specification's folder", rule="local-references", **where
        )
    if not target.is_file():
        raise InvalidSpecification(f"{path.name} refers to {location}, which is not there", rule="local-references", **where)
    return target


def _compile(main: Path, files: list[Path]) -> None:
    try:
        etree.XMLSchema(etree.parse(str(main.resolve()), etree.XMLParser(no_network=True, resolve_entities=False)))
    except etree.XMLSchemaParseError as exc:
        entry = exc.error_log.last_error if exc.error_log else None
        raise InvalidSpecification(
            f"{main.name} is not a valid schema: {entry.message if entry else exc}",
            rule="schema-compiles", line=entry.line if entry else None,
        ) from None
    except etree.XMLSyntaxError as exc:
        raise InvalidSpecification(f"{main.name}: {exc.msg}", rule="well-formed", line=exc.lineno) from None
    try:
        from schemas.model import load_model

        model = load_model(main)
    except Exception as exc:  # xmlschema's errors are many; each is a reason to refuse
        raise InvalidSpecification(f"{main.name} cannot be read as a data specification: {exc}".splitlines()[0],
                                   rule="schema-compiles") from None
    if not model.roots:
        raise InvalidSpecification(f"{main.name} declares no global element: no payload could follow it",
                                   rule="global-element")
