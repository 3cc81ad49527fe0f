"""The adapters' own tables (SQLAlchemy Core; migrations in adapters/migrations).

- `adapter_watermark`: how far an inbound adapter has read its source, per adapter name; it
  moves only after the broker confirmed what was read up to it.
- `gateway_credential`: a department's SOAP gateway secret. WS-Security PasswordDigest is
  SHA-1(nonce + created + password), which the gateway can only check knowing the password:
  the secret is kept encrypted with the platform key (see adapters.gateway.credentials), and
  a salted PBKDF2 hash of it proves it was not tampered with.
- `gateway_nonce`: nonces seen within the freshness window, so that a captured request
  cannot be replayed.
- `gateway_audit`: every authentication failure and refused call: who claimed to be whom,
  from where, and why it was refused.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

from bus.db import UtcDateTime

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = MetaData()

watermark = Table(
    "adapter_watermark", metadata,
    Column("adapter", String(100), primary_key=True),
    Column("department", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

credential = Table(
    "gateway_credential", metadata,
    Column("department", String(32), primary_key=True),
    Column("sealed_secret", Text, nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
)

nonce = Table(
    "gateway_nonce", metadata,
    Column("department", String(32), primary_key=True),
    Column("nonce", String(100), primary_key=True),
    Column("seen_at", UtcDateTime, nullable=False, index=True),
)

audit = Table(
    "gateway_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("username", String(64)),
    Column("remote", String(64)),
    Column("operation", String(32)),
    Column("outcome", String(32), nullable=False),  # e.g. auth_failed, replayed, forbidden
    Column("detail", Text, nullable=False),
)
