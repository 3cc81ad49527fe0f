"""Departments' gateway secrets, kept so that a WS-Security PasswordDigest can be checked.

A PasswordDigest is Base64(SHA-1(nonce + created + password)): the gateway must know the
password itself, so a one-way hash alone cannot serve. Each secret is therefore sealed with
the platform key (Fernet: AES-128-CBC + HMAC-SHA256) in `gateway_credential.sealed_secret`,
and a salted PBKDF2-SHA256 hash of it is kept beside (`secret_hash`). When a secret is
unsealed, both the sealed text and the hash must name the row's department and agree: a row
edited in the database, or copied from another department, is refused.

The platform key lives in `<GOVBUS_DATA_DIR>/secret.key`, created (mode 0600) the first time a
secret is sealed. Every gateway process must read the same key file; losing it makes every
stored secret unusable (set them again with `govbus adapters credentials set`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from bus.db import utcnow
from bus.errors import ConfigError

from adapters.tables import credential

log = logging.getLogger("govbus.gateway")

KEY_FILE = "secret.key"
MIN_SECRET = 12  # characters; generated secrets have 32
_ITERATIONS = 120_000  # PBKDF2 rounds: paid once per process per department (results are cached)
_SCHEME = "pbkdf2_sha256"


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What `credentials list` shows of a stored credential (never the secret)."""

    department: str
    created_at: datetime
    created_by: str


class CredentialError(Exception):
    """A stored credential that cannot be used: the platform key is missing or another one,
    or the row was altered. The message is for the operator, never for the caller."""


def generate_secret() -> str:
    """A new random secret: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def check_secret(secret: str) -> str:
    """`secret` if usable as a department's secret.

    Raises:
        ConfigError: shorter than MIN_SECRET characters, or with control characters or
            surrounding whitespace (they do not survive the way clients are configured).
    """
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"a gateway secret needs at least {MIN_SECRET} characters; leave out --secret-file to have one generated")
    if secret != secret.strip() or any(ord(c) < 32 or ord(c) == 127 for c in secret):
        raise ConfigError("a gateway secret may not contain control characters or begin or end with spaces")
    return secret


class PlatformKey:
    """The Fernet key in `<data_dir>/secret.key`, read once per process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / KEY_FILE
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def fernet(self, *, create: bool) -> Fernet:
        """The key; with `create`, a new one is written (0600) when the file is missing.

        Raises:
            CredentialError: the file is missing (and not to be created) or not a key.
        """
        with self._lock:
            if self._fernet is None:
                if create and not self.path.exists():
                    self._create()
                try:
                    self._fernet = Fernet(self.path.read_bytes().strip())
                except FileNotFoundError:
                    raise CredentialError(f"the platform key {self.path} is missing; every stored gateway "
                                          "secret must be set again (govbus adapters credentials set)") from None
                except (ValueError, OSError) as exc:
                    raise CredentialError(f"the platform key {self.path} cannot be used: {exc}") from None
            return self._fernet

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
        log.warning("created the platform key %s: keep it with the data, every gateway process needs it", self.path)


def _hash(department: str, secret: str, salt: bytes, iterations: int = _ITERATIONS) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", f"{department}\0{secret}".encode(), salt, iterations)


def hash_secret(department: str, secret: str) -> str:
    """`pbkdf2_sha256$<iterations>$<salt>$<hash>` of the secret, bound to the department."""
    salt = os.urandom(16)
    digest = _hash(department, secret, salt)
    return f"{_SCHEME}${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _hash_matches(department: str, secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _hash(department, secret, base64.b64decode(salt, validate=True), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


class CredentialStore:
    """Read and write `gateway_credential`. Reading is cached per process: a row is read again
    at most every `ttl` seconds, and unsealed and verified again only when it changed, so that
    a removed or replaced secret stops working within `ttl` seconds everywhere. Thread-safe."""

    def __init__(self, engine: Engine, data_dir: Path, *, ttl: float = 5.0) -> None:
        self.engine = engine
        self.key = PlatformKey(data_dir)
        self.ttl = ttl
        self._lock = threading.Lock()
        # department -> (read at (monotonic), row (sealed, hash) or None, its secret, None or why unusable)
        self._cache: dict[str, tuple[float, tuple[str, str] | None, str | CredentialError | None]] = {}

    # -- the gateway's side ---------------------------------------------------------------

    def secret(self, department: str) -> str | None:
        """The department's secret; None when it has none.

        Raises:
            CredentialError: the row cannot be unsealed with the platform key, or it was
                altered (its hash does not match, or it names another department).
        """
        now = time.monotonic()
        cached = self._cache.get(department)
        if cached is None or now - cached[0] >= self.ttl:
            with self.engine.connect() as conn:
                found = conn.execute(select(credential.c.sealed_secret, credential.c.secret_hash)
                                     .where(credential.c.department == department)).first()
            row = (found[0], found[1]) if found is not None else None
            if cached is not None and row == cached[1]:
                outcome = cached[2]  # unchanged: no need to pay for PBKDF2 again
            elif row is None:
                outcome = None
            else:
                try:
                    outcome = self._unseal(department, *row)
                except CredentialError as exc:
                    outcome = exc  # kept too: an altered row should not cost PBKDF2 per call
            cached = (now, row, outcome)
            with self._lock:
                self._cache[department] = cached
        if isinstance(cached[2], CredentialError):
            raise cached[2]
        return cached[2]

    def _unseal(self, department: str, sealed: str, stored_hash: str) -> str:
        try:
            plain = self.key.fernet(create=False).decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise CredentialError(f"the stored secret of {department} cannot be unsealed with the platform key "
                                  f"{self.key.path} (another key, or an altered row): set it again") from None
        owner, _, secret = plain.partition("\0")
        if owner != department or not _hash_matches(department, secret, stored_hash):
            raise CredentialError(f"the stored secret of {department} does not match its hash (an altered or "
                                  "copied row): set it again")
        return secret

    def forget(self) -> None:
        """Drop the cache (the next lookups read the table)."""
        with self._lock:
            self._cache.clear()

    # -- the operator's side --------------------------------------------------------------

    def set(self, department: str, secret: str, created_by: str) -> None:
        """Store (or replace) the department's secret, sealed; creates the platform key if
        there is none yet."""
        sealed = self.key.fernet(create=True).encrypt(f"{department}\0{secret}".encode()).decode()
        values = {"department": department, "sealed_secret": sealed, "secret_hash": hash_secret(department, secret),
                  "created_at": utcnow(), "created_by": created_by}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(credential).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[credential.c.department],
            set_={k: statement.excluded[k] for k in values if k != "department"},
        )
        with self.engine.begin() as conn:
            conn.execute(statement)
        self.forget()

    def remove(self, department: str) -> bool:
        """Delete the department's secret; False when it had none."""
        with self.engine.begin() as conn:
            removed = conn.execute(delete(credential).where(credential.c.department == department)).rowcount
        self.forget()
        return bool(removed)

    def list(self) -> list[CredentialInfo]:
        """Every stored credential, by department."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(credential.c.department, credential.c.created_at, credential.c.created_by)
                                .order_by(credential.c.department)).all()
        return [CredentialInfo(*row) for row in rows]
