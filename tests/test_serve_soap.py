"""`govbus serve` as an operator starts it hosts the SOAP gateway beside the REST API, on one
server: a legacy client that knows only the WSDL URL submits through it, on RabbitMQ and
PostgreSQL, with the credentials the CLI issued."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request

import psycopg
import pytest
import zeep
from zeep.exceptions import Fault
from zeep.wsse.username import UsernameToken

from tests.conftest import EXAMPLES, wait_until
from tests.test_dlq_cli import GOVBUS, env, free_port, govbus, message_id, ok  # noqa: F401  (env is a fixture)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture
def platform(env, tmp_path):  # noqa: F811
    secret = tmp_path / "ga.secret"
    secret.write_text("Zh2026-公安-交换密钥\n", encoding="utf-8")
    ok(govbus(env, "adapters", "credentials", "set", "GA", "--secret-file", secret))
    ok(govbus(env, "topology", "declare"))
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(GOVBUS), "serve", "--port", str(port)], env=env, cwd=tmp_path,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or answers(f"http://127.0.0.1:{port}/health"), 30, "govbus serve to start")
        assert process.poll() is None, log.read_text()
        assert "SOAP gateway at /soap/exchange?wsdl" in log.read_text()
        yield port, "Zh2026-公安-交换密钥"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, log.read_text()


def test_govbus_serve_hosts_the_wsdl_and_takes_a_submission(platform, env, pg_url):  # noqa: F811
    port, secret = platform
    base = f"http://127.0.0.1:{port}"
    assert answers(f"{base}/docs")  # the REST API's OpenAPI page, on the same server
    client = zeep.Client(f"{base}/soap/exchange?wsdl", wsse=UsernameToken("GA", secret, use_digest=True))
    sample = EXAMPLES / "messages" / "01-person.xml"
    receipt = client.service.Submit(envelope=sample.read_text(encoding="utf-8"))
    assert receipt.accepted and receipt.messageId == message_id(sample)
    with pytest.raises(Fault) as refused:
        client.service.Submit(envelope=(EXAMPLES / "messages" / "03-person-invalid-sex.xml").read_text(encoding="utf-8"))
    assert refused.value.code.endswith("schema_violation")
    assert re.search(r"line \d+", refused.value.message)

    def delivered() -> set[str]:
        with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
            return {d for (d,) in conn.execute("SELECT department FROM inbox WHERE message_id = %s", (message_id(sample),))}

    # the sample catalogue's subscribers of 101001-0001
    wait_until(lambda: delivered() == {"MZ", "RS"}, 30, "the submission to reach MZ and RS")
