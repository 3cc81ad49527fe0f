"""The routing table from its TOML file: the sample compiles, every mistake fails at load time
naming the entry to fix, and `govbus routes show` prints what the platform will do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from schemas import SchemaSet

from bus.errors import ConfigError, NotAuthorized, UnknownResource
from bus.routing import Resource, Route
from routes.table import parse_table

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "routes.toml"
GOVBUS = ROOT / ".venv" / "bin" / "govbus"

HEAD = """\
[departments.GA]
name = "市公安局"

[departments.MZ]
name = "市民政局"

[resources."GA-001"]
name = "户籍人口信息"
provider = "GA"
specification = "person"
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_table(text, "routes.toml")
    assert caught.value.message.startswith("routes.toml: "), caught.value.message
    return caught.value.message


# --- the sample -------------------------------------------------------------------------------


def test_sample_table_compiles():
    table = parse_table(SAMPLE.read_text(encoding="utf-8"), str(SAMPLE))
    assert sorted(table.resources) == ["GA-001", "GS-001"]
    assert table.resources["GA-001"] == Resource("GA-001", "户籍人口信息", "GA", "person")
    assert table.resources["GS-001"] == Resource("GS-001", "企业登记信息", "GS", "legal-entity")
    assert table.routes("GA-001") == (Route("GA-001", "MZ"), Route("GA-001", "RS"))
    assert [r.subscriber for r in table.routes("GS-001")] == ["RS", "GSW", "DSW"]
    assert [d.code for d in table.subscribers()] == ["DSW", "GSW", "MZ", "RS"]
    assert sorted(table.departments) == ["DSW", "GA", "GS", "GSW", "MZ", "RS"]


def test_departments_take_deliveries_in_their_inbox_by_default():
    table = parse_table(SAMPLE.read_text(encoding="utf-8"))
    assert {d.outbound for d in table.departments.values()} == {"inbox"}


def test_department_outbound_and_settings_are_read():
    table = parse_table(
        HEAD.replace('name = "市民政局"\n', 'name = "市民政局"\noutbound = "soap"\nsettings = { url = "http://mz.internal/ws" }\n')
    )
    mz = table.departments["MZ"]
    assert (mz.outbound, dict(mz.settings)) == ("soap", {"url": "http://mz.internal/ws"})


def test_an_empty_file_is_an_empty_table():
    table = parse_table("")
    assert (dict(table.resources), table.subscribers()) == ({}, [])


# --- mistakes, each naming the entry ----------------------------------------------------------


def test_toml_syntax_error_gives_the_line():
    text = HEAD + '\n[[subscriptions]\nresource = "GA-001"\nsubscriber = "MZ"\n'
    bad_line = text.splitlines().index("[[subscriptions]") + 1
    assert f"line {bad_line}" in error_of(text)


def test_unknown_section_with_a_hint():
    message = error_of(HEAD + '\n[[subscription]]\nresource = "GA-001"\nsubscriber = "MZ"\n')
    assert "unknown section [subscription]" in message
    assert "did you mean [subscriptions]?" in message


def test_unknown_section_without_a_close_match_lists_the_sections():
    message = error_of(HEAD + "\n[catalogue]\nurl = 'x'\n")
    assert "[catalogue]" in message
    assert "departments, resources, subscriptions" in message


def test_unknown_key_in_a_department_with_a_hint():
    message = error_of(HEAD.replace('name = "市民政局"', 'nmae = "市民政局"'))
    assert "[departments.MZ]" in message
    assert "unknown key 'nmae'; did you mean 'name'?" in message


def test_unknown_key_in_a_resource_with_a_hint():
    message = error_of(HEAD.replace('specification = "person"', 'specificaton = "person"'))
    assert '[resources."GA-001"]' in message
    assert "unknown key 'specificaton'; did you mean 'specification'?" in message


def test_unknown_key_in_a_subscription_with_a_hint():
    text = HEAD + (
        '\n[[subscriptions]]\nresource = "GA-001"\nsubscriber = "MZ"\n'
        '\n[[subscriptions]]\nresource = "GA-001"\nsubscribr = "MZ"\n'
    )
    message = error_of(text)
    assert "subscription #2" in message
    assert "unknown key 'subscribr'; did you mean 'subscriber'?" in message


@pytest.mark.parametrize(
    "text, entry, key",
    [
        (HEAD.replace('name = "市民政局"\n', 'outbound = "inbox"\n'), "[departments.MZ]", "name"),
        (HEAD.replace('provider = "GA"\n', ""), '[resources."GA-001"]', "provider"),
        (HEAD.replace('specification = "person"\n', ""), '[resources."GA-001"]', "specification"),
        (HEAD.replace('provider = "GA"\n', 'provider = ""\n'), '[resources."GA-001"]', "provider"),
        (HEAD + '\n[[subscriptions]]\nresource = "GA-001"\n', "subscription #1", "subscriber"),
        (HEAD + '\n[[subscriptions]]\nsubscriber = "MZ"\n', "subscription #1", "resource"),
    ],
)
def test_missing_required_key(text, entry, key):
    message = error_of(text)
    assert entry in message
    assert f"missing '{key}'" in message


@pytest.mark.parametrize("code", ["mz", "M", "MZ-1", "民政"])
def test_malformed_department_code(code):
    message = error_of(HEAD.replace("[departments.MZ]", f'[departments."{code}"]'))
    assert f"[departments.{code}]" in message
    assert "a department code is 2-32 of A-Z and 0-9" in message


def test_malformed_resource_code():
    message = error_of(HEAD.replace('[resources."GA-001"]', '[resources."ga 001"]'))
    assert '[resources."ga 001"]' in message
    assert "resource code" in message


def test_unknown_specification_lists_the_known_ones():
    message = error_of(HEAD.replace('specification = "person"', 'specification = "people"'))
    assert '[resources."GA-001"]' in message
    assert "no data specification 'people'" in message
    known = SchemaSet().specifications()
    assert "person" in known and "legal-entity" in known
    assert f"(known: {', '.join(known)})" in message


def test_resource_provider_must_be_a_declared_department():
    message = error_of(HEAD.replace('provider = "GA"', 'provider = "GAJ"'))
    assert "GA-001" in message
    assert "provider GAJ is not a declared department" in message


def test_subscription_to_an_unknown_resource():
    message = error_of(HEAD + '\n[[subscriptions]]\nresource = "GA-002"\nsubscriber = "MZ"\n')
    assert "unknown resource GA-002" in message
    assert "MZ" in message


def test_subscription_by_an_unknown_department():
    message = error_of(HEAD + '\n[[subscriptions]]\nresource = "GA-001"\nsubscriber = "RS"\n')
    assert "GA-001" in message
    assert "subscriber RS is not a declared department" in message


@pytest.mark.parametrize(
    "text, entry",
    [
        ('departments = "GA"\n', "departments"),
        ('resources = ["GA-001"]\n', "resources"),
    ],
)
def test_a_section_that_is_not_a_table(text, entry):
    assert entry in error_of(text)


def test_department_settings_that_are_not_a_table():
    message = error_of(HEAD.replace('name = "市民政局"\n', 'name = "市民政局"\nsettings = "url=http://mz.internal/ws"\n'))
    assert "[departments.MZ]" in message
    assert "settings" in message


# --- the compiled table -----------------------------------------------------------------------


def sample():
    return parse_table(SAMPLE.read_text(encoding="utf-8"))


def test_authorise_returns_the_resource_to_its_provider():
    assert sample().authorise("GA", "GA-001").specification == "person"


def test_authorise_refuses_an_unknown_resource():
    with pytest.raises(UnknownResource, match="GA-999"):
        sample().authorise("GA", "GA-999")


def test_authorise_refuses_anyone_but_the_provider():
    with pytest.raises(NotAuthorized) as caught:
        sample().authorise("MZ", "GA-001")
    message = caught.value.message
    assert "department MZ may not submit resource GA-001" in message
    assert "its provider is GA" in message


def test_a_subscriber_is_not_a_provider():
    # receiving a resource gives no right to submit it
    table = sample()
    assert "RS" in [r.subscriber for r in table.routes("GS-001")]
    with pytest.raises(NotAuthorized):
        table.authorise("RS", "GS-001")


def test_resource_without_subscribers_has_no_routes():
    table = parse_table(HEAD)
    assert table.routes("GA-001") == ()
    assert table.subscribers() == []
    assert table.authorise("GA", "GA-001").code == "GA-001"  # still accepted from its provider


def test_unknown_resource_has_no_routes():
    assert sample().routes("GA-999") == ()


def test_duplicate_subscriptions_yield_one_route():
    subscription = '\n[[subscriptions]]\nresource = "GA-001"\nsubscriber = "MZ"\n'
    table = parse_table(HEAD + subscription * 3)
    assert table.routes("GA-001") == (Route("GA-001", "MZ"),)
    assert [d.code for d in table.subscribers()] == ["MZ"]


def test_table_cannot_be_changed_after_loading():
    table = sample()
    with pytest.raises(TypeError):
        table.resources["GA-002"] = Resource("GA-002", "x", "GA", "person")  # type: ignore[index]


# --- govbus routes show -----------------------------------------------------------------------


def govbus(*args: str, routes: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env["GOVBUS_ROUTES"] = str(routes)
    return subprocess.run([str(GOVBUS), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_routes_show_prints_each_resource_with_its_recipients(tmp_path):
    result = govbus("routes", "show", routes=SAMPLE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ga = next(line for line in lines if line.startswith("GA-001"))
    gs = next(line for line in lines if line.startswith("GS-001"))
    assert ga.split()[:3] == ["GA-001", "person", "GA"]
    assert ga.endswith("MZ, RS")
    assert gs.split()[:3] == ["GS-001", "legal-entity", "GS"]
    assert gs.endswith("RS, GSW, DSW")
    assert "户籍人口信息" in result.stdout and "企业登记信息" in result.stdout


def test_routes_show_says_when_a_resource_is_not_delivered(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(HEAD, encoding="utf-8")
    result = govbus("routes", "show", routes=routes, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ga = next(line for line in result.stdout.splitlines() if line.startswith("GA-001"))
    assert ga.endswith("(none: not delivered)")


def test_routes_show_with_a_missing_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nowhere" / "routes.toml"
    result = govbus("routes", "show", routes=missing, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("govbus: error:")
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_routes_show_with_a_file_not_in_utf8_exits_2_with_one_line(tmp_path):
    # a file saved by a Chinese-locale editor in GBK
    routes = tmp_path / "routes.toml"
    routes.write_bytes(HEAD.encode("gbk"))
    result = govbus("routes", "show", routes=routes, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("govbus: error:")
    assert str(routes) in result.stderr


def test_routes_show_with_a_broken_file_exits_2_naming_the_entry(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(HEAD.replace('provider = "GA"', 'provder = "GA"'), encoding="utf-8")
    result = govbus("routes", "show", routes=routes, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"govbus: error: {routes}: [resources.\"GA-001\"]: unknown key 'provder'; did you mean 'provider'?"
    ]
