"""Survivorship rules: per kind and attribute, which departments are trusted and in what order.

The rules live in a TOML file that data stewards read and edit (masterdata/rules.toml is the
default): a `version`, then one table per kind (`[person]`, `[entity]`) mapping an attribute to
its ranked departments. An entry is a department code, or a list of codes that share a rank:

    version = "2025.2"
    [entity]
    TaxStatus = [["GSW", "DSW"]]      # tied first: the more recent value wins
    Name = ["GS", ["GSW", "DSW"], "ZJ"]

A ranked department is *trusted* for that attribute: trusted departments that disagree make a
conflict. Departments not listed share one rank after every listed one. The golden value of an
attribute is the current value of the department with the best rank, then the most recent
source time, then the lowest department code (masterdata.golden).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.errors import ConfigError
from masterdata.model import ATTRIBUTES, KINDS

DEFAULT_RULES = Path(__file__).resolve().parent / "rules.toml"
_DEPARTMENT = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}")

Tiers = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Ranking:
    """One attribute's ranking: `rank(department)` (0 is best) and the trusted departments."""

    tiers: Tiers
    by_department: Mapping[str, int]
    trusted: frozenset[str]
    unranked: int  # the rank every department not listed shares: after all the listed ones

    def rank(self, department: str) -> int:
        return self.by_department.get(department, self.unranked)


UNRANKED = Ranking((), {}, frozenset(), 0)  # an attribute no department is ranked for


@dataclass(frozen=True)
class Rules:
    """A version of the survivorship rules. `tiers[kind][attribute]` lists the ranks, best first,
    each a tuple of departments sharing it. Build with `load_rules` or `parse_rules`."""

    version: str
    tiers: Mapping[str, Mapping[str, Tiers]]
    _rankings: dict[str, dict[str, Ranking]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for kind, attributes in self.tiers.items():
            self._rankings[kind] = {
                attribute: Ranking(tiers, {d: i for i, tier in enumerate(tiers) for d in tier},
                                   frozenset(d for tier in tiers for d in tier), len(tiers))
                for attribute, tiers in attributes.items()
            }

    def ranking(self, kind: str, attribute: str) -> Ranking:
        """The ranking of `attribute` of `kind` (an empty one when no department is listed)."""
        return self._rankings.get(kind, {}).get(attribute, UNRANKED)

    def rankings(self, kind: str) -> Mapping[str, Ranking]:
        """attribute -> Ranking, for the attributes of `kind` that have ranked departments."""
        return self._rankings.get(kind, {})

    def rank(self, kind: str, attribute: str, department: str) -> int:
        """0 for the best rank; every department not listed gets the rank after all listed ones."""
        return self.ranking(kind, attribute).rank(department)

    def trusted(self, kind: str, attribute: str) -> frozenset[str]:
        """The departments ranked for this attribute: their disagreements are conflicts."""
        return self.ranking(kind, attribute).trusted

    def to_json(self) -> str:
        """The rules as canonical JSON (how the store keeps every version it has used)."""
        return json.dumps({"version": self.version,
                           "tiers": {k: {a: [list(t) for t in tiers] for a, tiers in sorted(attrs.items())}
                                     for k, attrs in sorted(self.tiers.items())}},
                          ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Rules:
        data = json.loads(text)
        return cls(data["version"], {k: {a: tuple(tuple(t) for t in tiers) for a, tiers in attrs.items()}
                                     for k, attrs in data["tiers"].items()})


def load_rules(path: str | Path | None = None) -> Rules:
    """Read a rules file (default: the packaged masterdata/rules.toml).

    Raises:
        ConfigError: the file is missing, not TOML, or not valid rules (the message says where).
    """
    path = Path(path) if path is not None else DEFAULT_RULES
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the survivorship rules {path}: {exc.strerror}") from None
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "<rules>") -> Rules:
    """Parse rules TOML text.

    Raises:
        ConfigError: not TOML, no `version`, an unknown kind or attribute, a malformed department
            code, or a department listed twice for one attribute; the message names the place.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc}); fix the file") from None
    version = data.pop("version", None)
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ConfigError(f'{source}: give the rules a `version` (e.g. version = "2025.1"; letters, digits, '
                          f"'.', '_', '-', at most 32), and change it whenever the rules change")
    tiers: dict[str, dict[str, Tiers]] = {}
    for kind, table in data.items():
        if kind not in KINDS:
            raise ConfigError(f"{source}: unknown kind [{kind}]; the kinds are {', '.join(KINDS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{kind}] must be a table of attribute = [departments]")
        tiers[kind] = {}
        for attribute, entries in table.items():
            where = f"{source}: {kind}.{attribute}"
            if attribute not in ATTRIBUTES[kind]:
                raise ConfigError(f"{where}: unknown attribute; the attributes of {kind} are "
                                  f"{', '.join(ATTRIBUTES[kind])}")
            tiers[kind][attribute] = _tiers(where, entries)
    return Rules(version, tiers)


def _tiers(where: str, entries: Any) -> Tiers:
    if not isinstance(entries, list):
        raise ConfigError(f'{where}: expected a list of department codes, e.g. ["GA", "MZ"]')
    seen: set[str] = set()
    result = []
    for entry in entries:
        tier = entry if isinstance(entry, list) else [entry]
        if not tier:
            raise ConfigError(f"{where}: an empty [] rank; remove it")
        for department in tier:
            if not isinstance(department, str) or not _DEPARTMENT.fullmatch(department):
                raise ConfigError(f"{where}: {department!r} is not a department code (upper-case, as in the catalogue)")
            if department in seen:
                raise ConfigError(f"{where}: {department} is listed twice; list each department once")
            seen.add(department)
        result.append(tuple(tier))
    return tuple(result)
