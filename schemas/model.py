"""What a data specification says, item by item, read with xmlschema's component model.

A `Model` flattens a specification into its data items (信息项), each element and attribute
by path (`/Person/IdNumber`, `/LegalEntity/RegisteredCapital/@currency`), with what a message
must satisfy there: occurrences, base type, code list, length, pattern, range, digits. The
compatibility check compares two models; the data dictionary prints one. Built once per
version, off the message path (xmlschema is ~35 times slower than lxml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

XS = "http://www.w3.org/2001/XMLSchema"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_FACETS = {
    "length": "length", "minLength": "min_length", "maxLength": "max_length",
    "minInclusive": "min_inclusive", "minExclusive": "min_exclusive",
    "maxInclusive": "max_inclusive", "maxExclusive": "max_exclusive",
    "totalDigits": "total_digits", "fractionDigits": "fraction_digits",
}


@dataclass(frozen=True)
class Item:
    """One data item: an element or attribute of the specification, at its path."""

    path: str
    name: str
    kind: str  # "element" or "attribute"
    label: str | None = None  # its Chinese name, from xs:documentation
    min_occurs: int = 1
    max_occurs: int | None = 1  # None: unbounded
    complex: bool = False  # has child elements
    children: tuple[str, ...] = ()  # child element names, in order
    ordered: bool = True  # children in a sequence (False: xs:all)
    open: bool = False  # admits elements by wildcard (xs:any)
    type_name: str | None = None  # the named type, if any
    base: str | None = None  # XSD primitive of its value (string, decimal, date ...)
    description: str | None = None  # the type's documentation
    standard: str | None = None  # where its code list or format comes from
    enumeration: tuple[str, ...] | None = None
    labels: dict[str, str] = field(default_factory=dict)  # code -> its meaning
    patterns: tuple[str, ...] = ()  # every pattern that applies (all must match)
    length: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_inclusive: Any = None
    min_exclusive: Any = None
    max_inclusive: Any = None
    max_exclusive: Any = None
    total_digits: int | None = None
    fraction_digits: int | None = None
    default: str | None = None
    fixed: str | None = None  # the only value allowed, if any
    nillable: bool = False  # may be sent as xsi:nil="true"

    @property
    def required(self) -> bool:
        return self.min_occurs > 0

    @property
    def depth(self) -> int:
        return self.path.count("/") - (1 if self.kind == "attribute" else 0)


@dataclass(frozen=True)
class Model:
    namespace: str
    roots: tuple[str, ...]
    items: dict[str, Item]  # by path, in document order
    types: frozenset[str]  # named global types
    title: str | None = None  # the specification's own documentation
    recursive: bool = False

    @property
    def max_depth(self) -> int | None:
        """How deep a valid document can nest, root included; None when unbounded."""
        if self.recursive or any(i.open for i in self.items.values()):
            return None
        return max((i.depth for i in self.items.values() if i.kind == "element"), default=0)


def _documentation(annotated: Any) -> str | None:
    """The Chinese documentation of a component if it has one, else the first."""
    return _text_of(getattr(annotated, "annotation", None))


def _text_of(annotation: Any) -> str | None:
    if annotation is None:
        return None
    if isinstance(annotation, str):
        return annotation.strip() or None
    # all the text, markup inside the documentation included
    texts = [(d.get(XML_LANG), "".join(d.itertext()).strip()) for d in annotation.documentation]
    texts = [(lang, text) for lang, text in texts if text]
    for lang, text in texts:
        if lang == "zh":
            return text
    return texts[0][1] if texts else None


def _standard(simple: Any) -> str | None:
    for kind in _lineage(simple):
        annotation = getattr(kind, "annotation", None)
        if annotation is None or kind.schema.target_namespace == XS:
            continue
        for appinfo in annotation.appinfo:
            for child in appinfo:
                if str(child.tag).endswith("}standard") and (child.text or "").strip():
                    return child.text.strip()
    return None


def _lineage(simple: Any) -> list[Any]:
    """A simple type and the types it restricts, most derived first."""
    chain = []
    while simple is not None and simple not in chain:
        chain.append(simple)
        simple = getattr(simple, "base_type", None)
    return chain


def _local(qname: str | None) -> str | None:
    return qname.rsplit("}", 1)[-1] if qname else None


def _value_facets(simple: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    patterns: list[str] = []
    enumeration = None
    labels: dict[str, str] = {}
    for kind in _lineage(simple):
        for qname, facet in (getattr(kind, "facets", None) or {}).items():
            local = _local(qname) if qname else None
            if local in _FACETS and _FACETS[local] not in values:
                value = getattr(facet, "value", None)
                values[_FACETS[local]] = int(value) if local in ("length", "minLength", "maxLength", "totalDigits", "fractionDigits") and value is not None else value
        if getattr(kind, "patterns", None):
            patterns.extend(kind.patterns.regexps)
        if enumeration is None and getattr(kind, "enumeration", None) is not None:
            enumeration = tuple(str(v) for v in kind.enumeration)
            facet = (kind.facets or {}).get(f"{{{XS}}}enumeration")
            for index, value in enumerate(enumeration):
                annotation = facet.get_annotation(index) if facet is not None else None
                text = _text_of(annotation) if annotation is not None else None
                if text:
                    labels[value] = text
    primitive = getattr(simple, "primitive_type", None)
    base = _local(getattr(primitive, "name", None)) if primitive is not None else None
    if "fraction_digits" not in values and any(_local(getattr(k, "name", None)) in _INTEGERS for k in _lineage(simple)):
        values["fraction_digits"] = 0  # xs:integer and its kin: no fraction, though no facet says so
    return {**values, "patterns": tuple(dict.fromkeys(patterns)), "enumeration": enumeration, "labels": labels, "base": base}


_INTEGERS = {"integer", "long", "int", "short", "byte", "nonNegativeInteger", "positiveInteger",
             "nonPositiveInteger", "negativeInteger", "unsignedLong", "unsignedInt", "unsignedShort", "unsignedByte"}


def occurs(element: Any, content: Any) -> tuple[int, int | None]:
    """How often an element may occur in its parent, groups included: an element of a choice
    between several may be absent; an element of an optional or repeated group inherits that.
    (xmlschema's effective_*_occurs look at the element alone.)"""
    from xmlschema.validators import XsdGroup

    low, high = element.min_occurs, element.max_occurs
    group = element.parent
    while isinstance(group, XsdGroup):
        if group.model == "choice" and len(group) > 1:
            low = 0
        low *= group.min_occurs
        high = None if high is None or group.max_occurs is None else high * group.max_occurs
        if group is content:
            break
        group = group.parent
    return low, high


_MODELS: dict[tuple[str, tuple[tuple[str, int, int], ...]], Model] = {}  # the last few built


def load_model(main: Path) -> Model:
    """Read a specification's main XSD (and what it includes, from its own folder only).

    Building a model costs tens to hundreds of milliseconds; the last few are kept, keyed by
    the files of the folder and their sizes and times, so that inspecting, checking and
    registering one file builds it once.

    Raises whatever xmlschema raises for a schema it cannot build; `schemas.safety` checks
    what may be loaded before this is called.
    """
    main = main.resolve()
    files = sorted(main.parent.rglob("*.xsd"))  # included files may sit in subfolders
    key = (str(main), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    found = _MODELS.get(key)
    if found is None:
        found = _build(main)
        if len(_MODELS) >= 32:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = found
    return found


def _build(main: Path) -> Model:
    import xmlschema  # slow to import; only needed off the message path
    from xmlschema.validators import XsdAnyElement

    schema = xmlschema.XMLSchema(str(main.resolve()), allow="sandbox", defuse="always")
    items: dict[str, Item] = {}
    recursive = False

    def simple_of(kind: Any) -> Any:
        return kind if kind.is_simple() else (kind.content if kind.has_simple_content() else None)

    def add_attributes(path: str, kind: Any) -> None:
        for name, attribute in (getattr(kind, "attributes", None) or {}).items():
            if not name or not hasattr(attribute, "type"):
                continue
            local = _local(name) or name
            facets = _value_facets(attribute.type)
            items[f"{path}/@{local}"] = Item(
                path=f"{path}/@{local}", name=local, kind="attribute", label=_documentation(attribute),
                min_occurs=1 if attribute.use == "required" else 0, max_occurs=1,
                type_name=_local(attribute.type.name), description=_documentation(attribute.type),
                standard=_standard(attribute.type), default=attribute.default, fixed=attribute.fixed, **facets,
            )

    def walk(element: Any, path: str, seen: tuple[int, ...], content: Any = None) -> None:
        nonlocal recursive
        kind = element.type
        simple = simple_of(kind)
        children: list[Any] = []
        is_open = False
        ordered = True
        if id(element) in seen:
            recursive = True
        elif simple is None and kind.content is not None:
            ordered = kind.content.model != "all"
            for child in kind.content.iter_elements():
                if isinstance(child, XsdAnyElement):
                    is_open = True
                else:
                    children.append(child)
        low, high = occurs(element, content) if content is not None else (1, 1)
        items[path] = Item(
            path=path, name=element.local_name, kind="element", label=_documentation(element),
            min_occurs=low, max_occurs=high, fixed=element.fixed, nillable=bool(element.nillable),
            complex=simple is None, children=tuple(c.local_name for c in children), ordered=ordered, open=is_open,
            type_name=_local(kind.name), description=_documentation(simple if simple is not None else kind),
            standard=_standard(simple) if simple is not None else None,
            default=element.default,
            **(_value_facets(simple) if simple is not None else {}),
        )
        add_attributes(path, kind)
        if id(element) not in seen:
            for child in children:
                walk(child, f"{path}/{child.local_name}", (*seen, id(element)), kind.content)

    roots = []
    for name, element in schema.elements.items():
        local = _local(name) or name
        roots.append(local)
        walk(element, f"/{local}", ())
    title = None
    for annotation in getattr(schema, "annotations", None) or []:
        title = _text_of(annotation)
        if title:
            break
    return Model(
        namespace=schema.target_namespace or "",
        roots=tuple(roots),
        items=items,
        types=frozenset(_local(n) for n in schema.types if n),
        title=title,
        recursive=recursive,
    )


def decimal_or_none(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except ArithmeticError:
        return None
