"""`govbus catalog ...` run as an operator runs it: a subprocess configured by GOVBUS_*
variables, on the embedded default (SQLite in the data dir) and, for the exchange between two
catalogues, on PostgreSQL.

Every process costs about a second, so each test runs a short sequence and checks several
things per step; commands that neither depend on each other nor write run side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import EXAMPLES, ROOT
from tests.test_dlq_cli import GOVBUS, clean_environment, ok, position_of

SAMPLE = EXAMPLES / "catalog.xml"
CATALOG_XSD = ROOT / "schemas" / "xsd" / "catalog" / "1.0" / "catalog.xsd"
NS = {"cat": "urn:zhuhai:govbus:catalog"}
ADMIN_PASSWORD = "platform-secret"

Command = tuple[dict[str, str], Sequence[str | Path]]

# A district platform's catalogue: its department, theme and resource codes are the city's
# (GA, MZ, population, 101001-0001), so only the domain tells them apart.
DISTRICT = """<?xml version='1.0' encoding='UTF-8'?>
<cat:Catalog xmlns:cat="urn:zhuhai:govbus:catalog" domain="440402" version="1.0">
  <cat:Domains>
    <cat:Domain code="440402" level="district" parent="440400"><cat:Name>香洲区政务信息资源共享平台</cat:Name></cat:Domain>
  </cat:Domains>
  <cat:Departments>
    <cat:Department domain="440402" code="GA"><cat:Name>香洲公安分局</cat:Name></cat:Department>
    <cat:Department domain="440402" code="MZ"><cat:Name>香洲区民政局</cat:Name></cat:Department>
  </cat:Departments>
  <cat:Themes>
    <cat:Theme domain="440402" code="population"><cat:Name>人口（香洲）</cat:Name></cat:Theme>
  </cat:Themes>
  <cat:Directories>
    <cat:Directory domain="440402" catalogue="shared" path="基础信息资源"/>
  </cat:Directories>
  <cat:Resources>
    <cat:Resource domain="440402" code="101001-0001" provider="GA" catalogue="shared" directory="基础信息资源" revision="2">
      <cat:Classification>1.01.001</cat:Classification>
      <cat:Name>香洲户籍人口信息</cat:Name>
      <cat:Abstract>香洲区户籍人口。</cat:Abstract>
      <cat:Format>XML</cat:Format>
      <cat:Sharing type="unconditional" mode="subscription"><cat:Conditions></cat:Conditions></cat:Sharing>
      <cat:Open type="not_open"><cat:Conditions></cat:Conditions></cat:Open>
      <cat:UpdateCycle>daily</cat:UpdateCycle>
      <cat:PublishDate>2026-01-05</cat:PublishDate>
      <cat:Specification name="person" version="1.0"/>
      <cat:Themes><cat:Theme>population</cat:Theme></cat:Themes>
    </cat:Resource>
  </cat:Resources>
  <cat:Subscriptions>
    <cat:Subscription domain="440402" resource="101001-0001" subscriber="MZ">
      <cat:Items><cat:Item>/Person/Name</cat:Item></cat:Items>
    </cat:Subscription>
  </cat:Subscriptions>
</cat:Catalog>
"""


# -- running govbus --------------------------------------------------------------------------


def govbus(env: dict[str, str], *args: str | Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`govbus ARGS` in a session of its own with no terminal: a password prompt reads the
    given input, or fails at once on an empty stdin, instead of waiting on a terminal."""
    return subprocess.run(
        [str(GOVBUS), *map(str, args)], env=env, cwd=env.get("GOVBUS_DATA_DIR"), capture_output=True, text=True,
        input=input if input is not None else "", timeout=60, start_new_session=True,
    )


def run(command: Command) -> subprocess.CompletedProcess[str]:
    return govbus(command[0], *command[1])


def side_by_side(*commands: Command) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands concurrently (each is a second of start-up); results in order."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(run, commands))


def refused(result: subprocess.CompletedProcess[str], exit_code: int, *fragments: str) -> str:
    """The house rule: one line on stderr, no traceback, nothing on stdout; exit 2 for a wrong
    request (invalid, not found, not authenticated, bad usage), 1 for a refusal (forbidden,
    conflict). bus/cli.py prefixes `error:` to the first kind only."""
    context = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, context
    assert result.returncode == exit_code, context
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, context
    [line] = lines
    assert line.startswith("govbus: error: " if exit_code == 2 else "govbus: "), line
    if exit_code == 1:
        assert not line.startswith("govbus: error:"), line
    assert result.stdout == "", context
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def table(out: str) -> list[dict[str, str]]:
    """A table the catalogue commands print, as rows keyed by column title (cells are
    separated by two spaces or more; an empty last cell is left out)."""
    if out.strip() == "(none)":
        return []
    header, *lines = [line for line in out.splitlines() if line.strip()]
    titles = re.split(r"\s{2,}", header.strip())
    return [dict(zip(titles, re.split(r"\s{2,}", line.strip()))) for line in lines]


def counts(out: str) -> dict[str, tuple[int, int, int]]:
    """`catalog import` output: kind -> (created, updated, unchanged)."""
    found = {}
    for line in out.splitlines():
        match = re.fullmatch(r"(\w+): (\d+) created, (\d+) updated, (\d+) unchanged", line)
        assert match, f"unexpected import output line {line!r}"
        found[match[1]] = (int(match[2]), int(match[3]), int(match[4]))
    return found


def valid_catalogue(data: bytes) -> etree._Element:
    schema = etree.XMLSchema(etree.parse(str(CATALOG_XSD)))
    root = etree.fromstring(data)
    schema.assertValid(root)
    return root


# -- the sample catalogue, set up once and copied for each test -------------------------------


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/catalog.xml imported by the first platform admin, whose password comes from the
    prompt as an operator types it; plus the admins of GA (provider of 户籍人口信息) and of
    JS (a consumer)."""
    data_dir = tmp_path_factory.mktemp("sample")
    env = clean_environment(GOVBUS_DATA_DIR=str(data_dir))
    out = ok(govbus(env, "catalog", "init", "--admin", "admin", input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"))
    assert out.strip().endswith("platform admin admin created"), out
    imported = counts(ok(govbus(env, "catalog", "--as", "admin", "import", SAMPLE)))
    assert imported["departments"] == (20, 0, 0) and imported["resources"] == (9, 0, 0), imported
    assert imported["subscriptions"] == (10, 0, 0), imported
    for user, department in (("gaadmin", "GA"), ("jsadmin", "JS")):
        ok(govbus(env, "catalog", "--as", "admin", "users", "add", user, "--role", "department_admin",
                  "--department", department, "--password", f"{user}-secret"))
    return data_dir


@pytest.fixture(scope="module")
def district_dir(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample catalogue plus DISTRICT, imported by the platform admin."""
    data_dir = tmp_path_factory.mktemp("district") / "data"
    shutil.copytree(sample_dir, data_dir)
    district = data_dir.parent / "district.xml"
    district.write_text(DISTRICT, encoding="utf-8")
    env = clean_environment(GOVBUS_DATA_DIR=str(data_dir))
    assert counts(ok(govbus(env, "catalog", "--as", "admin", "import", district))) == {
        "domains": (0, 0, 1), "departments": (2, 0, 0), "themes": (1, 0, 0), "directories": (1, 0, 0),
        "resources": (1, 0, 0), "subscriptions": (1, 0, 0)}
    return data_dir


def sample(template: Path, tmp_path: Path) -> dict[str, str]:
    """A fresh copy of a catalogue's data dir set up by a fixture (no process has it open)."""
    data_dir = tmp_path / "data"
    shutil.copytree(template, data_dir)
    return clean_environment(GOVBUS_DATA_DIR=str(data_dir))


# -- roles through a resource's lifecycle ----------------------------------------------------


def test_each_role_through_a_resource_lifecycle_and_every_refusal(sample_dir, tmp_path):
    env = sample(sample_dir, tmp_path)

    def as_(user: str, *args: str | Path) -> Command:
        return env, ("catalog", "--as", user, *args)

    # the platform admin adds a department and its admin; the department admin adds staff
    assert ok(run(as_("admin", "departments", "add", "AA", "测试局"))).strip() == "department AA added"
    ok(run(as_("admin", "users", "add", "aadmin", "--name", "测试局管理员", "--role", "department_admin",
               "--department", "AA", "--password", "aadmin-secret")))
    assert ok(run(as_("aadmin", "users", "add", "astaff", "--role", "department_staff", "--department", "AA",
                      "--password", "astaff-secret"))).strip() == "user astaff added"
    added = ok(run(as_("admin", "directories", "add", "测试目录", "--catalogue", "shared")))
    directory = re.fullmatch(r"directory (\d+) added\n", added)
    assert directory, added

    # staff propose: the data items are not typed, the resource names its specification
    created = ok(run(as_("astaff", "resources", "create", "--provider", "AA", "--directory", directory[1],
                         "--classification", "9.01.001", "--name", "测试人口信息", "--sharing", "conditional",
                         "--conditions", "仅限核验", "--mode", "subscription", "--spec", "person:1.0",
                         "--theme", "population")))
    assert created.strip() == "resource 901001-0001 created (draft)"
    code = "901001-0001"

    results = side_by_side(
        as_("astaff", "resources", "submit", code),
        as_("jsadmin", "resources", "submit", code),
        as_("aadmin", "resources", "approve", code),
        as_("aadmin", "import", SAMPLE),
        (env, ("catalog", "init", "--admin", "second", "--password", "second-secret")),
        as_("nobody", "resources", "submit", code),
        as_("aadmin", "resources", "submit", "NOPE-1"),
        as_("astaff", "resources", "create", "--directory", directory[1], "--name", "缺提供方"),
    )
    (staff_submits, other_admin_submits, admin_approves, admin_imports, init_again, unknown_user, unknown_code,
     missing_option) = results
    # staff propose, only their admin submits; another department's admin cannot either
    refused(staff_submits, 1, "only an admin of department AA may submit", "astaff is department_staff of AA")
    refused(other_admin_submits, 1, "only an admin of department AA may submit", "jsadmin is department_admin of JS")
    # a department admin neither reviews the shared catalogue nor imports one
    refused(admin_approves, 1, "only a platform admin may review", "aadmin")
    refused(admin_imports, 1, "only a platform admin may import a catalogue", "aadmin")
    # init once only (Unauthenticated by design, hence exit 2)
    refused(init_again, 1, "the catalogue has its first user already")
    refused(unknown_user, 2, "no active catalogue user 'nobody'")
    refused(unknown_code, 2, "no information resource NOPE-1")
    refused(missing_option, 2, "Missing option '--provider'", "govbus catalog resources create --help")

    # the department admin submits to the shared catalogue; the platform admin approves
    assert ok(run(as_("aadmin", "resources", "submit", code, "--reason", "请审核"))).strip() \
        == f"resource {code} is submitted"
    assert ok(run(as_("admin", "resources", "approve", code, "--reason", "符合共享要求"))).strip() \
        == f"resource {code} is published"

    history, shown = side_by_side(as_("astaff", "resources", "history", code),
                                  as_("astaff", "resources", "show", code, "--json"))
    assert [(r["ACTION"], r["FROM"], r["TO"], r["BY"], r.get("REASON", "")) for r in table(ok(history))] == [
        ("create", "-", "draft", "astaff", ""),
        ("submit", "draft", "submitted", "aadmin", "请审核"),
        ("approve", "submitted", "published", "admin", "符合共享要求"),
    ]
    view = json.loads(ok(shown))
    assert (view["status"], view["provider"], view["catalogue"], view["revision"]) == ("published", "AA", "shared", 1)
    assert (view["specification"], view["specification_version"], view["themes"]) == ("person", "1.0", ["population"])
    # the data items with their Chinese names come from the person 1.0 specification: the same
    # the sample catalogue lists for 户籍人口信息, which is person 1.0 too
    person = etree.parse(str(SAMPLE)).find(".//cat:Resource[@code='101001-0001']/cat:DataItems", NS)
    assert [(i["path"], i["label"]) for i in view["data_items"]] == [(e.get("path"), e.get("label")) for e in person]
    assert ("/Person/IdNumber", "公民身份号码") in [(i["path"], i["label"]) for i in view["data_items"]]


def test_the_command_line_takes_no_password_the_rest_api_checks_the_one_it_set(sample_dir, tmp_path):
    """`--as USER` acts without a password (the command line has the database already); the
    passwords the command line sets, typed at the prompt or given with --password, are what the
    REST API checks, and a wrong one is refused there."""
    from fastapi.testclient import TestClient

    from bus.app import open_context
    from bus.config import Settings
    from bus.http import create_app

    env = sample(sample_dir, tmp_path)
    context = open_context(Settings(data_dir=Path(env["GOVBUS_DATA_DIR"])))
    try:
        client = TestClient(create_app(context))
        assert client.get("/api/v1/me", auth=("admin", ADMIN_PASSWORD)).json() == {
            "username": "admin", "role": "platform_admin", "department": None}
        assert client.get("/api/v1/me", auth=("gaadmin", "gaadmin-secret")).json()["department"] == "GA"
        for user, password in (("admin", "wrong-password"), ("gaadmin", ADMIN_PASSWORD), ("nobody", "whatever1")):
            response = client.get("/api/v1/me", auth=(user, password))
            assert response.status_code == 401, (user, response.text)
            assert response.json() == {"error": "unauthenticated", "message": "wrong user name or password"}
    finally:
        context.engine.dispose()


def test_reading_the_catalogue_checks_the_caller_as_the_rest_api_does(sample_dir, tmp_path):
    # The CLI promises the REST API's checks. There every request but /health needs a known
    # user, a resource's history is for its provider and the platform admins, and
    # subscriptions are for the two departments concerned; the reading commands must not
    # ignore --as.
    env = sample(sample_dir, tmp_path)
    leaked = tmp_path / "leaked.xml"
    exported, history, subscriptions = side_by_side(
        (env, ("catalog", "--as", "nobody", "export", "--subscriptions", leaked)),
        (env, ("catalog", "--as", "jsadmin", "resources", "history", "101001-0001")),
        (env, ("catalog", "--as", "jsadmin", "subscriptions", "list")))
    refused(exported, 2, "no active catalogue user 'nobody'")
    assert not leaked.exists()
    refused(history, 1, "101001-0001", "GA")
    # JS subscribes to MZ's 婚姻登记信息 and provides nothing: the rest is not its business
    assert [(r["RESOURCE"], r["SUBSCRIBER"]) for r in table(ok(subscriptions))] == [("201002-0001", "JS")]


# -- applications, subscriptions, search ------------------------------------------------------


def test_applications_from_apply_to_revoke_with_masked_items_and_overdue_replies(sample_dir, tmp_path):
    env = sample(sample_dir, tmp_path)

    def as_(user: str, *args: str | Path) -> Command:
        return env, ("catalog", "--as", user, *args)

    # JS applies for two data items of 户籍人口信息 (conditional, on the shared catalogue)
    out = ok(run(as_("jsadmin", "applications", "apply", "101001-0001", "--consumer", "JS", "--purpose",
                     "计划生育服务核验", "--item", "/Person/IdNumber", "--item", "/Person/Name", "--submit")))
    applied = re.fullmatch(r"application (\d+) is pending_provider, reply due by (\d{4}-\d\d-\d\d)\n", out)
    assert applied, out
    first = applied[1]

    bad_item, platform_first, consumer_approves, search, second = side_by_side(
        as_("jsadmin", "applications", "apply", "101001-0001", "--consumer", "JS", "--purpose", "核验",
            "--item", "/Person/Nope"),
        as_("admin", "applications", "approve", first),
        as_("jsadmin", "applications", "approve", first),
        as_("jsadmin", "search", "hjrk"),
        # a second application, to GSW, that nobody answers
        as_("jsadmin", "applications", "apply", "202001-0001", "--consumer", "JS", "--purpose", "综合治税比对",
            "--submit"),
    )
    refused(bad_item, 2, "resource 101001-0001 has no data item /Person/Nope", "/Person/IdNumber")
    # the provider's admin answers first, and the consumer never approves its own application
    refused(platform_first, 1, "only an admin of department GA may approve", "admin is platform_admin")
    refused(consumer_approves, 1, "only an admin of department GA may approve", "jsadmin is department_admin of JS")
    # pinyin initials find 户籍人口信息 first
    hits = table(ok(search).split("\n", 1)[1])
    assert ok(search).startswith(f"{len(hits)} found; page 1 of 1")
    assert (hits[0]["CODE"], hits[0]["NAME"], hits[0]["PROVIDER"]) == ("101001-0001", "户籍人口信息", "GA")
    second_id = re.fullmatch(r"application (\d+) is pending_provider, reply due by .*\n", ok(second))[1]  # type: ignore[index]

    # the provider's admin approves, then the platform admin (a usage application, shared catalogue)
    assert ok(run(as_("gaadmin", "applications", "approve", first, "--reason", "同意共享"))).strip() \
        == f"application {first} is pending_platform"
    assert ok(run(as_("admin", "applications", "approve", first))).strip() == f"application {first} is approved"

    # ten working days pass without a reply to the second application
    with sqlite3.connect(Path(env["GOVBUS_DATA_DIR"]) / "govbus.db") as db:
        db.execute("UPDATE catalog_application SET deadline = '2020-01-02' WHERE id = ?", (int(second_id),))

    overdue, subscriptions = side_by_side(as_("jsadmin", "applications", "list", "--overdue"),
                                          as_("jsadmin", "subscriptions", "list", "--subscriber", "JS"))
    assert [(r["ID"], r["RESOURCE"], r["STATUS"], r["REPLY BY"]) for r in table(ok(overdue))] \
        == [(second_id, "202001-0001", "pending_provider", "2020-01-02")]
    assert "OVERDUE" in ok(overdue).splitlines()[1]
    # the subscription holds the two items granted: the rest of 户籍人口信息 is masked
    assert {(r["RESOURCE"], r["STATUS"], r["DATA ITEMS"]) for r in table(ok(subscriptions))} == {
        ("101001-0001", "active", "/Person/IdNumber, /Person/Name"),
        ("201002-0001", "active", "all"),  # JS's subscription in the sample catalogue
    }

    # the consumer's admin revokes: the subscription ends, and is kept as revoked
    assert ok(run(as_("jsadmin", "applications", "revoke", first, "--reason", "项目结束"))).strip() \
        == f"application {first} is revoked"
    kept = run(as_("jsadmin", "subscriptions", "list", "--subscriber", "JS", "--all"))
    assert {(r["RESOURCE"], r["STATUS"], r["DATA ITEMS"]) for r in table(ok(kept))} == {
        ("101001-0001", "revoked", "/Person/IdNumber, /Person/Name"), ("201002-0001", "active", "all")}


# -- export and import ----------------------------------------------------------------------------


def test_export_import_between_sqlite_and_postgresql_is_identical_and_idempotent(district_dir, tmp_path, pg_url):
    # A: the sample catalogue on SQLite, plus a district whose codes repeat the city's
    a = sample(district_dir, tmp_path)
    a_file, domain_file = tmp_path / "a.xml", tmp_path / "district-export.xml"
    full, one_domain = side_by_side(
        (a, ("catalog", "--as", "admin", "export", "--subscriptions", a_file)),
        (a, ("catalog", "--as", "admin", "export", "--subscriptions", "--domain", "440402", domain_file)))
    assert ok(full).strip() == f"wrote {a_file} ({a_file.stat().st_size} bytes)"
    ok(one_domain)
    exported = a_file.read_bytes()

    root = valid_catalogue(exported)
    resources = [(r.get("domain"), r.get("code"), r.findtext("cat:Name", namespaces=NS))
                 for r in root.iterfind("cat:Resources/cat:Resource", NS)]
    assert len(resources) == 10
    assert {("440400", "101001-0001", "户籍人口信息"), ("440402", "101001-0001", "香洲户籍人口信息")} <= set(resources)
    assert len(root.findall("cat:Subscriptions/cat:Subscription", NS)) == 11

    # the district alone: nothing of the city's, though the codes are the same
    root = valid_catalogue(domain_file.read_bytes())
    assert root.get("domain") == "440402"
    assert {e.get("domain") for e in root.iter() if e.get("domain")} == {"440402"}
    assert [d.get("code") for d in root.iterfind("cat:Domains/cat:Domain", NS)] == ["440402"]
    assert [(d.get("code"), d.findtext("cat:Name", namespaces=NS)) for d in root.iterfind("cat:Departments/cat:Department", NS)] \
        == [("GA", "香洲公安分局"), ("MZ", "香洲区民政局")]
    assert [(r.get("code"), r.get("revision"), r.findtext("cat:Name", namespaces=NS))
            for r in root.iterfind("cat:Resources/cat:Resource", NS)] == [("101001-0001", "2", "香洲户籍人口信息")]
    assert [(s.get("subscriber"), [i.text for i in s.iterfind("cat:Items/cat:Item", NS)])
            for s in root.iterfind("cat:Subscriptions/cat:Subscription", NS)] == [("MZ", ["/Person/Name"])]

    # B: PostgreSQL, with its own first admin
    b = clean_environment(GOVBUS_DATABASE_URL=pg_url, GOVBUS_DATA_DIR=str(tmp_path / "b"))
    (tmp_path / "b").mkdir()
    ok(govbus(b, "catalog", "init", "--admin", "admin", "--password", ADMIN_PASSWORD))
    assert counts(ok(govbus(b, "catalog", "--as", "admin", "import", a_file))) == {
        "domains": (3, 0, 1), "departments": (22, 0, 0), "themes": (5, 0, 0), "directories": (9, 0, 0),
        "resources": (10, 0, 0), "subscriptions": (11, 0, 0)}
    # The export has no timestamp and a fixed order (exchange.py: "deterministic"), so the
    # catalogue that went through B must come out byte for byte as it went in.
    b_file = tmp_path / "b.xml"
    ok(govbus(b, "catalog", "--as", "admin", "export", "--subscriptions", b_file))
    assert b_file.read_bytes() == exported

    # the same file again: nothing changes
    again = counts(ok(govbus(b, "catalog", "--as", "admin", "import", a_file)))
    assert again == {"domains": (0, 0, 4), "departments": (0, 0, 22), "themes": (0, 0, 5), "directories": (0, 0, 9),
                     "resources": (0, 0, 10), "subscriptions": (0, 0, 11)}

    # files that are not a catalogue are refused whole, with the reason; both also rename 市公安局,
    # which must not happen. One breaks the XSD (at a line the message gives), the other is
    # valid but names a provider neither it nor B knows (found after the departments are written).
    text = exported.decode()
    renamed = text.replace("<cat:Name>市公安局</cat:Name>", "<cat:Name>市公安局（改）</cat:Name>")
    assert renamed != text
    invalid, unknown_provider = tmp_path / "invalid.xml", tmp_path / "unknown-provider.xml"
    invalid.write_text(renamed.replace('<cat:Sharing type="conditional"', '<cat:Sharing type="sometimes"', 1),
                       encoding="utf-8")
    unknown_provider.write_text(renamed.replace('provider="GS"', 'provider="NOBODY"', 1), encoding="utf-8")
    line, _ = position_of(invalid, 'type="sometimes"')
    bad_schema, bad_provider = side_by_side((b, ("catalog", "--as", "admin", "import", invalid)),
                                            (b, ("catalog", "--as", "admin", "import", unknown_provider)))
    refused(bad_schema, 2, "not a valid catalogue document", "'sometimes'", f"(line {line})")
    refused(bad_provider, 2, "department 440400/NOBODY is neither in the file nor in the catalogue")

    third = tmp_path / "b3.xml"
    ok(govbus(b, "catalog", "--as", "admin", "export", "--subscriptions", third))
    assert third.read_bytes() == exported


def test_reimporting_its_own_catalogue_keeps_a_revision_under_review(sample_dir, tmp_path):
    # The sample catalogue came from examples/catalog.xml, and exports as exactly that file.
    # While GA's revision of 户籍人口信息 awaits review, importing the file again must still
    # change nothing: the published revision is the file's.
    env = sample(sample_dir, tmp_path)
    ok(govbus(env, "catalog", "--as", "gaadmin", "resources", "revise", "101001-0001", "--abstract", "新的摘要"))
    ok(govbus(env, "catalog", "--as", "gaadmin", "resources", "submit", "101001-0001"))
    again = counts(ok(govbus(env, "catalog", "--as", "admin", "import", SAMPLE)))
    assert again["resources"] == (0, 0, 9), again
    view = json.loads(ok(govbus(env, "catalog", "--as", "admin", "resources", "show", "101001-0001", "--json")))
    assert (view["status"], view["revision"], view["pending"]["number"]) == ("revision_submitted", 1, 2)


def test_subscriptions_of_a_resource_are_those_of_the_platforms_own_domain(district_dir):
    # Codes are qualified by domain: 香洲 has a 101001-0001 too, and MZ of 香洲 subscribes to
    # it for one item. The city's 101001-0001 has two subscribers: the city's MZ (all items)
    # and RS (five). (Only reads: the fixture's data dir is used as it is.)
    env = clean_environment(GOVBUS_DATA_DIR=str(district_dir))
    rows = table(ok(govbus(env, "catalog", "--as", "admin", "subscriptions", "list", "--resource", "101001-0001")))
    assert sorted((r["SUBSCRIBER"], r["DATA ITEMS"]) for r in rows) == [
        ("MZ", "all"), ("RS", "/Person/IdNumber, /Person/Name, /Person/Sex, /Person/BirthDate, /Person/Division")]


def test_a_resource_without_a_format_is_refused_as_the_exchange_format_needs_one(sample_dir, tmp_path):
    # catalog.xsd requires a Format of 1-200 characters. A resource published without one
    # makes every later `catalog export` fail (the export validates what it writes), so the
    # catalogue must refuse it when it is proposed (or, if an empty format means the default,
    # store one).
    env = sample(sample_dir, tmp_path)
    with sqlite3.connect(Path(env["GOVBUS_DATA_DIR"]) / "govbus.db") as db:
        [directory] = db.execute("SELECT id FROM catalog_directory WHERE name = '人口基础信息'").fetchone()
    created = govbus(env, "catalog", "--as", "gaadmin", "resources", "create", "--provider", "GA", "--directory",
                     str(directory), "--classification", "1.01.009", "--name", "无格式资源", "--format", "",
                     "--sharing", "unconditional", "--mode", "subscription")
    if created.returncode == 0:
        view = json.loads(ok(govbus(env, "catalog", "--as", "gaadmin", "resources", "show", "101009-0001", "--json")))
        assert view["format"], f"{created.stdout.strip()}, with format {view['format']!r}"
    else:
        refused(created, 2, "format")


def test_search_survives_an_imported_resource_of_an_unregistered_specification(sample_dir, tmp_path):
    # exchange.py expects resources whose specification is not registered here (it leaves out
    # their data items on export); importing one must not break searching the catalogue.
    env = sample(sample_dir, tmp_path)
    foreign = tmp_path / "foreign.xml"
    foreign.write_text(SAMPLE.read_text(encoding="utf-8").replace(
        '<cat:Specification name="water-usage" version="1.0"/>', '<cat:Specification name="sewage" version="2.0"/>'),
        encoding="utf-8")
    imported = govbus(env, "catalog", "--as", "admin", "import", foreign)
    if imported.returncode != 0:  # refusing such a resource for the platform's own domain would do too
        refused(imported, 2, "sewage")
    found = govbus(env, "catalog", "--as", "admin", "search", "hjrk")
    hits = table(ok(found).split("\n", 1)[1])
    assert hits[0]["NAME"] == "户籍人口信息"
