"""A fake department service for the SOAP client adapters' tests: spyne on waitress, run as
its own process, so that the test process never imports spyne (it breaks on Python 3.12+;
the contract tests talk to it with zeep only, as the platform does).

    python tests/department_service.py --port 8123 --received received.jsonl \
        [--mode ok|fault|busy] [--fault-marker 拒收] [--changes changes.jsonl] [--changes-delay 0.3]

Operations (document/literal, SOAP 1.1, namespace urn:zhuhai:govbus:test:department; WSDL at
http://127.0.0.1:PORT/?wsdl):

- `Receive(envelope, messageId) -> "ok"`: appends one JSON line {"messageId", "envelope"} to
  the `--received` file for every call it accepts, repeats included, so that a test sees
  every delivery, with the WS-Security UsernameToken's user name and password type if the
  call had one (not checked). In `--mode fault` an envelope containing the marker is answered with a
  SOAP Fault (code Client.Refused) and not recorded. In `--mode busy` every POST is answered
  HTTP 503 without a SOAP body, as an overloaded proxy would; the WSDL is still served.
- `GetChanges(since, max) -> [Change(envelope, watermark)]`: the records of the `--changes`
  file (JSON lines {"watermark", "envelope"}) whose watermark sorts after `since` (all when
  `since` is empty), in watermark order, at most `max`; each call takes `--changes-delay`
  seconds, so that a test can stop a puller between two batches.

Tests import `DepartmentProcess` from here to run it; that import does not load spyne.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

NAMESPACE = "urn:zhuhai:govbus:test:department"
FAULT_MARKER = "拒收"


class Options:
    """What the command line asked for; read by the operations."""

    mode = "ok"
    fault_marker = FAULT_MARKER
    received: Path = Path("received.jsonl")
    changes: Path | None = None
    changes_delay = 0.0


_write_lock = threading.Lock()


def _read_changes() -> list[dict[str, str]]:
    if Options.changes is None or not Options.changes.exists():
        return []
    with Options.changes.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _username_token(body: bytes) -> dict[str, str]:
    """The WS-Security UsernameToken's user name and password type, if the request has one
    (recorded, not checked: the tests look at what the client sent)."""
    found: dict[str, str] = {}
    user = re.search(rb"<(?:\w+:)?Username>([^<]*)</", body)
    password = re.search(rb"<(?:\w+:)?Password\b[^>]*Type=\"[^\"#]*#(\w+)\"", body)
    if user:
        found["username"] = user.group(1).decode()
    if password:
        found["passwordType"] = password.group(1).decode()
    return found


def make_app() -> Callable[..., Any]:
    """The WSGI application. spyne is imported here, in the service's own process only."""
    import warnings

    warnings.simplefilter("ignore")  # spyne 2.14 on 3.11: deprecation noise only
    from spyne import Application, ComplexModel, Integer, Unicode, rpc
    from spyne import Iterable as SpyneIterable
    from spyne.model.fault import Fault
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication
    from spyne.service import ServiceBase

    class Change(ComplexModel):  # type: ignore[misc]
        __namespace__ = NAMESPACE
        envelope = Unicode
        watermark = Unicode

    class DepartmentService(ServiceBase):  # type: ignore[misc]
        @rpc(Unicode, Unicode, _returns=Unicode, _in_variable_names={"message_id": "messageId"})
        def Receive(ctx: Any, envelope: str | None, message_id: str | None) -> str:  # noqa: N802,N805
            if Options.mode == "fault" and envelope and Options.fault_marker in envelope:
                raise Fault(faultcode="Client.Refused", faultstring=f"部门系统拒收: 记录含有{Options.fault_marker}")
            record = {"messageId": message_id, "envelope": envelope, **ctx.transport.req_env.get("test.wsse", {})}
            with _write_lock, Options.received.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            return "ok"

        @rpc(Unicode, Integer, _returns=SpyneIterable(Change), _in_variable_names={"max_": "max"})
        def GetChanges(ctx: Any, since: str | None, max_: int | None) -> Iterable[Any]:  # noqa: N802,N805
            if Options.changes_delay:
                time.sleep(Options.changes_delay)
            after = sorted((r for r in _read_changes() if not since or r["watermark"] > since), key=lambda r: r["watermark"])
            return [Change(envelope=r["envelope"], watermark=r["watermark"]) for r in after[: max_ or 100]]

    application = Application(
        [DepartmentService], tns=NAMESPACE, name="DepartmentService",
        in_protocol=Soap11(validator="lxml"), out_protocol=Soap11(),
    )
    soap = WsgiApplication(application)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST":
            return soap(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if Options.mode == "busy":
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"service unavailable"]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["test.wsse"] = _username_token(body)
        return soap(environ, start_response)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake department SOAP service for tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--received", type=Path, required=True, help="JSON lines file of accepted Receive calls")
    parser.add_argument("--mode", choices=("ok", "fault", "busy"), default="ok")
    parser.add_argument("--fault-marker", default=FAULT_MARKER)
    parser.add_argument("--changes", type=Path, help="JSON lines file of the records GetChanges serves")
    parser.add_argument("--changes-delay", type=float, default=0.0, help="seconds each GetChanges call takes")
    args = parser.parse_args(argv)
    Options.mode, Options.fault_marker, Options.received = args.mode, args.fault_marker, args.received
    Options.changes, Options.changes_delay = args.changes, args.changes_delay
    import waitress

    waitress.serve(make_app(), host="127.0.0.1", port=args.port, threads=4, _quiet=True)
    return 0


# -- for the tests ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DepartmentProcess:
    """The fake service in a subprocess: start, stop (kill, as an outage) and start again on
    the same port; what it received."""

    def __init__(self, workdir: Path, *, mode: str = "ok", changes: Path | None = None, changes_delay: float = 0.0) -> None:
        self.port = free_port()
        self.received_file = workdir / f"received-{self.port}.jsonl"
        self.log_file = workdir / f"service-{self.port}.log"
        self.args = ["--port", str(self.port), "--received", str(self.received_file), "--mode", mode]
        if changes is not None:
            self.args += ["--changes", str(changes), "--changes-delay", str(changes_delay)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def wsdl(self) -> str:
        return f"http://127.0.0.1:{self.port}/?wsdl"

    def start(self, timeout: float = 20.0) -> None:
        """Start the service and wait until it serves its WSDL.

        Raises:
            RuntimeError: it exited or did not answer in time (with its log).
        """
        assert self.process is None, "already running"
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, __file__, *self.args], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"department service exited at start:\n{self.log_file.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(self.wsdl, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                log = self.log_file.read_text(errors="replace")
                raise RuntimeError(f"department service did not answer in {timeout:.0f}s:\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Kill the service at once, as a crash or an outage would."""
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def received(self) -> list[dict[str, str]]:
        """Every accepted Receive call, in order, repeats included."""
        if not self.received_file.exists():
            return []
        with self.received_file.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.endswith("\n")]

    def __enter__(self) -> DepartmentProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
