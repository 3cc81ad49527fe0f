"""The routing table compiled from the catalogue: published resources and active subscriptions.

- Sender authorisation: a resource's provider alone may submit it.
- A recipient list per resource: its active subscriptions, each with the data items it was
  granted (the field mask) and its content filter.
- Default deny: no subscription, no delivery. Only resources of the platform's own domain
  with a specification are routed; those imported from other platforms are for discovery.

Two queries and one pass over their rows: 5,000 resources and 50,000 subscriptions compile
in well under a second (bench/catalog.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import select

from bus.routing import Department, Resource, Route, RoutingTable
from catalog_registry import tables as t
from catalog_registry.catalog import Catalog
from catalog_registry.resources import IN_FORCE
from catalog_registry.service import catalog_of

if TYPE_CHECKING:
    from bus.app import Context



def compile_table(catalog: Catalog) -> RoutingTable:
    """The routing table the catalogue holds now."""
    domain = catalog.domain
    with catalog.engine.connect() as conn:
        departments = conn.execute(
            select(t.department.c.id, t.department.c.code, t.department.c.name, t.department.c.outbound,
                   t.department.c.outbound_settings).where(t.department.c.domain == domain)).all()
        resources = conn.execute(
            select(t.resource.c.id, t.resource.c.code, t.resource.c.provider_id, t.revision.c.name,
                   t.revision.c.specification)
            .select_from(t.resource.join(t.revision, (t.revision.c.resource_id == t.resource.c.id)
                                         & (t.revision.c.number == t.resource.c.published_revision)))
            .where(t.resource.c.domain == domain, t.resource.c.status.in_(IN_FORCE),
                   t.revision.c.specification.is_not(None))).all()
        subscriptions = conn.execute(
            select(t.subscription.c.resource_id, t.subscription.c.subscriber_id, t.subscription.c["items"],
                   t.subscription.c["filter"]).where(t.subscription.c.status == "active")).all()
    # Rows unpacked as tuples: attribute access on 50,000 rows costs a third of the compile.
    code_of = {id_: code for id_, code, *_ in departments}
    routed = {id_: code for id_, code, *_ in resources}
    return RoutingTable(
        [Department(code, name, outbound, json.loads(settings or "{}")) for _, code, name, outbound, settings in departments],
        [Resource(code, name, code_of[provider_id], specification) for _, code, provider_id, name, specification in resources],
        [Route(routed[resource_id], code_of[subscriber_id], frozenset(json.loads(items)) if items else None, filter_ or None)
         for resource_id, subscriber_id, items, filter_ in subscriptions if resource_id in routed and subscriber_id in code_of],
    )


class CatalogSource:
    """The `catalog` routing source (the default)."""

    def __init__(self, context: Context) -> None:
        self.catalog = catalog_of(context)

    def load(self) -> RoutingTable:
        return compile_table(self.catalog)

    def version(self) -> int:
        return self.catalog.version()
