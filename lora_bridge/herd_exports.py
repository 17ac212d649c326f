"""A herd's positions as files others read (the HTTP API's exports): Movebank CSV, GeoJSON, GeoPackage.

One animal's page uses `lora_bridge.exports`; both write Movebank's column names from there.

The exports are made from views the service layer already filtered for the viewer (positions
coarsened and delayed for roles without exact positions); nothing here reads the store.

Movebank CSV uses Movebank's own attribute names and timestamp format (`yyyy-MM-dd HH:mm:ss.SSS`,
UTC), as in a Movebank download: event-id, visible, timestamp, location-long, location-lat,
sensor-type, individual-taxon-canonical-name, tag-local-identifier, individual-local-identifier,
study-name.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import Point

from lora_bridge import exports
from lora_bridge.views import AnimalView, PositionView

MOVEBANK_COLUMNS = exports.MOVEBANK_COLUMNS  # one list of Movebank's names, shared with the animal page
MOVEBANK_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # cut to milliseconds below
GPS = "gps"
GEOPACKAGE_LAYER = "positions"
DEFAULT_STUDY = "Tembo collars"


def _rows(tracks: Mapping[str, Sequence[PositionView]], animals: Mapping[str, AnimalView]) -> list[dict[str, Any]]:
    rows = []
    for animal_id in sorted(tracks, key=lambda a: (len(a), a)):
        animal = animals.get(animal_id)
        for fix in tracks[animal_id]:
            rows.append(
                {
                    "animal_id": animal_id,
                    "name": fix.name,
                    "species": animal.species if animal else None,
                    "device_id": fix.device_id,
                    "time": fix.time,
                    "lat": float(fix.lat),
                    "lon": float(fix.lon),
                }
            )
    return rows


def movebank_csv(
    tracks: Mapping[str, Sequence[PositionView]],
    animals: Mapping[str, AnimalView],
    study_name: str = DEFAULT_STUDY,
) -> str:
    """Tracks as a Movebank CSV (one row per fix, numbered from 1 in the file's order)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MOVEBANK_COLUMNS)
    for number, row in enumerate(_rows(tracks, animals), start=1):
        writer.writerow(
            [
                number,
                "true",
                row["time"].strftime(MOVEBANK_TIME_FORMAT)[:-3],
                f"{row['lon']:.7f}",
                f"{row['lat']:.7f}",
                GPS,
                row["species"] or "",
                row["device_id"],
                row["name"],
                study_name,
            ]
        )
    return out.getvalue()


def geojson(
    tracks: Mapping[str, Sequence[PositionView]], animals: Mapping[str, AnimalView], precision: str
) -> dict[str, Any]:
    """Tracks as a GeoJSON FeatureCollection of Point fixes (RFC 7946: WGS 84, lon before lat)."""
    return {
        "type": "FeatureCollection",
        "precision": precision,
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
                "properties": {
                    "animal_id": row["animal_id"],
                    "name": row["name"],
                    "species": row["species"],
                    "device_id": row["device_id"],
                    "time": row["time"].isoformat(),
                },
            }
            for row in _rows(tracks, animals)
        ],
    }


def geodataframe(tracks: Mapping[str, Sequence[PositionView]], animals: Mapping[str, AnimalView]) -> gpd.GeoDataFrame:
    """Tracks as a GeoDataFrame of Point fixes in EPSG:4326, times as aware UTC."""
    rows = _rows(tracks, animals)
    frame = gpd.GeoDataFrame(
        {key: [row[key] for row in rows] for key in ("animal_id", "name", "species", "device_id", "time")},
        geometry=[Point(row["lon"], row["lat"]) for row in rows],
        crs="EPSG:4326",
    )
    return frame


def geopackage(tracks: Mapping[str, Sequence[PositionView]], animals: Mapping[str, AnimalView]) -> bytes:
    """Tracks as a GeoPackage file (layer `positions`, EPSG:4326), as bytes."""
    frame = geodataframe(tracks, animals)
    with tempfile.TemporaryDirectory(prefix="tembo-export-") as folder:
        path = Path(folder) / "positions.gpkg"
        frame.to_file(path, layer=GEOPACKAGE_LAYER, driver="GPKG")
        return path.read_bytes()
