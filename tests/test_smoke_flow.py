"""The whole flow on both transports: valid messages delivered, invalid ones dead-lettered."""

import dataclasses
import os

import bus.worker
from bus.deadletter import DeadLetterStore

from tests.conftest import inbox_ids, running, submit, wait_until
from tests.samples import legal_entity, person_envelope
from bus.envelope import build_envelope


def test_valid_message_reaches_every_subscriber_once(context):
    env = person_envelope()
    with running(context):
        submit(context, [env])
        wait_until(lambda: inbox_ids(context, "MZ") and inbox_ids(context, "RS"), message="deliveries")
    assert inbox_ids(context, "MZ") == [env.message_id]
    assert inbox_ids(context, "RS") == [env.message_id]
    assert inbox_ids(context, "GSW") == []


def test_schema_violation_is_dead_lettered_with_rule_line_and_column(context):
    bad = person_envelope(Sex="5")
    good = build_envelope("GS", "GS-001", "1.0", legal_entity())
    store = DeadLetterStore(context.engine)
    with running(context):
        submit(context, [bad, good])
        wait_until(lambda: store.list(), message="a dead letter")
        wait_until(lambda: len(inbox_ids(context, "RS")) == 1, message="the good message")
    [letter] = store.list()
    assert letter.message_id == bad.message_id
    assert letter.reason == "schema_violation"
    assert letter.rule == "cvc-enumeration-valid"
    assert letter.stage == "ingress"
    lines = bad.body.decode().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "<p:Sex>" in text)
    assert (letter.line, letter.column) == (line, lines[line - 1].index("<p:Sex>") + 1)
    assert letter.body == bad.body
    assert inbox_ids(context, "MZ") == []


def test_a_broken_routing_change_keeps_the_table_in_hand_until_it_is_fixed(context, monkeypatch, caplog):
    # An operator saves a routing file with a mistake: the running workers keep routing on the
    # table they have and say so; once the file is fixed, they take it without a restart.
    monkeypatch.setattr(bus.worker, "_VERSION_CHECK", 0.1)
    monkeypatch.setattr(bus.worker, "_RELOAD_RETRY", 0.1)
    routes = context.settings.data_dir / "routes.toml"
    good = context.settings.routes.read_text(encoding="utf-8")
    routes.write_text(good, encoding="utf-8")
    context.settings = dataclasses.replace(context.settings, routes=routes)
    with running(context) as worker:
        loaded = worker.routing_version
        routes.write_text(good + "\n[[subscriptions]\n", encoding="utf-8")
        os.utime(routes, ns=(loaded + 1_000_000, loaded + 1_000_000))
        wait_until(lambda: "routing table not reloaded" in caplog.text, message="the failed reload to be logged")
        first = person_envelope()
        submit(context, [first])
        wait_until(lambda: inbox_ids(context, "MZ") and inbox_ids(context, "RS"), message="delivery on the old table")
        assert worker.routing_version == loaded

        without_mz = good.replace('[[subscriptions]]\nresource = "GA-001"\nsubscriber = "MZ"\n', "")
        assert without_mz != good
        routes.write_text(without_mz, encoding="utf-8")
        os.utime(routes, ns=(loaded + 2_000_000, loaded + 2_000_000))
        wait_until(lambda: worker.routing_version == loaded + 2_000_000, message="the fixed table to be loaded")
        second = person_envelope()
        submit(context, [second])
        wait_until(lambda: len(inbox_ids(context, "RS")) == 2, message="delivery on the new table")
    assert inbox_ids(context, "RS") == [first.message_id, second.message_id]
    assert inbox_ids(context, "MZ") == [first.message_id]
