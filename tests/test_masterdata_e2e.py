"""The base libraries end to end, on RabbitMQ and PostgreSQL (issue 6): five departments'
extracts, written by the synthetic generator (examples/masterdata), are loaded through the bus
with the bulk loader as each department would load them; the golden records, the conflicts,
the invalid identifiers, the anomalies and the statistics must be exactly what the generator
planted; replaying every message changes nothing; and the same extracts, cut into other
batches and delivered in a shuffled order into a fresh platform, give the same result.

Routing: 公安 GA-001, 民政 MZ-001 and 人社 RS-001 (person) go to RKK (人口库); 工商 GS-001 and
国税 GSW-001 (legal entity) to FRK (法人库); both take their deliveries through the
`masterdata` outbound, into one store.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import kombu
import pytest
from sqlalchemy import func, select

from bus.app import Context, open_context
from bus.broker import Broker, publish_confirmed
from bus.deadletter import dead_letter
from bus.worker import Worker
from masterdata import tables as t
from masterdata.bulk import BulkLoad
from masterdata.model import ENTITY, KEY_OF, KINDS, PERSON
from masterdata.queries import Queries
from masterdata.rules import load_rules
from masterdata.store import MasterData
from masterdata.views import KEY_COLUMN, Golden
from tests.conftest import ROOT, make_settings, running, wait_until

# A population small enough to load twice in seconds, with every kind of planted problem
# (checked by test_the_dataset_plants_every_kind_of_problem, so that no check here is vacuous).
DATASET = {"people": 300, "entities": 60, "seed": 2, "conflict_share": 0.1, "bad_id_share": 0.06, "anomalies": 2}
REFERENCE_DATE = date(2024, 12, 31)  # the generator's statistics are taken on this day
RESOURCE = {"GA": "GA-001", "MZ": "MZ-001", "RS": "RS-001", "GS": "GS-001", "GSW": "GSW-001"}
KIND_OF = {"GA": PERSON, "MZ": PERSON, "RS": PERSON, "GS": ENTITY, "GSW": ENTITY}
LIBRARY = {PERSON: "RKK", ENTITY: "FRK"}
ANOMALY = "code_nonconforming_check_character"
ROUTES = (ROOT / "examples" / "masterdata" / "routes.toml").read_text(encoding="utf-8")


def _load_generator() -> ModuleType:
    """examples/masterdata/generate.py, loaded by path as tests/test_generator.py does."""
    spec = importlib.util.spec_from_file_location("masterdata_example_generate", ROOT / "examples" / "masterdata" / "generate.py")
    assert spec and spec.loader
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _load_generator().generate(tmp_path_factory.mktemp("synthetic"), **DATASET)


# -- the platform ----------------------------------------------------------------------------------


def open_platform(amqp_url: str, pg_url: str, folder: Path) -> Context:
    """A platform on its own vhost and database, with the base libraries subscribed."""
    routes = folder / "routes.toml"
    routes.write_text(ROUTES, encoding="utf-8")
    return open_context(make_settings(amqp_url, folder, database_url=pg_url, routes=routes))


def load(context: Context, extracts: Sequence[tuple[str, Path]], batch: int, *, restart: bool = False) -> int:
    """Load each (department, CSV file) through the bus in turn, as `govbus masterdata load`
    does; return the number of batch messages published."""
    batches = 0
    for department, path in extracts:
        report = BulkLoad(context, path, department=department, resource=RESOURCE[department], batch=batch,
                          restart=restart).run()
        assert report.complete and not report.rejected, (path, report.rejected[:3])
        batches += report.batches
    return batches


def assertions(context: Context) -> int:
    with context.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t.assertion)).scalar_one()


def dead_letters(context: Context) -> list[str]:
    with context.engine.connect() as conn:
        return [f"{r.stage} {r.reason}: {r.reason_text}" for r in conn.execute(select(dead_letter)).all()]


def wait_applied(context: Context, records: int) -> None:
    """Until the store holds one assertion row per record sent; fails at once on a dead letter."""
    wait_until(lambda: assertions(context) >= records or dead_letters(context), timeout=45,
               message=f"{records} records applied")
    assert dead_letters(context) == []
    assert assertions(context) == records


def rows(truth: Any, department: str) -> list[dict[str, str]]:
    with open(truth.path(department), encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# -- what the base libraries hold --------------------------------------------------------------------


@dataclass
class Observed:
    """Everything a user can read from the base libraries, through MasterData and Queries."""

    golden: dict[str, dict[str, Golden]]
    conflicts: list[Any]
    candidates: list[Any]
    findings: list[Any]
    population: dict[str, Any]
    entities: dict[str, Any]
    departments: list[dict[str, Any]]
    assertions: int


def observe(context: Context) -> Observed:
    store = MasterData(context.engine)
    queries = Queries(context.engine, store)
    golden: dict[str, dict[str, Golden]] = {}
    with context.engine.connect() as conn:
        keys = {kind: conn.execute(select(t.GOLDEN[kind].c[KEY_COLUMN[kind]])).scalars().all() for kind in KINDS}
    for kind in KINDS:
        read = store.person if kind == PERSON else store.entity
        golden[kind] = {key: read(key) for key in keys[kind]}
    return Observed(golden, store.conflicts(status=None), store.candidates(status=None), store.findings(),
                    queries.population(at=REFERENCE_DATE), queries.entities(), queries.departments(), assertions(context))


def check_against_truth(seen: Observed, truth: Any) -> None:
    """Every planted fact is in the base libraries, and nothing else is."""
    extract = {d: rows(truth, d) for d in KIND_OF}
    by_key = {d: {r[KEY_OF[KIND_OF[d]]]: r for r in extract[d]} for d in KIND_OF}
    invalid = {(i.department, i.source_record_id): i for i in truth.invalid_identifiers}

    # golden records: every attribute's value, and its provenance: the first-ranked holder's record
    for kind in KINDS:
        expected, holders = truth.golden(kind), truth.holders(kind)
        assert set(seen.golden[kind]) == set(expected), f"{kind} golden keys differ from the truth"
        for key, want in expected.items():
            golden = seen.golden[kind][key]
            assert golden is not None and golden.values == want, (kind, key, golden and golden.values, want)
            for attribute, value in golden.attributes.items():
                first = next(d for d in truth.ranks[kind][attribute] if d in holders[key])
                record = by_key[first][key]
                source = value.source
                assert source is not None, (kind, key, attribute, "chosen by a steward")
                assert (source.department, source.source_record_id, source.source_time) == (
                    first, record["SourceRecordId"], datetime.fromisoformat(record["RecordUpdatedAt"])), (kind, key, attribute)
                assert {d.department: d.value for d in value.departments} == {
                    d: by_key[d][key][attribute] for d in holders[key] if attribute in by_key[d][key]}, (kind, key, attribute)

    # conflicts: exactly the planted ones, open, with every holder's value and its record
    assert all(c.status == "open" for c in seen.conflicts)
    found = {(c.kind, c.key, c.attribute): {v.department: v.value for v in c.values} for c in seen.conflicts}
    planted = {(c.kind, c.key, c.attribute): c.values for c in truth.conflicts}
    assert len(found) == len(seen.conflicts), "one conflict per key and attribute"
    assert set(found) - set(planted) == set(), "conflicts the generator did not plant"
    assert set(planted) - set(found) == set(), "planted conflicts the base libraries missed"
    assert found == planted
    for c in seen.conflicts:
        assert {v.department: v.source.source_record_id for v in c.values} == {
            v.department: by_key[v.department][c.key]["SourceRecordId"] for v in c.values}

    # invalid identifiers: a finding and a review candidate for each planted record, nothing else
    flagged: dict[tuple[str, str], set[str]] = {}
    for f in seen.findings:
        if f.severity == "invalid":
            mark = (f.department, f.source.source_record_id)
            flagged.setdefault(mark, set()).add(f.code)
            assert mark not in invalid or f.value == invalid[mark].value, f
    assert set(flagged) == set(invalid)
    assert all(i.reason in flagged[mark] for mark, i in invalid.items()), "planted reasons among the findings"
    candidates = {(c.department, c.source.source_record_id): c for c in seen.candidates}
    assert set(candidates) == set(invalid)
    for mark, i in invalid.items():
        c = candidates[mark]
        assert (c.kind, c.given_key, c.status) == (i.kind, i.value, "open"), (mark, c)
        assert i.reason in c.reasons and i.true_key in c.matches, (mark, c.reasons, c.matches, i.true_key)

    # the known anomaly: accepted (golden records above) with a warning finding per holder, never invalid
    warnings = {(f.key, f.department) for f in seen.findings if f.severity == "warning"}
    assert {f.code for f in seen.findings if f.severity == "warning"} <= {ANOMALY}
    assert warnings == {(a.code, d) for a in truth.anomalies for d in a.departments}
    assert all(f.expected == f.key for f in seen.findings if f.code == ANOMALY)

    # birth dates that disagree with the identity number: the planted ones, nothing else
    mismatches = {(f.department, f.key, f.attribute, f.value, f.expected) for f in seen.findings if f.severity == "mismatch"}
    assert mismatches == {(m.department, m.key, m.attribute, m.value, m.from_identifier) for m in truth.id_mismatches}
    assert {f.code for f in seen.findings if f.severity == "mismatch"} == {"birth_date_mismatch"}
    assert {f.severity for f in seen.findings} == {"invalid", "warning", "mismatch"}

    # statistics on the reference date
    stats = truth.statistics
    assert seen.population == {"reference_date": REFERENCE_DATE.isoformat(), **stats["population"]}
    assert seen.entities == stats["entities"]
    departments = {d["department"]: d for d in seen.departments}
    assert set(departments) == set(stats["departments"])
    for department, want in stats["departments"].items():
        got = departments[department]
        mine = [c for c in seen.conflicts if department in {v.department for v in c.values}]
        disagreeing = sum(1 for c in mine if next(v.value for v in c.values if v.department == department)
                          != seen.golden[c.kind][c.key].values[c.attribute])
        assert {"kind": got["kind"], "records": got["records"], "invalid_identifiers": got["invalid_identifiers"],
                "valid_records": got["keys"], "conflicts": got["conflicts"], "disagreements": disagreeing} == want, department
        assert got["open_conflicts"] == want["conflicts"]
        assert got["invalid_rate"] == round(want["invalid_identifiers"] / want["records"], 6)
        assert got["conflict_rate"] == round(want["conflicts"] / want["valid_records"], 6)
    by_attribute = Counter((c.kind, c.attribute) for c in seen.conflicts)
    assert {k: {a: n for (kk, a), n in sorted(by_attribute.items()) if kk == k} for k in KINDS} == stats["conflicts"]
    assert len({f.key for f in seen.findings if f.code == ANOMALY}) == stats["anomalies"]
    assert seen.assertions == sum(e.records for e in truth.extracts.values())


# -- replaying through the broker ------------------------------------------------------------------


@dataclass
class Tap:
    """A queue bound to the base libraries' deliveries: a copy of every message they are given."""

    context: Context
    queue: str

    @classmethod
    def open(cls, context: Context) -> Tap:
        tap = cls(context, f"{context.names.prefix}.e2e-tap")
        with kombu.Connection(context.settings.broker_url) as conn:
            channel = conn.channel()
            exchange = context.names.deliver_exchange()
            channel.exchange_declare(exchange=exchange, type="direct", durable=True, auto_delete=False)
            channel.queue_declare(queue=tap.queue, durable=False, auto_delete=False)
            for library in LIBRARY.values():
                channel.queue_bind(queue=tap.queue, exchange=exchange, routing_key=library)
        return tap

    def drain(self) -> list[tuple[str, bytes, str, str | None, dict[str, Any]]]:
        """(department, body, message id, correlation id, headers) of every copy, in delivery order."""
        copies = []
        with kombu.Connection(self.context.settings.broker_url) as conn:
            channel = conn.channel()
            channel.auto_decode = False  # bodies stay bytes (FIELD-NOTES: py-amqp and utf-8)
            while (message := channel.basic_get(queue=self.queue, no_ack=True)) is not None:
                p = message.properties
                copies.append((message.delivery_info["routing_key"], message.body, p["message_id"],
                               p.get("correlation_id"), dict(p.get("application_headers") or {})))
        return copies


def redeliver(context: Context, copies: Sequence[tuple[str, bytes, str, str | None, dict[str, Any]]]) -> None:
    """Publish messages straight to the base libraries' deliver queues, as a replay does."""
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        messages = [(context.names.deliver_exchange(), department, body, message_id, correlation, headers)
                    for department, body, message_id, correlation, headers in copies]
        assert publish_confirmed(broker, broker.channel(), messages) == [None] * len(messages)
    finally:
        broker.close()


def stage_count(worker: Worker, stage: str, what: str) -> int:
    return worker.stats()[stage][what]


# -- the tests -------------------------------------------------------------------------------------


def test_the_dataset_plants_every_kind_of_problem(truth: Any) -> None:
    """The checks below are only as good as the data: each kind of planted fact occurs, and the
    store's survivorship rules rank the departments as the generator's truth does."""
    assert {(c.attribute, c.planted_by) for c in truth.conflicts} == {
        ("Name", "MZ"), ("Name", "RS"), ("BirthDate", "MZ"), ("BirthDate", "RS"), ("Name", "GSW")}
    assert {(i.department, i.reason) for i in truth.invalid_identifiers} == {
        ("MZ", "id_check_digit"), ("MZ", "id_birth_date"), ("RS", "id_check_digit"), ("RS", "id_birth_date"),
        ("GSW", "code_organization_check"), ("GSW", "code_length")}
    assert len(truth.anomalies) == 2 and any("GSW" in a.departments for a in truth.anomalies)
    assert len(truth.id_mismatches) >= 5
    # Where two departments provide an attribute, the store trusts both and ranks them as the
    # generator does (one department apiece per rank): the planted conflicts are the store's.
    rules = load_rules()
    provides = {kind: Counter(a for d, k in KIND_OF.items() if k == kind for a in truth.extracts[d].columns)
                for kind in KINDS}
    for kind in KINDS:
        for attribute, ranked in truth.ranks[kind].items():
            if provides[kind][attribute] < 2:
                continue
            tiers = [tuple(d for d in tier if d in ranked) for tier in rules.ranking(kind, attribute).tiers]
            assert [tier for tier in tiers if tier] == [(d,) for d in ranked], (kind, attribute)
            assert set(ranked) <= rules.trusted(kind, attribute), (kind, attribute)


def test_five_extracts_through_the_bus_give_what_was_planted_and_a_replay_changes_nothing(
        truth: Any, amqp_url: str, pg_url: str, tmp_path: Path) -> None:
    context = open_platform(amqp_url, pg_url, tmp_path)
    folder = tmp_path / "extracts"
    folder.mkdir()
    extracts = []
    for department in KIND_OF:  # copies: the loader writes its checkpoints beside them
        copy = folder / truth.path(department).name
        copy.write_bytes(truth.path(department).read_bytes())
        extracts.append((department, copy))
    records = sum(e.records for e in truth.extracts.values())
    tap = Tap.open(context)
    try:
        with running(context) as worker:
            batches = load(context, extracts, batch=50)
            wait_applied(context, records)
            wait_until(lambda: stage_count(worker, "deliver", "done") >= batches, message="every batch delivered")
            first = observe(context)
            check_against_truth(first, truth)

            # the departments load their extracts again from the start: the ingress knows the batches
            assert load(context, extracts, batch=50, restart=True) == batches
            wait_until(lambda: stage_count(worker, "ingress", "duplicates") >= batches, message="the repeats dropped")
            # every delivery again, straight into the base libraries' queues: the store knows the records
            copies = tap.drain()
            assert len(copies) == batches and {c[0] for c in copies} == set(LIBRARY.values())
            done = stage_count(worker, "deliver", "done")
            redeliver(context, copies)
            wait_until(lambda: stage_count(worker, "deliver", "done") >= done + batches, message="the replayed deliveries")
            assert stage_count(worker, "deliver", "duplicates") == 0  # they reached the store, which kept them once
            again = observe(context)
        assert dead_letters(context) == []
        assert again == first  # golden records with their provenance and times, conflicts, findings, statistics
    finally:
        context.engine.dispose()


def shuffled_pieces(truth: Any, folder: Path, seed: int, size: int) -> list[tuple[str, Path]]:
    """Each extract's rows shuffled and cut into pieces of `size` rows (CSV files with the
    header), all departments' pieces in one shuffled order."""
    rnd = random.Random(seed)
    pieces: list[tuple[str, Path]] = []
    for department in KIND_OF:
        with open(truth.path(department), encoding="utf-8", newline="") as f:
            header, *body = list(csv.reader(f))
        rnd.shuffle(body)
        for n, start in enumerate(range(0, len(body), size)):
            path = folder / f"{department}-{n:02d}.csv"
            with open(path, "w", encoding="utf-8", newline="") as f:
                csv.writer(f).writerows([header, *body[start:start + size]])
            pieces.append((department, path))
    rnd.shuffle(pieces)
    return pieces


def placements(pieces: Sequence[tuple[str, Path]]) -> Iterator[tuple[str, str, int]]:
    """(department, key, index of the piece that carries its record) for every row loaded."""
    for index, (department, path) in enumerate(pieces):
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield department, row[KEY_OF[KIND_OF[department]]], index


def test_a_shuffled_delivery_order_gives_the_same_result(truth: Any, amqp_url: str, pg_url: str, tmp_path: Path) -> None:
    context = open_platform(amqp_url, pg_url, tmp_path)
    folder = tmp_path / "pieces"
    folder.mkdir()
    pieces = shuffled_pieces(truth, folder, seed=7, size=45)
    # the shuffle matters: for some planted conflicts the outranked department's record comes first
    at = {(d, key): i for d, key, i in placements(pieces)}
    first_ranked = {PERSON: "GA", ENTITY: "GS"}
    early = [c for c in truth.conflicts if at[(c.planted_by, c.key)] < at[(first_ranked[c.kind], c.key)]]
    assert len(early) >= 3, "the shuffle should deliver some outranked records before the first-ranked ones"
    try:
        with running(context):
            load(context, pieces, batch=17)  # other batches than the first load's 50
            wait_applied(context, sum(e.records for e in truth.extracts.values()))
            seen = observe(context)
        check_against_truth(seen, truth)  # the same truth as the load in file order
    finally:
        context.engine.dispose()
