"""The person specification evolves through the registry, as standards staff would evolve it.

1.0 and 1.1 are shipped with govbus; 1.2 is the shipped 1.1 plus an optional e-mail address
(compatible under BACKWARD, the mode the shipped versions are published under); 2.0 is 1.2
without the phone number (not compatible: 1.2 messages may carry one). The evolved files are in
tests/data/person/<version>/person.xsd.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from schemas import Incompatible, InvalidSpecification
from schemas.registry import Registry, metadata

DATA = Path(__file__).resolve().parent / "data" / "person"
V12 = DATA / "1.2" / "person.xsd"
V20 = DATA / "2.0" / "person.xsd"


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the shipped specifications registered, made once and copied per test."""
    path = tmp_path_factory.mktemp("registry") / "registry.db"
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    Registry(engine, path.parent / "cache").bootstrap()
    engine.dispose()
    return path


@pytest.fixture
def registry(bootstrapped: Path, tmp_path: Path) -> Iterator[Registry]:
    engine = create_engine(f"sqlite:///{shutil.copy(bootstrapped, tmp_path / 'registry.db')}")
    yield Registry(engine, tmp_path / "cache")
    engine.dispose()


def versions(registry: Registry) -> dict[str, str]:
    return {e.version: e.status for e in registry.entries("person")}


def rules(findings) -> set[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    return {(f.rule, f.path, f.direction, f.against) for f in findings}


def test_shipped_person_is_published_under_the_default_mode(registry):
    for version in ("1.0", "1.1"):
        entry = registry.entry("person", version)
        assert (entry.status, entry.mode, entry.namespace) == ("published", "BACKWARD", "urn:zhuhai:govbus:person")
    assert versions(registry) == {"1.0": "published", "1.1": "published"}


def test_adding_an_optional_element_is_published(registry):
    publication = registry.publish(V12, "person", "1.2", who="standards")
    assert publication.outcome == "published"
    assert publication.findings == []
    entry = publication.entry
    assert (entry.status, entry.mode, entry.registered_by) == ("published", "BACKWARD", "standards")
    assert entry.published_at is not None
    assert versions(registry) == {"1.0": "published", "1.1": "published", "1.2": "published"}
    # the registry hands back the very file that was published, and reads the new item from it
    assert registry.main_path("person", "1.2").read_bytes() == V12.read_bytes()
    assert not registry.model("person", "1.2").items["/Person/Email"].required


def test_adding_an_optional_element_is_refused_under_forward(registry):
    with pytest.raises(Incompatible) as caught:
        registry.publish(V12, "person", "1.2", mode="FORWARD")
    assert rules(caught.value.findings) == {
        ("element-removed", "/Person/Email", "forward", "1.1"),
        ("element-removed", "/PersonBatch/Person/Email", "forward", "1.1"),  # a batch holds the same Person
        ("type-removed", "EmailType", "forward", "1.1"),
    }
    assert "FORWARD" in str(caught.value)
    assert versions(registry) == {"1.0": "published", "1.1": "published"}


def test_removing_an_element_is_refused_and_nothing_is_registered(registry):
    registry.publish(V12, "person", "1.2")
    with pytest.raises(Incompatible) as caught:
        registry.publish(V20, "person", "2.0")
    error = caught.value
    assert error.code == "incompatible_version"
    assert ("element-removed", "/Person/Phone", "backward", "1.2") in rules(error.findings)
    # the phone number's type went with it, and the batch's Person lost it too; nothing else
    # changed between 1.2 and 2.0
    assert rules(error.findings) == {
        ("element-removed", "/Person/Phone", "backward", "1.2"),
        ("element-removed", "/PersonBatch/Person/Phone", "backward", "1.2"),
        ("type-removed", "PhoneType", "backward", "1.2"),
    }
    assert "BACKWARD" in str(error) and "3 finding(s)" in str(error)
    assert versions(registry) == {"1.0": "published", "1.1": "published", "1.2": "published"}


def test_check_answers_before_publishing(registry):
    registry.publish(V12, "person", "1.2")
    mode, findings = registry.check(V20, "person", "2.0")
    assert mode == "BACKWARD"
    assert ("element-removed", "/Person/Phone", "backward", "1.2") in rules(findings)
    assert registry.check(V20, "person", "2.0", mode="NONE") == ("NONE", [])
    assert versions(registry) == {"1.0": "published", "1.1": "published", "1.2": "published"}


def test_removing_an_element_is_published_under_none(registry):
    registry.publish(V12, "person", "1.2")
    publication = registry.publish(V20, "person", "2.0", mode="NONE")
    assert (publication.outcome, publication.entry.mode, publication.findings) == ("published", "NONE", [])
    assert "/Person/Phone" not in registry.model("person", "2.0").items


def test_publishing_the_same_files_again_changes_nothing(registry):
    first = registry.publish(V12, "person", "1.2", who="standards").entry
    again = registry.publish(V12, "person", "1.2", who="someone-else")
    assert again.outcome == "unchanged"
    assert again.entry == first
    assert versions(registry) == {"1.0": "published", "1.1": "published", "1.2": "published"}


def test_other_files_under_a_registered_version_are_refused(registry):
    registry.publish(V12, "person", "1.2")
    with pytest.raises(InvalidSpecification, match="new version"):
        registry.publish(V20, "person", "1.2")
    with pytest.raises(InvalidSpecification, match="new version"):
        registry.publish(V12, "person", "1.1")  # a shipped version is registered like any other
    with pytest.raises(InvalidSpecification, match="new version"):
        registry.publish(V12, "person", "1.0")
    assert registry.main_path("person", "1.2").read_bytes() == V12.read_bytes()


def test_an_incompatible_draft_is_kept_with_its_findings(registry):
    registry.publish(V12, "person", "1.2")
    publication = registry.publish(V20, "person", "2.0", draft=True, who="standards")
    assert publication.outcome == "draft"
    assert publication.entry.status == "draft"
    assert publication.entry.published_at is None
    assert ("element-removed", "/Person/Phone", "backward", "1.2") in rules(publication.findings)
    assert registry.entry("person", "2.0").status == "draft"
    assert versions(registry) == {"1.0": "published", "1.1": "published", "1.2": "published", "2.0": "draft"}


def test_an_incompatible_draft_cannot_be_promoted(registry):
    registry.publish(V12, "person", "1.2")
    registry.publish(V20, "person", "2.0", draft=True)
    with pytest.raises(Incompatible) as caught:
        registry.publish(V20, "person", "2.0")
    assert ("element-removed", "/Person/Phone", "backward", "1.2") in rules(caught.value.findings)
    assert registry.entry("person", "2.0").status == "draft"


def test_a_compatible_draft_is_promoted(registry):
    assert registry.publish(V12, "person", "1.2", draft=True).outcome == "draft"
    publication = registry.publish(V12, "person", "1.2")
    assert publication.outcome == "promoted"
    assert publication.entry.status == "published" and publication.entry.published_at is not None


def test_a_draft_is_not_an_earlier_version_to_be_compatible_with(registry):
    registry.publish(V12, "person", "1.2")
    registry.publish(V20, "person", "2.0", draft=True)
    # 2.1 = 1.2 again: compared with the published 1.2, not with the 2.0 draft it would break
    publication = registry.publish(V12, "person", "2.1")
    assert (publication.outcome, publication.findings) == ("published", [])
