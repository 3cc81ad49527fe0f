"""BENCH route-compile, route-lookup, catalog-search: the catalogue at a provincial platform's scale.

The fixture: 200 departments (40 bureaus at city level and in four districts), 5,000
information resources and 50,000 active subscriptions (plus revoked ones), inserted in bulk
with SQLAlchemy Core into a database migrated as the product migrates it (`open_context`:
Alembic, then the shipped specifications registered); a fixture, not the lifecycle API. Names
are a department's name, a subject, a qualifier and a number where needed (市公安局户籍人口信息
（月度）); resources follow the shipped specifications, so their data items exist; the mix of
statuses, unrouted (file) resources and not-shared ones is that of a real catalogue. About 10%
of subscriptions carry a field mask, a few an XPath filter. For scale: Guangdong's provincial
platform shares 1,200 table resources and 3,000 interfaces.

- route-compile: `compile_table` (what `CatalogSource.load` runs when a worker starts or the
  catalogue changes), median of several runs; raw: the same three queries' rows fetched with
  the database driver's own cursor, in the same run.
- route-lookup: the routing decision for one message as the bus makes it from headers (the
  ingress's `authorise(sender, resource)`, the router's `routes(resource)`), against a plain
  dict lookup of the same key; best of several rounds. Beside it, separately, the router
  stage's `handle` (one copy per recipient): for messages whose recipients all take the whole
  message (headers only), and for those with a masked or filtered recipient, which parses the
  payload once and masks each such copy.
- catalog-search: `SearchIndex.search` over the index the REST API and CLI build
  (`search_documents`), p50/p95/p99 of a few hundred mixed queries (exact codes, Chinese
  substrings, pinyin initials and full pinyin, typos, two words); raw: a plain substring scan
  of the names list in Python for the same queries, in the same run.

SQLite in a temporary folder by default; `--database-url postgresql+psycopg://...` names a
PostgreSQL server, on which a fresh database is created and dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from lxml import etree
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from bench.common import bench_line, percentile
from bus.app import Context, open_context
from bus.config import Settings
from bus.envelope import Envelope, build_envelope
from bus.names import Names
from bus.stage import Delivery, Forward
from catalog_registry import tables as t
from catalog_registry.resources import IN_FORCE
from catalog_registry.search import SearchIndex
from catalog_registry.service import Service, service_of
from catalog_registry.views import search_documents
from routes.catalog import CatalogSource, compile_table
from routes.router import RouterStage, mask
from schemas import SafeParser
from schemas.dictionary import data_items

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "440400"

# -- the fixture's vocabulary --------------------------------------------------------------------

# (code, name after the level) of 40 bureaus; the city's and four districts' make 200 departments.
BUREAUS = [
    ("GA", "公安局"), ("MZ", "民政局"), ("RS", "人力资源和社会保障局"), ("SW", "税务局"), ("SJ", "市场监督管理局"),
    ("ZJ", "住房和城乡建设局"), ("ZR", "自然资源局"), ("JT", "交通运输局"), ("WJ", "卫生健康局"), ("JY", "教育局"),
    ("CZ", "财政局"), ("FG", "发展和改革局"), ("SF", "司法局"), ("HJ", "生态环境局"), ("SWU", "水务局"),
    ("NY", "农业农村局"), ("SWJ", "商务局"), ("WL", "文化广电旅游体育局"), ("TJ", "统计局"), ("YJ", "应急管理局"),
    ("YB", "医疗保障局"), ("TY", "退役军人事务局"), ("GZ", "国有资产监督管理委员会"), ("AJ", "审计局"), ("XF", "信访局"),
    ("ZW", "政务服务数据管理局"), ("GJJ", "住房公积金管理中心"), ("BDC", "不动产登记中心"), ("CG", "城市管理和综合执法局"),
    ("KJ", "科技创新局"), ("GX", "工业和信息化局"), ("JR", "金融工作局"), ("MW", "民族宗教事务局"), ("DA", "档案馆"),
    ("QX", "气象局"), ("GD", "供电局"), ("GS", "供水有限公司"), ("CL", "残疾人联合会"), ("GH", "总工会"), ("FL", "妇女联合会"),
]
LEVELS = [("", "市"), ("XZ", "香洲区"), ("DM", "斗门区"), ("JW", "金湾区"), ("HQ", "横琴新区")]

# subject -> (specification or None for a file resource, classification, bureaus that provide it)
SUBJECTS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "户籍人口信息": ("person", "1.01.001", ("GA",)),
    "流动人口信息": ("person", "1.01.002", ("GA",)),
    "居住证信息": ("person", "1.01.003", ("GA",)),
    "出生登记信息": ("person", "1.01.004", ("GA", "WJ")),
    "死亡登记信息": ("person", "1.01.005", ("GA", "MZ", "WJ")),
    "残疾人信息": ("person", "1.01.006", ("CL", "MZ")),
    "低保对象信息": ("person", "2.03.001", ("MZ",)),
    "特困人员信息": ("person", "2.03.002", ("MZ",)),
    "退役军人信息": ("person", "2.03.003", ("TY",)),
    "学籍信息": ("person", "2.05.001", ("JY",)),
    "疫苗接种信息": ("person", "2.06.001", ("WJ",)),
    "就业登记信息": ("person", "2.01.005", ("RS",)),
    "职业资格证书信息": ("person", "2.01.006", ("RS",)),
    "住房公积金缴存信息": ("person", "2.07.001", ("GJJ",)),
    "困难职工信息": ("person", "2.03.004", ("GH", "FL")),
    "信访人员信息": ("person", "2.08.001", ("XF",)),
    "企业登记信息": ("legal-entity", "1.02.001", ("SJ",)),
    "个体工商户登记信息": ("legal-entity", "1.02.003", ("SJ",)),
    "企业年报信息": ("legal-entity", "1.02.004", ("SJ",)),
    "行政许可信息": ("legal-entity", "2.04.001", ()),  # () : any bureau
    "行政处罚信息": ("legal-entity", "2.04.002", ()),
    "建筑企业资质信息": ("legal-entity", "2.04.003", ("ZJ",)),
    "食品经营许可信息": ("legal-entity", "2.04.004", ("SJ",)),
    "道路运输经营许可信息": ("legal-entity", "2.04.005", ("JT",)),
    "排污许可信息": ("legal-entity", "2.04.006", ("HJ",)),
    "安全生产许可信息": ("legal-entity", "2.04.007", ("YJ",)),
    "组织机构代码信息": ("organization-code", "1.02.002", ("SJ",)),
    "事业单位登记信息": ("organization-code", "1.02.005", ("GZ", "MZ")),
    "社会组织登记信息": ("organization-code", "1.02.006", ("MZ",)),
    "社会保险参保信息": ("social-insurance", "2.01.001", ("RS",)),
    "社会保险缴费信息": ("social-insurance", "2.01.003", ("RS", "SW")),
    "医疗保险参保信息": ("social-insurance", "2.01.004", ("YB",)),
    "失业保险金发放信息": ("social-insurance", "2.01.007", ("RS",)),
    "婚姻登记信息": ("marriage-registration", "2.01.002", ("MZ",)),
    "收养登记信息": ("marriage-registration", "2.01.008", ("MZ",)),
    "纳税登记信息": ("tax-registration", "2.02.001", ("SW",)),
    "欠税信息": ("tax-registration", "2.02.002", ("SW",)),
    "纳税信用等级信息": ("tax-registration", "2.02.003", ("SW",)),
    "用电信息": ("electricity-usage", "3.01.001", ("GD",)),
    "企业用电量信息": ("electricity-usage", "3.01.003", ("GD", "GX", "TJ")),
    "用水信息": ("water-usage", "3.01.002", ("GS", "SWU")),
    "统计年鉴数据": (None, "4.01.001", ("TJ",)),
    "规划成果图件": (None, "4.02.001", ("ZR", "ZJ")),
    "政策文件汇编": (None, "4.03.001", ("ZW", "FG", "SF")),
    "财政预决算报表": (None, "4.04.001", ("CZ",)),
    "档案目录": (None, "4.05.001", ("DA",)),
    "气象观测数据": (None, "4.06.001", ("QX",)),
}
QUALIFIERS = ["", "", "", "（月度）", "（年度）", "（增量）", "（历史）", "明细", "统计"]
THEMES = {"person": "population", "legal-entity": "legal-entity", "organization-code": "legal-entity",
          "social-insurance": "social-security", "marriage-registration": "population",
          "tax-registration": "tax", "electricity-usage": "utilities", "water-usage": "utilities"}
THEME_NAMES = {"population": "人口", "legal-entity": "法人", "social-security": "社会保障", "tax": "综合治税",
               "utilities": "公用事业", "credit": "社会信用", "other": "其他"}
CYCLES = ["realtime", "daily", "daily", "weekly", "monthly", "monthly", "quarterly", "yearly", "irregular"]
CYCLES_ZH = {"realtime": "实时", "daily": "每日", "weekly": "每周", "monthly": "每月", "quarterly": "每季度",
             "yearly": "每年", "irregular": "不定期"}
# status -> share of resources; a published revision is in force for the middle three
STATUS_MIX = [("published", 0.90), ("revision_submitted", 0.03), ("deregistration_submitted", 0.01),
              ("deregistered", 0.02), ("draft", 0.03), ("submitted", 0.01)]
# content filters (XPath 1.0, the payload's namespace bound to r) per specification
FILTERS = {
    "person": ["r:Division = '440402'", "r:Sex = '2' and r:Division != '440404'", "starts-with(r:BirthDate, '19')"],
    "legal-entity": ["r:Division = '440403'", "r:Status = '存续'", "r:RegisteredCapital > 100"],
    "organization-code": ["r:Division = '440402'"],
    "social-insurance": ["r:InsuranceType = '基本养老保险'", "r:Division = '440402'"],
    "marriage-registration": ["r:RegistrationType = 'IA'"],
    "tax-registration": ["r:Division = '440404'"],
    "electricity-usage": ["r:Consumption > 1000"],
    "water-usage": ["r:Division = '440403'"],
}


# -- the database --------------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """SQLite in a temporary folder, or a fresh database on the PostgreSQL server of `url`
    (created and dropped as tests/conftest.py's pg_url does); yields its SQLAlchemy URL."""
    if not url:
        folder = tempfile.mkdtemp(prefix="govbus-bench-catalog-")
        try:
            yield f"sqlite:///{folder}/catalog.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    given = make_url(url)
    if not given.drivername.startswith("postgresql"):
        raise SystemExit(f"--database-url: PostgreSQL only (SQLite is the default), got {given.drivername}")
    admin = given.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"govbus_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield given.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _spread(rng: random.Random, total: int, slots: int, skew: float) -> list[int]:
    """`total` split over `slots` with a long tail: a few popular, most with a few."""
    weights = [1.0 / (rank + 5) ** skew for rank in range(slots)]
    rng.shuffle(weights)
    scale = total / sum(weights)
    return [w * scale for w in weights]


def build_catalogue(context: Context, *, resources: int, departments: int, subscriptions: int,
                    seed: int = 2024) -> dict[str, Any]:
    """Insert the catalogue in bulk; returns what the benchmarks need to know of it."""
    rng = random.Random(seed)
    engine, now = context.engine, datetime.now(timezone.utc)
    items_of = {spec: [i["path"] for i in data_items(context.registry.model(spec, "1.0"))]
                for spec in {s for s, _, _ in SUBJECTS.values() if s}}

    depts = []  # (code, name, bureau)
    for level_code, level_name in LEVELS:
        for code, name in BUREAUS:
            depts.append((level_code + code, level_name + name, code))
    depts = depts[:departments]
    with engine.begin() as conn:
        conn.execute(insert(t.department), [
            {"id": n, "domain": DOMAIN, "code": code, "name": name, "parent_id": None, "outbound": "inbox",
             "outbound_settings": "{}", "created_at": now} for n, (code, name, _) in enumerate(depts, 1)])
        conn.execute(insert(t.theme), [{"domain": DOMAIN, "code": c, "name": n, "description": ""}
                                       for c, n in THEME_NAMES.items()])
        shared = {}
        tree = [("基础信息资源", None), ("人口基础信息", "基础信息资源"), ("法人基础信息", "基础信息资源"),
                ("主题信息资源", None), ("社会保障", "主题信息资源"), ("综合治税", "主题信息资源"),
                ("社会信用", "主题信息资源"), ("部门信息资源", None), ("公用事业", "部门信息资源"), ("其他", "部门信息资源")]
        for position, (name, parent) in enumerate(tree):
            shared[name] = conn.execute(insert(t.directory).values(
                domain=DOMAIN, kind="shared", department_id=None, parent_id=shared.get(parent or ""), name=name,
                position=position)).inserted_primary_key[0]
        conn.execute(insert(t.directory), [
            {"domain": DOMAIN, "kind": "department", "department_id": n, "parent_id": None, "name": "部门自有目录",
             "position": 0} for n in range(1, len(depts) + 1)])
    with engine.connect() as conn:
        own = dict(conn.execute(select(t.directory.c.department_id, t.directory.c.id)
                                .where(t.directory.c.kind == "department")).all())
    folder_of = {"1.01": "人口基础信息", "1.02": "法人基础信息", "2.01": "社会保障", "2.02": "综合治税",
                 "2.04": "社会信用", "3.01": "公用事业"}

    by_bureau: dict[str, list[str]] = {}
    for subject, (_, _, bureaus) in SUBJECTS.items():
        for bureau in bureaus or [b for b, _ in BUREAUS]:
            by_bureau.setdefault(bureau, []).append(subject)
    statuses = [s for s, _ in STATUS_MIX]
    shares = [w for _, w in STATUS_MIX]
    sequence: dict[str, int] = {}
    names_seen: dict[str, int] = {}
    resource_rows, revision_rows, facts = [], [], []
    for rid in range(1, resources + 1):
        provider = rng.randrange(len(depts)) + 1
        dept_code, dept_name, bureau = depts[provider - 1]
        subject = rng.choice(by_bureau[bureau])
        spec, classification, _ = SUBJECTS[subject]
        name = dept_name + subject + rng.choice(QUALIFIERS)
        names_seen[name] = names_seen.get(name, 0) + 1
        if names_seen[name] > 1:
            name += f"（{names_seen[name]}）"
        prefix = classification.replace(".", "")
        sequence[prefix] = sequence.get(prefix, 0) + 1
        code = f"{prefix}-{sequence[prefix]:04d}"
        status = rng.choices(statuses, shares)[0]
        published = 1 if status in IN_FORCE or status == "deregistered" else None
        sharing = rng.choices(["unconditional", "conditional", "not_shared"], [0.40, 0.55, 0.05])[0]
        cycle = rng.choice(CYCLES)
        directory = own[provider] if rng.random() < 0.1 else shared[folder_of.get(classification[:4], "其他")]
        resource_rows.append({
            "id": rid, "domain": DOMAIN, "code": code, "provider_id": provider, "directory_id": directory,
            "status": status, "published_revision": published, "created_at": now, "updated_at": now})
        revision = {
            "resource_id": rid, "number": 1, "state": "published" if published else status,
            "classification": classification, "name": name,
            "abstract": f"{dept_name}{CYCLES_ZH[cycle]}更新的{subject.removesuffix('信息')}数据，供依法履职的部门共享使用。",
            "format": "XML" if spec else rng.choice(["XLSX", "PDF", "SHP"]), "sharing_type": sharing,
            "sharing_conditions": "仅限依法履行职责时使用，不得向第三方提供。" if sharing == "conditional" else "",
            "sharing_mode": "subscription" if spec else "file", "open_type": "not_open", "open_conditions": "",
            "update_cycle": cycle, "publish_date": date(2024, 1 + rid % 12, 1 + rid % 28) if published else None,
            "related_codes": "[]", "themes": json.dumps([THEMES.get(spec or "", "other")]),
            "specification": spec, "specification_version": "1.0" if spec else None,
            "created_by": "bench", "created_at": now,
        }
        revision_rows.append(revision)
        if status == "revision_submitted":  # a new revision awaits review; the first stays in force
            revision_rows.append({**revision, "number": 2, "state": "submitted", "name": name + "（修订）",
                                  "publish_date": None})
        facts.append((rid, code, provider, spec, sharing, status))

    # Subscriptions: only to shared resources in force with a specification (that is what
    # applications are granted for), a long tail of subscribers per resource; the deregistered
    # resources' subscriptions ended with them (revoked, as _deregister leaves them).
    eligible = [f for f in facts if f[3] and f[4] != "not_shared" and f[5] in IN_FORCE]
    ended = [f for f in facts if f[3] and f[4] != "not_shared" and f[5] == "deregistered"]
    wanted = _spread(rng, subscriptions, len(eligible), skew=1.1)
    counts = [min(len(depts) - 1, int(w)) for w in wanted]
    for i in rng.sample(range(len(eligible)), len(eligible)):  # the rounding's remainder, anywhere
        if sum(counts) >= subscriptions:
            break
        counts[i] = min(len(depts) - 1, counts[i] + subscriptions - sum(counts))
    subscription_rows, masked, filtered = [], 0, 0
    for (rid, _code, provider, spec, _sharing, _status), count in zip(eligible, counts):
        others = [d for d in range(1, len(depts) + 1) if d != provider]
        for subscriber in rng.sample(others, count):
            items = filter_ = None
            if rng.random() < 0.10:
                paths = items_of[spec]
                items = json.dumps(sorted(rng.sample(paths, rng.randint(2, max(2, len(paths) - 2)))))
                masked += 1
            if rng.random() < 0.005:
                filter_ = rng.choice(FILTERS[spec])
                filtered += 1
            subscription_rows.append({"resource_id": rid, "subscriber_id": subscriber, "items": items,
                                      "filter": filter_, "status": "active", "created_at": now})
    revoked = 0
    for rid, _code, provider, _spec, _sharing, _status in ended:
        for subscriber in rng.sample([d for d in range(1, len(depts) + 1) if d != provider], rng.randint(1, 10)):
            subscription_rows.append({"resource_id": rid, "subscriber_id": subscriber, "items": None, "filter": None,
                                      "status": "revoked", "created_at": now})
            revoked += 1
    rng.shuffle(subscription_rows)  # granted over years, not resource by resource
    with engine.begin() as conn:
        conn.execute(insert(t.resource), resource_rows)
        conn.execute(insert(t.revision), revision_rows)
        for i in range(0, len(subscription_rows), 10000):
            conn.execute(insert(t.subscription), [{"application_id": None, "revoked_at": None, "revoked_by": None,
                                                   "revoke_reason": None, **row}
                                                  for row in subscription_rows[i:i + 10000]])
        conn.execute(insert(t.catalog_state).values(id=1, version=1, listing_version=1))
    if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        with engine.begin() as conn:
            for table in (t.department, t.resource):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                     f"(SELECT max(id) FROM {table.name}))")
            conn.exec_driver_sql("ANALYZE")
    return {
        "departments": len(depts), "resources": len(resource_rows), "revisions": len(revision_rows),
        "active": len(subscription_rows) - revoked, "revoked": revoked, "masked": masked, "filtered": filtered,
        "facts": facts, "names": [r["name"] for r in revision_rows if r["number"] == 1],
    }


# -- route-compile -------------------------------------------------------------------------------


def raw_fetch(context: Context) -> int:
    """The rows compile_table reads, fetched with the driver's cursor; returns how many."""
    states = ", ".join(f"'{s}'" for s in IN_FORCE)
    queries = [
        f"SELECT id, code, name, outbound, outbound_settings FROM catalog_department WHERE domain = '{DOMAIN}'",
        "SELECT r.id, r.code, r.provider_id, v.name, v.specification FROM catalog_resource r "
        "JOIN catalog_revision v ON v.resource_id = r.id AND v.number = r.published_revision "
        f"WHERE r.domain = '{DOMAIN}' AND r.status IN ({states}) AND v.specification IS NOT NULL",
        "SELECT resource_id, subscriber_id, items, filter FROM catalog_subscription WHERE status = 'active'",
    ]
    connection = context.engine.raw_connection()
    try:
        cursor = connection.cursor()
        rows = 0
        for sql in queries:
            cursor.execute(sql)
            rows += len(cursor.fetchall())
        cursor.close()
        connection.commit()
        return rows
    finally:
        connection.close()


def bench_compile(context: Context, built: dict[str, Any], runs: int) -> tuple[str, Any]:
    source = CatalogSource(context)
    table = source.load()  # warm: the connection pool, SQLAlchemy's statement cache
    raw_fetch(context)
    ours, raw = [], []
    for _ in range(runs):
        start = time.perf_counter()
        table = compile_table(source.catalog)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        raw_fetch(context)
        raw.append(time.perf_counter() - start)
    routes = sum(len(table.routes(code)) for code in table.resources)
    recipients = len(table.subscribers())
    ours_s, raw_s = statistics.median(ours), statistics.median(raw)
    line = bench_line(
        "route-compile", ours_s / raw_s, "<1s", db=context.engine.dialect.name, compile_s=f"{ours_s:.3f}",
        raw_fetch_s=f"{raw_s:.3f}", runs=runs, resources=len(table.resources), routes=routes, recipients=recipients,
        masked_routes=sum(r.items is not None for c in table.resources for r in table.routes(c)),
        filtered_routes=sum(r.filter is not None for c in table.resources for r in table.routes(c)),
        catalogue=f"{built['departments']}dept/{built['resources']}res/{built['active']}sub+{built['revoked']}revoked",
    )
    return line, table


# -- route-lookup --------------------------------------------------------------------------------


def sample_payloads() -> dict[str, etree._Element]:
    """One payload per shipped specification, from the examples."""
    payloads = {}
    for message, spec in (("01-person.xml", "person"), ("02-legal-entity.xml", "legal-entity")):
        root = etree.parse(str(ROOT / "examples" / "messages" / message)).getroot()
        payloads[spec] = root.find("{urn:zhuhai:govbus:envelope}Body")[0]  # type: ignore[index]
    for path in sorted((ROOT / "examples" / "payloads").glob("*.xml")):
        payloads[path.stem] = etree.parse(str(path)).getroot()
    return payloads


def _best(run: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def bench_lookup(context: Context, table: Any, n: int, messages: int, rounds: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    codes = sorted(table.resources)
    keys = [(table.resources[c].provider, c) for c in (rng.choice(codes) for _ in range(n))]
    plain = {code: table.routes(code) for code in codes}
    authorise, routes = table.authorise, table.routes

    def decision() -> None:
        for sender, resource in keys:
            authorise(sender, resource)
            routes(resource)

    def raw() -> None:
        for _sender, resource in keys:
            plain[resource]

    best = {"raw": float("inf"), "ours": float("inf")}
    for _ in range(rounds):
        best["raw"] = min(best["raw"], _best(raw, 1))
        best["ours"] = min(best["ours"], _best(decision, 1))
    decision_us, raw_us = best["ours"] / n * 1e6, best["raw"] / n * 1e6

    # The router stage: one envelope per sampled resource, split by whether it needs the body.
    payloads = sample_payloads()
    stage = RouterStage(Names("bench"), table, SafeParser())
    plain_batch: list[Delivery] = []
    body_batch: list[Delivery] = []
    copies = {"plain": 0, "body": 0, "masked": 0, "filtered": 0}
    for code in (rng.choice(codes) for _ in range(messages)):
        resource = table.resources[code]
        env = build_envelope(resource.provider, code, "1.0", payloads[resource.specification])
        needs_body = any(r.items is not None or r.filter is not None for r in table.routes(code))
        (body_batch if needs_body else plain_batch).append(Delivery(None, env))  # type: ignore[arg-type]
        copies["body" if needs_body else "plain"] += len(table.routes(code))
        copies["masked"] += sum(r.items is not None for r in table.routes(code))
        copies["filtered"] += sum(r.filter is not None for r in table.routes(code))
    outcomes = stage.handle(body_batch)  # warm (the filters compile once per stage), and checked
    for delivery, outcome in zip(body_batch, outcomes):
        wanted = table.routes(delivery.envelope.resource)  # type: ignore[union-attr]
        got = outcome.publishes if isinstance(outcome, Forward) else ()
        assert len(got) <= len(wanted) and {p.routing_key for p in got} <= {r.subscriber for r in wanted}
    plain_s = _best(lambda: stage.handle(plain_batch), rounds)
    body_s = _best(lambda: stage.handle(body_batch), rounds)

    # The masking alone: parse once, then mask per copy (what the body path adds per message).
    envs: list[Envelope] = [d.envelope for d in body_batch]  # type: ignore[misc]
    parse = stage.parser.parse
    parse_s = _best(lambda: [parse(e.body) for e in envs], rounds)
    masked_pairs = [(parse(e.body), r.items) for e in envs for r in table.routes(e.resource) if r.items is not None]
    mask_s = _best(lambda: [mask(doc, items) for doc, items in masked_pairs], rounds)

    every = len(plain_batch) + len(body_batch)
    return bench_line(
        "route-lookup", decision_us / raw_us, "none", decision_us=f"{decision_us:.3f}", dict_us=f"{raw_us:.3f}",
        n=n, rounds=rounds,
        router_headers_only_us=f"{plain_s / max(1, len(plain_batch)) * 1e6:.1f}",
        router_with_body_us=f"{body_s / max(1, len(body_batch)) * 1e6:.1f}",
        router_mix_us=f"{(plain_s + body_s) / every * 1e6:.1f}",
        body_share=f"{len(body_batch) / every:.2f}",
        recipients_per_msg=f"{(copies['plain'] + copies['body']) / every:.1f}",
        masked_copies_per_body_msg=f"{copies['masked'] / max(1, len(body_batch)):.2f}",
        parse_us=f"{parse_s / max(1, len(envs)) * 1e6:.1f}",
        mask_copy_us=f"{mask_s / max(1, len(masked_pairs)) * 1e6:.1f}",
        messages=every,
    )


# -- catalog-search ------------------------------------------------------------------------------

# (kind, queries); the codes are added from the catalogue
SUBSTRINGS = ["户籍人口", "企业登记", "社会保险参保", "婚姻登记", "纳税", "市公安局", "香洲区民政局", "行政许可",
              "用电", "公积金", "学籍信息", "低保", "残疾人", "不动产", "许可信息", "人口", "登记信息", "（月度）"]
INITIALS = ["hjrk", "qydj", "shbxcb", "hydj", "nsdj", "zzjgdm", "xzxk", "xzcf", "ydxx", "ldrk", "sgaj", "xzqmzj",
            "gjj", "xjxx"]
PINYIN = ["hujirenkou", "qiyedengji", "shehuibaoxian", "hunyindengji", "yongshui", "xingzhengchufa",
          "gongjijin", "zhuzhengxinxi"]
TYPOS = ["户藉人口信息", "企业登计信息", "社会报险参保", "婚烟登记", "纳锐登记", "hujirenkuo", "qiyedengij",
         "shehuibaoxain", "hunyindenji", "xinzhengxuke", "市公按局", "用点信息", "zhufanggongjijn"]
TWO_WORDS = ["市公安局 户籍", "香洲区 婚姻登记", "社会保险 月度", "qynb 香洲区", "斗门区 行政处罚", "hjrk 历史"]


def queries(codes: list[str], count: int, seed: int = 5) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    kinds = [("code", None), ("substring", SUBSTRINGS), ("initials", INITIALS), ("pinyin", PINYIN),
             ("typo", TYPOS), ("two-words", TWO_WORDS)]
    shares = [0.2, 0.25, 0.15, 0.1, 0.2, 0.1]
    out = []
    for _ in range(count):
        kind, pool = rng.choices(kinds, shares)[0]
        out.append((kind, rng.choice(codes) if pool is None else rng.choice(pool)))
    return out


def bench_search(service: Service, count: int, rounds: int) -> str:
    start = time.perf_counter()
    documents = search_documents(service)
    documents_s = time.perf_counter() - start
    start = time.perf_counter()
    index = SearchIndex(documents)
    index_s = time.perf_counter() - start
    names = [d.name for d in documents]
    work = queries(sorted(d.code for d in documents), count)
    empty: dict[str, set[str]] = {}
    asked: dict[str, set[str]] = {}
    for kind, query in work:  # warm, and checked
        found = index.search(query)
        asked.setdefault(kind, set()).add(query)
        if not found.total:
            empty.setdefault(kind, set()).add(query)
        if kind == "code":
            assert found.hits[0].document.code == query and found.hits[0].reason == "code"
    assert not set(empty) - {"typo"}, empty  # only a typo may find nothing

    def scan(query: str) -> list[str]:
        first, *more = query.strip().lower().split()
        found = [n for n in names if first in n]
        for word in more:
            found = [n for n in found if word in n]
        return found

    ours: list[float] = []
    raw: list[float] = []
    by_kind: dict[str, list[float]] = {}
    for _ in range(rounds):
        for kind, query in work:
            begin = time.perf_counter()
            scan(query)
            middle = time.perf_counter()
            index.search(query)
            end = time.perf_counter()
            raw.append((middle - begin) * 1000)
            ours.append((end - middle) * 1000)
            by_kind.setdefault(kind, []).append((end - middle) * 1000)
    p95 = {k: percentile(v, 95) for k, v in by_kind.items()}
    return bench_line(
        "catalog-search", percentile(ours, 95) / percentile(raw, 95), "p95<5ms", documents=len(index),
        queries=len(work), rounds=rounds,
        p50_ms=f"{percentile(ours, 50):.2f}", p95_ms=f"{percentile(ours, 95):.2f}", p99_ms=f"{percentile(ours, 99):.2f}",
        raw_scan_p50_ms=f"{percentile(raw, 50):.3f}", raw_scan_p95_ms=f"{percentile(raw, 95):.3f}",
        raw_scan_p99_ms=f"{percentile(raw, 99):.3f}",
        p95_by_kind="/".join(f"{k}:{v:.2f}" for k, v in sorted(p95.items())),
        documents_s=f"{documents_s:.2f}", index_build_s=f"{index_s:.2f}",
        typos_without_hits=f"{len(empty.get('typo', ()))}/{len(asked.get('typo', ()))}",
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server (postgresql+psycopg://...); a fresh database is made there and "
                             "dropped afterwards (default: SQLite in a temporary folder)")
    parser.add_argument("--resources", type=int, default=5000)
    parser.add_argument("--departments", type=int, default=200, choices=range(2, len(BUREAUS) * len(LEVELS) + 1),
                        metavar=f"2..{len(BUREAUS) * len(LEVELS)}")
    parser.add_argument("--subscriptions", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=5, help="compilations timed (median)")
    parser.add_argument("-n", type=int, default=200000, help="routing decisions per round")
    parser.add_argument("--messages", type=int, default=2000, help="messages through the router stage per round")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with database(args.database_url) as url, tempfile.TemporaryDirectory(prefix="govbus-bench-data-") as data:
        context = open_context(Settings(database_url=url, data_dir=Path(data)))  # migrations, specifications
        try:
            service = service_of(context)  # registers the platform's domain
            start = time.perf_counter()
            built = build_catalogue(context, resources=args.resources, departments=args.departments,
                                    subscriptions=args.subscriptions)
            print(f"# catalogue on {context.engine.dialect.name}: {built['departments']} departments, "
                  f"{built['resources']} resources ({built['revisions']} revisions), {built['active']} active "
                  f"subscriptions ({built['masked']} masked, {built['filtered']} filtered) and {built['revoked']} "
                  f"revoked, inserted in {time.perf_counter() - start:.1f}s", flush=True)
            compiled, table = bench_compile(context, built, args.runs)
            lookup = bench_lookup(context, table, args.n, args.messages, args.rounds)
            search = bench_search(service, args.queries, max(1, args.rounds // 2))
        finally:
            context.engine.dispose()
    return "\n".join([compiled, lookup, search])


if __name__ == "__main__":
    main()
