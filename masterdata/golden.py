"""Survivorship and comparison (比对) for one key: pure functions over its stored assertions.

`settle` turns everything the departments ever said about one person or legal entity, plus the
stewards' decisions, into the golden values, their provenance, and the conflicts: it is the
definition of the rules below. The store calls it for the keys a batch touched (unless `advance`
can do it), for every key when the rules change, and to explain one golden record.

The rules, per attribute:
1. A department's *current* value is its latest assertion of the attribute by source time (ties:
   the greater message id, then position). A delete by the department removes every assertion it
   made before the delete (by the same order); a later assertion counts again.
2. A steward's decision wins over the rules: a department marked wrong for a key and attribute
   no longer counts while it keeps the value marked wrong; a chosen value is the golden value as
   long as the trusted departments say nothing the steward did not see (a new value reopens the
   question).
3. Otherwise the golden value is the current value of the department with the best rank, then
   the most recent source time, then the lowest department code (masterdata.rules).
4. Trusted (ranked) departments whose current values differ are a conflict, unless a steward's
   chosen value is in force.
Values arrive stripped (the store strips them), so "differ" is plain inequality.

`advance` is the same computation done incrementally: it folds new assertions into a golden
record using only the record's values and each value's winning assertion, and declines (the
store then calls `settle` on everything) whenever a conflict, a decision or a delete could be
involved. It never disagrees with `settle`; the tests check that by applying histories in every
order and batching and comparing with a full recomputation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from masterdata.model import ATTRIBUTES
from masterdata.rules import UNRANKED, Ranking, Rules

CHOOSE = "choose"
WRONG = "wrong"
STEWARD = "steward"  # the `department` of a value a steward chose (department codes are upper case)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def micros(instant: datetime) -> int:
    """An aware datetime as whole microseconds since 1970 (exact: datetimes hold microseconds)."""
    return (instant - _EPOCH) // _MICROSECOND


class Assertion(NamedTuple):
    """One stored record: what one department said about one key at one time."""

    id: int
    department: str
    source_record_id: str
    source_time: datetime
    message_id: str
    position: int
    received_at: datetime
    deleted: bool
    values: Mapping[str, str]


class Decision(NamedTuple):
    """A steward's decision on one key and attribute (md_decision)."""

    id: int
    attribute: str
    action: str  # CHOOSE or WRONG
    value: str | None  # CHOOSE: the value chosen; WRONG: the value marked wrong
    department: str | None  # WRONG: the department marked wrong
    seen: frozenset[str]  # the trusted values the steward saw


class Current(NamedTuple):
    """One department's current value of one attribute."""

    department: str
    value: str
    assertion: Assertion
    counted: bool  # False: a steward marked it wrong


SourceRef = tuple  # (department, assertion id, source time as micros(), message id, position), or (STEWARD, decision id)


@dataclass(slots=True)
class Settled:
    """The outcome for one key.

    `values`: attribute -> golden value (attributes nobody asserts are absent; no values at all
    means no golden record). `sources`: attribute -> (department, assertion id, source time as
    micros(), message id, position), or (STEWARD, decision id). `conflicts`: attribute ->
    ((department, value, assertion id), ...) sorted by department. `deleted_by`: departments that
    ever deleted the key, sorted. `current`: with detail=True, attribute -> every department's
    current value, best first.
    """

    values: dict[str, str]
    sources: dict[str, SourceRef]
    conflicts: dict[str, tuple[tuple[str, str, int], ...]]
    deleted_by: tuple[str, ...] = ()
    current: dict[str, list[Current]] | None = None


def settle(kind: str, assertions: Iterable[Assertion], decisions: Sequence[Decision], rules: Rules,
           *, detail: bool = False) -> Settled:
    """Apply the survivorship rules and the comparison to every assertion made about one key."""
    deleted: dict[str, tuple[datetime, str, int]] = {}
    latest: dict[str, dict[str, tuple[tuple[datetime, str, int], str, Assertion]]] = {}
    for a in assertions:
        order = (a.source_time, a.message_id, a.position)
        department = a.department
        if a.deleted:
            if department not in deleted or deleted[department] < order:
                deleted[department] = order
            continue
        for attribute, value in a.values.items():
            per = latest.get(attribute)
            if per is None:
                latest[attribute] = {department: (order, value, a)}
            else:
                old = per.get(department)
                if old is None or old[0] < order:
                    per[department] = (order, value, a)

    wrong: dict[str, set[tuple[str | None, str | None]]] = {}
    chosen: dict[str, Decision] = {}
    for d in decisions:
        if d.action == WRONG:
            wrong.setdefault(d.attribute, set()).add((d.department, d.value))
        elif d.attribute not in chosen or chosen[d.attribute].id < d.id:
            chosen[d.attribute] = d

    settled = Settled({}, {}, {}, tuple(sorted(deleted)), {} if detail else None)
    rankings = rules.rankings(kind)
    when: dict[int, int] = {}  # assertion id -> micros(source time), computed once
    for attribute in ATTRIBUTES[kind]:
        per = latest.get(attribute)
        if not per:
            continue
        ranking = rankings.get(attribute, UNRANKED)
        ranks, unranked, trusted_departments = ranking.by_department, ranking.unranked, ranking.trusted
        marked = wrong.get(attribute)
        best: Assertion | None = None
        best_value = ""
        best_rank = 0
        trusted: dict[str, tuple[str, Assertion]] | None = None
        for department, (order, value, a) in per.items():
            if deleted and department in deleted and order < deleted[department]:
                continue
            if marked and (department, value) in marked:
                continue
            if department in trusted_departments:
                if trusted is None:
                    trusted = {}
                trusted[department] = (value, a)
            rank = ranks.get(department, unranked)
            # best rank, then the most recent, then the lowest department code
            if best is None or rank < best_rank or (rank == best_rank and (
                    a.source_time > best.source_time
                    or (a.source_time == best.source_time and department < best.department))):
                best, best_value, best_rank = a, value, rank
        if detail:
            settled.current[attribute] = _shown(per, deleted, marked, ranking)  # type: ignore[index]
        if best is None:
            continue
        decision = chosen.get(attribute)
        if decision is not None and decision.value is not None and (trusted is None or all(
            v in decision.seen or v == decision.value for v, _ in trusted.values()
        )):
            settled.values[attribute] = decision.value
            settled.sources[attribute] = (STEWARD, decision.id)
            continue
        settled.values[attribute] = best_value
        at = when.get(best.id)
        if at is None:
            at = when[best.id] = micros(best.source_time)
        settled.sources[attribute] = (best.department, best.id, at, best.message_id, best.position)
        if trusted is not None and len(trusted) > 1 and len({v for v, _ in trusted.values()}) > 1:
            settled.conflicts[attribute] = tuple((d, v, a.id) for d, (v, a) in sorted(trusted.items()))
    return settled


def _shown(per: Mapping[str, tuple[tuple[datetime, str, int], str, Assertion]],
           deleted: Mapping[str, tuple[datetime, str, int]], marked: set[tuple[str | None, str | None]] | None,
           ranking: Ranking) -> list[Current]:
    """Every department's current value of one attribute, in survivorship order."""
    shown = [(ranking.rank(d), -a.source_time.timestamp(), d, Current(d, value, a, not (marked and (d, value) in marked)))
             for d, (order, value, a) in per.items() if not (d in deleted and order < deleted[d])]
    return [c for *_, c in sorted(shown, key=lambda s: s[:3])]


def advance(kind: str, values: dict[str, str], sources: dict[str, SourceRef], fresh: Iterable[Assertion],
            rules: Rules) -> bool:
    """Fold new assertions into a golden record's `values` and `sources` (settle's), in place.

    Only for a key with no decision, no open conflict and no delete ever, and `fresh` without
    deletes: then every trusted department's current value equals the golden value, which lets
    the winner alone decide. Returns False, leaving `values` and `sources` half-updated, as soon
    as a new value could make or change a conflict: the caller must then settle() the key.
    """
    rankings = rules.rankings(kind)
    for a in fresh:
        department = a.department
        at = micros(a.source_time)
        for attribute, value in a.values.items():
            won = sources.get(attribute)
            if won is None:  # nobody ever asserted it (no delete, no decision): the first value wins
                values[attribute] = value
                sources[attribute] = (department, a.id, at, a.message_id, a.position)
                continue
            ranking = rankings.get(attribute, UNRANKED)
            trusted = ranking.trusted
            same = value == values[attribute]
            if won[0] == department:
                if (at, a.message_id, a.position) < (won[2], won[3], won[4]):
                    continue  # older than the department's own current value
                if not same and department in trusted:
                    return False  # it may now disagree with the other trusted departments
            else:
                if not same and department in trusted and won[0] in trusted:
                    return False  # a disagreement between trusted departments: a conflict
                rank, best = ranking.rank(department), ranking.rank(won[0])
                # if the new assertion beats the winner it is its department's current value:
                # a newer one of the department would have beaten the winner before
                if not (rank < best or (rank == best and (at > won[2] or (at == won[2] and department < won[0])))):
                    continue
            values[attribute] = value
            sources[attribute] = (department, a.id, at, a.message_id, a.position)
    return True
