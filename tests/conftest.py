"""Shared fixtures.

Broker and database fixtures fail, never skip, when RabbitMQ or PostgreSQL is missing: run
`make test`, which starts them. Each broker test gets its own vhost (created through the
management API, deleted afterwards) and its own name prefix; each PostgreSQL test its own
database.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import kombu.transport.memory
import psycopg
import pytest
from sqlalchemy import select

from adapters.base import Adapter
from adapters.registry import run_inbound
from bus.app import STAGES, Context, open_context
from bus.broker import Broker, publish_confirmed
from bus.config import RetryPolicy, Settings
from bus.deliver import inbox
from bus.envelope import Envelope
from bus.names import Header
from bus.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = ROOT / "tests" / "data"
MANAGEMENT = "http://127.0.0.1:15672/api"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def management(method: str, path: str, body: object | None = None) -> object:
    """Call the RabbitMQ management API as guest; fail the test if it is not there."""
    request = urllib.request.Request(
        MANAGEMENT + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
    except urllib.error.HTTPError as exc:
        if method == "DELETE" and exc.code == 404:
            return None
        raise
    except OSError as exc:
        pytest.fail(f"RabbitMQ management API unreachable at {MANAGEMENT} ({exc}); run `make test`, which starts it")
    return json.loads(data) if data else None


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"govbus-test-{uuid.uuid4().hex[:12]}"
    management("PUT", f"/vhosts/{quote(name, safe='')}")
    management("PUT", f"/permissions/{quote(name, safe='')}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    yield name
    management("DELETE", f"/vhosts/{quote(name, safe='')}")


@pytest.fixture
def amqp_url(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"govbus_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL unreachable ({exc}); run `make test`, which starts it")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["memory", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The same behaviour test, once on the in-memory transport and once on RabbitMQ."""
    if request.param == "memory":
        yield "memory://"
        kombu.transport.memory.Channel.queues.clear()
        kombu.transport.memory.Transport.global_state.clear()
    else:
        yield request.getfixturevalue("amqp_url")


def make_settings(broker_url: str, data_dir: Path, **changes: object) -> Settings:
    """Test settings: a unique name prefix, fast retries, the sample routing table."""
    values: dict[str, object] = {
        "broker_url": broker_url,
        "data_dir": data_dir,
        "routes": DATA / "routes.toml",
        "prefix": f"t{uuid.uuid4().hex[:10]}",
        "retry": RetryPolicy(attempts=3, base_delay=0.2, factor=2.0, max_delay=1.0),
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(broker_url: str, tmp_path: Path) -> Settings:
    return make_settings(broker_url, tmp_path)


@pytest.fixture
def context(settings: Settings) -> Iterator[Context]:
    ctx = open_context(settings)
    yield ctx
    ctx.engine.dispose()


@contextlib.contextmanager
def running(context: Context, stages: Sequence[str] = STAGES, worker: Worker | None = None) -> Iterator[Worker]:
    """Run stages in a background thread for the duration of the block."""
    worker = worker or context.worker(stages)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced in the test below, not lost in a thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert worker.connected.wait(15) or errors, "worker did not connect"
    try:
        yield worker
    finally:
        stop.set()
        thread.join(15)
    if errors:
        raise errors[0]


def submit(context: Context, envelopes: Sequence[Envelope], *, headers: bool = True) -> None:
    """Publish envelopes to the ingress with confirms, as a department's system would."""
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        messages = [
            (
                context.names.ingress_exchange(), f"{e.sender}.{e.resource}", e.body, e.message_id, e.correlation_id,
                {Header.SENDER: e.sender, Header.RESOURCE: e.resource, Header.VERSION: e.version} if headers else {},
            )
            for e in envelopes
        ]
        assert publish_confirmed(broker, broker.channel(), messages) == [None] * len(messages)
    finally:
        broker.close()


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.05)


def inbox_ids(context: Context, department: str) -> list[str]:
    """Message ids in a department's inbox, in arrival order (duplicates would show)."""
    with context.engine.connect() as conn:
        return list(
            conn.execute(
                select(inbox.c.message_id).where(inbox.c.department == department).order_by(inbox.c.id)
            ).scalars()
        )


@contextlib.contextmanager
def polling(context: Context, adapter: Adapter) -> Iterator[None]:
    """Run an inbound adapter as `govbus adapters run` does, in a thread, for the block."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_inbound([adapter], context, stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
    if errors:
        raise errors[0]
