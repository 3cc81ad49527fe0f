"""Hardened XML parsing: no DTDs, no entities, no network, bounded size and depth.

Every document that reaches the platform from outside goes through `SafeParser.parse`. The
checks are ordered from cheapest to dearest, so that a hostile document costs as little as
possible before it is refused.
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass

from lxml import etree

from schemas.errors import ForbiddenXml, MalformedXml, XmlTooDeep, XmlTooLarge

# lxml names libxml2's error numbers only one way round; the reverse lets a syntax error carry
# the rule it broke (e.g. ERR_TAG_NAME_MISMATCH) as well as where.
_ERROR_NAMES = {
    value: name for name, value in vars(etree.ErrorTypes).items() if isinstance(value, int)
}


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """What a single document may cost. Both limits are inclusive."""

    max_bytes: int = 10 * 1024 * 1024
    max_depth: int = 64

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")
        # libxml2 refuses documents deeper than 256 on its own (without XML_PARSE_HUGE, which
        # this parser never sets); a larger limit here could never be reached.
        if not 1 <= self.max_depth <= 256:
            raise ValueError(f"max_depth must be between 1 and 256, got {self.max_depth}")


def line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte `offset` in `data`."""
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    if start == 0 and data.startswith(codecs.BOM_UTF8):  # libxml2 does not count the BOM
        start = len(codecs.BOM_UTF8)
    column = len(data[start:offset].decode("utf-8", "replace")) + 1
    return line, column


class SafeParser:
    """Parses untrusted bytes into an lxml element, or raises a `ValidationError` subclass.

    One instance may be shared by threads: each thread gets its own lxml parser, as lxml
    parsers must not be used by two threads at once.
    """

    def __init__(self, limits: XmlLimits | None = None) -> None:
        self.limits = limits or XmlLimits()
        self._local = threading.local()
        # "Is there an element at depth max_depth + 1?" in one compiled XPath: libxml2 stops
        # at the first empty step, so a shallow document costs a few microseconds.
        self._too_deep = etree.XPath("boolean(" + "/*" * (self.limits.max_depth + 1) + ")")

    def _parser(self) -> etree.XMLParser:
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = etree.XMLParser(
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                dtd_validation=False,
                huge_tree=False,
                remove_pis=False,
            )
            self._local.parser = parser
        return parser

    def parse(self, data: bytes, *, check_depth: bool = True) -> etree._Element:
        """Parse `data` and return its root element.

        With `check_depth=False` the caller owes the depth check: `check_depth(root)`, or a
        `Validator.check` given this parser, which skips it when the schema bounds the depth.

        Raises:
            XmlTooLarge: more than `limits.max_bytes` bytes.
            MalformedXml: not well-formed (with the libxml2 rule, line and column).
            ForbiddenXml: a DOCTYPE, and with it any entity declaration.
            XmlTooDeep: elements nested deeper than `limits.max_depth`.
        """
        if len(data) > self.limits.max_bytes:
            raise XmlTooLarge(
                f"document is {len(data)} bytes, the limit is {self.limits.max_bytes}"
            )
        try:
            root = etree.fromstring(data, self._parser())
        except etree.XMLSyntaxError as exc:
            line, column = exc.position
            doctype = data.find(b"<!DOCTYPE")
            if doctype >= 0:
                # Entity amplification and other DTD tricks can fail the parse before the
                # DOCTYPE check below: it is the DOCTYPE that is refused, whatever else is wrong.
                raise _forbidden(data, doctype) from None
            if "Excessive depth" in exc.msg:
                raise XmlTooDeep(
                    f"elements nested deeper than {self.limits.max_depth}", line=line
                ) from None
            raise MalformedXml(
                _strip_position(exc.msg), rule=_ERROR_NAMES.get(exc.code), line=line, column=column
            ) from None
        except ValueError as exc:
            # lxml refuses str input with an encoding declaration and similar misuse.
            raise MalformedXml(str(exc)) from None
        # Asking libxml2 costs a microsecond; the bytes tell first whether it is worth asking,
        # unless the document is in an encoding where "<!DOCTYPE" is not those bytes (UTF-16).
        doctype = data.find(b"<!DOCTYPE")
        if doctype >= 0 or not data.lstrip(b" \t\r\n").removeprefix(codecs.BOM_UTF8).startswith(b"<"):
            docinfo = root.getroottree().docinfo
            if docinfo.doctype or docinfo.internalDTD is not None:
                raise _forbidden(data, doctype)
        if check_depth:
            self.check_depth(root)
        return root

    def check_depth(self, root: etree._Element) -> None:
        """Raises XmlTooDeep if elements nest deeper than `limits.max_depth`."""
        if self._too_deep(root):
            raise XmlTooDeep(f"elements nested deeper than {self.limits.max_depth}")


def _forbidden(data: bytes, at: int) -> ForbiddenXml:
    line, column = line_and_column(data, at) if at >= 0 else (None, None)
    return ForbiddenXml(
        "DOCTYPE declarations are not accepted (no DTDs, no entities)", rule="no-doctype", line=line, column=column
    )


def _strip_position(message: str) -> str:
    # libxml2 appends ", line L, column C"; the error carries them as fields instead.
    head, sep, _ = message.rpartition(", line ")
    return head if sep else message
