"""Views of the catalogue shared by the command line and the REST API."""

from __future__ import annotations

from catalog_registry.search import Document
from catalog_registry.service import Service


UNPUBLISHED = ("draft", "submitted")  # never published: for the provider and the platform admins only


def search_documents(service: Service) -> list[Document]:
    """One search document per resource of the platform's domain that is or was published,
    its data items' Chinese names among the text searched."""
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
