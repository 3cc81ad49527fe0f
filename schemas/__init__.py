"""Data specifications: the XSD files, their registry, and hardened XML parsing and validation.

This package imports nothing else of govbus; everything else may import it.
"""

from schemas.errors import (
    ForbiddenXml,
    MalformedXml,
    SchemaViolation,
    UnknownSpecification,
    UnknownVersion,
    ValidationError,
    WrongNamespace,
    XmlTooDeep,
    XmlTooLarge,
)
from schemas.parsing import SafeParser, XmlLimits
from schemas.registry import ENVELOPE_NS, SchemaSet, Validator

__all__ = [
    "ENVELOPE_NS",
    "ForbiddenXml",
    "MalformedXml",
    "SafeParser",
    "SchemaSet",
    "SchemaViolation",
    "UnknownSpecification",
    "UnknownVersion",
    "ValidationError",
    "Validator",
    "WrongNamespace",
    "XmlLimits",
    "XmlTooDeep",
    "XmlTooLarge",
]
