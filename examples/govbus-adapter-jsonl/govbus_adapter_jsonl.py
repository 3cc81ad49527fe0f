"""govbus adapters for JSON Lines files: an example plugin, installed as its own package.

`jsonl_in` (`JsonlInbound`) reads a JSON Lines file that a department system appends to, one
JSON object a line. The keys are the element names of the resource's specification, in the
order the specification declares them; for `person` 1.0:

    {"IdNumber": "440402199003072316", "Name": "陈志强", "Sex": "1", "BirthDate": "1990-03-07"}

Each object becomes the payload element (setting `element`, in `namespace`), wrapped in an
envelope from the adapter's department: a nested object becomes an element with children, a
list repeats the element, null leaves it out. The message id is derived from the file, the
line's position and its content, so that a line read again (after a crash, or a restart that
lost the watermark) is the same message, and the ingress drops the repeat. Only complete
lines, ending in a newline, are read: a line still being written waits for the next poll.

The watermark is the position in the file (byte offset and inode, "offset@inode"). It moves
only after the broker has confirmed every line before it, so a crash repeats lines, never
skips one. A line that is not a JSON object, or that the ingress refuses, is stored as a dead
letter with its reason and position (`govbus dlq list`) and passed; the department appends a
corrected line. A line the broker did not take stops the poll there, to be read again. A file
that was replaced (another inode) or truncated is read again from its start.

`jsonl_out` (`JsonlOutbound`) appends each delivery to a file as one JSON object a line:
`message_id`, `sender`, `resource`, `version`, `operation`, then the payload's elements by
name (text; an element with children as an object, a repeated one as a list). It writes each
message id once: the ids already in the file are read at start, and processes appending to
the same file take turns under a file lock, each reading what the others wrote first. A
delivery counts as done only once its line is on disk (fsync).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from adapters.base import Health, InboundAdapter, OutboundAdapter, Setting
from adapters.submit import Receipt
from adapters.watermark import Watermark
from bus.envelope import Envelope, build_envelope
from bus.errors import BusError, ConfigError, Failure, NotAuthorized, TransientError, UnknownResource

if TYPE_CHECKING:
    from bus.app import Context
    from bus.routing import Department

log = logging.getLogger("govbus.adapters.jsonl")

# An element name without a prefix: a letter or "_", then letters, digits, "_", "-" or ".".
_NAME = re.compile(r"[^\W\d][\w.-]*\Z")
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


class Unwritable(BusError):
    """A delivery that cannot become a line (no payload, a payload element named like one of
    the line's own keys); the same message would fail again, so it is dead-lettered."""

    code = "sink_refused"


def payload_of(record: Any, element: str, namespace: str) -> bytes:
    """The payload element `element` in `namespace` for one JSON object, as UTF-8 XML.

    Raises:
        ValueError: `record` is not an object, or a key is not an element name; the message
            completes "the line ...".
    """
    if not isinstance(record, dict):
        raise ValueError(f"is {_JSON_KINDS.get(type(record), 'null')}, not a JSON object")
    root = ET.Element(f"{{{namespace}}}{element}")
    _fill(root, record, namespace)
    return ET.tostring(root, encoding="unicode", default_namespace=namespace).encode("utf-8")


def _fill(parent: ET.Element, record: dict[str, Any], namespace: str) -> None:
    for key, value in record.items():
        if not _NAME.match(key):
            raise ValueError(f"has the key {key!r}, which is not an element name of the specification")
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            child = ET.SubElement(parent, f"{{{namespace}}}{key}")
            if isinstance(item, dict):
                _fill(child, item, namespace)
            elif isinstance(item, list):
                raise ValueError(f"has a list inside the list of {key!r}; repeat the element with one flat list")
            elif isinstance(item, bool):
                child.text = "true" if item else "false"  # xs:boolean, not Python's True
            else:
                child.text = str(item)


def record_of(element: ET.Element) -> dict[str, Any]:
    """The child elements of `element` by local name: their text, an object for an element
    with children, a list for a name that repeats."""
    out: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):  # a comment or processing instruction
            continue
        name = child.tag.rpartition("}")[2]
        value: Any = record_of(child) if len(child) else (child.text or "")
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):  # values are text or objects, so a list means repeats
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    return out


@dataclass(slots=True)
class _Line:
    """One line of the inbound file, and what it became."""

    offset: int
    end: int
    message_id: str | None = None  # None for a blank line, which is passed over
    body: bytes | None = None  # the envelope, when the line is a record
    failure: Failure | None = None  # why the line is not a record
    receipt: Receipt | None = None


class JsonlInbound(InboundAdapter):
    """Submits the records a department system appends to a JSON Lines file, one a line."""

    summary: ClassVar[str] = "reads records a department system appends to a JSON Lines file, one payload a line"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("path", "the JSON Lines file the department system appends to (it may not exist yet)", "path"),
        Setting("resource", "the information resource each line is a record of, e.g. GA-001"),
        Setting("version", "the version of the resource's specification the records follow, e.g. 1.0"),
        Setting("element", "the payload's root element in that specification, e.g. Person"),
        Setting("namespace", "the specification's target namespace, e.g. urn:zhuhai:govbus:person"),
        Setting("batch", "lines submitted at a time", "int", required=False, default=200),
        Setting("interval", "seconds between looks at the file when nothing is new", "float", required=False,
                default=1.0),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        """Check the settings against each other and the routing table.

        Raises:
            ConfigError: a bad setting, a missing folder, or a resource the department does
                not provide; naming the setting and the fix.
        """
        super().__init__(department, context, name=name)
        config = self.config
        if not _NAME.match(config["element"]):
            raise ConfigError(f"{self.name}: setting element={config['element']!r} is not an element name; "
                              "give the payload's root element of the specification, e.g. Person")
        if config["batch"] < 1:
            raise ConfigError(f"{self.name}: setting batch={config['batch']} must be at least 1")
        if config["interval"] <= 0:
            raise ConfigError(f"{self.name}: setting interval={config['interval']} must be more than 0 seconds")
        self.path: Path = config["path"].expanduser().resolve()
        if not self.path.parent.is_dir():
            raise ConfigError(f"{self.name}: setting path={str(config['path'])!r}: folder {self.path.parent} "
                              "does not exist; create it, or fix the path")
        try:
            context.table.authorise(self.department, config["resource"])
        except (UnknownResource, NotAuthorized) as exc:
            raise ConfigError(f"{self.name}: setting resource={config['resource']!r}: {exc.message}") from None
        self.interval = config["interval"]
        self._watermark = Watermark(context.engine, self.name, self.department)

    def start(self) -> None:
        """Read the stored watermark once, so that one this adapter cannot use stops it now.

        Raises:
            ConfigError: the watermark stored under this adapter's name is not a file position.
        """
        offset, _ = self._position()
        log.info("%s: reading %s from byte %d", self.name, self.path, offset)

    def health(self) -> Health:
        try:
            size = self.path.stat().st_size
            offset, _ = self._position()
        except FileNotFoundError:
            return Health(False, f"{self.path} does not exist yet; the department system creates it with its first record")
        except OSError as exc:
            return Health(False, f"{self.path} cannot be read: {exc.strerror}")
        except BusError as exc:
            return Health(False, exc.message)
        if not os.access(self.path, os.R_OK):
            return Health(False, f"{self.path} is not readable by this process; give it read permission")
        return Health(True, f"{self.path}: {size} bytes, read up to byte {offset}")

    def poll(self) -> int:
        """Submit up to `batch` complete lines after the watermark, dead-letter the refused
        ones, and move the watermark past what the broker confirmed.

        Raises:
            TransientError: the file cannot be read, or the broker did not take a line (the
                watermark stays before it); the run loop tries again later.
        """
        mark = self._position()
        base, inode, raw_lines = self._read(mark)
        if not raw_lines:
            return 0
        lines = [self._line(offset, raw) for offset, raw in raw_lines]
        records = [line for line in lines if line.body is not None]
        if records:
            receipts = self.submit([line.body for line in records if line.body is not None])
            for line, receipt in zip(records, receipts, strict=True):
                line.receipt = receipt
        passed = base
        for line in lines:
            failure = line.failure or (line.receipt.failure if line.receipt else None)
            if failure is not None and not failure.permanent:
                break  # not the line's fault (the broker did not take it): read it again later
            if failure is not None:
                self._dead_letter(line, failure, raw_lines)
            passed = line.end
        if (passed, inode) != mark:
            self._watermark.advance(f"{passed}@{inode}")
        if passed < lines[-1].end:
            stuck = next(line for line in lines if line.offset == passed)
            assert stuck.receipt is not None and stuck.receipt.failure is not None
            raise TransientError(f"the bus did not take the line at byte {passed} of {self.path}: "
                                 f"{stuck.receipt.failure.message}")
        return len(lines)

    def _position(self) -> tuple[int, int | None]:
        """(byte offset, inode) of the watermark; (0, None) before the first line."""
        mark = self._watermark.get()
        if mark is None:
            return 0, None
        offset, _, inode = mark.partition("@")
        try:
            value = (int(offset), int(inode) if inode else None)
        except ValueError:
            raise ConfigError(
                f"{self.name}: the stored watermark {mark!r} is not a position in a file; is another adapter type "
                f"using this name? Give this adapter its own name to read {self.path} from the start"
            ) from None
        return value

    def _read(self, mark: tuple[int, int | None]) -> tuple[int, int | None, list[tuple[int, bytes]]]:
        """(where reading started, the file's inode, [(offset, line)]) of up to `batch` complete lines."""
        offset, inode = mark
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return offset, inode, []  # nothing written yet; health() says so
        except OSError as exc:
            raise TransientError(f"{self.name}: cannot read {self.path}: {exc.strerror}") from exc
        with handle:
            status = os.fstat(handle.fileno())
            if (inode is not None and inode != status.st_ino) or status.st_size < offset:
                log.warning("%s: %s was replaced or truncated since byte %d was read; reading it from the start",
                            self.name, self.path, offset)
                offset = 0
            handle.seek(offset)
            lines: list[tuple[int, bytes]] = []
            position = offset
            while len(lines) < self.config["batch"]:
                raw = handle.readline()
                if not raw.endswith(b"\n"):
                    break  # the end of the file, or a line the department system is still writing
                lines.append((position, raw))
                position += len(raw)
        return offset, status.st_ino, lines

    def _line(self, offset: int, raw: bytes) -> _Line:
        """The envelope of one line, or why it cannot be one."""
        line = _Line(offset, offset + len(raw))
        text = raw.strip()
        if not text:
            return line
        # Same file, same place, same content: the same message, however often it is read.
        key = f"govbus-adapter-jsonl|{self.department}|{self.path}|{offset}|{hashlib.sha256(text).hexdigest()}"
        line.message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
        try:
            record = json.loads(text)
            payload = payload_of(record, self.config["element"], self.config["namespace"])
        except json.JSONDecodeError as exc:
            reason = f"is not JSON ({exc.msg}, column {exc.colno})"
        except UnicodeDecodeError:
            reason = "is not UTF-8 text"
        except ValueError as exc:
            reason = str(exc)
        else:
            config = self.config
            line.body = build_envelope(self.department, config["resource"], config["version"], payload,
                                       message_id=line.message_id).body
            return line
        line.failure = Failure("undecodable", f"the line at byte {offset} of {self.path} {reason}; "
                                              "append the record again, corrected", True)
        return line

    def _dead_letter(self, line: _Line, failure: Failure, raw_lines: list[tuple[int, bytes]]) -> None:
        """Store a refused line as a dead letter (once, however often it is read) and log it."""
        if line.body is not None:  # refused by the ingress: keep the envelope, which can be replayed
            failure = replace(failure, message=f"{failure.message} (the line at byte {line.offset} of {self.path})")
            data = line.body
        else:
            data = next(raw for offset, raw in raw_lines if offset == line.offset)
        stored = self.submitter.dead_letter(data, Receipt(line.message_id, failure), self.name)
        log.warning("%s: dead letter #%s: %s: %s", self.name, stored, failure.code, failure.describe())


class JsonlOutbound(OutboundAdapter):
    """Appends a department's deliveries to a JSON Lines file, one line per message id."""

    summary: ClassVar[str] = "appends each delivery to a JSON Lines file as one object, once per message id"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("path", "the JSON Lines file deliveries are appended to (created if missing; its folder must exist)",
                "path"),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        super().__init__(department, context, name=name or f"outbound jsonl_out of department {department.code}")
        self.path: Path = self.config["path"].expanduser().resolve()
        self._lock = threading.Lock()
        self._seen: set[str] = set()  # message ids in the file
        self._scanned = 0  # how many bytes of the file `_seen` covers
        self._file: tuple[int, int] | None = None  # (device, inode) of the file read so far
        self._started = False

    def start(self) -> None:
        """Open the file (creating it) and read the message ids already in it.

        Raises:
            ConfigError: the folder is missing, or the file cannot be opened for appending.
        """
        if not self.path.parent.is_dir():
            raise ConfigError(f"{self.name}: setting path={str(self.config['path'])!r}: folder {self.path.parent} "
                              "does not exist; create it, or fix the path")
        try:
            with self._lock, self._locked():
                pass
        except OSError as exc:
            raise ConfigError(f"{self.name}: setting path={str(self.config['path'])!r}: cannot append to "
                              f"{self.path}: {exc.strerror}; give this process write permission") from None
        self._started = True
        log.info("%s: appending to %s (%d deliveries there)", self.name, self.path, len(self._seen))

    def health(self) -> Health:
        folder = self.path.parent
        if not folder.is_dir():
            return Health(False, f"folder {folder} does not exist; create it")
        target = self.path if self.path.exists() else folder
        if not os.access(target, os.W_OK):
            return Health(False, f"{target} is not writable by this process; give it write permission")
        return Health(True, f"{self.path}: {len(self._seen)} deliveries")

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Append one line per envelope whose message id is not in the file yet, then fsync.

        Returns None for each envelope written (or already there), an `Unwritable` for one
        that cannot become a line.

        Raises:
            TransientError: the file cannot be written now; the whole batch comes again.
        """
        if not self._started:
            self.start()
        results: list[BaseException | None] = []
        lines: dict[str, bytes] = {}
        for envelope in envelopes:
            try:
                lines.setdefault(envelope.message_id, self._line_of(envelope))
                results.append(None)
            except BusError as exc:
                results.append(exc)
        try:
            with self._lock, self._locked() as handle:
                fresh = {mid: line for mid, line in lines.items() if mid not in self._seen}
                if fresh:
                    handle.write(b"".join(fresh.values()))
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._seen.update(fresh)
                    self._scanned = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise TransientError(f"{self.name}: cannot append to {self.path}: {exc.strerror or exc}") from exc
        return results

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        """The file opened for appending, locked against other writers, with `_seen` up to date."""
        with self.path.open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            self._catch_up(handle)
            yield handle

    def _catch_up(self, handle: IO[bytes]) -> None:
        """Read the ids of lines written since the last look (by this process or another)."""
        status = os.fstat(handle.fileno())
        if (status.st_dev, status.st_ino) != self._file or status.st_size < self._scanned:
            # A new file (rotated) or a truncated one: read it all. The ids seen before stay
            # known, so a message delivered again is not written to the new file either.
            self._file, self._scanned = (status.st_dev, status.st_ino), 0
        if status.st_size == self._scanned:
            return
        handle.seek(self._scanned)
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # A writer died in the middle of a line, before its fsync: that delivery was not
            # confirmed and will come again, so the torn piece goes rather than corrupt the file.
            log.warning("%s: removing an incomplete last line (%d bytes) of %s", self.name, len(data) - end, self.path)
            handle.truncate(self._scanned + end)
        for raw in data[:end].splitlines():
            if not raw.strip():
                continue
            try:
                self._seen.add(str(json.loads(raw)["message_id"]))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: a line of %s has no message_id; left as it is", self.name, self.path)
        self._scanned += end

    def _line_of(self, envelope: Envelope) -> bytes:
        """The JSON line of one delivery.

        Raises:
            Unwritable: the envelope has no payload, or a payload element clashes with a key of the line.
        """
        try:
            # The body passed the ingress's hardened parser and its XSD; no DTD can be in it.
            root = ET.fromstring(envelope.body)
        except ET.ParseError as exc:
            raise Unwritable(f"message {envelope.message_id}: the envelope cannot be read ({exc})") from None
        body = root.find("{*}Body")
        payload = next((child for child in body if isinstance(child.tag, str)), None) if body is not None else None
        if payload is None:
            raise Unwritable(f"message {envelope.message_id} carries no payload to write")
        line: dict[str, Any] = {
            "message_id": envelope.message_id, "sender": envelope.sender, "resource": envelope.resource,
            "version": envelope.version, "operation": envelope.operation,
        }
        fields = record_of(payload)
        clash = sorted(set(fields) & set(line))
        if clash:
            raise Unwritable(f"message {envelope.message_id}: payload element(s) {', '.join(clash)} have the name "
                             "of a key the line has already")
        line.update(fields)
        return json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"
