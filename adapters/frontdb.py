"""The front-end database (前置机) adapter: a department's exchange tables, in its own database.

Many department systems cannot speak SOAP or AMQP, but can write rows into a table of a
database beside them and read rows from another. This adapter is the platform's side of
those tables, through SQLAlchemy (PostgreSQL, SQLite, MySQL/MariaDB ... as the `url` says).

`frontdb_in` (`FrontDbInbound`) reads the department's outgoing table: each row holds one
envelope (`envelope_column`) and a value of an incremental column (`incremental_column`).
Rows are read in the order of that column, after the value stored as the adapter's watermark
in the platform's database, and submitted to the ingress as the department.

    The incremental column must be *strictly increasing in commit order*: every row the
    department commits gets a value greater than every row committed before it, never NULL
    (an identity or sequence id written by one writer, or a unique commit timestamp). Then
    there are no ties: `value > watermark` takes each row exactly once. The adapter checks
    at start what the schema can show: the column is NOT NULL and unique (the primary key
    or a unique constraint or index on it alone). A row committed later with a smaller value
    than one already read (two writers committing out of order) would not be read: that is
    the department's rule to keep.

The watermark moves only after the broker confirmed the rows up to it. A crash between the
confirm and the move makes the rows come again; the ingress drops the repeats by message id.
A row the ingress refuses is stored as a dead letter (`govbus dlq list`) with its reason and
logged, then passed; a row the broker did not take stops the batch there and is read again.

`frontdb_out` (`FrontDbOutbound`) writes a department's deliveries into its incoming table,
one transaction per batch, once per message id (INSERT ... ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Column, Connection, DateTime, Engine, Integer, LargeBinary, MetaData, String, Table, Text, create_engine, inspect,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DataError, IntegrityError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError

from bus.db import HeldConnection, IdempotentInsert, db_error_text, utcnow
from bus.envelope import Envelope
from bus.errors import BusError, ConfigError, TransientError

from adapters.base import Health, InboundAdapter, OutboundAdapter, Setting
from adapters.submit import Receipt
from adapters.watermark import Watermark

if TYPE_CHECKING:
    from bus.app import Context
    from bus.routing import Department

log = logging.getLogger("govbus.adapters.frontdb")

# The columns of a department's incoming table, as `create = true` makes them.
OUT_COLUMNS = ("message_id", "sender", "resource", "version", "operation", "body", "received_at")
_OUT_HINT = (
    "message_id (varchar(64), unique), sender (varchar(32)), resource (varchar(64)), version (varchar(16)), "
    "operation (varchar(16)), body (text: the envelope XML), received_at (timestamp with time zone)"
)
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_DECLARED = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DECLARED_TEXT = re.compile(r"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class SinkRefused(BusError):
    """The department's table refused a row (too long for a column, a constraint of its own);
    the same message would be refused again, so it is dead-lettered with the database's text."""

    code = "sink_refused"


def open_database(url: str, where: str) -> Engine:
    """An engine for a department's database; nothing is connected yet.

    Raises:
        ConfigError: the URL cannot be parsed or its driver is not installed, naming `url`.
    """
    try:
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"{where}: setting url={redact(url)!r} cannot be used ({exc}); give an SQLAlchemy URL such as "
            "postgresql+psycopg://user@host/db, sqlite:////path/file.db or mysql+pymysql://user@host/db, "
            "with its driver installed"
        ) from None


def redact(url: str) -> str:
    """`url` without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def reflect(engine: Engine, name: str, where: str) -> Table | None:
    """The table (or view) `name`, optionally `schema.table`, as the database describes it;
    None if there is none.

    Raises:
        ConfigError: the database cannot be reached, naming `url`.
    """
    schema, _, table = name.rpartition(".")
    try:
        with engine.connect() as conn:
            return Table(table, MetaData(), schema=schema or None, autoload_with=conn)
    except NoSuchTableError:
        return None
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"{where}: cannot read table {name} from the department database of setting "
            f"url={redact(str(engine.url))!r}: {db_error_text(exc)}; check the URL, the database user's rights "
            "and that the database is up"
        ) from None


def is_unique(engine: Engine, table: Table, column: str) -> bool:
    """Whether the schema makes `column` alone unique: the primary key, a unique constraint
    or a unique index on it alone."""
    inspector = inspect(engine)
    name, schema = table.name, table.schema
    if list(table.primary_key.columns.keys()) == [column]:
        return True
    if any(c["column_names"] == [column] for c in inspector.get_unique_constraints(name, schema)):
        return True
    return any(i["unique"] and i["column_names"] == [column] for i in inspector.get_indexes(name, schema))


def is_view(engine: Engine, table: Table) -> bool:
    try:
        return table.name in inspect(engine).get_view_names(table.schema)
    except NotImplementedError:
        return False


def xml_bytes(value: Any) -> bytes:
    """An envelope read from a column as bytes: binary as stored; text encoded as its XML
    declaration says (a GBK document stays GBK), else UTF-8. NULL is empty (and refused)."""
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    text = str(value)
    declared = _DECLARED_TEXT.match(text)
    try:
        return text.encode(declared.group(1) if declared else "utf-8")
    except (LookupError, UnicodeEncodeError):
        return text.encode("utf-8")  # the ingress then says what is wrong with it


def xml_text(body: bytes) -> str:
    """An envelope as text for a text column, decoded as its XML declaration says."""
    declared = _DECLARED.match(body)
    try:
        return body.decode(declared.group(1).decode("ascii") if declared else "utf-8")
    except (LookupError, UnicodeDecodeError):
        return body.decode("utf-8", errors="replace")


def encode_mark(value: Any) -> str:
    """A column value as the text of a watermark."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def decode_mark(column: Column[Any], text: str) -> Any:
    """The text of a watermark as a value to compare `column` with.

    Raises:
        ValueError: the text does not fit the column's type.
    """
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return text
    if kind is datetime:
        return datetime.fromisoformat(text)
    if kind is date:
        return date.fromisoformat(text)
    if kind is time:
        return time.fromisoformat(text)
    if kind in (int, float, Decimal):
        return kind(text)
    return text


class FrontDbInbound(InboundAdapter):
    """Reads a department's exchange table after a watermark and submits each row's envelope."""

    summary: ClassVar[str] = "reads envelopes from a table of the department's front-end database (前置机)"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("url", "SQLAlchemy URL of the department's database, e.g. postgresql+psycopg://user@host/db", "url",
                secret=True),
        Setting("table", "the exchange table (or schema.table) the department writes its envelopes to"),
        Setting("incremental_column", "a NOT NULL unique column that grows with every new row, e.g. an identity id"),
        Setting("envelope_column", "the column holding the envelope XML (text or binary)"),
        Setting("batch", "rows read and submitted at a time", "int", required=False, default=500),
        Setting("interval", "seconds between polls when the table has nothing new", "float", required=False,
                default=1.0),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        super().__init__(department, context, name=name)
        if self.config["batch"] < 1:
            raise ConfigError(f"{self.name}: setting batch={self.config['batch']} must be at least 1")
        if self.config["interval"] <= 0:
            raise ConfigError(f"{self.name}: setting interval={self.config['interval']} must be more than 0 seconds")
        self.interval = self.config["interval"]
        self._engine: Engine | None = None
        self._table: Table | None = None
        self._watermark = Watermark(context.engine, self.name, self.department)

    def start(self) -> None:
        """Reflect the table and check the two columns.

        Raises:
            ConfigError: the database is unreachable, the table or a column is missing, or the
                incremental column may hold NULL or repeated values; naming the setting.
        """
        url, name = self.config["url"], self.config["table"]
        self._engine = engine = open_database(url, self.name)
        table = reflect(engine, name, self.name)
        if table is None:
            raise ConfigError(f"{self.name}: setting table={name!r}: no such table or view in {redact(url)}")
        for setting in ("incremental_column", "envelope_column"):
            column = self.config[setting]
            if column not in table.c:
                raise ConfigError(
                    f"{self.name}: setting {setting}={column!r}: table {name} has no such column "
                    f"(its columns: {', '.join(table.c.keys())})"
                )
        increment = self.config["incremental_column"]
        if is_view(engine, table):
            log.warning("%s: %s is a view, so that the adapter cannot check that %s is NOT NULL and unique; "
                        "rows with a NULL or a repeated value there could be missed", self.name, name, increment)
        elif table.c[increment].nullable and not table.c[increment].primary_key:
            raise ConfigError(
                f"{self.name}: setting incremental_column={increment!r}: the column allows NULL, and rows without "
                f"a value would never be read; make it NOT NULL, or name an identity column"
            )
        elif not is_unique(engine, table, increment):
            raise ConfigError(
                f"{self.name}: setting incremental_column={increment!r}: the column is not unique in {name}, so rows "
                f"with the value of the watermark could be missed; name a unique column that grows with every row "
                f"(an identity id), or add a unique index on {increment}"
            )
        mark = self._watermark.get()
        if mark is not None:
            try:
                decode_mark(table.c[increment], mark)
            except ValueError:
                raise ConfigError(
                    f"{self.name}: the stored watermark {mark!r} does not fit column {increment} "
                    f"({table.c[increment].type}); was incremental_column changed? Give the adapter a new name "
                    "to start from the first row"
                ) from None
        self._table = table
        log.info("%s: reading table %s of %s after %s", self.name, name, redact(url),
                 "the start" if mark is None else f"{increment} {mark}")

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def health(self) -> Health:
        if self._engine is None or self._table is None:
            return Health(False, "not started")
        try:
            with self._engine.connect() as conn:
                conn.execute(select(self._table.c[self.config["incremental_column"]]).limit(1))
        except SQLAlchemyError as exc:
            return Health(False, f"department database unreachable: {db_error_text(exc)}")
        try:
            return Health(True, f"read up to {self.config['incremental_column']} {self._watermark.get()}")
        except TransientError as exc:
            return Health(False, exc.message)

    def poll(self) -> int:
        """Read up to `batch` rows after the watermark, submit them, dead-letter the refused
        ones and move the watermark past what the broker confirmed.

        Raises:
            TransientError: the broker did not take a row; the watermark stays before it.
            SQLAlchemyError: a database cannot be read (the run loop tries again later).
        """
        assert self._engine is not None and self._table is not None, "start() first"
        increment = self._table.c[self.config["incremental_column"]]
        envelope = self._table.c[self.config["envelope_column"]]
        mark = self._watermark.get()
        query = select(increment, envelope).order_by(increment).limit(self.config["batch"])
        if mark is not None:
            query = query.where(increment > decode_mark(increment, mark))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return 0
        bodies = [xml_bytes(row[1]) for row in rows]
        receipts = self.submit(bodies)
        passed = 0
        for row, body, receipt in zip(rows, bodies, receipts, strict=True):
            if receipt.failure is not None and not receipt.failure.permanent:
                break  # not the row's fault (the broker did not take it): read it again later
            if receipt.failure is not None:
                self._dead_letter(body, receipt, encode_mark(row[0]))
            passed += 1
        if passed:
            self._watermark.advance(encode_mark(rows[passed - 1][0]))
        if passed < len(rows):
            failure = receipts[passed].failure
            assert failure is not None
            raise TransientError(
                f"the bus did not take the row {increment.name}={encode_mark(rows[passed][0])}: {failure.message}"
            )
        return len(rows)

    def _dead_letter(self, body: bytes, receipt: Receipt, value: str) -> None:
        """Store a refused row as a dead letter (once per row, however often it is read) and log it."""
        assert receipt.failure is not None
        where = f"row {self.config['incremental_column']}={value} of {self.config['table']}"
        stored = self.submitter.dead_letter(body, receipt, self.name, key=value, where=where)
        log.warning("%s: %s refused, dead letter #%s: %s: %s", self.name, where, stored, receipt.failure.code,
                    receipt.failure.describe())


class FrontDbOutbound(OutboundAdapter):
    """Writes a department's deliveries into a table of its front-end database, once per message id.

    The table has the columns message_id (unique), sender, resource, version, operation,
    body (the envelope XML as text, or binary) and received_at; other columns of its own must
    allow NULL or have a default. With `create = true` a missing table is created.
    """

    summary: ClassVar[str] = "writes deliveries into a table of the department's front-end database (前置机)"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("url", "SQLAlchemy URL of the department's database, e.g. postgresql+psycopg://user@host/db", "url",
                secret=True),
        Setting("table", "the table (or schema.table) deliveries are written to"),
        Setting("create", "create the table if it is missing", "bool", required=False, default=False),
    )

    def __init__(self, department: Department, context: Context, *, name: str | None = None) -> None:
        super().__init__(department, context, name=name or f"outbound frontdb_out of department {department.code}")
        self._engine: Engine | None = None
        self._table: Table | None = None
        self._held: HeldConnection | None = None
        self._insert: Any = None

    def start(self) -> None:
        """Reflect (or create) the table and check its columns.

        Raises:
            ConfigError: the database is unreachable, the table is missing (naming the columns
                to create) or lacks a column, message_id is not unique, or a column of its
                own needs a value the adapter does not write.
        """
        url, name = self.config["url"], self.config["table"]
        self._engine = engine = open_database(url, self.name)
        if engine.dialect.name not in ("postgresql", "sqlite", "mysql", "mariadb"):
            raise ConfigError(f"{self.name}: setting url={redact(url)!r}: {engine.dialect.name} is not supported for "
                              "deliveries; use PostgreSQL, SQLite or MySQL/MariaDB")
        table = reflect(engine, name, self.name)
        if table is None and self.config["create"]:
            table = self._create(engine, name)
        if table is None:
            raise ConfigError(
                f"{self.name}: setting table={name!r}: no such table in {redact(url)}; create it with the columns "
                f"{_OUT_HINT}, or set create = true"
            )
        self._check(engine, table)
        self._table, self._held = table, HeldConnection(engine)
        self._insert = self._statement(engine, table)

    def _create(self, engine: Engine, name: str) -> Table:
        schema, _, plain = name.rpartition(".")
        table = Table(
            plain, MetaData(), Column("message_id", String(64), primary_key=True),
            Column("sender", String(32), nullable=False), Column("resource", String(64), nullable=False),
            Column("version", String(16), nullable=False), Column("operation", String(16), nullable=False),
            Column("body", Text, nullable=False), Column("received_at", DateTime(timezone=True), nullable=False),
            schema=schema or None,
        )
        try:
            table.create(engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise ConfigError(f"{self.name}: cannot create table {name} (setting create): {db_error_text(exc)}") from None
        log.info("%s: created table %s in %s", self.name, name, redact(self.config["url"]))
        reflected = reflect(engine, name, self.name)  # as the database sees it, like an existing table
        return table if reflected is None else reflected

    def _check(self, engine: Engine, table: Table) -> None:
        name = self.config["table"]
        missing = [c for c in OUT_COLUMNS if c not in table.c]
        if missing:
            raise ConfigError(f"{self.name}: setting table={name!r}: the table lacks column(s) {', '.join(missing)}; "
                              f"it needs {_OUT_HINT}")
        if not is_unique(engine, table, "message_id"):
            raise ConfigError(f"{self.name}: setting table={name!r}: message_id is not unique, so a message delivered "
                              f"twice would be stored twice; add a unique index on {name}(message_id)")
        for column in table.c:
            if column.name in OUT_COLUMNS or column.nullable or column.server_default is not None:
                continue
            if column.identity is not None or (column.primary_key and isinstance(column.type, Integer)):
                continue
            raise ConfigError(f"{self.name}: setting table={name!r}: column {column.name} is NOT NULL without a "
                              f"default, and the adapter writes only {', '.join(OUT_COLUMNS)}; give it a default")

    @staticmethod
    def _statement(engine: Engine, table: Table) -> Any:
        """A callable (conn, rows) inserting rows, skipping message ids already there."""
        dialect = engine.dialect.name
        if dialect in ("postgresql", "sqlite") and table.schema is None and _PLAIN_NAME.match(table.name):
            return IdempotentInsert(engine, table)  # the bus's own way (arrays on PostgreSQL)
        if dialect == "postgresql":
            statement: Any = postgresql.insert(table).on_conflict_do_nothing()
        elif dialect == "sqlite":
            statement = sqlite.insert(table).on_conflict_do_nothing()
        else:  # MySQL/MariaDB: a duplicate message id updates nothing
            statement = mysql.insert(table)
            statement = statement.on_duplicate_key_update(message_id=statement.inserted.message_id)

        def insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
            if rows:
                conn.execute(statement, rows)

        return insert

    def stop(self) -> None:
        if self._held is not None:
            self._held.close()
        if self._engine is not None:
            self._engine.dispose()

    def health(self) -> Health:
        if self._engine is None:
            return Health(False, "not started")
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            return Health(False, f"department database unreachable: {db_error_text(exc)}")
        return Health(True)

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Insert the batch in one transaction; a message id already there is left as it is.

        Raises:
            TransientError: the database cannot be reached or is busy; the batch comes again.
        """
        if self._table is None:
            self.start()
        assert self._table is not None and self._held is not None
        if not envelopes:
            return []
        binary = isinstance(self._table.c["body"].type, LargeBinary)
        now = utcnow()
        rows = [
            {"message_id": e.message_id, "sender": e.sender, "resource": e.resource, "version": e.version,
             "operation": e.operation, "body": e.body if binary else xml_text(e.body), "received_at": now}
            for e in envelopes
        ]
        try:
            with self._held.transaction() as conn:
                self._insert(conn, rows)
        except (DataError, IntegrityError) as exc:
            # a row the table will never take; one by one, so that only that one is dead-lettered
            if len(envelopes) > 1:
                return [result for e in envelopes for result in self.deliver([e])]
            return [SinkRefused(f"table {self.config['table']} of department {self.department} refused message "
                                f"{envelopes[0].message_id}: {db_error_text(exc)}")]
        except (SQLAlchemyError, OSError) as exc:  # down, restarting, locked: worth retrying
            raise TransientError(
                f"front-end database of department {self.department} unavailable: {db_error_text(exc)}"
            ) from exc
        return [None] * len(envelopes)
