"""Fixes as files others read: CSV, GeoJSON, GeoPackage, zipped ESRI Shapefile and Movebank CSV.

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

The Shapefile (for park GIS staff on QGIS or ArcGIS) is the GeoPackage's point layer within the limits of the
format (ESRI's Shapefile Technical Description, GDAL's "ESRI Shapefile / DBF" driver), each met on purpose and
said in the zip's README.txt: field names of at most 10 characters (`shapefile_field_names`), no date-time
field (`time_utc` is ISO 8601 text in UTC), text of at most 254 bytes a value (a longer one is cut at a
character and listed), one geometry type a file (points), 2 GB a part (a larger export is refused before it is
written, `ExportTooLarge`), text in UTF-8 (the .cpg says so, so animal names in any script survive).
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lora_bridge.access import Viewer, privacy, require, roles
from lora_bridge.errors import ExportTooLarge

if TYPE_CHECKING:  # pandas and geopandas load on the first export, not when the bridge starts (about 0.7 s)
    import geopandas as gpd
    import pandas as pd

log = logging.getLogger(__name__)

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
    # A zip, as GIS tools hand Shapefiles around: no registered media type names a zipped Shapefile.
    "shp.zip": "application/zip",
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

# The ESRI Shapefile's limits (ESRI Shapefile Technical Description, July 1998; the dBASE table it keeps its
# attributes in; GDAL's ESRI Shapefile driver, which writes it).
SHAPEFILE_DRIVER = "ESRI Shapefile"
SHAPEFILE_FIELD_NAME_MAX = 10  # characters of a dBASE field name
DBF_TEXT_MAX_BYTES = 254  # bytes of a dBASE character field's value
# 2 GB a part: the offsets of the .shx and the sizes in the headers are 32-bit, and ArcGIS reads no .shp or .dbf
# past 2 GB (GDAL's 2GB_LIMIT option). An export past it is refused before it is written.
SHAPEFILE_PART_MAX_BYTES = 2**31 - 1
SHAPEFILE_ENCODING = "UTF-8"  # written into the .cpg, which QGIS and ArcGIS read the .dbf's text by
# How GDAL writes a float64 column in a .dbf: N(24,15), a number as text 24 characters wide with 15 decimals,
# which holds a degree of latitude or longitude to 1e-15 (the .shp's geometry holds the same as doubles).
DBF_REAL_WIDTH, DBF_REAL_DECIMALS = 24, 15
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
SHAPEFILE_README = "README.txt"
# The sizes the Technical Description gives: a 100-byte header in the .shp and .shx; a point record of an
# 8-byte record header and a 20-byte content (shape type, x, y); an 8-byte index record (offset, length).
_SHP_HEADER_BYTES, _SHP_POINT_RECORD_BYTES, _SHX_RECORD_BYTES = 100, 28, 8
# A .dbf: a 32-byte header, 32 bytes for each field, a header terminator, one deleted-flag byte before each
# record, and an end-of-file marker.
_DBF_HEADER_BYTES, _DBF_FIELD_BYTES = 32, 32

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
    # The year by hand: the platform's %Y pads no year to four digits (year 1, a network clock's zero
    # value kept by an older store, was `1-01-01`, which no reader took: the GeoPackage export answered 500).
    return f"{utc.year:04d}" + utc.strftime(f"-%m-%d{separator}%H:%M:%S.") + f"{utc.microsecond // 1000:03d}{zone}"


def _species_of(species: Species, animal_id: str) -> str | None:
    if species is None or isinstance(species, str):
        return species
    return species.get(animal_id)


def fixes_frame(fixes: Sequence[Any], species: Species = None) -> pd.DataFrame:
    """The fixes as a table, animal by animal, oldest first; `species` one name or one per animal id."""
    import pandas as pd

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
    import geopandas as gpd
    from shapely.geometry import Point

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
    import pandas as pd

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


def shapefile_field_names(columns: Sequence[str]) -> dict[str, str]:
    """Each column's name as a Shapefile field: ASCII letters, digits and underscores, at most
    SHAPEFILE_FIELD_NAME_MAX characters (a longer name is cut), a name taken before (dBASE ignores case)
    ending in `_2`, `_3`... The same columns in the same order always get the same names."""
    names: dict[str, str] = {}
    for column in columns:
        stem = re.sub(r"[^0-9A-Za-z_]", "_", column)[:SHAPEFILE_FIELD_NAME_MAX] or "field"
        name, number = stem, 1
        while name.lower() in {taken.lower() for taken in names.values()}:
            number += 1
            suffix = f"_{number}"
            name = stem[:SHAPEFILE_FIELD_NAME_MAX - len(suffix)] + suffix
        names[column] = name
    return names


def _dbf_text(value: Any) -> Any:
    """A text value cut, at a character, to what a dBASE character field holds (DBF_TEXT_MAX_BYTES in UTF-8)."""
    if not isinstance(value, str):
        return value
    return value.encode()[:DBF_TEXT_MAX_BYTES].decode(errors="ignore")


def _text_bytes(values: pd.Series) -> int:
    return max((len(v.encode()) for v in values if isinstance(v, str)), default=0)


def shapefile_part_bytes(frame: pd.DataFrame) -> dict[str, int]:
    """The bytes of the .shp, .shx and .dbf that `to_shapefile` writes for `frame` (one point a row, its text
    columns as wide as their longest value in UTF-8, at least 1; its numbers DBF_REAL_WIDTH wide), from the
    sizes the format gives, so a too large export is refused before anything is written."""
    import pandas as pd

    rows = len(frame)
    widths = [DBF_REAL_WIDTH if pd.api.types.is_float_dtype(frame[c]) else max(1, _text_bytes(frame[c]))
              for c in frame.columns]
    return {
        ".shp": _SHP_HEADER_BYTES + _SHP_POINT_RECORD_BYTES * rows,
        ".shx": _SHP_HEADER_BYTES + _SHX_RECORD_BYTES * rows,
        ".dbf": _DBF_HEADER_BYTES + _DBF_FIELD_BYTES * len(widths) + 1 + rows * (1 + sum(widths)) + 1,
    }


def _refuse_past_limit(sizes: Mapping[str, int], fixes: int, limit: int) -> None:
    over = {part: size for part, size in sizes.items() if size > limit}
    if over:
        parts = ", ".join(f"its {part} {size / 1e9:.2f} GB" for part, size in over.items())
        raise ExportTooLarge(
            f"{fixes} fixes make a Shapefile larger than the format holds ({parts}; at most {limit / 1e9:.2f} GB a "
            "file): export fewer days (since, until) or one animal (animal_id), or take the GeoPackage")


def _shapefile_readme(layer: str, frame: pd.DataFrame, fields: Mapping[str, str], precision: str | None,
                      cut: Sequence[tuple[str, str]]) -> str:
    """The zip's README.txt: what the files are, each field's full column name and type, what was cut."""
    import pandas as pd

    kinds = {column: (f"number N({DBF_REAL_WIDTH},{DBF_REAL_DECIMALS}), degrees"
                      if pd.api.types.is_float_dtype(frame[column]) else "text")
             for column in frame.columns}
    kinds["time_utc"] = "text, ISO 8601 in UTC to the millisecond (e.g. 2026-11-20T00:00:00.000Z)"
    lines = [
        "Tembo collar fixes as an ESRI Shapefile",
        "",
        f"Files: {', '.join(layer + part for part in SHAPEFILE_PARTS)}",
        f"Geometry: one point a fix; fixes: {len(frame)}, animals: {frame['animal_id'].nunique()}"
        + (" (no fix in the time asked for: an empty layer)" if frame.empty else ""),
        "Coordinates: WGS 84 (EPSG:4326), longitude and latitude in degrees (the .prj)",
        f"Text encoding: {SHAPEFILE_ENCODING} (the .cpg)",
    ]
    if precision is not None:
        lines.append(f"Positions: {precision}" + (
            "" if precision == privacy.EXACT_LABEL else
            " (each fix at the centre of its grid cell, and late, as the exporting account's role sees them)"))
    lines += [
        "",
        f"A Shapefile's field names have at most {SHAPEFILE_FIELD_NAME_MAX} characters and it has no date-time",
        "field. Its fields, with the full column names of Tembo's other exports (CSV, GeoJSON, GeoPackage):",
        "",
        f"{'field':<{SHAPEFILE_FIELD_NAME_MAX}}  {'column':<{SHAPEFILE_FIELD_NAME_MAX}}  type",
        *(f"{field:<{SHAPEFILE_FIELD_NAME_MAX}}  {column:<{SHAPEFILE_FIELD_NAME_MAX}}  {kinds[column]}"
          for column, field in fields.items()),
    ]
    if cut:
        lines += ["", f"Text values longer than a field holds ({DBF_TEXT_MAX_BYTES} bytes in UTF-8), cut at a "
                  "character; the other exports carry them whole:"]
        lines += [f"{column}: {value}" for column, value in cut]
    return "\n".join(lines) + "\n"


def latin_name(name: str | None, fallback: str) -> str:
    """name as a Shapefile part's file name can carry it everywhere (ASCII letters, digits, `_`, `-`):
    transliterated, its accents dropped (Unicode NFKD without the combining marks: "Ñyota" is "Nyota",
    "Zoë" "Zoe"), any other character a `_`; fallback (a stable readable stem, e.g. the animal's id) when
    that leaves no Latin letter (a Ge'ez or Arabic name). Until 6 December only the ASCII characters
    were kept: "Ñyota"'s parts were `yota_7d.shp`, an Amharic name's `_7d.shp`."""
    decomposed = unicodedata.normalize("NFKD", name or "")
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stem = re.sub(r"[^0-9A-Za-z_-]+", "_", plain).strip("_-")
    return stem if re.search(r"[A-Za-z]", stem) else fallback


def to_shapefile(fixes: Sequence[Any], species: Species = None, precision: str | None = None, layer: str = "fixes",
                 max_part_bytes: int = SHAPEFILE_PART_MAX_BYTES) -> bytes:
    """A zip of an ESRI Shapefile of the fixes as points in WGS84 (`layer`.shp, .shx, .dbf, .prj, .cpg in
    UTF-8) and README.txt, which maps each field to its full column name, says whether the points are exact
    (`precision`) and lists any value cut to fit. ExportTooLarge when a part would pass `max_part_bytes`."""
    frame = fixes_geoframe(fixes, species)
    stem = latin_name(layer, "fixes")
    cut = sorted({(column, value) for column in frame.columns if frame[column].dtype == object
                  for value in frame[column] if isinstance(value, str) and _dbf_text(value) != value})
    for column in {column for column, _ in cut}:
        frame[column] = frame[column].map(_dbf_text)
    if cut:
        log.info("text cut to fit a Shapefile", extra={"layer": stem, "values": len(cut)})
    _refuse_past_limit(shapefile_part_bytes(frame.drop(columns="geometry")), len(frame), max_part_bytes)
    fields = shapefile_field_names([c for c in frame.columns if c != "geometry"])
    with tempfile.TemporaryDirectory(prefix="tembo-export-") as folder:
        path = Path(folder) / f"{stem}.shp"
        # Point even when empty (shape type 1 in the header); UTF-8 text with its .cpg; each text field as wide as
        # its longest value (RESIZE), so the parts are no larger than they need to be.
        frame.rename(columns=fields).to_file(
            path, driver=SHAPEFILE_DRIVER, engine="pyogrio", geometry_type="Point", encoding=SHAPEFILE_ENCODING,
            layer_options={"RESIZE": "YES"},
        )
        _refuse_past_limit({part: path.with_suffix(part).stat().st_size for part in (".shp", ".shx", ".dbf")},
                           len(frame), max_part_bytes)
        readme = _shapefile_readme(stem, frame.drop(columns="geometry"), fields, precision, cut)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in SHAPEFILE_PARTS:
                archive.write(path.with_suffix(part), f"{stem}{part}")
            archive.writestr(SHAPEFILE_README, readme)
        return buffer.getvalue()


def to_movebank_csv(fixes: Sequence[Any], species: Species = None, study_name: str = DEFAULT_STUDY) -> bytes:
    """Movebank CSV: Movebank's attribute names, timestamps in UTC to the millisecond.

    A fix's event-id is its stored position's id, the same in every export: Movebank gives each event one
    unique id, and a researcher who merges two exports (last week's and this week's) and drops rows with an
    event-id seen before keeps every fix once. ValueError for a fix with no stored id (numbered per file,
    two files would give one id to two fixes)."""
    import pandas as pd

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


def files(fixes: Sequence[Any], species: Species, viewer: Viewer, stem: str,
          layer: str | None = None) -> list[ExportFile]:
    """The fixes (already as viewer may see them) as the five files the animal page offers (CSV,
    GeoJSON, GeoPackage, zipped Shapefile, Movebank CSV), each named stem (the animal's full name), with
    the species and the GeoJSON and the Shapefile's README saying whether the points are exact, as the
    API's are. layer: the stem of the Shapefile's parts inside its zip (`latin_name`), stem by default. Forbidden unless viewer's role may export, as on the API
    (rangers, researchers, admins: not the visitor kiosk, not field technicians)."""
    require(viewer, roles.EXPORT)
    precision = privacy.label(viewer)
    return [
        ExportFile("CSV", to_csv(fixes, species), f"{stem}.csv", MEDIA_TYPES["csv"]),
        ExportFile("GeoJSON", to_geojson(fixes, species, precision), f"{stem}.geojson", MEDIA_TYPES["geojson"]),
        ExportFile("GeoPackage", to_geopackage(fixes, species), f"{stem}.gpkg", MEDIA_TYPES["gpkg"]),
        ExportFile("Shapefile", to_shapefile(fixes, species, precision, layer or stem), f"{stem}.shp.zip",
                   MEDIA_TYPES["shp.zip"]),
        ExportFile("Movebank CSV", to_movebank_csv(fixes, species), f"{stem}_movebank.csv",
                   MEDIA_TYPES["movebank.csv"]),
    ]
