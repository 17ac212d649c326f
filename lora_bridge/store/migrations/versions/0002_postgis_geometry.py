"""PostGIS geometry for positions and the reserve's features, with GiST indexes (PostgreSQL only).

positions.geom is a stored generated column (a point from lon/lat), so no writer can forget it;
geography_features.geom is set by a trigger from the GeoJSON column (NULL when that is not a
geometry PostGIS reads). SQLite keeps lat/lon and GeoJSON only: on it this revision does nothing.

Revision ID: 0002_postgis_geometry
Revises: 0001_baseline
Create Date: 2026-12-02 06:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0002_postgis_geometry"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute(
        "ALTER TABLE positions ADD COLUMN geom geometry(Point, 4326) "
        "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(lon, lat), 4326)) STORED"
    )
    op.execute("CREATE INDEX ix_positions_geom ON positions USING gist (geom)")
    op.execute("ALTER TABLE geography_features ADD COLUMN geom geometry(Geometry, 4326)")
    op.execute(
        """
        CREATE FUNCTION tembo_geography_features_geom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.geom := ST_SetSRID(ST_GeomFromGeoJSON(NEW.geometry::text), 4326);
            RETURN NEW;
        EXCEPTION WHEN others THEN
            NEW.geom := NULL;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER geography_features_geom BEFORE INSERT OR UPDATE OF geometry ON geography_features "
        "FOR EACH ROW EXECUTE FUNCTION tembo_geography_features_geom()"
    )
    op.execute("CREATE INDEX ix_geography_features_geom ON geography_features USING gist (geom)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS geography_features_geom ON geography_features")
    op.execute("DROP FUNCTION IF EXISTS tembo_geography_features_geom()")
    op.execute("ALTER TABLE geography_features DROP COLUMN IF EXISTS geom")
    op.execute("ALTER TABLE positions DROP COLUMN IF EXISTS geom")
