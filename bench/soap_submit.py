"""BENCH soap-submit: Submit through the SOAP gateway, against a bare spyne echo service on the same server.

The server is one process, built as `govbus serve` builds its HTTP side: the platform's
FastAPI app (`bus.http.create_app`; the gateway's `govbus.http` entry point adds
/soap/exchange) on uvicorn with `serve_http`'s settings, on RabbitMQ (a scratch vhost) and
PostgreSQL (a scratch database), with the sample routing table (tests/data/routes.toml: GA
provides GA-001) and a gateway credential for GA. Beside it at /bench/echo, added as the
gateway adds itself (a route to a2wsgi's WSGIMiddleware, 16 threads), is the baseline: a bare
spyne 2.14 service `Echo(envelope: string) -> string`, document/literal SOAP 1.1, requests
validated by lxml as the gateway's are. The heap is settled as the stages of `govbus serve`
settle it once connected. The stages do not run: a Submit ends when the broker has confirmed
the publish to the ingress queue, which must hold every accepted envelope at the end.

The clients run here, each sequentially on one keep-alive connection, after a warm-up, with a
distinct person envelope of about 2 KB (a distinct message id) per call:
- http.client posts a hand-built SOAP 1.1 request, as old systems do; a Submit carries a fresh
  WS-Security UsernameToken (PasswordDigest, new nonce and created time), an Echo the same
  body without the security header;
- zeep: `Client(wsdl, wsse=UsernameToken(..., use_digest=True)).service.Submit(envelope=...)`
  against `Client(echo_wsdl).service.Echo(envelope=...)`, both WSDLs fetched over HTTP.

A line's ratio is the Submit rate over the Echo rate of the same client in the same round;
rounds alternate which goes first, and the line shows the round with the median ratio, the
latencies of every round, and CPU time per call of the server process (all threads) and of
the client: the rest of the wall time is waiting, for the broker and the database above all.
`confirm_p50_ms` is one persistent publish to a quorum queue waiting for its confirm, through
the bus's publisher, timed in each round; `bound_one_confirm` is the ratio a Submit would reach
if it added nothing to an Echo but that wait. `--profile` runs the server under cProfile
(slower: its rates are not comparable) and prints each side's hot spots.

    python -m bench.soap_submit [-n 500] [--zeep-n 200] [--rounds 9] [--profile]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import hashlib
import http.client
import io
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pika
from lxml import etree

from bench.common import bench_line, percentile, person_messages, scratch_database, scratch_vhost
from bus.broker import Broker, publish_confirmed
from bus.names import Names

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ROOT / "tests" / "data" / "routes.toml"
PREFIX = "bench"
DEPARTMENT = "GA"  # provides GA-001 in the sample routing table
GATEWAY_PATH = "/soap/exchange"
ECHO_PATH = "/bench/echo"
ECHO_NS = "urn:zhuhai:govbus:bench:echo"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XS_NS = "http://www.w3.org/2001/XMLSchema"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
_BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-soap-message-security-1.0#Base64Binary"
_TICK = os.sysconf("SC_CLK_TCK")

# -- the server (its own process, so that it does not share the clients' GIL) ---------------------


def echo_application() -> Any:
    """The baseline: a spyne WSGI application whose one operation returns its argument."""
    from spyne import Application, Unicode, rpc
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication
    from spyne.service import ServiceBase

    class EchoService(ServiceBase):
        @rpc(Unicode, _returns=Unicode)
        def Echo(ctx: Any, envelope: str | None) -> str | None:  # noqa: N802,N805
            return envelope

    return WsgiApplication(Application([EchoService], tns=ECHO_NS, name="EchoService",
                                       in_protocol=Soap11(validator="lxml"), out_protocol=Soap11()))


class ThreadProfiles:
    """cProfile for a WSGI application run in a2wsgi's threads: one profiler per thread,
    enabled while the application runs, merged at the end."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def profiled(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            profile = getattr(self._local, "profile", None)
            if profile is None:
                profile = self._local.profile = cProfile.Profile()
                with self._lock:
                    self._all.append(profile)
            profile.enable()
            try:
                return list(app(environ, start_response))  # the body is made inside the profile
            finally:
                profile.disable()
        return profiled

    def dump(self, path: Path) -> None:
        with self._lock:
            if self._all:
                stats = pstats.Stats(self._all[0])
                for more in self._all[1:]:
                    stats.add(more)
                stats.dump_stats(str(path))


def serve(port: int, secret_file: Path, profile_dir: Path | None) -> None:
    """The server process, configured by GOVBUS_* variables: open the context (migrations),
    declare the topology, store GA's gateway secret, build the platform's app and the echo
    beside it, serve until SIGTERM; with `profile_dir`, write the profiles there then."""
    import warnings

    warnings.simplefilter("ignore")  # spyne 2.14 on 3.11: deprecation noise only
    import uvicorn
    from a2wsgi import WSGIMiddleware

    from adapters.gateway.credentials import CredentialStore
    from bus.app import open_context
    from bus.config import Settings
    from bus.http import create_app
    from bus.worker import settle_heap

    settings = Settings.from_env()
    context = open_context(settings)
    broker = Broker(settings.broker_url)
    broker.connect()
    try:
        context.declare(broker)
    finally:
        broker.close()
    CredentialStore(context.engine, settings.data_dir).set(DEPARTMENT, secret_file.read_text().strip(), "bench")
    app = create_app(context)
    app.add_route(ECHO_PATH, WSGIMiddleware(echo_application(), workers=16), methods=["GET", "POST"],
                  include_in_schema=False)

    loop_profile, threads = cProfile.Profile(), {"submit": ThreadProfiles(), "echo": ThreadProfiles()}
    if profile_dir is not None:
        wrapped: set[int] = set()
        for route in app.routes:
            middleware = getattr(route, "app", None)
            if isinstance(middleware, WSGIMiddleware) and id(middleware) not in wrapped:
                wrapped.add(id(middleware))  # the gateway's SOAP 1.1 and 1.2 paths share one
                middleware.app = threads["echo" if getattr(route, "path", "") == ECHO_PATH else "submit"].wrap(middleware.app)
        loop_profile.enable()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
    # What `govbus serve`'s stages do once connected. Without it, the full collection spyne
    # forces after a call, once a second, takes ~100 ms over this process's heap.
    settle_heap()
    # uvicorn takes SIGTERM while it runs, then restores the handler it found and raises the
    # signal again: with a handler of ours, this process goes on to write its profiles.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn.Server(config).run()
    if profile_dir is not None:
        loop_profile.disable()
        loop_profile.dump_stats(str(profile_dir / "loop.pstats"))
        for side, profiles in threads.items():
            profiles.dump(profile_dir / f"{side}.pstats")
    context.engine.dispose()


@dataclass
class Server:
    """The running server process, and the secret GA signs with."""

    process: subprocess.Popen[bytes]
    base: str
    secret: str
    folder: Path

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server process ended with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /health within {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server process so far, all threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK


@contextlib.contextmanager
def server(url: str, database: str, folder: Path, profile: bool) -> Iterator[Server]:
    """Start the server process on a free port, its files in `folder`; yields it once /health
    answers; stops it on the way out (a profiled server writes its profiles then)."""
    secret = base64.urlsafe_b64encode(os.urandom(24)).decode()
    secret_file = folder / "secret.txt"
    secret_file.write_text(secret)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GOVBUS_BROKER_URL": url, "GOVBUS_DATABASE_URL": database, "GOVBUS_ROUTES": str(ROUTES),
           "GOVBUS_PREFIX": PREFIX, "GOVBUS_DATA_DIR": str(folder / "data")}
    command = [sys.executable, "-m", "bench.soap_submit", "--serve", str(port), "--secret-file", str(secret_file)]
    if profile:
        command += ["--profile-dir", str(folder)]
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        running = Server(process, f"http://127.0.0.1:{port}", secret, folder)
        try:
            running.wait_ready(timeout=60)
            yield running
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


# -- the clients: each call returns None when it got what it asked for, else what it got ---------


def usernametoken(username: str, secret: str) -> str:
    """A wsse:Security header with a fresh PasswordDigest UsernameToken."""
    nonce = os.urandom(16)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + secret.encode()).digest()).decode()
    return (
        f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}" soapenv:mustUnderstand="1">'
        f"<wsse:UsernameToken><wsse:Username>{username}</wsse:Username>"
        f'<wsse:Password Type="{_DIGEST}">{digest}</wsse:Password>'
        f'<wsse:Nonce EncodingType="{_BASE64}">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


def soap_request(namespace: str, operation: str, text: str, header: str = "") -> bytes:
    """A SOAP 1.1 document/literal request with the one string argument `envelope`."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<soapenv:Envelope xmlns:soapenv="{SOAP_NS}" xmlns:o="{namespace}">'
        f"<soapenv:Header>{header}</soapenv:Header><soapenv:Body><o:{operation}><o:envelope>{escape(text)}"
        f"</o:envelope></o:{operation}></soapenv:Body></soapenv:Envelope>"
    ).encode()


def check_receipt(status: int, root: etree._Element, message_id: str) -> str | None:
    """None when the SOAP response is a receipt accepting `message_id`, else what it is."""
    if status != 200 or root.find(f".//{{{SOAP_NS}}}Fault") is not None:
        return f"HTTP {status}: " + " ".join(t.strip() for t in root.itertext() if t.strip())[:300]
    texts = {etree.QName(e).localname: (e.text or "").strip() for e in root.iter() if isinstance(e.tag, str)}
    if texts.get("accepted") not in ("true", "1") or texts.get("messageId") != message_id:
        return f"not a receipt accepting {message_id}: {texts}"
    return None


class RawClient:
    """http.client on one keep-alive connection, posting hand-built SOAP 1.1 requests."""

    def __init__(self, base: str, secret: str, submit_ns: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.secret = secret
        self.submit_ns = submit_ns

    def _post(self, path: str, action: str, body: bytes) -> tuple[int, etree._Element]:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
        try:
            self.connection.request("POST", path, body, headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError):  # idle past uvicorn's keep-alive (5 s): not read
            self.connection.close()
            self.connection.request("POST", path, body, headers)
            response = self.connection.getresponse()
        return response.status, etree.fromstring(response.read())

    def echo(self, text: str, message_id: str) -> str | None:
        status, root = self._post(ECHO_PATH, "Echo", soap_request(ECHO_NS, "Echo", text))
        answer = root.findtext(f".//{{{ECHO_NS}}}EchoResult")
        return None if status == 200 and answer and message_id in answer else f"HTTP {status}: {answer!r:.300}"

    def submit(self, text: str, message_id: str) -> str | None:
        body = soap_request(self.submit_ns, "Submit", text, usernametoken(DEPARTMENT, self.secret))
        return check_receipt(*self._post(GATEWAY_PATH, "Submit", body), message_id)

    def close(self) -> None:
        self.connection.close()


class ZeepClient:
    """zeep clients made from the WSDLs over HTTP, as a department's integrator makes them."""

    def __init__(self, base: str, secret: str) -> None:
        from zeep import Client
        from zeep.wsse.username import UsernameToken

        self.gateway = Client(base + GATEWAY_PATH + "?wsdl", wsse=UsernameToken(DEPARTMENT, secret, use_digest=True))
        self.echo_client = Client(base + ECHO_PATH + "?wsdl")

    def echo(self, text: str, message_id: str) -> str | None:
        answer = self.echo_client.service.Echo(envelope=text)
        return None if answer and message_id in answer else f"unexpected echo {str(answer)[:200]!r}"

    def submit(self, text: str, message_id: str) -> str | None:
        from zeep.exceptions import Fault

        try:
            receipt = self.gateway.service.Submit(envelope=text)
        except Fault as fault:
            return f"fault {fault.code}: {fault.message}"[:300]
        if not receipt.accepted or receipt.messageId != message_id:
            return f"not a receipt accepting {message_id}: {receipt}"
        return None

    def close(self) -> None:
        self.gateway.transport.session.close()
        self.echo_client.transport.session.close()


@dataclass
class Segment:
    """One timed run of sequential calls of one kind."""

    calls: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float
    client_cpu_s: float
    faults: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def run_segment(call: Callable[[str, str], str | None], work: list[tuple[str, str]], server: Server) -> Segment:
    latencies, faults = [], []
    cpu, client = server.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    for text, message_id in work:
        begin = time.perf_counter()
        problem = call(text, message_id)
        latencies.append((time.perf_counter() - begin) * 1000)
        if problem:
            faults.append(problem)
    seconds = time.perf_counter() - start
    return Segment(len(work), seconds, latencies, server.cpu_seconds() - cpu, time.process_time() - client, faults)


def read_submit_namespace(base: str) -> str:
    """The namespace of the gateway's Submit element, from its WSDL."""
    with urllib.request.urlopen(base + GATEWAY_PATH + "?wsdl", timeout=30) as response:
        wsdl = etree.fromstring(response.read())
    for schema in wsdl.iter(f"{{{XS_NS}}}schema"):
        if schema.find(f"{{{XS_NS}}}element[@name='Submit']") is not None:
            return str(schema.get("targetNamespace"))
    raise RuntimeError(f"no Submit element in the WSDL at {base}{GATEWAY_PATH}?wsdl")


# -- the run ----------------------------------------------------------------------------------------


class ConfirmProbe:
    """One persistent message at a time to a quorum queue of its own, waiting for the broker's
    confirm, through the bus's publisher as the gateway's: the floor under a Submit's wait."""

    NAME = "bench.confirm-probe"

    def __init__(self, url: str) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = connection.channel()
            channel.exchange_declare(self.NAME, "direct", durable=True)
            channel.queue_declare(self.NAME, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(self.NAME, self.NAME, routing_key="k")
        finally:
            connection.close()
        self.broker = Broker(url)
        self.broker.connect()
        self.channel = self.broker.channel()

    def run(self, bodies: list[bytes]) -> list[float]:
        """Milliseconds per publish and confirm."""
        out = []
        for body in bodies:
            begin = time.perf_counter()
            refused = publish_confirmed(self.broker, self.channel, [(self.NAME, "k", body, str(uuid.uuid4()), None, {})])
            out.append((time.perf_counter() - begin) * 1000)
            if refused != [None]:
                raise RuntimeError(f"the broker refused the confirm probe's publish: {refused[0]}")
        return out

    def close(self) -> None:
        self.broker.close()


def ingress_depth(url: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(Names(PREFIX).ingress_queue(), passive=True).method.message_count
    finally:
        connection.close()


Segments = dict[tuple[str, str], list[Segment]]


def measure(clients: dict[str, int], rounds: int, warmup: int, folder: Path, profile: bool) -> tuple[Segments, list[float], int]:
    """Run the server; time each client's Echo and Submit segments, alternating, and the
    confirm probe in each round. Returns the segments, the probe's times (ms) and the number
    of accepted Submits, every one of them found in the ingress queue.

    Raises:
        RuntimeError: the server does not start, a call fails in the warm-up, or the ingress
            queue does not hold exactly the accepted envelopes.
    """
    probes = 100
    pool = iter(person_messages(probes + sum(2 * (warmup + rounds * n) for n in clients.values())))

    def work(count: int) -> list[tuple[str, str]]:  # fresh envelopes (and message ids), as text
        return [(e.body.decode(), e.message_id) for e in (next(pool) for _ in range(count))]

    segments: Segments = {(c, s): [] for c in clients for s in ("echo", "submit")}
    confirms: list[float] = []
    accepted = 0
    with scratch_vhost() as url, scratch_database() as database, server(url, database, folder, profile) as running:
        made = {"http.client": RawClient(running.base, running.secret, read_submit_namespace(running.base)),
                "zeep": ZeepClient(running.base, running.secret)}
        probe = ConfirmProbe(url)
        probe_bodies = [text.encode() for text, _ in work(probes)]
        try:
            probe.run(probe_bodies[:20])
            for name in clients:
                for side in ("echo", "submit"):
                    warm = run_segment(getattr(made[name], side), work(warmup), running)
                    if warm.faults:
                        raise RuntimeError(f"{name} {side} fails in the warm-up: {warm.faults[0]}\n{running.log()}")
                    accepted += warm.calls if side == "submit" else 0
            for r in range(rounds):
                for name, count in clients.items():
                    for side in ("echo", "submit") if r % 2 == 0 else ("submit", "echo"):
                        segment = run_segment(getattr(made[name], side), work(count), running)
                        segments[name, side].append(segment)
                        accepted += segment.calls - len(segment.faults) if side == "submit" else 0
                confirms += probe.run(probe_bodies)
        finally:
            probe.close()
            for client in made.values():
                client.close()
        depth = ingress_depth(url)
        if depth != accepted:
            raise RuntimeError(f"{accepted} Submits were accepted, but the ingress queue holds {depth} messages")
    return segments, confirms, accepted


def report(name: str, submit: list[Segment], echo: list[Segment], confirms: list[float], in_ingress: int) -> str:
    """The line of one client: the round with the median ratio; latencies over every round."""
    ratios = [s.rate / e.rate for s, e in zip(submit, echo)]
    median = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    s, e = submit[median], echo[median]
    latencies = [x for seg in submit for x in seg.latencies_ms]
    echo_latencies = [x for seg in echo for x in seg.latencies_ms]
    faults = [f for seg in submit + echo for f in seg.faults]
    if faults:
        print(f"# {name}: {len(faults)} faults, the first: {faults[0]}", file=sys.stderr, flush=True)
    confirm_ms = percentile(confirms, 50)
    return bench_line(
        "soap-submit", ratios[median], ">=0.8", client=name, govbus_calls_s=f"{s.rate:.0f}",
        echo_calls_s=f"{e.rate:.0f}", n=s.calls, rounds=len(ratios), ratio_range=f"{min(ratios):.2f}-{max(ratios):.2f}",
        faults=len(faults), p50_ms=f"{percentile(latencies, 50):.2f}", p99_ms=f"{percentile(latencies, 99):.2f}",
        echo_p50_ms=f"{percentile(echo_latencies, 50):.2f}", echo_p99_ms=f"{percentile(echo_latencies, 99):.2f}",
        server_cpu_ms=f"{s.server_cpu_s / s.calls * 1000:.2f}", echo_server_cpu_ms=f"{e.server_cpu_s / e.calls * 1000:.2f}",
        client_cpu_ms=f"{s.client_cpu_s / s.calls * 1000:.2f}", echo_client_cpu_ms=f"{e.client_cpu_s / e.calls * 1000:.2f}",
        confirm_p50_ms=f"{confirm_ms:.2f}", bound_one_confirm=f"{1 / (1 + confirm_ms * e.rate / 1000):.2f}",
        size="2KB", in_ingress=in_ingress, submit_ends="broker-confirm(stages-off)", server="uvicorn+a2wsgi+spyne",
    )


def top_functions(path: Path, limit: int) -> list[str]:
    """The `limit` functions with the most own time in a pstats file, as comment lines."""
    if not path.exists():
        return [f"# (no profile at {path})"]
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return ["# " + line for line in lines[start:] if line.strip()]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="http.client calls per segment (default 500)")
    parser.add_argument("--zeep-n", type=int, default=200, help="zeep calls per segment (default 200)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of Echo and Submit per client (default 9)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls of each kind first (default 50)")
    parser.add_argument("--profile", action="store_true", help="run the server under cProfile and print its hot spots")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--secret-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.secret_file, args.profile_dir)
        return ""
    clients = {"http.client": args.n, "zeep": args.zeep_n}
    with tempfile.TemporaryDirectory(prefix="govbus-bench-soap-") as folder:
        segments, confirms, in_ingress = measure(clients, args.rounds, args.warmup, Path(folder), args.profile)
        lines = [report(c, segments[c, "submit"], segments[c, "echo"], confirms, in_ingress) for c in clients]
        if args.profile:
            for side, what in (("submit", "WSGI threads"), ("echo", "WSGI threads"),
                               ("loop", "event loop: uvicorn, h11, FastAPI, a2wsgi")):
                print(f"# server profile, {side} ({what})", flush=True)
                print("\n".join(top_functions(Path(folder) / f"{side}.pstats", 25)), flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
