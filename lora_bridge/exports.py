"""Fixes as files others read: CSV, GeoJSON, GeoPackage and Movebank CSV.

One writer for the animal page's download buttons and the HTTP API's herd exports, so both give
the same files. Plain functions over the service layer's `PositionView`s, already filtered for
what the asking role may see (coarsened and delayed for roles without exact positions); nothing
here reads the store. Geometry through geopandas (WGS84, EPSG:4326).

Movebank CSV uses Movebank's own attribute names and timestamp format (`yyyy-MM-dd HH:mm:ss.SSS`,
UTC), as in a Movebank download: event-id, visible, timestamp, location-long, location-lat,
sensor-type, individual-taxon-canonical-name, tag-local-identifier, individual-local-identifier,
animal-nickname, study-name. The event-id is the stored fix's id, so one fix has one event-id in every export.
The individual-local-identifier is the animal's Tembo id, which Movebank's attribute dictionary asks to be
unique within the study and which a rename does not change; the name a ranger gives the animal goes in
`animal-nickname` (the dictionary's "animal nickname", an alternate identifier shown as a display name).

The plain CSV is for spreadsheets: a text cell a spreadsheet would run as a formula starts with an apostrophe
(`spreadsheet_text`). The Movebank CSV keeps every value as it is.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from shapely.geometry import Point

from lora_bridge.access import Viewer, privacy, require, roles

WGS84 = "EPSG:4326"
COLUMNS = ("animal_id", "name", "species", "device_id", "time_utc", "lat", "lon")
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
    "animal-nickname",
    "study-name",
)
MEDIA_TYPES = {
    "csv": "text/csv",
    "geojson": "application/geo+json",
    "gpkg": "application/geopackage+sqlite3",
    "movebank.csv": "text/csv",
}
_COLUMN_TYPES = {"animal_id": object, "name": object, "species": object, "device_id": object, "time_utc": object,
                 "lat": "float64", "lon": "float64"}
GPS = "gps"
# Decimals of a coordinate in the text files (CSV, Movebank CSV, GeoJSON): 1e-7 degree is about 1 cm, finer than
# the wire's position (int24 degrees, about 2 m) and than any role's coarsening, so no file loses a place a role
# may see. Written in fixed notation, one width: a fix by the equator is 0.0000100, not Python's "1e-05".
COORDINATE_DECIMALS = 7
COORDINATE_FORMAT = f"%.{COORDINATE_DECIMALS}f"
DEFAULT_STUDY = "Tembo collars"
# OWASP "CSV Injection": a spreadsheet (Excel, LibreOffice Calc) takes a cell starting with one of these as a
# formula. In the plain CSV, meant for spreadsheets, such a text cell gets a leading apostrophe, which the
# spreadsheet reads as "this is text" (and shows without it). Not in the Movebank CSV: Movebank stores its
# values as given (an apostrophe would become part of the animal's nickname there).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"
# RFC 4180's line break between records: the csv writer then quotes a value holding a lone CR (with pandas' "\n"
# a name with a carriage return went out bare and split its row in two for every CSV reader).
CSV_LINE_END = "\r\n"

Species = str | Mapping[str, str | None] | None


def herd_fixes(tracks: Mapping[str, Iterable[Any]]) -> list[Any]:
    """Every animal's track as one list of fixes (the order `fixes_frame` writes them in)."""
    return [fix for track in tracks.values() for fix in track]


def _order(fix: Any) -> tuple:
    animal = str(fix.animal_id)
    return (len(animal), animal, fix.time)


def utc_millis(time: datetime, separator: str = "T", zone: str = "Z") -> str:
    """A fix's time in UTC to the millisecond, always in one width (`2026-11-20T00:00:00.000Z`): a file whose
    times are written in two shapes (whole seconds and fractions) is not read as date-times by pandas'
    `parse_dates`, which takes the first row's shape for all."""
    utc = time.astimezone(UTC)
    return utc.strftime(f"%Y-%m-%d{separator}%H:%M:%S.") + f"{utc.microsecond // 1000:03d}{zone}"


def _species_of(species: Species, animal_id: str) -> str | None:
    if species is None or isinstance(species, str):
        return species
    return species.get(animal_id)


def fixes_frame(fixes: Sequence[Any], species: Species = None) -> pd.DataFrame:
    """The fixes as a table, animal by animal, oldest first; `species` one name or one per animal id."""
    rows = [
        {
            "animal_id": str(p.animal_id),
            "name": p.name,
            "species": _species_of(species, str(p.animal_id)),
            "device_id": p.device_id,
            "time_utc": utc_millis(p.time),
            "lat": float(p.lat),
            "lon": float(p.lon),
        }
        for p in sorted(fixes, key=_order)
    ]
    # Typed columns, so a file with no fix has the schema of one with fixes (lat/lon numbers, not text).
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(_COLUMN_TYPES)


def fixes_geoframe(fixes: Sequence[Any], species: Species = None) -> gpd.GeoDataFrame:
    """The fixes as point features in WGS84."""
    frame = fixes_frame(fixes, species)
    geometry = [Point(lon, lat) for lon, lat in zip(frame["lon"], frame["lat"], strict=True)]
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)


def spreadsheet_text(value: Any) -> Any:
    """A text cell as a spreadsheet must read it: with TEXT_MARK before a value starting with one of
    FORMULA_STARTS (`=HYPERLINK(...)` as a name stays text); anything else, numbers included, unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return TEXT_MARK + value
    return value


def to_csv(fixes: Sequence[Any], species: Species = None) -> bytes:
    """Plain CSV for spreadsheets, one fix a row, lat and lon in degrees to COORDINATE_DECIMALS decimals in fixed
    notation; a text cell that a spreadsheet would take for a formula is marked as text (`spreadsheet_text`)."""
    frame = fixes_frame(fixes, species)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(spreadsheet_text)
    return frame.to_csv(index=False, float_format=COORDINATE_FORMAT, lineterminator=CSV_LINE_END).encode()


def to_geojson(fixes: Sequence[Any], species: Species = None, precision: str | None = None) -> bytes:
    """A GeoJSON FeatureCollection of Point features (RFC 7946: WGS84 longitude, latitude).

    `precision` ("exact" or "coarse") travels as a foreign member of the collection, so whoever
    reads the file knows whether the points are the animals' exact places. Coordinates (and the lat, lon
    properties) are rounded to COORDINATE_DECIMALS decimals, as RFC 7946 (11.2) advises against needless digits.
    """
    rounded = [replace(p, lat=round(float(p.lat), COORDINATE_DECIMALS), lon=round(float(p.lon), COORDINATE_DECIMALS))
               for p in fixes]
    document = json.loads(fixes_geoframe(rounded, species).to_json(drop_id=True))
    if precision is not None:
        document["precision"] = precision
    return json.dumps(document).encode()


def to_geopackage(fixes: Sequence[Any], species: Species = None, layer: str = "fixes") -> bytes:
    """An OGC GeoPackage holding one point layer `layer` in EPSG:4326, `time_utc` a DATETIME field (UTC)."""
    frame = fixes_geoframe(fixes, species)
    # A GeoPackage DATETIME field, not text: a GIS filters and animates the fixes by time (QGIS's temporal
    # controller offers only date-time fields) and geopandas reads them back as UTC date-times.
    frame["time_utc"] = pd.to_datetime(frame["time_utc"], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    with tempfile.TemporaryDirectory(prefix="tembo-export-") as folder:
        path = Path(folder) / "fixes.gpkg"
        # Point even when empty (an empty layer would otherwise be of an unknown geometry type).
        frame.to_file(
            path, layer=layer, driver="GPKG", engine="pyogrio", geometry_type="Point"
        )
        return path.read_bytes()


def to_movebank_csv(fixes: Sequence[Any], species: Species = None, study_name: str = DEFAULT_STUDY) -> bytes:
    """Movebank CSV: Movebank's attribute names, timestamps in UTC to the millisecond.

    A fix's event-id is its stored position's id, the same in every export: Movebank gives each event one
    unique id, and a researcher who merges two exports (last week's and this week's) and drops rows with an
    event-id seen before keeps every fix once. ValueError for a fix with no stored id (numbered per file,
    two files would give one id to two fixes)."""
    ordered = sorted(fixes, key=_order)
    unstored = next((p for p in ordered if p.position_id is None), None)
    if unstored is not None:
        raise ValueError(f"fix of {unstored.name!r} at {utc_millis(unstored.time)} has no stored position id: "
                         "a Movebank event-id is the stored fix's id")
    rows = [
        {
            "event-id": int(p.position_id),
            "visible": "true",
            "timestamp": utc_millis(p.time, " ", ""),
            "location-long": COORDINATE_FORMAT % float(p.lon),
            "location-lat": COORDINATE_FORMAT % float(p.lat),
            "sensor-type": GPS,
            "individual-taxon-canonical-name": _species_of(species, str(p.animal_id)) or "",
            "tag-local-identifier": p.device_id,
            # The animal's id, not its name: renaming an animal would split its track into two individuals
            # in Movebank, and two animals of one name would merge into one.
            "individual-local-identifier": str(p.animal_id),
            "animal-nickname": p.name,
            "study-name": study_name,
        }
        for p in ordered
    ]
    return pd.DataFrame(rows, columns=list(MOVEBANK_COLUMNS)).to_csv(index=False, lineterminator=CSV_LINE_END).encode()


@dataclass(frozen=True)
class ExportFile:
    """One download: the button's label, the file's bytes, its name and media type."""

    label: str
    data: bytes
    filename: str
    media_type: str


def files(fixes: Sequence[Any], species: Species, viewer: Viewer, stem: str) -> list[ExportFile]:
    """The fixes (already as viewer may see them) as the four files the animal page offers (CSV,
    GeoJSON, GeoPackage, Movebank CSV), each with the species and the GeoJSON saying whether the
    points are exact, as the API's are. Forbidden unless viewer's role may export, as on the API
    (rangers, researchers, admins: not the visitor kiosk, not field technicians)."""
    require(viewer, roles.EXPORT)
    precision = privacy.label(viewer)
    return [
        ExportFile("CSV", to_csv(fixes, species), f"{stem}.csv", MEDIA_TYPES["csv"]),
        ExportFile("GeoJSON", to_geojson(fixes, species, precision), f"{stem}.geojson", MEDIA_TYPES["geojson"]),
        ExportFile("GeoPackage", to_geopackage(fixes, species), f"{stem}.gpkg", MEDIA_TYPES["gpkg"]),
        ExportFile("Movebank CSV", to_movebank_csv(fixes, species), f"{stem}_movebank.csv",
                   MEDIA_TYPES["movebank.csv"]),
    ]
