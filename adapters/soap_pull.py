"""`soap_pull`: polls a department's SOAP service for changes since a stored watermark and
submits them to the ingress, exactly once across restarts.

An inbound adapter, listed in an adapters file:

    [[adapter]]
    name = "ga-changes"
    type = "soap_pull"
    department = "GA"
    [adapter.settings]
    wsdl = "http://10.20.0.9:8080/changes?wsdl"
    operation = "GetChanges"

The contract with the department's service:
- the operation takes the watermark of the last record read (`since_parameter`, default
  `since`; left out before the first record, or `initial_watermark`) and a batch size
  (`max_parameter`, default `max`);
- it answers the records after that watermark, oldest first, at most that many. The answer
  is the list of records itself (zeep hands a one-field wrapper such as spyne's
  `ChangeArray` over as the list), or `records_path` names the field, dotted, that holds it;
  no records may be an empty list or no answer at all;
- each record has the envelope XML as text (`envelope_field`, default `envelope`) and its
  watermark (`watermark_field`, default `watermark`): text the service compares to say
  which records come after, increasing along the stream.

One poll reads one batch, submits it (judged as the ingress judges, published with broker
confirms) and only then moves the watermark to the batch's last record. A record the ingress
refuses (an invalid envelope, a sender other than this department) is logged and kept as a
dead letter with its reason, rule, line and column (`govbus dlq list`; replay it once the
cause is fixed), and the stream goes on past it. A failure that may pass (the broker did not
confirm) stops the batch there: the watermark moves up to the record before it, and the rest
is read again at the next poll.

Exactly once: a crash after the broker confirmed a batch but before the watermark moved
reads that batch again; each envelope carries its message id, and the ingress claims every
id, so the repeats are dropped there.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zeep.helpers import serialize_object

from bus.errors import BusError, ConfigError, TransientError
from bus.routing import Department

from adapters.base import Health, InboundAdapter, Setting
from adapters.soap_push import CLIENT_SETTINGS, SoapService
from adapters.submit import Receipt
from adapters.watermark import Watermark

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.adapters")

_DECLARATION = re.compile(r"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["'][^>]*\?>\s*""")


class BadAnswer(BusError):
    """The service's answer does not have the shape the settings describe."""

    code = "bad_answer"


def envelope_bytes(text: str) -> bytes:
    """A record's envelope text as UTF-8 bytes. An XML declaration naming another encoding
    is left out: it described bytes that the text no longer is."""
    declared = _DECLARATION.match(text)
    if declared and declared.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
        text = text[declared.end():]
    return text.encode("utf-8")


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    try:
        return value[name]  # zeep's objects answer both ways; [] does not fall back to methods
    except (KeyError, TypeError, AttributeError, IndexError):
        return getattr(value, name, None)


class SoapPull(InboundAdapter):
    """Polls the department's service for records after its watermark (see the module)."""

    summary = "polls an operation of the department's SOAP service for changes since a watermark (zeep)"
    settings = CLIENT_SETTINGS + (
        Setting("since_parameter", "the operation's parameter that takes the last watermark read",
                required=False, default="since"),
        Setting("max_parameter", "the operation's parameter that takes the batch size", required=False, default="max"),
        Setting("batch", "records asked for per call", kind="int", required=False, default=100),
        Setting("interval", "seconds between polls when nothing new came", kind="float", required=False, default=5.0),
        Setting("records_path", "dotted path from the answer to its list of records; empty: the answer is the list",
                required=False, default=""),
        Setting("envelope_field", "the record's field holding the envelope XML as text", required=False, default="envelope"),
        Setting("watermark_field", "the record's field holding its watermark", required=False, default="watermark"),
        Setting("initial_watermark", "the watermark to start after when none is stored (else since is left out)",
                required=False),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        super().__init__(department, context, name=name)
        if self.config["batch"] < 1:
            raise ConfigError(f"{self.name}: setting batch={self.config['batch']} must be at least 1")
        if self.config["interval"] <= 0:
            raise ConfigError(f"{self.name}: setting interval={self.config['interval']:g} must be more than 0 seconds")
        self.interval = self.config["interval"]
        self.service = SoapService(self.name, self.config)
        self.watermark = Watermark(context.engine, self.name, self.department)
        self._health = Health(False, "not started")

    def start(self) -> None:
        """Read the WSDL; check the operation and its parameters, and the stored watermark.

        Raises:
            ConfigError: naming the setting that is wrong.
        """
        self.service.open()
        self.service.require("since_parameter", self.config["since_parameter"])
        self.service.require("max_parameter", self.config["max_parameter"])
        self.watermark.get()  # another department's watermark under this name fails here, not later
        self._health = Health(True, f"{self.config['operation']} at {self.service.address}")
        log.info("%s: polling %s at %s every %g s", self.name, self.config["operation"], self.service.address, self.interval)

    def stop(self) -> None:
        self.service.close()

    def health(self) -> Health:
        """Whether the last poll worked."""
        return self._health

    def poll(self) -> int:
        """Read one batch after the watermark, submit it, then advance the watermark.

        Returns how many records the service answered.

        Raises:
            TransientError: the service, the broker or the database failed; nothing after the
                watermark counts as read, and the next poll reads it again.
            BusError: the answer does not have the shape the settings describe.
        """
        try:
            taken = self._poll()
        except Exception as exc:
            self._health = Health(False, str(exc))
            raise
        self._health = Health(True, f"{self.config['operation']} at {self.service.address}")
        return taken

    def _poll(self) -> int:
        since = self.watermark.get() or self.config["initial_watermark"]
        arguments: dict[str, Any] = {self.config["max_parameter"]: self.config["batch"]}
        if since is not None:
            arguments[self.config["since_parameter"]] = since
        records = self._records(self.service.call(**arguments))
        if not records:
            return 0
        bodies, marks = self._read(records, since)
        receipts = self.submit(bodies)
        done = 0  # records settled: accepted, or refused and kept as dead letters
        for data, receipt in zip(bodies, receipts, strict=True):
            if not receipt.accepted and not self._refused(data, receipt):
                break
            done += 1
        if done:
            self.watermark.advance(marks[done - 1])
        if done < len(records):
            failure = receipts[done].failure
            after = marks[done - 1] if done else since or "the start"
            raise TransientError(f"record after watermark {after} not taken now: "
                                 f"{failure.describe() if failure else 'unknown'}; reading it again at the next poll")
        log.debug("%s: %d records taken, watermark now %s", self.name, done, marks[-1])
        return len(records)

    def _refused(self, data: bytes, receipt: Receipt) -> bool:
        """Keep a refused record as a dead letter; False when the refusal may pass (read it
        again later instead)."""
        failure = receipt.failure
        assert failure is not None
        if not failure.permanent:
            return False
        letter = self.submitter.dead_letter(data, receipt, self.name)
        log.warning("%s: record %s refused and kept as dead letter #%d: %s [%s]", self.name,
                    receipt.message_id or "(no message id)", letter, failure.describe(), failure.code)
        return True

    def _records(self, answer: Any) -> list[Any]:
        value = answer
        path = self.config["records_path"]
        for step in path.split(".") if path else ():
            if value is None:
                break
            value = _field(value, step)
        if value is None:
            return []
        if not isinstance(value, (str, bytes, Sequence)) and _field(value, self.config["watermark_field"]) is not None:
            return [value]  # a service whose answer holds at most one record hands it over bare
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            where = f"records_path={path!r}" if path else "the answer (set records_path)"
            raise BadAnswer(f"{self.name}: {where} is a {type(value).__name__}, not a list of records")
        return list(value)

    def _read(self, records: Sequence[Any], since: str | None) -> tuple[list[bytes], list[str]]:
        bodies, marks = [], []
        for i, record in enumerate(records, 1):
            mark = _field(record, self.config["watermark_field"])
            if mark is None or str(mark) == "":
                raise BadAnswer(f"{self.name}: record {i} of the answer has no {self.config['watermark_field']!r} "
                                "(setting watermark_field), so the stream cannot go past it")
            text = _field(record, self.config["envelope_field"])
            if isinstance(text, str):
                bodies.append(envelope_bytes(text))
            else:  # no envelope: the ingress refuses the record as it came, which is kept as a dead letter
                bodies.append(json.dumps(serialize_object(record, dict), default=str, ensure_ascii=False).encode())
            marks.append(str(mark))
        if since is not None and marks[-1] == since:
            raise BadAnswer(f"{self.name}: the service answered records up to watermark {since} again, not after it; "
                            f"does it read {self.config['since_parameter']!r} (setting since_parameter)?")
        return bodies, marks
