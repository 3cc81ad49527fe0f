"""The catalogue drives the exchange, end to end on RabbitMQ and PostgreSQL.

The sample catalogue (examples/catalog.xml) is imported; the stages run on the table compiled
from it. Every catalogue change below is made while they run: the workers hear of it on the
control exchange and reload without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from bus.app import Context, open_context
from bus.deadletter import DeadLetterStore
from bus.deliver import inbox
from bus.worker import Worker
from catalog_registry.auth import DEPARTMENT_ADMIN, PLATFORM_ADMIN, Actor
from catalog_registry.exchange import Exchange
from catalog_registry.service import Service, service_of

from tests.conftest import EXAMPLES, inbox_ids, make_settings, management, running, submit, wait_until
from tests.samples import PERSON_NS, person_envelope

PERSON = "101001-0001"  # 户籍人口信息, provided by GA, conditional, on the shared catalogue
PLATFORM = Actor("admin", PLATFORM_ADMIN, None, None)
WANTED = ["/Person/IdNumber", "/Person/Name", "/Person/Address"]  # what 市交通运输局 asks for


@pytest.fixture
def context(amqp_url: str, pg_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = open_context(make_settings(amqp_url, tmp_path, routes=None, database_url=pg_url))
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def service(context: Context) -> Service:
    service = service_of(context)
    Exchange(service.catalog, service.resources).import_(PLATFORM, (EXAMPLES / "catalog.xml").read_bytes())
    return service


def admin_of(service: Service, department: str) -> Actor:
    return Actor(f"{department.lower()}-admin", DEPARTMENT_ADMIN, service.catalog.department(department)["id"], department)


def granted(service: Service, consumer: str, items: list[str] | None) -> int:
    """A usage application of `consumer` for the person resource, through every approval."""
    applications = service.applications
    application = applications.apply(admin_of(service, consumer), PERSON, consumer, purpose="核验驾驶人身份", items=items)
    assert applications.submit(admin_of(service, consumer), application["id"])["status"] == "pending_provider"
    assert applications.approve(admin_of(service, "GA"), application["id"])["status"] == "pending_platform"
    assert applications.approve(PLATFORM, application["id"], "符合共享条件")["status"] == "approved"
    return int(application["id"])


def reloaded(worker: Worker, service: Service) -> None:
    """Wait until the running stages use the catalogue's current routing table."""
    version = service.catalog.version()
    wait_until(lambda: worker.routing_version == version, message=f"the workers to reload routing version {version}")


def bodies(context: Context, department: str) -> dict[str, bytes]:
    with context.engine.connect() as conn:
        rows = conn.execute(inbox.select().where(inbox.c.department == department).order_by(inbox.c.id)).all()
    return {row.message_id: row.body for row in rows}


def payload(body: bytes) -> etree._Element:
    """The person record inside a delivered envelope."""
    record = etree.fromstring(body).find(f".//{{{PERSON_NS}}}Person")
    assert record is not None, body
    return record


def elements(body: bytes) -> list[str]:
    return [etree.QName(child).localname for child in payload(body)]


def settled(context: Context) -> None:
    """Nothing waits or is unacknowledged in any of the platform's queues."""
    vhost = context.settings.broker_url.rsplit("/", 1)[-1]

    def idle() -> bool:
        queues = management("GET", f"/queues/{vhost}")
        assert isinstance(queues, list)
        mine = [q for q in queues if q["name"].startswith(context.settings.prefix + ".")]
        return bool(mine) and all(q.get("messages", 0) == 0 for q in mine)

    wait_until(idle, message="every queue to be empty")


def test_an_approved_application_delivers_only_the_approved_items_until_revoked(context, service):
    store = DeadLetterStore(context.engine)
    with running(context) as worker:
        first = person_envelope("GA", PERSON)
        submit(context, [first])
        wait_until(lambda: first.message_id in bodies(context, "RS"), message="the first message at RS")
        settled(context)
        assert first.message_id not in bodies(context, "JT")  # default deny: no subscription yet

        # 市交通运输局 applies for three items; GA and the platform approve, while the stages run
        application = granted(service, "JT", WANTED)
        reloaded(worker, service)
        second = person_envelope("GA", PERSON)
        submit(context, [second])
        wait_until(lambda: second.message_id in bodies(context, "JT"), message="the message at JT")
        assert elements(bodies(context, "JT")[second.message_id]) == ["IdNumber", "Name", "Address"]
        wait_until(lambda: second.message_id in bodies(context, "RS"), message="the message at RS")
        assert elements(bodies(context, "RS")[second.message_id]) == ["IdNumber", "Name", "Sex", "BirthDate", "Division"]
        wait_until(lambda: second.message_id in bodies(context, "MZ"), message="the message at MZ")
        assert elements(bodies(context, "MZ")[second.message_id]) == elements(second.body)  # MZ has it all
        masked = payload(bodies(context, "JT")[second.message_id])
        assert masked.findtext(f"{{{PERSON_NS}}}Name") == "陈志强"  # the values themselves untouched

        # another department may not submit GA's resource: dead-lettered, delivered to no one
        forged = person_envelope("MZ", PERSON)
        submit(context, [forged])
        wait_until(lambda: store.list(), message="the forged message's dead letter")
        [letter] = store.list()
        assert (letter.message_id, letter.reason, letter.stage) == (forged.message_id, "not_authorized", "ingress")
        assert "MZ" in letter.explain() and "GA" in letter.explain()

        # revoked: JT receives nothing more, the others carry on
        service.applications.revoke(admin_of(service, "JT"), application, "项目结束")
        reloaded(worker, service)
        third = person_envelope("GA", PERSON)
        submit(context, [third])
        wait_until(lambda: third.message_id in bodies(context, "RS") and third.message_id in bodies(context, "MZ"),
                   message="the third message at RS and MZ")
        settled(context)
    assert list(bodies(context, "JT")) == [second.message_id]
    assert forged.message_id not in {m for d in ("GA", "MZ", "RS", "JT") for m in bodies(context, d)}


def test_a_catalogue_change_under_load_loses_and_duplicates_nothing(context, service):
    # GA keeps sending while 市交通运输局's application is approved: every message still reaches
    # the subscribers it had, exactly once, and JT receives those routed after the reload.
    sent: list[str] = []
    enough = threading.Event()

    def keep_sending() -> None:
        n = 0
        while not enough.is_set() and n < 5000:
            batch = [person_envelope("GA", PERSON, Name=f"市民{n + i}") for i in range(10)]
            submit(context, batch)
            sent.extend(e.message_id for e in batch)
            n += len(batch)

    with running(context) as worker:
        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            wait_until(lambda: len(bodies(context, "RS")) >= 50, message="the stream to be under way")
            granted(service, "JT", None)
            reloaded(worker, service)
            wait_until(lambda: len(bodies(context, "JT")) >= 50, message="the stream to reach JT")
        finally:
            enough.set()
            sender.join(30)
        wait_until(lambda: len(bodies(context, "RS")) == len(sent) and len(bodies(context, "MZ")) == len(sent),
                   timeout=60, message="every message at RS and MZ")
        settled(context)
    assert sorted(inbox_ids(context, "RS")) == sorted(sent)
    assert sorted(inbox_ids(context, "MZ")) == sorted(sent)
    at_jt = inbox_ids(context, "JT")
    assert set(at_jt) < set(sent) and len(set(at_jt)) == len(at_jt)
    # the messages routed before the change stay with their subscribers only
    assert sent[0] not in at_jt and sent[-1] in at_jt
