"""The catalogue as one process uses it: built from the process's Context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bus.control import announce

from catalog_registry.applications import Applications
from catalog_registry.catalog import Catalog
from catalog_registry.resources import Resources

if TYPE_CHECKING:
    from bus.app import Context


@dataclass(frozen=True)
class Service:
    catalog: Catalog
    resources: Resources
    applications: Applications


def catalog_of(context: Context) -> Catalog:
    """The catalogue of the context's database and domain; changes are announced to workers."""
    settings = context.settings
    catalog = Catalog(context.engine, settings.domain, context.registry,
                      notify=lambda version: announce(settings, version), domain_name=settings.domain_name)
    catalog.ensure_domain()
    return catalog


def service_of(context: Context) -> Service:
    catalog = catalog_of(context)
    resources = Resources(catalog)
    return Service(catalog, resources, Applications(catalog, resources))


def import_for_demo(context: Context, data: bytes) -> dict[str, dict[str, int]]:
    """Entry point of `govbus.demo`: import the sample catalogue as the platform would."""
    from catalog_registry.auth import PLATFORM_ADMIN, Actor
    from catalog_registry.exchange import Exchange

    service = service_of(context)
    return Exchange(service.catalog, service.resources).import_(Actor("demo", PLATFORM_ADMIN, None, None), data)
