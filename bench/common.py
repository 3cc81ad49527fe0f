"""What the benchmarks share: a scratch vhost and database, 2 KB person messages, the output line."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

import pika
import psycopg
from sqlalchemy import create_engine, text

from bus.broker import Broker, publish_confirmed
from bus.envelope import Envelope, build_envelope
from bus.names import Header

MANAGEMENT = "http://127.0.0.1:15672/api"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).resolve().parent
# One provider, one subscriber: the two hops a raw relay makes too.
ROUTES = """
[departments.GA]
name = "市公安局"
[departments.MZ]
name = "市民政局"
[resources."GA-001"]
name = "户籍人口信息"
provider = "GA"
specification = "person"
[[subscriptions]]
resource = "GA-001"
subscriber = "MZ"
"""


def _management(method: str, path: str, body: object | None = None) -> None:
    request = urllib.request.Request(
        MANAGEMENT + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(), "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).read()


@contextlib.contextmanager
def scratch_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost; yields its amqp:// URL."""
    name = f"govbus-bench-{uuid.uuid4().hex[:8]}"
    _management("PUT", f"/vhosts/{quote(name, safe='')}")
    _management("PUT", f"/permissions/{quote(name, safe='')}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{quote(name, safe='')}"
    finally:
        _management("DELETE", f"/vhosts/{quote(name, safe='')}")


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh PostgreSQL database; yields its SQLAlchemy URL."""
    name = f"govbus_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_STREETS = ["凤凰北路", "情侣中路", "迎宾南路", "井岸镇江湾路", "三灶镇机场西路", "白蕉镇新城大道", "拱北粤海东路"]


def _id_number(rng: random.Random) -> str:
    body = f"{rng.choice(['440402', '440403', '440404'])}{rng.randint(1940, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS)) % 11]


def person_messages(n: int, size: int = 2048, seed: int = 7) -> list[Envelope]:
    """`n` valid, distinct person envelopes from GA of about `size` bytes each, pretty-printed
    as department systems send them, the address and a source note making up the size."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        address = f"广东省珠海市香洲区{rng.choice(_STREETS)}{rng.randint(1, 999)}号{rng.randint(1, 30)}栋{rng.randint(101, 3201)}房"
        fields = [
            ("IdNumber", _id_number(rng)), ("Name", rng.choice("陈林黄李张王周吴") + rng.choice(["志强", "丽娟", "国华", "雨萱", "建军", "晓梅"])),
            ("Sex", rng.choice("12")), ("BirthDate", f"{rng.randint(1940, 2010)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"),
            ("Ethnicity", f"{rng.choice([1, 1, 1, 3, 8, 11]):02d}"), ("Division", rng.choice(["440402", "440403", "440404"])),
            ("Address", address), ("Phone", f"139{rng.randint(10000000, 99999999)}"),
            ("MaritalStatus", rng.choice(["10", "20", "21", "30", "40"])), ("RecordUpdatedAt", "2026-11-20T10:15:00+08:00"),
        ]
        lines = ['    <p:Person xmlns:p="urn:zhuhai:govbus:person">']
        lines += [f"      <p:{k}>{escape(v)}</p:{k}>" for k, v in fields]
        lines.append("    </p:Person>")
        payload = "\n".join(lines).encode()
        env = build_envelope("GA", "GA-001", "1.0", payload)
        pad = size - len(env.body) - len("<!--  -->\n    ")
        if pad > 0:  # a source-system note, as exports often carry
            note = ("来源：市公安局人口信息管理系统增量导出 " * 40).encode()[:pad]
            note = note.decode("utf-8", "ignore").encode()
            payload = payload.replace(b"<p:Person", b"<!-- " + note + b" -->\n    <p:Person", 1)
            env = build_envelope("GA", "GA-001", "1.0", payload)
        out.append(env)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_line(name: str, ratio: float, target: str, **details: object) -> str:
    text = " ".join(f"{k}={v}" for k, v in details.items())
    line = f"BENCH {name} ratio={ratio:.3g} target={target} {text}"
    print(line, flush=True)
    return line



# -- processes: govbus workers, and the raw pika baseline ---------------------------------

GOVBUS = str(Path(sys.executable).with_name("govbus"))
RAW = [sys.executable, "-m", "bench.raw_relay"]


def publish_all(url: str, exchange: str, routing_key: str, envelopes: list[Envelope], chunk: int = 2000) -> None:
    """Publish persistently with pipelined confirms, as a department system would."""
    broker = Broker(url)
    broker.connect()
    channel = broker.channel()
    try:
        for i in range(0, len(envelopes), chunk):
            batch = [
                (exchange, routing_key, e.body, e.message_id, None,
                 {Header.SENDER: e.sender, Header.RESOURCE: e.resource, Header.VERSION: e.version})
                for e in envelopes[i : i + chunk]
            ]
            failures = [f for f in publish_confirmed(broker, channel, batch) if f]
            if failures:
                raise RuntimeError(f"publish refused: {failures[0]}")
    finally:
        broker.close()


class GovbusRun:
    """govbus on RabbitMQ and PostgreSQL: one worker process per stage, as in production."""

    def __init__(self, url: str, database: str, stages: tuple[str, ...] = ("ingress", "router", "deliver"), **env: str) -> None:
        self.folder = tempfile.mkdtemp(prefix="govbus-bench-")
        routes = Path(self.folder) / "routes.toml"
        routes.write_text(ROUTES, encoding="utf-8")
        self.env = {**os.environ, "GOVBUS_BROKER_URL": url, "GOVBUS_DATABASE_URL": database,
                    "GOVBUS_ROUTES": str(routes), "GOVBUS_PREFIX": "bench", **env}
        self.url = url
        self.stages = stages
        self.engine = create_engine(database)
        self.processes: list[subprocess.Popen[bytes]] = []

    def declare(self) -> None:
        subprocess.run([GOVBUS, "topology", "declare"], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        for stage in self.stages:
            self.processes.append(subprocess.Popen(
                [GOVBUS, "worker", "--stage", stage], env=self.env, stdout=subprocess.DEVNULL,
                stderr=open(Path(self.folder) / f"{stage}.log", "wb"),
            ))

    def delivered(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("select count(*) from inbox")).scalar_one()

    def arrival_times(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("select message_id, delivered_at from inbox")).all()
        return {m: t.timestamp() for m, t in rows}

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.delivered() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"govbus delivered {self.delivered()} of {count} in {timeout:.0f}s; logs in {self.folder}")
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a govbus worker died; logs in {self.folder}")
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.processes:
            p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.engine.dispose()


class RawRun:
    """The raw baseline: the same two hops between quorum queues, by pika relays."""

    QUEUES = ("raw.in", "raw.mid", "raw.out")

    def __init__(self, url: str) -> None:
        self.url = url
        self.output = tempfile.mktemp(prefix="govbus-bench-raw-", suffix=".json")
        self.processes: list[subprocess.Popen[bytes]] = []

    def declare(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        for queue in self.QUEUES:
            channel.exchange_declare(queue, "direct", durable=True)
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(queue, queue, routing_key="k")
        connection.close()

    def start(self, count: int) -> None:
        self.processes = [
            subprocess.Popen([*RAW, "relay", self.url, "raw.in", "raw.mid", "k"], cwd=HERE.parent),
            subprocess.Popen([*RAW, "relay", self.url, "raw.mid", "raw.out", "k"], cwd=HERE.parent),
            subprocess.Popen([*RAW, "sink", self.url, "raw.out", str(count), self.output], cwd=HERE.parent),
        ]

    def wait(self, timeout: float) -> dict[str, float]:
        self.processes[2].wait(timeout)
        with open(self.output) as f:
            return json.load(f)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
