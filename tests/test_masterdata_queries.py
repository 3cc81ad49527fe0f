"""Queries, statistics, stewardship and the applications of the base libraries, through their
real interfaces: `govbus masterdata ...` as a subprocess, the REST API on the platform's app,
and SOAP `Query` end to end on RabbitMQ (the base libraries' service answering through the
gateway). PostgreSQL throughout; the records are applied with MasterData.apply (no bus needed
to set them up).

The planted records (what each test may rely on; reference date 2024-12-31):
- persons: 陈志强 (香洲区, male, 34) whose marital status 公安 says 20 and 民政 says 21 then 40;
  黄丽娟 (斗门区, female, 39) whose birth date 人社 gives one day off; 梁国华 (金湾区, male, 52);
  陈小雨 (香洲区, female, 17 on the reference date, 18 a day later); 黄志远 (斗门区, male, exactly
  18); 梁伯 (金湾区, no sex or birth date given: read from the identity number, male, 74); one
  人社 record with a wrong check digit (a candidate for 陈志强);
- legal entities: 海鸥电子 (存续 in 2019, 吊销 in 2022, an old 存续 record delivered last; 国税
  spells its name differently; 质监 gives its organisation code); 港湾物流 (no disagreement);
  an early code with a non-conforming check character (accepted, with a finding); one 国税
  record with an invalid code (a candidate for 港湾物流).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import zeep.exceptions
from fastapi.testclient import TestClient
from lxml import etree

from adapters.gateway.credentials import CredentialStore
from bus.app import Context, open_context
from bus.http import create_app
from bus.query import Query
from bus.routing import Department, Resource, Route, RoutingTable
from catalog_registry.service import service_of
from masterdata.identifiers import check_credit_code, credit_check_char, organization_check_char
from masterdata.model import Record
from masterdata.store import MasterData
from schemas.registry import XSD_ROOT
from tests.conftest import DATA, make_settings, wait_until
from tests.samples import credit_code, id_number
from tests.test_gateway_soap import serving

GOVBUS = Path(sys.executable).parent / "govbus"
ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {  # what setup.cfg declares for the base libraries
    "govbus.migrations": ("masterdata", "masterdata.tables:MIGRATIONS"),
    "govbus.commands": ("masterdata", "masterdata.cli:masterdata"),
    "govbus.http": ("masterdata", "masterdata.api:install"),
    "govbus.services": ("masterdata", "masterdata.service:run"),
}
MD = "{urn:zhuhai:govbus:masterdata}"
P = "{urn:zhuhai:govbus:person}"
LE = "{urn:zhuhai:govbus:legal-entity}"

CHEN = id_number("440402", "19900307", 231)
HUANG = id_number("440403", "19851122", 118)
LIANG = id_number("440404", "19720615", 305)
LIANG_15 = "440404720615305"
CHILD = id_number("440402", "20070101", 122)
ADULT = id_number("440403", "20061231", 141)
ELDER = id_number("440404", "19500101", 113)
CHEN_TYPO = CHEN[:-1] + ("0" if CHEN[-1] != "0" else "1")  # wrong check digit


def entity_code(division: str, organization: str) -> str:
    body = f"91{division}{organization}{organization_check_char(organization)}"
    return body + credit_check_char(body)


HAIOU = credit_code("91440400MA4UH3C25")
GANG = entity_code("440403", "MA51XK7Q")
EARLY = "91350100M0001TGQXM"  # issued with a non-conforming check character
HAIOU_NAME, HAIOU_TAX_NAME = "珠海市海鸥电子科技有限公司", "珠海海鸥电子科技有限公司"
HAIOU_ORG = check_credit_code(HAIOU).organization_code
GANG_TYPO = GANG[:16] + ("8" if GANG[16] != "8" else "7") + GANG[17]  # the organisation check fails: invalid


def at(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, 2, 0, tzinfo=timezone.utc)


def record(kind: str, key: str, department: str, source: str, when: datetime, **values: str) -> Record:
    return Record(kind, key, department, source, when, f"{department.lower()}-{uuid.uuid4()}", 0, values)


def plant(store: MasterData) -> dict[str, Record]:
    """Apply the records of the module docstring; the records by a name, for their message ids."""
    named = {
        "ga-chen": record("person", CHEN, "GA", "GA-0001", at(2020), Name="陈志强", Sex="1", BirthDate="1990-03-07",
                          Division="440402", MaritalStatus="20", Address="广东省珠海市香洲区凤凰北路88号"),
        "mz-chen-1": record("person", CHEN, "MZ", "MZ-2015-0412", at(2015, 6, 1), Name="陈志强", MaritalStatus="21"),
        "mz-chen-2": record("person", CHEN, "MZ", "MZ-2021-0087", at(2021, 3, 8), Name="陈志强", MaritalStatus="40"),
        "ga-huang": record("person", HUANG, "GA", "GA-0002", at(2020), Name="黄丽娟", Sex="2", BirthDate="1985-11-22",
                           Division="440403"),
        "rs-huang": record("person", HUANG, "RS", "RS-88", at(2023), Name="黄丽娟", BirthDate="1985-11-23",
                           SocialInsuranceStatus="参保缴费"),
        "ga-liang": record("person", LIANG, "GA", "GA-0003", at(2020), Name="梁国华", Sex="1", BirthDate="1972-06-15",
                           Division="440404"),
        "ga-child": record("person", CHILD, "GA", "GA-0004", at(2020), Name="陈小雨", Sex="2", BirthDate="2007-01-01",
                           Division="440402"),
        "ga-adult": record("person", ADULT, "GA", "GA-0005", at(2020), Name="黄志远", Sex="1", BirthDate="2006-12-31",
                           Division="440403"),
        "ga-elder": record("person", ELDER, "GA", "GA-0006", at(2020), Name="梁伯", Division="440404"),
        "rs-typo": record("person", CHEN_TYPO, "RS", "RS-89", at(2023), Name="陈志强", BirthDate="1990-03-07"),
        "gs-haiou-1": record("entity", HAIOU, "GS", "GS-77", at(2019), Name=HAIOU_NAME, EntityType="173",
                             LegalRepresentative="林晓梅", EstablishedOn="2015-09-18", Status="存续", Division="440402"),
        "gs-haiou-2": record("entity", HAIOU, "GS", "GS-77", at(2022, 7, 1), Name=HAIOU_NAME, Status="吊销"),
        "gsw-haiou": record("entity", HAIOU, "GSW", "GSW-5", at(2022, 8, 1), Name=HAIOU_TAX_NAME, TaxStatus="非正常"),
        "zj-haiou": record("entity", HAIOU, "ZJ", "ZJ-3", at(2018), OrganizationCode=HAIOU_ORG),
        "gs-gang": record("entity", GANG, "GS", "GS-78", at(2020, 5, 20), Name="珠海港湾物流有限公司", EntityType="159",
                          EstablishedOn="2020-05-20", Status="存续", Division="440403"),
        "gsw-gang": record("entity", GANG, "GSW", "GSW-6", at(2021), Name="珠海港湾物流有限公司", TaxStatus="正常"),
        "gs-early": record("entity", EARLY, "GS", "GS-12", at(2016), Name="珠海早期贸易公司", EntityType="190",
                           EstablishedOn="1998-04-01", Status="注销", Division="440404"),
        "gsw-typo": record("entity", GANG_TYPO, "GSW", "GSW-7", at(2021), Name="珠海港湾物流有限公司", TaxStatus="正常"),
    }
    late = {"gs-haiou-0": record("entity", HAIOU, "GS", "GS-77", at(2017), Name=HAIOU_NAME, Status="存续")}
    store.apply(list(named.values()))
    store.apply(list(late.values()))  # delivered last, older than the rest: takes its place by source time
    return {**named, **late}


@pytest.fixture(scope="module")
def site() -> Path:
    """The installed govbus declares the base libraries' entry points, so that `govbus serve`
    and the CLI find them; yields what the subprocesses put on PYTHONPATH."""
    missing = {group: entry for group, entry in ENTRY_POINTS.items()
               if entry[0] not in {ep.name for ep in entry_points(group=group)}}
    assert not missing, f"setup.cfg does not declare {missing}"
    return ROOT


@pytest.fixture
def library(site: Path, pg_url: str, tmp_path: Path) -> Iterator[tuple[Context, dict[str, Record]]]:
    """A platform context on its own PostgreSQL database, with the planted records applied."""
    context = open_context(make_settings("memory://", tmp_path, database_url=pg_url))
    try:
        yield context, plant(MasterData(context.engine))
    finally:
        context.engine.dispose()


def govbus(context: Context, site: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), GOVBUS_DATABASE_URL=context.settings.database_url,
               GOVBUS_DATA_DIR=str(context.settings.data_dir))
    if user:
        env["GOVBUS_USER"] = user
    return subprocess.run([str(GOVBUS), "masterdata", *args], env=env, capture_output=True, text=True, timeout=60)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- the command line ---------------------------------------------------------------------------


def test_a_person_is_looked_up_by_any_form_of_the_number_with_provenance(library, site) -> None:
    context, records = library
    # full-width digits and the old 15-digit number both find 梁国华's 18-digit record
    shown = govbus(context, site, "person", "４４０４０４" + LIANG_15[6:])
    assert shown.returncode == 0, shown.stderr
    assert f"公民身份号码 {LIANG}" in shown.stdout and "梁国华" in shown.stdout and "440404 金湾区" in shown.stdout
    assert "GA-0003" in shown.stdout and records["ga-liang"].message_id in shown.stdout  # provenance in the table

    found = as_json(govbus(context, site, "person", CHEN, "--json"))
    assert (found["key"], found["values"]["MaritalStatus"]) == (CHEN, "40")
    marital = next(a for a in found["attributes"] if a["attribute"] == "MaritalStatus")
    assert marital["source"] == {"department": "MZ", "source_record_id": "MZ-2021-0087",
                                 "source_time": "2021-03-08T10:00:00+08:00",  # China time
                                 "message_id": records["mz-chen-2"].message_id,
                                 "received_at": marital["source"]["received_at"]}
    assert [(d["department"], d["value"]) for d in marital["departments"]] == [("MZ", "40"), ("GA", "20")]

    wrong = govbus(context, site, "person", CHEN_TYPO)
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.strip().splitlines() == [f"govbus: error: '{CHEN_TYPO}' is not a valid identity number "
                                                 "(GB 11643): id_check_digit; check the number as written on the document"]
    unknown = govbus(context, site, "person", id_number("440402", "19991231", 999))
    assert unknown.returncode == 1 and "no person with 公民身份号码" in unknown.stderr


def test_search_by_name_is_a_paged_substring_match(library, site) -> None:
    context, _ = library
    first = as_json(govbus(context, site, "search", "陈", "--size", "1", "--json"))
    second = as_json(govbus(context, site, "search", "陈", "--size", "1", "--page", "2", "--json"))
    assert (first["total"], second["total"]) == (2, 2)
    assert [m["Name"] for m in first["matches"] + second["matches"]] == ["陈小雨", "陈志强"]
    table = govbus(context, site, "search", "港湾", "--kind", "entity")
    assert table.returncode == 0, table.stderr
    assert "共 1 条" in table.stdout and GANG in table.stdout and "159 其他有限责任公司" in table.stdout


def test_statistics_are_what_was_planted(library, site) -> None:
    context, _ = library
    population = as_json(govbus(context, site, "stats", "population", "--at", "2024-12-31", "--json"))
    assert population == {
        "reference_date": "2024-12-31", "total": 6,
        "by_district": {"440402": 2, "440403": 2, "440404": 2}, "by_sex": {"1": 4, "2": 2},
        "by_age_band": {"0-17": 1, "18-34": 2, "35-59": 2, "60+": 1},
        "by_district_sex_age_band": {"440402": {"1": {"18-34": 1}, "2": {"0-17": 1}},
                                     "440403": {"1": {"18-34": 1}, "2": {"35-59": 1}},
                                     "440404": {"1": {"35-59": 1, "60+": 1}}},
    }
    a_day_later = as_json(govbus(context, site, "stats", "population", "--at", "2025-01-01", "--json"))
    assert a_day_later["by_age_band"] == {"18-34": 3, "35-59": 2, "60+": 1}  # 陈小雨 turned 18

    entities = as_json(govbus(context, site, "stats", "entities", "--json"))
    assert entities == {"total": 3, "by_status": {"吊销": 1, "存续": 1, "注销": 1}, "by_type": {"159": 1, "173": 1, "190": 1},
                        "by_district": {"440402": 1, "440403": 1, "440404": 1},
                        "by_year": {"1998": 1, "2015": 1, "2020": 1}}

    departments = {(d["department"], d["kind"]): d for d in as_json(govbus(context, site, "stats", "departments", "--json"))}
    summary = {k: (d["records"], d["invalid_identifiers"], d["keys"], d["conflicts"]) for k, d in departments.items()}
    assert summary == {("GA", "person"): (6, 0, 6, 2), ("MZ", "person"): (2, 0, 1, 1), ("RS", "person"): (2, 1, 1, 1),
                       ("GS", "entity"): (5, 0, 3, 1), ("GSW", "entity"): (3, 1, 2, 1), ("ZJ", "entity"): (1, 0, 1, 0)}
    assert (departments[("RS", "person")]["invalid_rate"], departments[("GA", "person")]["conflict_rate"]) == (0.5, 0.333333)

    table = govbus(context, site, "stats", "population", "--at", "2024-12-31")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "人口统计（基准日 2024-12-31）：共 6 人"
    assert lines[1].split() == ["行政区划", "男性", "女性", "0-17岁", "18-34岁", "35-59岁", "60+岁", "合计"]
    assert lines[2].split() == ["440402", "香洲区", "1", "1", "1", "1", "0", "0", "2"]
    assert lines[-1].split() == ["合计", "4", "2", "1", "2", "2", "1", "6"]


def test_enterprise_marriage_and_tax_applications(library, site) -> None:
    context, records = library
    history = as_json(govbus(context, site, "entity", HAIOU, "--history", "--json"))
    assert history["value"] == "吊销"
    assert [(c["change"], c["value"], c["previous"], c["source_time"][:10], c["message_id"]) for c in history["changes"]] == [
        ("recorded", "存续", None, "2017-01-01", records["gs-haiou-0"].message_id),  # delivered last, placed by time
        ("changed", "吊销", "存续", "2022-07-01", records["gs-haiou-2"].message_id)]

    marriage = govbus(context, site, "marriage", CHEN)
    assert marriage.returncode == 0, marriage.stderr
    assert marriage.stdout.splitlines()[2].split() == ["40", "离婚", "MZ", "2021-03-08", "MZ-2021-0087",
                                                       records["mz-chen-2"].message_id]
    assert "2015-06-01  21 初婚" in marriage.stdout
    none = as_json(govbus(context, site, "marriage", LIANG, "--json"))
    assert (none["marital_status"], none["golden"], none["changes"]) == (None, None, [])

    facts = as_json(govbus(context, site, "entity", HAIOU, "--facts", "--json"))
    by = {f["attribute"]: f for f in facts["facts"]}
    assert by["Name"]["departments"] == {"GS": HAIOU_NAME, "GSW": HAIOU_TAX_NAME} and not by["Name"]["agree"]
    assert (by["TaxStatus"]["departments"], by["OrganizationCode"]["departments"]) == ({"GSW": "非正常"}, {"ZJ": HAIOU_ORG})
    assert [d["department"] for d in facts["departments"]] == ["GS", "GSW", "ZJ"]
    assert [(c["attribute"], c["values"]) for c in facts["conflicts"]] == [("Name", {"GS": HAIOU_NAME, "GSW": HAIOU_TAX_NAME})]

    table = govbus(context, site, "disagreements")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == "各部门信息不一致的法人：共 1 个，第 1 页"
    assert table.stdout.splitlines()[2].split()[:5] == [HAIOU, HAIOU_NAME, "1", "名称", "GS、GSW"]
    people = as_json(govbus(context, site, "disagreements", "--kind", "person", "--json"))
    assert [(e["key"], e["attributes"]) for e in people["entries"]] == sorted([(CHEN, ["MaritalStatus"]), (HUANG, ["BirthDate"])])

    # 民政 withdraws its record: it says nothing any more, the golden status falls back to
    # 公安's, and their disagreement is over
    MasterData(context.engine).apply([Record("person", CHEN, "MZ", "MZ-2021-0087", at(2023, 1, 9), "mz-withdrawn",
                                             deleted=True)])
    withdrawn = govbus(context, site, "marriage", CHEN)
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "民政（MZ）没有此人的婚姻登记信息；基础库的婚姻状况为 20 已婚（来源 GA）" in withdrawn.stdout
    assert "2023-01-09  （记录删除）  40 离婚" in withdrawn.stdout
    assert [e["key"] for e in as_json(govbus(context, site, "disagreements", "--kind", "person", "--json"))["entries"]] == [HUANG]


def test_stewards_resolve_conflicts_and_change_the_rules(library, site, tmp_path) -> None:
    context, _ = library
    conflicts = as_json(govbus(context, site, "conflicts", "list", "--kind", "person", "--json"))
    birth = next(c for c in conflicts if c["key"] == HUANG)
    nobody = govbus(context, site, "conflicts", "resolve", str(birth["id"]), "--wrong", "RS", "--reason", "以户籍登记为准")
    assert nobody.returncode == 2 and "--as USER (or GOVBUS_USER)" in nobody.stderr
    done = govbus(context, site, "conflicts", "resolve", str(birth["id"]), "--wrong", "RS", "--reason", "以户籍登记为准",
                  user="王芳")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"冲突 {birth['id']}（{HUANG} 出生日期）已处理：王芳 认定 RS 有误"
    huang = as_json(govbus(context, site, "person", HUANG, "--json"))
    born = next(a for a in huang["attributes"] if a["attribute"] == "BirthDate")
    assert [(d["department"], d["counted"]) for d in born["departments"]] == [("GA", True), ("RS", False)]
    assert [c["key"] for c in as_json(govbus(context, site, "conflicts", "list", "--kind", "person", "--json"))] == [CHEN]

    candidates = as_json(govbus(context, site, "candidates", "--json"))
    assert sorted((c["department"], c["given_key"], c["matches"]) for c in candidates) == sorted(
        [("RS", CHEN_TYPO, [CHEN]), ("GSW", GANG_TYPO, [GANG])])
    findings = as_json(govbus(context, site, "findings", "--department", "GS", "--json"))
    assert [(f["key"], f["code"], f["severity"]) for f in findings] == [(EARLY, "code_nonconforming_check_character", "warning")]

    rules = (ROOT / "masterdata" / "rules.toml").read_text(encoding="utf-8")
    changed = rules.replace('version = "2025.1"', 'version = "2025.2"').replace(
        'MaritalStatus = ["MZ", "GA"]', 'MaritalStatus = ["GA", "MZ"]')
    assert changed.count("2025.2") == 1 and 'MaritalStatus = ["GA", "MZ"]' in changed
    (tmp_path / "rules.toml").write_text(changed, encoding="utf-8")
    applied = govbus(context, site, "rules", "apply", str(tmp_path / "rules.toml"))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "规则版本 2025.2 已生效：重新计算全部基础信息，1 条发生变化"
    shown = as_json(govbus(context, site, "rules", "show", "--json"))
    assert shown["version"] == "2025.2" and shown["tiers"]["person"]["MaritalStatus"] == [["GA"], ["MZ"]]
    assert [(v["version"], v["in_force"]) for v in shown["versions"]] == [("2025.1", False), ("2025.2", True)]
    # the golden marital status now follows 公安; the marriage application still reads 民政's records
    marriage = as_json(govbus(context, site, "marriage", CHEN, "--json"))
    assert (marriage["golden"]["value"], marriage["marital_status"]) == ("20", "40")


# -- REST ---------------------------------------------------------------------------------------


def test_the_rest_api_answers_the_same_read_models(library) -> None:
    context, records = library
    # the platform's REST API logs in with catalogue users: a data steward of the platform
    service_of(context).catalog.add_user(None, "steward", "数据管理员", "platform_admin", "Zh2026-steward-check")
    client = TestClient(create_app(context))
    client.auth = ("steward", "Zh2026-steward-check")
    base = "/api/v1/masterdata"
    assert TestClient(create_app(context)).get(f"{base}/persons/{LIANG}").status_code == 401
    person = client.get(f"{base}/persons/{LIANG_15}")
    assert person.status_code == 200 and person.json()["key"] == LIANG
    name = next(a for a in person.json()["attributes"] if a["attribute"] == "Name")
    assert name["source"]["message_id"] == records["ga-liang"].message_id

    assert client.get(f"{base}/persons/{CHEN_TYPO}").json()["error"] == "invalid_identifier"
    missing = client.get(f"{base}/entities/{entity_code('440402', 'MA00000A')}")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert client.get(f"{base}/search", params={"name": "港湾", "kind": "entity"}).json()["total"] == 1
    assert client.get(f"{base}/search", params={"name": "港湾", "size": 500}).status_code == 422
    assert client.get(f"{base}/entities/{EARLY}").json()["values"]["Status"] == "注销"  # the anomaly is accepted
    assert client.get(f"{base}/statistics/population", params={"at": "2025-01-01"}).json()["by_age_band"] == {
        "18-34": 3, "35-59": 2, "60+": 1}
    assert client.get(f"{base}/persons/{CHEN}/marriage").json()["marital_status"] == "40"
    assert [h["value"] for h in client.get(f"{base}/entities/{HAIOU}/history").json()["changes"]] == ["存续", "吊销"]
    assert client.get(f"{base}/disagreements").json()["entries"][0]["key"] == HAIOU
    assert len(client.get(f"{base}/conflicts", params={"status": "all"}).json()) == 3
    assert client.post(f"{base}/conflicts", json={}).status_code == 405  # read-only


def test_the_rest_api_asks_for_credentials_when_the_app_offers_an_authenticator(library) -> None:
    context, _ = library
    app = create_app(context)
    app.state.authenticate_basic = lambda username, password: username if password == "s3cret-2025" else None
    client = TestClient(app)
    url = f"/api/v1/masterdata/persons/{CHEN}"
    anonymous = client.get(url)
    assert (anonymous.status_code, anonymous.headers["www-authenticate"]) == (401, 'Basic realm="govbus"')
    assert client.get(url, auth=("steward", "wrong")).json() == {"error": "unauthenticated",
                                                                  "message": "unknown user or wrong password"}
    assert client.get(url, auth=("steward", "s3cret-2025")).status_code == 200


# -- SOAP Query ---------------------------------------------------------------------------------

LOOKUPS = """
[departments.RKK]
name = "市人口基础信息库"

[departments.FRK]
name = "市法人基础信息库"

[departments.JS]
name = "市卫生计生委"

[resources."RKK-001"]
name = "人口基础信息查询"
provider = "RKK"
specification = "person"

[resources."FRK-001"]
name = "法人基础信息查询"
provider = "FRK"
specification = "legal-entity"

[[subscriptions]]
resource = "RKK-001"
subscriber = "JS"

[[subscriptions]]
resource = "RKK-001"
subscriber = "MZ"

[[subscriptions]]
resource = "FRK-001"
subscriber = "GSW"
"""


def test_departments_look_up_the_base_libraries_through_soap_query(site, amqp_url, pg_url, tmp_path, monkeypatch) -> None:
    import masterdata.service

    monkeypatch.setattr(masterdata.service, "WATCH_SECONDS", 0.2)
    routes = tmp_path / "routes.toml"
    routes.write_text((DATA / "routes.toml").read_text(encoding="utf-8") + LOOKUPS, encoding="utf-8")
    context = open_context(make_settings(amqp_url, tmp_path, routes=routes, database_url=pg_url))
    records = plant(MasterData(context.engine))
    secrets = {d: f"{d.lower()}-{uuid.uuid4().hex[:8]}" for d in ("JS", "MZ", "GSW", "GA")}
    credentials = CredentialStore(context.engine, context.settings.data_dir)
    for department, secret in secrets.items():
        credentials.set(department, secret, "test")
    stop = threading.Event()
    service = threading.Thread(target=masterdata.service.run, args=(context, stop), daemon=True)
    try:
        with serving(context, stages=False, secrets=secrets) as served:
            service.start()
            js = served.client("JS")

            def ask(client: Any, resource: str, criteria: str) -> etree._Element | None:
                try:
                    return etree.fromstring(client.service.Query(resource=resource, criteria=criteria).encode())
                except zeep.exceptions.Fault as error:
                    if error.code.split(":")[-1] == "Server.no_responder":
                        return None  # the service is not listening yet
                    raise

            def first(client: Any, resource: str, criteria: str) -> etree._Element:
                """The answer once the service listens (an lxml element is not to be truth-tested)."""
                answers: list[etree._Element] = []

                def answered() -> bool:
                    answer = ask(client, resource, criteria)
                    if answer is not None:
                        answers.append(answer)
                    return answer is not None

                wait_until(answered, message=f"an answer on {resource}")
                return answers[0]

            # 计生 asks for 陈志强 by the number in full-width digits
            answer = first(js, "RKK-001", "４４" + CHEN[2:])
            assert (answer.tag, answer.get("found"), answer.get("key")) == (f"{MD}Lookup", "true", CHEN)
            person = answer.find(f"{P}Person")
            assert [(etree.QName(e).localname, e.text) for e in person] == [
                ("IdNumber", CHEN), ("Name", "陈志强"), ("Sex", "1"), ("BirthDate", "1990-03-07"), ("Division", "440402"),
                ("Address", "广东省珠海市香洲区凤凰北路88号"), ("MaritalStatus", "40")]
            schema = etree.XMLSchema(etree.parse(str(XSD_ROOT / "person" / "1.1" / "person.xsd")))
            assert schema.validate(person), schema.error_log  # the specification's own record
            marital = answer.find(f"{MD}Provenance/{MD}Attribute[@name='MaritalStatus']")
            golden = marital.find(f"{MD}Golden")
            assert (golden.text, golden.get("department"), golden.get("sourceRecordId"), golden.get("messageId"),
                    golden.get("sourceTime")) == ("40", "MZ", "MZ-2021-0087", records["mz-chen-2"].message_id,
                                                  "2021-03-08T10:00:00+08:00")
            assert [(d.get("code"), d.text, d.get("counted")) for d in marital.findall(f"{MD}Department")] == [
                ("MZ", "40", "true"), ("GA", "20", "true")]

            search = ask(served.client("MZ"), "RKK-001", "name=陈&page=1&size=5")
            assert (search.tag, search.get("total")) == (f"{MD}Search", "2")
            assert [p.findtext(f"{P}Name") for p in search.findall(f"{P}Person")] == ["陈小雨", "陈志强"]
            unknown = ask(js, "RKK-001", id_number("440402", "19991231", 999))
            assert (unknown.get("found"), len(unknown)) == ("false", 0)

            entity = ask(served.client("GSW"), "FRK-001", HAIOU)
            assert entity.find(f"{LE}LegalEntity/{LE}Status").text == "吊销"
            name = entity.find(f"{MD}Provenance/{MD}Attribute[@name='Name']")
            assert [(d.get("code"), d.text) for d in name.findall(f"{MD}Department")] == [("GS", HAIOU_NAME), ("GSW", HAIOU_TAX_NAME)]

            with pytest.raises(zeep.exceptions.Fault) as invalid:
                js.service.Query(resource="RKK-001", criteria=CHEN_TYPO)
            assert invalid.value.code.split(":")[-1] == "Client.invalid_identifier" and "id_check_digit" in invalid.value.message
            with pytest.raises(zeep.exceptions.Fault) as denied:  # 公安 does not subscribe to the lookups
                served.client("GA").service.Query(resource="RKK-001", criteria=CHEN)
            assert denied.value.code.split(":")[-1] == "Client.not_authorized"

            # a lookup resource added to the routing table is answered without a restart
            routes.write_text(routes.read_text(encoding="utf-8") + '\n[resources."RKK-002"]\nname = "人口基础信息查询（婚姻）"\n'
                              'provider = "RKK"\nspecification = "person"\n\n[[subscriptions]]\nresource = "RKK-002"\n'
                              'subscriber = "JS"\n', encoding="utf-8")
            context.reload()  # as the stages do when the table changes
            again = first(js, "RKK-002", LIANG_15)
            assert again.get("key") == LIANG
    finally:
        stop.set()
        service.join(10)
        context.engine.dispose()
    assert not service.is_alive()


def test_a_field_mask_limits_what_a_lookup_answers() -> None:
    """A subscription limited to some data items gets those attributes only, and no search by
    name without the name (the answerer alone, on a table the catalogue would compile)."""
    from masterdata.service import Answerer
    from masterdata.views import DepartmentValue, Golden, GoldenValue, Source

    table = RoutingTable(
        [Department("RKK", "市人口基础信息库"), Department("JS", "市卫生计生委"), Department("MZ", "市民政局")],
        [Resource("RKK-001", "人口基础信息查询", "RKK", "person")],
        [Route("RKK-001", "JS", frozenset({"/Person/IdNumber", "/Person/MaritalStatus"})), Route("RKK-001", "MZ")])

    when = at(2021, 3, 8)
    source = Source("MZ", "MZ-2021-0087", when, "m-1", 0, when, 1)
    chen = Golden("person", CHEN, "2025.1", when, when, {
        "Name": GoldenValue("Name", "陈志强", source, None, (DepartmentValue("MZ", "陈志强", source),)),
        "MaritalStatus": GoldenValue("MaritalStatus", "40", source, None, (DepartmentValue("MZ", "40", source),))})

    class Library:  # the reads the answerer makes, as Queries gives them
        def golden(self, kind: str, key: str) -> Golden:
            assert (kind, key) == ("person", CHEN)
            return chen

        def search(self, *args: Any) -> Any:
            raise AssertionError("a search the mask forbids was run")

    answerer = Answerer(Library(), table)  # type: ignore[arg-type]
    answer = etree.fromstring(answerer.answer(Query("RKK-001", CHEN, "JS", "c-1")))
    assert [etree.QName(e).localname for e in answer.find(f"{P}Person")] == ["IdNumber", "MaritalStatus"]
    assert [a.get("name") for a in answer.find(f"{MD}Provenance")] == ["MaritalStatus"]
    full = etree.fromstring(answerer.answer(Query("RKK-001", CHEN, "MZ", "c-2")))
    assert [etree.QName(e).localname for e in full.find(f"{P}Person")] == ["IdNumber", "Name", "MaritalStatus"]
    with pytest.raises(Exception) as refused:
        answerer.answer(Query("RKK-001", "name=陈", "JS", "c-3"))
    assert getattr(refused.value, "code", None) == "not_authorized"
