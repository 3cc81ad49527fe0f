"""The truth of a synthetic data set: what the five generated extracts must produce in the base
libraries. `generate.py` writes it as truth.json beside the CSV files; `Truth.load(directory)` reads
it back, and `Truth.golden(kind)` the golden CSV. Field meanings are in the README.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masterdata.model import ENTITY, KEY_OF, PERSON


@dataclass(frozen=True)
class Extract:
    """One department's CSV file: its columns, how many records it has and whom it covers."""
    department: str
    kind: str
    file: str
    columns: tuple[str, ...]
    records: int
    covers: str


@dataclass(frozen=True)
class Conflict:
    """A (key, attribute) on which the departments holding the key disagree; `values` has every
    holder's value, `planted_by` is the department given a different value (`change` says how)."""
    kind: str
    key: str
    attribute: str
    values: dict[str, str]
    planted_by: str
    change: str

    @property
    def departments(self) -> tuple[str, ...]:
        return tuple(self.values)


@dataclass(frozen=True)
class InvalidIdentifier:
    """A record whose key is invalid: `reason` is among check_*(...).reasons; `true_key` is whom it means."""
    kind: str
    department: str
    source_record_id: str
    value: str
    reason: str
    true_key: str


@dataclass(frozen=True)
class Anomaly:
    """A credit code with a non-conforming check character: valid, with code_nonconforming_check_character."""
    code: str
    organization_code: str
    departments: tuple[str, ...]


@dataclass(frozen=True)
class IdMismatch:
    """A department's field that disagrees with what the (valid) identity number says."""
    department: str
    key: str
    attribute: str
    value: str
    from_identifier: str


@dataclass
class Truth:
    """What the generated extracts must produce; `golden(kind)` reads the golden CSV back."""
    out: Path
    parameters: dict[str, Any]
    extracts: dict[str, Extract]
    ranks: dict[str, dict[str, tuple[str, ...]]]
    conflicts: list[Conflict] = field(default_factory=list)
    invalid_identifiers: list[InvalidIdentifier] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    id_mismatches: list[IdMismatch] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    golden_files: dict[str, str] = field(default_factory=lambda: {k: f"golden-{k}.csv" for k in (PERSON, ENTITY)})

    def path(self, department: str) -> Path:
        """The CSV file of a department's extract."""
        return self.out / self.extracts[department].file

    def golden(self, kind: str) -> dict[str, dict[str, str]]:
        """Valid key -> {attribute: golden value} (attributes without a value left out)."""
        with open(self.out / self.golden_files[kind], encoding="utf-8", newline="") as f:
            return {row.pop(KEY_OF[kind]): {a: v for a, v in row.items() if v and a != "Departments"}
                    for row in csv.DictReader(f)}

    def holders(self, kind: str) -> dict[str, tuple[str, ...]]:
        """Valid key -> the departments holding a record with it."""
        with open(self.out / self.golden_files[kind], encoding="utf-8", newline="") as f:
            return {row[KEY_OF[kind]]: tuple(row["Departments"].split("|")) for row in csv.DictReader(f)}

    def to_json(self) -> dict[str, Any]:
        """The truth as JSON-ready data (what truth.json holds); shallow, so cheap for large runs."""
        return {
            "parameters": self.parameters,
            "extracts": {d: {k: v for k, v in vars(e).items() if k != "department"} for d, e in self.extracts.items()},
            "ranks": self.ranks, "golden_files": self.golden_files,
            **{name: [vars(item) for item in getattr(self, name)]
               for name in ("conflicts", "invalid_identifiers", "anomalies", "id_mismatches")},
            "statistics": self.statistics,
        }

    def write(self) -> Path:
        """Write truth.json into `out`; return its path."""
        path = self.out / "truth.json"
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, out: str | Path) -> Truth:
        """The truth written by `generate` into `out` (its truth.json)."""
        data = json.loads((Path(out) / "truth.json").read_text(encoding="utf-8"))
        return cls(
            Path(out), data["parameters"],
            {d: Extract(d, **{**e, "columns": tuple(e["columns"])}) for d, e in data["extracts"].items()},
            {k: {a: tuple(r) for a, r in v.items()} for k, v in data["ranks"].items()},
            [Conflict(**c) for c in data["conflicts"]],
            [InvalidIdentifier(**i) for i in data["invalid_identifiers"]],
            [Anomaly(**{**a, "departments": tuple(a["departments"])}) for a in data["anomalies"]],
            [IdMismatch(**m) for m in data["id_mismatches"]], data["statistics"], data["golden_files"])
