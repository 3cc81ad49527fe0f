"""WS-Security UsernameToken authentication of SOAP callers, with replay protection and audit.

A caller signs in as its department: `wsse:Username` is the department code, and the password
is the department's gateway secret (`adapters.gateway.credentials`), sent as

- PasswordDigest = Base64(SHA-1(nonce + created + secret)), with a Base64 `wsse:Nonce` and a
  `wsu:Created` time, as the UsernameToken Profile 1.0 describes. The created time must lie
  within `window` (5 minutes) of the gateway's clock either way, and a nonce is accepted once
  per department while its token could still be fresh (2 x window): a captured request
  cannot be replayed. Nonces are remembered in memory and in the `gateway_nonce` table, so
  that gateway processes sharing the database refuse each other's replays too.
- PasswordText (the secret itself; only over TLS). A Created, if present, must be fresh, and a
  Nonce, if present, unused.

Every refusal is one `AuthenticationFailed`, which the caller sees only as
`Client.authentication_failed`; the exact reason goes to `gateway_audit` for the operator.
The module does not depend on spyne: it reads the SOAP header elements as lxml elements.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from lxml import etree
from sqlalchemy import Connection, Engine, bindparam, create_engine, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool

from bus.db import db_error_text, utcnow
from bus.errors import TransientError

from adapters.gateway.credentials import CredentialError, CredentialStore
from adapters.tables import audit, nonce as nonce_table

log = logging.getLogger("govbus.gateway")

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_DIGEST = _PROFILE + "#PasswordDigest"
PASSWORD_TEXT = _PROFILE + "#PasswordText"
WINDOW = timedelta(minutes=5)

_SECURITY = f"{{{WSSE_NS}}}Security"
_TOKEN = f"{{{WSSE_NS}}}UsernameToken"
_USERNAME = f"{{{WSSE_NS}}}Username"
_PASSWORD = f"{{{WSSE_NS}}}Password"
_NONCE = f"{{{WSSE_NS}}}Nonce"
_CREATED = f"{{{WSU_NS}}}Created"
_MAX_NONCE = 100  # characters: the width of gateway_nonce.nonce

# Outcomes recorded in gateway_audit.
AUTH_FAILED, STALE, REPLAYED, FORBIDDEN = "auth_failed", "stale", "replayed", "forbidden"


class AuthenticationFailed(Exception):
    """The caller could not be authenticated. `detail` says exactly why, for the audit only."""

    def __init__(self, username: str | None, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.username = username
        self.outcome = outcome
        self.detail = detail


@dataclass(frozen=True, slots=True)
class UsernameToken:
    """A UsernameToken as sent: `nonce` is its Base64 text, `created` the wsu:Created text."""

    username: str
    password: str
    digest: bool
    nonce: str | None = None
    created: str | None = None


def read_token(header: Iterable[etree._Element] | None) -> UsernameToken:
    """The UsernameToken in the SOAP header's children.

    Raises:
        AuthenticationFailed: no wsse:Security header with a UsernameToken, or one that lacks a
            username or password or names an unknown password type.
    """
    token = None
    for element in header or ():
        if element.tag == _SECURITY:
            token = element.find(_TOKEN)
            if token is not None:
                break
    if token is None:
        raise AuthenticationFailed(None, AUTH_FAILED, "no WS-Security UsernameToken in the SOAP header")
    username = (token.findtext(_USERNAME) or "").strip()
    password = token.find(_PASSWORD)
    if not username:
        raise AuthenticationFailed(None, AUTH_FAILED, "UsernameToken without a Username")
    if password is None:
        raise AuthenticationFailed(username, AUTH_FAILED, "UsernameToken without a Password")
    kind = password.get("Type", PASSWORD_TEXT).strip()
    if kind not in (PASSWORD_DIGEST, PASSWORD_TEXT):
        raise AuthenticationFailed(username, AUTH_FAILED, f"unknown password type {kind[:120]!r}")
    nonce, created = token.findtext(_NONCE), token.findtext(_CREATED)
    return UsernameToken(
        username=username[:64],
        password=(password.text or "").strip(),
        digest=kind == PASSWORD_DIGEST,
        nonce=nonce.strip() if nonce is not None else None,
        created=created.strip() if created is not None else None,
    )


def password_digest(nonce: bytes, created: str, secret: str) -> str:
    """Base64(SHA-1(nonce + created + secret)), as the UsernameToken Profile defines it."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + secret.encode()).digest()).decode()


def _parse_created(username: str, created: str) -> datetime:
    try:
        at = datetime.fromisoformat(created)
    except ValueError:
        raise AuthenticationFailed(username, AUTH_FAILED, f"wsu:Created {created[:40]!r} is not an xs:dateTime") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)  # the profile says UTC


class NonceGuard:
    """Accepts each (department, nonce) once within `keep`. Thread-safe.

    Checked in this process's memory first (a replay to the same process costs no database
    round trip), then claimed in `gateway_nonce` with one autocommitted upsert on a connection
    held for the purpose: a row older than `keep` is taken over, a younger one means a replay.

    On PostgreSQL the claim is on the Submit path, so it is made cheap: a connection of its
    own (never returned to the platform's pool), committing asynchronously
    (synchronous_commit off: a database crash may forget the last fraction of a second of
    nonces, in exchange for no WAL flush per call), and a prepared statement sent through
    psycopg directly (SQLAlchemy's execution costs more client CPU than the round trip).
    Rows older than `keep` are purged once a minute.
    """

    _PURGE_EVERY = 60.0
    _PG_CLAIM = (
        "INSERT INTO gateway_nonce (department, nonce, seen_at) VALUES (%(department)s, %(nonce)s, %(seen_at)s) "
        "ON CONFLICT (department, nonce) DO UPDATE SET seen_at = excluded.seen_at "
        "WHERE gateway_nonce.seen_at < %(cutoff)s RETURNING nonce"
    )

    def __init__(self, engine: Engine, keep: timedelta) -> None:
        self.keep = keep
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._purged = 0.0
        self._postgres = engine.dialect.name == "postgresql"
        if self._postgres:
            self.engine = create_engine(engine.url, poolclass=NullPool, connect_args={
                "autocommit": True, "options": "-c synchronous_commit=off"})
        else:
            self.engine = engine
        self._conn: Connection | None = None
        dialect = postgresql if self._postgres else sqlite
        statement = dialect.insert(nonce_table).values(
            department=bindparam("department"), nonce=bindparam("nonce"), seen_at=bindparam("seen_at"))
        self._claim = statement.on_conflict_do_update(
            index_elements=[nonce_table.c.department, nonce_table.c.nonce],
            set_={"seen_at": statement.excluded.seen_at},
            where=nonce_table.c.seen_at < bindparam("cutoff"),
        ).returning(nonce_table.c.nonce)  # a row back: taken now (rowcount says -1 through psycopg)

    def claim(self, department: str, nonce: str) -> bool:
        """True the first time `nonce` is presented for `department` within `keep`.

        Raises:
            TransientError: the database cannot be reached; nothing was claimed.
        """
        key = (department, nonce)
        now = time.monotonic()
        with self._lock:
            expires = self._seen.get(key)
            if expires is not None and expires > now:
                return False
            at = utcnow()
            params = {"department": department, "nonce": nonce, "seen_at": at, "cutoff": at - self.keep}
            try:
                claimed = self._execute(params)
            except Exception as exc:
                raise TransientError(f"cannot check the nonce: {db_error_text(exc)}") from exc
            if claimed:
                self._seen[key] = now + self.keep.total_seconds()
            if now - self._purged >= self._PURGE_EVERY:
                self._purge(now, at)
            return claimed

    def _execute(self, params: dict[str, Any]) -> bool:
        for attempt in (1, 2):  # a held connection the server closed meanwhile is opened again once
            try:
                conn = self._connection()
                if self._postgres:
                    driver = conn.connection.driver_connection
                    return driver.execute(self._PG_CLAIM, params, prepare=True).fetchone() is not None  # type: ignore[no-any-return, union-attr]
                return conn.execute(self._claim, params).first() is not None
            except Exception:
                self._close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _purge(self, now: float, at: datetime) -> None:
        self._purged = now
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        try:
            self._connection().execute(delete(nonce_table).where(nonce_table.c.seen_at < at - self.keep))
        except Exception as exc:  # only housekeeping: the next minute tries again
            self._close()
            log.warning("could not purge old gateway nonces: %s", db_error_text(exc))

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()
            if self._postgres:
                self.engine.dispose()


class Authenticator:
    """Who a SOAP call comes from: `authenticate` returns the department or raises
    AuthenticationFailed, after writing the refusal to `gateway_audit`. Thread-safe."""

    def __init__(self, engine: Engine, credentials: CredentialStore, *, window: timedelta = WINDOW) -> None:
        self.engine = engine
        self.credentials = credentials
        self.window = window
        self.nonces = NonceGuard(engine, 2 * window)

    def authenticate(self, header: Iterable[etree._Element] | None, remote: str | None, operation: str) -> str:
        """The department the token in `header` proves the caller to be.

        Raises:
            AuthenticationFailed: see the module's docstring; audited.
            TransientError: the nonce could not be checked (database away); not audited.
        """
        try:
            return self._verify(read_token(header))
        except AuthenticationFailed as exc:
            self.audit(exc.username, remote, operation, exc.outcome, exc.detail)
            raise

    def _verify(self, token: UsernameToken) -> str:
        user = token.username
        try:
            secret = self.credentials.secret(user)
        except CredentialError as exc:
            log.error("gateway credential of %s unusable: %s", user, exc)
            raise AuthenticationFailed(user, AUTH_FAILED, str(exc)) from None
        if secret is None:
            raise AuthenticationFailed(user, AUTH_FAILED, f"no gateway credential for department {user!r} "
                                       "(govbus adapters credentials set)")
        if token.digest:
            if token.nonce is None or token.created is None:
                raise AuthenticationFailed(user, AUTH_FAILED, "PasswordDigest without a Nonce and a wsu:Created")
            try:
                raw_nonce = base64.b64decode(token.nonce, validate=True)
            except (binascii.Error, ValueError):
                raise AuthenticationFailed(user, AUTH_FAILED, "the Nonce is not Base64") from None
            if not hmac.compare_digest(password_digest(raw_nonce, token.created, secret).encode(), token.password.encode()):
                raise AuthenticationFailed(user, AUTH_FAILED, "wrong password: the PasswordDigest does not match")
        elif not hmac.compare_digest(token.password.encode(), secret.encode()):
            raise AuthenticationFailed(user, AUTH_FAILED, "wrong password (PasswordText)")
        if token.created is not None:
            self._check_fresh(user, token.created)
        if token.nonce is not None:
            if not token.nonce or len(token.nonce) > _MAX_NONCE:
                raise AuthenticationFailed(user, AUTH_FAILED, f"a Nonce must have 1 to {_MAX_NONCE} characters")
            if not self.nonces.claim(user, token.nonce):
                raise AuthenticationFailed(user, REPLAYED, f"replayed token: nonce {token.nonce} was already used "
                                           f"within the last {int(2 * self.window.total_seconds()) // 60} minutes")
        return user

    def _check_fresh(self, user: str, created: str) -> None:
        skew = (utcnow() - _parse_created(user, created)).total_seconds()
        limit = self.window.total_seconds()
        if skew > limit:
            raise AuthenticationFailed(user, STALE, f"stale token: wsu:Created {created} is {skew:.0f} s old; "
                                       f"at most {limit:.0f} s are accepted")
        if skew < -limit:
            raise AuthenticationFailed(user, STALE, f"token from the future: wsu:Created {created} is {-skew:.0f} s "
                                       f"ahead of the gateway's clock; at most {limit:.0f} s are accepted")

    def audit(self, username: str | None, remote: str | None, operation: str, outcome: str, detail: str) -> None:
        """Record a refused call. A database that cannot take it is logged, not raised: the
        caller's refusal stands either way."""
        row = {"at": utcnow(), "username": username[:64] if username else None, "remote": (remote or "")[:64] or None,
               "operation": operation[:32], "outcome": outcome, "detail": detail}
        log.warning("gateway refused %s from %s as %s: %s (%s)", operation, remote, username, outcome, detail)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit), row)
        except Exception as exc:
            log.error("could not write the gateway audit row %s: %s", row, db_error_text(exc))

    def close(self) -> None:
        self.nonces.close()
