"""Data specifications: the XSD files, their registry (versions, compatibility, data
dictionary), and hardened XML parsing and validation.

This package imports nothing else of govbus; everything else may import it.
"""

from schemas.errors import (
    ForbiddenXml,
    Incompatible,
    InvalidSpecification,
    MalformedXml,
    SchemaViolation,
    UnknownSpecification,
    UnknownVersion,
    UnpublishedVersion,
    ValidationError,
    WrongNamespace,
    XmlTooDeep,
    XmlTooLarge,
)
from schemas.parsing import SafeParser, XmlLimits
from schemas.registry import ENVELOPE_NS, Registry
from schemas.validation import SchemaSet, Validator

__all__ = [
    "ENVELOPE_NS",
    "ForbiddenXml",
    "Incompatible",
    "InvalidSpecification",
    "MalformedXml",
    "Registry",
    "SafeParser",
    "SchemaSet",
    "SchemaViolation",
    "UnknownSpecification",
    "UnknownVersion",
    "UnpublishedVersion",
    "ValidationError",
    "Validator",
    "WrongNamespace",
    "XmlLimits",
    "XmlTooDeep",
    "XmlTooLarge",
]
