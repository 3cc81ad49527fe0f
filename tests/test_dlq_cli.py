"""The operator's command line, run as an operator runs it: `govbus ...` in a subprocess,
configured by GOVBUS_* variables, against RabbitMQ and PostgreSQL (a vhost and a database of
its own per test) and on the embedded default.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import EXAMPLES, ROOT, management, wait_until

GOVBUS = ROOT / ".venv" / "bin" / "govbus"
MESSAGES = sorted((EXAMPLES / "messages").glob("*.xml"))
INVALID_SEX = EXAMPLES / "messages" / "03-person-invalid-sex.xml"
SAMPLE_REASONS = {
    "03-person-invalid-sex.xml": "schema_violation",
    "04-person-wrong-sender.xml": "not_authorized",
    "05-person-unknown-version.xml": "unknown_version",
}


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without any GOVBUS_* variable, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env.update(variables)
    return env


def govbus(env: dict[str, str], *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GOVBUS), *map(str, args)], env=env, cwd=env.get("GOVBUS_DATA_DIR"),
        capture_output=True, text=True, timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def message_id(path: Path) -> str:
    found = re.search(r"<env:MessageId>([^<]+)</env:MessageId>", path.read_text(encoding="utf-8"))
    assert found
    return found.group(1)


def position_of(path: Path, text: str) -> tuple[int, int]:
    """Line and column (both from 1) where `text` begins in the file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(i for i, content in enumerate(lines, 1) if text in content)
    return line, lines[line - 1].index(text) + 1


def listed(env: dict[str, str], *options: str) -> list[dict[str, str]]:
    """`govbus dlq list` as rows of its columns."""
    out = ok(govbus(env, "dlq", "list", *options))
    if out.strip() == "no dead letters":
        return []
    header, *lines = out.splitlines()
    assert header.split()[:2] == ["ID", "CAPTURED"], out
    rows = []
    for line in lines:
        id_, day, clock, status, stage, reason, resource, message = line.split()
        rows.append({"id": id_, "captured": f"{day} {clock}", "status": status, "stage": stage,
                     "reason": reason, "resource": resource, "message": message})
    return rows


# -- a production-like platform: RabbitMQ, PostgreSQL, `govbus serve` --------------------------


def with_sample_catalogue(env: dict[str, str]) -> dict[str, str]:
    """A platform admin, and examples/catalog.xml imported, as an administrator sets it up."""
    ok(govbus(env, "catalog", "init", "--admin", "admin", "--password", "platform-secret"))
    ok(govbus(env, "catalog", "--as", "admin", "import", str(EXAMPLES / "catalog.xml")))
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def env(amqp_url: str, pg_url: str, tmp_path: Path) -> dict[str, str]:
    return with_sample_catalogue(clean_environment(
        GOVBUS_BROKER_URL=amqp_url,
        GOVBUS_DATABASE_URL=pg_url,
        GOVBUS_PREFIX=f"cli{uuid.uuid4().hex[:8]}",
        GOVBUS_DATA_DIR=str(tmp_path),
        GOVBUS_RETRY_ATTEMPTS="3",
        GOVBUS_RETRY_BASE_DELAY="0.2",
        GOVBUS_RETRY_MAX_DELAY="1",
    ))


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`govbus serve`, after `govbus topology declare`, as an operator starts the platform."""
    ok(govbus(env, "topology", "declare"))
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(GOVBUS), "serve", "--port", str(free_port())], env=env, cwd=tmp_path,
                                   stdout=output, stderr=subprocess.STDOUT)
    process.log = log  # type: ignore[attr-defined]
    try:
        wait_until(lambda: process.poll() is not None or "serving stages" in log.read_text(), 30, "govbus serve to start")
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def samples(env: dict[str, str], server: subprocess.Popen[bytes]) -> dict[str, str]:
    """The sample messages sent and settled; returns {reason: dead letter id}."""
    out = ok(govbus(env, "send", *MESSAGES))
    for path in MESSAGES:
        assert f"{path}: message {message_id(path)} accepted by the broker" in out
    rows = wait_until(lambda: len(found := listed(env)) >= 3 and found, 30, "the three dead letters")
    return {row["reason"]: row["id"] for row in rows}  # type: ignore[union-attr]


def test_topology_declare_lists_every_queue_it_made(env, vhost):
    prefix = env["GOVBUS_PREFIX"]
    out = ok(govbus(env, "topology", "declare"))
    expected = [f"{prefix}.dlq", f"{prefix}.ingress", f"{prefix}.routing"]
    expected += [f"{prefix}.deliver.{code}" for code in ("DSW", "GSW", "JS", "MZ", "RS")]  # the sample's subscribers
    expected += [f"{prefix}.retry.{ms}ms" for ms in (200, 400)]  # attempts 3: two delays
    assert out.splitlines() == expected
    on_broker = {q["name"] for q in management("GET", f"/queues/{quote(vhost, safe='')}")}  # type: ignore[union-attr]
    assert on_broker == set(expected)
    assert ok(govbus(env, "topology", "declare")).splitlines() == expected  # again: nothing changes


def test_the_sample_set_leaves_three_dead_letters_with_their_reasons(env, samples, pg_url):
    rows = listed(env)
    expected = {SAMPLE_REASONS[p.name]: message_id(p) for p in MESSAGES if p.name in SAMPLE_REASONS}
    assert {r["reason"]: r["message"] for r in rows} == expected
    assert {(r["status"], r["stage"], r["resource"]) for r in rows} == {("pending", "ingress", "101001-0001")}
    assert [int(r["id"]) for r in rows] == sorted((int(r["id"]) for r in rows), reverse=True)  # newest first
    assert [r["reason"] for r in listed(env, "--reason", "not_authorized")] == ["not_authorized"]

    # and the two valid messages reached their subscribers' inboxes: the catalogue's routes
    def delivered() -> set[tuple[str, str]]:
        with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as db:
            return set(db.execute("SELECT message_id, department FROM inbox").fetchall())

    wait_until(lambda: len(delivered()) >= 4, 30, "four copies in the inboxes")
    person, company = message_id(MESSAGES[0]), message_id(MESSAGES[1])
    assert delivered() == {(person, "MZ"), (person, "RS"), (company, "RS"), (company, "GSW")}


def test_dlq_show_points_at_the_offending_element(env, samples):
    out = ok(govbus(env, "dlq", "show", samples["schema_violation"]))
    fields = dict(line.split(":", 1) for line in out.split("headers:")[0].splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    line, column = position_of(INVALID_SEX, "<p:Sex>")
    assert fields["reason"] == "schema_violation"
    assert fields["rule"] == "cvc-enumeration-valid"
    assert (fields["line"], fields["column"]) == (str(line), str(column))
    assert fields["message id"] == message_id(INVALID_SEX)
    assert fields["stage"] == "ingress"
    assert fields["attempts"] == "1"
    assert "'5'" in fields["explanation"]
    assert INVALID_SEX.read_text(encoding="utf-8").strip() in out  # the body, as sent
    assert fields["id"] == samples["schema_violation"]


def test_a_discarded_dead_letter_keeps_its_reason(env, samples):
    id_ = samples["unknown_version"]
    assert ok(govbus(env, "dlq", "discard", id_, "--reason", "GA will resend with version 1.0")).strip() == f"#{id_}: discarded"
    assert [(r["id"], r["status"]) for r in listed(env, "--status", "discarded")] == [(id_, "discarded")]
    assert id_ not in [r["id"] for r in listed(env)]
    assert "GA will resend with version 1.0" in ok(govbus(env, "dlq", "show", id_, "--no-body"))
    again = govbus(env, "dlq", "discard", id_, "--reason", "twice")
    assert again.returncode == 1
    assert "already discarded" in again.stdout


def test_a_replayed_dead_letter_that_still_fails_is_dead_lettered_again(env, samples):
    id_ = samples["not_authorized"]
    wrong_sender = message_id(EXAMPLES / "messages" / "04-person-wrong-sender.xml")
    assert ok(govbus(env, "dlq", "replay", id_)).strip() == f"#{id_}: replayed"
    rows = wait_until(
        lambda: [r for r in listed(env, "--reason", "not_authorized") if int(r["id"]) > int(id_)], 30,
        "the replayed message's new dead letter",
    )
    assert [r["message"] for r in rows] == [wrong_sender]  # type: ignore[union-attr]
    assert [(r["id"], r["message"]) for r in listed(env, "--status", "replayed")] == [(id_, wrong_sender)]
    again = govbus(env, "dlq", "replay", id_)
    assert again.returncode == 1
    assert "already replayed" in again.stdout


def test_serve_stops_cleanly_on_sigterm(env, samples, server):
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("govbus serve did not stop within 5s of SIGTERM")
    log = server.log.read_text()  # type: ignore[attr-defined]
    assert code == 0, log
    assert "Traceback" not in log
    assert "ingress: dead_lettered 3, forwarded 2" in log  # its parting statistics


def test_send_before_the_topology_exists_fails_in_one_line(env):
    # an operator who forgot `govbus topology declare`: the broker refuses (no exchange), and
    # the command says so in one line, as every failed operation does (exit 1)
    result = govbus(env, "send", MESSAGES[0])
    last = (result.stderr.strip().splitlines() or [""])[-1]
    assert "Traceback" not in result.stderr, f"a traceback instead of one line; it ends: {last}"
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ingress" in last  # names what is missing


# -- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "show", "notanumber"],
        ["dlq", "discard", "1"],
        ["nosuchcommand"],
        ["worker", "--stage", "nosuch"],
        ["dlq", "discard", "1", "--reason", " "],
    ],
    ids=["show-not-a-number", "discard-without-reason", "unknown-command", "unknown-stage", "blank-reason"],
)
def test_a_usage_error_exits_2_with_one_line(tmp_path, args):
    result = govbus(clean_environment(GOVBUS_DATA_DIR=str(tmp_path)), *args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("govbus: error:"), line


# -- the embedded default ----------------------------------------------------------------------


def test_demo_runs_the_samples_on_the_embedded_default_again_and_again(tmp_path):
    env = clean_environment(GOVBUS_DATA_DIR=str(tmp_path))
    line, column = position_of(INVALID_SEX, "<p:Sex>")
    for _ in range(2):
        out = ok(govbus(env, "demo"))
        assert "Report: 5 sent, 4 copies delivered, 3 dead-lettered" in out
        assert f"schema_violation [cvc-enumeration-valid], line {line}, column {column}" in out
        assert "not_authorized" in out and "unknown_version" in out
    rows = listed(env, "--status", "all")
    assert len(rows) == 6
    assert len({r["message"] for r in rows}) == 6  # each run sent fresh message ids
    assert sorted(r["reason"] for r in rows) == sorted(list(SAMPLE_REASONS.values()) * 2)


def test_send_on_the_embedded_default_says_where_each_file_went(tmp_path):
    env = with_sample_catalogue(clean_environment(GOVBUS_DATA_DIR=str(tmp_path)))
    out = ok(govbus(env, "send", *MESSAGES))
    lines = {Path(line.split(":", 1)[0]).name: line for line in out.splitlines()}
    assert set(lines) == {p.name for p in MESSAGES}
    assert lines["01-person.xml"].endswith("delivered to MZ, RS")
    assert lines["02-legal-entity.xml"].endswith("delivered to GSW, RS")
    line, column = position_of(INVALID_SEX, "<p:Sex>")
    assert "dead-lettered (#" in lines["03-person-invalid-sex.xml"]
    assert f"[cvc-enumeration-valid], line {line}, column {column}" in lines["03-person-invalid-sex.xml"]
    for name, reason in SAMPLE_REASONS.items():
        assert f"): {reason}: " in lines[name]
        assert message_id(EXAMPLES / "messages" / name) in lines[name]
