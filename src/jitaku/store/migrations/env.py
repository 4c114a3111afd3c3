"""Alembic environment: runs on the connection jitaku hands it (see store/engine.py)."""

from alembic import context

from jitaku.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
