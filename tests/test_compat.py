"""Compatibility between versions of a data specification, rule by rule.

Each folder of tests/data/compat/ is one change a standards officer might make: `old.xsd`,
`new.xsd`, and `verdict.toml`, which says whether the change is compatible under BACKWARD
(new readers take old messages), FORWARD (old readers take new messages) and FULL, and lists
the findings FULL reports (rule, path and direction). The verdicts were worked out from who
reads and who writes, not copied from the checker's output.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import pytest

import schemas.compat
from schemas.compat import Finding, check
from schemas.model import Model, load_model
from schemas.safety import inspect_specification

DATA = Path(__file__).resolve().parent / "data" / "compat"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "verdict.toml").is_file())
TRANSITIVE = DATA / "transitive"
DIRECTIONS = {"BACKWARD": {"backward"}, "FORWARD": {"forward"}, "FULL": {"backward", "forward"}}


@functools.cache
def model(path: Path) -> Model:
    return load_model(path)


@functools.cache
def verdict(case: str) -> dict[str, Any]:
    return tomllib.loads((DATA / case / "verdict.toml").read_text(encoding="utf-8"))


def expected(case: str) -> set[tuple[str, str, str]]:
    return {(f["rule"], f["path"], f["direction"]) for f in verdict(case).get("finding", [])}


def found(findings: list[Finding]) -> set[tuple[str, str, str]]:
    return {(f.rule, f.path, f.direction) for f in findings}


def compare(case: str, mode: str) -> list[Finding]:
    return check(model(DATA / case / "new.xsd"), [("1.0", model(DATA / case / "old.xsd"))], mode)


def documented_rules() -> set[str]:
    """The rule ids of the table in schemas/compat.py's docstring."""
    rules: set[str] = set()
    for line in (schemas.compat.__doc__ or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 2 or cells[0] in ("rule", "") or set(cells[0]) <= {"-"}:
            continue
        rules.update(r.strip() for r in cells[0].split(","))
    return rules


# -- the test data itself ------------------------------------------------------------------


def test_there_is_a_case_for_every_rule_of_the_checker():
    rules = documented_rules()
    # the first and the last row of the table: the whole of it was read
    assert {"namespace-changed", "wildcard-removed"} <= rules, f"rule table of schemas/compat.py unread: {sorted(rules)}"
    shown = {rule for case in CASES for rule, _, _ in expected(case)}
    missing = rules - shown
    assert not missing, f"rules with no case folder under {DATA}: {sorted(missing)}"
    unknown = shown - rules
    assert not unknown, f"case folders name rules the checker does not have: {sorted(unknown)}"


@pytest.mark.parametrize("case", CASES)
def test_case_is_a_pair_of_specifications_the_registry_would_take(case):
    for name in ("old.xsd", "new.xsd"):
        assert inspect_specification(DATA / case / name) == [(DATA / case / name).resolve()]


@pytest.mark.parametrize("case", CASES)
def test_verdict_file_agrees_with_itself(case):
    v = verdict(case)
    assert v["description"].strip() and "\n" not in v["description"]
    assert v["full"] == (v["backward"] and v["forward"])
    directions = {d for _, _, d in expected(case)}
    assert directions <= {"backward", "forward"}
    assert v["backward"] == ("backward" not in directions)
    assert v["forward"] == ("forward" not in directions)


# -- the rules, pair by pair ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["BACKWARD", "FORWARD", "FULL"])
@pytest.mark.parametrize("case", CASES)
def test_rule_pair(case, mode):
    findings = compare(case, mode)
    want = {f for f in expected(case) if f[2] in DIRECTIONS[mode]}
    assert (not findings) == verdict(case)[mode.lower()], [str(f) for f in findings]
    assert found(findings) == want, [str(f) for f in findings]
    assert len(findings) == len(want), f"a finding is reported twice: {[str(f) for f in findings]}"
    assert {f.against for f in findings} <= {"1.0"}


@pytest.mark.parametrize("case", CASES)
def test_none_mode_accepts_any_change(case):
    assert compare(case, "NONE") == []


@pytest.mark.parametrize("case", [c for c in CASES if expected(c)])
def test_finding_names_its_rule_and_path(case):
    for finding in compare(case, "FULL"):
        text = str(finding)
        assert finding.rule in text and finding.path in text and "1.0" in text and finding.direction in text
        assert finding.message and finding.message in text


def test_a_first_version_has_nothing_to_be_compatible_with():
    new = model(DATA / "element-removed" / "new.xsd")
    for mode in schemas.compat.MODES:
        assert check(new, [], mode) == []


def test_mode_is_read_in_any_case_and_an_unknown_one_is_refused():
    new, old = model(DATA / "element-removed" / "new.xsd"), model(DATA / "element-removed" / "old.xsd")
    assert found(check(new, [("1.0", old)], "backward")) == {("element-removed", "/Record/Note", "backward")}
    with pytest.raises(ValueError, match="BACKWARD_TRANSITIVE"):
        check(new, [("1.0", old)], "BACKWARDS")
    with pytest.raises(ValueError):
        check(new, [], "STRICT")


def test_default_mode_is_backward():
    new, old = model(DATA / "optional-element-added" / "new.xsd"), model(DATA / "optional-element-added" / "old.xsd")
    assert schemas.compat.DEFAULT_MODE == "BACKWARD"
    assert check(new, [("1.0", old)]) == []
    assert check(old, [("1.0", new)]) == check(old, [("1.0", new)], "BACKWARD") != []


# -- transitive modes: 1.0 -> 2.0 (a deliberate break) -> 2.1 (2.0 documented) --------------


def test_chain_is_made_of_specifications_the_registry_would_take():
    for n in (1, 2, 3):
        assert inspect_specification(TRANSITIVE / f"v{n}.xsd") == [(TRANSITIVE / f"v{n}.xsd").resolve()]


def chain() -> tuple[Model, list[tuple[str, Model]]]:
    return model(TRANSITIVE / "v3.xsd"), [("1.0", model(TRANSITIVE / "v1.xsd")), ("2.0", model(TRANSITIVE / "v2.xsd"))]


@pytest.mark.parametrize("base", ["BACKWARD", "FORWARD", "FULL"])
def test_latest_only_mode_compares_with_the_latest_version(base):
    new, earlier = chain()
    assert check(new, earlier, base) == []


@pytest.mark.parametrize("base", ["BACKWARD", "FORWARD", "FULL"])
def test_transitive_mode_compares_with_every_earlier_version(base):
    new, earlier = chain()
    findings = check(new, earlier, f"{base}_TRANSITIVE")
    assert {(f.rule, f.path, f.direction, f.against) for f in findings} == {
        ("pattern-changed", "/Record/Phone", direction, "1.0") for direction in DIRECTIONS[base]
    }
    assert all("against 1.0" in str(f) for f in findings)


def test_transitive_mode_reports_each_earlier_version_it_breaks():
    v1, v2, v3 = (model(TRANSITIVE / f"v{n}.xsd") for n in (1, 2, 3))
    # 2.0 itself broke 1.0; a candidate that reverts to 1.0's pattern breaks 2.0 and 2.1 instead
    findings = check(v1, [("1.0", v1), ("2.0", v2), ("2.1", v3)], "BACKWARD_TRANSITIVE")
    assert {(f.rule, f.path, f.against) for f in findings} == {
        ("pattern-changed", "/Record/Phone", "2.0"), ("pattern-changed", "/Record/Phone", "2.1"),
    }
    latest = check(v1, [("1.0", v1), ("2.0", v2), ("2.1", v3)], "BACKWARD")
    assert {(f.rule, f.path, f.against) for f in latest} == {("pattern-changed", "/Record/Phone", "2.1")}
