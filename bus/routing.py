"""What the bus asks of a routing table, and the compiled table itself.

A `RoutingTable` is plain, immutable data: which resources exist and who provides them, which
departments receive what, and how each department takes its deliveries. A `RoutingSource`
produces one: today from a declarative file (`routes.FileSource`), later from the catalogue.
The ingress stage asks it who may send; the router asks it who receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from bus.errors import ConfigError, NotAuthorized, UnknownResource


@dataclass(frozen=True, slots=True)
class Department:
    """A department on the bus. `outbound` names how it takes deliveries (an entry point of
    the `govbus.adapters` group, `inbox` by default) and `settings` configure that."""

    code: str
    name: str
    outbound: str = "inbox"
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resource:
    """An information resource: its provider alone may submit it, and its messages must
    follow the named data specification (in the version each message's header names)."""

    code: str
    name: str
    provider: str
    specification: str


@dataclass(frozen=True, slots=True)
class Route:
    """One recipient of one resource: compiled from an active subscription.

    `items`: the data item paths (e.g. /Person/Name) the subscriber may receive; None for all.
    `filter`: an XPath 1.0 expression over the payload (its namespace bound to the prefix
    `r`); only messages for which it is true are delivered. None for all.
    """

    resource: str
    subscriber: str
    items: frozenset[str] | None = None
    filter: str | None = None


class RoutingTable:
    """Resources, departments and routes, checked for consistency once, then only read.

    Raises:
        ConfigError: a resource whose provider is not a department, or a route to an unknown
            resource or department; the message says which entry to fix.
    """

    def __init__(
        self,
        departments: Iterable[Department],
        resources: Iterable[Resource],
        routes: Iterable[Route],
    ) -> None:
        self.departments: Mapping[str, Department] = MappingProxyType({d.code: d for d in departments})
        self.resources: Mapping[str, Resource] = MappingProxyType({r.code: r for r in resources})
        by_resource: dict[str, dict[str, Route]] = {}
        for resource in self.resources.values():
            if resource.provider not in self.departments:
                raise ConfigError(
                    f"resource {resource.code}: provider {resource.provider} is not a declared department"
                )
        for route in routes:
            if route.resource not in self.resources:
                raise ConfigError(f"subscription of {route.subscriber} to unknown resource {route.resource}")
            if route.subscriber not in self.departments:
                raise ConfigError(
                    f"subscription to {route.resource}: subscriber {route.subscriber} is not a declared department"
                )
            by_resource.setdefault(route.resource, {}).setdefault(route.subscriber, route)  # one per subscriber
        self._routes = {code: tuple(rs.values()) for code, rs in by_resource.items()}

    def authorise(self, sender: str, resource: str) -> Resource:
        """The resource, if `sender` may submit it.

        Raises:
            UnknownResource: no such resource.
            NotAuthorized: `sender` is not its provider.
        """
        found = self.resources.get(resource)
        if found is None:
            raise UnknownResource(f"no information resource with code {resource}")
        if found.provider != sender:
            raise NotAuthorized(
                f"department {sender} may not submit resource {resource} ({found.name}): "
                f"its provider is {found.provider}"
            )
        return found

    def routes(self, resource: str) -> tuple[Route, ...]:
        """Every recipient of `resource`; empty when nobody subscribes (default deny)."""
        return self._routes.get(resource, ())

    def subscribers(self) -> list[Department]:
        """Departments that receive at least one resource, by code."""
        codes = {r.subscriber for rs in self._routes.values() for r in rs}
        return [self.departments[c] for c in sorted(codes)]


class RoutingSource(Protocol):
    """Where a process gets its routing table from; built from the process's Context."""

    def load(self) -> RoutingTable:
        """Read and compile the table. Raises ConfigError when it cannot be used."""
        ...

    def version(self) -> int:
        """Changes so far; a different number means `load` would give another table."""
        ...
