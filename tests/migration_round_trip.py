"""A store's migration taken down one revision and up again, as the stories of a new column read it."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from sqlalchemy import create_engine, inspect

from lora_bridge.store import migrate


@dataclass
class RoundTrip:
    """A table's columns at the newest revision, after the downgrade (and the revision it reached), and after the
    upgrade again (and the revision it reached)."""

    columns: set[str]
    down_at: str | None
    without: set[str]
    up_at: str | None
    again: set[str]


def round_trip(store_url: str, table: str, down_to: str) -> RoundTrip:
    """Upgrade the store at store_url to the newest revision, downgrade it to down_to and upgrade it again, reading
    table's columns at each step (SQLite in batch mode, PostgreSQL in place)."""
    engine = create_engine(store_url)
    try:
        migrate.upgrade(engine)
        columns = {c["name"] for c in inspect(engine).get_columns(table)}
        with engine.begin() as connection:
            command.downgrade(migrate.alembic_config(connection), down_to)
        down_at = migrate.current_revision(engine)
        without = {c["name"] for c in inspect(engine).get_columns(table)}
        up_at = migrate.upgrade(engine)
        again = {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()
    return RoundTrip(columns, down_at, without, up_at, again)
