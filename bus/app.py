"""Composition: what a govbus process is made of, found through entry points.

`bus` may not import `routes`, `adapters` or any later package; they plug in here through
entry-point groups, and a wrong name fails when the process starts, with the names known:

- `govbus.stages`: stage factories, called with the `Context`;
- `govbus.adapters`: adapters to department systems; a department's outbound (how it takes
  deliveries) is one, called with (Department, Context);
- `govbus.routing`: where the routing table comes from, called with the Context;
- `govbus.commands`: extra CLI command groups;
- `govbus.http`: routes of the HTTP server, `install(app, context)`;
- `govbus.services`: platform services `govbus serve` runs beside the stages, `run(context, stop)`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from schemas import Registry, SafeParser, SchemaSet, ValidationError
from sqlalchemy import Engine

# The modules that define the bus's tables.
import bus.deadletter  # noqa: F401
import bus.deliver  # noqa: F401
from bus.broker import Broker
from bus.config import Settings
from bus.db import make_engine, migrate
from bus.dedup import Deduplicator
from bus.errors import ConfigError, TransientError
from bus.names import Names
from bus.routing import Department, RoutingSource, RoutingTable
from bus.stage import Stage
from bus.topology import Topology
from bus.worker import Worker

if TYPE_CHECKING:
    from bus.deliver import Outbound

log = logging.getLogger("govbus")

STAGES = ("ingress", "router", "deliver", "deadletter")


def plugins(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin(group: str, name: str, what: str) -> Any:
    """Load entry point `name` of `group`. Raises ConfigError naming the known ones."""
    found = plugins(group)
    if name not in found:
        known = ", ".join(sorted(found)) or "none (is govbus installed with pip?)"
        raise ConfigError(f"unknown {what} {name!r}; known: {known}")
    return found[name].load()


class Context:
    """What stages and outbounds are built from; one per process. The routing table is read
    when first needed, so that commands which do not route (dead letters, say) work without it."""

    def __init__(self, settings: Settings, engine: Engine, *, departments: Sequence[str] = ()) -> None:
        self.settings = settings
        self.names = Names(settings.prefix)
        self.engine = engine
        self.registry = Registry(engine, settings.data_dir / "xsd")
        self.schemas = SchemaSet(registry=self.registry)
        self.parser = SafeParser(settings.xml)
        self.departments = tuple(departments)
        self._outbounds: dict[str, Outbound] = {}

    @cached_property
    def routing_source(self) -> RoutingSource:
        """The catalogue (the `catalog` source), or the file GOVBUS_ROUTES names (`file`)."""
        name = "file" if self.settings.routes else "catalog"
        return plugin("govbus.routing", name, "routing source")(self)  # type: ignore[no-any-return]

    @cached_property
    def table(self) -> RoutingTable:
        """The routing table as loaded; `reload` reads it again."""
        return self.routing_source.load()

    def reload(self) -> RoutingTable:
        """Read the routing table again; outbounds of departments are rebuilt with it. If it
        cannot be read, the table in hand stays."""
        table = self.routing_source.load()
        self.__dict__["table"] = table
        self._outbounds.clear()
        return table

    def outbound(self, department: Department) -> Outbound:
        if department.code not in self._outbounds:
            factory = plugin("govbus.adapters", department.outbound, f"outbound for department {department.code}")
            if getattr(factory, "direction", "outbound") != "outbound":
                raise ConfigError(f"department {department.code}: {department.outbound} is an inbound adapter, not an outbound")
            outbound = factory(department, self)  # wrong settings raise ConfigError here, at start
            if hasattr(outbound, "start"):
                outbound = _Started(outbound, f"{department.outbound} outbound of {department.code}")
            self._outbounds[department.code] = outbound
        return self._outbounds[department.code]

    def stages(self, names: Sequence[str]) -> list[Stage]:
        return [plugin("govbus.stages", n, "stage")(self) for n in names]

    def declare(self, broker: Broker) -> list[str]:
        """Declare the whole topology on a connected broker; returns the queue names."""
        assert broker.connection is not None
        return Topology(broker.connection.default_channel, self.settings, self.names).everything(
            d.code for d in self.table.subscribers()
        )

    def worker(self, stage_names: Sequence[str]) -> Worker:
        """A worker for these stages, reloading them when the routing table changes."""

        def rebuild() -> list[Stage]:
            self.reload()
            return self.stages(stage_names)

        return Worker(self.settings, self.stages(stage_names), Deduplicator(self.engine), names=self.names,
                      rebuild=rebuild, version=self.routing_source.version)


class _Started:
    """An outbound adapter, started before its first delivery. A sink that cannot be reached
    when the process starts (a department's service or database down) must not stop the
    deliveries of every other department: its messages are retried, with the reason, until
    it starts (`govbus adapters check` shows such problems beforehand)."""

    def __init__(self, adapter: Any, what: str) -> None:
        self.adapter = adapter
        self.what = what
        self.started = False
        self._try_start()

    def _try_start(self) -> None:
        try:
            self.adapter.start()
            self.started = True
        except Exception as exc:
            log.error("%s cannot start: %s; its deliveries wait and are retried", self.what, exc)
            self.problem = f"{self.what} cannot start: {exc}"

    def deliver(self, envelopes: Sequence[Any]) -> list[BaseException | None]:
        if not self.started:
            self._try_start()
            if not self.started:
                raise TransientError(self.problem)
        return self.adapter.deliver(envelopes)  # type: ignore[no-any-return]

    def health(self) -> Any:
        if not self.started:
            self._try_start()
        if not self.started:
            return SimpleNamespace(ok=False, detail=self.problem)
        return self.adapter.health()

    def stop(self) -> None:
        if self.started:
            self.adapter.stop()

    def __getattr__(self, name: str) -> Any:  # the adapter's own attributes (its settings, say)
        return getattr(self.adapter, name)


def open_context(settings: Settings, *, departments: Sequence[str] = ()) -> Context:
    """Connect the database (creating tables), load the routing table and the schemas.

    Raises:
        ConfigError: anything that would stop the platform from working, with the fix.
    """
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        context = Context(settings, engine, departments=departments)
        context.registry.bootstrap()
    except ValidationError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot open the database {engine.url!r}: {exc}") from None
    return context
