"""Reading the catalogue, as the command line and the REST API both do: who sees what.

Published metadata is for every catalogue user; drafts, reviews and a resource's history are
for its provider and the platform admins; an application or a subscription is for the two
departments it concerns and the platform admins. What a caller may not see does not exist for
them (NotFound), except a published resource's history, which is refused (Forbidden).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from catalog_registry.auth import Actor, require_platform_admin, sees
from catalog_registry.errors import Forbidden, NotFound
from catalog_registry.exchange import Exchange
from catalog_registry.service import Service

if TYPE_CHECKING:
    from catalog_registry.search import Document

UNPUBLISHED = ("draft", "submitted")  # never published: for the provider and the platform admins only


def resource(service: Service, actor: Actor, code: str) -> dict[str, Any]:
    found = service.resources.get(code)
    if sees(actor, found["provider"]):
        return found
    if found["status"] in UNPUBLISHED:
        raise NotFound(f"no information resource {code}")  # as if absent: drafts are not announced
    return {**found, "pending": None}


def resources(service: Service, actor: Actor, **filters: Any) -> list[dict[str, Any]]:
    return [r for r in service.resources.list(**filters) if r["status"] not in UNPUBLISHED or sees(actor, r["provider"])]


def history(service: Service, actor: Actor, code: str) -> list[dict[str, Any]]:
    provider = resource(service, actor, code)["provider"]
    if not sees(actor, provider):
        raise Forbidden(f"the history of {code} is for {provider} and the platform admins")
    return service.resources.history(code)


def applications(service: Service, actor: Actor, **filters: Any) -> list[dict[str, Any]]:
    return [a for a in service.applications.list(**filters) if sees(actor, a["consumer"], a["provider"])]


def application(service: Service, actor: Actor, application_id: int) -> dict[str, Any]:
    found = service.applications.get(application_id)
    if not sees(actor, found["consumer"], found["provider"]):
        raise NotFound(f"no application {application_id}")
    return {**found, "history": service.applications.history(application_id)}


def subscriptions(service: Service, actor: Actor, **filters: Any) -> list[dict[str, Any]]:
    return [s for s in service.applications.subscriptions(**filters) if sees(actor, s["subscriber"], s["provider"])]


def export(service: Service, actor: Actor, *, domain: str | None = None, subscriptions: bool = False) -> bytes:
    """The catalogue as XML for the provincial platform: docking is the platform admins' task,
    and the file holds every department's drafts and subscriptions."""
    require_platform_admin(actor, "export the catalogue")
    return Exchange(service.catalog, service.resources).export(domain=domain, subscriptions=subscriptions)


def search_documents(service: Service) -> list[Document]:
    """One search document per resource of the platform's domain that is or was published,
    its data items' Chinese names among the text searched."""
    from catalog_registry.search import Document  # with pypinyin: loaded by the commands that search

    names = {d["code"]: d["name"] for d in service.catalog.departments()}
    documents = []
    for row in service.resources.list():
        if row["status"] in UNPUBLISHED:
            continue  # not published yet: not for discovery
        items = service.resources.items(row["specification"], row["specification_version"])
        documents.append(Document(
            key=row["code"], code=row["code"], name=row["name"], provider=row["provider"],
            provider_name=names.get(row["provider"], ""), classification=row["classification"],
            themes=tuple(row["themes"]),
            text=" ".join([row["abstract"], names.get(row["provider"], ""), *(i["label"] or "" for i in items)]),
        ))
    return documents
