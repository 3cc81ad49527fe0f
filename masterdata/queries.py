"""Queries and statistics of the base libraries, and the read models of their applications.

`Queries(engine)` answers what the command line (`govbus masterdata ...`), the REST API
(masterdata.api) and the SOAP `Query` service (masterdata.service) offer, each answer a plain,
JSON-ready dict (times as ISO 8601 in China time), so that the three say the same thing:

- lookups: a person by identity number (15 digits and full-width characters accepted), a legal
  entity by credit code, with provenance per attribute and every department's value (the store's
  golden records, masterdata.views); search by name (substring, paged);
- statistics, as SQL aggregates: population by district, sex and age band at a reference date;
  legal entities by status, type, district and year of establishment; per department the
  conflict rate and the invalid-identifier rate;
- applications: an attribute's change history from the assertions (企业基础信息共享: status
  changes), a person's marital status as 民政 records it (计生民政婚姻登记信息共享), an entity's
  facts by department and the entities whose departments disagree (综合治税).

Errors are BusError subclasses with one-line messages that say what to do.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from functools import cache
from typing import Any

from lxml import etree
from schemas.registry import XSD_ROOT, version_key
from sqlalchemy import Engine, case, func, select

from bus.errors import BusError
from masterdata import tables as t
from masterdata.identifiers import check_credit_code, check_id_number
from masterdata.model import ATTRIBUTES, ENTITY, KEY_OF, KINDS, LABELS, PERSON
from masterdata.rules import Rules, load_rules
from masterdata.store import MasterData
from masterdata.views import KEY_COLUMN, Golden, Source

CHINA = timezone(timedelta(hours=8))  # the platform's users' time: dates and times are theirs
CIVIL_AFFAIRS = "MZ"  # 民政: whose records say a person's marital status (婚姻登记)
AGE_BANDS = ("0-17", "18-34", "35-59", "60+")
UNKNOWN = "unknown"  # the group of records without the value grouped on
MAX_PAGE = 200
SPECIFICATION = {PERSON: "person", ENTITY: "legal-entity"}


class QueryError(BusError):
    """A query that cannot be answered as asked; `status` is its HTTP status."""

    code = "invalid_query"
    status = 422


class InvalidIdentifier(QueryError):
    code = "invalid_identifier"


class NotFound(QueryError):
    code = "not_found"
    status = 404
    exit_code = 1  # the command line: like grep, nothing found is not a usage error


def today() -> date:
    """Today in China: the default reference date of ages."""
    return datetime.now(CHINA).date()


def china_time(value: datetime | None) -> str | None:
    """ISO 8601 in China time, to the second (stored times are UTC)."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return aware.astimezone(CHINA).isoformat(timespec="seconds")


@cache
def specification(kind: str) -> etree._ElementTree:
    """The latest packaged version of the kind's specification (person, legal-entity), parsed."""
    name = SPECIFICATION[kind]
    folder = max((f for f in (XSD_ROOT / name).iterdir() if (f / f"{name}.xsd").is_file()),
                 key=lambda f: version_key(f.name))
    return etree.parse(str(folder / f"{name}.xsd"), etree.XMLParser(resolve_entities=False, no_network=True))


def namespace(kind: str) -> str:
    """The target namespace of the kind's specification."""
    return str(specification(kind).getroot().get("targetNamespace"))


@cache
def code_lists(kind: str) -> Mapping[str, Mapping[str, str]]:
    """attribute -> {code: meaning}, from the kind's specification (its xs:enumeration
    documentation): 21 -> 初婚, 440402 -> 香洲区."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    tree = specification(kind)
    types: dict[str, dict[str, str]] = {}
    for simple in tree.iter(f"{xs}simpleType"):
        labels = {e.get("value", ""): (e.findtext(f"{xs}annotation/{xs}documentation") or "").strip()
                  for e in simple.iter(f"{xs}enumeration")}
        if labels and simple.get("name"):
            types[simple.get("name", "")] = labels
    found: dict[str, Mapping[str, str]] = {}
    for element in tree.iter(f"{xs}element"):
        named = (element.get("type") or "").rpartition(":")[2]
        if element.get("name") in ATTRIBUTES[kind] and named in types:
            found[element.get("name", "")] = types[named]
    return found


def meaning(kind: str, attribute: str, value: str | None) -> str | None:
    """What a coded value means (None for free text or an unknown code)."""
    return code_lists(kind).get(attribute, {}).get(value) if value is not None else None


def check_key(kind: str, given: str) -> str:
    """The normalised key (an identity number upgraded from 15 digits; full-width accepted).

    Raises:
        InvalidIdentifier: not a valid identity number / credit code; the reasons named.
    """
    check = check_id_number(given) if kind == PERSON else check_credit_code(given)
    if not check.valid:
        what = "identity number (GB 11643)" if kind == PERSON else "unified social credit code (GB 32100)"
        raise InvalidIdentifier(f"{given.strip()!r} is not a valid {what}: {', '.join(check.reasons)}; check the "
                                "number as written on the document")
    assert check.value is not None
    return check.value


def source_of(source: Source | None) -> dict[str, Any] | None:
    if source is None:
        return None
    return {"department": source.department, "source_record_id": source.source_record_id,
            "source_time": china_time(source.source_time), "message_id": source.message_id,
            "received_at": china_time(source.received_at)}


def golden_of(golden: Golden) -> dict[str, Any]:
    """A golden record as a read model: values, provenance and every department's value."""
    kind = golden.kind
    return {
        "kind": kind, "key": golden.key, "key_label": LABELS[KEY_OF[kind]], "rules_version": golden.rules_version,
        "created_at": china_time(golden.created_at), "updated_at": china_time(golden.updated_at),
        "values": golden.values,
        "attributes": [{
            "attribute": a, "label": LABELS[a], "value": v.value, "meaning": meaning(kind, a, v.value),
            "source": source_of(v.source), "decision_id": v.decision_id,
            "departments": [{"department": d.department, "value": d.value, "meaning": meaning(kind, a, d.value),
                             "counted": d.counted, "source": source_of(d.source)} for d in v.departments],
        } for a, v in golden.attributes.items()],
    }


class Queries:
    """Read models over the base libraries' tables on `engine` (`store`: a MasterData to reuse)."""

    def __init__(self, engine: Engine, store: MasterData | None = None) -> None:
        self.engine = engine
        self.store = store or MasterData(engine)

    # --- lookups ---------------------------------------------------------------------------------

    def golden(self, kind: str, key: str) -> Golden:
        """The golden record of a person or legal entity.

        Raises:
            InvalidIdentifier: the identifier is not valid.
            NotFound: no department has told the base library about it.
        """
        value = check_key(kind, key)
        found = self.store.person(value) if kind == PERSON else self.store.entity(value)
        if found is None:
            who = "person" if kind == PERSON else "legal entity"
            raise NotFound(f"no {who} with {LABELS[KEY_OF[kind]]} {value} in the base library")
        return found

    def lookup(self, kind: str, key: str) -> dict[str, Any]:
        """`golden` as a read model (see golden_of)."""
        return golden_of(self.golden(kind, key))

    def search(self, name: str, kind: str = PERSON, page: int = 1, size: int = 20) -> dict[str, Any]:
        """Golden records whose name contains `name`, by name then key, one page of them."""
        text = name.strip()
        if not text:
            raise QueryError("give part of a name to search for")
        _check_page(page, size)
        golden = t.GOLDEN[_kind(kind)]
        g = golden.c
        shown = ("sex", "birth_date", "division") if kind == PERSON else ("entity_type", "status", "division")
        where = g.name.contains(text, autoescape=True)
        # Code point order, as SQLite sorts: on PostgreSQL it also keeps the planner from walking
        # the whole name index for a substring match (10x slower here than a scan and a top-N sort)
        by_name = g.name.collate("C") if self.engine.dialect.name == "postgresql" else g.name
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(golden).where(where)).scalar_one()
            rows = conn.execute(select(g[KEY_COLUMN[kind]].label("key"), g.name, *(g[c] for c in shown)).where(where)
                                .order_by(by_name, g[KEY_COLUMN[kind]]).offset((page - 1) * size).limit(size)).all()
        attributes = ("Name", *(_attribute(kind, c) for c in shown))
        return {"kind": kind, "name": text, "page": page, "size": size, "total": total,
                "matches": [{"key": r.key, **{a: v for a, v in zip(attributes, r[1:])}} for r in rows]}

    # --- applications ----------------------------------------------------------------------------

    def history(self, kind: str, key: str, attribute: str = "Status", department: str | None = None) -> dict[str, Any]:
        """The changes of one attribute as the departments recorded them, oldest first: every
        assertion that gave a department's first value, changed it, or deleted the record
        (source time order; a record delivered late takes its place by source time)."""
        if attribute not in ATTRIBUTES[_kind(kind)]:
            raise QueryError(f"{kind} has no attribute {attribute!r}; use one of {', '.join(ATTRIBUTES[kind])}")
        golden = self.golden(kind, key)
        current = golden.attributes.get(attribute)
        return {"kind": kind, "key": golden.key, "name": golden.get("Name"), "attribute": attribute,
                "label": LABELS[attribute], "value": current.value if current else None,
                "meaning": meaning(kind, attribute, current.value) if current else None,
                "source": source_of(current.source) if current else None,
                "changes": self._changes(kind, golden.key, attribute, department)}

    def _changes(self, kind: str, key: str, attribute: str, department: str | None) -> list[dict[str, Any]]:
        a = t.assertion.c
        query = (select(a.department, a.source_record_id, a.source_time, a.message_id, a.received_at, a.deleted,
                        a.attributes).where(a.kind == kind, a.key == key)
                 .order_by(a.source_time, a.message_id, a.position))
        if department is not None:
            query = query.where(a.department == department)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()  # one key's records: a handful
        last: dict[str, str | None] = {}
        changes = []
        for r in rows:
            before = last.get(r.department)
            if r.deleted:
                if before is None:
                    continue  # it held no value of the attribute: nothing changes
                value, change = None, "deleted"
            else:
                value = json.loads(r.attributes).get(attribute)
                if value is None or value == before:
                    continue
                change = "recorded" if before is None else "changed"
            last[r.department] = value
            changes.append({"change": change, "value": value, "meaning": meaning(kind, attribute, value),
                            "previous": before, "department": r.department, "source_record_id": r.source_record_id,
                            "source_time": china_time(r.source_time), "message_id": r.message_id,
                            "received_at": china_time(r.received_at)})
        return changes

    def marriage(self, id_number: str, department: str = CIVIL_AFFAIRS) -> dict[str, Any]:
        """A person's marital status as 民政 (`department`) records it: its value, source and
        date, and its changes; with the golden value beside it (it may come from elsewhere)."""
        golden = self.golden(PERSON, id_number)
        current = golden.attributes.get("MaritalStatus")
        own = next((d for d in current.departments if d.department == department), None) if current else None
        return {
            "key": golden.key, "name": golden.get("Name"), "department": department,
            "marital_status": own.value if own else None, "meaning": meaning(PERSON, "MaritalStatus", own.value) if own else None,
            "source": source_of(own.source) if own else None,
            "date": china_time(own.source.source_time)[:10] if own else None,  # type: ignore[index]
            "counted": own.counted if own else None,
            "golden": {"value": current.value, "meaning": meaning(PERSON, "MaritalStatus", current.value),
                       "source": source_of(current.source), "decision_id": current.decision_id} if current else None,
            "changes": self._changes(PERSON, golden.key, "MaritalStatus", department),
        }

    def facts(self, credit_code: str) -> dict[str, Any]:
        """A legal entity with every department's facts about it (综合治税): per attribute the
        golden value and each department's; the departments' latest records; the open
        conflicts and the data-quality findings about the code."""
        golden = self.golden(ENTITY, credit_code)
        departments: dict[str, dict[str, Any]] = {}
        rows = []
        for a, v in golden.attributes.items():
            by = {d.department: d.value for d in v.departments}
            rows.append({"attribute": a, "label": LABELS[a], "value": v.value,
                         "department": v.source.department if v.source else "steward", "departments": by,
                         "agree": len(set(by.values())) <= 1})
            for d in v.departments:
                seen = departments.setdefault(d.department, {"department": d.department, "attributes": 0,
                                                             "source_time": d.source.source_time,
                                                             "source_record_id": d.source.source_record_id})
                seen["attributes"] += 1
                if d.source.source_time > seen["source_time"]:
                    seen.update(source_time=d.source.source_time, source_record_id=d.source.source_record_id)
        f = t.finding.c
        with self.engine.connect() as conn:
            findings = conn.execute(select(f.department, f.code, f.severity, f.attribute, f.value, f.expected, f.found_at)
                                    .where(f.kind == ENTITY, f.key == golden.key).order_by(f.id)).all()
        return {
            "key": golden.key, "name": golden.get("Name"), "rules_version": golden.rules_version, "facts": rows,
            "departments": [{**d, "source_time": china_time(d["source_time"])} for _, d in sorted(departments.items())],
            "conflicts": [{"id": c.id, "attribute": c.attribute, "values": {v.department: v.value for v in c.values},
                           "opened_at": china_time(c.opened_at)}
                          for c in self.store.conflicts("open", ENTITY, golden.key)],
            "findings": [{"department": r.department, "code": r.code, "severity": r.severity, "attribute": r.attribute,
                          "value": r.value, "expected": r.expected, "found_at": china_time(r.found_at)} for r in findings],
        }

    def disagreements(self, kind: str = ENTITY, status: str | None = "open", page: int = 1,
                      size: int = 50) -> dict[str, Any]:
        """The keys whose trusted departments disagree (their conflicts, `status` None: any),
        by key, one page of them, each with its name, attributes and departments."""
        _check_page(page, size)
        c, v = t.conflict.c, t.conflict_value.c
        golden = t.GOLDEN[_kind(kind)]
        where = [c.kind == kind] + ([c.status == status] if status is not None else [])
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count(func.distinct(c.key))).where(*where)).scalar_one()
            keys = conn.execute(select(c.key, func.count().label("conflicts"), func.min(c.opened_at).label("since"))
                                .where(*where).group_by(c.key).order_by(c.key)
                                .offset((page - 1) * size).limit(size)).all()
            chosen = [k.key for k in keys]
            names = dict(conn.execute(select(golden.c[KEY_COLUMN[kind]], golden.c.name)
                                      .where(golden.c[KEY_COLUMN[kind]].in_(chosen))).all()) if chosen else {}
            detail = conn.execute(select(c.key, c.attribute, v.department).join(t.conflict_value, v.conflict_id == c.id)
                                  .where(*where, c.key.in_(chosen))).all() if chosen else []
        attributes: dict[str, set[str]] = defaultdict(set)
        departments: dict[str, set[str]] = defaultdict(set)
        for key, attribute, department in detail:
            attributes[key].add(attribute)
            departments[key].add(department)
        order = {a: i for i, a in enumerate(ATTRIBUTES[kind])}
        return {"kind": kind, "status": status or "all", "page": page, "size": size, "total": total, "entries": [
            {"key": k.key, "name": names.get(k.key), "conflicts": k.conflicts, "since": china_time(k.since),
             "attributes": sorted(attributes[k.key], key=order.__getitem__), "departments": sorted(departments[k.key])}
            for k in keys]}

    # --- statistics ------------------------------------------------------------------------------

    def population(self, at: date | None = None) -> dict[str, Any]:
        """Golden persons by district, sex and age band (0-17, 18-34, 35-59, 60+ in whole years
        on `at`, default today in China). Sex and birth date a department did not give are read
        from the identity number; a district nobody gave counts as "unknown"."""
        at = at or today()
        p = t.person.c
        born = func.coalesce(p.birth_date, func.substr(p.id_number, 7, 4) + "-" + func.substr(p.id_number, 11, 2)
                             + "-" + func.substr(p.id_number, 13, 2))
        sex = func.coalesce(p.sex, case((func.substr(p.id_number, 17, 1).in_(("1", "3", "5", "7", "9")), "1"), else_="2"))

        def cut(years: int) -> str:  # born after it: younger than `years` on `at` (YYYY-MM-DD sorts as dates)
            return f"{at.year - years:04d}-{at.month:02d}-{at.day:02d}"

        band = case((born > cut(18), "0-17"), (born > cut(35), "18-34"), (born > cut(60), "35-59"), else_="60+")
        district = func.coalesce(p.division, UNKNOWN)
        with self.engine.connect() as conn:
            groups = conn.execute(select(district, sex, band, func.count()).group_by(district, sex, band)).all()
        cross: dict[str, dict[str, dict[str, int]]] = {}
        totals: dict[str, dict[str, int]] = {"district": defaultdict(int), "sex": defaultdict(int), "band": defaultdict(int)}
        for d, s, b, n in sorted(groups):
            cross.setdefault(d, {}).setdefault(s, {})[b] = n
            for axis, value in (("district", d), ("sex", s), ("band", b)):
                totals[axis][value] += n
        return {"reference_date": at.isoformat(), "total": sum(totals["district"].values()),
                "by_district": dict(sorted(totals["district"].items())), "by_sex": dict(sorted(totals["sex"].items())),
                "by_age_band": {b: totals["band"][b] for b in AGE_BANDS if b in totals["band"]},
                "by_district_sex_age_band": cross}

    def entities(self) -> dict[str, Any]:
        """Golden legal entities by status, type, district and year of establishment."""
        e = t.entity.c
        axes = {"status": e.status, "type": e.entity_type, "district": e.division,
                "year": func.substr(e.established_on, 1, 4)}
        found: dict[str, Any] = {}
        with self.engine.connect() as conn:
            found["total"] = conn.execute(select(func.count()).select_from(t.entity)).scalar_one()
            for axis, column in axes.items():
                value = func.coalesce(column, UNKNOWN)
                found[f"by_{axis}"] = dict(sorted(conn.execute(select(value, func.count()).group_by(value)).all()))
        return found

    def departments(self) -> list[dict[str, Any]]:
        """Per department and kind: records received, invalid identifiers and their rate (of
        the records), keys asserted, conflicts it takes part in (all, open) and their rate (of
        its keys)."""
        a = t.assertion.c
        invalid = func.sum(case((a.key.is_(None), 1), else_=0))
        with self.engine.connect() as conn:
            received = conn.execute(select(a.department, a.kind, func.count(), invalid, func.count(func.distinct(a.key)))
                                    .group_by(a.department, a.kind)).all()
        conflicts: dict[tuple[str, str], int] = defaultdict(int)
        still_open: dict[tuple[str, str], int] = defaultdict(int)
        for counts, status in ((conflicts, None), (still_open, "open")):
            for (kind, department, _attribute), n in self.store.conflict_counts(status=status).items():
                counts[(department, kind)] += n
        out = []
        for department, kind, records, bad, keys in sorted(received):
            n = conflicts[(department, kind)]
            out.append({"department": department, "kind": kind, "records": records, "invalid_identifiers": int(bad or 0),
                        "invalid_rate": round(int(bad or 0) / records, 6) if records else 0.0, "keys": keys,
                        "conflicts": n, "open_conflicts": still_open[(department, kind)],
                        "conflict_rate": round(n / keys, 6) if keys else 0.0})
        return out

    # --- stewardship views -----------------------------------------------------------------------

    def rules(self) -> dict[str, Any]:
        """The survivorship rules in force (the packaged ones before the first record), and every
        version the store has used."""
        r = t.ruleset.c
        with self.engine.connect() as conn:
            versions = conn.execute(select(r.version, r.in_force, r.created_at, r.applied_at).order_by(r.created_at)).all()
            stored = conn.execute(select(r.rules).where(r.in_force)).scalar()
        current = Rules.from_json(stored) if stored is not None else load_rules()
        return {"version": current.version, "tiers": {k: {a: [list(tier) for tier in tiers] for a, tiers in attrs.items()}
                                                      for k, attrs in current.tiers.items()},
                "versions": [{"version": v.version, "in_force": v.in_force, "created_at": china_time(v.created_at),
                              "applied_at": china_time(v.applied_at)} for v in versions]}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise QueryError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _check_page(page: int, size: int) -> None:
    if page < 1 or not 1 <= size <= MAX_PAGE:
        raise QueryError(f"pages start at 1 and hold 1 to {MAX_PAGE} entries; got page {page}, size {size}")


def _attribute(kind: str, column: str) -> str:
    return next(a for a in ATTRIBUTES[kind] if t.column_of(a) == column)


def conflict_of(conflict: Any) -> dict[str, Any]:
    """A masterdata.views.Conflict as a read model."""
    return {"id": conflict.id, "kind": conflict.kind, "key": conflict.key, "attribute": conflict.attribute,
            "label": LABELS[conflict.attribute], "status": conflict.status,
            "values": [{"department": v.department, "value": v.value, "meaning": meaning(conflict.kind, conflict.attribute, v.value),
                        "source": source_of(v.source)} for v in conflict.values],
            "opened_at": china_time(conflict.opened_at), "updated_at": china_time(conflict.updated_at),
            "resolution": conflict.resolution, "resolved_value": conflict.resolved_value,
            "wrong_department": conflict.wrong_department, "decision_id": conflict.decision_id,
            "resolved_by": conflict.resolved_by, "reason": conflict.reason, "resolved_at": china_time(conflict.resolved_at)}


def candidate_of(candidate: Any) -> dict[str, Any]:
    """A masterdata.views.Candidate as a read model."""
    return {"id": candidate.id, "kind": candidate.kind, "department": candidate.department,
            "given_key": candidate.given_key, "reasons": list(candidate.reasons), "values": dict(candidate.values),
            "source": source_of(candidate.source), "status": candidate.status,
            "created_at": china_time(candidate.created_at), "matches": list(candidate.matches)}


def finding_of(finding: Any) -> dict[str, Any]:
    """A masterdata.views.Finding as a read model."""
    return {"id": finding.id, "kind": finding.kind, "department": finding.department, "key": finding.key,
            "code": finding.code, "severity": finding.severity, "attribute": finding.attribute, "value": finding.value,
            "expected": finding.expected, "source": source_of(finding.source), "found_at": china_time(finding.found_at)}


__all__ = ["AGE_BANDS", "CHINA", "CIVIL_AFFAIRS", "InvalidIdentifier", "NotFound", "Queries", "QueryError",
           "candidate_of", "china_time", "code_lists", "conflict_of", "finding_of", "golden_of", "meaning", "namespace"]
