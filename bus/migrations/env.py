"""Alembic environment for govbus: run by bus.db.migrate, on the connection it hands over.

Each package keeps its own branch of migrations in its own folder (bus/migrations/versions,
schemas/migrations, catalog_registry/migrations ...), found through the `govbus.migrations`
entry-point group, so that no package imports another's tables to migrate them.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=config.attributes.get("metadata"),
    include_object=config.attributes.get("include_object"),
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
