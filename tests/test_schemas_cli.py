"""`govbus schemas ...` as standards staff run it: the real command in a subprocess, configured
by GOVBUS_* variables, on the embedded default (SQLite under a data folder of its own per test)
and on PostgreSQL (a database of its own).

Exit codes are the contract for scripts: 0 compatible or done, 1 incompatible (or refused for
it), 2 a usage or input error, which is one line on stderr and never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import lxml.html
import pytest
from schemas.registry import RESERVED, XSD_ROOT

from tests.conftest import ROOT

GOVBUS = ROOT / ".venv" / "bin" / "govbus"
PERSON_XSD = ROOT / "schemas" / "xsd" / "person" / "1.0" / "person.xsd"
PERSON_11_XSD = ROOT / "schemas" / "xsd" / "person" / "1.1" / "person.xsd"  # the latest shipped version
PERSON_ITEMS = [
    ("/Person/IdNumber", "公民身份号码"),
    ("/Person/Name", "姓名"),
    ("/Person/Sex", "性别"),
    ("/Person/BirthDate", "出生日期"),
    ("/Person/Ethnicity", "民族"),
    ("/Person/Division", "户籍地行政区划"),
    ("/Person/Address", "户籍地址"),
    ("/Person/Phone", "联系电话"),
    ("/Person/MaritalStatus", "婚姻状况"),
    ("/Person/RecordUpdatedAt", "源记录更新时间"),
]
# every version of every specification shipped under schemas/xsd, registered as published on first start
SHIPPED = [
    (spec.name, version.name, "published", "BACKWARD", f"urn:zhuhai:govbus:{spec.name}")
    for spec in sorted((p for p in XSD_ROOT.iterdir() if p.is_dir() and p.name not in RESERVED), key=lambda p: p.name)
    for version in sorted((v for v in spec.iterdir() if (v / f"{spec.name}.xsd").is_file()),
                          key=lambda v: tuple(int(x) for x in v.name.split(".")))
]


def shipped_with(status: dict[tuple[str, str], str] | None = None, *extra: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The shipped (name, version, status) rows, some statuses changed, some rows added, in list order."""
    rows = [(n, v, (status or {}).get((n, v), s)) for n, v, s, _, _ in SHIPPED] + list(extra)
    return sorted(rows, key=lambda r: (r[0], tuple(int(x) for x in r[1].split("."))))
EMAIL = """        <xs:element name="Email" type="xs:string" minOccurs="0">
          <xs:annotation>
            <xs:documentation xml:lang="zh">电子邮箱</xs:documentation>
          </xs:annotation>
        </xs:element>
"""


def run(data_dir: Path, *args: str | Path, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env["GOVBUS_DATA_DIR"] = str(data_dir)
    if database_url:
        env["GOVBUS_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(GOVBUS), *map(str, args)], env=env, cwd=data_dir, capture_output=True, text=True, timeout=60, check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a failed command writes to stderr."""
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("govbus: "), lines[0]
    return lines[0]


LIST_ROW = re.compile(r"(\S+)\s+(\S+)\s+(draft|published|deprecated)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d|-)\s+(\S+)")


def listed(data_dir: Path, database_url: str | None = None) -> list[tuple[str, ...]]:
    """`govbus schemas list` as (name, version, status, mode, published, namespace) rows."""
    header, *lines = ok(run(data_dir, "schemas", "list", database_url=database_url)).splitlines()
    assert header.split()[:3] == ["SPECIFICATION", "VERSION", "STATUS"], header
    rows = []
    for line in lines:
        match = LIST_ROW.fullmatch(line)
        assert match, line
        rows.append(match.groups())
    return rows


def statuses(data_dir: Path, database_url: str | None = None) -> list[tuple[str, str, str]]:
    return [row[:3] for row in listed(data_dir, database_url)]


def person_variant(folder: Path, edit: str) -> Path:
    """person.xsd 1.1 (the latest shipped), copied to `folder` and changed: "email" adds an
    optional element, "no-phone" removes one."""
    folder.mkdir(parents=True, exist_ok=True)
    text = PERSON_11_XSD.read_text(encoding="utf-8")
    if edit == "email":
        changed = text.replace('        <xs:element name="RecordUpdatedAt"', EMAIL + '        <xs:element name="RecordUpdatedAt"', 1)
    else:
        changed = re.sub(r'        <xs:element name="Phone".*?</xs:element>\n', "", text, count=1, flags=re.DOTALL)
    assert changed != text
    target = folder / "person.xsd"
    target.write_text(changed, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with only the shipped specifications, for commands that change nothing."""
    return tmp_path_factory.mktemp("shipped")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("candidates")
    return {"1.2": person_variant(folder / "1.2", "email"), "2.0": person_variant(folder / "2.0", "no-phone")}


# -- reading ------------------------------------------------------------------------------------


def test_list_shows_the_shipped_specifications_published(shipped: Path) -> None:
    rows = listed(shipped)
    assert [(n, v, s, m, ns) for n, v, s, m, _, ns in rows] == SHIPPED
    assert {(n, v) for n, v, *_ in rows} >= {("person", "1.0"), ("person", "1.1"), ("legal-entity", "1.1")}
    assert all(published != "-" for *_, published, _ in rows)


def test_show_lists_the_versions_of_a_specification(shipped: Path) -> None:
    out = ok(run(shipped, "schemas", "show", "person"))
    assert out.splitlines()[0].startswith("person 1.0: published, BACKWARD, registered by govbus; published ")
    assert "legal-entity" not in out


def test_show_a_version_lists_its_data_items(shipped: Path) -> None:
    out = ok(run(shipped, "schemas", "show", "person", "1.0"))
    assert out.startswith("person 1.0 (published, BACKWARD): 人口基础信息数据规范 1.0")
    assert "namespace: urn:zhuhai:govbus:person" in out
    assert "files: person.xsd " in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("/")}
    assert list(rows) == [path for path, _ in PERSON_ITEMS]
    for path, label in PERSON_ITEMS:
        assert rows[path].split()[1] == label, rows[path]
    assert re.search(r"公民身份号码\s+string\s+yes\s+GB 11643-1999$", rows["/Person/IdNumber"])
    assert re.search(r"姓名\s+string\s+50\s+yes\s*$", rows["/Person/Name"])
    assert re.search(r"\bno\s+4\s+GB/T 2261\.1-2003$", rows["/Person/Sex"])
    assert re.search(r"\bno\s+58\s+GB 3304-1991$", rows["/Person/Ethnicity"])
    assert re.search(r"\bno\s+4\s+GB/T 2260$", rows["/Person/Division"])
    assert re.search(r"\bno\s+8\s+GB/T 4766-1984$", rows["/Person/MaritalStatus"])
    assert re.search(r"出生日期\s+date\s+no\s*$", rows["/Person/BirthDate"])


def test_dictionary_as_json_lists_every_item_with_codes_and_standards(shipped: Path) -> None:
    document = json.loads(ok(run(shipped, "schemas", "dictionary", "person", "1.0", "--format", "json")))
    assert (document["specification"], document["version"], document["status"]) == ("person", "1.0", "published")
    assert document["namespace"] == "urn:zhuhai:govbus:person"
    items = {item["path"]: item for item in document["items"]}
    assert [(i["path"], i["label"]) for i in document["items"]] == PERSON_ITEMS
    assert {p: i["type"] for p, i in items.items()} == {
        **{p: "string" for p, _ in PERSON_ITEMS}, "/Person/BirthDate": "date", "/Person/RecordUpdatedAt": "dateTime",
    }
    assert [(i["path"], i["required"]) for i in document["items"] if i["required"]] == [
        ("/Person/IdNumber", True), ("/Person/Name", True),
    ]
    sex = items["/Person/Sex"]
    assert sex["standard"] == "GB/T 2261.1-2003"
    assert sex["codes"] == [
        {"code": "0", "meaning": "未知的性别"}, {"code": "1", "meaning": "男性"},
        {"code": "2", "meaning": "女性"}, {"code": "9", "meaning": "未说明的性别"},
    ]
    ethnicity = {c["code"]: c["meaning"] for c in items["/Person/Ethnicity"]["codes"]}
    assert len(ethnicity) == 58 and ethnicity["97"] == "其他" and ethnicity["98"] == "外国血统中国籍人士"
    assert items["/Person/IdNumber"]["standard"] == "GB 11643-1999" and items["/Person/IdNumber"]["patterns"]
    assert items["/Person/Name"]["max_length"] == 50


def test_dictionary_as_an_html_page_written_to_a_file(shipped: Path, tmp_path: Path) -> None:
    target = tmp_path / "人口基础信息 1.0.html"
    out = ok(run(shipped, "schemas", "dictionary", "person", "1.0", "--format", "html", "-o", target))
    assert str(target) in out
    data = target.read_bytes()
    page = data.decode("utf-8")  # fails on anything but UTF-8
    document = lxml.html.document_fromstring(data)
    assert document.get("lang") == "zh-CN"
    assert document.find(".//meta").get("charset").lower() == "utf-8"
    assert "person 1.0 数据字典" in document.findtext(".//title")
    rows = [[td.text_content() for td in tr.iterfind("td")] for tr in document.iter("tr") if tr.find("td") is not None]
    assert [(row[1], row[2]) for row in rows] == PERSON_ITEMS
    sex = rows[2]
    assert sex[7] == "GB/T 2261.1-2003"
    for code in ("0 未知的性别", "1 男性", "2 女性", "9 未说明的性别"):
        assert code in sex[6]
    assert "公民身份号码" in page and "已发布" in page


# -- checking -----------------------------------------------------------------------------------


def test_check_a_compatible_file(shipped: Path, candidates: dict[str, Path]) -> None:
    result = run(shipped, "schemas", "check", candidates["1.2"], "--against", "person")
    assert ok(result).strip() == "person.xsd is BACKWARD compatible with person"
    assert result.stderr == ""


def test_check_an_incompatible_file_prints_the_findings(shipped: Path, candidates: dict[str, Path]) -> None:
    result = run(shipped, "schemas", "check", candidates["2.0"], "--against", "person:2.0")
    line = error_line(result, 1)
    assert "2 incompatibilities" in line  # the phone number, on its own and in a batch
    assert "is not BACKWARD compatible with person" in result.stdout
    assert "element-removed at /Person/Phone" in result.stdout
    assert "element-removed at /PersonBatch/Person/Phone" in result.stdout
    assert "against 1.1, backward" in result.stdout


@pytest.mark.parametrize(
    "candidate, mode, code, finding",
    [
        ("1.2", "FORWARD", 1, "element-removed at /Person/Email"),  # a 1.1 reader refuses the new element
        ("2.0", "FORWARD", 0, None),  # a 1.1 reader does not need the optional phone
        ("1.2", "full", 1, "element-removed at /Person/Email"),  # modes are case-insensitive
    ],
)
def test_check_under_a_mode(shipped: Path, candidates: dict[str, Path], candidate: str, mode: str, code: int,
                            finding: str | None) -> None:
    result = run(shipped, "schemas", "check", candidates[candidate], "--against", "person", "--mode", mode)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if finding:
        assert finding in result.stdout
    else:
        assert f"is {mode.upper()} compatible with person" in result.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (("check", "{missing}", "--against", "person"), "does not exist"),
        (("check", "{v12}", "--against", "nobody"), "no data specification named 'nobody'"),
        (("check", "{v12}", "--against", "person", "--mode", "SIDEWAYS"), "SIDEWAYS"),
        (("check", "{v12}", "--against", "person:one"), "one"),
        (("check", "{not_a_schema}", "--against", "person"), "is not an XML Schema"),
        (("check", "{v12}"), "--against"),
        (("show", "nobody"), "no data specification named 'nobody'"),
        (("show", "person", "9.9"), "has no version '9.9' (known: 1.0, 1.1)"),
        (("dictionary", "person", "9.9", "--format", "json"), "has no version '9.9'"),
        (("dictionary", "person", "1.0", "--format", "pdf"), "pdf"),
        (("deprecate", "person", "9.9"), "has no version '9.9' (known: 1.0, 1.1)"),
        (("deprecate", "nobody", "1.0"), "no data specification named 'nobody'"),
        (("publish", "{v12}", "--name", "Person!", "--version", "1.2"), "is not a specification name"),
        (("publish", "{v12}", "--name", "person", "--version", "1.2.1"), "is not a version"),
        (("publish", "{v12}", "--name", "person", "--version", "1.2", "--mode", "SIDEWAYS"), "SIDEWAYS"),
        (("publish", "{fetches}", "--name", "person", "--version", "1.2"), "nothing is fetched from the network"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_usage_and_input_errors_exit_2_with_one_line(
    shipped: Path, candidates: dict[str, Path], tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    not_a_schema = tmp_path / "notes.xsd"
    not_a_schema.write_text("<notes>规范草稿</notes>", encoding="utf-8")
    fetches = tmp_path / "fetches" / "person.xsd"
    fetches.parent.mkdir()
    fetches.write_text(
        PERSON_XSD.read_text(encoding="utf-8").replace(
            "  <xs:element name=\"Person\">",
            '  <xs:import namespace="urn:other" schemaLocation="http://127.0.0.1:9/x.xsd"/>\n  <xs:element name="Person">', 1,
        ),
        encoding="utf-8",
    )
    files = {"missing": tmp_path / "missing.xsd", "v12": candidates["1.2"], "not_a_schema": not_a_schema, "fetches": fetches}
    result = run(shipped, "schemas", *(a.format(**files) for a in args))
    assert says in error_line(result, 2)
    assert result.stdout == ""
    if args[0] == "publish":
        assert statuses(shipped) == [row[:3] for row in SHIPPED]


# -- changing -----------------------------------------------------------------------------------


def test_publish_a_compatible_version_then_again_is_nothing_to_do(tmp_path: Path) -> None:
    v12 = person_variant(tmp_path / "handed-in" / "1.2", "email")
    out = ok(run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", "1.2"))
    assert out.strip() == "person 1.2 published (BACKWARD)"
    after = listed(tmp_path)
    assert [row[:3] for row in after] == shipped_with(None, ("person", "1.2", "published"))
    assert {row[3] for row in after} == {"BACKWARD"}
    again = ok(run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", "1.2"))
    assert again.strip() == "person 1.2 is published already with these files: nothing to do"
    shipped = ok(run(tmp_path, "schemas", "publish", PERSON_XSD, "--name", "person", "--version", "1.0"))
    assert "nothing to do" in shipped
    shipped = ok(run(tmp_path, "schemas", "publish", PERSON_11_XSD, "--name", "person", "--version", "1.1"))
    assert "nothing to do" in shipped
    assert listed(tmp_path) == after  # not even the publication time changed

    # the new item is in the new version only
    assert "电子邮箱" in ok(run(tmp_path, "schemas", "show", "person", "1.2"))
    assert "电子邮箱" not in ok(run(tmp_path, "schemas", "show", "person", "1.1"))
    assert "电子邮箱" not in ok(run(tmp_path, "schemas", "show", "person", "1.0"))


def test_an_incompatible_version_is_refused_with_its_findings_and_not_registered(tmp_path: Path) -> None:
    before = listed(tmp_path)
    v20 = person_variant(tmp_path / "handed-in" / "2.0", "no-phone")
    result = run(tmp_path, "schemas", "publish", v20, "--name", "person", "--version", "2.0")
    assert "person 2.0 not published" in error_line(result, 1)
    assert "refused: person 2.0 is not BACKWARD compatible: 2 finding(s)" in result.stdout
    assert "element-removed at /Person/Phone" in result.stdout
    assert "element-removed at /PersonBatch/Person/Phone" in result.stdout
    assert listed(tmp_path) == before
    assert "has no version '2.0'" in error_line(run(tmp_path, "schemas", "show", "person", "2.0"), 2)

    # under a mode that allows it, the same file is published
    out = ok(run(tmp_path, "schemas", "publish", v20, "--name", "person", "--version", "2.0", "--mode", "NONE"))
    assert out.strip() == "person 2.0 published (NONE)"
    assert ("person", "2.0", "published", "NONE") in [row[:4] for row in listed(tmp_path)]


def test_other_files_under_a_registered_version_are_refused(tmp_path: Path) -> None:
    v12 = person_variant(tmp_path / "handed-in", "email")
    for shipped in ("1.0", "1.1"):
        result = run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", shipped)
        assert "a change needs a new version" in error_line(result, 2)
    assert statuses(tmp_path) == [row[:3] for row in SHIPPED]


def test_a_draft_is_listed_as_draft_and_published_later_with_the_same_file(tmp_path: Path) -> None:
    v12 = person_variant(tmp_path / "handed-in" / "1.2", "email")
    out = ok(run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", "1.2", "--draft"))
    assert out.strip() == "person 1.2 registered as a draft"
    draft = [row for row in listed(tmp_path) if row[:2] == ("person", "1.2")]
    assert draft == [("person", "1.2", "draft", "BACKWARD", "-", "urn:zhuhai:govbus:person")]
    assert "person 1.2 (draft, BACKWARD)" in ok(run(tmp_path, "schemas", "show", "person", "1.2"))
    assert '"status": "draft"' in ok(run(tmp_path, "schemas", "dictionary", "person", "1.2", "--format", "json"))
    assert "nothing to do" in ok(run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", "1.2", "--draft"))

    out = ok(run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", "1.2"))
    assert out.strip() == "person 1.2 published from its draft (BACKWARD)"
    [promoted] = [row for row in listed(tmp_path) if row[:2] == ("person", "1.2")]
    assert promoted[2] == "published" and promoted[4] != "-"


def test_an_incompatible_draft_is_kept_with_its_findings_but_not_published(tmp_path: Path) -> None:
    v20 = person_variant(tmp_path / "handed-in" / "2.0", "no-phone")
    out = ok(run(tmp_path, "schemas", "publish", v20, "--name", "person", "--version", "2.0", "--draft"))
    assert "person 2.0 registered as a draft" in out
    assert "it would not be accepted for publication yet" in out and "element-removed at /Person/Phone" in out
    result = run(tmp_path, "schemas", "publish", v20, "--name", "person", "--version", "2.0")
    error_line(result, 1)
    assert "element-removed at /Person/Phone" in result.stdout
    assert ("person", "2.0", "draft") in statuses(tmp_path)


def test_deprecate_then_list_shows_it_deprecated(tmp_path: Path) -> None:
    out = ok(run(tmp_path, "schemas", "deprecate", "person", "1.0"))
    assert out.strip() == "person 1.0 is deprecated"
    assert statuses(tmp_path) == shipped_with({("person", "1.0"): "deprecated"})
    assert ", deprecated " in ok(run(tmp_path, "schemas", "show", "person"))
    # deprecated, not withdrawn: its dictionary is still there, saying so
    assert "已废弃" in ok(run(tmp_path, "schemas", "dictionary", "person", "1.0"))


def test_a_draft_cannot_be_deprecated(tmp_path: Path) -> None:
    v12 = person_variant(tmp_path / "handed-in", "email")
    ok(run(tmp_path, "schemas", "publish", v12, "--name", "person", "--version", "1.2", "--draft"))
    assert "is a draft" in error_line(run(tmp_path, "schemas", "deprecate", "person", "1.2"), 2)
    assert ("person", "1.2", "draft") in statuses(tmp_path)


# -- on PostgreSQL, seen from another machine ---------------------------------------------------


@pytest.mark.postgres
def test_on_postgresql_every_machine_sees_the_same_versions(pg_url: str, tmp_path: Path) -> None:
    here, elsewhere = tmp_path / "standards-office", tmp_path / "worker-host"
    here.mkdir()
    elsewhere.mkdir()
    assert [row[:3] for row in listed(here, pg_url)] == shipped_with()
    v12 = person_variant(tmp_path / "handed-in" / "1.2", "email")
    v20 = person_variant(tmp_path / "handed-in" / "2.0", "no-phone")
    assert "published" in ok(run(here, "schemas", "publish", v12, "--name", "person", "--version", "1.2", database_url=pg_url))
    result = run(here, "schemas", "publish", v20, "--name", "person", "--version", "2.0", database_url=pg_url)
    error_line(result, 1)
    assert "element-removed at /Person/Phone" in result.stdout
    ok(run(here, "schemas", "deprecate", "person", "1.0", database_url=pg_url))
    shutil.rmtree(tmp_path / "handed-in")  # what was handed in is gone; the database keeps it

    assert statuses(elsewhere, pg_url) == shipped_with({("person", "1.0"): "deprecated"}, ("person", "1.2", "published"))
    show = ok(run(elsewhere, "schemas", "show", "person", "1.2", database_url=pg_url))
    assert re.search(r"^/Person/Email\s+电子邮箱\s+string", show, re.MULTILINE)
    document = json.loads(ok(run(elsewhere, "schemas", "dictionary", "person", "1.2", "--format", "json", database_url=pg_url)))
    paths = [i["path"] for i in document["items"]]
    for record in ("/Person/", "/PersonBatch/Person/"):  # a record on its own and in a batch
        assert [p for p in paths if p.startswith(record) and "@" not in p][-2:] == [record + "Email", record + "RecordUpdatedAt"]
    assert "has no version '2.0'" in error_line(run(elsewhere, "schemas", "show", "person", "2.0", database_url=pg_url), 2)
