"""The catalogue's errors: each says what is wrong and, for a refusal, who may do it instead.

They map to HTTP statuses in the REST API and to exit codes in the CLI (2: the request itself
is wrong; 1: it was refused).
"""

from __future__ import annotations

from bus.errors import BusError


class CatalogError(BusError):
    code = "catalog_error"
    status = 400
    exit_code = 2


class Invalid(CatalogError):
    """The request is malformed: a missing field, an unknown value, a bad code."""

    code = "invalid"
    status = 422


class NotFound(CatalogError):
    code = "not_found"
    status = 404


class Forbidden(CatalogError):
    """The caller's role or department does not allow the action."""

    code = "forbidden"
    status = 403
    exit_code = 1


class Conflict(CatalogError):
    """The action does not fit the current state (e.g. approving what is not submitted)."""

    code = "conflict"
    status = 409
    exit_code = 1


class Unauthenticated(CatalogError):
    code = "unauthenticated"
    status = 401
