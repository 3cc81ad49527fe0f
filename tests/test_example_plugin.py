"""The example plugin (examples/govbus-adapter-jsonl), installed as an integrator installs it
and used through govbus's own interfaces: `govbus adapters list` shows its two types,
`govbus adapters check` refuses its wrong settings, and a record a department system appends
to a JSON Lines file reaches a subscriber whose outbound is `jsonl_out`, once, across
restarts of `govbus adapters run`, on RabbitMQ and PostgreSQL.

The package is built and installed once per module into a folder of its own (pip's
`--target`), which goes on `sys.path` here and on PYTHONPATH for the subprocesses: the
project's venv is left as it was, and the test can run any number of times.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Health
from adapters.submit import Receipt
from adapters.watermark import Watermark
from bus.app import Context, open_context
from bus.envelope import Envelope, build_envelope
from bus.errors import ConfigError, Failure, TransientError
from bus.routing import Department
from tests.conftest import DATA, ROOT, make_settings, running, wait_until
from tests.samples import PERSON_NS, id_number, person

PLUGIN = ROOT / "examples" / "govbus-adapter-jsonl"
GOVBUS = Path(sys.executable).parent / "govbus"
PEOPLE = [  # (identity number, name): the records the department system writes, in order
    (id_number("440402", "19900307", 231), "陈志强"),
    (id_number("440403", "19851122", 118), "黄丽娟"),
    (id_number("440404", "19720615", 305), "梁国华"),
    (id_number("440402", "20010930", 42), "吴嘉欣"),
]


def local_indexes() -> list[str]:
    """pip options naming only the package indexes configured on this machine's disk
    (file: URLs), so that building the plugin fetches its build backend from them and from
    nowhere else; none when no local index is configured (pip's own settings then apply)."""
    shown = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    urls: list[str] = []
    for line in shown.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("index-url"):
            urls += value.strip().strip("'\"").split()
    local = [url for url in dict.fromkeys(urls) if url.startswith("file:")]
    if not local:
        return []
    return ["--index-url", local[0], *[option for url in local[1:] for option in ("--extra-index-url", url)]]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example package built and installed (not editable) into a folder of its own."""
    work = tmp_path_factory.mktemp("jsonl-plugin")
    source, site = work / "source", work / "site"
    # A copy, so that the build leaves no egg-info or build folder in the work tree.
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), *local_indexes(),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"pip could not install the example plugin:\n{result.stdout}\n{result.stderr}"
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m == "govbus_adapter_jsonl"]:
            del sys.modules[name]


def environment(site: Path, **variables: str | Path) -> dict[str, str]:
    """This process's environment without GOVBUS_* variables, the plugin on PYTHONPATH, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env.update({k: str(v) for k, v in variables.items()})
    return env


def govbus(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GOVBUS), *map(str, args)], env=env, capture_output=True, text=True, timeout=60)


def routes_file(folder: Path, outbox: Path) -> Path:
    """tests/data/routes.toml with MZ taking its deliveries through jsonl_out into `outbox`."""
    text = (DATA / "routes.toml").read_text(encoding="utf-8")
    mz = '[departments.MZ]\nname = "市民政局"\n'
    assert mz in text
    text = text.replace(mz, f'{mz}outbound = "jsonl_out"\n\n[departments.MZ.settings]\npath = {json.dumps(str(outbox))}\n')
    path = folder / "routes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def adapters_file(folder: Path, *entries: dict[str, Any]) -> Path:
    """An adapters file with one [[adapter]] per entry (name, type, department, settings)."""
    lines = []
    for entry in entries:
        lines += ["[[adapter]]", *[f"{k} = {json.dumps(entry[k])}" for k in ("name", "type", "department")],
                  "[adapter.settings]", *[f"{k} = {json.dumps(v)}" for k, v in entry["settings"].items()], ""]
    path = folder / "adapters.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def jsonl_in(name: str, path: Path, **changes: Any) -> dict[str, Any]:
    settings = {"path": str(path), "resource": "GA-001", "version": "1.0", "element": "Person",
                "namespace": PERSON_NS, "interval": 0.1}
    settings.update(changes)  # None leaves a setting out
    return {"name": name, "type": "jsonl_in", "department": "GA",
            "settings": {k: v for k, v in settings.items() if v is not None}}


def record(number: str, name: str, **more: str) -> dict[str, str]:
    """A person record as the department system writes it: the specification's elements, in its order."""
    return {"IdNumber": number, "Name": name, "Sex": "1", "BirthDate": f"{number[6:10]}-{number[10:12]}-{number[12:14]}",
            "Division": number[:6], **more}


def append(path: Path, *lines: dict[str, str] | str) -> None:
    """Append lines as a department system does: JSON objects, or raw text."""
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n")


def written(path: Path) -> list[dict[str, Any]]:
    """The lines jsonl_out wrote, as objects."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_govbus_adapters_list_shows_the_plugin_types(plugin_site: Path, tmp_path: Path) -> None:
    result = govbus(environment(plugin_site, GOVBUS_DATA_DIR=tmp_path), "adapters", "list", "--settings")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines() if re.match(r"\S", line)}
    assert rows["jsonl_in"] == "inbound" and rows["jsonl_out"] == "outbound", result.stdout
    assert "namespace (str, required): the specification's target namespace" in result.stdout
    assert "batch (int, default 200): lines submitted at a time" in result.stdout
    without = govbus(environment(Path("/nonexistent"), GOVBUS_DATA_DIR=tmp_path), "adapters", "list")
    assert without.returncode == 0 and "jsonl_in" not in without.stdout  # the types come from the installed package


def test_govbus_adapters_check_names_each_wrong_setting(plugin_site: Path, tmp_path: Path) -> None:
    outbox = tmp_path / "no-such-folder" / "mz.jsonl"
    config = adapters_file(
        tmp_path,
        jsonl_in("ga-missing", tmp_path / "ga.jsonl", resource=None, batch="many", file="ga.jsonl"),
        jsonl_in("ga-not-provider", tmp_path / "ga.jsonl", resource="GS-001"),
    )
    env = environment(plugin_site, GOVBUS_DATA_DIR=tmp_path, GOVBUS_ROUTES=routes_file(tmp_path, outbox))
    refused = govbus(env, "adapters", "check", config)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    problems = refused.stderr
    assert "ga-missing: unknown setting 'file'" in problems
    assert "missing setting resource (str, required)" in problems
    assert "setting batch='many'" in problems
    assert "ga-not-provider: setting resource='GS-001'" in problems and "its provider is GS" in problems
    assert f"folder {outbox.parent} does not exist; create it, or fix the path" in problems

    outbox.parent.mkdir()
    good = adapters_file(tmp_path, jsonl_in("ga-jsonl", tmp_path / "ga.jsonl"))
    checked = govbus(env, "adapters", "check", good)
    assert checked.returncode == 0, checked.stderr
    assert "ok  ga-jsonl: jsonl_in (inbound) for GA" in checked.stdout
    assert "ok  department MZ: outbound jsonl_out" in checked.stdout


class Adapters:
    """`govbus adapters run CONFIG` in a subprocess, started and stopped as an operator does."""

    def __init__(self, env: dict[str, str], config: Path, log: Path) -> None:
        self.env, self.config, self.log = env, config, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(GOVBUS), "adapters", "run", str(self.config)], env=self.env,
                                            stdout=log, stderr=log)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(20)
        self.process = None
        assert code == 0, f"govbus adapters run exited {code}:\n{self.log.read_text(errors='replace')}"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


@pytest.mark.broker
@pytest.mark.postgres
def test_a_line_appended_reaches_the_subscriber_once_across_restarts(
    plugin_site: Path, amqp_url: str, pg_url: str, tmp_path: Path
) -> None:
    inbox, outbox = tmp_path / "ga-outbox.jsonl", tmp_path / "mz-inbox.jsonl"
    routes = routes_file(tmp_path, outbox)
    settings = make_settings(amqp_url, tmp_path, routes=routes, database_url=pg_url)
    context = open_context(settings)
    config = adapters_file(tmp_path, jsonl_in("ga-jsonl", inbox))
    env = environment(plugin_site, GOVBUS_BROKER_URL=amqp_url, GOVBUS_DATABASE_URL=pg_url, GOVBUS_ROUTES=routes,
                      GOVBUS_PREFIX=settings.prefix, GOVBUS_DATA_DIR=tmp_path)
    adapters = Adapters(env, config, tmp_path / "adapters.log")
    watermark = Watermark(context.engine, "ga-jsonl", "GA")

    def delivered(count: int) -> list[dict[str, Any]] | None:
        if adapters.process is not None and adapters.process.poll() is not None:
            pytest.fail(f"govbus adapters run died:\n{adapters.log.read_text(errors='replace')}")
        lines = written(outbox)
        return lines if len(lines) >= count else None

    try:
        with running(context):  # ingress, router and deliver (MZ through jsonl_out), as `govbus serve` runs them
            # Two good records around a line that is not JSON and one the ingress refuses (sex 5).
            append(inbox, record(*PEOPLE[0]), '{"IdNumber": "4404', record(id_number(sequence=7), "林小军", Sex="5"),
                   record(*PEOPLE[1]))
            adapters.start()
            wait_until(lambda: delivered(2), message="the first two records in MZ's file")
            adapters.stop()

            append(inbox, record(*PEOPLE[2]))  # while the adapter is down
            adapters.start()
            wait_until(lambda: delivered(3), message="the record appended while the adapter was down")
            size = inbox.stat().st_size  # moved only after the broker confirmed everything before it
            wait_until(lambda: watermark.get() == f"{size}@{inbox.stat().st_ino}", message="the watermark at the end")
            adapters.stop()

            # The worst case: a crash after the confirm, before the watermark moved. Every line is
            # read again; each is the same message as before, and the bus takes it once.
            watermark.advance("0")
            append(inbox, record(*PEOPLE[3]))
            adapters.start()
            wait_until(lambda: delivered(4), message="the record appended after the watermark was lost")
            wait_until(lambda: watermark.get() == f"{inbox.stat().st_size}@{inbox.stat().st_ino}",
                       message="the watermark at the end again")
            adapters.stop()
            lines = written(outbox)
    finally:
        adapters.kill()
        context.engine.dispose()

    assert [line["IdNumber"] for line in lines] == [number for number, _ in PEOPLE], lines
    assert len({line["message_id"] for line in lines}) == 4
    first = lines[0]
    assert first == {"message_id": first["message_id"], "sender": "GA", "resource": "GA-001", "version": "1.0",
                     "operation": "upsert", **record(*PEOPLE[0])}

    listed = govbus(env, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    reasons = sorted(re.findall(r"\b(schema_violation|undecodable)\b", listed.stdout))
    assert reasons == ["schema_violation", "undecodable"], listed.stdout  # each stored once, though read twice


class FakeSubmitter:
    """Takes what the inbound adapter submits, as the bus would, or refuses it as told."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.refuse: Failure | None = None

    def submit(self, bodies: Sequence[bytes], department: str) -> list[Receipt]:
        receipts = []
        for body in bodies:
            message_id = re.search(rb"<env:MessageId>([^<]+)<", body).group(1).decode()  # type: ignore[union-attr]
            receipts.append(Receipt(message_id, self.refuse))
            if self.refuse is None:
                self.bodies.append(body)
        return receipts


@pytest.fixture
def local_context(tmp_path: Path) -> Iterator[Context]:
    context = open_context(make_settings("memory://", tmp_path))
    yield context
    context.engine.dispose()


def test_inbound_reads_complete_lines_and_moves_only_past_what_the_bus_took(
    plugin_site: Path, local_context: Context, tmp_path: Path
) -> None:
    from govbus_adapter_jsonl import JsonlInbound

    inbox = tmp_path / "ga.jsonl"
    settings = jsonl_in("ga-unit", inbox)["settings"]
    adapter = JsonlInbound(Department("GA", "市公安局", "jsonl_in", settings), local_context, name="ga-unit")
    bus = FakeSubmitter()
    adapter.submitter = bus  # type: ignore[assignment]
    adapter.start()
    assert adapter.poll() == 0 and not adapter.health().ok  # no file yet: nothing to do, and health says why

    first = json.dumps(record(*PEOPLE[0]), ensure_ascii=False) + "\n"
    second = json.dumps(record(*PEOPLE[1]), ensure_ascii=False)
    inbox.write_text(first + second[:20], encoding="utf-8")  # the department system is mid-way through line 2
    assert adapter.poll() == 1
    assert adapter.health() == Health(True, f"{inbox}: {inbox.stat().st_size} bytes, read up to byte {len(first.encode())}")
    with inbox.open("a", encoding="utf-8") as handle:
        handle.write(second[20:] + "\n")
    bus.refuse = Failure("broker_refused", "no route", False)  # the broker did not take it
    with pytest.raises(TransientError, match=f"the line at byte {len(first.encode())} of"):
        adapter.poll()
    bus.refuse = None
    assert adapter.poll() == 1 and adapter.poll() == 0
    payload = bus.bodies[1].split(b"<env:Body>")[1]
    assert f'<Person xmlns="{PERSON_NS}"><IdNumber>{PEOPLE[1][0]}</IdNumber><Name>黄丽娟</Name>'.encode() in payload

    # Read again from the start (a restart that lost the watermark): the same message ids.
    again = JsonlInbound(Department("GA", "市公安局", "jsonl_in", settings), local_context, name="ga-unit")
    again.submitter = bus  # type: ignore[assignment]
    Watermark(local_context.engine, "ga-unit", "GA").advance("0")
    assert again.poll() == 2
    ids = [re.search(rb"<env:MessageId>([^<]+)<", body).group(1) for body in bus.bodies]  # type: ignore[union-attr]
    assert ids[2:] == ids[:2] and ids[0] != ids[1]


def test_outbound_writes_each_message_once_across_restarts(
    plugin_site: Path, local_context: Context, tmp_path: Path
) -> None:
    from govbus_adapter_jsonl import JsonlOutbound

    outbox = tmp_path / "mz.jsonl"
    department = Department("MZ", "市民政局", "jsonl_out", {"path": str(outbox)})
    people = [build_envelope("GA", "GA-001", "1.0", person(IdNumber=number, Name=name)) for number, name in PEOPLE]
    empty = Envelope("5b0d6c64-1f0c-4a39-9a43-7b1f4e2a0c11", "GA", "GA-001", "1.0", "upsert", "",
                     b'<env:Envelope xmlns:env="urn:zhuhai:govbus:envelope"><env:Header/><env:Body/></env:Envelope>')

    outbound = JsonlOutbound(department, local_context)
    outbound.start()
    results = outbound.deliver([people[0], empty, people[1]])
    assert results[0] is None and results[2] is None
    assert getattr(results[1], "code", None) == "sink_refused"  # dead-lettered, with the reason
    assert outbound.deliver([people[1], people[0]]) == [None, None]  # delivered again after a crash: not written again

    with outbox.open("ab") as handle:  # a writer died in the middle of a line, before its fsync
        handle.write(b'{"message_id": "' + people[2].message_id.encode())
    restarted = JsonlOutbound(department, local_context)
    restarted.start()
    assert restarted.deliver([people[1], people[2], people[3]]) == [None] * 3
    lines = written(outbox)
    assert [line["message_id"] for line in lines] == [e.message_id for e in people]
    assert lines[0]["Name"] == "陈志强" and lines[0]["sender"] == "GA" and lines[0]["Sex"] == "1"
    assert restarted.health() == Health(True, f"{outbox}: 4 deliveries")


def test_outbound_refuses_to_start_without_its_folder(plugin_site: Path, local_context: Context, tmp_path: Path) -> None:
    from govbus_adapter_jsonl import JsonlOutbound

    missing = tmp_path / "absent" / "mz.jsonl"
    outbound = JsonlOutbound(Department("MZ", "市民政局", "jsonl_out", {"path": str(missing)}), local_context)
    assert not outbound.health().ok
    with pytest.raises(ConfigError, match=r"setting path=.*folder .*absent does not exist; create it, or fix the path"):
        outbound.start()
