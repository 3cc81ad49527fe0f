"""The plugin API: what an adapter is, the settings it declares, and its lifecycle.

An adapter connects one department system to the bus. An *inbound* adapter takes records
from a source (a front-end table, a folder, a department's SOAP service) and submits them to
the ingress; an *outbound* adapter takes the department's deliveries and writes them to a
sink (a front-end table, a department's SOAP operation). Adapters are found by type name in
the entry-point group `govbus.adapters`.

Every adapter acts for one department: an inbound adapter may submit only envelopes whose
sender is that department, as a department on the SOAP gateway acts only as itself.

Settings are declared, not read ad hoc: each `Setting` says its kind and whether it is
required, and `Adapter.__init__` checks them all, so that a wrong setting stops the process
when it starts, with the fix in the message, not at the first message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.routing import Department

if TYPE_CHECKING:
    from bus.app import Context

    from adapters.submit import Receipt, Submitter

INBOUND = "inbound"
OUTBOUND = "outbound"
RESPONDER = "responder"  # answers synchronous queries (adapters.query, bus.query)

log = logging.getLogger("govbus.adapters")

_BOOLEANS = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting an adapter declares.

    `kind`: str, int, float, bool, url (with a scheme and a host), path (need not exist),
    dir (an existing folder) or choice (one of `choices`).
    """

    name: str
    help: str
    kind: str = "str"
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    secret: bool = False  # not printed by `govbus adapters check`

    def parse(self, raw: Any) -> Any:
        """The value of `raw` (from TOML or the catalogue), or ValueError saying what is expected."""
        text = str(raw).strip() if not isinstance(raw, bool | int | float) else raw
        if self.kind == "str":
            if not str(text):
                raise ValueError("must not be empty")
            return str(text)
        if self.kind == "int":
            if isinstance(text, bool):
                raise ValueError("must be a whole number")
            return int(text)
        if self.kind == "float":
            return float(text)
        if self.kind == "bool":
            if isinstance(text, bool):
                return text
            if str(text).lower() not in _BOOLEANS:
                raise ValueError("must be true or false")
            return _BOOLEANS[str(text).lower()]
        if self.kind == "url":
            parts = urlsplit(str(text))
            if not parts.scheme or not (parts.netloc or parts.scheme.startswith("sqlite")):
                raise ValueError("must be a URL with a scheme, e.g. http://host:port/path")
            return str(text)
        if self.kind == "path":
            return Path(str(text))
        if self.kind == "dir":
            path = Path(str(text))
            if not path.is_dir():
                raise ValueError(f"folder {path} does not exist (create it, or fix the path)")
            return path
        if self.kind == "choice":
            if str(text) not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return str(text)
        raise AssertionError(f"unknown setting kind {self.kind}")

    def describe(self) -> str:
        what = f"one of {', '.join(self.choices)}" if self.kind == "choice" else self.kind
        need = "required" if self.required else f"default {self.default!r}"
        return f"{self.name} ({what}, {need}): {self.help}"


def check_settings(kind: type[Adapter], where: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared setting's value, from `given`; unknown names are refused too.

    Raises:
        ConfigError: naming the adapter, each wrong or missing setting and what it expects.
    """
    declared = {s.name: s for s in kind.settings}
    problems = []
    values: dict[str, Any] = {}
    for name in sorted(set(given) - set(declared)):
        known = ", ".join(declared) or "none"
        problems.append(f"unknown setting {name!r} (known: {known})")
    for setting in kind.settings:
        if setting.name not in given or given[setting.name] in ("", None):
            if setting.required:
                problems.append(f"missing setting {setting.describe()}")
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(given[setting.name])
        except ValueError as exc:
            problems.append(f"setting {setting.name}={given[setting.name]!r} {exc}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return values


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


class Adapter:
    """Base of every adapter. Subclasses set `direction`, `summary` and `settings`, and
    implement `deliver` (outbound) or `poll` (inbound).

    Built with the department it acts for (its code, and its settings in
    `department.settings`) and the process's Context; `self.config` holds the checked
    settings by name.
    """

    direction: ClassVar[str]
    summary: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        self.department = department.code
        self.context = context
        self.name = name or f"{type(self).__name__} for {department.code}"
        self.config = check_settings(type(self), self.name, department.settings)

    def start(self) -> None:
        """Open connections and resources; raising here stops the process at start."""

    def stop(self) -> None:
        """Release what `start` opened. Called once, also after a failed `start`."""

    def health(self) -> Health:
        """Whether the adapter can do its work now, and why not."""
        return Health(True)


class OutboundAdapter(Adapter):
    """Takes a department's deliveries from its deliver queue, through the deliver stage."""

    direction: ClassVar[str] = OUTBOUND

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Deliver a batch; one result per envelope, None when it is safely delivered.

        Must be idempotent by message id: after a crash the same message may come again. A
        bus.errors.TransientError (or any unexpected exception) is retried with backoff; a
        permanent BusError dead-letters that message with its text.
        """
        raise NotImplementedError


class InboundAdapter(Adapter):
    """Takes records from a source and submits them to the ingress, as its department.

    `poll` is called every `interval` seconds (or at once again when it returned a full
    batch); it submits with `self.submit` and must advance its own watermark only after the
    submission was confirmed, so that a crash repeats, never skips (the ingress drops the
    repeat by message id).
    """

    direction: ClassVar[str] = INBOUND
    interval: float = 1.0

    submitter: Submitter

    def poll(self) -> int:
        """Take what is waiting and submit it; returns how many records were taken."""
        raise NotImplementedError

    def submit(self, bodies: Sequence[bytes]) -> list[Receipt]:
        """Judge each envelope as the ingress would, as this department, and publish the
        accepted ones with confirms. A refused one is returned with its reason, not sent."""
        return self.submitter.submit(bodies, self.department)

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; a failing poll is logged and tried again later."""
        failures = 0
        while not stop.is_set():
            try:
                taken = self.poll()
                failures = 0
            except Exception as exc:  # the source or the broker is away: wait and retry
                failures += 1
                wait = min(self.interval * 2**failures, 60.0)
                log.warning("%s: poll failed (%s); trying again in %.0f s", self.name, exc, wait)
                stop.wait(wait)
                continue
            if not taken:
                stop.wait(self.interval)

