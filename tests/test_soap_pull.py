"""`soap_pull` against a department's SOAP service, on RabbitMQ and PostgreSQL: GA's changes
are read from a fake department service (spyne, in its own process) after a stored
watermark, and reach the subscribers MZ and RS through the whole pipeline.

- a puller stopped mid-run, and one that died between the broker's confirm and the
  watermark, lose nothing and duplicate nothing once a new one runs;
- the watermark does not move when the broker did not confirm;
- a record the ingress refuses is kept as a dead letter with its reason, once, and the
  stream goes on past it;
- wrong settings fail at start, naming the setting;
- the watermark helper keeps one value per adapter name, for one department.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bus.app import Context, open_context
from bus.deadletter import DeadLetterStore
from bus.errors import ConfigError, TransientError

from adapters.base import InboundAdapter
from adapters.registry import AdapterSpec, build, run_inbound
from adapters.soap_pull import SoapPull
from adapters.submit import Submitter
from adapters.watermark import Watermark
from tests.conftest import inbox_ids, make_settings, running, wait_until
from tests.department_service import DepartmentProcess, free_port
from tests.samples import person_envelope, random_people


def write_changes(path: Path, bodies: Sequence[bytes]) -> list[str]:
    """The department's change log: record i has watermark '000i' (zero-padded, so that text
    order is stream order). Returns the watermarks."""
    marks = [f"{i:06d}" for i in range(1, len(bodies) + 1)]
    with path.open("w", encoding="utf-8") as out:
        for mark, body in zip(marks, bodies, strict=True):
            out.write(json.dumps({"watermark": mark, "envelope": body.decode("utf-8")}, ensure_ascii=False) + "\n")
    return marks


def puller(context: Context, service: DepartmentProcess, name: str = "ga-changes", **settings: object) -> SoapPull:
    given: dict[str, object] = {"wsdl": service.wsdl, "operation": "GetChanges", "batch": 50, "interval": 0.2}
    given.update(settings)
    adapter = build(AdapterSpec(name, "soap_pull", "GA", given), context)
    assert isinstance(adapter, SoapPull)
    return adapter


@pytest.fixture
def pulling() -> Iterator[list[threading.Thread]]:
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(15)


def run_in_thread(adapters: Sequence[InboundAdapter], context: Context, threads: list[threading.Thread]) -> threading.Event:
    """run_inbound, as `govbus adapters run` does, until the returned event is set."""
    stop = threading.Event()
    thread = threading.Thread(target=run_inbound, args=(adapters, context, stop), daemon=True)
    thread.start()
    threads.append(thread)
    return stop


def test_a_puller_stopped_mid_run_and_one_that_died_before_its_watermark_lose_and_duplicate_nothing(
    amqp_url, pg_url, tmp_path, pulling
):
    people = random_people(300, seed=11)
    changes = tmp_path / "changes.jsonl"
    marks = write_changes(changes, [e.body for e in people])
    expected = [e.message_id for e in people]
    context = open_context(make_settings(amqp_url, tmp_path, database_url=pg_url))
    watermark = Watermark(context.engine, "ga-changes", "GA")
    # each GetChanges takes 0.3 s: six batches of 50, time enough to stop the first puller between two
    with DepartmentProcess(tmp_path, changes=changes, changes_delay=0.3) as service, running(context) as worker:
        stop = run_in_thread([puller(context, service)], context, pulling)
        wait_until(watermark.get, message="the first batch confirmed")
        stop.set()
        pulling[0].join(15)
        reached = marks.index(watermark.get()) + 1
        assert 50 <= reached < 300, "stopped after some batches, not all"
        wait_until(lambda: len(inbox_ids(context, "MZ")) == reached, message="what the first puller read")

        # as if the next puller had died after the broker confirmed a batch, before its watermark moved
        watermark.advance(marks[reached - 51] if reached > 50 else "")
        stop = run_in_thread([puller(context, service)], context, pulling)
        wait_until(lambda: watermark.get() == marks[-1], message="the watermark at the end")
        stop.set()
        wait_until(lambda: len(inbox_ids(context, "MZ")) == 300 and len(inbox_ids(context, "RS")) == 300,
                   message="every record delivered")
        assert worker.stats()["ingress"]["duplicates"] == 50  # the batch read twice, dropped by message id

    for department in ("MZ", "RS"):
        delivered = inbox_ids(context, department)
        assert Counter(delivered) == Counter(expected), f"{department}: each record exactly once"
    assert DeadLetterStore(context.engine).list() == []
    assert watermark.get() == marks[-1]


def test_a_refused_record_is_kept_as_a_dead_letter_once_and_the_stream_goes_on(amqp_url, tmp_path):
    good = random_people(8, seed=3)
    invalid = person_envelope(Sex="7")  # not a GB/T 2261.1 code
    not_ours = person_envelope(sender="MZ")  # GA may submit only as itself
    records = [*good[:2], invalid, *good[2:5], not_ours, *good[5:]]
    changes = tmp_path / "changes.jsonl"
    marks = write_changes(changes, [e.body for e in records])
    context = open_context(make_settings(amqp_url, tmp_path))
    store = DeadLetterStore(context.engine)
    with DepartmentProcess(tmp_path, changes=changes) as service, running(context):
        adapter = puller(context, service, batch=4)
        adapter.submitter = Submitter(context)
        adapter.start()
        try:
            assert [adapter.poll() for _ in range(4)] == [4, 4, 2, 0]
            assert adapter.watermark.get() == marks[-1]
            assert adapter.health().ok
            wait_until(lambda: len(inbox_ids(context, "MZ")) == 8, message="the eight valid records")

            adapter.watermark.advance(marks[0])  # read them all again: nothing new is kept or sent
            assert [adapter.poll() for _ in range(3)] == [4, 4, 1]
        finally:
            adapter.stop()
            adapter.submitter.close()

    assert Counter(inbox_ids(context, "MZ")) == Counter(e.message_id for e in good)
    letters = {d.message_id: d for d in store.list()}
    assert set(letters) == {invalid.message_id, not_ours.message_id}
    schema = letters[invalid.message_id]
    assert schema.reason == "schema_violation" and schema.rule and schema.line and schema.column
    assert schema.stage == "adapter ga-changes" and schema.body == invalid.body and schema.sender == "GA"
    sender = letters[not_ours.message_id]
    assert sender.reason == "not_authorized" and "may submit only as itself" in sender.reason_text


def test_the_watermark_stays_when_the_broker_cannot_confirm(tmp_path):
    changes = tmp_path / "changes.jsonl"
    write_changes(changes, [e.body for e in random_people(3, seed=2)])
    # the broker is away: nothing it did not confirm may count as read
    context = open_context(make_settings(f"amqp://guest:guest@127.0.0.1:{free_port()}/", tmp_path))
    with DepartmentProcess(tmp_path, changes=changes) as service:
        adapter = puller(context, service)
        adapter.submitter = Submitter(context)
        adapter.start()
        try:
            with pytest.raises(TransientError, match="the bus cannot take submissions now"):
                adapter.poll()
        finally:
            adapter.stop()
            adapter.submitter.close()
    assert adapter.watermark.get() is None
    assert not adapter.health().ok and "the bus cannot take submissions now" in adapter.health().detail


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"wsdl": "ftp//department"}, "setting wsdl='ftp//department' must be a URL"),
        ({"operation": None}, "missing setting operation"),
        ({"batch": 0}, "setting batch=0 must be at least 1"),
        ({"interval": "soon"}, "setting interval='soon'"),
    ],
)
def test_a_wrong_setting_fails_when_the_adapter_is_built(tmp_path, settings, expected):
    context = open_context(make_settings("memory://", tmp_path))
    given = {"wsdl": "http://127.0.0.1:1/?wsdl", "operation": "GetChanges", **settings}
    with pytest.raises(ConfigError) as raised:
        build(AdapterSpec("ga-changes", "soap_pull", "GA", {k: v for k, v in given.items() if v is not None}), context)
    assert expected in raised.value.message and "ga-changes" in raised.value.message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"wsdl": f"http://127.0.0.1:{free_port()}/?wsdl"}, "cannot read the WSDL at http://127.0.0.1:"),
        ({"operation": "GetChange"}, "setting operation='GetChange': the WSDL has no such operation "
                                     "(it has: GetChanges, Receive)"),
        ({"since_parameter": "after"}, "setting since_parameter='after': operation GetChanges has no such parameter "
                                       "(it has: since, max)"),
    ],
)
def test_a_wrong_setting_stops_run_inbound_at_start(tmp_path, settings, expected):
    context = open_context(make_settings("memory://", tmp_path))
    with DepartmentProcess(tmp_path) as service:
        adapter = puller(context, service, **settings)
        with pytest.raises(ConfigError) as raised:
            run_inbound([adapter], context, threading.Event())
    assert expected in raised.value.message and "ga-changes" in raised.value.message


def test_a_watermark_is_kept_per_adapter_name_for_one_department(pg_url, tmp_path):
    context = open_context(make_settings("memory://", tmp_path, database_url=pg_url))
    mark = Watermark(context.engine, "ga-changes", "GA")
    assert mark.get() is None
    mark.advance("2026-11-26T10:00:00+08:00#17")
    mark.advance("2026-11-26T10:05:00+08:00#3")
    assert Watermark(context.engine, "ga-changes", "GA").get() == "2026-11-26T10:05:00+08:00#3"
    assert Watermark(context.engine, "gs-changes", "GS").get() is None
    with pytest.raises(ConfigError, match="already keeps the watermark of department GA, not GS"):
        Watermark(context.engine, "ga-changes", "GS").get()
    with pytest.raises(ConfigError, match="give each adapter its own name"):
        Watermark(context.engine, "ga-changes", "GS").advance("1")
    assert mark.get() == "2026-11-26T10:05:00+08:00#3"
