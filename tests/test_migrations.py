"""The Alembic migrations create exactly the tables the code declares, on both databases: a
column added to a Table without its migration would fail here, not in production."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

import bus.deadletter  # noqa: F401  (declares its tables on bus.db.metadata)
import bus.dedup  # noqa: F401
import bus.deliver  # noqa: F401
from bus.db import metadata as bus_metadata
from bus.db import migrate
from adapters.tables import metadata as adapters_metadata
from catalog_registry.tables import metadata as catalog_metadata
from masterdata.tables import metadata as masterdata_metadata
from schemas.registry import metadata as schemas_metadata

METADATA = {"bus": bus_metadata, "schemas": schemas_metadata, "catalog": catalog_metadata, "adapters": adapters_metadata,
            "masterdata": masterdata_metadata}


def differences(url: str) -> dict[str, list[object]]:
    engine = create_engine(url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            found: dict[str, list[object]] = {}
            for name, metadata in METADATA.items():
                # each package's tables only: the others' are not removals
                diff = [d for d in compare_metadata(context, metadata) if not _removal_of_another(d, metadata)]
                if diff:
                    found[name] = diff
            return found
    finally:
        engine.dispose()


def _removal_of_another(diff: object, metadata: MetaData) -> bool:
    if isinstance(diff, tuple) and diff and diff[0] == "remove_table":
        return diff[1].name not in metadata.tables or diff[1].name == "alembic_version"
    if isinstance(diff, tuple) and diff and diff[0] in ("remove_index", "remove_column", "remove_constraint"):
        table = getattr(diff[1], "table", None) if diff[0] == "remove_index" else None
        name = table.name if table is not None else (diff[2] if diff[0] == "remove_column" else None)
        return name is not None and name not in metadata.tables
    return False


def test_the_migrations_match_the_tables_on_sqlite(tmp_path):
    assert differences(f"sqlite:///{tmp_path / 'govbus.db'}") == {}


@pytest.mark.postgres
def test_the_migrations_match_the_tables_on_postgresql(pg_url):
    assert differences(pg_url) == {}
