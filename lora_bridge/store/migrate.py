"""Schema migrations of the Tembo store (Alembic), applied when a store opens or by `tembo bridge migrate`.

The revisions live in `lora_bridge/store/migrations/versions/`; docs/store-migrations.md says how to
add one. PostgreSQL gets PostGIS geometry columns (filled by the database from lat/lon and GeoJSON)
with GiST indexes that the SQLAlchemy models do not declare: SQLite keeps lat/lon only, and
`include_object` keeps those PostGIS-only objects out of model comparisons.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import geoalchemy2  # noqa: F401 - teaches SQLAlchemy to reflect PostGIS geometry columns
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE_REVISION = "0001_baseline"
# The tables a store made before migrations has (by Base.metadata.create_all): the baseline's.
BASELINE_TABLES = (
    "devices", "geography_features", "raw_uplinks", "animals", "dead_letters", "activity_summaries", "alerts",
    "positions", "alert_events", "downlinks",
)
# Columns and indexes only PostgreSQL has (PostGIS); the models do not declare them.
POSTGIS_ONLY = {
    ("positions", "geom"),
    ("geography_features", "geom"),
    ("positions", "ix_positions_geom"),
    ("geography_features", "ix_geography_features_geom"),
}
# Tables PostGIS brings along that are not Tembo's.
FOREIGN_TABLES = {"spatial_ref_sys", "alembic_version"}
# Serialises two bridge workers migrating one PostgreSQL store at the same moment.
ADVISORY_LOCK_ID = 0x7E4B0


class StoreFromANewerTembo(Exception):
    """The store is at a revision these migrations do not know: a newer Tembo migrated it."""

    def __init__(self, revision: str) -> None:
        super().__init__(f"the store is at revision {revision!r}, which this Tembo does not know")
        self.revision = revision


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the Tembo store (optionally bound to an open connection)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migrations folder."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no store migrations found")
    return head


def revisions() -> list[str]:
    """Every revision of the migrations folder, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    """The revision the store at engine is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the store's schema to revision (default: the newest); returns the revision it is at.

    A store made before migrations existed (tables but no alembic_version) is stamped at the
    baseline first, which describes exactly those tables. StoreFromANewerTembo, the store untouched,
    when it is at a revision these migrations do not know.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        context = MigrationContext.configure(connection)
        before = context.get_current_revision()
        if before == head_revision() and revision == "head":
            return before
        if before is not None and before not in revisions():
            # Alembic said only "Can't locate revision": an operator who rolled Tembo back after an
            # upgrade had been told the file "cannot be used as the store".
            raise StoreFromANewerTembo(before)
        config = alembic_config(connection)
        if before is None and _has_tembo_tables(connection):
            _adopt_unversioned(connection)
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("store migrated", extra={"from_revision": before, "to_revision": after})
    return after or ""


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave PostGIS's own tables and Tembo's PostGIS-only columns out of autogenerate / compare."""
    if type_ == "table" and name in FOREIGN_TABLES:
        return False
    if type_ in ("column", "index") and reflected and compare_to is None:
        table = getattr(getattr(obj, "table", None), "name", None)
        if (table, name) in POSTGIS_ONLY:
            return False
    return True


def _has_tembo_tables(connection: Connection) -> bool:
    return inspect(connection).has_table("raw_uplinks")


def _adopt_unversioned(connection: Connection) -> None:
    # Stores made before migrations named the reserve's features table "geography".
    names = set(inspect(connection).get_table_names())
    if "geography" in names and "geography_features" not in names:
        connection.execute(text("ALTER TABLE geography RENAME TO geography_features"))
