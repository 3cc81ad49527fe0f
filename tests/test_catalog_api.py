"""The resource catalogue's REST API, used as the console uses it: HTTP Basic as a catalogue
user, JSON in and out, on the FastAPI app `govbus serve` hosts.

Every role is exercised: the platform admin, a provider department (PSB) with its admin and
staff, a consumer department (CAB) with its admin and staff, and a third department's admin
(HRB) that has no say over either. The first platform admin is created as `govbus catalog init`
creates it; everything else goes through the API. Most tests share one platform on the
embedded default (in-memory broker, SQLite) and work on resources of their own, so that they
stay independent; the central lifecycle test also runs on PostgreSQL, the production database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import kombu.transport.memory
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import catalog_registry.applications
from bus.app import Context, open_context
from bus.http import create_app
from catalog_registry.service import service_of
from catalog_registry.workdays import add_workdays
from tests.conftest import EXAMPLES, make_settings

API = "/api/v1"
PASSWORD = "s3cret-pass"  # everyone's; a password needs at least 8 characters
STATUS_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid"}
PERSON_ITEMS = ["/Person/IdNumber", "/Person/Name", "/Person/Division"]


# -- callers --------------------------------------------------------------------------------


class Caller:
    """One catalogue user's view of the API: each call states the status it expects."""

    def __init__(self, client: TestClient, username: str, password: str = PASSWORD) -> None:
        self.client = client
        self.username = username
        self.password = password

    def call(self, method: str, path: str, status: int, json: Any = None, params: dict[str, Any] | None = None,
             content: bytes | None = None) -> Any:
        response = self.client.request(method, API + path, auth=(self.username, self.password), json=json,
                                       params=params, content=content)
        assert response.status_code == status, (
            f"{method} {path} as {self.username}: expected {status}, got {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def get(self, path: str, status: int = 200, **params: Any) -> Any:
        return self.call("GET", path, status, params=params or None)

    def post(self, path: str, json: Any = None, status: int = 200) -> Any:
        return self.call("POST", path, status, json=json)

    def patch(self, path: str, json: Any, status: int = 200) -> Any:
        return self.call("PATCH", path, status, json=json)

    def refused(self, method: str, path: str, status: int, *words: str, json: Any = None) -> str:
        """Call, expecting a refusal with `status` whose message names every one of `words`."""
        body = self.call(method, path, status, json=json)
        assert body["error"] == STATUS_CODES[status], body
        for word in words:
            assert word in body["message"], f"{word!r} not in {body['message']!r}"
        return str(body["message"])


@dataclass
class Platform:
    context: Context
    app: FastAPI
    client: TestClient
    shared_directory: int  # a directory of the shared catalogue
    psb_directory: int  # a directory of PSB's own catalogue

    def __getattr__(self, username: str) -> Caller:
        # platform.psb_staff and the like: the caller of that name
        if username.startswith("_"):
            raise AttributeError(username)
        return Caller(self.client, username)


DEPARTMENTS = {"PSB": "市公安局", "CAB": "市民政局", "HRB": "市人力资源和社会保障局"}


def build_platform(settings: Any) -> Platform:
    context = open_context(settings)
    # `govbus catalog init`: the first user, added by nobody, is a platform admin
    service_of(context).catalog.add_user(None, "admin", "平台管理员", "platform_admin", PASSWORD)
    app = create_app(context)
    client = TestClient(app)
    admin = Caller(client, "admin")
    for code, name in DEPARTMENTS.items():
        admin.post("/departments", {"code": code, "name": name}, status=201)
        admin.post("/users", {"username": f"{code.lower()}_admin", "role": "department_admin", "password": PASSWORD,
                              "department": code}, status=201)
    for code in ("PSB", "CAB"):  # a department admin adds the department's own staff
        created = Caller(client, f"{code.lower()}_admin").post("/users", {
            "username": f"{code.lower()}_staff", "display_name": f"{DEPARTMENTS[code]}工作人员", "role": "department_staff",
            "password": PASSWORD, "department": code}, status=201)
        assert created == {"username": f"{code.lower()}_staff", "display_name": f"{DEPARTMENTS[code]}工作人员",
                           "role": "department_staff", "department": code}
    shared = admin.post("/directories", {"name": "基础信息资源", "catalogue": "shared"}, status=201)
    own = Caller(client, "psb_admin").post("/directories", {"name": "公安内部资源", "catalogue": "department",
                                                            "department": "PSB"}, status=201)
    assert (shared["kind"], own["kind"], own["department"]) == ("shared", "department", "PSB")
    return Platform(context, app, client, shared["id"], own["id"])


def clear_memory_broker() -> None:
    kombu.transport.memory.Channel.queues.clear()
    kombu.transport.memory.Transport.global_state.clear()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform on the embedded default for the module: building one costs about a second
    (schemas, password hashing), and each test works on resources of its own."""
    built = build_platform(make_settings("memory://", tmp_path_factory.mktemp("catalog-api"), routes=None))
    yield built
    built.context.engine.dispose()
    clear_memory_broker()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """The embedded default's platform, or a fresh one on its own PostgreSQL database."""
    if request.param == "sqlite":
        yield request.getfixturevalue("platform")
        return
    built = build_platform(make_settings("memory://", tmp_path, routes=None,
                                         database_url=request.getfixturevalue("pg_url")))
    yield built
    built.context.engine.dispose()
    clear_memory_broker()


# -- helpers --------------------------------------------------------------------------------


def draft(platform: Platform, code: str | None = None, *, shared: bool = True, **metadata: Any) -> dict[str, Any]:
    """PSB's staff proposes a resource (by default: conditionally shared, of the person specification)."""
    body = {"provider": "PSB", "directory_id": platform.shared_directory if shared else platform.psb_directory,
            "classification": "1.01.001", "name": "常住人口信息", "abstract": "本市常住人口的基本信息",
            "sharing_type": "conditional", "sharing_conditions": "仅限依法履职使用", "sharing_mode": "subscription",
            "specification": "person", "specification_version": "1.0", **metadata}
    if code is not None:
        body["code"] = code
    return platform.psb_staff.post("/resources", body, status=201)  # type: ignore[no-any-return]


def published(platform: Platform, code: str, **metadata: Any) -> dict[str, Any]:
    """A resource of PSB published on the shared catalogue: proposed, submitted, approved."""
    draft(platform, code, **metadata)
    platform.psb_admin.post(f"/resources/{code}/submit")
    resource = platform.admin.post(f"/resources/{code}/approve")
    assert resource["status"] == "published"
    return resource  # type: ignore[no-any-return]


def set_today(monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    """The date in China as the applications see it, for deadlines and the overdue flag."""
    monkeypatch.setattr(catalog_registry.applications, "today", lambda: day)


def as_utc(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    assert moment.tzinfo is not None, f"{stamp} says no time zone"
    return moment.astimezone(timezone.utc)


def transitions(history: list[dict[str, Any]]) -> list[tuple[str, str | None, str, str, int, str]]:
    return [(e["action"], e["from_status"], e["to_status"], e["actor"], e["revision"], e["reason"]) for e in history]


# -- the resource lifecycle -----------------------------------------------------------------


def test_resource_lifecycle_on_the_shared_catalogue_with_review_and_full_history(any_platform: Platform) -> None:
    p = any_platform
    started = datetime.now(timezone.utc)

    # staff propose: a draft, its code made from the classification
    created = draft(p, classification="9.01.001", name="流动人口居住登记信息")
    code = created["code"]
    assert code == "901001-0001"
    assert (created["status"], created["revision"], created["published_revision"]) == ("draft", 1, None)
    assert (created["provider"], created["provider_name"], created["catalogue"]) == ("PSB", "市公安局", "shared")
    assert [i["path"] for i in created["data_items"]][:2] == ["/Person/IdNumber", "/Person/Name"]

    # staff cannot submit; their department admin does, and it waits for review
    p.psb_staff.refused("POST", f"/resources/{code}/submit", 403, "only an admin of department PSB may submit",
                        "psb_staff is department_staff of PSB")
    assert p.psb_admin.post(f"/resources/{code}/submit", {"reason": "请审核"})["status"] == "submitted"

    # a rejection needs its reason, and sends the draft back
    p.admin.refused("POST", f"/resources/{code}/reject", 422, "a rejection states its reason", json={})
    p.admin.refused("POST", f"/resources/{code}/reject", 422, "a rejection states its reason", json={"reason": "  "})
    assert p.admin.post(f"/resources/{code}/reject", {"reason": "摘要不完整"})["status"] == "draft"

    # staff fix the draft, the admin resubmits, the platform admin approves: published
    edited = p.psb_staff.patch(f"/resources/{code}", {"abstract": "本市流动人口的居住登记信息，含居住地址"})
    assert (edited["status"], edited["abstract"]) == ("draft", "本市流动人口的居住登记信息，含居住地址")
    p.psb_admin.post(f"/resources/{code}/submit")
    approved = p.admin.post(f"/resources/{code}/approve", {"reason": "符合编目要求"})
    assert (approved["status"], approved["revision"], approved["published_revision"]) == ("published", 1, 1)
    assert approved["publish_date"] is not None and approved["pending"] is None

    # a revision: staff draft it, the metadata in force stays revision 1 until it is approved
    revising = p.psb_staff.post(f"/resources/{code}/revise", {"name": "流动人口信息", "update_cycle": "daily"})
    assert (revising["status"], revising["revision"], revising["name"]) == ("published", 1, "流动人口居住登记信息")
    assert (revising["pending"]["number"], revising["pending"]["name"], revising["pending"]["state"]) == (2, "流动人口信息", "draft")
    assert p.psb_admin.post(f"/resources/{code}/submit")["status"] == "revision_submitted"
    revised = p.admin.post(f"/resources/{code}/approve")
    assert (revised["status"], revised["revision"], revised["published_revision"]) == ("published", 2, 2)
    assert (revised["name"], revised["update_cycle"], revised["pending"]) == ("流动人口信息", "daily", None)
    assert p.admin.get(f"/resources/{code}")["revision"] == 2

    # deregistration states its reason, and on the shared catalogue waits for review too
    p.psb_admin.refused("POST", f"/resources/{code}/deregister", 422, "a deregistration states its reason",
                        json={"reason": ""})
    assert p.psb_admin.post(f"/resources/{code}/deregister", {"reason": "数据源停用"})["status"] == "deregistration_submitted"
    assert p.admin.post(f"/resources/{code}/approve", {"reason": "同意注销"})["status"] == "deregistered"
    assert p.psb_staff.get(f"/resources/{code}")["status"] == "deregistered"

    # every transition: what, from, to, who, which revision, why; and when
    history = p.psb_staff.get(f"/resources/{code}/history")
    finished = datetime.now(timezone.utc)
    assert transitions(history) == [
        ("create", None, "draft", "psb_staff", 1, ""),
        ("submit", "draft", "submitted", "psb_admin", 1, "请审核"),
        ("reject", "submitted", "draft", "admin", 1, "摘要不完整"),
        ("edit", "draft", "draft", "psb_staff", 1, ""),
        ("submit", "draft", "submitted", "psb_admin", 1, ""),
        ("approve", "submitted", "published", "admin", 1, "符合编目要求"),
        ("revise", "published", "published", "psb_staff", 2, ""),
        ("submit", "published", "revision_submitted", "psb_admin", 2, ""),
        ("approve", "revision_submitted", "published", "admin", 2, ""),
        ("deregister", "published", "deregistration_submitted", "psb_admin", 2, "数据源停用"),
        ("approve", "deregistration_submitted", "deregistered", "admin", 2, "同意注销"),
    ]
    times = [as_utc(e["at"]) for e in history]
    assert times == sorted(times)
    assert started - timedelta(seconds=1) <= times[0] and times[-1] <= finished + timedelta(seconds=1)


def test_department_admin_publishes_on_the_departments_own_catalogue_without_review(platform: Platform) -> None:
    p = platform
    code = "PSB-OWN-0001"
    assert draft(p, code, shared=False)["catalogue"] == "department"

    published_at_once = p.psb_admin.post(f"/resources/{code}/submit", {"reason": "部门内部使用"})
    assert (published_at_once["status"], published_at_once["published_revision"]) == ("published", 1)
    # nothing waits for the platform admin
    p.admin.refused("POST", f"/resources/{code}/approve", 409, f"{code} is published: nothing awaits review")

    p.psb_staff.post(f"/resources/{code}/revise", {"abstract": "新增居住地址"})
    revised = p.psb_admin.post(f"/resources/{code}/submit")
    assert (revised["status"], revised["revision"], revised["abstract"]) == ("published", 2, "新增居住地址")

    assert p.psb_admin.post(f"/resources/{code}/deregister", {"reason": "并入共享目录"})["status"] == "deregistered"
    assert transitions(p.psb_admin.get(f"/resources/{code}/history")) == [
        ("create", None, "draft", "psb_staff", 1, ""),
        ("publish", "draft", "published", "psb_admin", 1, "部门内部使用"),
        ("revise", "published", "published", "psb_staff", 2, ""),
        ("publish", "published", "published", "psb_admin", 2, ""),
        ("deregister", "published", "deregistered", "psb_admin", 2, "并入共享目录"),
    ]


def test_rejected_revision_returns_to_the_published_revision(platform: Platform) -> None:
    p = platform
    code = "PSB-REJ-0001"
    published(p, code)
    p.psb_staff.post(f"/resources/{code}/revise", {"name": "改名"})
    p.psb_admin.post(f"/resources/{code}/submit")
    back = p.admin.post(f"/resources/{code}/reject", {"reason": "名称不规范"})
    # revision 1 stays in force; revision 2 is a draft again, for staff to fix and resubmit
    assert (back["status"], back["revision"], back["name"]) == ("published", 1, "常住人口信息")
    assert (back["pending"]["number"], back["pending"]["state"]) == (2, "draft")
    assert p.psb_staff.patch(f"/resources/{code}", {"name": "常住人口基本信息"})["pending"]["name"] == "常住人口基本信息"
    assert p.psb_admin.post(f"/resources/{code}/submit")["status"] == "revision_submitted"
    assert transitions(p.admin.get(f"/resources/{code}/history"))[-4:] == [
        ("submit", "published", "revision_submitted", "psb_admin", 2, ""),
        ("reject", "revision_submitted", "published", "admin", 2, "名称不规范"),
        ("edit", "published", "published", "psb_staff", 2, ""),
        ("submit", "published", "revision_submitted", "psb_admin", 2, ""),
    ]


def test_rejected_deregistration_is_recorded_against_the_published_revision(platform: Platform) -> None:
    p = platform
    code = "PSB-REJ-0002"
    published(p, code)
    # a revision in the works does not take part in deregistering revision 1
    p.psb_staff.post(f"/resources/{code}/revise", {"name": "改名"})
    p.psb_admin.post(f"/resources/{code}/deregister", {"reason": "拟停用"})
    kept = p.admin.post(f"/resources/{code}/reject", {"reason": "仍有部门订阅"})
    assert (kept["status"], kept["revision"], kept["pending"]["number"]) == ("published", 1, 2)
    assert transitions(p.admin.get(f"/resources/{code}/history"))[-2:] == [
        ("deregister", "published", "deregistration_submitted", "psb_admin", 1, "拟停用"),
        ("reject", "deregistration_submitted", "published", "admin", 1, "仍有部门订阅"),
    ]


# -- refusals -------------------------------------------------------------------------------


def test_another_departments_users_cannot_touch_a_departments_resources(platform: Platform) -> None:
    p = platform
    code = "PSB-REF-0001"
    draft(p, code)
    for caller in (p.cab_staff, p.cab_admin):
        caller.refused("PATCH", f"/resources/{code}", 403, "only a member of department PSB may edit its resources",
                       f"{caller.username} is {'department_staff' if 'staff' in caller.username else 'department_admin'} of CAB",
                       json={"name": "x"})
        caller.refused("POST", f"/resources/{code}/submit", 403, "only an admin of department PSB may submit")
    # nor catalogue resources in its name, nor may the platform admin (it provides nothing)
    body = {"provider": "PSB", "directory_id": p.shared_directory, "classification": "1.01.002", "name": "x",
            "sharing_type": "unconditional", "sharing_mode": "subscription"}
    p.cab_admin.refused("POST", "/resources", 403, "only a member of department PSB may catalogue its resources", json=body)
    p.admin.refused("POST", "/resources", 403, "only a member of department PSB", "admin is platform_admin", json=body)
    # a department files in the shared catalogue or its own, not another's
    p.cab_staff.refused("POST", "/resources", 422, "a resource is filed in the shared catalogue or its provider's own",
                        json={**body, "provider": "CAB", "directory_id": p.psb_directory})

    p.psb_admin.post(f"/resources/{code}/submit")
    # review of the shared catalogue is the platform admin's, not any department admin's
    for caller in (p.cab_admin, p.psb_admin, p.psb_staff):
        caller.refused("POST", f"/resources/{code}/approve", 403, "only a platform admin may review the shared catalogue")
        caller.refused("POST", f"/resources/{code}/reject", 403, "only a platform admin may review",
                       json={"reason": "不同意"})
    p.admin.post(f"/resources/{code}/approve")

    for caller in (p.cab_staff, p.cab_admin, p.hrb_admin):
        caller.refused("POST", f"/resources/{code}/revise", 403, "only a member of department PSB may revise",
                       json={"name": "x"})
    for caller in (p.cab_admin, p.psb_staff):
        caller.refused("POST", f"/resources/{code}/deregister", 403, "only an admin of department PSB may deregister",
                       json={"reason": "不再需要"})
    # on the department's own catalogue too, only its admin publishes
    own = "PSB-REF-0002"
    draft(p, own, shared=False)
    p.cab_admin.refused("POST", f"/resources/{own}/submit", 403, "only an admin of department PSB")
    p.psb_staff.refused("POST", f"/resources/{own}/submit", 403, "only an admin of department PSB")
    # and nothing of it changed
    assert p.admin.get(f"/resources/{code}")["status"] == "published"
    assert p.admin.get(f"/resources/{own}")["status"] == "draft"


def test_invalid_transitions_are_conflicts_that_say_why(platform: Platform) -> None:
    p = platform
    code = "PSB-TRN-0001"
    draft(p, code)
    p.admin.refused("POST", f"/resources/{code}/approve", 409, f"{code} is draft: nothing awaits review")
    p.admin.refused("POST", f"/resources/{code}/reject", 409, f"{code} is draft: nothing awaits review",
                    json={"reason": "x"})
    p.psb_staff.refused("POST", f"/resources/{code}/revise", 409, f"{code} is draft",
                        "only a published resource without a pending revision is revised", json={})
    p.psb_admin.refused("POST", f"/resources/{code}/deregister", 409, f"{code} is draft: only a published resource is deregistered",
                        json={"reason": "x"})

    p.psb_admin.post(f"/resources/{code}/submit")
    p.psb_admin.refused("POST", f"/resources/{code}/submit", 409, f"{code} has no draft to submit (submitted)")
    p.psb_staff.refused("PATCH", f"/resources/{code}", 409, f"{code} has no draft to edit (submitted)", json={"name": "x"})

    p.admin.post(f"/resources/{code}/approve")
    p.psb_staff.refused("PATCH", f"/resources/{code}", 409, "no draft to edit (published); a published resource is revised",
                        json={"name": "x"})
    p.admin.refused("POST", f"/resources/{code}/approve", 409, f"{code} is published: nothing awaits review")
    p.psb_staff.post(f"/resources/{code}/revise", {})
    p.psb_staff.refused("POST", f"/resources/{code}/revise", 409, "with a revision pending", json={})
    p.psb_admin.post(f"/resources/{code}/submit")
    p.psb_admin.refused("POST", f"/resources/{code}/deregister", 409, f"{code} is revision_submitted", json={"reason": "x"})
    # a code is taken once
    p.psb_staff.refused("POST", "/resources", 409, f"resource {code} exists already",
                        json={"provider": "PSB", "directory_id": p.shared_directory, "code": code, "classification": "1.01.001",
                              "name": "x", "sharing_type": "unconditional", "sharing_mode": "subscription"})


def test_unknown_things_are_not_found(platform: Platform) -> None:
    p = platform
    p.psb_staff.refused("GET", "/resources/NO-SUCH-RESOURCE", 404, "no information resource NO-SUCH-RESOURCE")
    p.psb_staff.refused("GET", "/resources/NO-SUCH-RESOURCE/history", 404, "no information resource NO-SUCH-RESOURCE")
    p.psb_admin.refused("POST", "/resources/NO-SUCH-RESOURCE/submit", 404, "no information resource")
    p.admin.refused("POST", "/resources/NO-SUCH-RESOURCE/approve", 404, "no information resource")
    p.cab_admin.refused("GET", "/applications/999999", 404, "no application 999999")
    p.cab_admin.refused("POST", "/applications/999999/submit", 404, "no application 999999")
    p.admin.refused("PATCH", "/departments/NOPE", 404, "no department NOPE", json={"name": "x"})
    p.admin.refused("PATCH", "/users/nobody", 404, "no user nobody", json={"active": False})
    p.cab_staff.refused("POST", "/applications", 404, "no information resource NO-SUCH-RESOURCE",
                        json={"resource": "NO-SUCH-RESOURCE", "consumer": "CAB", "purpose": "核验"})
    p.psb_staff.refused("POST", "/resources", 404, "no directory 999999",
                        json={"provider": "PSB", "directory_id": 999999, "classification": "1.01.001", "name": "x",
                              "sharing_type": "unconditional", "sharing_mode": "subscription"})


def test_bad_resource_metadata_is_refused_naming_the_field(platform: Platform) -> None:
    p = platform
    base = {"provider": "PSB", "directory_id": p.shared_directory, "classification": "1.01.001", "name": "x",
            "sharing_type": "unconditional", "sharing_mode": "subscription"}
    for change, words in [
        ({"name": ""}, ["a resource needs its name"]),
        ({"classification": "first"}, ["a classification is", "e.g. 1.01.001"]),
        ({"sharing_type": "sometimes"}, ["sharing type is one of unconditional, conditional, not_shared", "'sometimes'"]),
        ({"sharing_type": "conditional"}, ["a conditionally shared resource states its sharing conditions"]),
        ({"specification": "person"}, ["a specification is named with its version"]),
        ({"specification": "person", "specification_version": "9.9"}, ["specification person has no published version 9.9"]),
        ({"themes": ["no-such-theme"]}, ["no data theme no-such-theme"]),
        ({"publish_date": "2025-13-01"}, ["publish date '2025-13-01' is not YYYY-MM-DD"]),
        ({"code": "lower case"}, ["a resource code is 2-64 of A-Z"]),
    ]:
        p.psb_staff.refused("POST", "/resources", 422, *words, json={**base, **change})


def test_platform_only_actions_are_refused_to_department_users(platform: Platform) -> None:
    p = platform
    for caller in (p.psb_admin, p.psb_staff):
        role = caller.username.split("_")[1]
        caller.refused("POST", "/domains", 403, "only a platform admin may add a domain",
                       json={"code": "440499", "name": "x", "level": "district"})
        caller.refused("POST", "/departments", 403, "only a platform admin may add a department",
                       json={"code": "NEW1", "name": "x"})
        caller.refused("POST", "/themes", 403, "only a platform admin may create a data theme",
                       json={"code": "transport", "name": "交通"})
        caller.refused("POST", "/directories", 403, "only a platform admin may change the shared catalogue's directories",
                       json={"name": "x", "catalogue": "shared"})
        caller.refused("POST", "/import", 403, "only a platform admin may import a catalogue")
        caller.refused("PATCH", "/users/cab_staff", 403, "only a platform admin may change a user's role or activity",
                       json={"active": False})
        caller.refused("PATCH", "/users/psb_staff" if role == "admin" else "/users/psb_admin", 403,
                       "only a platform admin may set another user's password", json={"password": "another-pass"})
        caller.refused("POST", "/users", 403, f"{caller.username} (department_{role}) may add staff of department PSB only",
                       json={"username": "psb_boss", "role": "department_admin", "password": PASSWORD, "department": "PSB"})
        caller.refused("PATCH", "/departments/CAB", 403, "only an admin of department CAB may change the department",
                       json={"name": "x"})
    # staff add no one, and a department admin adds staff of its own department only
    p.psb_staff.refused("POST", "/users", 403, "may add staff of department PSB only",
                        json={"username": "psb_x", "role": "department_staff", "password": PASSWORD, "department": "PSB"})
    p.psb_admin.refused("POST", "/users", 403, "may add staff of department PSB only",
                        json={"username": "cab_x", "role": "department_staff", "password": PASSWORD, "department": "CAB"})
    p.psb_admin.refused("POST", "/users", 403, "may add staff of department PSB only",
                        json={"username": "root2", "role": "platform_admin", "password": PASSWORD})
    p.psb_admin.refused("POST", "/directories", 403, "only an admin of department CAB may change the department's directories",
                        json={"name": "x", "catalogue": "department", "department": "CAB"})
    # staff see no user list; a department admin sees the department's users only
    p.psb_staff.refused("GET", "/users", 403, "only a platform admin may list users")
    assert {u["username"] for u in p.psb_admin.get("/users")} == {"psb_admin", "psb_staff"}
    assert {"admin", "psb_admin", "cab_admin", "hrb_admin"} <= {u["username"] for u in p.admin.get("/users")}
    # what a department admin may do to its own department: rename it
    assert p.hrb_admin.patch("/departments/HRB", {"name": "珠海市人社局"})["name"] == "珠海市人社局"
    # and what the platform admin may do, adding a domain for one
    assert p.admin.post("/domains", {"code": "440499", "name": "测试区平台", "level": "district", "parent": "440400"},
                        status=201)["code"] == "440499"
    assert "440499" in {d["code"] for d in p.psb_staff.get("/domains")}


def test_bad_structure_input_is_refused_naming_the_rule(platform: Platform) -> None:
    p = platform
    p.admin.refused("POST", "/domains", 422, "a domain code is a 6-digit GB/T 2260 division code, got '4404'",
                    json={"code": "4404", "name": "x", "level": "city"})
    p.admin.refused("POST", "/domains", 409, "domain 440400 exists already",
                    json={"code": "440400", "name": "x", "level": "city"})
    p.admin.refused("POST", "/departments", 422, "a department code is 2-32 of A-Z and 0-9, got 'psb'",
                    json={"code": "psb", "name": "x"})
    p.admin.refused("POST", "/departments", 409, "department PSB exists already", json={"code": "PSB", "name": "x"})
    p.admin.refused("POST", "/users", 422, "a role is one of platform_admin, department_admin, department_staff",
                    json={"username": "x1", "role": "boss", "password": PASSWORD, "department": "PSB"})
    p.admin.refused("POST", "/users", 422, "a password needs at least 8 characters",
                    json={"username": "x2", "role": "department_staff", "password": "short", "department": "PSB"})
    p.admin.refused("POST", "/users", 422, "a platform admin belongs to no department; department users need one",
                    json={"username": "x3", "role": "department_staff", "password": PASSWORD})
    p.admin.refused("POST", "/users", 409, "user psb_staff exists already",
                    json={"username": "psb_staff", "role": "department_staff", "password": PASSWORD, "department": "PSB"})


# -- logging in -----------------------------------------------------------------------------


def test_every_request_but_health_needs_an_active_user_with_the_right_password(platform: Platform) -> None:
    p = platform
    assert p.client.get("/health").json()["status"] == "ok"

    anonymous = p.client.get(f"{API}/resources")
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "unauthenticated", "message": "log in: HTTP Basic with a catalogue user"}
    assert anonymous.headers["www-authenticate"] == 'Basic realm="govbus"'
    # a wrong password and an unknown user read alike: the API does not tell which users exist
    Caller(p.client, "psb_admin", "wrong-password").refused("GET", "/me", 401, "wrong user name or password")
    Caller(p.client, "nobody", PASSWORD).refused("GET", "/me", 401, "wrong user name or password")

    p.hrb_admin.post("/users", {"username": "hrb_temp", "role": "department_staff", "password": PASSWORD,
                                "department": "HRB"}, status=201)
    assert p.hrb_temp.get("/me") == {"username": "hrb_temp", "role": "department_staff", "department": "HRB"}
    p.admin.patch("/users/hrb_temp", {"active": False}, status=204)
    p.hrb_temp.refused("GET", "/me", 401, "wrong user name or password")
    assert [u["active"] for u in p.hrb_admin.get("/users") if u["username"] == "hrb_temp"] == [False]
    p.admin.patch("/users/hrb_temp", {"active": True}, status=204)
    assert p.hrb_temp.get("/me")["username"] == "hrb_temp"

    # a user changes their own password; the old one stops working
    p.hrb_temp.patch("/users/hrb_temp", {"password": "new-secret-1"}, status=204)
    p.hrb_temp.refused("GET", "/me", 401, "wrong user name or password")
    assert Caller(p.client, "hrb_temp", "new-secret-1").get("/me")["role"] == "department_staff"


# -- share applications ---------------------------------------------------------------------


def test_unconditional_resource_is_granted_on_application(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0001"
    published(p, code, sharing_type="unconditional", sharing_conditions="")

    application = p.cab_staff.post("/applications", {"resource": code, "consumer": "CAB", "purpose": "婚姻登记核验"},
                                   status=201)
    assert (application["status"], application["consumer"], application["provider"]) == ("draft", "CAB", "PSB")
    assert application["created_by"] == "cab_staff" and application["subscription_id"] is None
    number = application["id"]
    # staff propose; their admin submits
    p.cab_staff.refused("POST", f"/applications/{number}/submit", 403, "only an admin of department CAB may submit")
    p.hrb_admin.refused("POST", f"/applications/{number}/submit", 403, "only an admin of department CAB may submit")
    granted = p.cab_admin.post(f"/applications/{number}/submit")
    assert (granted["status"], granted["deadline"], granted["overdue"]) == ("approved", None, False)
    assert granted["subscription_id"] is not None

    [subscription] = p.cab_staff.get("/subscriptions", resource=code)
    assert (subscription["id"], subscription["subscriber"], subscription["status"]) == (granted["subscription_id"], "CAB", "active")
    assert (subscription["items"], subscription["filter"], subscription["application_id"]) == (None, None, number)
    history = p.cab_admin.get(f"/applications/{number}")["history"]
    assert [(e["action"], e["from_status"], e["to_status"], e["actor"]) for e in history] == [
        ("apply", None, "draft", "cab_staff"), ("submit", "draft", "approved", "cab_admin")]
    assert history[1]["reason"] == "granted on application: the resource is shared unconditionally"
    p.cab_admin.refused("POST", f"/applications/{number}/submit", 409, f"application {number} is approved, not a draft")


def test_conditional_application_needs_the_provider_then_the_platform_admin(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    p = platform
    code = "PSB-APP-0002"
    published(p, code)
    number = p.cab_staff.post("/applications", {
        "resource": code, "consumer": "CAB", "purpose": "低保对象户籍核验", "items": PERSON_ITEMS,
        "filter": "r:Division = '440402'"}, status=201)["id"]

    # submitted on the eve of the National Day holidays: 1-8 October 2025 are off and Saturday
    # 11 October is worked, so the 10th working day after 30 September is 21 October
    set_today(monkeypatch, date(2025, 9, 30))
    waiting = p.cab_admin.post(f"/applications/{number}/submit")
    assert (waiting["status"], waiting["deadline"], waiting["overdue"]) == ("pending_provider", "2025-10-21", False)
    assert add_workdays(date(2025, 9, 30), 10) == date(2025, 10, 21)

    # the provider's admin decides first; nobody else can
    set_today(monkeypatch, date(2025, 10, 9))
    for caller in (p.cab_admin, p.hrb_admin, p.psb_staff, p.admin):
        caller.refused("POST", f"/applications/{number}/approve", 403,
                       "only an admin of department PSB may approve applications for its resources")
    provider_approved = p.psb_admin.post(f"/applications/{number}/approve", {"reason": "同意，限核验使用"})
    # then the platform admin, with a new 10 working days: 9 October + 10 = 22 October
    assert (provider_approved["status"], provider_approved["deadline"]) == ("pending_platform", "2025-10-22")
    assert provider_approved["subscription_id"] is None
    assert p.cab_staff.get("/subscriptions", resource=code) == []
    for caller in (p.psb_admin, p.cab_admin):
        caller.refused("POST", f"/applications/{number}/approve", 403,
                       "only a platform admin may approve applications on the shared catalogue")
    approved = p.admin.post(f"/applications/{number}/approve", {"reason": "同意"})
    assert approved["status"] == "approved"
    p.admin.refused("POST", f"/applications/{number}/approve", 409, f"application {number} is approved: nothing awaits approval")

    # the subscription carries what was applied for: the data items and the filter
    [subscription] = p.cab_admin.get("/subscriptions", resource=code, subscriber="CAB")
    assert (subscription["id"], subscription["items"], subscription["filter"]) == (
        approved["subscription_id"], PERSON_ITEMS, "r:Division = '440402'")
    history = p.cab_staff.get(f"/applications/{number}")["history"]
    assert [(e["action"], e["to_status"], e["actor"], e["reason"]) for e in history] == [
        ("apply", "draft", "cab_staff", ""), ("submit", "pending_provider", "cab_admin", ""),
        ("approve", "pending_platform", "psb_admin", "同意，限核验使用"), ("approve", "approved", "admin", "同意")]

    # revoking ends it: a third department may not, a revocation says why
    p.hrb_admin.refused("POST", f"/applications/{number}/revoke", 403,
                        "only an admin of CAB or PSB, or a platform admin, may revoke", json={"reason": "x"})
    p.cab_staff.refused("POST", f"/applications/{number}/revoke", 403, "only an admin of CAB or PSB", json={"reason": "x"})
    p.psb_admin.refused("POST", f"/applications/{number}/revoke", 422, "a revocation states its reason", json={})
    revoked = p.psb_admin.post(f"/applications/{number}/revoke", {"reason": "超出核验用途"})
    assert revoked["status"] == "revoked"
    assert p.cab_admin.get("/subscriptions", resource=code) == []
    [ended] = p.cab_admin.get("/subscriptions", resource=code, active=False)
    assert (ended["status"], ended["revoked_by"], ended["revoke_reason"]) == ("revoked", "psb_admin", "超出核验用途")
    p.psb_admin.refused("POST", f"/applications/{number}/revoke", 409, f"application {number} is revoked: only an approved one",
                        json={"reason": "again"})


def test_application_on_a_departments_own_catalogue_needs_only_the_provider(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0003"
    draft(p, code, shared=False)
    p.psb_admin.post(f"/resources/{code}/submit")
    number = p.cab_admin.post("/applications", {"resource": code, "consumer": "CAB", "purpose": "核验"}, status=201)["id"]
    assert p.cab_admin.post(f"/applications/{number}/submit")["status"] == "pending_provider"
    granted = p.psb_admin.post(f"/applications/{number}/approve")
    assert granted["status"] == "approved"
    assert [s["subscriber"] for s in p.admin.get("/subscriptions", resource=code)] == ["CAB"]


def test_application_waiting_past_its_deadline_is_flagged_overdue(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    p = platform
    code = "PSB-APP-0004"
    published(p, code)
    set_today(monkeypatch, date(2025, 9, 30))
    number = p.cab_admin.post("/applications", {"resource": code, "consumer": "CAB", "purpose": "核验"}, status=201)["id"]
    assert p.cab_admin.post(f"/applications/{number}/submit")["deadline"] == "2025-10-21"

    def overdue_ids() -> set[int]:
        return {a["id"] for a in p.psb_admin.get("/applications", provider="PSB", overdue="true")}

    # the reply is due by the end of the deadline's day
    set_today(monkeypatch, date(2025, 10, 21))
    assert p.psb_admin.get(f"/applications/{number}")["overdue"] is False
    assert number not in overdue_ids()
    set_today(monkeypatch, date(2025, 10, 22))
    assert p.psb_admin.get(f"/applications/{number}")["overdue"] is True
    assert number in overdue_ids()
    # once decided, it waits for no one
    p.psb_admin.post(f"/applications/{number}/reject", {"reason": "用途不明确"})
    assert p.psb_admin.get(f"/applications/{number}")["overdue"] is False


def test_provider_rejects_an_application_with_its_reason(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0005"
    published(p, code)
    number = p.cab_admin.post("/applications", {"resource": code, "consumer": "CAB", "purpose": "核验"}, status=201)["id"]
    p.cab_admin.post(f"/applications/{number}/submit")
    p.psb_admin.refused("POST", f"/applications/{number}/reject", 422, "a rejection states its reason", json={"reason": ""})
    p.cab_admin.refused("POST", f"/applications/{number}/reject", 403,
                        "only an admin of department PSB may reject applications for its resources", json={"reason": "x"})
    rejected = p.psb_admin.post(f"/applications/{number}/reject", {"reason": "申请用途与共享条件不符"})
    assert (rejected["status"], rejected["subscription_id"]) == ("rejected", None)
    last = p.cab_staff.get(f"/applications/{number}")["history"][-1]
    assert (last["action"], last["actor"], last["reason"]) == ("reject", "psb_admin", "申请用途与共享条件不符")
    p.psb_admin.refused("POST", f"/applications/{number}/approve", 409, f"application {number} is rejected: nothing awaits approval")
    assert p.cab_admin.get("/subscriptions", resource=code) == []


def test_bad_applications_are_refused(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0006"
    published(p, code)
    application = {"resource": code, "consumer": "CAB", "purpose": "核验"}
    # a department applies for itself only
    p.hrb_admin.refused("POST", "/applications", 403, "only a member of department CAB may apply for its department",
                        json=application)
    p.admin.refused("POST", "/applications", 403, "only a member of department CAB", json=application)
    for change, words in [
        ({"purpose": "   "}, ["an application states its purpose"]),
        ({"kind": "forever"}, ["an application is one of usage, negotiated"]),
        ({"items": ["/Person/IdNumber", "/Person/Salary"]}, [f"resource {code} has no data item /Person/Salary",
                                                              "/Person/IdNumber"]),
        ({"items": []}, ["an application for some data items names at least one"]),
        ({"filter": "r:Division = = '440402'"}, ["content filter", "is not XPath 1.0", "r:Division = '440402'"]),
    ]:
        p.cab_staff.refused("POST", "/applications", 422, *words, json={**application, **change})
    p.psb_staff.refused("POST", "/applications", 422, f"department PSB provides {code} itself",
                        json={**application, "consumer": "PSB"})
    unpublished = "PSB-APP-0007"
    draft(p, unpublished)
    p.cab_staff.refused("POST", "/applications", 409, f"resource {unpublished} is draft: only a published resource is applied for",
                        json={**application, "resource": unpublished})
    # none of them was recorded
    assert [a for a in p.admin.get("/applications") if a["resource"] in (code, unpublished)] == []


def test_a_resource_not_shared_cannot_be_applied_for(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0008"
    published(p, code, sharing_type="not_shared", sharing_conditions="")
    response = p.client.post(f"{API}/applications", auth=("cab_admin", PASSWORD),
                             json={"resource": code, "consumer": "CAB", "purpose": "核验"})
    # the caller's role and department allow applying (403 says they do not): it is the
    # resource that refuses, a conflict with its state or an invalid request
    assert response.status_code in (409, 422), response.text
    assert f"resource {code}" in response.json()["message"] and "not shared" in response.json()["message"]


def test_deregistering_a_resource_ends_its_subscriptions(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0009"
    published(p, code, sharing_type="unconditional", sharing_conditions="")
    number = p.cab_admin.post("/applications", {"resource": code, "consumer": "CAB", "purpose": "核验"}, status=201)["id"]
    p.cab_admin.post(f"/applications/{number}/submit")
    assert len(p.admin.get("/subscriptions", resource=code)) == 1
    p.psb_admin.post(f"/resources/{code}/deregister", {"reason": "停止采集"})
    p.admin.post(f"/resources/{code}/approve")
    assert p.admin.get("/subscriptions", resource=code) == []
    [ended] = p.admin.get("/subscriptions", resource=code, active=False)
    assert ended["revoke_reason"] == f"resource {code} deregistered"
    p.cab_admin.refused("POST", "/applications", 409, f"resource {code} is deregistered",
                        json={"resource": code, "consumer": "CAB", "purpose": "核验"})


# -- search, import, documentation -----------------------------------------------------------


def test_search_finds_the_imported_sample_catalogue_ranked_and_paged(tmp_path: Path) -> None:
    context = open_context(make_settings("memory://", tmp_path, routes=None))
    try:
        service_of(context).catalog.add_user(None, "admin", "平台管理员", "platform_admin", PASSWORD)
        admin = Caller(TestClient(create_app(context)), "admin")
        admin.refused("POST", "/import", 422, "not a catalogue document", json=None)
        counts = admin.call("POST", "/import", 200, content=(EXAMPLES / "catalog.xml").read_bytes())
        assert counts["resources"] == {"created": 9, "updated": 0, "unchanged": 0}
        assert counts["departments"]["created"] == 20

        # pinyin initials: hjrk is 户籍人口
        found = admin.get("/search", q="hjrk")
        assert found["hits"][0]["name"] == "户籍人口信息"
        assert (found["hits"][0]["code"], found["hits"][0]["provider"], found["hits"][0]["reason"]) == (
            "101001-0001", "GA", "pinyin-initials")

        # ranked: the name that starts with the word first, then resources that mention it
        ranked = admin.get("/search", q="婚姻")
        assert ranked["hits"][0]["name"] == "婚姻登记信息" and ranked["hits"][0]["reason"] == "name-prefix"
        assert "户籍人口信息" in [h["name"] for h in ranked["hits"][1:]]
        scores = [h["score"] for h in ranked["hits"]]
        assert scores == sorted(scores, reverse=True)

        # paged: browsing the nine resources four at a time
        pages = [admin.get("/search", size=4, page=n) for n in (1, 2, 3, 4)]
        assert [len(page["hits"]) for page in pages] == [4, 4, 1, 0]
        assert {page["total"] for page in pages} == {9}
        assert len({h["code"] for page in pages for h in page["hits"]}) == 9
        assert admin.get("/search", department="GA")["total"] == 1
        admin.get("/search", status=422, size=500)

        # what was imported is exported again
        exported = admin.client.get(f"{API}/export", auth=("admin", PASSWORD))
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/xml")
        assert "户籍人口信息" in exported.text
    finally:
        context.engine.dispose()
        clear_memory_broker()


def test_openapi_and_its_documentation_are_served(platform: Platform) -> None:
    docs = platform.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = platform.client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/resources", "/api/v1/resources/{code}/submit", "/api/v1/applications/{application_id}/approve",
                 "/api/v1/search", "/api/v1/import", "/health"):
        assert path in paths, sorted(paths)
    assert "HTTPBasic" in schema.json()["components"]["securitySchemes"]


# -- defects found while writing these tests -------------------------------------------------


def test_the_url_names_the_application_action(platform: Platform) -> None:
    p = platform
    code = "PSB-APP-0010"
    published(p, code, sharing_type="unconditional", sharing_conditions="")
    number = p.cab_admin.post("/applications", {"resource": code, "consumer": "CAB", "purpose": "核验"}, status=201)["id"]
    p.cab_admin.post(f"/applications/{number}/submit")
    # an approved application: approving it again is a conflict, whatever the query string says
    response = p.client.post(f"{API}/applications/{number}/approve", params={"_action": "revoke"},
                             json={"reason": "x"}, auth=("admin", PASSWORD))
    assert response.status_code == 409, response.text
    assert p.admin.get(f"/applications/{number}")["status"] == "approved"
    parameters = platform.client.get("/openapi.json").json()["paths"][
        "/api/v1/applications/{application_id}/approve"]["post"].get("parameters", [])
    assert [q["name"] for q in parameters] == ["application_id"]


def test_a_user_change_that_changes_nothing_is_no_server_error(platform: Platform) -> None:
    client = TestClient(platform.app, raise_server_exceptions=False)
    response = client.patch(f"{API}/users/psb_staff", json={}, auth=("admin", PASSWORD))
    assert response.status_code in (204, 422), response.text
    assert platform.psb_staff.get("/me")["role"] == "department_staff"


def test_a_malformed_request_is_refused_in_the_same_shape_as_any_other_error(platform: Platform) -> None:
    # a client reads one error shape: a missing field is as invalid as a malformed code
    auth = ("admin", PASSWORD)
    bad_code = platform.client.post(f"{API}/departments", json={"code": "bad code", "name": "x"}, auth=auth)
    no_name = platform.client.post(f"{API}/departments", json={"code": "NONAME"}, auth=auth)
    assert bad_code.status_code == no_name.status_code == 422
    assert bad_code.json() == {"error": "invalid", "message": "a department code is 2-32 of A-Z and 0-9, got 'bad code'"}
    assert set(no_name.json()) == set(bad_code.json()), no_name.text
    assert no_name.json()["error"] == "invalid" and "name" in no_name.json()["message"]


def test_a_platform_admin_belongs_to_no_department_whatever_the_route(platform: Platform) -> None:
    p = platform
    p.hrb_admin.post("/users", {"username": "hrb_promoted", "role": "department_staff", "password": PASSWORD,
                                "department": "HRB"}, status=201)
    response = p.client.patch(f"{API}/users/hrb_promoted", json={"role": "platform_admin"}, auth=("admin", PASSWORD))
    # refused as adding such a user is, or done without the department
    if response.status_code == 204:
        assert p.hrb_promoted.get("/me") == {"username": "hrb_promoted", "role": "platform_admin", "department": None}
    else:
        assert response.status_code == 422, response.text
        assert "a platform admin belongs to no department" in response.json()["message"]


def test_times_say_their_time_zone(platform: Platform) -> None:
    # users are in China (UTC+8), the instants are stored in UTC: a time without its offset
    # reads eight hours wrong
    code = "PSB-TZ-0001"
    resource = draft(platform, code)
    [created] = platform.psb_staff.get(f"/resources/{code}/history")
    for stamp in (created["at"], resource["updated_at"]):
        assert datetime.fromisoformat(stamp).tzinfo is not None, stamp


def test_what_concerns_two_departments_is_read_by_them_and_the_platform_only(platform: Platform) -> None:
    p = platform
    # a draft is not announced to other departments: for them it does not exist yet
    draft(p, "PSB-SEE-0001")
    assert p.psb_staff.get("/resources/PSB-SEE-0001")["status"] == "draft"
    assert p.admin.get("/resources/PSB-SEE-0001")["status"] == "draft"
    p.cab_admin.refused("GET", "/resources/PSB-SEE-0001", 404, "no information resource PSB-SEE-0001")
    assert "PSB-SEE-0001" in [r["code"] for r in p.psb_admin.get("/resources")]
    assert "PSB-SEE-0001" not in [r["code"] for r in p.cab_admin.get("/resources")]

    # published metadata is for everyone; the revision under way and the history are not
    published(p, "PSB-SEE-0002", sharing_type="unconditional", sharing_conditions="")
    p.psb_staff.post("/resources/PSB-SEE-0002/revise", {"name": "常住人口信息（修订）"})
    assert p.psb_staff.get("/resources/PSB-SEE-0002")["pending"]["name"] == "常住人口信息（修订）"
    seen = p.cab_staff.get("/resources/PSB-SEE-0002")
    assert (seen["name"], seen["pending"]) == ("常住人口信息", None)
    p.cab_staff.refused("GET", "/resources/PSB-SEE-0002/history", 403, "PSB")
    assert p.admin.get("/resources/PSB-SEE-0002/history")

    # an application and its subscription: for the consumer, the provider and the platform
    number = p.cab_staff.post("/applications", {"resource": "PSB-SEE-0002", "consumer": "CAB", "purpose": "核验"},
                              status=201)["id"]
    p.cab_admin.post(f"/applications/{number}/submit")
    for reader in (p.cab_staff, p.psb_staff, p.admin):
        assert reader.get(f"/applications/{number}")["status"] == "approved"
        assert number in [a["id"] for a in reader.get("/applications")]
        assert [s["subscriber"] for s in reader.get("/subscriptions", resource="PSB-SEE-0002")] == ["CAB"]
    p.hrb_admin.refused("GET", f"/applications/{number}", 404, f"no application {number}")
    assert number not in [a["id"] for a in p.hrb_admin.get("/applications")]
    assert p.hrb_admin.get("/subscriptions", resource="PSB-SEE-0002") == []
