"""The registry of data specifications: versions, their status, their files, their use.

Each version of a specification is a record (draft, published or deprecated, with the
compatibility mode it was published under) and its XSD files, kept in the database so that
every worker, on whatever machine, validates against the same bytes; a worker writes them out
under its own cache folder (`<data dir>/xsd/<name>/<version>/`) when it first needs them. The
specifications shipped with govbus (`schemas/xsd/`) are registered as published the first
time a database is opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Column, DateTime, Engine, Integer, LargeBinary, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from schemas.compat import DEFAULT_MODE, MODES, Finding, check
from schemas.errors import Incompatible, InvalidSpecification, UnknownSpecification, UnknownVersion
from schemas.model import Model, load_model
from schemas.safety import inspect_specification

XSD_ROOT = Path(__file__).resolve().parent / "xsd"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENVELOPE_NS = "urn:zhuhai:govbus:envelope"
ENVELOPE = "envelope"
# The platform's own formats, kept beside the data specifications but not messages' payloads.
RESERVED = (ENVELOPE, "catalog")
STATUSES = ("draft", "published", "deprecated")
NAME = re.compile(r"[a-z][a-z0-9-]{0,63}\Z")
VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}\Z")

metadata = MetaData()

specification_version = Table(
    "specification_version",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("mode", String(32), nullable=False),
    Column("namespace", String(255), nullable=False),
    Column("main_file", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("registered_by", String(64), nullable=False),
    Column("published_at", DateTime(timezone=True)),
    Column("deprecated_at", DateTime(timezone=True)),
)

specification_file = Table(
    "specification_file",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("filename", String(255), primary_key=True),
    Column("content", LargeBinary, nullable=False),
)

deprecated_use = Table(
    "deprecated_use",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("sender", String(32), primary_key=True),
    Column("messages", Integer, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Entry:
    """A registered version of a specification."""

    name: str
    version: str
    status: str
    mode: str
    namespace: str
    main_file: str
    sha256: str
    registered_at: datetime
    registered_by: str
    published_at: datetime | None
    deprecated_at: datetime | None


@dataclass(frozen=True)
class Publication:
    """What `publish` did: `outcome` is published, draft, promoted (draft to published) or
    unchanged (the same files again); `findings` are compatibility findings (a draft keeps
    them, a publication has none)."""

    entry: Entry
    outcome: str
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class Use:
    name: str
    version: str
    sender: str
    messages: int
    first_seen: datetime
    last_seen: datetime


def _bundle(files: list[Path], folder: Path) -> tuple[dict[str, bytes], str]:
    contents = {f.relative_to(folder).as_posix(): f.read_bytes() for f in files}
    digest = hashlib.sha256()
    for name in sorted(contents):
        digest.update(name.encode() + b"\0" + hashlib.sha256(contents[name]).digest())
    return contents, digest.hexdigest()


class Registry:
    """The specifications of one database. Thread-safe; cheap to ask once warm."""

    def __init__(self, engine: Engine, cache: Path, builtin: Path = XSD_ROOT) -> None:
        self.engine = engine
        self.cache = cache.resolve()
        self.builtin = builtin
        self._models: dict[tuple[str, str], Model] = {}
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------

    def entries(self, name: str | None = None) -> list[Entry]:
        """Registered versions, by name then version."""
        query = select(specification_version)
        if name is not None:
            query = query.where(specification_version.c.name == name)
        with self.engine.connect() as conn:
            rows = [Entry(**row) for row in conn.execute(query).mappings()]
        return sorted(rows, key=lambda e: (e.name, version_key(e.version)))

    def entry(self, name: str, version: str) -> Entry:
        """Raises UnknownSpecification or UnknownVersion."""
        found = [e for e in self.entries(name) if e.version == version]
        if found:
            return found[0]
        known = [e.version for e in self.entries(name)]
        if not known:
            raise UnknownSpecification(f"no data specification named '{name}'")
        raise UnknownVersion(f"specification '{name}' has no version '{version}' (known: {', '.join(known)})")

    def folder(self, name: str, version: str) -> Path:
        """The version's files on this machine, written from the database when missing or
        changed. Returns the folder; the main file is `entry.main_file` in it."""
        entry = self.entry(name, version)
        folder = self.cache / name / version
        stamp = folder / ".sha256"
        if stamp.is_file() and stamp.read_text() == entry.sha256:
            return folder
        with self.engine.connect() as conn:
            files = conn.execute(
                select(specification_file.c.filename, specification_file.c.content).where(
                    specification_file.c.name == name, specification_file.c.version == version
                )
            ).all()
        # Written aside, then renamed into place: workers starting together never read a
        # half-written file, and the first to finish wins.
        (self.cache / name).mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(dir=self.cache / name, prefix=f".{version}-"))
        try:
            for filename, content in files:
                target = (fresh / filename).resolve()
                if not target.is_relative_to(fresh.resolve()):  # publish checks this; still
                    raise InvalidSpecification(f"stored file {filename} of {name}:{version} points outside its folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            (fresh / ".sha256").write_text(entry.sha256)
            if folder.exists():  # stale: the database was replaced under this cache
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.rename(fresh, folder)
            except OSError:
                pass  # another process put it there first
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        return folder

    def main_path(self, name: str, version: str) -> Path:
        return self.folder(name, version) / self.entry(name, version).main_file

    def model(self, name: str, version: str) -> Model:
        """The version's data items (cached)."""
        key = (name, version)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(self.main_path(name, version))
            return self._models[key]

    def uses(self, name: str | None = None) -> list[Use]:
        """Messages seen naming a deprecated version, per sender."""
        query = select(deprecated_use).order_by(deprecated_use.c.name, deprecated_use.c.version, deprecated_use.c.sender)
        if name is not None:
            query = query.where(deprecated_use.c.name == name)
        with self.engine.connect() as conn:
            return [Use(**row) for row in conn.execute(query).mappings()]

    # -- changing --------------------------------------------------------------------------

    def bootstrap(self) -> None:
        """Register the specifications shipped with govbus, as published, where missing."""
        if not self.builtin.is_dir():
            return
        known = {(e.name, e.version) for e in self.entries()}
        for spec in sorted(p for p in self.builtin.iterdir() if p.is_dir() and NAME.match(p.name) and p.name not in RESERVED):
            for folder in sorted((p for p in spec.iterdir() if VERSION.match(p.name)), key=lambda p: version_key(p.name)):
                main = folder / f"{spec.name}.xsd"
                if (spec.name, folder.name) not in known and main.is_file():
                    try:
                        self._register(main, spec.name, folder.name, DEFAULT_MODE, "published", "govbus")
                    except IntegrityError:
                        pass  # another process, starting at the same time, registered it first

    def check(self, main: Path, name: str, version: str | None = None, mode: str | None = None) -> tuple[str, list[Finding]]:
        """Check a candidate XSD against the registered versions of `name` older than `version`
        (all of them when None). Returns the mode used and the findings (empty: compatible).

        Raises:
            InvalidSpecification: the file cannot be taken at all.
            UnknownSpecification: no such specification.
            ValueError: an unknown mode.
        """
        if version is not None and not VERSION.match(version):
            raise InvalidSpecification(f"'{version}' is not a version: MAJOR.MINOR, e.g. 1.1")
        inspect_specification(main, forbidden_namespaces=(ENVELOPE_NS,))
        entries = [e for e in self.entries(name) if e.status != "draft"]
        if not self.entries(name):
            raise UnknownSpecification(f"no data specification named '{name}'")
        if version is not None:
            entries = [e for e in entries if version_key(e.version) < version_key(version)]
        mode = (mode or (entries[-1].mode if entries else DEFAULT_MODE)).upper()
        if mode not in MODES:
            raise ValueError(f"unknown compatibility mode {mode!r}; one of {', '.join(MODES)}")
        new = load_model(main)
        return mode, check(new, [(e.version, self.model(e.name, e.version)) for e in entries], mode)

    def publish(self, main: Path, name: str, version: str, *, mode: str | None = None, draft: bool = False,
                who: str = "") -> Publication:
        """Register `main` (and the files of its folder it refers to) as `name` `version`.

        Raises:
            InvalidSpecification: a bad name or version, a hostile or broken XSD, or other
                files already registered under this version.
            Incompatible: a publication the compatibility mode forbids (a draft is kept,
                with its findings, instead).
        """
        if not NAME.match(name) or name in RESERVED:
            raise InvalidSpecification(f"'{name}' is not a specification name: lower-case letters, digits and '-'")
        if not VERSION.match(version):
            raise InvalidSpecification(f"'{version}' is not a version: MAJOR.MINOR, e.g. 1.1")
        files = inspect_specification(main, forbidden_namespaces=(ENVELOPE_NS,))
        _, sha = _bundle(files, main.resolve().parent)
        existing = {e.version: e for e in self.entries(name)}
        current = existing.get(version)
        if current is not None and current.sha256 != sha:
            raise InvalidSpecification(
                f"{name} {version} is registered already with other files; a change needs a new version"
            )
        if current is not None and (draft or current.status != "draft"):
            return Publication(current, "unchanged")
        if mode is None:
            earlier = [e for e in existing.values() if version_key(e.version) < version_key(version)]
            mode = max(earlier, key=lambda e: version_key(e.version)).mode if earlier else DEFAULT_MODE
        mode, findings = self.check(main, name, version, mode) if existing else (mode.upper(), [])
        if findings and not draft:
            raise Incompatible(
                f"{name} {version} is not {mode} compatible: {len(findings)} finding(s)", findings
            )
        if current is not None:  # a draft, now published with the same files
            with self.engine.begin() as conn:
                conn.execute(
                    update(specification_version)
                    .where(specification_version.c.name == name, specification_version.c.version == version)
                    .values(status="published", mode=mode, published_at=_now())
                )
            return Publication(self.entry(name, version), "promoted")
        entry = self._register(main, name, version, mode, "draft" if draft else "published", who, files)
        return Publication(entry, entry.status, findings)

    def _register(self, main: Path, name: str, version: str, mode: str, status: str, who: str,
                  files: list[Path] | None = None) -> Entry:
        files = files or inspect_specification(main, forbidden_namespaces=(ENVELOPE_NS,))
        folder = main.resolve().parent
        contents, sha = _bundle(files, folder)
        now = _now()
        model = load_model(main)
        with self.engine.begin() as conn:
            conn.execute(
                insert(specification_version).values(
                    name=name, version=version, status=status, mode=mode.upper(), namespace=model.namespace,
                    main_file=main.resolve().relative_to(folder).as_posix(), sha256=sha, registered_at=now,
                    registered_by=who or "unknown", published_at=now if status == "published" else None,
                )
            )
            conn.execute(
                insert(specification_file),
                [{"name": name, "version": version, "filename": f, "content": c} for f, c in contents.items()],
            )
        return self.entry(name, version)

    def deprecate(self, name: str, version: str) -> Entry:
        """Mark a published version deprecated: still accepted, each use counted per sender.

        Raises UnknownSpecification, UnknownVersion, or InvalidSpecification for a draft.
        """
        entry = self.entry(name, version)
        if entry.status == "draft":
            raise InvalidSpecification(f"{name} {version} is a draft: there is nothing to deprecate")
        if entry.status == "published":
            with self.engine.begin() as conn:
                conn.execute(
                    update(specification_version)
                    .where(specification_version.c.name == name, specification_version.c.version == version)
                    .values(status="deprecated", deprecated_at=_now())
                )
        return self.entry(name, version)

    def record_uses(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Add (name, version, sender) -> messages to the counts of deprecated use."""
        now = _now()
        with self.engine.begin() as conn:
            for (name, version, sender), messages in counts.items():
                key = (deprecated_use.c.name == name, deprecated_use.c.version == version, deprecated_use.c.sender == sender)
                updated = conn.execute(
                    update(deprecated_use).where(*key).values(messages=deprecated_use.c.messages + messages, last_seen=now)
                ).rowcount
                if not updated:
                    conn.execute(insert(deprecated_use).values(
                        name=name, version=version, sender=sender, messages=messages, first_seen=now, last_seen=now))
