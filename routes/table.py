"""The routing table from a declarative TOML file (`GOVBUS_ROUTES`).

    [departments.GAJ]
    name = "市公安局"

    [resources."GAJ-RK-001"]
    name = "户籍人口信息"
    provider = "GAJ"
    specification = "person"

    [[subscriptions]]
    resource = "GAJ-RK-001"
    subscriber = "MZJ"

Every mistake is found when the file is loaded, and the message names the entry to fix.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.errors import ConfigError
from bus.routing import Department, Resource, Route, RoutingTable
from schemas import SchemaSet

if TYPE_CHECKING:
    from bus.app import Context

_DEPARTMENT = re.compile(r"[A-Z0-9]{2,32}\Z")
_RESOURCE = re.compile(r"[A-Z0-9][A-Z0-9/\-]{1,63}\Z")
_KEYS = {
    "departments": {"name": True, "outbound": False, "settings": False},
    "resources": {"name": True, "provider": True, "specification": True},
    "subscriptions": {"resource": True, "subscriber": True},
}


def _section(origin: str, doc: dict[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        shape = "[[subscriptions]] entries (note the double brackets)" if kind is list else f"[{name}.CODE] tables"
        raise ConfigError(f"{origin}: '{name}' must be written as {shape}")
    return value


def _check_keys(where: str, entry: Any, kind: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {entry!r}")
    for key, value in entry.items():
        expected = dict if key == "settings" else str
        if not isinstance(value, expected):
            raise ConfigError(f"{where}: '{key}' must be a {'table' if expected is dict else 'string'}, got {value!r}")
    allowed = _KEYS[kind]
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
    for key, required in allowed.items():
        if required and not entry.get(key):
            raise ConfigError(f"{where}: missing '{key}'")
    return entry


def parse_table(text: str, origin: str = "routing table", schemas: SchemaSet | None = None) -> RoutingTable:
    """Compile the TOML text of a routing table.

    Raises:
        ConfigError: TOML syntax (with line and column), unknown or missing keys, malformed
            codes, unknown specifications, dangling references.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    for key in doc:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, list(_KEYS), n=1)
            hint = f"; did you mean [{close[0]}]?" if close else f"; allowed: {', '.join(_KEYS)}"
            raise ConfigError(f"{origin}: unknown section [{key}]{hint}")
    schemas = schemas or SchemaSet()
    known_specs = schemas.specifications()

    departments = []
    for code, entry in _section(origin, doc, "departments", dict).items():
        where = f"{origin}: [departments.{code}]"
        entry = _check_keys(where, entry, "departments")
        if not _DEPARTMENT.match(code):
            raise ConfigError(f"{where}: a department code is 2-32 of A-Z and 0-9")
        departments.append(
            Department(code, entry["name"], entry.get("outbound", "inbox"), {k: str(v) for k, v in entry.get("settings", {}).items()})
        )

    resources = []
    for code, entry in _section(origin, doc, "resources", dict).items():
        where = f'{origin}: [resources."{code}"]'
        entry = _check_keys(where, entry, "resources")
        if not _RESOURCE.match(code):
            raise ConfigError(f"{where}: a resource code is 2-64 of A-Z, 0-9, '-' and '/'")
        if entry["specification"] not in known_specs:
            raise ConfigError(
                f"{where}: no data specification '{entry['specification']}' (known: {', '.join(known_specs)})"
            )
        resources.append(Resource(code, entry["name"], entry["provider"], entry["specification"]))

    routes = []
    for number, entry in enumerate(_section(origin, doc, "subscriptions", list), 1):
        entry = _check_keys(f"{origin}: subscription #{number}", entry, "subscriptions")
        routes.append(Route(entry["resource"], entry["subscriber"]))

    try:
        return RoutingTable(departments, resources, routes)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc.message}") from None


class FileSource:
    """The `file` routing source: the TOML file that `GOVBUS_ROUTES` names."""

    def __init__(self, context: Context) -> None:
        self.path: Path | None = context.settings.routes
        self.schemas = context.schemas

    def version(self) -> int:
        """The file's modification time: saving it is a change."""
        try:
            return self.path.stat().st_mtime_ns if self.path else 0
        except OSError:
            return 0

    def load(self) -> RoutingTable:
        if self.path is None:
            raise ConfigError(
                "no routing table: set GOVBUS_ROUTES to a routing file (see examples/routes.toml)"
            )
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read routing table {self.path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"routing table {self.path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
        return parse_table(text, str(self.path), self.schemas)
