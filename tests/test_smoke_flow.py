"""The whole flow on both transports: valid messages delivered, invalid ones dead-lettered."""

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
