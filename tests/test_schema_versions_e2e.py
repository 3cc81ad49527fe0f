"""Specification versions end to end, on RabbitMQ and PostgreSQL.

Each message is validated against the version its header names; a deprecated version is still
accepted, and counted per sender; an unknown or draft version is dead-lettered with that
reason; a version published while the workers run is accepted without a restart. 1.0 and 1.1
are shipped; the test publishes 1.2 (the shipped 1.1 plus an optional e-mail address) and later ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bus.app import open_context
from bus.deadletter import DeadLetterStore
from bus.envelope import build_envelope

from tests.conftest import inbox_ids, make_settings, running, submit, wait_until
from tests.samples import person

V12 = Path(__file__).resolve().parent / "data" / "person" / "1.2" / "person.xsd"


def _with_email(email: str) -> bytes:
    return person().replace(b"</p:MaritalStatus>", f"</p:MaritalStatus><p:Email>{email}</p:Email>".encode())


def _spec(tmp_path: Path, version: str) -> Path:
    """person 1.2 (the shipped 1.1 plus an optional e-mail address), copied for `version`."""
    folder = tmp_path / "spec" / version
    folder.mkdir(parents=True)
    return Path(shutil.copy(V12, folder / "person.xsd"))


def test_each_message_is_judged_by_the_version_it_names(amqp_url, pg_url, tmp_path):
    context = open_context(make_settings(amqp_url, tmp_path, database_url=pg_url))
    registry = context.registry
    assert registry.publish(_spec(tmp_path, "1.2"), "person", "1.2", who="standards").outcome == "published"
    registry.publish(_spec(tmp_path, "3.0"), "person", "3.0", draft=True, who="standards")
    registry.deprecate("person", "1.0")

    v10 = build_envelope("GA", "GA-001", "1.0", person())
    v12 = build_envelope("GA", "GA-001", "1.2", _with_email("chen.zhiqiang@example.cn"))
    v11_with_email = build_envelope("GA", "GA-001", "1.1", _with_email("chen.zhiqiang@example.cn"))
    unknown = build_envelope("GA", "GA-001", "9.9", person())
    draft = build_envelope("GA", "GA-001", "3.0", person())
    store = DeadLetterStore(context.engine)
    with running(context):
        submit(context, [v10, v12, v11_with_email, unknown, draft])
        wait_until(lambda: len(store.list()) == 3, message="three dead letters")
        wait_until(lambda: len(inbox_ids(context, "MZ")) == 2, message="two deliveries")

        # published while running: taken without a restart
        registry.publish(_spec(tmp_path, "1.3"), "person", "1.3", who="standards")
        v13 = build_envelope("GA", "GA-001", "1.3", _with_email("lin.xiaomei@example.cn"))
        submit(context, [v13])
        wait_until(lambda: len(inbox_ids(context, "MZ")) == 3, message="the 1.3 message")

    assert sorted(inbox_ids(context, "MZ")) == sorted([v10.message_id, v12.message_id, v13.message_id])
    letters = {d.message_id: d for d in store.list()}
    assert letters[v11_with_email.message_id].reason == "schema_violation"
    assert "Email" in letters[v11_with_email.message_id].reason_text  # the shipped 1.1 has no e-mail address
    assert letters[unknown.message_id].reason == "unknown_version"
    assert "9.9" in letters[unknown.message_id].reason_text
    assert letters[draft.message_id].reason == "unpublished_version"
    assert "draft" in letters[draft.message_id].reason_text

    [use] = registry.uses("person")
    assert (use.version, use.sender, use.messages) == ("1.0", "GA", 1)
    context.engine.dispose()
