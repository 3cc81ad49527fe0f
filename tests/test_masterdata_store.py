"""The base libraries' store (masterdata.store): survivorship, idempotency, delivery order,
deletes, rule changes, conflicts and stewardship, candidates and findings — on SQLite and on
PostgreSQL, through MasterData's public interface and the tables it fills."""

from __future__ import annotations

import json
import random
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, delete, func, select

from bus.db import alembic_config, make_engine
from bus.errors import ConfigError
import masterdata.refresh
from masterdata import tables as t
from masterdata.identifiers import credit_check_char, id_check_digit, organization_check_char
from masterdata.model import ENTITY, PERSON, Record
from masterdata.rules import DEFAULT_RULES, load_rules, parse_rules
from masterdata.store import COPY_ABOVE, MasterData, StewardshipError

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)


def migrate_masterdata(engine: Engine) -> None:
    """Create the masterdata tables by their migration (whether or not the `govbus.migrations`
    entry point is installed yet)."""
    with engine.begin() as conn:
        config = alembic_config(conn)
        locations = config.get_main_option("version_locations") or ""
        if str(t.MIGRATIONS) not in locations.split():
            config.set_main_option("version_locations", f"{locations} {t.MIGRATIONS}")
        command.upgrade(config, "masterdata@head")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    url = f"sqlite:///{tmp_path / 'govbus.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate_masterdata(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def md(engine: Engine) -> MasterData:
    return MasterData(engine)


def pid(seq: str = "123", born: str = "19850312", division: str = "440402") -> str:
    """A valid identity number; an odd 17th digit (seq[-1]) is a man."""
    body = division + born + seq
    return body + id_check_digit(body)


def credit(org8: str, division: str = "440400") -> str:
    """A valid unified social credit code of an enterprise (91) with organisation code org8."""
    body = "91" + division + org8 + organization_check_char(org8)
    return body + credit_check_char(body)


_counter = iter(range(10**9))


def rec(department: str, key: str | None, values: dict[str, str] | None = None, *, hours: float = 0,
        kind: str = PERSON, deleted: bool = False, message: str | None = None, position: int = 0) -> Record:
    n = next(_counter)
    return Record(kind, key, department, f"{department}-{n}", T0 + timedelta(hours=hours),  # type: ignore[arg-type]
                  message or f"msg-{department}-{n}", position, values or {}, deleted)


def golden_state(engine: Engine) -> dict[str, Any]:
    """The stored golden records (values and, per attribute, the department and its record id)
    and the open conflicts, without anything that depends on arrival (ids, times)."""
    with engine.connect() as conn:
        records = {i: (d, s) for i, d, s in conn.execute(
            select(t.assertion.c.id, t.assertion.c.department, t.assertion.c.source_record_id))}
        state: dict[str, Any] = {}
        for kind, table in t.GOLDEN.items():
            key = next(iter(table.primary_key.columns)).name
            for row in conn.execute(select(table)).mappings():
                sources = {a: records[ref] if d != "steward" else (d,) for a, (d, ref, *_) in json.loads(row["sources"]).items()}
                values = {c: row[c] for c in row.keys() if c not in (key, "sources", "created_at", "updated_at", "rules_version")}
                state[f"{kind}:{row[key]}"] = (values, sources)
        conflicts = set()
        c, v = t.conflict.c, t.conflict_value.c
        rows = conn.execute(select(c.id, c.key, c.attribute, v.department, v.value, v.assertion_id)
                            .join(t.conflict_value, v.conflict_id == c.id).where(c.status == "open"))
        grouped: dict[tuple[int, str, str], list[tuple[str, str, str]]] = {}
        for cid, key, attribute, department, value, assertion_id in rows:
            grouped.setdefault((cid, key, attribute), []).append((department, value, records[assertion_id][1]))
        for (_, key, attribute), found in grouped.items():
            conflicts.add((key, attribute, tuple(sorted(found))))
        state["conflicts"] = conflicts
    return state


def table_dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every masterdata table, in primary-key order."""
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
                for name, table in t.metadata.tables.items()}


def wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(t.metadata.sorted_tables):
            conn.execute(delete(table))


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


# --- survivorship ------------------------------------------------------------------------------


def test_survivorship_goes_by_rank_then_recency_then_department_code(md: MasterData) -> None:
    person, twin = pid("123"), pid("135")
    entity = credit("60003734")
    applied = md.apply([
        rec("GA", person, {"Name": "陈志强", "Address": "广东省珠海市香洲区凤凰北路88号"}),
        rec("MZ", person, {"Name": "陈志强", "MaritalStatus": "20"}, hours=48),  # newer, ranked after GA
        rec("RS", person, {"Phone": "13800001111"}, hours=1),  # Phone ranks nobody: the most recent wins
        rec("JS", person, {"Phone": "13900002222"}, hours=2),
        rec("ZJW", twin, {"Name": "王建国", "Phone": "13700003333"}, hours=5),
        rec("JS", twin, {"Phone": "13600004444"}, hours=5),  # same time: the lower department code
        rec("GSW", entity, {"Name": "珠海市海鸥电子科技有限公司", "TaxStatus": "正常"}, kind=ENTITY),
        rec("DSW", entity, {"TaxStatus": "非正常"}, hours=24, kind=ENTITY),  # tied with GSW, newer
    ])
    assert (applied.records, applied.stored, applied.golden_changed) == (8, 8, 3)

    golden = md.person(person)
    assert golden is not None and golden.rules_version == load_rules().version
    assert golden.values == {"Name": "陈志强", "Address": "广东省珠海市香洲区凤凰北路88号", "MaritalStatus": "20",
                             "Phone": "13900002222"}
    name = golden.attributes["Name"]
    assert name.source is not None and name.source.department == "GA"
    assert name.source.source_time == T0 and name.source.message_id.startswith("msg-GA-")
    assert [(d.department, d.value) for d in name.departments] == [("GA", "陈志强"), ("MZ", "陈志强")]
    assert golden.attributes["Phone"].source.department == "JS"  # type: ignore[union-attr]
    assert [d.department for d in golden.attributes["Phone"].departments] == ["JS", "RS"]

    assert md.person(twin).attributes["Phone"].source.department == "JS"  # type: ignore[union-attr]
    company = md.entity(entity)
    assert company is not None and company["TaxStatus"] == "非正常"
    assert company.attributes["TaxStatus"].source.department == "DSW"  # type: ignore[union-attr]
    # GSW and DSW are both trusted for TaxStatus: their disagreement is a conflict
    [conflict] = md.conflicts()
    assert (conflict.kind, conflict.key, conflict.attribute) == (ENTITY, entity, "TaxStatus")
    assert [(v.department, v.value) for v in conflict.values] == [("DSW", "非正常"), ("GSW", "正常")]


def test_an_older_source_time_never_overrides_a_newer_one(md: MasterData) -> None:
    person = pid()
    md.apply([rec("GA", person, {"Name": "陈志强", "Address": "珠海市香洲区梅华东路1号"}, hours=48)])
    applied = md.apply([rec("GA", person, {"Name": "陈志强", "Address": "珠海市香洲区旧地址9号"}, hours=24)])
    assert (applied.stored, applied.golden_changed) == (1, 0)
    assert md.person(person)["Address"] == "珠海市香洲区梅华东路1号"  # type: ignore[index]


# --- idempotency and delivery order -------------------------------------------------------------


def a_day_of_records() -> list[Record]:
    """Enough records for COPY on PostgreSQL, with conflicts, candidates and findings."""
    records = [rec("GA", pid(f"{i:03d}"), {"Name": f"测试人员{i}", "Sex": "1" if i % 2 else "2", "Division": "440402"},
                   message="ga-extract-1", position=i) for i in range(COPY_ABOVE + 20)]
    records += [
        rec("RS", pid("001"), {"Name": "测试人员壹"}, hours=1),  # disagrees with GA
        rec("MZ", "440402198503121230", {"Name": "测试人员1"}),  # wrong check digit
        rec("GS", "91350100M0001TGQXM", {"Name": "珠海市早期登记有限公司"}, kind=ENTITY),
    ]
    return records


def test_applying_the_same_records_again_changes_nothing(engine: Engine, md: MasterData) -> None:
    records = a_day_of_records()
    first = md.apply(records)
    assert first.stored == len(records) and first.duplicates == 0
    assert (first.conflicts_opened, first.candidates) == (1, 1)
    before = table_dump(engine)

    again = md.apply(records + records[:3])
    assert again.records == len(records) + 3
    assert (again.stored, again.assertions, again.duplicates, again.golden_changed) == (0, 0, len(records) + 3, 0)
    assert (again.conflicts_opened, again.candidates, again.findings) == (0, 0, 0)
    assert table_dump(engine) == before
    assert MasterData(engine).apply(records[:1]).duplicates == 1  # another worker's instance agrees


def test_a_record_stored_meanwhile_by_another_worker_is_not_stored_twice(engine: Engine, md: MasterData,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    records = a_day_of_records()
    md.apply(records)
    before = table_dump(engine)
    # another worker stored them between this one's check and its insert: the insert collides
    calls = []
    real = MasterData._new

    def blind(self: MasterData, conn: Any, prepared: list[Any]) -> tuple[list[Any], int]:
        calls.append(1)
        return (prepared, 0) if len(calls) == 1 else real(self, conn, prepared)

    monkeypatch.setattr(MasterData, "_new", blind)
    applied = md.apply(records)
    assert len(calls) == 2 and applied.duplicates == len(records) and applied.stored == 0
    assert table_dump(engine) == before


def test_workers_applying_the_same_keys_at_once_lose_nothing(engine: Engine) -> None:
    people = [pid(f"{i:03d}") for i in range(300)]
    MasterData(engine).apply([rec("RS", p, {"SocialInsuranceStatus": "1"}) for p in people])  # golden records exist
    police = [rec("GA", p, {"Name": f"测试人员{i}", "Address": "珠海市香洲区凤凰北路88号"}) for i, p in enumerate(people)]
    civil = [rec("MZ", p, {"Name": f"测试人员{i}", "MaritalStatus": "20"}, hours=1) for i, p in enumerate(people)]
    failures: list[BaseException] = []

    def worker(records: list[Record]) -> None:
        store = MasterData(engine)  # each worker its own instance and connections, as separate processes
        try:
            for start in range(0, len(records), 10):
                store.apply(records[start:start + 10])
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(records,)) for records in (police, civil)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    state = golden_state(engine)
    for i, p in enumerate(people):
        values, sources = state[f"person:{p}"]
        assert (values["name"], values["address"], values["marital_status"]) == (f"测试人员{i}", "珠海市香洲区凤凰北路88号", "20")
        assert sources["Name"][0] == "GA" and sources["MaritalStatus"][0] == "MZ"
    assert MasterData(engine).recompute(load_rules()) == 0


def a_history() -> list[Record]:
    """Several departments' records over time, with updates, deletes and disagreements."""
    p1, p2, p3, p4, p5 = pid("013"), pid("024"), pid("035"), pid("046"), pid("057")
    e1 = credit("70001234")
    return [
        rec("GA", p1, {"Name": "陈志强", "Address": "珠海市香洲区凤凰北路88号"}, hours=0),
        rec("GA", p1, {"Address": "珠海市香洲区梅华东路1号"}, hours=24),
        rec("MZ", p1, {"Name": "陈志强", "MaritalStatus": "20"}, hours=10),
        rec("RS", p1, {"Name": "陈志钢", "SocialInsuranceStatus": "1"}, hours=30),
        rec("GA", p2, {"Name": "李秀英"}, hours=0),
        rec("MZ", p2, {"Name": "李秀英", "MaritalStatus": "20"}, hours=5),
        rec("GA", p2, {"Name": "李秀英", "Address": "珠海市斗门区井岸镇1号"}, hours=20),
        rec("GA", p2, deleted=True, hours=50),
        rec("GA", p3, {"Name": "王建国"}, hours=0),
        rec("MZ", p3, {"MaritalStatus": "10"}, hours=2),
        rec("MZ", p3, {"MaritalStatus": "20"}, hours=3),
        rec("GA", p3, {"MaritalStatus": "10"}, hours=4),
        rec("RS", p4, {"Phone": "13500001111"}, hours=1),
        rec("ZJW", p4, {"Phone": "13700003333"}, hours=6),
        rec("JS", p4, {"Phone": "13600004444"}, hours=6),
        rec("GA", p5, {"Name": "赵丽"}, hours=0),
        rec("GA", p5, deleted=True, hours=5),
        rec("GS", e1, {"Name": "珠海市横琴新区测试有限公司", "Status": "存续"}, hours=0, kind=ENTITY),
        rec("GSW", e1, {"Name": "珠海市横琴新区测试有限公司", "TaxStatus": "正常"}, hours=1, kind=ENTITY),
        rec("DSW", e1, {"TaxStatus": "正常"}, hours=2, kind=ENTITY),
        rec("GS", e1, {"Status": "注销"}, hours=3, kind=ENTITY),
    ]


def test_any_delivery_order_gives_the_same_golden_records_and_conflicts(engine: Engine) -> None:
    history = a_history()
    MasterData(engine).apply(sorted(history, key=lambda r: r.source_time))
    expected = golden_state(engine)
    p1, p2, p3, p4 = pid("013"), pid("024"), pid("035"), pid("046")
    assert expected[f"person:{p1}"][0]["name"] == "陈志强" and expected[f"person:{p1}"][0]["address"] == "珠海市香洲区梅华东路1号"
    assert expected[f"person:{p2}"][0]["name"] == "李秀英" and expected[f"person:{p2}"][1]["Name"][0] == "MZ"
    assert expected[f"person:{p2}"][0]["address"] is None  # GA's delete came later than its address
    assert expected[f"person:{p3}"][0]["marital_status"] == "20"
    assert expected[f"person:{p4}"][0]["phone"] == "13600004444"
    assert f"person:{pid('057')}" not in expected  # deleted by its only department
    assert expected[f"entity:{credit('70001234')}"][0]["status"] == "注销"
    assert {(k, a) for k, a, _ in expected["conflicts"]} == {(p1, "Name"), (p3, "MaritalStatus")}

    for seed in (1, 2, 3):
        wipe(engine)
        shuffled = history[:]
        random.Random(seed).shuffle(shuffled)
        store = MasterData(engine)
        chooser = random.Random(seed)
        while shuffled:
            size = chooser.randint(1, 4)
            store.apply(shuffled[:size])
            shuffled = shuffled[size:]
        assert golden_state(engine) == expected, f"order of seed {seed}"


def test_folding_new_records_in_agrees_with_recomputing_everything(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    folded = []
    real = masterdata.refresh.advance
    monkeypatch.setattr(masterdata.refresh, "advance", lambda *args: folded.append(real(*args)) or folded[-1])
    chance = random.Random(7)
    people = [pid(f"{i:03d}") for i in range(12)]
    pools = {"Name": ["陈志强", "陈志钢"], "Address": ["珠海市香洲区凤凰北路88号", "珠海市香洲区梅华东路1号"],
             "MaritalStatus": ["10", "20"], "Phone": ["13800001111", "13900002222", "13700003333"],
             "SocialInsuranceStatus": ["1", "2"]}
    history = []
    for _ in range(300):
        department, key = chance.choice(["GA", "MZ", "RS", "JS", "ZJW"]), chance.choice(people)
        hours = chance.randrange(100)  # whole hours: ties happen
        if key in people[:3] and chance.random() < 0.1:
            history.append(rec(department, key, deleted=True, hours=hours))
        else:  # mostly agreeing, as departments do
            attributes = chance.sample(sorted(pools), chance.randint(1, 3))
            history.append(rec(department, key, {a: pools[a][0] if chance.random() < 0.8 else chance.choice(pools[a])
                                                 for a in attributes}, hours=hours))
    store = MasterData(engine)
    while history:
        size = chance.randint(1, 30)
        store.apply(history[:size])
        history = history[size:]
    applied = golden_state(engine)
    assert folded.count(True) > 50 and folded.count(False) > 3  # both ways were taken

    assert store.recompute(load_rules()) == 0  # settling everything again changes no golden record
    assert golden_state(engine) == applied


def test_a_delete_removes_the_departments_values_until_it_sends_newer_ones(engine: Engine, md: MasterData) -> None:
    person = pid()
    md.apply([rec("GA", person, {"Name": "陈志强", "Address": "珠海市香洲区凤凰北路88号"}, hours=0),
              rec("MZ", person, {"Name": "陈志强", "MaritalStatus": "20"}, hours=1)])
    md.apply([rec("GA", person, deleted=True, hours=240)])
    golden = md.person(person)
    assert golden is not None and golden.values == {"Name": "陈志强", "MaritalStatus": "20"}
    assert golden.attributes["Name"].source.department == "MZ"  # type: ignore[union-attr]

    late = md.apply([rec("GA", person, {"Address": "珠海市香洲区旧地址9号"}, hours=120)])  # older than the delete
    assert late.golden_changed == 0 and "Address" not in md.person(person).values  # type: ignore[union-attr]

    md.apply([rec("GA", person, {"Name": "陈志强", "Address": "珠海市金湾区三灶镇1号"}, hours=480)])
    golden = md.person(person)
    assert golden["Address"] == "珠海市金湾区三灶镇1号" and golden.attributes["Name"].source.department == "GA"  # type: ignore

    gone = md.apply([rec("MZ", person, deleted=True, hours=500), rec("GA", person, deleted=True, hours=501)])
    assert gone.golden_changed == 1 and md.person(person) is None
    assert count(engine, t.person) == 0 and count(engine, t.assertion) == 7  # every record is kept


# --- rules ---------------------------------------------------------------------------------------


def rules_with(version: str, **changes: str) -> Any:
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace('version = "2025.1"', f'version = "{version}"')
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return parse_rules(text)


def test_a_rule_change_recomputes_the_golden_records_from_the_stored_assertions(engine: Engine, md: MasterData) -> None:
    person = pid()
    md.apply([rec("GA", person, {"Name": "陈志强"}), rec("MZ", person, {"Name": "陈智强"}, hours=1)])
    assert md.person(person)["Name"] == "陈志强"  # type: ignore[index]
    assert len(md.conflicts()) == 1
    stored = count(engine, t.assertion)

    civil_first = rules_with("2025.2", **{'Name = ["GA", "MZ", "RS"]': 'Name = ["MZ", "GA"]'})
    assert md.recompute(civil_first) == 1
    golden = md.person(person)
    assert golden is not None and golden["Name"] == "陈智强" and golden.rules_version == "2025.2"
    assert golden.attributes["Name"].source.department == "MZ"  # type: ignore[union-attr]
    assert count(engine, t.assertion) == stored  # nothing reloaded from the departments
    with engine.connect() as conn:
        versions = dict(conn.execute(select(t.ruleset.c.version, t.ruleset.c.in_force)).all())
    assert versions == {"2025.1": False, "2025.2": True}

    # an instance still holding the old rules refuses to mix them in; a following one follows
    with pytest.raises(ConfigError, match="recompute"):
        MasterData(engine, load_rules()).apply([rec("RS", person, {"Name": "陈志强"})])
    assert MasterData(engine).apply([rec("RS", person, {"Name": "陈志强"}, hours=2)]).stored == 1
    with pytest.raises(ConfigError, match="new version"):
        md.recompute(rules_with("2025.2", **{'Name = ["GA", "MZ", "RS"]': 'Name = ["RS"]'}))

    # MZ no longer trusted for Name: the disagreement is no longer a conflict
    ga_only = rules_with("2025.3", **{'Name = ["GA", "MZ", "RS"]': 'Name = ["GA"]'})
    md.recompute(ga_only)
    assert md.conflicts() == [] and md.person(person)["Name"] == "陈志强"  # type: ignore[index]
    [closed] = md.conflicts(status="resolved")
    assert (closed.resolution, closed.resolved_by) == ("agreed", "masterdata")


def test_the_rules_file_is_checked() -> None:
    rules = load_rules()
    assert rules.trusted(PERSON, "Name") == {"GA", "MZ", "RS"}
    assert rules.trusted(PERSON, "Phone") == frozenset()
    assert rules.rank(ENTITY, "TaxStatus", "GSW") == rules.rank(ENTITY, "TaxStatus", "DSW") == 0
    assert rules.rank(ENTITY, "OrganizationCode", "ZJ") == 0 and rules.rank(ENTITY, "OrganizationCode", "GS") == 1
    for text, complaint in [
        ('[person]\nName = ["GA"]', "version"),
        ('version = "1"\n[people]\nName = ["GA"]', "unknown kind"),
        ('version = "1"\n[person]\nNickname = ["GA"]', "unknown attribute"),
        ('version = "1"\n[person]\nName = ["GA", ["MZ", "GA"]]', "listed twice"),
        ('version = "1"\n[person]\nName = ["公安"]', "not a department code"),
    ]:
        with pytest.raises(ConfigError, match=complaint):
            parse_rules(text)


# --- comparison and stewardship ------------------------------------------------------------------


def test_trusted_departments_that_disagree_make_one_conflict_until_they_agree(md: MasterData) -> None:
    person = pid()
    opened = md.apply([rec("GA", person, {"Name": "陈志强"}), rec("RS", person, {"Name": "陈志钢"}, hours=1)])
    assert opened.conflicts_opened == 1
    [conflict] = md.conflicts(kind=PERSON)
    assert (conflict.key, conflict.attribute, conflict.status) == (person, "Name", "open")
    assert [(v.department, v.value) for v in conflict.values] == [("GA", "陈志强"), ("RS", "陈志钢")]
    assert conflict.values[1].source.source_time == T0 + timedelta(hours=1)

    again = md.apply([rec("RS", person, {"Name": "陈志钢", "Phone": "13800001111"}, hours=2),
                      rec("JS", person, {"Name": "陈志刚"}, hours=3)])  # JS is not trusted for Name
    assert again.conflicts_opened == 0
    [same] = md.conflicts()
    assert same.id == conflict.id and [v.department for v in same.values] == ["GA", "RS"]
    assert same.values[1].source.source_time == T0 + timedelta(hours=2)
    assert md.conflict_counts() == {(PERSON, "GA", "Name"): 1, (PERSON, "RS", "Name"): 1}

    md.apply([rec("RS", person, {"Name": "陈志强"}, hours=4)])
    assert md.conflicts() == []
    [closed] = md.conflicts(status="resolved")
    assert (closed.id, closed.resolution, closed.resolved_by) == (conflict.id, "agreed", "masterdata")


def test_a_steward_resolves_a_conflict_by_choosing_a_value(md: MasterData) -> None:
    person = pid()
    md.apply([rec("GA", person, {"Name": "陈志强"}), rec("RS", person, {"Name": "陈志钢"}, hours=1)])
    [conflict] = md.conflicts()
    resolved = md.resolve(conflict.id, choose_value="陈志钢", by="数据管理员01", reason="经社保卡原件核实")
    assert (resolved.status, resolved.resolution, resolved.resolved_value) == ("resolved", "chosen", "陈志钢")
    assert (resolved.resolved_by, resolved.reason) == ("数据管理员01", "经社保卡原件核实")
    assert resolved.resolved_at is not None and resolved.decision_id is not None
    golden = md.person(person)
    assert golden is not None and golden["Name"] == "陈志钢"  # the steward's word over GA's rank
    assert golden.attributes["Name"].source is None and golden.attributes["Name"].decision_id == resolved.decision_id
    assert md.conflicts() == []

    md.apply([rec("RS", person, {"Name": "陈志钢"}, hours=5), rec("GA", person, {"Name": "陈志强"}, hours=6)])
    assert md.conflicts() == [] and md.person(person)["Name"] == "陈志钢"  # type: ignore[index]

    reopened = md.apply([rec("GA", person, {"Name": "陈智强"}, hours=7)])  # a value the steward never saw
    assert reopened.conflicts_opened == 1 and md.person(person)["Name"] == "陈智强"  # type: ignore[index]

    with pytest.raises(StewardshipError, match="already resolved"):
        md.resolve(conflict.id, choose_value="陈志强", by="数据管理员01", reason="重复")
    [new] = md.conflicts()
    with pytest.raises(StewardshipError, match="not both"):
        md.resolve(new.id, choose_value="陈志强", wrong_department="RS", by="数据管理员01", reason="两种都给")
    with pytest.raises(StewardshipError, match="why"):
        md.resolve(new.id, choose_value="陈志强", by="数据管理员01", reason=" ")
    with pytest.raises(StewardshipError, match="no conflict"):
        md.resolve(999999, choose_value="陈志强", by="数据管理员01", reason="不存在")


def test_a_steward_resolves_a_conflict_by_marking_a_department_wrong(md: MasterData) -> None:
    person = pid()
    md.apply([rec("GA", person, {"Name": "陈志强", "BirthDate": "1985-03-12"}),
              rec("MZ", person, {"Name": "陈志强", "BirthDate": "1985-03-21"}, hours=1)])
    [conflict] = md.conflicts()
    assert conflict.attribute == "BirthDate"
    with pytest.raises(StewardshipError, match="no value"):
        md.resolve(conflict.id, wrong_department="RS", by="数据管理员02", reason="核对")
    resolved = md.resolve(conflict.id, wrong_department="MZ", by="数据管理员02", reason="婚姻登记录入时日月颠倒")
    assert (resolved.resolution, resolved.wrong_department) == ("department_wrong", "MZ")
    birth = md.person(person).attributes["BirthDate"]  # type: ignore[union-attr]
    assert birth.value == "1985-03-12"
    assert [(d.department, d.counted) for d in birth.departments] == [("GA", True), ("MZ", False)]

    assert md.apply([rec("MZ", person, {"BirthDate": "1985-03-21"}, hours=2)]).conflicts_opened == 0  # same wrong value
    md.apply([rec("MZ", person, {"BirthDate": "1985-03-12"}, hours=3)])  # corrected: it counts again
    birth = md.person(person).attributes["BirthDate"]  # type: ignore[union-attr]
    assert [(d.department, d.counted) for d in birth.departments] == [("GA", True), ("MZ", True)]
    assert md.apply([rec("MZ", person, {"BirthDate": "1985-02-12"}, hours=4)]).conflicts_opened == 1
    assert md.conflict_counts(status="resolved") == {(PERSON, "GA", "BirthDate"): 1, (PERSON, "MZ", "BirthDate"): 1}


# --- identifiers: candidates and findings ----------------------------------------------------------


def test_records_without_a_valid_identity_number_become_candidates_and_findings(engine: Engine, md: MasterData) -> None:
    person = pid()
    md.apply([rec("GA", person, {"Name": "陈志强", "BirthDate": "1985-03-12", "Sex": "1", "Division": "440402"})])
    wrong_digit = person[:-1] + ("0" if person[-1] != "0" else "1")
    applied = md.apply([
        rec("MZ", wrong_digit, {"Name": "陈志强", "BirthDate": "1985-03-12", "Sex": "1", "MaritalStatus": "20"}),
        rec("RS", None, {"Name": "李秀英", "Sex": "2"}),
        rec("MZ", wrong_digit, deleted=True, hours=1),  # a delete of nobody: a finding, no candidate
    ])
    assert (applied.stored, applied.candidates, applied.findings, applied.golden_changed) == (3, 2, 3, 0)
    assert md.person(wrong_digit) is None

    first, second = md.candidates()
    assert (first.department, first.given_key, first.reasons) == ("MZ", wrong_digit, ("id_check_digit",))
    assert first.matches == (person,) and first.values["MaritalStatus"] == "20"
    assert (second.department, second.given_key, second.reasons, second.matches) == ("RS", None, ("id_missing",), ())
    assert md.finding_counts(severity="invalid") == {(PERSON, "MZ", "id_check_digit"): 2, (PERSON, "RS", "id_missing"): 1}
    assert md.person(person).values["Name"] == "陈志强"  # type: ignore[union-attr]  # never merged automatically
    assert count(engine, t.person) == 1


def test_a_fifteen_digit_or_full_width_number_is_normalised(md: MasterData) -> None:
    old = "440402850312123"  # issued before 1999
    applied = md.apply([rec("GA", old, {"Name": "王建国"}),
                        rec("MZ", "４４０４０２１９８５０３１２１２３" + pid()[-1], {"MaritalStatus": "20"})])
    assert applied.candidates == 0
    upgraded = md.person(old)
    assert upgraded is not None and upgraded.key == pid("123", born="19850312")
    assert upgraded.values == {"Name": "王建国", "MaritalStatus": "20"}
    [finding] = md.findings()
    assert (finding.code, finding.severity, finding.value) == ("id_upgraded_from_15", "warning", old)
    assert finding.expected == upgraded.key


def test_the_anomalous_credit_code_is_accepted_with_a_finding(md: MasterData) -> None:
    early = "91350100M0001TGQXM"  # issued with a check character that does not follow GB 32100
    sound = credit("60003734")
    applied = md.apply([
        rec("GS", early, {"Name": "福州市早期登记有限公司", "Status": "存续"}, kind=ENTITY),
        rec("ZJ", sound, {"OrganizationCode": "60003734-9"}, kind=ENTITY),  # not what the code embeds
        rec("GS", "91350100M0001TGQX", {"Name": "位数不足有限公司"}, kind=ENTITY),
    ])
    assert (applied.candidates, applied.golden_changed) == (1, 2)
    company = md.entity(early)
    assert company is not None and company["Status"] == "存续"
    found = {(f.department, f.code, f.severity) for f in md.findings(kind=ENTITY)}
    assert found == {("GS", "code_nonconforming_check_character", "warning"),
                     ("ZJ", "organization_code_mismatch", "mismatch"),
                     ("GS", "code_length", "invalid")}
    [mismatch] = md.findings(code="organization_code_mismatch")
    assert (mismatch.value, mismatch.expected) == ("60003734-9", "60003734-1")
    assert md.entity(sound)["OrganizationCode"] == "60003734-9"  # type: ignore[index]  # kept as the department gave it


def test_birth_date_and_sex_in_the_identity_number_are_compared_with_the_departments_own(md: MasterData) -> None:
    man = pid("123")
    md.apply([rec("GA", man, {"Name": "陈志强", "BirthDate": "1985-03-12", "Sex": "1"}),
              rec("RS", man, {"Name": "陈志强", "BirthDate": "1985-12-03", "Sex": "2"}),
              rec("JS", man, {"Sex": "9"})])  # 未说明的性别: nothing to compare
    found = {(f.department, f.code, f.value, f.expected) for f in md.findings(severity="mismatch")}
    assert found == {("RS", "birth_date_mismatch", "1985-12-03", "1985-03-12"), ("RS", "sex_mismatch", "2", "1")}


def test_records_the_store_cannot_take_are_refused_with_the_fix(md: MasterData) -> None:
    with pytest.raises(ValueError, match="unknown person attributes"):
        md.apply([rec("GA", pid(), {"Nickname": "强子"})])
    naive = Record(PERSON, pid(), "GA", "GA-1", datetime(2024, 3, 1), "m-naive", 0, {"Name": "陈志强"})
    with pytest.raises(ValueError, match="UTC"):
        md.apply([naive])


# --- the migration ---------------------------------------------------------------------------------


def test_the_migration_creates_exactly_the_tables_declared(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        ours = [d for d in compare_metadata(context, t.metadata)
                if not (d[0] == "remove_table" and d[1].name not in t.metadata.tables)]
    assert ours == []
