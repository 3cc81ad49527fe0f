"""The database: one SQLAlchemy engine per process, and the tables' shared metadata.

SQLite (a file under the data directory) is the embedded default; PostgreSQL through psycopg
is production. Only SQLAlchemy Core touches the message path: the ORM costs ~450 µs of client
CPU per row on PostgreSQL here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from importlib.metadata import entry_points
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Engine, LargeBinary, MetaData, Table, TypeDecorator, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from bus.errors import ConfigError


class UtcDateTime(TypeDecorator[datetime]):
    """An instant, stored in UTC and always read with its time zone: SQLite keeps no offset and
    hands back naive datetimes, which would otherwise read as local time, eight hours off in
    China."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

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


MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_ENV = Path(__file__).resolve().parent / "migrations"
# The first revision of each branch, for databases made before migrations existed.
_BASELINES = {"bus": "bus_0001", "schemas": "schemas_0001"}


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for every package's migrations (entry points `govbus.migrations`)."""
    folders = [str(MIGRATIONS)] + sorted(
        str(ep.load()) for ep in entry_points(group="govbus.migrations") if ep.name != "bus"
    )
    config = Config()
    config.set_main_option("script_location", str(_ENV))
    config.set_main_option("version_locations", " ".join(folders))
    config.set_main_option("path_separator", "space")
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Bring the database to the latest revision of every package (idempotent).

    A database made before migrations existed (tables, no alembic_version) is stamped at the
    baselines first. Processes starting together may race: a lost race is retried.
    """
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                tables = set(inspect(conn).get_table_names())
                config = alembic_config(conn)
                if "alembic_version" not in tables and "message_claim" in tables:
                    command.stamp(config, list(_BASELINES.values()))
                command.upgrade(config, "heads")
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)  # another process is migrating: let it finish


class IdempotentInsert:
    """INSERT ... ON CONFLICT DO NOTHING of many rows: how every idempotent write of the bus
    is made.

    On PostgreSQL, narrow rows travel as one array per column and are unnested by the server:
    one statement, a handful of parameters, ~9 µs of client CPU a row where SQLAlchemy's
    executemany spends ~17 µs. Rows with binary columns do not: psycopg sends bytea arrays as
    hex text, which cost twice executemany's time. Elsewhere (SQLite) it is executemany.
    """

    _ARRAY_TYPES = {"VARCHAR": "varchar[]", "TEXT": "text[]", "INTEGER": "integer[]", "BYTEA": "bytea[]",
                    "TIMESTAMP WITH TIME ZONE": "timestamptz[]", "TIMESTAMP WITHOUT TIME ZONE": "timestamp[]"}

    def __init__(self, engine: Engine, table: Table) -> None:
        self.table = table
        self.arrays = engine.dialect.name == "postgresql" and not any(
            isinstance(c.type, LargeBinary) for c in table.columns
        )
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._generic = dialect.insert(table).on_conflict_do_nothing()
        self._dialect = engine.dialect
        self._statements: dict[tuple[str, ...], Any] = {}

    def __call__(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self.arrays:
            conn.execute(self._generic, rows)
            return
        columns = tuple(rows[0])
        statement = self._statements.get(columns)
        if statement is None:
            casts = []
            for name in columns:
                kind = self.table.c[name].type.compile(dialect=self._dialect)
                casts.append(f"CAST(:{name} AS {self._ARRAY_TYPES.get(kind, kind + '[]')})")
            statement = self._statements[columns] = text(
                f"INSERT INTO {self._dialect.identifier_preparer.format_table(self.table)} ({', '.join(columns)}) "
                f"SELECT * FROM unnest({', '.join(casts)}) ON CONFLICT DO NOTHING"
            )
        conn.execute(statement, {name: [row[name] for row in rows] for name in columns})


class HeldConnection:
    """One connection kept open for a stage's frequent small transactions.

    A connection from the pool costs a checkout and a ping (~0.5 ms here) per transaction;
    on the message path that is latency on every hop. A failed transaction closes the
    connection, and the next one opens a fresh one.
    """

    def __init__(self, engine: Engine, setup: list[str] | None = None) -> None:
        self.engine = engine
        self.setup = setup or []
        self._conn: Connection | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self.engine.connect()
            for statement in self.setup:
                conn.exec_driver_sql(statement)
            conn.commit()
        try:
            with conn.begin():
                yield conn
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                pass
            self._conn = None


def db_error_text(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's echo of the statement and every
    bound row (which for a batch of deliveries would be megabytes)."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig).strip().splitlines()[0] if str(orig).strip() else ''}"
