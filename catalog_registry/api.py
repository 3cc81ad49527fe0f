"""The catalogue's REST API (JSON under /api/v1; OpenAPI at /docs).

Every request but /health authenticates with HTTP Basic as a catalogue user, and every action
checks that user's role and department, as the command line does. Errors are
`{"error": code, "message": text}` with 401, 403, 404, 409 or 422.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from catalog_registry import views
from catalog_registry.auth import Actor
from catalog_registry.errors import CatalogError, Invalid, Unauthenticated
from catalog_registry.exchange import Exchange
from catalog_registry.search import SearchIndex
from catalog_registry.service import service_of

if TYPE_CHECKING:
    from bus.app import Context

_basic = HTTPBasic(auto_error=False)


class DepartmentIn(BaseModel):
    code: str
    name: str
    parent: str | None = None
    outbound: str = "inbox"
    outbound_settings: dict[str, str] = Field(default_factory=dict)


class DepartmentPatch(BaseModel):
    name: str | None = None
    outbound: str | None = None
    outbound_settings: dict[str, str] | None = None


class DomainIn(BaseModel):
    code: str
    name: str
    level: str
    parent: str | None = None


class UserIn(BaseModel):
    username: str
    display_name: str = ""
    role: str
    password: str
    department: str | None = None


class UserPatch(BaseModel):
    role: str | None = None
    active: bool | None = None
    password: str | None = None


class DirectoryIn(BaseModel):
    name: str
    catalogue: str
    department: str | None = None
    parent_id: int | None = None


class NameIn(BaseModel):
    name: str


class ThemeIn(BaseModel):
    code: str
    name: str
    description: str = ""


class ThemePatch(BaseModel):
    name: str | None = None
    description: str | None = None


class Metadata(BaseModel):
    """GB/T 21063.3 core metadata; see catalog_registry.resources for the allowed values."""

    classification: str | None = None
    name: str | None = None
    abstract: str | None = None
    format: str | None = None
    sharing_type: str | None = None
    sharing_conditions: str | None = None
    sharing_mode: str | None = None
    open_type: str | None = None
    open_conditions: str | None = None
    update_cycle: str | None = None
    publish_date: str | None = None
    related_codes: list[str] | None = None
    themes: list[str] | None = None
    specification: str | None = None
    specification_version: str | None = None


class ResourceIn(Metadata):
    provider: str
    directory_id: int
    code: str | None = None


class ResourcePatch(Metadata):
    directory_id: int | None = None


class Reason(BaseModel):
    reason: str = ""


class ApplicationIn(BaseModel):
    resource: str
    consumer: str
    purpose: str
    kind: str = "usage"
    items: list[str] | None = None
    filter: str | None = None


def install(app: FastAPI, context: Context) -> None:
    """Entry point of the `govbus.http` group: the catalogue's routes on the platform's app."""
    service = service_of(context)
    catalog, resources, applications = service.catalog, service.resources, service.applications
    exchange = Exchange(catalog, resources)
    index_lock = threading.Lock()
    index: dict[str, Any] = {"version": None, "index": None}

    def actor(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> Actor:
        if credentials is None:
            raise Unauthenticated("log in: HTTP Basic with a catalogue user")
        return catalog.authenticate(credentials.username, credentials.password)

    # Other packages' read routes (the base libraries') log in with the catalogue's users too.
    app.state.authenticate_basic = lambda username, password: catalog.authenticate(username, password).username

    def search_index() -> SearchIndex:
        version = catalog.listing_version()  # not moved by applications: they change no listing
        with index_lock:
            if index["version"] != version or index["index"] is None:
                index["index"], index["version"] = SearchIndex(views.search_documents(service)), version
            return index["index"]  # type: ignore[no-any-return]

    @app.exception_handler(CatalogError)
    async def catalog_error(_request: Request, exc: CatalogError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="govbus"'} if isinstance(exc, Unauthenticated) else None
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # one error shape for clients: a missing field is as invalid as a malformed code
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"error": Invalid.code, "message": problems}, status_code=Invalid.status)

    api = APIRouter(prefix="/api/v1", tags=["catalogue"])
    me = Depends(actor)

    @api.get("/me")
    def who(caller: Actor = me) -> dict[str, Any]:
        return {"username": caller.username, "role": caller.role, "department": caller.department_code}

    @api.get("/domains")
    def domains(caller: Actor = me) -> list[dict[str, Any]]:
        return catalog.domains()

    @api.post("/domains", status_code=201)
    def add_domain(body: DomainIn, caller: Actor = me) -> dict[str, Any]:
        return catalog.add_domain(caller, body.code, body.name, body.level, body.parent)

    @api.get("/departments")
    def departments(caller: Actor = me) -> list[dict[str, Any]]:
        return catalog.departments()

    @api.post("/departments", status_code=201)
    def add_department(body: DepartmentIn, caller: Actor = me) -> dict[str, Any]:
        return catalog.add_department(caller, body.code, body.name, body.parent, body.outbound, body.outbound_settings)

    @api.patch("/departments/{code}")
    def update_department(code: str, body: DepartmentPatch, caller: Actor = me) -> dict[str, Any]:
        return catalog.update_department(caller, code, name=body.name, outbound=body.outbound,
                                         outbound_settings=body.outbound_settings)

    @api.get("/users")
    def users(caller: Actor = me) -> list[dict[str, Any]]:
        return catalog.users(caller)

    @api.post("/users", status_code=201)
    def add_user(body: UserIn, caller: Actor = me) -> dict[str, Any]:
        return catalog.add_user(caller, body.username, body.display_name, body.role, body.password, body.department)

    @api.patch("/users/{username}", status_code=204)
    def set_user(username: str, body: UserPatch, caller: Actor = me) -> None:
        catalog.set_user(caller, username, role=body.role, active=body.active, password=body.password)

    @api.get("/directories")
    def directories(catalogue: str | None = None, department: str | None = None, caller: Actor = me) -> list[dict[str, Any]]:
        return catalog.directories(catalogue, department)

    @api.post("/directories", status_code=201)
    def add_directory(body: DirectoryIn, caller: Actor = me) -> dict[str, Any]:
        return catalog.add_directory(caller, body.name, kind=body.catalogue, department=body.department, parent_id=body.parent_id)

    @api.patch("/directories/{directory_id}")
    def rename_directory(directory_id: int, body: NameIn, caller: Actor = me) -> dict[str, Any]:
        return catalog.rename_directory(caller, directory_id, body.name)

    @api.delete("/directories/{directory_id}", status_code=204)
    def remove_directory(directory_id: int, caller: Actor = me) -> None:
        catalog.remove_directory(caller, directory_id)

    @api.get("/themes")
    def themes(caller: Actor = me) -> list[dict[str, Any]]:
        return catalog.themes()

    @api.post("/themes", status_code=201)
    def add_theme(body: ThemeIn, caller: Actor = me) -> dict[str, Any]:
        return catalog.add_theme(caller, body.code, body.name, body.description)

    @api.patch("/themes/{code}")
    def update_theme(code: str, body: ThemePatch, caller: Actor = me) -> dict[str, Any]:
        return catalog.update_theme(caller, code, body.name, body.description)

    @api.delete("/themes/{code}", status_code=204)
    def remove_theme(code: str, caller: Actor = me) -> None:
        catalog.remove_theme(caller, code)

    @api.get("/resources")
    def list_resources(provider: str | None = None, status: str | None = None, catalogue: str | None = None,
                       caller: Actor = me) -> list[dict[str, Any]]:
        return views.resources(service, caller, provider=provider, status=status, catalogue=catalogue)

    @api.get("/resources/{code:path}/history")
    def history(code: str, caller: Actor = me) -> list[dict[str, Any]]:
        return views.history(service, caller, code)

    @api.get("/resources/{code:path}")
    def get_resource(code: str, caller: Actor = me) -> dict[str, Any]:
        return views.resource(service, caller, code)

    @api.post("/resources", status_code=201)
    def create_resource(body: ResourceIn, caller: Actor = me) -> dict[str, Any]:
        values = body.model_dump(exclude={"provider", "directory_id", "code"}, exclude_none=True)
        return resources.create(caller, body.provider, body.directory_id, code=body.code, **values)

    @api.patch("/resources/{code:path}")
    def update_resource(code: str, body: ResourcePatch, caller: Actor = me) -> dict[str, Any]:
        values = body.model_dump(exclude={"directory_id"}, exclude_none=True)
        return resources.update(caller, code, directory_id=body.directory_id, **values)

    @api.post("/resources/{code:path}/revise")
    def revise(code: str, body: Metadata, caller: Actor = me) -> dict[str, Any]:
        return resources.revise(caller, code, **body.model_dump(exclude_none=True))

    @api.post("/resources/{code:path}/submit")
    def submit(code: str, body: Reason | None = None, caller: Actor = me) -> dict[str, Any]:
        return resources.submit(caller, code, body.reason if body else "")

    @api.post("/resources/{code:path}/approve")
    def approve(code: str, body: Reason | None = None, caller: Actor = me) -> dict[str, Any]:
        return resources.approve(caller, code, body.reason if body else "")

    @api.post("/resources/{code:path}/reject")
    def reject(code: str, body: Reason, caller: Actor = me) -> dict[str, Any]:
        return resources.reject(caller, code, body.reason)

    @api.post("/resources/{code:path}/deregister")
    def deregister(code: str, body: Reason, caller: Actor = me) -> dict[str, Any]:
        return resources.deregister(caller, code, body.reason)

    @api.get("/applications")
    def list_applications(status: str | None = None, consumer: str | None = None, provider: str | None = None,
                          overdue: bool = False, caller: Actor = me) -> list[dict[str, Any]]:
        return views.applications(service, caller, status=status, consumer=consumer, provider=provider, overdue=overdue)

    @api.get("/applications/{application_id}")
    def get_application(application_id: int, caller: Actor = me) -> dict[str, Any]:
        return views.application(service, caller, application_id)

    @api.post("/applications", status_code=201)
    def apply(body: ApplicationIn, caller: Actor = me) -> dict[str, Any]:
        return applications.apply(caller, body.resource, body.consumer, purpose=body.purpose, kind=body.kind,
                                  items=body.items, filter=body.filter)

    def decision(action: str) -> Callable[..., dict[str, Any]]:
        """The route of one decision on an application; the action is fixed by the URL alone."""
        method = getattr(applications, action)

        def decide(application_id: int, body: Reason | None = None, caller: Actor = me) -> dict[str, Any]:
            reason = body.reason if body else ""
            return method(caller, application_id) if action == "submit" else method(caller, application_id, reason)

        return decide

    for action in ("submit", "approve", "reject", "revoke"):
        api.add_api_route(f"/applications/{{application_id}}/{action}", decision(action), methods=["POST"],
                          name=f"application_{action}")

    @api.get("/subscriptions")
    def list_subscriptions(resource: str | None = None, subscriber: str | None = None, active: bool = True,
                           caller: Actor = me) -> list[dict[str, Any]]:
        return views.subscriptions(service, caller, resource=resource, subscriber=subscriber, active=active)

    @api.get("/search")
    def search(q: str = "", department: str | None = None, classification: str | None = None, theme: str | None = None,
               page: int = Query(1, ge=1), size: int = Query(20, ge=1, le=200), caller: Actor = me) -> dict[str, Any]:
        found = search_index().search(q, department=department, classification=classification, theme=theme, page=page, size=size)
        return {"total": found.total, "page": found.page, "size": found.size,
                "hits": [{"code": h.document.code, "name": h.document.name, "provider": h.document.provider,
                          "provider_name": h.document.provider_name, "classification": h.document.classification,
                          "score": h.score, "reason": h.reason} for h in found.hits]}

    @api.get("/export", response_class=Response)
    def export(domain: str | None = None, subscriptions: bool = False, caller: Actor = me) -> Response:
        return Response(views.export(service, caller, domain=domain, subscriptions=subscriptions), media_type="application/xml")

    @api.post("/import")
    async def import_(request: Request, caller: Actor = me) -> dict[str, Any]:
        return exchange.import_(caller, await request.body())

    app.include_router(api)
