"""Tembo's store: SQLAlchemy 2.0 tables and the database handle (SQLite embedded, PostgreSQL at scale)."""

from lora_bridge.store.database import Database, open_database
from lora_bridge.store.tables import Base

__all__ = ["Base", "Database", "open_database"]
