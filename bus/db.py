"""The database: one SQLAlchemy engine per process, and the tables' shared metadata.

SQLite (a file under the data directory) is the embedded default; PostgreSQL through psycopg
is production. Only SQLAlchemy Core touches the message path: the ORM costs ~450 µs of client
CPU per row on PostgreSQL here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlalchemy import Table

from bus.errors import ConfigError

metadata = MetaData()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def make_engine(url: str) -> Engine:
    """An engine for `url`, with SQLite tuned for a concurrent reader and writer.

    Raises:
        ConfigError: an unsupported database, or a SQLite folder that cannot be created.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the database folder for {url}: {exc}") from None
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql+psycopg://...")


def create_schema(engine: Engine) -> None:
    """Create missing tables (idempotent)."""
    metadata.create_all(engine)


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING, in the engine's dialect: how every idempotent write
    of the bus is made."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
