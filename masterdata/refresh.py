"""Writing golden records and conflicts: the part of an apply (or a recompute, or a steward's
decision) that recomputes some keys and stores what changed.

For each key: fold the new assertions into its golden record when masterdata.golden.advance
can (no decision, open conflict or delete about the key), else settle it from all its
assertions; then write only what changed: new golden records by COPY, changed ones through a
staging table, conflicts opened, updated (their values replaced) or closed as agreed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, literal_column, select, update

from masterdata import tables as t
from masterdata.golden import Assertion, advance, settle
from masterdata.model import ATTRIBUTES
from masterdata.rules import Rules
from masterdata.views import KEY_COLUMN, Views, chunks

OPEN = literal_column("'open'")

COPY_ABOVE = 100  # rows; below this an INSERT is cheaper than setting up a COPY
_SYSTEM = "masterdata"  # who closes a conflict whose departments came to agree
encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # dumps() builds an encoder a call


@dataclass
class _Refreshed:
    changed: int = 0
    opened: int = 0
    stamped: int = 0  # rewritten only to carry a new rules version


@dataclass
class _Plan:
    # golden rows: key, *attributes, sources, deleted_by, rules version, created_at, updated_at
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    new_conflicts: list[tuple[str, str, tuple[tuple[str, str, int], ...]]] = field(default_factory=list)
    changed_conflicts: list[tuple[int, tuple[tuple[str, str, int], ...]]] = field(default_factory=list)
    closed_conflicts: list[int] = field(default_factory=list)


class Refresher(Views):
    """The golden-record and conflict writing of MasterData."""

    def _refresh(self, conn: Connection, kind: str, keys: Sequence[str], rules: Rules, now: datetime,
                 fresh: Mapping[str, list[Assertion]] | None = None) -> _Refreshed:
        """Recompute the golden records and conflicts of `keys` (`fresh`: the assertions this
        transaction wrote, by key). A key whose new assertions can be folded into its golden
        record (golden.advance) is; the others are settled from all their assertions."""
        golden = t.GOLDEN[kind]
        key_column = golden.c[KEY_COLUMN[kind]]
        attributes = ATTRIBUTES[kind]
        decisions = self._decisions(conn, kind, keys)
        old: dict[str, tuple[Any, ...]] = {}
        open_conflicts: dict[tuple[str, str], tuple[int, tuple[tuple[str, str, int], ...]]] = {}
        c, v = t.conflict.c, t.conflict_value.c
        for chunk in chunks(keys):
            for row in self._fetch(conn, select(key_column, *(golden.c[t.column_of(a)] for a in attributes),
                                                golden.c.sources, golden.c.deleted_by, golden.c.rules_version)
                                   .where(self._among(key_column, chunk))):
                old[row[0]] = tuple(row[1:])
            rows = self._fetch(conn, select(c.id, c.key, c.attribute, v.department, v.value, v.assertion_id)
                               .join(t.conflict_value, v.conflict_id == c.id)
                               # a literal, not a parameter: only then can a prepared (generic) plan
                               # use the partial index of open conflicts instead of scanning them all
                               .where(c.kind == kind, c.status == OPEN, self._among(c.key, chunk))
                               .order_by(c.id, v.department))
            for cid, key, attribute, department, value, assertion_id in rows:
                held = open_conflicts.get((key, attribute), (cid, ()))
                open_conflicts[(key, attribute)] = (cid, (*held[1], (department, value, assertion_id)))
        disputed = {key for key, _ in open_conflicts}

        plan, done = _Plan(), _Refreshed()
        full: list[str] = []
        for key in keys:
            new, before = fresh.get(key) if fresh else None, old.get(key)
            if new and before is not None and before[-1] == rules.version and before[-2] is None \
                    and key not in decisions and key not in disputed and not any(a.deleted for a in new):
                values = {a: v for a, v in zip(attributes, before) if v is not None}
                sources = json.loads(before[-3])
                if advance(kind, values, sources, new, rules):
                    self._plan_golden(plan, done, kind, key, values, sources, (), before, rules, now)
                    continue
            full.append(key)
        if full:
            skip = {a.id for key in full for a in (fresh.get(key, ()) if fresh else ())}
            assertions = self._assertions(conn, kind, full, skip)
            for key in full:
                found = assertions.get(key, [])
                if fresh and key in fresh:
                    found.extend(fresh[key])
                s = settle(kind, found, decisions.get(key, ()), rules)
                self._plan_golden(plan, done, kind, key, s.values, s.sources, s.deleted_by, old.get(key), rules, now)
                for attribute, conflicting in s.conflicts.items():
                    held = open_conflicts.pop((key, attribute), None)
                    if held is None:
                        plan.new_conflicts.append((key, attribute, conflicting))
                    elif held[1] != conflicting:
                        plan.changed_conflicts.append((held[0], conflicting))
        plan.closed_conflicts = [cid for cid, _ in open_conflicts.values()]
        done.opened = len(plan.new_conflicts)
        self._write(conn, kind, plan, now)
        return done

    @staticmethod
    def _plan_golden(plan: _Plan, done: _Refreshed, kind: str, key: str, values: Mapping[str, str],
                     sources: Mapping[str, Sequence[Any]], deleted_by: Sequence[str], before: tuple[Any, ...] | None,
                     rules: Rules, now: datetime) -> None:
        """Plan the write of one golden record if it changed (or only its rules version did)."""
        if not values:
            if before is not None:
                plan.removals.append(key)
                done.changed += 1
            return
        attributes = ATTRIBUTES[kind]
        row = (*(values.get(a) for a in attributes),
               encode_json({a: sources[a] for a in attributes if a in sources}),
               " ".join(deleted_by) or None)
        if before is None:
            done.changed += 1
            plan.inserts.append((key, *row, rules.version, now, now))
            return
        if before[:-1] != row:
            done.changed += 1
        elif before[-1] == rules.version:
            return
        else:
            done.stamped += 1
        plan.updates.append((key, *row, rules.version, now, now))

    def _write(self, conn: Connection, kind: str, plan: _Plan, now: datetime) -> None:
        golden = t.GOLDEN[kind]
        key_column = golden.c[KEY_COLUMN[kind]]
        columns = (key_column.name, *(t.column_of(a) for a in ATTRIBUTES[kind]), "sources", "deleted_by",
                   "rules_version", "created_at", "updated_at")
        if plan.inserts:  # new keys: nobody else writes them (the key's lock is held)
            if self._pg and len(plan.inserts) > COPY_ABOVE:
                copy_rows(conn, golden.name, columns, plan.inserts)
            else:
                conn.execute(insert(golden), [dict(zip(columns, row)) for row in plan.inserts])
        if plan.updates:
            self._update(conn, golden, columns, plan.updates)
        for chunk in chunks(plan.removals):
            conn.execute(delete(golden).where(self._among(key_column, chunk)))
        if plan.new_conflicts:
            created = conn.execute(
                insert(t.conflict).returning(t.conflict.c.id, sort_by_parameter_order=True),
                [{"kind": kind, "key": key, "attribute": attribute, "status": "open", "opened_at": now, "updated_at": now}
                 for key, attribute, _ in plan.new_conflicts]).scalars().all()
            self._conflict_values(conn, zip(created, (found for _, _, found in plan.new_conflicts)))
        if plan.changed_conflicts:
            ids = [cid for cid, _ in plan.changed_conflicts]
            conn.execute(delete(t.conflict_value).where(t.conflict_value.c.conflict_id.in_(ids)))
            conn.execute(update(t.conflict).where(t.conflict.c.id.in_(ids)).values(updated_at=now))
            self._conflict_values(conn, plan.changed_conflicts)
        if plan.closed_conflicts:
            conn.execute(update(t.conflict).where(t.conflict.c.id.in_(plan.closed_conflicts)).values(
                status="resolved", resolution="agreed", resolved_by=_SYSTEM, resolved_at=now, updated_at=now,
                reason="the trusted departments no longer disagree"))

    @staticmethod
    def _conflict_values(conn: Connection, conflicts: Iterable[tuple[int, tuple[tuple[str, str, int], ...]]]) -> None:
        rows = [{"conflict_id": cid, "department": d, "value": v, "assertion_id": a} for cid, found in conflicts
                for d, v, a in found]
        if rows:
            conn.execute(insert(t.conflict_value), rows)

    def _update(self, conn: Connection, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Update golden rows by key (columns[0]); created_at is kept."""
        key = columns[0]
        changing = [c for c in columns if c not in (key, "created_at")]
        if self._pg and len(rows) > COPY_ABOVE:
            stage = f"{table.name}_stage"
            conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS")
            copy_rows(conn, stage, columns, rows)
            # an upsert, not UPDATE ... FROM: the planner knows nothing of the staging table and
            # would scan the golden table; ON CONFLICT goes through the key's index row by row
            conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {stage} "
                f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in changing)}")
            conn.exec_driver_sql(f"TRUNCATE {stage}")
            return
        conn.execute(update(table).where(table.c[key] == bindparam(f"_{key}")).values(
            {c: bindparam(f"_{c}") for c in changing}), [{f"_{c}": v for c, v in zip(columns, row)} for row in rows])


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into `table` within the connection's transaction (psycopg)."""
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
