"""How far an inbound adapter has read its source: a named watermark in `adapter_watermark`.

An inbound adapter reads its source in order of some increasing value (a change sequence, a
timestamp column, an id), submits what it read, and only once the broker has confirmed the
submission moves its watermark past it. A crash in between repeats the records after the
watermark, never skips them; the ingress drops the repeats by message id.

The value is opaque text: the source decides what "after" means (the adapter hands the
stored value back to it). One row per adapter name, so two adapters must not share a name.
"""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from bus.db import db_error_text, utcnow
from bus.errors import ConfigError, TransientError

from adapters.tables import watermark


class Watermark:
    """The watermark of the adapter named `adapter`, reading for `department`.

    Safe to share between threads: each call uses its own connection and transaction.
    """

    def __init__(self, engine: Engine, adapter: str, department: str) -> None:
        if not adapter or len(adapter) > watermark.c.adapter.type.length:  # type: ignore[attr-defined]
            raise ConfigError(f"adapter name {adapter!r} must be 1 to 100 characters (it keys the adapter's watermark)")
        self.engine = engine
        self.adapter = adapter
        self.department = department
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert(watermark)

    def get(self) -> str | None:
        """The stored value, or None when the adapter has read nothing yet.

        Raises:
            ConfigError: the name's watermark belongs to another department (two adapters
                share a name).
            TransientError: the database cannot be read now.
        """
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(watermark.c.department, watermark.c.value).where(watermark.c.adapter == self.adapter)
                ).first()
        except Exception as exc:
            raise TransientError(f"watermark of adapter {self.adapter} cannot be read: {db_error_text(exc)}") from exc
        if row is None:
            return None
        self._check(row.department)
        return str(row.value)

    def advance(self, value: str) -> None:
        """Store `value` as the new watermark. Call it only after what was read up to it is
        safely confirmed or stored.

        Raises:
            ConfigError: as for `get`.
            TransientError: the database cannot be written now; the old value stays, and the
                records after it will be read again.
        """
        now = utcnow()
        statement = self._insert.values(adapter=self.adapter, department=self.department, value=value, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[watermark.c.adapter],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
            where=watermark.c.department == self.department,
        ).returning(watermark.c.adapter)  # no row back: the name is another department's (rowcount is not reliable here)
        try:
            with self.engine.begin() as conn:
                written = conn.execute(statement).first() is not None
                owner = None if written else conn.execute(
                    select(watermark.c.department).where(watermark.c.adapter == self.adapter)
                ).scalar()
        except Exception as exc:
            raise TransientError(f"watermark of adapter {self.adapter} cannot be stored: {db_error_text(exc)}") from exc
        if owner is not None:
            self._check(owner)

    def _check(self, owner: str) -> None:
        if owner != self.department:
            raise ConfigError(
                f"adapter name {self.adapter!r} already keeps the watermark of department {owner}, not {self.department}; "
                "give each adapter its own name"
            )
