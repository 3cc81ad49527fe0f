"""Reading the base libraries: golden records with provenance, conflicts, candidates, findings.

Mixed into masterdata.store.MasterData; every method here only reads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, Integer, String, and_, any_, bindparam, func, null, or_, select
from sqlalchemy.dialects import postgresql

from masterdata import tables as t
from masterdata.golden import STEWARD, Assertion, Decision, settle
from masterdata.identifiers import check_credit_code, check_id_number, normalize
from masterdata.model import ATTRIBUTES, ENTITY, PERSON
from masterdata.rules import Rules, load_rules

KEY_COLUMN = {PERSON: "id_number", ENTITY: "credit_code"}
_CHUNK = 5000  # keys per read: well under SQLite's 32,766 bound parameters


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value came from: one department's record, as stored (md_assertion)."""

    department: str
    source_record_id: str
    source_time: datetime
    message_id: str
    position: int
    received_at: datetime
    assertion_id: int


@dataclass(frozen=True, slots=True)
class DepartmentValue:
    """One department's current value of an attribute; `counted` is False when a steward marked
    the department wrong for it."""

    department: str
    value: str
    source: Source
    counted: bool = True


@dataclass(frozen=True, slots=True)
class GoldenValue:
    """The golden value of one attribute: from `source`, or chosen by a steward (`decision_id`);
    `departments` holds every department's current value, in survivorship order."""

    attribute: str
    value: str
    source: Source | None
    decision_id: int | None
    departments: tuple[DepartmentValue, ...]


@dataclass(frozen=True, slots=True)
class Golden:
    """A golden record: `values` by attribute, and per attribute its provenance (`attributes`)."""

    kind: str
    key: str
    rules_version: str
    created_at: datetime
    updated_at: datetime
    attributes: Mapping[str, GoldenValue]

    @property
    def values(self) -> dict[str, str]:
        return {a: v.value for a, v in self.attributes.items()}

    def __getitem__(self, attribute: str) -> str:
        return self.attributes[attribute].value

    def get(self, attribute: str, default: str | None = None) -> str | None:
        found = self.attributes.get(attribute)
        return found.value if found is not None else default


@dataclass(frozen=True, slots=True)
class ConflictValue:
    department: str
    value: str
    source: Source


@dataclass(frozen=True, slots=True)
class Conflict:
    """Trusted departments disagreeing on one attribute of one key, and how it was resolved."""

    id: int
    kind: str
    key: str
    attribute: str
    status: str  # open, resolved
    values: tuple[ConflictValue, ...]  # by department
    opened_at: datetime
    updated_at: datetime
    resolution: str | None = None  # chosen, department_wrong, agreed (the departments came to agree)
    resolved_value: str | None = None
    wrong_department: str | None = None
    decision_id: int | None = None
    resolved_by: str | None = None
    reason: str | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record without a valid key, kept for review with the golden records it may be
    (`matches`: same name, and the same birth date, sex and division where it gives them)."""

    id: int
    kind: str
    department: str
    given_key: str | None
    reasons: tuple[str, ...]
    values: Mapping[str, str]
    source: Source
    status: str
    created_at: datetime
    matches: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """A data-quality finding about one record (md_finding)."""

    id: int
    kind: str
    department: str
    key: str | None
    code: str
    severity: str  # invalid, warning, mismatch
    attribute: str | None
    value: str | None
    expected: str | None
    source: Source
    found_at: datetime


class Views:
    """The read side of MasterData."""

    engine: Engine
    _pg: bool

    def person(self, id_number: str) -> Golden | None:
        """The golden record of a person (15- or 18-digit, full-width accepted), or None."""
        check = check_id_number(id_number)
        return self._golden(PERSON, check.value if check.valid else normalize(id_number))

    def entity(self, credit_code: str) -> Golden | None:
        """The golden record of a legal entity by its unified social credit code, or None."""
        check = check_credit_code(credit_code)
        return self._golden(ENTITY, check.value if check.valid else normalize(credit_code))

    def _golden(self, kind: str, key: str | None) -> Golden | None:
        """The stored golden record with its provenance, and every department's current value
        (masterdata.golden.settle over the key's assertions, as the store computed it)."""
        if not key:
            return None
        golden = t.GOLDEN[kind]
        with self.engine.connect() as conn:
            row = conn.execute(select(golden).where(golden.c[KEY_COLUMN[kind]] == key)).mappings().first()
            if row is None:
                return None
            assertions = self._assertions(conn, kind, [key], detail=True).get(key, [])
            decisions = self._decisions(conn, kind, [key]).get(key, [])
            rules = self._stored_rules(conn)
        current = settle(kind, assertions, decisions, rules, detail=True).current or {}
        by_id = {a.id: a for a in assertions}
        sources = json.loads(row["sources"])
        attributes = {}
        for attribute in ATTRIBUTES[kind]:
            value = row[t.column_of(attribute)]
            if value is None:
                continue
            department, ref = sources[attribute][:2]
            won = by_id.get(ref) if department != STEWARD else None
            attributes[attribute] = GoldenValue(
                attribute, value, _source(won) if won is not None else None, ref if department == STEWARD else None,
                tuple(DepartmentValue(c.department, c.value, _source(c.assertion), c.counted)
                      for c in current.get(attribute, ())))
        return Golden(kind, key, row["rules_version"], row["created_at"], row["updated_at"], attributes)

    def conflicts(self, status: str | None = "open", kind: str | None = None, key: str | None = None,
                  limit: int | None = None) -> list[Conflict]:
        """Conflicts, oldest first: open ones by default (status=None: all)."""
        c = t.conflict.c
        query = select(t.conflict).order_by(c.id).limit(limit)
        if status is not None:
            query = query.where(c.status == status)
        if kind is not None:
            query = query.where(c.kind == kind)
        if key is not None:
            query = query.where(c.key == key)
        with self.engine.connect() as conn:
            heads = conn.execute(query).all()
            values: dict[int, list[ConflictValue]] = defaultdict(list)
            ids = [h.id for h in heads]
            a, v = t.assertion.c, t.conflict_value.c
            for chunk in chunks(ids):
                rows = conn.execute(select(v.conflict_id, v.department, v.value, *_SOURCE_COLUMNS)
                                    .join(t.assertion, a.id == v.assertion_id)
                                    .where(self._among(v.conflict_id, chunk)).order_by(v.conflict_id, v.department))
                for row in rows:
                    values[row.conflict_id].append(ConflictValue(row.department, row.value, _source(row)))
        return [Conflict(h.id, h.kind, h.key, h.attribute, h.status, tuple(values[h.id]), h.opened_at, h.updated_at,
                         h.resolution, h.resolved_value, h.wrong_department, h.decision_id, h.resolved_by, h.reason,
                         h.resolved_at) for h in heads]

    def conflict(self, conflict_id: int) -> Conflict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.conflict.c.kind, t.conflict.c.key).where(t.conflict.c.id == conflict_id)).first()
        if row is None:
            return None
        return next((c for c in self.conflicts(None, row.kind, row.key) if c.id == conflict_id), None)

    def candidates(self, kind: str | None = None, status: str | None = "open", limit: int | None = None) -> list[Candidate]:
        """Records without a valid key, oldest first, each with its possible golden matches."""
        c, a = t.candidate.c, t.assertion.c
        query = (select(c.id, c.kind, c.reasons, c.status, c.created_at, a.given_key, a.attributes, *_SOURCE_COLUMNS)
                 .join(t.assertion, a.id == c.assertion_id).order_by(c.id).limit(limit))
        if status is not None:
            query = query.where(c.status == status)
        if kind is not None:
            query = query.where(c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            matches: dict[int, list[str]] = defaultdict(list)
            for chunk in chunks([r.id for r in rows]):
                for candidate_id, key in conn.execute(_matching(PERSON, chunk).union_all(_matching(ENTITY, chunk))):
                    matches[candidate_id].append(key)
        return [Candidate(r.id, r.kind, r.department, r.given_key, tuple(r.reasons.split()), json.loads(r.attributes),
                          _source(r), r.status, r.created_at, tuple(sorted(matches[r.id]))) for r in rows]

    def findings(self, kind: str | None = None, department: str | None = None, code: str | None = None,
                 severity: str | None = None, limit: int | None = None) -> list[Finding]:
        """Data-quality findings, oldest first, filtered as asked."""
        f = t.finding.c
        query = (select(f.id, f.kind, f.key, f.code, f.severity, f.attribute, f.value, f.expected, f.found_at,
                        *_SOURCE_COLUMNS).join(t.assertion, t.assertion.c.id == f.assertion_id)
                 .order_by(f.id).limit(limit))
        for column, wanted in ((f.kind, kind), (f.department, department), (f.code, code), (f.severity, severity)):
            if wanted is not None:
                query = query.where(column == wanted)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Finding(r.id, r.kind, r.department, r.key, r.code, r.severity, r.attribute, r.value, r.expected,
                        _source(r), r.found_at) for r in rows]

    def conflict_counts(self, kind: str | None = None, status: str | None = None) -> dict[tuple[str, str, str], int]:
        """How many conflicts each department took part in: (kind, department, attribute) -> count."""
        c, v = t.conflict.c, t.conflict_value.c
        query = (select(c.kind, v.department, c.attribute, func.count()).join(t.conflict_value, v.conflict_id == c.id)
                 .group_by(c.kind, v.department, c.attribute))
        if kind is not None:
            query = query.where(c.kind == kind)
        if status is not None:
            query = query.where(c.status == status)
        with self.engine.connect() as conn:
            return {(k, d, a): n for k, d, a, n in conn.execute(query)}

    def finding_counts(self, kind: str | None = None, severity: str | None = None) -> dict[tuple[str, str, str], int]:
        """Findings per (kind, department, code); severity="invalid" counts invalid identifiers."""
        f = t.finding.c
        query = select(f.kind, f.department, f.code, func.count()).group_by(f.kind, f.department, f.code)
        if kind is not None:
            query = query.where(f.kind == kind)
        if severity is not None:
            query = query.where(f.severity == severity)
        with self.engine.connect() as conn:
            return {(k, d, c): n for k, d, c, n in conn.execute(query)}

    # --- shared by the write side ----------------------------------------------------------------

    def _assertions(self, conn: Connection, kind: str, keys: Sequence[str], skip: Collection[int] = (),
                    *, detail: bool = False) -> dict[str, list[Assertion]]:
        """Every assertion about `keys` by key, except the ids in `skip` (the caller has them).
        Without `detail`, source_record_id and received_at (provenance only) are left None."""
        a = t.assertion.c
        found: dict[str, list[Assertion]] = defaultdict(list)
        loads = json.loads
        provenance = (a.source_record_id, a.received_at) if detail else (null(), null())
        for chunk in chunks(keys):
            # no "id NOT IN skip" here: once prepared, PostgreSQL's generic plan for it scans the table
            query = (select(a.key, a.id, a.department, provenance[0], a.source_time, a.message_id, a.position,
                            provenance[1], a.deleted, a.attributes).where(a.kind == kind, self._among(a.key, chunk)))
            for key, *rest, attributes in self._fetch(conn, query):
                if rest[0] not in skip:
                    found[key].append(Assertion(*rest, loads(attributes)))
        return found

    def _decisions(self, conn: Connection, kind: str, keys: Sequence[str]) -> dict[str, list[Decision]]:
        d = t.decision.c
        found: dict[str, list[Decision]] = defaultdict(list)
        for chunk in chunks(keys):
            query = select(d.key, d.id, d.attribute, d.action, d.value, d.department, d.seen).where(
                d.kind == kind, self._among(d.key, chunk))
            for key, *rest, seen in self._fetch(conn, query):
                found[key].append(Decision(*rest, frozenset(json.loads(seen))))
        return found

    def _fetch(self, conn: Connection, query: Any) -> Sequence[Any]:
        """All rows of `query`. On PostgreSQL the driver's own tuples: the hot reads of every
        apply skip SQLAlchemy's row processing (psycopg already gives aware datetimes)."""
        result = conn.execute(query)
        if not self._pg:
            return result.all()
        try:
            return result.cursor.fetchall()  # type: ignore[union-attr]
        finally:
            result.close()

    def _stored_rules(self, conn: Connection) -> Rules:
        """The store's current rules, read only (the given or packaged ones before first use)."""
        stored = conn.execute(select(t.ruleset.c.rules).where(t.ruleset.c.in_force)).scalar()
        if stored is not None:
            return Rules.from_json(stored)
        return getattr(self, "_given", None) or load_rules()

    def _among(self, column: Any, values: Sequence[Any]) -> Any:
        """`column IN values`: one array parameter on PostgreSQL, bound values elsewhere."""
        if self._pg:
            kind = BigInteger() if isinstance(column.type, Integer) else String()
            return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(kind)))
        return column.in_(values)


_SOURCE_COLUMNS = (t.assertion.c.department, t.assertion.c.source_record_id, t.assertion.c.source_time,
                   t.assertion.c.message_id, t.assertion.c.position, t.assertion.c.received_at,
                   t.assertion.c.id.label("assertion_id"))


def _source(row: Any) -> Source:
    """A Source from an Assertion or a row with the _SOURCE_COLUMNS."""
    assertion_id = row.id if isinstance(row, Assertion) else row.assertion_id
    return Source(row.department, row.source_record_id, row.source_time, row.message_id, row.position,
                  row.received_at, assertion_id)


def _matching(kind: str, candidate_ids: Sequence[int]) -> Any:
    """(candidate id, golden key) pairs: same name, and the same birth date, sex and division
    wherever the candidate gives them (entities: name and division)."""
    c, g = t.candidate.c, t.GOLDEN[kind].c
    fields = ("birth_date", "sex", "division") if kind == PERSON else ("division",)
    same = [or_(c[f].is_(None), g[f] == c[f]) for f in fields]
    return (select(c.id, g[KEY_COLUMN[kind]]).join(t.GOLDEN[kind], and_(g.name == c.name, *same))
            .where(c.kind == kind, c.id.in_(candidate_ids)))


def chunks(values: Sequence[Any], size: int = _CHUNK) -> Sequence[Sequence[Any]]:
    return [values[start:start + size] for start in range(0, len(values), size)]
