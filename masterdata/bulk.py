"""Initial sharing (初次共享): a department's full extract, loaded through the bus in batches.

`govbus masterdata load FILE --department GA --resource GA-001` reads an extract (CSV with a
header of element names, or an XML file of many Person / LegalEntity records), and publishes
it to the ingress as batch messages (`PersonBatch` / `LegalEntityBatch`, specification 1.1 or
later) of `--batch` records each, with the broker's confirms, as the department itself would:
every batch is judged by the ingress, routed, and applied by the base library's consumer.

Resuming: batch message ids are derived from the department, resource, version, the file's
content (SHA-256), the batch size and the batch's number, so a re-run sends the same ids and
the ingress drops the repeats. A checkpoint (`<FILE>.govbus-load.json`, or under
`<GOVBUS_DATA_DIR>/masterdata/load/` when the extract's folder is read-only) records how many
batches the broker has confirmed; a restart skips those. The checkpoint never runs ahead of
the confirms: losing it costs repeats, never records.

Before a batch is sent it is checked against the specification, as the ingress will check it.
A record that breaks it is left out of its batch and written with the reason to
`<FILE>.rejected.csv` (record number, line, source record id, key, reason), to be corrected
and loaded again; the load then ends with exit status 1. One bad row never holds up its batch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree
from schemas import ValidationError, Validator
from sqlalchemy import select

from bus.app import STAGES, Context
from bus.broker import Broker, Channel, publish_confirmed
from bus.deadletter import dead_letter
from bus.dedup import Deduplicator
from bus.envelope import Envelope, build_envelope
from bus.errors import NotAuthorized, UnknownResource
from bus.names import Header
from masterdata.consumer import LOCAL_TIME, PAYLOADS
from masterdata.model import ATTRIBUTES, KEY_OF, LABELS

#: the namespace of the uuid5 message ids of bulk loads
LOAD_NAMESPACE = uuid.UUID("7c3f4a52-9d0e-5b8a-a1e6-2f4b8c9d0e17")
SOURCE_RECORD_ID, UPDATED_AT, DELETED = "SourceRecordId", "RecordUpdatedAt", "Deleted"
_EXTRA_LABELS = {"源记录标识": SOURCE_RECORD_ID, "源记录更新时间": UPDATED_AT, "删除标记": DELETED}
_BOOLEAN = {"true": "true", "1": "true", "yes": "true", "y": "true", "是": "true",
            "false": "false", "0": "false", "no": "false", "n": "false", "否": "false", "": "false"}
# Room for the envelope around a batch within the platform's message size limit.
_ENVELOPE_ROOM = 4096


class LoadError(Exception):
    """The load cannot start or go on; the message says how to fix it. `usage` marks a wrong
    request (exit 2) as against a failure on the way (exit 1)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record left out: its number in the extract (1 = the first), line, ids and why."""

    record: int
    line: int
    source_record_id: str
    key: str
    reason: str


@dataclass(slots=True)
class Report:
    """What a load did: rows sent (confirmed), skipped (confirmed by an earlier run), rejected."""

    rows: int = 0
    batches: int = 0
    skipped_rows: int = 0
    skipped_batches: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    dead_letters: list[tuple[str, str]] = field(default_factory=list)  # embedded only: (message id, why)
    seconds: float = 0.0
    complete: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    """One record of the extract: its number and line, its id and key for people, its XML."""

    record: int
    line: int
    source_record_id: str
    key: str
    xml: bytes


# -- the extract -------------------------------------------------------------------------------


def digest(path: Path, record: str) -> tuple[str, int, int, bool]:
    """SHA-256 of the file; its number of lines and of `record` end tags (for an estimate of
    the rows of a CSV or an XML extract); and whether it declares a DTD near the top."""
    sha = hashlib.sha256()
    lines = ends = 0
    end_tag = re.compile(rb"</(?:[\w.-]+:)?" + record.encode() + rb"\s*>")
    with path.open("rb") as f:
        chunk = f.read(65536)
        doctype = b"<!DOCTYPE" in chunk
        while chunk:
            sha.update(chunk)
            lines += chunk.count(b"\n")
            ends += len(end_tag.findall(chunk))
            chunk = f.read(1 << 20)
    return sha.hexdigest(), lines, ends, doctype


def csv_items(path: Path, kind: str, element: str, encoding: str) -> Iterator[Item]:
    """The records of a CSV extract, each as a record `element` (e.g. r:Person; the prefix
    is bound by the batch around it).

    Columns are element names (IdNumber, Name, ... as in the specification) or their Chinese
    names, plus SourceRecordId, RecordUpdatedAt and Deleted; empty cells are left out. A time
    without an offset is China Standard Time.

    Raises:
        LoadError: no header, an unknown column, or no key column.
    """
    key = KEY_OF[kind]
    order = [key, *ATTRIBUTES[kind], UPDATED_AT]
    known = {name: name for name in [*order, SOURCE_RECORD_ID, DELETED]}
    known.update({LABELS[name]: name for name in [key, *ATTRIBUTES[kind]] if name in LABELS})
    known.update(_EXTRA_LABELS)
    with path.open(encoding=encoding, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise LoadError(f"{path} is empty: a CSV extract starts with a header of column names", usage=True)
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in known]
        if unknown:
            raise LoadError(f"{path}: unknown column(s) {', '.join(unknown)}; a {kind} extract has columns "
                            f"{', '.join([*order, SOURCE_RECORD_ID, DELETED])}", usage=True)
        columns = [known[h] for h in header]
        if key not in columns:
            raise LoadError(f"{path}: no {key} column; the key of a {kind} is its {key} ({LABELS[key]})", usage=True)
        index = {name: columns.index(name) for name in columns}
        prefix = element.split(":", 1)[0]
        fields = [(name, index[name]) for name in order if name in index]
        source_at, deleted_at, key_at = index.get(SOURCE_RECORD_ID), index.get(DELETED), index[key]
        width = len(columns)
        number = 0
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            number += 1
            row = row + [""] * (width - len(row))
            source = row[source_at].strip() if source_at is not None else ""
            parts = [f"<{element}"]
            if source:
                parts.append(f" sourceRecordId={quoteattr(source)}")
            if deleted_at is not None:
                flag = row[deleted_at].strip()
                flag = _BOOLEAN.get(flag.lower(), flag)
                if flag != "false":
                    parts.append(f" deleted={quoteattr(flag)}")
            parts.append(">")
            for name, at in fields:
                value = row[at].strip()
                if value:
                    if name == UPDATED_AT:
                        value = _xsd_time(value)
                    parts.append(f"<{prefix}:{name}>{escape(value)}</{prefix}:{name}>")
            parts.append(f"</{element}>")
            yield Item(number, reader.line_num, source, row[key_at].strip(), "".join(parts).encode())


def _xsd_time(text: str) -> str:
    """An extract's time as xs:dateTime: '2024-05-01 10:00:00' becomes
    '2024-05-01T10:00:00+08:00'; what cannot be read is left for the schema check to refuse."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is None:
        value = value.replace(tzinfo=LOCAL_TIME)
    return value.isoformat()


def xml_items(path: Path, namespace: str, record: str, kind: str) -> Iterator[Item]:
    """The record elements of an XML extract, wherever they are in it (a PersonBatch, an
    envelope, a department's own wrapper), read incrementally: memory stays flat."""
    tag = f"{{{namespace}}}{record}"
    key_tag = f"{{{namespace}}}{KEY_OF[kind]}"
    try:
        events = etree.iterparse(str(path), events=("end",), tag=tag, resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False)
        for number, (_, element) in enumerate(events, 1):
            key = (element.findtext(key_tag) or "").strip()
            source = (element.get("sourceRecordId") or "").strip()
            yield Item(number, element.sourceline or 0, source, key, etree.tostring(element, with_tail=False))
            element.clear(keep_tail=False)
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        raise LoadError(f"{path} is not well-formed XML: {exc}") from None


# -- the checkpoint ------------------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    """How far a load got: the first `confirmed_batches` batches are confirmed by the broker
    (on the embedded default: applied). Written atomically after every confirmed window."""

    path: Path
    identity: dict[str, Any]
    confirmed_batches: int = 0
    confirmed_rows: int = 0
    complete: bool = False

    @classmethod
    def place(cls, extract: Path, data_dir: Path) -> Path:
        """Next to the extract if that folder is writable, else under the data directory."""
        beside = extract.with_name(extract.name + ".govbus-load.json")
        if os.access(extract.parent, os.W_OK):
            return beside
        name = hashlib.sha256(str(extract.resolve()).encode()).hexdigest()[:16]
        return data_dir / "masterdata" / "load" / f"{extract.name}.{name}.json"

    @classmethod
    def open(cls, path: Path, identity: dict[str, Any]) -> tuple[Checkpoint, str | None]:
        """The checkpoint of this load, and a notice when one for another load was found."""
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, identity), None
        except (OSError, ValueError) as exc:
            return cls(path, identity), f"checkpoint {path} unreadable ({exc}); starting from the first batch"
        if saved.get("identity") != identity:
            return cls(path, identity), (f"checkpoint {path} is of another load (the file, resource, version or batch "
                                         "size changed); starting from the first batch")
        confirmed = int(saved["confirmed_batches"]), int(saved["confirmed_rows"]), bool(saved["complete"])
        return cls(path, identity, *confirmed), None

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        data["saved_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)


# -- the load ------------------------------------------------------------------------------------


class BulkLoad:
    """One extract, loaded as one department's resource. `run` does it; see the module doc."""

    def __init__(self, context: Context, path: Path, *, department: str, resource: str, version: str = "1.1",
                 batch: int = 1000, window: int = 4, rate: float | None = None, encoding: str = "utf-8-sig",
                 restart: bool = False) -> None:
        self.context = context
        self.path = path
        self.department, self.resource, self.version = department, resource, version
        self.batch, self.window, self.rate, self.encoding, self.restart = batch, window, rate, encoding, restart
        try:
            spec = context.table.authorise(department, resource).specification
        except (UnknownResource, NotAuthorized) as exc:  # the ingress would refuse every batch
            raise LoadError(str(exc), usage=True) from None
        try:
            self.validator: Validator = context.schemas.validator(spec, version)
        except ValidationError as exc:
            raise LoadError(f"resource {resource} follows specification {spec}: {exc}", usage=True) from None
        if self.validator.namespace not in PAYLOADS:
            raise LoadError(f"resource {resource} follows specification {spec}, which is not a base library's "
                            "(person or legal-entity)", usage=True)
        self.kind, self.record, batch_element = PAYLOADS[self.validator.namespace]
        self.batch_tag = f"{{{self.validator.namespace}}}{batch_element}"
        if self.batch_tag not in self.validator.roots:
            raise LoadError(f"{spec} {version} has no batch element {batch_element}; load with --version 1.1 or later",
                            usage=True)
        self.max_bytes = context.settings.xml.max_bytes - _ENVELOPE_ROOM
        self._opening = f'<r:{batch_element} xmlns:r="{self.validator.namespace}">'.encode()
        self._closing = f"</r:{batch_element}>".encode()
        self.names = context.names

    # the extract, in batches

    def is_xml(self) -> bool:
        suffix = self.path.suffix.lower()
        return suffix == ".xml" or (suffix != ".csv" and _looks_like_xml(self.path))

    def items(self, doctype: bool) -> Iterator[Item]:
        if self.is_xml():
            if doctype:
                raise LoadError(f"{self.path} declares a DTD (<!DOCTYPE>), which the platform never accepts", usage=True)
            return xml_items(self.path, self.validator.namespace, self.record, self.kind)
        return csv_items(self.path, self.kind, f"r:{self.record}", self.encoding)

    def batches(self, items: Iterator[Item]) -> Iterator[list[Item]]:
        """Items in batches of `batch`, fewer when the message would exceed the size limit."""
        current: list[Item] = []
        size = 0
        for item in items:
            if current and (len(current) >= self.batch or size + len(item.xml) > self.max_bytes):
                yield current
                current, size = [], 0
            current.append(item)
            size += len(item.xml) + 1
        if current:
            yield current

    def payload(self, items: Sequence[Item]) -> bytes:
        return self._opening + b"\n" + b"\n".join(i.xml for i in items) + b"\n" + self._closing

    def message_id(self, sha256: str, number: int) -> str:
        name = f"{self.department}|{self.resource}|{self.version}|{sha256}|{self.batch}|{self.max_bytes}|{number}"
        return str(uuid.uuid5(LOAD_NAMESPACE, name))

    def check(self, items: list[Item]) -> tuple[bytes | None, list[Rejected]]:
        """The payload of the items the ingress will accept (None: none), and the others with
        the reason: one schema pass over the batch, and only when it fails, one per record."""
        payload = self.payload(items)
        if self._problem(payload) is None:
            return payload, []
        kept, refused = [], []
        for item in items:
            problem = self._problem(self.payload([item]))
            if problem is None:
                kept.append(item)
            else:
                refused.append(Rejected(item.record, item.line, item.source_record_id, item.key, problem))
        return (self.payload(kept) if kept else None), refused

    def _envelope(self, payload: bytes, message_id: str | None = None) -> Envelope:
        return build_envelope(self.department, self.resource, self.version, payload, message_id=message_id)

    def _problem(self, payload: bytes) -> str | None:
        """Why the ingress would refuse a batch of this payload, or None."""
        env = self._envelope(payload)
        parser = self.context.parser
        try:
            self.validator.check(parser.parse(env.body, check_depth=False), env.body, parser)
        except ValidationError as exc:
            return exc.message + (f" [{exc.rule}]" if exc.rule else "")
        return None

    # running

    def run(self, progress: Callable[[int], None] | None = None, notice: Callable[[str], None] | None = None,
            start: Callable[[int, int], None] | None = None) -> Report:
        """Load the extract. Calls `start(estimated rows, rows confirmed before)` once the file
        is read, `progress(rows)` after each confirmed window, `notice(text)` with what the
        operator should know. Interrupted (Ctrl-C), the checkpoint keeps what was confirmed.

        Raises:
            LoadError: the extract cannot be read, or the broker is unreachable or refuses.
        """
        started = time.monotonic()
        sha256, lines, ends, doctype = digest(self.path, self.record)
        identity = {"extract": str(self.path.resolve()), "sha256": sha256, "department": self.department,
                    "resource": self.resource, "version": self.version, "batch": self.batch, "max_bytes": self.max_bytes}
        checkpoint, problem = Checkpoint.open(Checkpoint.place(self.path, self.context.settings.data_dir), identity)
        if problem and notice:
            notice(problem)
        if self.restart:
            checkpoint = Checkpoint(checkpoint.path, identity)
        report = Report(skipped_rows=checkpoint.confirmed_rows, skipped_batches=checkpoint.confirmed_batches)
        rejects = Rejects(self.path.with_name(self.path.name + ".rejected.csv"), fresh=checkpoint.confirmed_batches == 0)
        if checkpoint.complete:
            report.complete = True
            report.rejected = rejects.written
            return report
        if start:
            start(ends if self.is_xml() else max(lines - 1, 0), checkpoint.confirmed_rows)
        sender = _Sender(self.context)
        try:
            window: list[tuple[int, list[Item]]] = []
            number = -1
            for number, items in enumerate(self.batches(self.items(doctype))):
                if number < checkpoint.confirmed_batches:
                    continue
                window.append((number, items))
                if len(window) >= self.window:
                    self._send(window, sha256, sender, checkpoint, report, rejects, progress)
                    window = []
                    self._pace(checkpoint.confirmed_rows - report.skipped_rows, started)
            if number < 0 and self.is_xml():
                raise LoadError(f"{self.path} holds no {{{self.validator.namespace}}}{self.record} records", usage=True)
            if window:
                self._send(window, sha256, sender, checkpoint, report, rejects, progress)
            checkpoint.complete = True
            checkpoint.save()
            report.complete = True
        finally:
            report.dead_letters = sender.close()
            rejects.close()
        report.rejected = rejects.written
        report.seconds = time.monotonic() - started
        return report

    def _send(self, window: list[tuple[int, list[Item]]], sha256: str, sender: _Sender, checkpoint: Checkpoint,
              report: Report, rejects: Rejects, progress: Callable[[int], None] | None) -> None:
        envelopes, rows, refused = [], 0, []
        for number, items in window:
            payload, bad = self.check(items)
            refused += bad
            if payload is not None:
                envelopes.append(self._envelope(payload, self.message_id(sha256, number)))
            rows += len(items)
        sender.send(envelopes, self.names.ingress_exchange())
        rejects.add(refused)  # before the checkpoint passes them: a crash writes them again, never loses them
        checkpoint.confirmed_batches = window[-1][0] + 1
        checkpoint.confirmed_rows += rows
        checkpoint.save()
        report.rows += rows - len(refused)
        report.batches += len(envelopes)
        if progress:
            progress(rows)

    def _pace(self, rows: int, started: float) -> None:
        """With a rate, wait until `rows` rows are due."""
        if self.rate:
            ahead = rows / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def _looks_like_xml(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


class Rejects:
    """`<FILE>.rejected.csv`: the records left out, once each across resumed runs."""

    def __init__(self, path: Path, *, fresh: bool) -> None:
        self.path = path
        self.written: list[Rejected] = []
        self._numbers: set[int] = set()
        if fresh:
            path.unlink(missing_ok=True)
        elif path.exists():
            with path.open(encoding="utf-8-sig", newline="") as f:
                for row in csv.DictReader(f):
                    self._numbers.add(int(row["record"]))
                    self.written.append(Rejected(int(row["record"]), int(row["line"]), row["source_record_id"],
                                                 row["key"], row["reason"]))
        self._file: Any = None

    def add(self, rejected: list[Rejected]) -> None:
        new = [r for r in rejected if r.record not in self._numbers]
        if not new:
            return
        if self._file is None:
            header = not self.path.exists()
            self._file = self.path.open("a", encoding="utf-8-sig" if header else "utf-8", newline="")
            self._csv = csv.writer(self._file)
            if header:
                self._csv.writerow(["record", "line", "source_record_id", "key", "reason"])
        for r in new:
            self._csv.writerow([r.record, r.line, r.source_record_id, r.key, r.reason])
            self._numbers.add(r.record)
            self.written.append(r)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _Sender:
    """Publishes to the ingress with confirms. On the embedded default the broker lives in
    this process: after each window every stage runs here until the messages have settled,
    and the window counts as confirmed only then."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.embedded = context.settings.embedded
        self.broker: Broker | None = None
        self.channel: Channel | None = None
        self.sent: list[str] = []
        self._worker: Any = None
        self._dedup: Deduplicator | None = None

    def _connect(self) -> tuple[Broker, Channel]:
        if self.broker is None or self.channel is None:
            broker = Broker(self.context.settings.broker_url)
            try:
                broker.connect()
            except broker.errors as exc:
                raise LoadError(f"cannot reach the broker at {self.context.settings.broker_url.split('@')[-1]}: {exc}; "
                                "run the same command again once it is back: confirmed batches are skipped") from None
            if self.embedded:
                self.context.declare(broker)
                self._worker = self.context.worker(STAGES)
                self._dedup = Deduplicator(self.context.engine)
            self.broker, self.channel = broker, broker.channel()
        return self.broker, self.channel

    def send(self, envelopes: list[Envelope], exchange: str) -> None:
        if not envelopes:
            return
        broker, channel = self._connect()
        if self._dedup is not None:  # a crash lost what the in-memory broker held: let it go through again
            self._dedup.release([(self.context.names.ingress_queue(), e.message_id) for e in envelopes])
        messages = [(exchange, f"{e.sender}.{e.resource}", e.body, e.message_id, None,
                     {Header.SENDER: e.sender, Header.RESOURCE: e.resource, Header.VERSION: e.version}) for e in envelopes]
        try:
            outcomes = publish_confirmed(broker, channel, messages, timeout=120.0)
        except (TimeoutError, *broker.errors) as exc:
            raise LoadError(f"the broker did not confirm a window of {len(messages)} batches ({exc}); run the same "
                            "command again: confirmed batches are skipped, repeats are dropped by the ingress") from None
        refused = [(e.message_id, why) for e, why in zip(envelopes, outcomes, strict=True) if why]
        if refused:
            raise LoadError(f"the broker refused batch {refused[0][0]}: {refused[0][1]}")
        self.sent += [e.message_id for e in envelopes]
        if self.embedded:
            self._worker.run(threading.Event(), idle_exit=0.3, reconnect=False)

    def close(self) -> list[tuple[str, str]]:
        """Closes the connection; on the embedded default returns the batches dead-lettered."""
        if self.broker is not None:
            self.broker.close()
        if self._dedup is not None:
            self._dedup.close()
        if not self.embedded or not self.sent:
            return []
        found: list[tuple[str, str]] = []
        with self.context.engine.connect() as conn:
            for i in range(0, len(self.sent), 500):
                rows = conn.execute(select(dead_letter.c.message_id, dead_letter.c.reason, dead_letter.c.reason_text)
                                    .where(dead_letter.c.message_id.in_(self.sent[i : i + 500]))).all()
                found += [(m, f"{reason}: {text}") for m, reason, text in rows]
        return found

