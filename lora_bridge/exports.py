"""An animal's fixes as files others read: CSV, GeoJSON, GeoPackage and Movebank CSV.

Plain functions over the service layer's `PositionView`s (already filtered by what the asking role
may see), returning the file's bytes, so the dashboard's download buttons and the HTTP API give the
same files. Geometry through geopandas (WGS84, EPSG:4326); Movebank CSV with Movebank's attribute
names (`timestamp` as `yyyy-MM-dd HH:mm:ss.SSS` UTC, `location-long`, `location-lat`,
`individual-local-identifier`, `tag-local-identifier`, ...), the columns Movebank's own downloads
carry.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from shapely.geometry import Point

WGS84 = "EPSG:4326"
COLUMNS = ("animal_id", "name", "device_id", "time_utc", "lat", "lon")
MOVEBANK_COLUMNS = (
    "event-id",
    "visible",
    "timestamp",
    "location-long",
    "location-lat",
    "sensor-type",
    "individual-taxon-canonical-name",
    "tag-local-identifier",
    "individual-local-identifier",
    "study-name",
)
MEDIA_TYPES = {
    "csv": "text/csv",
    "geojson": "application/geo+json",
    "gpkg": "application/geopackage+sqlite3",
    "movebank.csv": "text/csv",
}


def fixes_frame(fixes: Sequence[Any]) -> pd.DataFrame:
    """The fixes as a table, oldest first: animal_id, name, device_id, time_utc (ISO 8601), lat, lon."""
    rows = [
        {
            "animal_id": str(p.animal_id),
            "name": p.name,
            "device_id": p.device_id,
            "time_utc": p.time.isoformat().replace("+00:00", "Z"),
            "lat": float(p.lat),
            "lon": float(p.lon),
        }
        for p in sorted(fixes, key=lambda p: p.time)
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def fixes_geoframe(fixes: Sequence[Any]) -> gpd.GeoDataFrame:
    """The fixes as point features in WGS84."""
    frame = fixes_frame(fixes)
    geometry = [Point(lon, lat) for lon, lat in zip(frame["lon"], frame["lat"], strict=True)]
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)


def to_csv(fixes: Sequence[Any]) -> bytes:
    """Plain CSV, one fix a row."""
    return fixes_frame(fixes).to_csv(index=False).encode()


def to_geojson(fixes: Sequence[Any]) -> bytes:
    """A GeoJSON FeatureCollection of Point features (RFC 7946: WGS84 longitude, latitude)."""
    return fixes_geoframe(fixes).to_json(drop_id=True).encode()


def to_geopackage(fixes: Sequence[Any], layer: str = "fixes") -> bytes:
    """An OGC GeoPackage holding one point layer `layer` in EPSG:4326."""
    with tempfile.TemporaryDirectory(prefix="tembo-export-") as folder:
        path = Path(folder) / "fixes.gpkg"
        fixes_geoframe(fixes).to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
        return path.read_bytes()


def to_movebank_csv(fixes: Sequence[Any], species: str, study_name: str = "Tembo") -> bytes:
    """Movebank CSV: Movebank's attribute names, timestamps in UTC to the millisecond."""
    ordered = sorted(fixes, key=lambda p: p.time)
    rows = [
        {
            "event-id": index,
            "visible": "true",
            "timestamp": p.time.strftime("%Y-%m-%d %H:%M:%S.") + f"{p.time.microsecond // 1000:03d}",
            "location-long": f"{float(p.lon):.7f}",
            "location-lat": f"{float(p.lat):.7f}",
            "sensor-type": "gps",
            "individual-taxon-canonical-name": species,
            "tag-local-identifier": p.device_id,
            "individual-local-identifier": p.name,
            "study-name": study_name,
        }
        for index, p in enumerate(ordered, start=1)
    ]
    buffer = io.StringIO()
    pd.DataFrame(rows, columns=list(MOVEBANK_COLUMNS)).to_csv(buffer, index=False)
    return buffer.getvalue().encode()
