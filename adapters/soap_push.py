"""`soap_push`: delivers a department's messages to an operation of its own SOAP service, with zeep.

Set on a subscribing department (routes TOML, or the catalogue):

    [departments.MZ]
    outbound = "soap_push"
    [departments.MZ.settings]
    wsdl = "http://10.20.0.5:8080/exchange?wsdl"
    operation = "Receive"
    envelope_parameter = "envelope"          # receives the envelope XML as text
    message_id_parameter = "messageId"       # receives the message id: deduplicate by it

Each message is one call of `operation`, with the whole envelope document as a string (an
XML declaration is left out: it described the bytes, and a string with one cannot be parsed
by lxml and many other parsers) and, with `message_id_parameter`, the message id.

What becomes of a call:
- an answer that is not a SOAP Fault: delivered;
- a SOAP Fault: the department refused the message, and would refuse it again: it is
  dead-lettered at once as `department_fault`, with the fault code and text;
- the service cannot be reached, does not answer within `timeout`, or answers HTTP 5xx (or
  anything that is not SOAP) without a fault: tried again `attempts` times within the call,
  with exponential backoff, then `TransientError`, so the worker retries the message later
  on its retry policy and dead-letters it when that is spent. The rest of the batch is not
  tried while the service is down: it is retried with it;
- HTTP 4xx (other than 408 and 429) without a fault, or an envelope that the operation's
  schema refuses: dead-lettered as `department_refused`.

Idempotency: the bus delivers at least once. After a crash or a lost answer (a timeout after
the department stored the message) the same message comes again, with the same message id;
set `message_id_parameter` and have the department's service drop a message id it has
already stored. Without it, the department may store a message twice.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import requests
import zeep
import zeep.exceptions
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from bus.envelope import Envelope
from bus.errors import BusError, ConfigError, TransientError
from bus.routing import Department

from adapters.base import Health, OutboundAdapter, Setting

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.adapters")


class DepartmentFault(BusError):
    """The department's service answered with a SOAP Fault: it refuses this message."""

    code = "department_fault"


class DepartmentRefused(BusError):
    """The department's service refused the call without a fault (HTTP 4xx), or the message
    does not fit the operation's parameters."""

    code = "department_refused"


# Settings of a zeep client of a department's service, shared by soap_push and soap_pull.
CLIENT_SETTINGS: tuple[Setting, ...] = (
    Setting("wsdl", "URL of the department service's WSDL, read when the adapter starts", kind="url"),
    Setting("operation", "the operation to call, as the WSDL names it"),
    Setting("endpoint", "address to call instead of the one in the WSDL (e.g. behind a proxy)", kind="url", required=False),
    Setting("timeout", "seconds to wait for the WSDL and for each answer", kind="float", required=False, default=10.0),
    Setting("username", "WS-Security UsernameToken user name, if the service asks for one", required=False),
    Setting("password", "WS-Security UsernameToken password (with username)", required=False, secret=True),
    Setting("password_digest", "send the password as a PasswordDigest with nonce and created time (else as text)",
            kind="bool", required=False, default=True),
)

_RETRY_STATUSES = (408, 429)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()]+)")


def _transient(exc: BaseException) -> bool:
    """Whether a failed call may well succeed later: the service was unreachable, slow, or
    answered without SOAP (HTTP 5xx, a proxy's error page)."""
    if isinstance(exc, requests.RequestException):
        return True
    if isinstance(exc, zeep.exceptions.TransportError):
        status = exc.status_code or 0
        return not 400 <= status < 500 or status in _RETRY_STATUSES
    return isinstance(exc, zeep.exceptions.XMLSyntaxError)


def _describe(exc: BaseException, timeout: float) -> str:
    """A short text for a transport failure (requests' own texts run to several lines)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, zeep.exceptions.TransportError):
        return f"HTTP {exc.status_code} without a SOAP answer" if exc.status_code != 200 else "an answer that is not SOAP"
    if isinstance(exc, zeep.exceptions.XMLSyntaxError):
        return f"an answer that is not SOAP ({exc.message})"
    found = _ERRNO.search(str(exc))
    return found.group(1).strip() if found else f"{type(exc).__name__}: {str(exc)[:200]}"


def _fault_text(fault: zeep.exceptions.Fault) -> str:
    text = f"{fault.code or 'no code'}: {fault.message or 'no text'}"
    if fault.detail is not None:
        detail = " ".join("".join(fault.detail.itertext()).split())
        if detail:
            text += f" ({detail[:500]})"
    return text


class SoapService:
    """One operation of a department's SOAP service, called through zeep.

    `open` reads the WSDL and checks the operation and its parameters; `call` calls it,
    retrying transport failures quickly, and turns every failure into a bus error.
    """

    def __init__(self, where: str, config: dict[str, Any], *, attempts: int = 1) -> None:
        self.where = where
        self.wsdl: str = config["wsdl"]
        self.operation: str = config["operation"]
        self.endpoint: str | None = config["endpoint"]
        self.timeout: float = config["timeout"]
        self.username: str | None = config["username"]
        self.password: str | None = config["password"]
        self.digest: bool = config["password_digest"]
        self.attempts = attempts
        self.address = self.endpoint or "?"
        self._client: zeep.Client | None = None
        self._proxy: Any = None
        self.parameters: list[str] | None = None
        if self.timeout <= 0:
            raise ConfigError(f"{where}: setting timeout={self.timeout:g} must be more than 0 seconds")
        if bool(self.username) != bool(self.password):
            raise ConfigError(f"{where}: settings username and password go together: set both, or neither")

    def open(self) -> None:
        """Read the WSDL and bind the operation.

        Raises:
            ConfigError: the WSDL cannot be read, or has no such operation; names the setting.
        """
        wsse = UsernameToken(self.username, self.password, use_digest=self.digest) if self.username else None
        transport = Transport(timeout=self.timeout, operation_timeout=self.timeout)
        try:
            client = zeep.Client(self.wsdl, transport=transport, wsse=wsse)
        except Exception as exc:
            transport.session.close()
            why = _describe(exc, self.timeout) if _transient(exc) else f"{type(exc).__name__}: {str(exc)[:300]}"
            raise ConfigError(
                f"{self.where}: cannot read the WSDL at {self.wsdl} (setting wsdl): {why}; "
                "check the address and that the department's service is up"
            ) from None
        ports = [(s, p) for s in client.wsdl.services.values() for p in s.ports.values()]
        if not ports:
            raise ConfigError(f"{self.where}: the WSDL at {self.wsdl} (setting wsdl) declares no service to call")
        service, port = ports[0]
        operations = port.binding.all()
        if self.operation not in operations:
            known = ", ".join(sorted(operations)) or "none"
            raise ConfigError(
                f"{self.where}: setting operation={self.operation!r}: the WSDL has no such operation (it has: {known})"
            )
        self.address = self.endpoint or port.binding_options.get("address") or self.wsdl
        self._proxy = client.create_service(port.binding.name, self.address)
        self._client = client
        self.parameters = _parameter_names(operations[self.operation])

    def require(self, setting: str, parameter: str) -> None:
        """Raise ConfigError unless the operation takes `parameter` (when the WSDL tells)."""
        if self.parameters is not None and parameter not in self.parameters:
            raise ConfigError(
                f"{self.where}: setting {setting}={parameter!r}: operation {self.operation} has no such parameter "
                f"(it has: {', '.join(self.parameters) or 'none'})"
            )

    def call(self, **arguments: Any) -> Any:
        """Call the operation; its answer.

        Raises:
            TransientError: still unreachable, slow or answering without SOAP after `attempts` tries.
            DepartmentFault: a SOAP Fault, with its code and text.
            DepartmentRefused: HTTP 4xx without a fault, or arguments the schema refuses.
        """
        assert self._proxy is not None, "open() first"
        method = self._proxy[self.operation]
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception(_transient), reraise=True,
        )
        try:
            return retrying(method, **arguments)
        except zeep.exceptions.Fault as fault:
            raise DepartmentFault(f"{self.operation} at {self.address} answered with SOAP fault {_fault_text(fault)}") from None
        except zeep.exceptions.ValidationError as exc:
            raise DepartmentRefused(f"the call does not fit operation {self.operation}'s parameters: {exc}") from None
        except Exception as exc:
            if _transient(exc):
                tries = f" ({self.attempts} tries)" if self.attempts > 1 else ""
                why = _describe(exc, self.timeout)
                raise TransientError(f"{self.operation} at {self.address} failed{tries}: {why}") from None
            if isinstance(exc, zeep.exceptions.TransportError):
                raise DepartmentRefused(f"{self.operation} at {self.address} refused the call: HTTP {exc.status_code}") from None
            raise

    def close(self) -> None:
        if self._client is not None:
            self._client.transport.session.close()
        self._client = self._proxy = None


def _parameter_names(operation: Any) -> list[str] | None:
    """The parameters of a document/literal (wrapped) or rpc operation; None when zeep does
    not describe them so (then they are not checked at start)."""
    try:
        return [name for name, _ in operation.input.body.type.elements]
    except AttributeError:
        return None


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>\s*")


def envelope_text(body: bytes) -> str:
    """The envelope document as a string, without its XML declaration.

    Raises:
        DepartmentRefused: the bytes are not text in the encoding they declare.
    """
    encoding = next((name for bom, name in _BOMS if body.startswith(bom)), None)
    if encoding is None:
        declared = _DECLARED.match(body)
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        text = body.decode(encoding)
    except (LookupError, UnicodeDecodeError) as exc:
        raise DepartmentRefused(f"the envelope cannot be read as {encoding} text: {exc}") from None
    return _DECLARATION.sub("", text, count=1)


class SoapPush(OutboundAdapter):
    """Delivers each message by calling the department's SOAP operation (see the module)."""

    summary = "calls an operation of the department's SOAP service for each message (zeep)"
    settings = CLIENT_SETTINGS + (
        Setting("envelope_parameter", "the operation's parameter that receives the envelope XML as text",
                required=False, default="envelope"),
        Setting("message_id_parameter", "the operation's parameter that receives the message id, so that the "
                "department drops a message it already has", required=False),
        Setting("attempts", "tries per call before the message waits for the bus's retry", kind="int",
                required=False, default=3),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        super().__init__(department, context, name=name)
        if self.config["attempts"] < 1:
            raise ConfigError(f"{self.name}: setting attempts={self.config['attempts']} must be at least 1")
        self.service = SoapService(self.name, self.config, attempts=self.config["attempts"])
        self._lock = threading.Lock()  # zeep's requests session is not for two threads at once
        self._health = Health(False, "not started")

    def start(self) -> None:
        """Read the WSDL; check the operation and its parameters.

        Raises:
            ConfigError: naming the setting that is wrong.
        """
        self.service.open()
        self.service.require("envelope_parameter", self.config["envelope_parameter"])
        if self.config["message_id_parameter"]:
            self.service.require("message_id_parameter", self.config["message_id_parameter"])
        self._health = Health(True, f"{self.config['operation']} at {self.service.address}")
        log.info("%s: delivering to %s at %s", self.name, self.config["operation"], self.service.address)

    def stop(self) -> None:
        self.service.close()

    def health(self) -> Health:
        """Whether the last call reached the department's service."""
        return self._health

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Call the operation once per message, in order; see the module for what each
        failure becomes. Once the service proves unreachable, the rest of the batch is not
        tried: each gets the same TransientError and is retried later."""
        results: list[BaseException | None] = []
        down: TransientError | None = None
        with self._lock:
            for envelope in envelopes:
                if down is not None:
                    results.append(TransientError(f"not tried, the service was just unreachable: {down.message}"))
                    continue
                try:
                    self._send(envelope)
                except TransientError as exc:
                    down = exc
                    self._health = Health(False, exc.message)
                    log.warning("%s: %s; retrying later", self.name, exc.message)
                    results.append(exc)
                except Exception as exc:  # permanent, or unforeseen: the worker decides by its kind
                    log.warning("%s: message %s not delivered: %s", self.name, envelope.message_id, exc)
                    results.append(exc)
                else:
                    self._health = Health(True, f"{self.config['operation']} at {self.service.address}")
                    results.append(None)
        return results

    def _send(self, envelope: Envelope) -> None:
        arguments = {self.config["envelope_parameter"]: envelope_text(envelope.body)}
        if self.config["message_id_parameter"]:
            arguments[self.config["message_id_parameter"]] = envelope.message_id
        self.service.call(**arguments)
