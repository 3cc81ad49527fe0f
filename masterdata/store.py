"""The base libraries' store: assertions in, golden records, conflicts, candidates and findings out.

`MasterData(engine).apply(records)` is what the consumers call: one transaction per call, set
based (COPY into md_assertion on PostgreSQL for batches above ~100 records), idempotent by
(message id, position), safe against any delivery order (masterdata.golden decides by source
time, never by arrival), and it recomputes the golden records and conflicts of exactly the keys
the new records touched. `recompute(rules)` recomputes everything from the stored assertions.
Golden records and conflicts are computed by masterdata.golden and written by
masterdata.refresh; reads are in masterdata.views (both mixed into MasterData).

Concurrency: on PostgreSQL an apply first takes transaction-level advisory locks on the buckets
(64) of the keys it touches, in order, so two workers never compute the same key from different
snapshots; a batch of one record takes one lock. On SQLite an apply becomes the one writer
before it reads anything. Two workers storing the same message at once make one of them fail on
the unique (message id, position); it retries and then finds the records already applied.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, insert, select, text, update

from bus.errors import BusError, ConfigError, TransientError
from masterdata import tables as t
from masterdata.golden import CHOOSE, WRONG, Assertion
from masterdata.identifiers import check_credit_code, check_id_number
from masterdata.model import ATTRIBUTES, KEY_OF, KINDS, PERSON, Record
from masterdata.refresh import COPY_ABOVE, Refresher, copy_rows, encode_json
from masterdata.rules import Rules, load_rules
from masterdata.views import (  # noqa: F401  (re-exported: what the store's methods return)
    Candidate, Conflict, ConflictValue, DepartmentValue, Finding, Golden, GoldenValue, Source, chunks,
)

__all__ = ["Applied", "Candidate", "Conflict", "ConflictValue", "DepartmentValue", "Finding", "Golden", "GoldenValue",
           "MasterData", "Source", "StewardshipError"]

_LOCK_SPACE = 0x6D64  # advisory lock namespace of the base libraries ("md")
_BUCKETS = 64
_CHUNK = 5000  # keys per read: well under SQLite's 32,766 bound parameters


class StewardshipError(BusError):
    """A steward's request that cannot be done as asked (the message says what to do)."""

    code = "stewardship"


@dataclass(frozen=True, slots=True)
class Applied:
    """What one apply() did. `records` given = `stored` + `duplicates`; `assertions` counts the
    attribute values stored under a valid key; `golden_changed` the golden records created,
    changed or removed."""

    records: int = 0
    stored: int = 0
    assertions: int = 0
    duplicates: int = 0
    golden_changed: int = 0
    conflicts_opened: int = 0
    candidates: int = 0
    findings: int = 0


class _Prepared(NamedTuple):
    row: tuple[Any, ...]  # md_assertion columns after id, as in _ASSERTION_COLUMNS
    values: dict[str, str]
    findings: list[tuple[str, str, str | None, str | None, str | None]]  # code, severity, attribute, value, expected
    reasons: tuple[str, ...]  # non-empty: the key is invalid, the record is a candidate (unless a delete)
    finding_key: str | None


_ASSERTION_COLUMNS = ("kind", "key", "given_key", "department", "source_record_id", "source_time", "message_id",
                      "position", "received_at", "deleted", "attributes")
_KIND, _KEY, _DEPARTMENT, _RECORD, _TIME, _MESSAGE, _POSITION, _DELETED = 0, 1, 3, 4, 5, 6, 7, 9  # in _Prepared.row


class MasterData(Refresher):
    """The natural-person and legal-entity base libraries on `engine` (tables by migration).

    `rules`: the survivorship rules this instance applies. None follows the store's current rules
    (the packaged masterdata/rules.toml on first use); given rules must be the store's current
    ones (ConfigError otherwise: switch with recompute(rules)).
    """

    def __init__(self, engine: Engine, rules: Rules | None = None) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._given = rules
        self._rules: Rules | None = None
        self._sequence: str | None = None

    # --- applying records ------------------------------------------------------------------------

    def apply(self, records: Sequence[Record]) -> Applied:
        """Store `records` and recompute what they touch, in one transaction.

        Raises:
            ValueError: a record of an unknown kind or attribute, or a naive source_time.
            ConfigError: this instance's rules are not the store's current rules.
            TransientError: the records kept colliding with a concurrent apply of the same ones.
        """
        now = datetime.now(timezone.utc)
        prepared = [self._prepare(r, now) for r in records]
        for _ in range(3):
            try:
                with self.engine.begin() as conn:
                    return self._apply(conn, prepared, now)
            except Exception as exc:
                if not _collided(exc):
                    raise
        raise TransientError("the records collided three times with concurrent applies of the same messages; retry")

    def _prepare(self, r: Record, now: datetime) -> _Prepared:
        """Per-record work, before any I/O: check and normalise the key, strip values, findings."""
        if r.kind not in KINDS:
            raise ValueError(f"unknown kind {r.kind!r} of record {r.source_record_id!r}: use one of {', '.join(KINDS)}")
        if r.source_time.tzinfo is None:
            raise ValueError(f"record {r.source_record_id!r} has a naive source_time; give it in UTC (tzinfo=timezone.utc)")
        unknown = r.values.keys() - _ALLOWED[r.kind]
        if unknown:
            raise ValueError(f"record {r.source_record_id!r}: unknown {r.kind} attributes {sorted(unknown)}; "
                             f"known: {', '.join(ATTRIBUTES[r.kind])}")
        values = {a: s for a, v in r.values.items() if v is not None and (s := v.strip())}
        findings: list[tuple[str, str, str | None, str | None, str | None]] = []
        if r.kind == PERSON:
            check = check_id_number(r.key)
            if check.valid:
                if check.birth_date is not None and (born := values.get("BirthDate")) is not None \
                        and born != check.birth_date.isoformat():
                    findings.append(("birth_date_mismatch", "mismatch", "BirthDate", born, check.birth_date.isoformat()))
                if (sex := values.get("Sex")) in ("1", "2") and sex != check.sex:
                    findings.append(("sex_mismatch", "mismatch", "Sex", sex, check.sex))
        else:
            check = check_credit_code(r.key)  # type: ignore[assignment]
            if check.valid and (org := values.get("OrganizationCode")) is not None and check.organization_code \
                    and org.replace("-", "").upper() != check.organization_code.replace("-", ""):
                findings.append(("organization_code_mismatch", "mismatch", "OrganizationCode", org, check.organization_code))
        key = check.value if check.valid else None
        for warning in check.warnings:
            findings.append((warning, "warning", KEY_OF[r.kind], r.key, check.value))
        for reason in check.reasons:
            findings.append((reason, "invalid", KEY_OF[r.kind], r.key, None))
        given = r.key if r.key != key else None
        row = (r.kind, key, given, r.department, r.source_record_id, r.source_time, r.message_id, r.position, now,
               r.deleted, encode_json(values))
        return _Prepared(row, values, findings, check.reasons, key or r.key)

    def _apply(self, conn: Connection, prepared: list[_Prepared], now: datetime) -> Applied:
        touched: dict[str, set[str]] = defaultdict(set)
        for p in prepared:
            if p.row[_KEY] is not None:
                touched[p.row[_KIND]].add(p.row[_KEY])
        self._lock(conn, {_bucket(k) for keys in touched.values() for k in keys})
        new, duplicates = self._new(conn, prepared)
        if not new:
            return Applied(records=len(prepared), duplicates=duplicates)
        ids = self._allocate(conn, len(new))
        self._insert_assertions(conn, [(i, *p.row) for i, p in zip(ids, new)])
        findings = [{"assertion_id": i, "kind": p.row[_KIND], "department": p.row[_DEPARTMENT], "key": p.finding_key,
                     "code": code, "severity": severity, "attribute": attribute, "value": value, "expected": expected,
                     "found_at": now}
                    for i, p in zip(ids, new) for code, severity, attribute, value, expected in p.findings]
        if findings:
            conn.execute(insert(t.finding), findings)
        candidates = [{"assertion_id": i, "kind": p.row[_KIND], "department": p.row[_DEPARTMENT],
                       "reasons": " ".join(p.reasons), "name": p.values.get("Name"), "birth_date": p.values.get("BirthDate"),
                       "sex": p.values.get("Sex"), "division": p.values.get("Division"), "status": "open", "created_at": now}
                      for i, p in zip(ids, new) if p.reasons and not p.row[_DELETED]]
        if candidates:
            conn.execute(insert(t.candidate), candidates)
        rules = self._current_rules(conn)
        changed = opened = 0
        for kind in KINDS:
            fresh: dict[str, list[Assertion]] = defaultdict(list)
            for i, p in zip(ids, new):
                row = p.row
                if row[_KIND] == kind and row[_KEY] is not None:
                    fresh[row[_KEY]].append(Assertion(i, row[_DEPARTMENT], row[_RECORD], row[_TIME], row[_MESSAGE],
                                                      row[_POSITION], now, row[_DELETED], p.values))
            if fresh:
                done = self._refresh(conn, kind, sorted(fresh), rules, now, fresh)
                changed += done.changed
                opened += done.opened
        return Applied(records=len(prepared), stored=len(new), duplicates=duplicates,
                       assertions=sum(len(p.values) for p in new if p.row[_KEY] is not None),
                       golden_changed=changed, conflicts_opened=opened,
                       candidates=len(candidates), findings=len(findings))

    def _lock(self, conn: Connection, buckets: Iterable[int]) -> None:
        """Lock the keys before reading them. PostgreSQL: advisory locks on the keys' buckets,
        in ascending order (no deadlock between appliers). SQLite: become the one writer now
        (any write statement takes the lock, even one that changes nothing)."""
        if not self._pg:
            conn.execute(update(t.ruleset).where(t.ruleset.c.version.is_(None)).values(in_force=False))
            return
        ordered = sorted(buckets)
        if ordered:
            conn.execute(text("SELECT pg_advisory_xact_lock(:space, b) FROM (SELECT unnest(CAST(:buckets AS integer[])) AS b) s"),
                         {"space": _LOCK_SPACE, "buckets": ordered})

    def _new(self, conn: Connection, prepared: list[_Prepared]) -> tuple[list[_Prepared], int]:
        """The records not stored yet (by message id and position), each once."""
        message_ids = sorted({p.row[_MESSAGE] for p in prepared})
        seen: set[tuple[str, int]] = set()
        for chunk in chunks(message_ids):
            seen.update((m, p) for m, p in self._fetch(conn, select(t.assertion.c.message_id, t.assertion.c.position)
                                                       .where(self._among(t.assertion.c.message_id, chunk))))
        new = []
        for p in prepared:
            mark = (p.row[_MESSAGE], p.row[_POSITION])
            if mark not in seen:
                seen.add(mark)
                new.append(p)
        return new, len(prepared) - len(new)

    def _allocate(self, conn: Connection, n: int) -> list[int]:
        """Ids for n new assertions, known before they are written (findings and candidates
        refer to them; COPY cannot return them)."""
        if self._pg:
            if self._sequence is None:  # looked up once: per row it costs a catalog lookup each
                self._sequence = conn.execute(text("SELECT pg_get_serial_sequence('md_assertion', 'id')")).scalar_one()
            return conn.execute(text(f"SELECT array_agg(nextval('{self._sequence}'::regclass)) "
                                     "FROM generate_series(1, :n)"), {"n": n}).scalar_one()
        top = conn.execute(select(t.assertion.c.id).order_by(t.assertion.c.id.desc()).limit(1)).scalar() or 0
        return list(range(top + 1, top + 1 + n))

    def _insert_assertions(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        columns = ("id", *_ASSERTION_COLUMNS)
        if self._pg and len(rows) > COPY_ABOVE:
            copy_rows(conn, "md_assertion", columns, rows)
        else:
            conn.execute(insert(t.assertion), [dict(zip(columns, row)) for row in rows])

    # --- stewardship -----------------------------------------------------------------------------

    def resolve(self, conflict_id: int, *, choose_value: str | None = None, wrong_department: str | None = None,
                by: str, reason: str) -> Conflict:
        """Resolve an open conflict by choosing its value, or by marking one department wrong for
        that key and attribute; the decision is kept with who, when and why, and the golden
        record follows it at once. A department marked wrong counts again once it changes its
        value; a chosen value holds until a trusted department says something new.

        Raises:
            StewardshipError: no such conflict, not open, neither or both ways given, no `by` or
                `reason`, or a department that has no value in the conflict.
        """
        if (choose_value is None) == (wrong_department is None):
            raise StewardshipError("resolve a conflict either with choose_value=... or with wrong_department=..., not both")
        if not by.strip() or not reason.strip():
            raise StewardshipError("say who decides (by=...) and why (reason=...): both are kept for audit")
        now = datetime.now(timezone.utc)
        c, v = t.conflict.c, t.conflict_value.c
        with self.engine.begin() as conn:
            key = conn.execute(select(c.key).where(c.id == conflict_id)).scalar()
            if key is None:
                raise StewardshipError(f"there is no conflict {conflict_id}; list the open ones with conflicts()")
            self._lock(conn, [_bucket(key)])
            head = conn.execute(select(t.conflict).where(c.id == conflict_id)).one()
            if head.status != "open":
                raise StewardshipError(f"conflict {conflict_id} is already {head.status} ({head.resolution}, by "
                                       f"{head.resolved_by} at {head.resolved_at:%Y-%m-%d %H:%M} UTC); nothing to do")
            values = dict(conn.execute(select(v.department, v.value).where(v.conflict_id == conflict_id)).all())
            if wrong_department is not None:
                if wrong_department not in values:
                    raise StewardshipError(f"{wrong_department} has no value in conflict {conflict_id}; "
                                           f"its departments are {', '.join(sorted(values))}")
                action, value = WRONG, values[wrong_department]
            else:
                action, value = CHOOSE, (choose_value or "").strip()
                if not value:
                    raise StewardshipError("choose_value is empty: give the value the golden record should have")
            decision_id = conn.execute(insert(t.decision).returning(t.decision.c.id).values(
                kind=head.kind, key=key, attribute=head.attribute, action=action, value=value, department=wrong_department,
                seen=json.dumps(sorted(set(values.values())), ensure_ascii=False), conflict_id=conflict_id,
                decided_by=by.strip(), reason=reason.strip(), decided_at=now)).scalar_one()
            conn.execute(update(t.conflict).where(c.id == conflict_id).values(
                status="resolved", resolution="chosen" if action == CHOOSE else "department_wrong",
                resolved_value=value if action == CHOOSE else None, wrong_department=wrong_department,
                decision_id=decision_id, resolved_by=by.strip(), reason=reason.strip(), resolved_at=now, updated_at=now))
            self._refresh(conn, head.kind, [key], self._current_rules(conn), now)
        resolved = self.conflict(conflict_id)
        assert resolved is not None
        return resolved

    # --- rules -----------------------------------------------------------------------------------

    def recompute(self, rules: Rules) -> int:
        """Recompute every golden record and conflict from the stored assertions with `rules`,
        which become the store's current rules (every version used is kept in md_ruleset).
        Returns how many golden records changed value or provenance; all carry the new version.

        Raises:
            ConfigError: `rules.version` is already stored with different ranks.
        """
        now = datetime.now(timezone.utc)
        changed = 0
        with self.engine.begin() as conn:
            self._lock(conn, range(_BUCKETS))
            self._register(conn, rules, now)
            a = t.assertion.c
            for kind in KINDS:
                after = ""
                while True:
                    keys = conn.execute(select(a.key).where(a.kind == kind, a.key > after).group_by(a.key)
                                        .order_by(a.key).limit(_CHUNK)).scalars().all()
                    if not keys:
                        break
                    changed += self._refresh(conn, kind, keys, rules, now).changed
                    after = keys[-1]
            conn.execute(update(t.ruleset).where(t.ruleset.c.in_force).values(in_force=False))
            conn.execute(update(t.ruleset).where(t.ruleset.c.version == rules.version).values(in_force=True, applied_at=now))
        self._rules = rules
        if self._given is not None:
            self._given = rules
        return changed

    def _register(self, conn: Connection, rules: Rules, now: datetime, *, current: bool = False) -> None:
        stored = conn.execute(select(t.ruleset.c.rules).where(t.ruleset.c.version == rules.version)).scalar()
        if stored is None:
            conn.execute(insert(t.ruleset).values(version=rules.version, rules=rules.to_json(), in_force=current,
                                                  created_at=now, applied_at=now if current else None))
        elif Rules.from_json(stored) != rules:
            raise ConfigError(f"rules version {rules.version} is already stored with other ranks: "
                              f"give the changed rules a new version")

    def _current_rules(self, conn: Connection) -> Rules:
        """The store's current rules (the given or packaged ones on first use)."""
        version = conn.execute(select(t.ruleset.c.version).where(t.ruleset.c.in_force)).scalar()
        if version is None:
            rules = self._given or load_rules()
            self._register(conn, rules, datetime.now(timezone.utc), current=True)
            conn.execute(update(t.ruleset).where(t.ruleset.c.version == rules.version).values(in_force=True))
            self._rules = rules
        elif self._rules is None or self._rules.version != version:
            stored = conn.execute(select(t.ruleset.c.rules).where(t.ruleset.c.version == version)).scalar_one()
            self._rules = Rules.from_json(stored)
        if self._given is not None and self._given != self._rules:
            raise ConfigError(f"the base libraries follow rules version {self._rules.version}, not {self._given.version}: "
                              f"switch with recompute(rules) (govbus masterdata rules apply FILE)")
        return self._rules


_ALLOWED = {kind: frozenset(ATTRIBUTES[kind]) for kind in KINDS}


def _bucket(key: str) -> int:
    return zlib.crc32(key.encode()) % _BUCKETS


def _collided(exc: BaseException) -> bool:
    """A unique violation (from SQLAlchemy, or from psycopg itself under COPY): records stored
    meanwhile by another apply of the same messages."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(orig)
