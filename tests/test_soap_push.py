"""`soap_push` against a department's SOAP service, on RabbitMQ: the subscriber MZ takes its
deliveries through a fake department service (spyne, in its own process; zeep is the only
SOAP code in this one), while RS keeps the inbox.

- the service goes down; messages sent meanwhile are retried and arrive once it is back,
  each exactly once;
- a SOAP Fault is permanent: that message is dead-lettered with the fault's code and text,
  at once, and the others are delivered;
- HTTP 503 without a fault is transient: retried on the retry policy, then dead-lettered;
- a wrong setting stops the process at start, naming the setting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.app import STAGES, Context, open_context
from bus.config import RetryPolicy
from bus.deadletter import DeadLetterStore
from bus.errors import ConfigError, TransientError

from adapters.registry import check_outbounds
from adapters.soap_push import envelope_text
from tests.conftest import DATA, inbox_ids, make_settings, running, submit, wait_until
from tests.department_service import FAULT_MARKER, DepartmentProcess, free_port
from tests.samples import person_envelope, random_people

MZ = '[departments.MZ]\nname = "市民政局"\n'


def routes_with(tmp_path: Path, **settings: object) -> Path:
    """tests/data/routes.toml with MZ taking its deliveries through soap_push with `settings`."""
    lines = "".join(f"{key} = {_toml(value)}\n" for key, value in settings.items())
    text = (DATA / "routes.toml").read_text(encoding="utf-8")
    assert MZ in text
    path = tmp_path / "routes.toml"
    path.write_text(text.replace(MZ, f'{MZ}outbound = "soap_push"\n\n[departments.MZ.settings]\n{lines}\n'), encoding="utf-8")
    return path


def _toml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else f'"{value}"' if isinstance(value, str) else str(value)


def push_context(amqp_url: str, tmp_path: Path, service: DepartmentProcess, retry: RetryPolicy | None = None,
                 **settings: object) -> Context:
    given: dict[str, object] = {"wsdl": service.wsdl, "operation": "Receive", "message_id_parameter": "messageId",
                                "timeout": 2.0, "attempts": 2}
    given.update(settings)
    changes: dict[str, object] = {"routes": routes_with(tmp_path, **given)}
    if retry is not None:
        changes["retry"] = retry
    return open_context(make_settings(amqp_url, tmp_path, **changes))


def received_ids(service: DepartmentProcess) -> list[str]:
    return [r["messageId"] for r in service.received()]


def test_messages_sent_while_the_service_is_down_arrive_once_it_is_back(amqp_url, tmp_path):
    service = DepartmentProcess(tmp_path)
    with service:
        # retries every 0.2-0.5 s for about 10 s: long enough to outlast the outage below
        context = push_context(amqp_url, tmp_path, service, RetryPolicy(attempts=25, base_delay=0.2, factor=2.0, max_delay=0.5))
        first, *later = random_people(6, seed=5)
        mz = context.outbound(context.table.departments["MZ"])
        with running(context) as worker:
            submit(context, [first])
            wait_until(lambda: received_ids(service) == [first.message_id], message="the first delivery")

            service.stop()  # the department's system goes down
            submit(context, later)
            wait_until(lambda: worker.stats()["deliver"]["retried"] >= 2 * len(later), message="retries while down")
            assert not mz.health().ok and "Connection refused" in mz.health().detail
            assert received_ids(service) == [first.message_id]
            wait_until(lambda: len(inbox_ids(context, "RS")) == 6, message="RS, not held up by MZ's outage")

            service.start()  # back, on the same address
            wait_until(lambda: len(received_ids(service)) == 6, message="all six delivered")
            assert mz.health().ok

    received = service.received()
    assert Counter(r["messageId"] for r in received) == Counter(e.message_id for e in [first, *later])
    by_id = {e.message_id: e for e in [first, *later]}
    for record in received:  # the whole envelope, as text, without its XML declaration
        assert record["envelope"] == by_id[record["messageId"]].body.decode("utf-8").split("?>", 1)[1].lstrip()
        assert "陈志强" in record["envelope"]
    assert DeadLetterStore(context.engine).list() == []


def test_a_soap_fault_is_dead_lettered_with_its_text_and_the_others_are_delivered(amqp_url, tmp_path):
    refused = person_envelope(Address=f"广东省珠海市香洲区{FAULT_MARKER}路1号")
    others = random_people(3, seed=7)
    with DepartmentProcess(tmp_path, mode="fault") as service:
        context = push_context(amqp_url, tmp_path, service)
        store = DeadLetterStore(context.engine)
        with running(context) as worker:
            submit(context, [others[0], refused, *others[1:]])
            wait_until(lambda: len(received_ids(service)) == 3, message="three deliveries")
            wait_until(lambda: len(store.list()) == 1, message="the dead letter")
            assert worker.stats()["deliver"]["retried"] == 0  # permanent: not retried

    assert sorted(received_ids(service)) == sorted(e.message_id for e in others)
    [letter] = store.list()
    assert letter.message_id == refused.message_id
    assert letter.reason == "department_fault"
    assert "Client.Refused" in letter.reason_text and f"部门系统拒收: 记录含有{FAULT_MARKER}" in letter.reason_text
    assert letter.stage == "deliver" and letter.attempts == 1
    assert letter.queue == context.names.deliver_queue("MZ")
    assert letter.body == refused.body


def test_http_503_without_a_fault_is_retried_then_dead_lettered(amqp_url, tmp_path):
    with DepartmentProcess(tmp_path, mode="busy") as service:
        context = push_context(amqp_url, tmp_path, service, attempts=1)  # settings: RetryPolicy(attempts=3, ...)
        message = person_envelope()
        store = DeadLetterStore(context.engine)
        with running(context) as worker:
            submit(context, [message])
            wait_until(lambda: len(store.list()) == 1, message="the dead letter")
            assert worker.stats()["deliver"]["retried"] == 2

    [letter] = store.list()
    assert letter.message_id == message.message_id and letter.attempts == 3
    assert letter.reason == "transient" and "HTTP 503 without a SOAP answer" in letter.reason_text
    assert service.received() == []


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DepartmentProcess]:
    with DepartmentProcess(tmp_path_factory.mktemp("department")) as service:
        yield service


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"wsdl": "not a url"}, "setting wsdl='not a url' must be a URL"),
        ({"operation": None}, "missing setting operation"),
        ({"attempts": "three"}, "setting attempts='three'"),
        ({"attempts": 0}, "setting attempts=0 must be at least 1"),
        ({"timeout": -1}, "setting timeout=-1 must be more than 0"),
        ({"colour": "blue"}, "unknown setting 'colour'"),
        ({"username": "mz-bus"}, "settings username and password go together"),
    ],
)
def test_a_wrong_setting_stops_the_process_at_start_naming_it(tmp_path, shared_service, settings, expected):
    given = {"wsdl": shared_service.wsdl, "operation": "Receive"}
    given.update(settings)
    routes = routes_with(tmp_path, **{k: v for k, v in given.items() if v is not None})
    context = open_context(make_settings("memory://", tmp_path, routes=routes))
    with pytest.raises(ConfigError) as raised:
        context.worker(STAGES)
    assert expected in raised.value.message
    assert "MZ" in raised.value.message
    # and `govbus adapters check` reports it the same way
    problems = {code: problem for code, _, problem in check_outbounds(context)}
    assert expected in (problems["MZ"] or "") and problems["RS"] is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"wsdl": f"http://127.0.0.1:{free_port()}/?wsdl"}, "cannot read the WSDL at http://127.0.0.1:"),
        ({"operation": "Recieve"}, "setting operation='Recieve': the WSDL has no such operation (it has: GetChanges, Receive)"),
        ({"envelope_parameter": "body"}, "setting envelope_parameter='body': operation Receive has no such parameter "
                                         "(it has: envelope, messageId)"),
        ({"message_id_parameter": "id"}, "setting message_id_parameter='id'"),
    ],
)
def test_a_service_that_cannot_be_read_at_start_holds_only_its_own_deliveries(tmp_path, shared_service, settings, expected):
    # Found only by reading the department's WSDL: the platform must start even when one
    # department's service is down, so its messages wait with the reason, and the check says it.
    given = {"wsdl": shared_service.wsdl, "operation": "Receive"}
    given.update(settings)
    routes = routes_with(tmp_path, **given)
    context = open_context(make_settings("memory://", tmp_path, routes=routes))
    context.worker(STAGES)  # starts
    mz = context.outbound(context.table.departments["MZ"])
    with pytest.raises(TransientError) as raised:
        mz.deliver([person_envelope()])
    assert expected in raised.value.message and "MZ" in raised.value.message
    assert not mz.health().ok and expected in mz.health().detail
    problems = {code: problem for code, _, problem in check_outbounds(context)}
    assert expected in (problems["MZ"] or "") and problems["RS"] is None


def test_username_and_password_are_sent_as_a_ws_security_username_token(tmp_path, shared_service):
    routes = routes_with(tmp_path, wsdl=shared_service.wsdl, operation="Receive", message_id_parameter="messageId",
                         username="mz-bus", password="Zh2026-民政-推送")
    context = open_context(make_settings("memory://", tmp_path, routes=routes))
    outbound = context.outbound(context.table.departments["MZ"])  # what the deliver stage calls
    message = person_envelope()
    assert outbound.deliver([message]) == [None]
    [record] = [r for r in shared_service.received() if r["messageId"] == message.message_id]
    assert record["username"] == "mz-bus" and record["passwordType"] == "PasswordDigest"


def test_envelope_text_reads_the_declared_encoding_and_leaves_the_declaration_out():
    body = '<?xml version="1.0" encoding="GB18030"?>\n<e>珠海市</e>'.encode("gb18030")
    assert envelope_text(body) == "<e>珠海市</e>"
    assert envelope_text("<e>珠海市</e>".encode()) == "<e>珠海市</e>"
    assert envelope_text('<?xml version="1.0"?><e>香洲</e>'.encode("utf-16")) == "<e>香洲</e>"
