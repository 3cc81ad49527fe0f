"""The file drop adapter: envelope files a department puts into a folder.

A department system (or a person) puts one envelope per file into `folder`. The adapter
submits every complete file to the ingress as its department, oldest first, and then moves
it aside: to `processed` once the broker has confirmed it, or to `rejects` when the ingress
refuses it, beside a `<name>.reason` file saying why (reason code, message, XSD rule, line and
column), so that the department can correct the file and drop it again.

Only complete files are taken. A writer must write under a temporary name and rename the file
when it is complete (a rename within one file system is atomic): names beginning with "." or
ending with ".tmp" or ".part" are left alone, so are folders. Every other file is taken, so a
stray file is rejected with its reason rather than ignored in silence.

A file stays where it is until the broker has confirmed it: after a crash it is submitted
again, and the ingress drops the repeat by message id. A file the broker does not take is left
for the next poll. A name already taken in `processed` or `rejects` gets a number: `a-1.xml`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from bus.db import utcnow
from bus.errors import ConfigError, Failure, TransientError

from adapters.base import Health, InboundAdapter, Setting

if TYPE_CHECKING:
    from bus.app import Context
    from bus.routing import Department

log = logging.getLogger("govbus.adapters.filedrop")

INCOMPLETE_SUFFIXES = (".tmp", ".part")


def is_complete(path: Path) -> bool:
    """Whether a writer is done with `path`, by its name (see the module's docstring)."""
    return not path.name.startswith(".") and not path.name.lower().endswith(INCOMPLETE_SUFFIXES)


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<stem>-<n><suffix>` with the first n that is not taken."""
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{stem}-{n}{suffix}"
    return target


def reason_text(name: str, failure: Failure, message_id: str | None) -> str:
    """The content of a `.reason` file: one `key: value` a line, UTF-8."""
    lines = [
        ("file", name),
        ("reason", failure.code),
        ("message", " ".join(failure.message.split())),
        ("rule", failure.rule or ""),
        ("line", str(failure.line or "")),
        ("column", str(failure.column or "")),
        ("message_id", message_id or ""),
        ("rejected_at", utcnow().isoformat(timespec="seconds")),
    ]
    return "".join(f"{key}: {value}\n" for key, value in lines)


class FileDrop(InboundAdapter):
    """Submits the envelope files put into a folder; moves each aside once judged."""

    summary: ClassVar[str] = "submits envelope files put into a folder; moves them to processed or rejects"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("folder", "the folder the department puts its envelope files into", "dir"),
        Setting("processed", "where submitted files are moved (default: <folder>/processed)", "path", required=False),
        Setting("rejects", "where refused files are moved, each with a <name>.reason file (default: <folder>/rejects)",
                "path", required=False),
        Setting("batch", "files submitted at a time", "int", required=False, default=100),
        Setting("interval", "seconds between looks into the folder when it is empty", "float", required=False,
                default=1.0),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        super().__init__(department, context, name=name)
        folder: Path = self.config["folder"]
        self.folder = folder
        self.processed: Path = self.config["processed"] or folder / "processed"
        self.rejects: Path = self.config["rejects"] or folder / "rejects"
        for setting, path in (("processed", self.processed), ("rejects", self.rejects)):
            if path.resolve() == folder.resolve():
                raise ConfigError(f"{self.name}: setting {setting}={str(path)!r} is the folder itself; "
                                  f"files moved there would be read again: use a folder of its own")
        if self.config["batch"] < 1:
            raise ConfigError(f"{self.name}: setting batch={self.config['batch']} must be at least 1")
        if self.config["interval"] <= 0:
            raise ConfigError(f"{self.name}: setting interval={self.config['interval']} must be more than 0 seconds")
        self.interval = self.config["interval"]
        self._unreadable: set[str] = set()

    def start(self) -> None:
        """Create the processed and rejects folders.

        Raises:
            ConfigError: a folder cannot be created, naming its setting.
        """
        for setting, path in (("processed", self.processed), ("rejects", self.rejects)):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{self.name}: setting {setting}={str(path)!r}: cannot create the folder "
                                  f"({exc.strerror}); create it or choose another") from None
        log.info("%s: watching %s for %s", self.name, self.folder, self.department)

    def health(self) -> Health:
        if not self.folder.is_dir():
            return Health(False, f"folder {self.folder} is gone")
        return Health(True, f"{len(self.waiting())} file(s) waiting")

    def waiting(self) -> list[Path]:
        """The complete files in the folder, oldest first."""
        found = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                try:
                    if entry.is_file() and is_complete(path):
                        found.append((entry.stat().st_mtime_ns, entry.name, path))
                except FileNotFoundError:  # moved away while we looked
                    continue
        return [path for _, _, path in sorted(found)]

    def poll(self) -> int:
        """Submit up to `batch` waiting files and move each aside as judged.

        Raises:
            TransientError: the broker did not take a file; it stays for the next poll.
            OSError: a file could not be moved (the run loop tries again later; the ingress
                drops the repeat of a file submitted twice).
        """
        paths: list[Path] = []
        bodies: list[bytes] = []
        limit = self.context.settings.xml.max_bytes
        for path in self.waiting()[: self.config["batch"]]:
            try:
                if path.stat().st_size > limit:  # refused unread: no need to hold it all in memory
                    self._reject(path, Failure("xml_too_large", f"the file has more than {limit} bytes", True), None)
                    continue
                bodies.append(path.read_bytes())
            except FileNotFoundError:
                continue
            except OSError as exc:
                if path.name not in self._unreadable:  # say it once, not at every poll
                    self._unreadable.add(path.name)
                    log.error("%s: cannot read %s: %s", self.name, path, exc.strerror)
                continue
            self._unreadable.discard(path.name)
            paths.append(path)
        if not bodies:
            return 0
        receipts = self.submit(bodies)
        held = []
        for path, receipt in zip(paths, receipts, strict=True):
            if receipt.failure is None:
                shutil.move(path, free_name(self.processed, path.name))
            elif receipt.failure.permanent:
                self._reject(path, receipt.failure, receipt.message_id)
            else:  # not the file's fault: leave it for the next poll
                held.append(f"{path.name} ({receipt.failure.message})")
        if held:
            raise TransientError(f"the bus did not take {', '.join(held)}")
        return len(paths)

    def _reject(self, path: Path, failure: Failure, message_id: str | None) -> None:
        """Move `path` to the rejects folder, with its `.reason` file written first."""
        target = free_name(self.rejects, path.name)
        reason = target.with_name(target.name + ".reason")
        partial = target.with_name(f".{target.name}.reason.tmp")
        partial.write_text(reason_text(path.name, failure, message_id), encoding="utf-8")
        os.replace(partial, reason)
        shutil.move(path, target)
        log.warning("%s: rejected %s as %s: %s (see %s)", self.name, path.name, failure.code, failure.describe(), reason)
