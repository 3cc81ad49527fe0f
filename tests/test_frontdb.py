"""The front-end database (前置机) adapter against PostgreSQL as the department's database, with
the stages on RabbitMQ: rows a department writes reach the subscribers once each, across
restarts and crashes; refused rows become dead letters; deliveries land in the department's
table once each; wrong settings stop it at start, naming them."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import kombu.transport.memory
import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from adapters.frontdb import FrontDbInbound, FrontDbOutbound
from adapters.registry import AdapterSpec, build, run_inbound
from adapters.submit import Submitter
from adapters.watermark import Watermark
from bus.app import Context, open_context
from bus.deadletter import DeadLetterStore
from bus.envelope import Envelope, build_envelope
from bus.errors import ConfigError, TransientError
from bus.routing import Department

from tests.conftest import DATA, PG_ADMIN, ROOT, inbox_ids, make_settings, polling, running, submit, wait_until
from tests.samples import legal_entity, person_envelope, random_people

GOVBUS = ROOT / ".venv" / "bin" / "govbus"
START = datetime(2025, 3, 1, 8, 30, tzinfo=timezone.utc)


@pytest.fixture
def platform(amqp_url: str, tmp_path: Path) -> Iterator[Context]:
    """The platform: stages on RabbitMQ, its own database on SQLite, the sample routing table."""
    context = open_context(make_settings(amqp_url, tmp_path))
    yield context
    context.engine.dispose()


@pytest.fixture
def embedded() -> Iterator[str]:
    """The in-memory transport, emptied afterwards, for tests that do not claim broker behaviour."""
    yield "memory://"
    kombu.transport.memory.Channel.queues.clear()
    kombu.transport.memory.Transport.global_state.clear()


@pytest.fixture
def department(pg_url: str) -> Iterator[Engine]:
    """GA's front-end database on PostgreSQL, with the exchange table GA writes to."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TABLE ga_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "written_at timestamptz NOT NULL UNIQUE, envelope text NOT NULL)"
        ))
    yield engine
    engine.dispose()


def write(engine: Engine, bodies: Sequence[Envelope | bytes]) -> None:
    """Rows as GA's system writes them, each in the next millisecond."""
    with engine.begin() as conn:
        already = conn.execute(text("SELECT count(*) FROM ga_outbox")).scalar_one()
        conn.execute(
            text("INSERT INTO ga_outbox (written_at, envelope) VALUES (:at, :envelope)"),
            [{"at": START + timedelta(milliseconds=already + i), "envelope": (b.body if isinstance(b, Envelope) else b).decode()}
             for i, b in enumerate(bodies)],
        )


def reader(context: Context, url: str, **settings: str) -> FrontDbInbound:
    values = {"url": url, "table": "ga_outbox", "incremental_column": "id", "envelope_column": "envelope",
              "batch": "7", "interval": "0.05", **settings}
    adapter = build(AdapterSpec("ga-frontdb", "frontdb_in", "GA", values), context)
    assert isinstance(adapter, FrontDbInbound)
    return adapter


def received(context: Context, department: str, count: int) -> list[str]:
    wait_until(lambda: len(inbox_ids(context, department)) >= count, message=f"{count} deliveries to {department}")
    return inbox_ids(context, department)


@pytest.mark.parametrize("column", ["id", "written_at"])
def test_rows_reach_the_subscribers_once_across_a_restart(platform, department, pg_url, column):
    first, later = random_people(30, seed=1), random_people(15, seed=2)
    write(department, first)
    with running(platform):
        with polling(platform, reader(platform, pg_url, incremental_column=column)):
            received(platform, "MZ", 10)
        # stopped midway; the department goes on writing while the adapter is away
        write(department, later)
        second = reader(platform, pg_url, incremental_column=column)
        with polling(platform, second):
            received(platform, "MZ", 45)
            received(platform, "RS", 45)
    assert second.poll() == 0  # nothing left to read: the last row is not read again
    expected = sorted(e.message_id for e in first + later)
    for subscriber in ("MZ", "RS"):
        ids = inbox_ids(platform, subscriber)
        assert len(ids) == len(set(ids)) == 45, f"duplicates for {subscriber}"
        assert sorted(ids) == expected
    with department.connect() as conn:
        last = conn.execute(text(f"SELECT max({column}) FROM ga_outbox")).scalar_one()
    stored = Watermark(platform.engine, "ga-frontdb", "GA").get()
    assert stored == (str(last) if column == "id" else last.isoformat())


def test_rows_confirmed_before_a_crash_come_again_and_arrive_once(platform, department, pg_url, monkeypatch):
    # The broker confirmed a batch, then the process died before the watermark was stored:
    # the rows are read and submitted again, and the ingress drops the repeats.
    rows = random_people(12, seed=3)
    write(department, rows)
    failed: list[str] = []
    real_advance = Watermark.advance

    def advance_failing_once(self: Watermark, value: str) -> None:
        if not failed:
            failed.append(value)
            raise TransientError("the platform database went away")
        real_advance(self, value)

    monkeypatch.setattr(Watermark, "advance", advance_failing_once)
    with running(platform), polling(platform, reader(platform, pg_url, batch="5")):
        received(platform, "MZ", 12)
        wait_until(lambda: Watermark(platform.engine, "ga-frontdb", "GA").get() == "12", message="the watermark at 12")
        barrier = person_envelope(Name="林小燕")
        write(department, [barrier])
        ids = received(platform, "MZ", 13)
    assert failed == ["5"]
    assert ids == [e.message_id for e in rows] + [barrier.message_id]


def test_rows_the_broker_did_not_take_are_read_again(platform, department, pg_url, monkeypatch):
    # The broker is away for one poll, then takes a batch but the third row: the watermark
    # stays before what was not confirmed, and those rows are submitted again.
    rows = random_people(12, seed=5)
    write(department, rows)
    calls: list[list[str]] = []
    marks: list[str] = []
    real_publish, real_advance = Submitter.publish, Watermark.advance

    def flaky_publish(self: Submitter, envelopes: Sequence[Envelope]) -> list[str | None]:
        calls.append([e.message_id for e in envelopes])
        if len(calls) == 1:
            raise TransientError("the bus cannot take submissions now: connection refused")
        if len(calls) == 2:
            taken = real_publish(self, [*envelopes[:2], *envelopes[3:]])
            return [*taken[:2], "NOT_FOUND - no queue", *taken[2:]]
        return real_publish(self, envelopes)

    def advance(self: Watermark, value: str) -> None:
        marks.append(value)
        real_advance(self, value)

    monkeypatch.setattr(Submitter, "publish", flaky_publish)
    monkeypatch.setattr(Watermark, "advance", advance)
    with running(platform), polling(platform, reader(platform, pg_url, batch="5")):
        ids = received(platform, "MZ", 12)
        wait_until(lambda: marks[-1:] == ["12"], message="the watermark at 12")
    assert calls[0] == calls[1] == [e.message_id for e in rows[:5]]
    assert calls[2] == [e.message_id for e in rows[2:7]]  # from the row the broker did not take
    assert marks == ["2", "7", "12"]
    assert sorted(ids) == sorted(e.message_id for e in rows) and len(ids) == 12


def test_a_refused_row_becomes_a_dead_letter_and_the_rows_after_it_arrive(platform, department, pg_url):
    good = person_envelope()
    invalid = person_envelope(Sex="5")
    foreign = build_envelope("GS", "GS-001", "1.0", legal_entity())  # not GA's to send
    after = person_envelope(Name="林小燕")
    write(department, [good, invalid, foreign, b"<not-an-envelope", after])
    store = DeadLetterStore(platform.engine)
    with running(platform):
        with polling(platform, reader(platform, pg_url)):
            assert received(platform, "MZ", 2) == [good.message_id, after.message_id]
            wait_until(lambda: Watermark(platform.engine, "ga-frontdb", "GA").get() == "5", message="the watermark at 5")
        letters = {d.reason: d for d in store.list()}
        assert sorted(letters) == ["malformed_xml", "not_authorized", "schema_violation"]

        letter = letters["schema_violation"]
        lines = invalid.body.decode().splitlines()
        line = next(i for i, t in enumerate(lines, 1) if "<p:Sex>" in t)
        assert (letter.message_id, letter.rule, letter.line) == (invalid.message_id, "cvc-enumeration-valid", line)
        assert "row id=2 of ga_outbox" in letter.reason_text
        assert letter.body == invalid.body
        assert (letters["not_authorized"].message_id, letters["not_authorized"].sender) == (foreign.message_id, "GS")
        assert "row id=4 of ga_outbox" in letters["malformed_xml"].reason_text

        # The watermark is lost (restored from an old backup): every row is read again; the
        # deliveries and the dead letters stay one each.
        Watermark(platform.engine, "ga-frontdb", "GA").advance("0")
        barrier = person_envelope(Name="黄丽华")
        write(department, [barrier])
        with polling(platform, reader(platform, pg_url)):
            ids = received(platform, "MZ", 3)
    assert ids == [good.message_id, after.message_id, barrier.message_id]
    assert len(store.list()) == 3


def start_reader(context: Context, url: str, **settings: str) -> None:
    """Start the adapter as `govbus adapters run` does; returns only if it started."""
    stop = threading.Event()
    stop.set()
    run_inbound([reader(context, url, **settings)], context, stop)


def test_the_reader_refuses_at_start_what_cannot_work(department, pg_url, tmp_path, embedded):
    context = open_context(make_settings(embedded, tmp_path))
    with department.begin() as conn:
        conn.execute(text("CREATE TABLE ga_loose (id bigint, seq bigint NOT NULL, envelope text)"))
    cases = {
        "table=": dict(table="ga_outbx"),
        "incremental_column='idd'": dict(incremental_column="idd"),
        "envelope_column='body'": dict(envelope_column="body"),
        "incremental_column='id': the column allows NULL": dict(table="ga_loose"),
        "incremental_column='seq': the column is not unique": dict(table="ga_loose", incremental_column="seq"),
        "url=": dict(url=pg_url.replace("+psycopg", "+nosuchdriver")),
        "cannot read table ga_outbox from the department database": dict(url=pg_url + "_gone"),
    }
    for expected, settings in cases.items():
        with pytest.raises(ConfigError) as failure:
            start_reader(context, settings.pop("url", pg_url), **settings)
        assert expected in failure.value.message, (settings, failure.value.message)
        assert "ga-frontdb" in failure.value.message
    with pytest.raises(ConfigError) as failure:  # a password in the URL is not repeated
        start_reader(context, pg_url.replace("postgres@", "postgres:s3cret@") + "_gone")
    assert "cannot read table" in failure.value.message and "s3cret" not in failure.value.message
    with pytest.raises(ConfigError, match="setting batch=0 must be at least 1"):
        reader(context, pg_url, batch="0")
    start_reader(context, pg_url)  # the good settings start
    context.engine.dispose()


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def routes_with(tmp_path: Path, url: str, table: str = "mz_inbox", create: bool = True) -> Path:
    """The sample routing table, with MZ taking its deliveries into a table of its own database."""
    path = tmp_path / "routes.toml"
    text_ = (DATA / "routes.toml").read_text(encoding="utf-8").replace(
        '[departments.MZ]\nname = "市民政局"\n',
        f'[departments.MZ]\nname = "市民政局"\noutbound = "frontdb_out"\n'
        f'[departments.MZ.settings]\nurl = "{url}"\ntable = "{table}"\ncreate = {str(create).lower()}\n',
    )
    assert "frontdb_out" in text_
    path.write_text(text_, encoding="utf-8")
    return path


def table_rows(url: str, table: str) -> list[tuple[str, ...]]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute(  # type: ignore[return-value]
            f"SELECT message_id, sender, resource, version, operation, body, received_at IS NOT NULL FROM {table} "
            "ORDER BY received_at, message_id"
        ).fetchall()


def test_deliveries_land_in_the_department_table_once_each(amqp_url, pg_url, tmp_path):
    context = open_context(make_settings(amqp_url, tmp_path, routes=routes_with(tmp_path, pg_url)))
    people = random_people(8, seed=4)
    try:
        with running(context):
            submit(context, people)
            wait_until(lambda: len(table_rows(pg_url, "mz_inbox")) == 8, message="8 rows in mz_inbox")
            received(context, "RS", 8)
        rows = table_rows(pg_url, "mz_inbox")
        assert sorted(r[0] for r in rows) == sorted(e.message_id for e in people)
        by_id = {e.message_id: e for e in people}
        for message_id, sender, resource, version, operation, body, has_time in rows:
            assert (sender, resource, version, operation, has_time) == ("GA", "GA-001", "1.0", "upsert", True)
            assert body == by_id[message_id].body.decode()
        assert inbox_ids(context, "MZ") == []  # MZ's outbound is its own table now

        # The same batch delivered twice (a worker crashed after writing, before its ack),
        # through the outbound the deliver stage uses, and once more with a new one
        outbound = context.outbound(context.table.departments["MZ"])
        assert isinstance(outbound.adapter, FrontDbOutbound)
        again = people[:5] + [person_envelope(Name="黄丽华")]
        assert outbound.deliver(again) == [None] * 6
        assert outbound.deliver(again) == [None] * 6
        ids = [r[0] for r in table_rows(pg_url, "mz_inbox")]
        assert len(ids) == len(set(ids)) == 9
    finally:
        context.engine.dispose()


def test_a_department_database_that_is_down_is_transient(pg_url, tmp_path, embedded):
    context = open_context(make_settings(embedded, tmp_path, routes=routes_with(tmp_path, pg_url)))
    outbound = context.outbound(context.table.departments["MZ"])
    assert outbound.deliver([person_envelope()]) == [None]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    with pytest.raises(TransientError, match="front-end database of department MZ unavailable"):
        outbound.deliver([person_envelope()])
    assert not outbound.health().ok
    context.engine.dispose()


def test_the_writer_refuses_at_start_what_cannot_work(pg_url, tmp_path, embedded):
    context = open_context(make_settings(embedded, tmp_path))
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TABLE mz_short (message_id varchar(64) PRIMARY KEY, sender text, body text)")
        conn.execute("CREATE TABLE mz_loose (message_id varchar(64), sender text, resource text, version text, "
                     "operation text, body text, received_at timestamptz)")
        conn.execute("CREATE TABLE mz_extra (message_id varchar(64) UNIQUE, sender text, resource text, version text, "
                     "operation text, body text, received_at timestamptz, handled boolean NOT NULL)")

    def outbound(**settings: str) -> None:
        # built and started, as `govbus adapters check` does (a worker would hold MZ's messages
        # with the reason instead of stopping every department's deliveries)
        FrontDbOutbound(Department("MZ", "市民政局", "frontdb_out", {"url": pg_url, "table": "mz_inbox", **settings}),
                        context).start()

    cases = {
        "setting table='mz_inbox': no such table": dict(),
        "the table lacks column(s) resource, version, operation, received_at": dict(table="mz_short"),
        "message_id is not unique": dict(table="mz_loose"),
        "column handled is NOT NULL without a default": dict(table="mz_extra"),
        "unknown setting 'tabel'": dict(tabel="mz_inbox"),
        "setting create='maybe' must be true or false": dict(create="maybe"),
    }
    for expected, settings in cases.items():
        with pytest.raises(ConfigError) as failure:
            outbound(**settings)
        assert expected in failure.value.message, (settings, failure.value.message)
        assert "MZ" in failure.value.message
    # the message says which columns to create
    with pytest.raises(ConfigError, match=r"message_id \(varchar\(64\), unique\), sender .* or set create = true"):
        outbound()
    context.engine.dispose()


def govbus_check(tmp_path: Path, routes: Path, *config: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env.update(GOVBUS_DATA_DIR=str(tmp_path / "var"), GOVBUS_ROUTES=str(routes))
    files = []
    for i, body in enumerate(config):
        files.append(tmp_path / f"adapters-{i}.toml")
        files[-1].write_text(body, encoding="utf-8")
    return subprocess.run([str(GOVBUS), "adapters", "check", *map(str, files)], env=env, capture_output=True,
                          text=True, timeout=60)


def test_adapters_check_through_the_cli(department, pg_url, tmp_path):
    missing_table = govbus_check(tmp_path, routes_with(tmp_path, pg_url, table="mz_inbx", create=False))
    assert missing_table.returncode == 2, missing_table
    [line] = missing_table.stderr.strip().splitlines()
    assert "department MZ" in line and "setting table='mz_inbx': no such table" in line

    reader_file = f"""
[[adapter]]
name = "ga-frontdb"
type = "frontdb_in"
department = "GA"
[adapter.settings]
url = "{pg_url}"
table = "ga_outbox"
incremental_column = "id"
{{envelope}}
"""
    wrong = govbus_check(tmp_path, routes_with(tmp_path, pg_url), reader_file.format(envelope=""))
    assert wrong.returncode == 2, wrong
    [line] = wrong.stderr.strip().splitlines()
    assert "ga-frontdb" in line and "missing setting envelope_column" in line

    good = govbus_check(tmp_path, routes_with(tmp_path, pg_url), reader_file.format(envelope='envelope_column = "envelope"'))
    assert good.returncode == 0, good
    assert "ok  ga-frontdb: frontdb_in (inbound) for GA" in good.stdout
    assert "url = ****" in good.stdout  # a URL may carry a password
    assert "ok  department MZ: outbound frontdb_out" in good.stdout


def test_both_directions_on_a_sqlite_front_end_database(tmp_path, embedded):
    # A small department keeps its front-end tables in SQLite; the platform runs embedded.
    url = f"sqlite:///{tmp_path / 'frontend.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE ga_outbox (id INTEGER PRIMARY KEY, envelope BLOB NOT NULL)"))
        people = random_people(6, seed=6)
        conn.execute(text("INSERT INTO ga_outbox (envelope) VALUES (:e)"), [{"e": e.body} for e in people])
    context = open_context(make_settings(embedded, tmp_path, routes=routes_with(tmp_path, url, table="mz_inbox")))
    try:
        with running(context), polling(context, reader(context, url, batch="4")):
            received(context, "RS", 6)
            wait_until(lambda: count(engine, "mz_inbox") == 6, message="6 rows in MZ's table")
        assert sorted(inbox_ids(context, "RS")) == sorted(e.message_id for e in people)
        outbound = context.outbound(context.table.departments["MZ"])
        assert outbound.deliver(people[:3]) == [None] * 3  # again: nothing changes
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT message_id, body FROM mz_inbox")).all())
        assert stored == {e.message_id: e.body.decode() for e in people}
    finally:
        context.engine.dispose()
        engine.dispose()
