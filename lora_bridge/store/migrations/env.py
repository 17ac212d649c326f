"""Alembic's entry for the Tembo store: runs revisions on the connection `lora_bridge.store.migrate`
hands over (config.attributes["connection"]), SQLite in batch mode so ALTERs work there too."""

from __future__ import annotations

from alembic import context

from lora_bridge.store.migrate import include_object
from lora_bridge.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    include_object=include_object,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
