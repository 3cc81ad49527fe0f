"""Errors raised while parsing and validating XML.

Every error is permanent (the same bytes fail the same way every time) and carries a stable
reason `code`, and where the parser or validator knows it, the XSD `rule`, `line` and `column`.
"""

from __future__ import annotations


class ValidationError(Exception):
    """A document that cannot be accepted as it is."""

    code = "invalid_xml"

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = ""
        if self.line:
            where = f" (line {self.line}" + (f", column {self.column}" if self.column else "") + ")"
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{self.message}{rule}{where}"


class MalformedXml(ValidationError):
    """Not well-formed XML."""

    code = "malformed_xml"


class ForbiddenXml(ValidationError):
    """Well-formed, but uses a construct the platform never accepts (DTDs, entities)."""

    code = "forbidden_xml"


class XmlTooLarge(ValidationError):
    code = "xml_too_large"


class XmlTooDeep(ValidationError):
    code = "xml_too_deep"


class SchemaViolation(ValidationError):
    """The document breaks a rule of its XSD."""

    code = "schema_violation"


class WrongNamespace(ValidationError):
    """The payload is not in the namespace of the resource's data specification."""

    code = "wrong_namespace"


class UnknownSpecification(ValidationError):
    code = "unknown_specification"


class UnknownVersion(ValidationError):
    code = "unknown_version"


class UnpublishedVersion(UnknownVersion):
    """The version is registered as a draft: not yet for messages."""

    code = "unpublished_version"


class InvalidSpecification(ValidationError):
    """An XSD the registry will not take: hostile, broken, or not a data specification."""

    code = "invalid_specification"


class Incompatible(ValidationError):
    """A new version breaks the compatibility mode of its specification."""

    code = "incompatible_version"

    def __init__(self, message: str, findings: list) -> None:  # type: ignore[type-arg]
        super().__init__(message)
        self.findings = findings
