"""Settings, read once from the environment (`GOVBUS_*`) when a process starts.

With nothing set, the platform runs on its embedded default: kombu's in-memory transport and a
SQLite file under `./var/`. `GOVBUS_BROKER_URL=amqp://...` and
`GOVBUS_DATABASE_URL=postgresql+psycopg://...` switch to production. A misspelt variable fails
at start-up with a suggestion, rather than being silently ignored.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from schemas import XmlLimits

from bus.errors import ConfigError

PREFIX = "GOVBUS_"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Transient failures retry after base * factor**(attempt-1) seconds, at most max_delay,
    until `attempts` attempts in all have failed; then the message is dead-lettered."""

    attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"GOVBUS_RETRY_ATTEMPTS must be at least 1, got {self.attempts}")
        finite = all(math.isfinite(v) for v in (self.base_delay, self.factor, self.max_delay))
        if not finite or self.base_delay <= 0 or self.factor < 1 or self.max_delay < self.base_delay:
            raise ConfigError(
                "retry delays must be numbers with 0 < GOVBUS_RETRY_BASE_DELAY <= GOVBUS_RETRY_MAX_DELAY "
                "and GOVBUS_RETRY_FACTOR >= 1"
            )

    def delay_ms(self, attempt: int) -> int:
        """Delay before retrying after failed attempt number `attempt` (1-based)."""
        return int(min(self.base_delay * self.factor ** (attempt - 1), self.max_delay) * 1000)

    def delays_ms(self) -> list[int]:
        """Every distinct delay the policy can ask for: one retry queue each."""
        return sorted({self.delay_ms(a) for a in range(1, self.attempts)})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a govbus process is configured by. Build with `Settings.from_env()`."""

    broker_url: str = "memory://"
    database_url: str = ""
    data_dir: Path = Path("var")
    routes: Path | None = None
    prefix: str = "govbus"
    domain: str = "440400"  # the platform's own domain: its GB/T 2260 division code
    domain_name: str = "珠海市政务信息资源共享平台"
    prefetch: int = 500
    batch_size: int = 200
    delivery_limit: int = 20
    dedup_days: int = 7
    fetch_visibility: float = 300.0  # seconds a fetched delivery stays hidden before it comes back
    xml: XmlLimits = field(default_factory=XmlLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'govbus.db'}")
        for name in ("prefetch", "batch_size", "delivery_limit", "dedup_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        if self.fetch_visibility <= 0:
            raise ConfigError(f"{PREFIX}FETCH_VISIBILITY must be more than 0 seconds")
        if not self.prefix.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{PREFIX}PREFIX must be letters, digits, '-' or '_', got {self.prefix!r}")

    @property
    def embedded(self) -> bool:
        """True on the in-memory transport: one process, nothing durable."""
        return self.broker_url.startswith("memory://")

    def copy(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `GOVBUS_*` variables.

        Raises:
            ConfigError: an unknown `GOVBUS_` variable (with the closest known name), or a
                value of the wrong kind.
        """
        env = os.environ if environ is None else environ
        given = {k[len(PREFIX) :]: v for k, v in env.items() if k.startswith(PREFIX)}
        known = set(_READERS) | set(NOT_SETTINGS)
        unknown = sorted(set(given) - known)
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {PREFIX}{close[0]}?" if close else f"; known: {', '.join(PREFIX + k for k in sorted(known))}"
            raise ConfigError(f"unknown setting {PREFIX}{name}{hint}")
        values: dict[str, Any] = {}
        xml: dict[str, int] = {}
        retry: dict[str, Any] = {}
        for key, raw in given.items():
            if key in NOT_SETTINGS:
                continue
            target, name, kind = _READERS[key]
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{PREFIX}{key}={raw!r} is not a valid {kind.__name__}") from None
            {"": values, "xml": xml, "retry": retry}[target][name] = value
        try:
            if xml:
                values["xml"] = XmlLimits(**xml)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if retry:
            values["retry"] = RetryPolicy(**retry)
        return cls(**values)


# GOVBUS_ variables that are not settings of the platform but of one command's user.
NOT_SETTINGS = ("USER",)  # who `govbus catalog` acts as

# GOVBUS_<KEY> -> (which part of Settings, field name, type)
_READERS: dict[str, tuple[str, str, Any]] = {
    "BROKER_URL": ("", "broker_url", str),
    "DATABASE_URL": ("", "database_url", str),
    "DATA_DIR": ("", "data_dir", Path),
    "ROUTES": ("", "routes", Path),
    "PREFIX": ("", "prefix", str),
    "DOMAIN": ("", "domain", str),
    "DOMAIN_NAME": ("", "domain_name", str),
    "PREFETCH": ("", "prefetch", int),
    "BATCH_SIZE": ("", "batch_size", int),
    "DELIVERY_LIMIT": ("", "delivery_limit", int),
    "DEDUP_DAYS": ("", "dedup_days", int),
    "FETCH_VISIBILITY": ("", "fetch_visibility", float),
    "XML_MAX_BYTES": ("xml", "max_bytes", int),
    "XML_MAX_DEPTH": ("xml", "max_depth", int),
    "RETRY_ATTEMPTS": ("retry", "attempts", int),
    "RETRY_BASE_DELAY": ("retry", "base_delay", float),
    "RETRY_FACTOR": ("retry", "factor", float),
    "RETRY_MAX_DELAY": ("retry", "max_delay", float),
}

assert {name for part, name, _ in _READERS.values() if part == ""} <= {f.name for f in fields(Settings)}
