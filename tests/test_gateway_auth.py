"""Who may call the SOAP gateway: WS-Security UsernameToken per department, replay protection,
the audit of refusals, the sealed credentials and their commands.

Over real HTTP on the platform's server, with zeep and http.client only (no spyne here). The
embedded default (in-memory broker, SQLite) unless production behaviour is claimed: nonces
shared between gateway processes are checked on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import kombu.transport.memory
import pytest
import zeep.exceptions
from sqlalchemy import select, update

from adapters.tables import credential
from bus.app import Context, open_context
from tests.conftest import DATA, inbox_ids, make_settings, wait_until
from bus.envelope import build_envelope
from tests.samples import legal_entity, person_envelope
from tests.test_dlq_cli import GOVBUS, clean_environment
from tests.test_gateway_soap import Served, fault_code, receipt_of, security_header, serving, submit_request

AUTH_FAILED = "soap11env:Client.authentication_failed"


@contextlib.contextmanager
def opened(data_dir: Path, **changes: object) -> Iterator[Context]:
    """A context on the embedded default (or the database `changes` names)."""
    context = open_context(make_settings("memory://", data_dir, **changes))
    try:
        yield context
    finally:
        context.engine.dispose()
        kombu.transport.memory.Channel.queues.clear()
        kombu.transport.memory.Transport.global_state.clear()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Context]:
    with opened(tmp_path) as context:
        yield context


@pytest.fixture
def served(embedded: Context) -> Iterator[Served]:
    with serving(embedded) as platform:
        yield platform


def _created(offset: timedelta) -> str:
    return (datetime.now(timezone.utc) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_wrong_password_is_refused_without_saying_why_and_audited_with_the_reason(served: Served) -> None:
    envelope = person_envelope()
    with pytest.raises(zeep.exceptions.Fault) as refused:
        served.client("GA", "not-the-secret").service.Submit(envelope=envelope.body.decode())
    assert refused.value.code == AUTH_FAILED and refused.value.detail is None
    said = {refused.value.message}
    row = served.audit()[-1]
    assert (row.username, row.remote, row.operation, row.outcome) == ("GA", "127.0.0.1", "Submit", "auth_failed")
    assert "wrong password" in row.detail and "PasswordDigest" in row.detail

    # refused before anything was published: only what is submitted after it, signed right, arrives
    signed = person_envelope()
    assert served.client("GA").service.Submit(envelope=signed.body.decode()).accepted is True
    wait_until(lambda: signed.message_id in inbox_ids(served.context, "MZ"), message="the delivery")
    assert inbox_ids(served.context, "MZ") == [signed.message_id]

    # each way of failing is refused alike, and audited with its own reason
    body = person_envelope().body
    cases = [
        ("", None, "no WS-Security UsernameToken"),  # no header at all
        (security_header("ZZ", "whatever-secret"), "ZZ", "no gateway credential for department 'ZZ'"),
        (security_header("GA", "wrong-secret", digest=False), "GA", "wrong password (PasswordText)"),
        (security_header("GA", served.secrets["GA"], created=_created(timedelta(minutes=-6))), "GA", "stale token"),
        (security_header("GA", served.secrets["GA"], created=_created(timedelta(minutes=6))), "GA", "from the future"),
    ]
    for header, username, reason in cases:
        status, answer = served.post(submit_request(body, header))
        assert (status, fault_code(answer)) == (500, AUTH_FAILED), reason
        said.add(answer.findtext(".//faultstring") or "")
        row = served.audit()[-1]
        assert row.username == username and reason in row.detail, (reason, row)
    assert [r.outcome for r in served.audit()[-2:]] == ["stale", "stale"]
    assert len(said) == 1  # the caller learns nothing of which part was wrong


    # within the window either way, with milliseconds, and PasswordText, are accepted
    with_milliseconds = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for header in (security_header("GA", served.secrets["GA"], created=_created(timedelta(minutes=-4))),
                   security_header("GA", served.secrets["GA"], created=_created(timedelta(minutes=4))),
                   security_header("GA", served.secrets["GA"], created=with_milliseconds),
                   security_header("GA", served.secrets["GA"], digest=False)):
        envelope = person_envelope()
        status, answer = served.post(submit_request(envelope.body, header))
        assert status == 200 and receipt_of(answer) == (envelope.message_id, "true")


def test_a_replayed_request_is_refused(served: Served) -> None:
    request = submit_request(person_envelope().body, security_header("GA", served.secrets["GA"]))
    assert served.post(request)[0] == 200
    status, answer = served.post(request)  # the same bytes again, as an eavesdropper would send them
    assert (status, fault_code(answer)) == (500, AUTH_FAILED)
    assert served.audit()[-1].outcome == "replayed"
    # a nonce is its department's own: another department may happen to use the same one
    nonce = os.urandom(16)
    for department, envelope in (("GA", person_envelope()), ("GS", build_envelope("GS", "GS-001", "1.0", legal_entity()))):
        status, answer = served.post(submit_request(envelope.body, security_header(department, served.secrets[department], nonce=nonce)))
        assert status == 200 and receipt_of(answer) == (envelope.message_id, "true"), department


def test_gateway_processes_sharing_the_database_refuse_each_others_replays(tmp_path: Path, pg_url: str) -> None:
    """Two gateways on one PostgreSQL database, each with its own memory (as two processes):
    a request one of them took is refused by the other."""
    with opened(tmp_path, database_url=pg_url) as one, opened(tmp_path, database_url=pg_url) as two:
        with serving(one, stages=False) as first, serving(two, stages=False, secrets=first.secrets) as second:
            request = submit_request(person_envelope().body, security_header("GA", first.secrets["GA"]))
            status, answer = first.post(request)
            assert status == 200, answer
            status, answer = second.post(request)
            assert (status, fault_code(answer)) == (500, AUTH_FAILED)
            assert second.audit()[-1].outcome == "replayed"
            fresh = submit_request(person_envelope().body, security_header("GA", first.secrets["GA"]))
            assert second.post(fresh)[0] == 200


def test_a_department_acts_only_as_itself(served: Served) -> None:
    pretending = person_envelope(sender="GA")
    with pytest.raises(zeep.exceptions.Fault) as refused:
        served.client("GS").service.Submit(envelope=pretending.body.decode())
    assert refused.value.code.split(":")[-1] == "Client.not_authorized"
    assert "only as itself" in refused.value.message
    row = served.audit()[-1]
    assert (row.username, row.operation, row.outcome) == ("GS", "Submit", "forbidden")
    assert "GS" in row.detail and "GA" in row.detail
    # nor may a department submit a resource another provides, under its own name
    with pytest.raises(zeep.exceptions.Fault) as foreign:
        served.client("MZ").service.Submit(envelope=person_envelope(sender="MZ").body.decode())
    assert foreign.value.code.split(":")[-1] == "Client.not_authorized"
    assert served.audit()[-1].outcome == "forbidden"


def test_secrets_are_sealed_and_a_tampered_row_is_refused(served: Served, tmp_path: Path) -> None:
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    engine = served.context.engine

    def row(department: str) -> tuple[str, str]:
        with engine.connect() as conn:
            return conn.execute(select(credential.c.sealed_secret, credential.c.secret_hash)  # type: ignore[return-value]
                                .where(credential.c.department == department)).one()

    def tamper(department: str, sealed: str, hashed: str) -> None:
        with engine.begin() as conn:
            conn.execute(update(credential).where(credential.c.department == department)
                         .values(sealed_secret=sealed, secret_hash=hashed))
        served.app.state.soap_gateway.credentials.forget()  # else the cache would notice within 5 s

    gs_sealed, gs_hash = row("GS")
    assert served.secrets["GS"] not in gs_sealed + gs_hash  # nothing in the clear
    # GS's row copied over GA's: GS's secret must not open GA
    tamper("GA", gs_sealed, gs_hash)
    status, answer = served.post(submit_request(person_envelope().body, security_header("GA", served.secrets["GS"])))
    assert (status, fault_code(answer)) == (500, AUTH_FAILED)
    assert "does not match its hash" in served.audit()[-1].detail
    # a sealed secret altered by hand cannot be unsealed
    tamper("GS", gs_sealed[:-6] + ("AAAAAA" if not gs_sealed.endswith("AAAAAA") else "BBBBBB"), gs_hash)
    envelope = build_envelope("GS", "GS-001", "1.0", legal_entity())
    status, answer = served.post(submit_request(envelope.body, security_header("GS", served.secrets["GS"])))
    assert (status, fault_code(answer)) == (500, AUTH_FAILED)
    assert "cannot be unsealed" in served.audit()[-1].detail


def _govbus(data_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = clean_environment(GOVBUS_DATA_DIR=str(data_dir), GOVBUS_ROUTES=str(DATA / "routes.toml"))
    return subprocess.run([str(GOVBUS), "adapters", "credentials", *map(str, args)], env=env, cwd=data_dir,
                          capture_output=True, text=True, timeout=60)


def test_credentials_commands_set_list_and_remove_what_the_gateway_checks(tmp_path: Path) -> None:
    made = _govbus(tmp_path, "set", "GA")  # alone first: it creates the database and the platform key
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert len(secret) >= 32 and "GA" in made.stdout.splitlines()[0]
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    (tmp_path / "gs.txt").write_text("gs-chosen-secret-2026\n")
    (tmp_path / "short.txt").write_text("abc\n")
    with ThreadPoolExecutor(3) as pool:
        chosen, unknown, too_short = pool.map(lambda args: _govbus(tmp_path, *args), [
            ("set", "GS", "--secret-file", tmp_path / "gs.txt"), ("set", "XX"), ("set", "MZ", "--secret-file", tmp_path / "short.txt")])
    assert chosen.returncode == 0 and "gs-chosen-secret-2026" not in chosen.stdout, chosen.stderr
    assert unknown.returncode == 2 and "no department XX" in unknown.stderr and "Traceback" not in unknown.stderr
    assert too_short.returncode == 2 and "at least 12 characters" in too_short.stderr

    listed = _govbus(tmp_path, "list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["GA", "GS"]
    assert secret not in listed.stdout

    # the gateway takes the secrets the commands stored
    with opened(tmp_path) as context:
        with serving(context, stages=False, secrets={"GA": secret, "GS": "gs-chosen-secret-2026"}) as platform:
            envelope = person_envelope()
            assert platform.client("GA").service.Submit(envelope=envelope.body.decode()).accepted
            assert platform.client("GS").service.Fetch(max=1) == []

            platform.app.state.soap_gateway.credentials.ttl = 1.0  # 5 s by default: the test need not wait so long
            assert _govbus(tmp_path, "remove", "GA").returncode == 0
            # refused without a restart once the cached credential is read again
            wait_until(lambda: _refused(platform, secret), timeout=10, message="the removed secret refused")
            assert "no gateway credential for department 'GA'" in platform.audit()[-1].detail
    again = _govbus(tmp_path, "remove", "GA")
    assert again.returncode == 1 and "has no gateway secret" in again.stderr


def _refused(platform: Served, secret: str) -> bool:
    status, answer = platform.post(submit_request(person_envelope().body, security_header("GA", secret)))
    return fault_code(answer) == AUTH_FAILED
