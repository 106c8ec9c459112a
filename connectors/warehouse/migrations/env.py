"""Alembic environment: runs online against the engine handed over in the config."""

from __future__ import annotations

from alembic import context

from connectors.warehouse.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
