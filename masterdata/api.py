"""The base libraries' REST API: read-only JSON under /api/v1/masterdata (OpenAPI at /docs).

Lookups, search, statistics, the applications' read models and the stewardship queues, the same
read models as `govbus masterdata ... --json` (masterdata.queries). Nothing here writes:
stewards resolve conflicts and change rules on the command line, where who acts is known.

Authentication. masterdata may not import the catalogue, whose users log in to the platform's
REST API. If the app offers an authenticator, `app.state.authenticate_basic(username,
password)` (installed by whoever owns the users; it returns who logged in, or a false value,
or raises an error its owner maps to a response), every route here requires HTTP Basic
credentials it accepts. Without one the routes are open, read-only, and reachable only where
the platform's HTTP server listens (127.0.0.1 by default: `govbus serve --host`); a warning
says so when the first request comes.

Errors are `{"error": code, "message": text}`: 401 (not logged in), 404 (no such person or
entity), 422 (an invalid identifier or parameter).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from masterdata.model import ENTITY, PERSON
from masterdata.queries import MAX_PAGE, Queries, QueryError, candidate_of, conflict_of, finding_of

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.http")

AUTHENTICATOR = "authenticate_basic"  # the app.state attribute of the optional authenticator
PREFIX = "/api/v1/masterdata"
_basic = HTTPBasic(auto_error=False, realm="govbus")

Kind = Literal["person", "entity"]
Status = Literal["open", "resolved", "all"]


class Unauthenticated(QueryError):
    code = "unauthenticated"
    status = 401


def install(app: FastAPI, context: Context) -> None:
    """Entry point of the `govbus.http` group: the base libraries' routes on the platform's app."""
    queries = Queries(context.engine)
    warned: list[bool] = []

    def reader(request: Request, credentials: HTTPBasicCredentials | None = Depends(_basic)) -> str | None:
        """Who reads: checked by the app's authenticator when it offers one (see the module)."""
        authenticate = getattr(request.app.state, AUTHENTICATOR, None)
        if authenticate is None:
            if not warned:
                warned.append(True)
                log.warning("the masterdata REST routes are not authenticated (no app.state.%s): they are read-only "
                            "and reachable wherever the HTTP server listens", AUTHENTICATOR)
            return None
        if credentials is None:
            raise Unauthenticated("log in: HTTP Basic with a platform user")
        who = authenticate(credentials.username, credentials.password)
        if not who:
            raise Unauthenticated("unknown user or wrong password")
        return str(who)

    @app.exception_handler(QueryError)
    async def refused(_request: Request, exc: QueryError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="govbus"'} if isinstance(exc, Unauthenticated) else None
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=headers)

    api = APIRouter(prefix=PREFIX, tags=["masterdata"], dependencies=[Depends(reader)])

    @api.get("/persons/{id_number}")
    def person(id_number: str) -> dict[str, Any]:
        """A person's golden record, with provenance per attribute and every department's value."""
        return queries.lookup(PERSON, id_number)

    @api.get("/persons/{id_number}/marriage")
    def marriage(id_number: str) -> dict[str, Any]:
        """Marital status as 民政 records it: value, source, date and changes (计生民政婚姻登记信息共享)."""
        return queries.marriage(id_number)

    @api.get("/entities/{credit_code}")
    def entity(credit_code: str) -> dict[str, Any]:
        """A legal entity's golden record, with provenance per attribute and every department's value."""
        return queries.lookup(ENTITY, credit_code)

    @api.get("/entities/{credit_code}/history")
    def history(credit_code: str, attribute: str = "Status") -> dict[str, Any]:
        """The changes of an attribute (default: status) as the departments recorded them (企业基础信息共享)."""
        return queries.history(ENTITY, credit_code, attribute)

    @api.get("/entities/{credit_code}/facts")
    def facts(credit_code: str) -> dict[str, Any]:
        """Every department's facts about a legal entity, side by side (综合治税)."""
        return queries.facts(credit_code)

    @api.get("/search")
    def search(name: str, kind: Kind = "person", page: int = Query(1, ge=1), size: int = Query(20, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        """Golden records whose name contains `name`, by name; one page."""
        return queries.search(name, kind, page, size)

    @api.get("/disagreements")
    def disagreements(kind: Kind = "entity", status: Status = "open", page: int = Query(1, ge=1),
                      size: int = Query(50, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        """The keys whose departments disagree (their conflicts), with attributes and departments."""
        return queries.disagreements(kind, None if status == "all" else status, page, size)

    @api.get("/statistics/population")
    def population(at: date | None = None) -> dict[str, Any]:
        """Persons by district, sex and age band on `at` (default: today in China)."""
        return queries.population(at)

    @api.get("/statistics/entities")
    def entities() -> dict[str, Any]:
        """Legal entities by status, type, district and year of establishment."""
        return queries.entities()

    @api.get("/statistics/departments")
    def departments() -> list[dict[str, Any]]:
        """Per department: invalid-identifier rate (of records) and conflict rate (of keys)."""
        return queries.departments()

    @api.get("/conflicts")
    def conflicts(kind: Kind | None = None, status: Status = "open",
                  limit: int = Query(200, ge=1, le=10000)) -> list[dict[str, Any]]:
        """Conflicts between trusted departments, oldest first."""
        return [conflict_of(c) for c in queries.store.conflicts(None if status == "all" else status, kind, limit=limit)]

    @api.get("/candidates")
    def candidates(kind: Kind | None = None, limit: int = Query(200, ge=1, le=10000)) -> list[dict[str, Any]]:
        """Records without a valid identifier, for review, with their possible matches."""
        return [candidate_of(c) for c in queries.store.candidates(kind, limit=limit)]

    @api.get("/findings")
    def findings(department: str | None = None, kind: Kind | None = None, code: str | None = None,
                 severity: Literal["invalid", "warning", "mismatch"] | None = None,
                 limit: int = Query(200, ge=1, le=10000)) -> list[dict[str, Any]]:
        """Data-quality findings, oldest first."""
        return [finding_of(f) for f in queries.store.findings(kind, department, code, severity, limit=limit)]

    @api.get("/rules")
    def rules() -> dict[str, Any]:
        """The survivorship rules in force, and every version used."""
        return queries.rules()

    app.include_router(api)
