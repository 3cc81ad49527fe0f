"""From the bus into the base libraries, on RabbitMQ and PostgreSQL (and the embedded default).

The base libraries are departments of the routing table whose outbound is `masterdata`: RKK
(人口库) receives the population resources of 公安 (GA-001, single records) and 民政 (MZ-001,
batch extracts); FRK (法人库) the company registrations of 工商 (GS-001). What they are
delivered becomes golden records with provenance; a delivery replayed changes nothing; and
`govbus masterdata load`, killed in the middle of an extract and run again, loads every record
once.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import inspect, text

from bus.app import open_context
from bus.broker import Broker, publish_confirmed
from bus.config import Settings
from bus.envelope import Envelope, build_envelope
from masterdata.consumer import records_of
from masterdata.model import ATTRIBUTES, PERSON
from masterdata.views import Golden
from schemas import SafeParser
from tests.conftest import DATA, make_settings, running, submit, wait_until
from tests.samples import LEGAL_NS, PERSON_NS, credit_code, id_number

GOVBUS = Path(sys.executable).parent / "govbus"
LIBRARIES = """
[departments.RKK]
name = "人口库"
outbound = "masterdata"

[departments.FRK]
name = "法人库"
outbound = "masterdata"

[resources."MZ-001"]
name = "婚姻登记人口信息（批量）"
provider = "MZ"
specification = "person"

[[subscriptions]]
resource = "GA-001"
subscriber = "RKK"

[[subscriptions]]
resource = "MZ-001"
subscriber = "RKK"

[[subscriptions]]
resource = "GS-001"
subscriber = "FRK"
"""

CHEN = id_number("440402", "19900307", 231)
HUANG = id_number("440403", "19851122", 118)
LIANG = id_number("440404", "19720615", 305)
HAIOU = credit_code("91440400MA4UH3C25")


def routes(folder: Path) -> Path:
    """tests/data/routes.toml plus the two base libraries and MZ's batch resource."""
    path = folder / "routes.toml"
    path.write_text((DATA / "routes.toml").read_text(encoding="utf-8") + LIBRARIES, encoding="utf-8")
    return path


def person(number: str | None, name: str, updated: str | None = None, **attributes: str) -> str:
    """A 1.1 person record element (prefix p), its source record id and deleted flag as
    attributes when given as `_source` and `_deleted`."""
    head = "".join(f' {a}="{attributes.pop(k)}"' for k, a in (("_source", "sourceRecordId"), ("_deleted", "deleted"))
                   if k in attributes)
    ordered = sorted(attributes.items(), key=lambda kv: ATTRIBUTES[PERSON].index(kv[0]))  # the specification's order
    fields = [("IdNumber", number), ("Name", name), *ordered, ("RecordUpdatedAt", updated)]
    return f"<p:Person{head}>" + "".join(f"<p:{k}>{v}</p:{k}>" for k, v in fields if v is not None) + "</p:Person>"


def batch(*records: str) -> bytes:
    return f'<p:PersonBatch xmlns:p="{PERSON_NS}">{"".join(records)}</p:PersonBatch>'.encode()


def single(record: str) -> bytes:
    return record.replace("<p:Person", f'<p:Person xmlns:p="{PERSON_NS}"', 1).encode()


def test_a_batch_is_read_into_records_with_their_provenance() -> None:
    created = datetime(2026, 11, 20, 2, 15, tzinfo=timezone.utc)
    env = build_envelope("MZ", "MZ-001", "1.1", batch(
        person(CHEN, "陈志强", "2024-05-01T10:00:00+08:00", _source="MZ-7", MaritalStatus="21"),
        person(" 44040219850307231x ", "黄丽娟", "2024-05-02T09:30:00", _source="MZ-8", _deleted="true"),
        person(None, "梁国华", None, Sex="1", BirthDate="1972-06-15"),
    ), created_at=created)
    delivered = Envelope.from_amqp(env.body, env.message_id, None, env.headers())  # as the deliver stage has it
    chen, huang, liang = records_of(delivered, SafeParser().parse(delivered.body))
    assert (chen.kind, chen.key, chen.department, chen.source_record_id, chen.position) == ("person", CHEN, "MZ", "MZ-7", 0)
    assert dict(chen.values) == {"Name": "陈志强", "MaritalStatus": "21"} and not chen.deleted
    assert chen.source_time == datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc)
    # the key as given (the store normalises it); a time without an offset is China Standard Time
    assert (huang.key, huang.deleted, huang.position) == ("44040219850307231x", True, 1)
    assert huang.source_time == datetime(2024, 5, 2, 1, 30, tzinfo=timezone.utc)
    # no key, no source record id, no time of its own: the message's id and time stand in
    assert (liang.key, liang.source_record_id, liang.source_time) == ("", f"{env.message_id}/2", created)
    assert all(r.message_id == env.message_id for r in (chen, huang, liang))


def test_deliveries_become_golden_records_and_a_replay_changes_nothing(amqp_url, pg_url, tmp_path):
    from masterdata.store import MasterData

    context = open_context(make_settings(amqp_url, tmp_path, database_url=pg_url, routes=routes(tmp_path)))
    store = MasterData(context.engine)
    ga = build_envelope("GA", "GA-001", "1.0", single(person(CHEN, "陈志强", "2024-03-01T08:00:00+08:00", Sex="1",
                                                             BirthDate="1990-03-07", Division="440402")))
    ga_v11 = build_envelope("GA", "GA-001", "1.1", single(person(LIANG, "梁国华", "2024-03-02T08:00:00+08:00", Sex="1",
                                                                 _source="GA-LIANG", SocialInsuranceStatus="参保缴费")))
    mz = build_envelope("MZ", "MZ-001", "1.1", batch(
        person(CHEN, "陈志强", "2024-05-01T10:00:00+08:00", _source="MZ-7", MaritalStatus="21"),
        person(HUANG, "黄丽娟", "2024-05-02T10:00:00+08:00", _source="MZ-8", MaritalStatus="10", Sex="2"),
    ))
    company = (f'<le:LegalEntityBatch xmlns:le="{LEGAL_NS}"><le:LegalEntity sourceRecordId="GS-1">'
               f"<le:CreditCode>{HAIOU}</le:CreditCode><le:Name>珠海市海鸥电子科技有限公司</le:Name>"
               "<le:RegisteredCapital>500</le:RegisteredCapital><le:TaxStatus>正常</le:TaxStatus>"
               "<le:OrganizationCode>MA4UH3C2-5</le:OrganizationCode>"
               "<le:RecordUpdatedAt>2024-01-05T09:00:00+08:00</le:RecordUpdatedAt></le:LegalEntity></le:LegalEntityBatch>")
    gs = build_envelope("GS", "GS-001", "1.1", company.encode())
    envelopes = [ga, ga_v11, mz, gs]
    with running(context) as worker:
        submit(context, envelopes)
        # 11 deliveries: GA-001 to MZ, RS and RKK (twice), MZ-001 to RKK, GS-001 to RS, GSW, DSW and FRK
        wait_until(lambda: worker.stats()["deliver"]["done"] >= 11, message="every delivery")
        chen = wait_until(lambda: store.person(CHEN), message="陈志强's golden record")
        huang, liang, haiou = store.person(HUANG), store.person(LIANG), store.entity(HAIOU)
        assert huang is not None and liang is not None and haiou is not None
        before = snapshot(context.engine), [store.person(k) for k in (CHEN, HUANG, LIANG)], store.entity(HAIOU)

        # every delivery again, straight into the base libraries' queues, as a replay does
        done = worker.stats()["deliver"]["done"]
        redeliver(context, [("RKK", ga), ("RKK", ga_v11), ("RKK", mz), ("FRK", gs)])
        wait_until(lambda: worker.stats()["deliver"]["done"] >= done + 4, message="the replayed deliveries")
        after = snapshot(context.engine), [store.person(k) for k in (CHEN, HUANG, LIANG)], store.entity(HAIOU)
    assert after == before

    value = golden_values(chen)
    assert value["Name"] == "陈志强" and value["Division"] == "440402" and value["MaritalStatus"] == "21"
    assert provenance(chen, "MaritalStatus") == ("MZ", "MZ-7", mz.message_id)
    assert provenance(chen, "Division") == ("GA", CHEN, ga.message_id)  # 1.0: the key is the source record id
    assert golden_values(huang)["Sex"] == "2"
    assert golden_values(liang)["SocialInsuranceStatus"] == "参保缴费"
    assert provenance(liang, "Name") == ("GA", "GA-LIANG", ga_v11.message_id)
    assert golden_values(haiou)["TaxStatus"] == "正常" and golden_values(haiou)["OrganizationCode"] == "MA4UH3C2-5"
    context.engine.dispose()


def test_a_delete_withdraws_the_departments_record(amqp_url, pg_url, tmp_path):
    from masterdata.store import MasterData

    context = open_context(make_settings(amqp_url, tmp_path, database_url=pg_url, routes=routes(tmp_path)))
    store = MasterData(context.engine)
    record = person(HUANG, "黄丽娟", "2024-05-02T10:00:00+08:00", _source="MZ-8", MaritalStatus="10")
    gone = person(HUANG, "黄丽娟", "2024-06-01T10:00:00+08:00", _source="MZ-8", _deleted="true")
    with running(context):
        submit(context, [build_envelope("MZ", "MZ-001", "1.1", batch(record))])
        assert golden_values(wait_until(lambda: store.person(HUANG), message="the record"))["MaritalStatus"] == "10"
        submit(context, [build_envelope("MZ", "MZ-001", "1.1", batch(gone))])
        wait_until(lambda: not golden_values(store.person(HUANG)).get("MaritalStatus"), message="MZ's value withdrawn")
    context.engine.dispose()


# -- govbus masterdata load ------------------------------------------------------------------------


def write_extract(path: Path, rows: int) -> list[str]:
    """A 民政 extract of `rows` people; returns their identity numbers."""
    numbers = [id_number(("440402", "440403", "440404")[i % 3], f"{1950 + i % 50}{1 + i % 12:02d}{1 + i % 28:02d}", i % 1000)
               for i in range(rows)]
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["IdNumber", "Name", "Sex", "MaritalStatus", "SourceRecordId", "RecordUpdatedAt"])
        for i, number in enumerate(numbers):
            out.writerow([number, "陈黄梁林吴"[i % 5] + "志强丽娟国华晓梅"[i % 4 * 2: i % 4 * 2 + 2], "12"[i % 2],
                          ("10", "21", "40")[i % 3], f"MZ{i:06d}", "2024-05-01 10:00:00"])
    return numbers


def govbus(env: dict[str, str], *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(GOVBUS), *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def environment(settings: Settings, **variables: str | Path) -> dict[str, str]:
    """This process's environment without GOVBUS_* variables, plus those of `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env.update({"GOVBUS_BROKER_URL": settings.broker_url, "GOVBUS_DATABASE_URL": settings.database_url,
                "GOVBUS_ROUTES": str(settings.routes), "GOVBUS_PREFIX": settings.prefix,
                "GOVBUS_DATA_DIR": str(settings.data_dir)})
    env.update({k: str(v) for k, v in variables.items()})
    return env


def confirmed(checkpoint: Path) -> int:
    try:
        return int(json.loads(checkpoint.read_text(encoding="utf-8"))["confirmed_batches"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_load_killed_in_the_middle_resumes_and_loads_every_record_once(amqp_url, pg_url, tmp_path):
    from masterdata.store import MasterData

    settings = make_settings(amqp_url, tmp_path, database_url=pg_url, routes=routes(tmp_path))
    context = open_context(settings)
    store = MasterData(context.engine)
    extract = tmp_path / "mz-2024.csv"
    numbers = write_extract(extract, 400)
    checkpoint = tmp_path / "mz-2024.csv.govbus-load.json"
    env = environment(settings)
    load = ("masterdata", "load", extract, "--department", "MZ", "--resource", "MZ-001", "--batch", "10", "--window", "1")
    with running(context) as worker:
        first = govbus(env, *load, "--rate", "200")  # 40 batches in about two seconds
        try:
            wait_until(lambda: confirmed(checkpoint) >= 8 or first.poll() is not None, message="eight batches confirmed")
            first.send_signal(signal.SIGKILL)
        finally:
            first.wait(10)
        assert first.returncode == -signal.SIGKILL, f"the load ended before it was killed: {first.communicate()}"
        assert 8 <= confirmed(checkpoint) < 40

        second = govbus(env, *load)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert "rows in" in out and "after" in out and "confirmed before" in out, out  # it resumed
        # Queues are first in, first out, and the repeats were sent before the rest: a repeat let
        # through would be counted by the time the last batch is.
        wait_until(lambda: worker.stats()["deliver"]["done"] >= 40, message="forty batches applied")
        stats = dict(worker.stats()["deliver"]), dict(worker.stats()["ingress"])

    assert stats[0]["done"] == 40, stats  # each batch applied once: the ingress dropped the repeats
    assert all(store.person(n) is not None for n in numbers)
    with context.engine.connect() as conn:
        counted = conn.execute(text("select count(*), count(distinct source_record_id) from md_assertion "
                                    "where department = 'MZ'")).one()
    assert tuple(counted) == (400, 400)
    again = govbus(env, *load)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "nothing to do" in out, out
    context.engine.dispose()


def test_a_load_on_the_embedded_default_applies_the_extract_and_sets_refused_rows_aside(tmp_path):
    from masterdata.store import MasterData

    extract = tmp_path / "mz.csv"
    numbers = write_extract(extract, 25)
    lines = extract.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].replace(",10,", ",99,", 1)  # GB/T 4766 has no code 99: the row on line 5 is refused
    extract.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = make_settings("memory://", tmp_path, routes=routes(tmp_path))
    env = {k: v for k, v in environment(settings).items() if k not in ("GOVBUS_BROKER_URL", "GOVBUS_DATABASE_URL")}
    load = govbus(env, "masterdata", "load", extract, "--department", "MZ", "--resource", "MZ-001", "--batch", "10")
    out, err = load.communicate(timeout=60)
    assert load.returncode == 1, out + err
    assert "24 rows in 3 batches applied to the base library" in out, out
    assert "1 row(s) refused by the specification" in err and "mz.csv.rejected.csv" in err, err
    with (tmp_path / "mz.csv.rejected.csv").open(encoding="utf-8-sig") as f:
        [rejected] = list(csv.DictReader(f))
    assert (rejected["record"], rejected["line"], rejected["key"]) == ("4", "5", numbers[3])
    assert "MaritalStatus" in rejected["reason"]
    context = open_context(settings)  # the same SQLite file
    store = MasterData(context.engine)
    assert store.person(numbers[3]) is None
    assert all(store.person(n) is not None for n in numbers[:3] + numbers[4:])
    context.engine.dispose()


def test_an_xml_extract_is_read_record_by_record_wherever_its_records_are(tmp_path):
    from masterdata.store import MasterData

    records = "".join(person(n, name, "2024-05-01T10:00:00+08:00", _source=f"MZ-{i}", MaritalStatus="21")
                      for i, (n, name) in enumerate(((CHEN, "陈志强"), (HUANG, "黄丽娟"), (LIANG, "梁国华"))))
    extract = tmp_path / "mz-export.xml"  # a department's own wrapper, the records on one line
    extract.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<导出 xmlns:p="{PERSON_NS}" 日期="2024-05-01">'
                       f"<说明>民政局婚姻登记人口信息</说明>{records}</导出>\n", encoding="utf-8")
    settings = make_settings("memory://", tmp_path, routes=routes(tmp_path))
    env = {k: v for k, v in environment(settings).items() if k not in ("GOVBUS_BROKER_URL", "GOVBUS_DATABASE_URL")}
    load = govbus(env, "masterdata", "load", extract, "--department", "MZ", "--resource", "MZ-001", "--batch", "2")
    out, err = load.communicate(timeout=60)
    assert load.returncode == 0, out + err
    assert "3 rows in 2 batches applied to the base library" in out, out
    context = open_context(settings)
    store = MasterData(context.engine)
    assert [provenance(store.person(n), "MaritalStatus")[:2] for n in (CHEN, HUANG, LIANG)] == [
        ("MZ", "MZ-0"), ("MZ", "MZ-1"), ("MZ", "MZ-2")]
    context.engine.dispose()


# -- helpers reading the store ---------------------------------------------------------------------


def golden_values(golden: Golden | None) -> dict[str, str]:
    """Attribute -> golden value; none for no golden record."""
    return golden.values if golden is not None else {}


def provenance(golden: Golden, attribute: str) -> tuple[str, str, str]:
    """Department, source record id and message id of the golden value of `attribute`."""
    source = golden.attributes[attribute].source
    assert source is not None, f"{attribute} was chosen by a steward"
    return source.department, source.source_record_id, source.message_id


def snapshot(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Rows per table of the base libraries."""
    with engine.connect() as conn:
        return {t: conn.execute(text(f'select count(*) from "{t}"')).scalar_one()
                for t in inspect(conn).get_table_names() if t.startswith("md_")}


def redeliver(context, copies) -> None:  # type: ignore[no-untyped-def]
    """Publish envelopes to departments' deliver queues, as a replay of their deliveries does."""
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        messages = [(context.names.deliver_exchange(), department, e.body, e.message_id, None, e.headers())
                    for department, e in copies]
        assert publish_confirmed(broker, broker.channel(), messages) == [None] * len(messages)
    finally:
        broker.close()
