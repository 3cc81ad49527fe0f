"""Finding adapter types, reading an adapters file, and running inbound adapters.

An adapters file (TOML) lists the inbound adapters and query responders a process runs, one `[[adapter]]` each:

    [[adapter]]
    name = "ga-frontdb"            # for logs and health; unique in the file
    type = "frontdb_in"            # an entry point of the group govbus.adapters
    department = "GA"              # whom it submits as
    [adapter.settings]
    url = "postgresql+psycopg://..."

Outbound adapters are not listed here: a department's outbound is part of the department in
the catalogue (`govbus catalog departments update MZ --outbound soap_push --setting ...`),
because the deliver stage of any worker must hand that department's messages the same way.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.app import plugin, plugins
from bus.errors import ConfigError
from bus.routing import Department

from adapters.base import INBOUND, OUTBOUND, RESPONDER, Adapter
from adapters.submit import Submitter

if TYPE_CHECKING:
    from bus.app import Context

GROUP = "govbus.adapters"
log = logging.getLogger("govbus.adapters")


def adapter_types() -> dict[str, type]:
    """Every installed adapter type by name. A type that fails to import is reported, not hidden.

    Raises:
        ConfigError: an installed plugin cannot be imported.
    """
    found = {}
    for name, entry in sorted(plugins(GROUP).items()):
        try:
            found[name] = entry.load()
        except Exception as exc:
            raise ConfigError(f"adapter type {name} ({entry.value}) cannot be loaded: {type(exc).__name__}: {exc}") from None
    return found


def direction_of(kind: type) -> str:
    # The bus's own `inbox` outbound is not an Adapter subclass (bus may not import adapters).
    return getattr(kind, "direction", OUTBOUND)


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """One `[[adapter]]` of an adapters file."""

    name: str
    type: str
    department: str
    settings: Mapping[str, Any] = field(default_factory=dict)


def read_config(path: Path) -> list[AdapterSpec]:
    """The adapters an adapters file lists.

    Raises:
        ConfigError: unreadable, not TOML, or an entry without name, type or department;
            the message names the file and the entry.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read adapters file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"adapter"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r}; each adapter is an [[adapter]] table")
    entries = data.get("adapter", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[adapter]] entries")
    specs: list[AdapterSpec] = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: adapter {i}"
        missing = [k for k in ("name", "type", "department") if not isinstance(entry.get(k), str) or not entry[k]]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)} (each [[adapter]] has name, type and department)")
        extra = sorted(set(entry) - {"name", "type", "department", "settings"})
        if extra:
            raise ConfigError(f"{where} ({entry['name']}): unknown key {extra[0]!r}; settings go under [adapter.settings]")
        settings = entry.get("settings", {})
        if not isinstance(settings, dict):
            raise ConfigError(f"{where} ({entry['name']}): settings must be a table, [adapter.settings]")
        if any(s.name == entry["name"] for s in specs):
            raise ConfigError(f"{where}: the name {entry['name']!r} is used twice")
        specs.append(AdapterSpec(entry["name"], entry["type"], entry["department"], settings))
    return specs


def build(spec: AdapterSpec, context: Context) -> Adapter:
    """The adapter of one entry, with its settings checked.

    Raises:
        ConfigError: unknown type, an outbound type, a department the routing table does not
            know, or wrong settings.
    """
    kind = plugin(GROUP, spec.type, f"adapter type (adapter {spec.name})")
    if direction_of(kind) not in (INBOUND, RESPONDER):
        raise ConfigError(
            f"adapter {spec.name}: {spec.type} is an outbound adapter; set it on the department instead: "
            f"govbus catalog departments update {spec.department} --outbound {spec.type} --setting KEY=VALUE ..."
        )
    if spec.department not in context.table.departments:
        known = ", ".join(sorted(context.table.departments)) or "none"
        raise ConfigError(f"adapter {spec.name}: unknown department {spec.department} (known: {known})")
    name = context.table.departments[spec.department].name
    department = Department(spec.department, name, spec.type, dict(spec.settings))
    return kind(department, context, name=spec.name)  # type: ignore[no-any-return]


def check_outbounds(context: Context) -> list[tuple[str, str, str | None]]:
    """(department, outbound type, problem or None) for every subscriber in the routing table."""
    results = []
    for department in context.table.subscribers():
        try:
            outbound = context.outbound(department)
        except ConfigError as exc:
            results.append((department.code, department.outbound, exc.message))
            continue
        # an outbound that cannot start yet does not stop a worker, but the check says so
        results.append((department.code, department.outbound, None if getattr(outbound, "started", True) else outbound.problem))
    return results


def run_inbound(adapters: Sequence[Adapter], context: Context, stop: threading.Event) -> None:
    """Start every inbound adapter and responder, run each in its own thread until `stop`,
    then stop them all.

    Raises:
        ConfigError: an adapter could not start (the ones started are stopped again).
    """
    submitter = Submitter(context)
    started: list[Adapter] = []
    try:
        for adapter in adapters:
            adapter.submitter = submitter  # type: ignore[attr-defined]
            try:
                adapter.start()
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"adapter {adapter.name} cannot start: {type(exc).__name__}: {exc}") from None
            finally:
                started.append(adapter)
        threads = [threading.Thread(target=a.run, args=(stop,), name=f"adapter-{a.name}", daemon=True)  # type: ignore[attr-defined]
                   for a in adapters]
        for thread in threads:
            thread.start()
        log.info("adapters running: %s", ", ".join(a.name for a in adapters))
        stop.wait()
        for thread in threads:
            thread.join(30)
    finally:
        for adapter in started:
            try:
                adapter.stop()
            except Exception as exc:  # stopping the others matters more
                log.warning("adapter %s did not stop cleanly: %s", adapter.name, exc)
        submitter.close()
