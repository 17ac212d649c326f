"""Reading geofences from the reserve's own files: GeoJSON, GeoPackage (every polygon layer) or a
zipped Shapefile, in any CRS, read with geopandas and reprojected to WGS84 with pyproj.

Every way a file can be wrong ends in InvalidGeofenceFile with a sentence a ranger can act on: a file
that does not read, a zip without a .shp, a layer without a CRS (a Shapefile without its .prj), no
polygon at all, a polygon that is not valid (self-intersecting ring, ...), or fences that land far
from the reserve once reprojected (a file whose CRS does not fit its coordinates: degrees said to be
UTM metres land in Antarctica, `far_from_reserve`). Heights (a boundary walked with a GPS
or drawn in 3D) are dropped: a fence is an area on the map, and the store and the collars hold it
in two dimensions.
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely
from pyproj import Geod
from shapely.geometry import mapping, shape
from shapely.validation import explain_validity

from lora_bridge.errors import InvalidGeofenceFile
from lora_bridge.store.tables import Geofence

if TYPE_CHECKING:  # geopandas, pandas and pyogrio load with the first fence file read, not when the bridge starts
    import geopandas as gpd
    import pandas as pd

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
SUFFIXES = (".geojson", ".json", ".gpkg", ".zip")
POLYGON_TYPES = ("Polygon", "MultiPolygon")
ALERT_ON = ("exit", "enter", "both")
# What crossing a fence of a kind means when the file does not say (column alert_on).
EXIT_KINDS = ("boundary", "park", "sanctuary", "conservancy")
ENTER_KINDS = ("farmland", "village", "settlement", "exclusion", "road", "railway")
# The largest fence file, one limit for every way in: the API refuses a larger body unread, the
# dashboard's uploader a larger file before sending it (a reserve's fences with plenty of room).
MAX_FILE_MB = 50
MAX_FILE_BYTES = MAX_FILE_MB * 1024 * 1024
# What the store's columns hold (PostgreSQL refuses a longer value; SQLite would keep it).
MAX_KIND_CHARS = Geofence.__table__.c.kind.type.length
MAX_NAME_CHARS = Geofence.__table__.c.name.type.length
MAX_FILENAME_CHARS = Geofence.__table__.c.source_file.type.length
MAX_CRS_CHARS = Geofence.__table__.c.source_crs.type.length
# Fences farther than this from every feature of the reserve's geography are a wrong CRS, not fences.
MAX_KM_FROM_RESERVE = 100.0
MAX_UNPACKED_BYTES = 4 * MAX_FILE_BYTES  # a zipped Shapefile, unpacked (a small zip can unpack to gigabytes)


@dataclass(frozen=True)
class FenceShape:
    """One fence read from a file, in WGS84: GeoJSON geometry and what crossing it means."""

    name: str
    kind: str
    alert_on: str
    geometry: dict[str, Any]
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FenceFile:
    """What a file held: its fences and the CRS they came in."""

    filename: str
    source_crs: str
    fences: list[FenceShape]


def read_fence_file(data: bytes, filename: str, *, kind: str | None = None, alert_on: str | None = None) -> FenceFile:
    """The polygon fences of a GeoJSON, GeoPackage or zipped Shapefile given as bytes, in WGS84.

    kind / alert_on apply to features whose file has no `kind` / `alert_on` column.
    """
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidGeofenceFile(
            f"{filename}: unknown file type {suffix or '(none)'}; give a .geojson, a .gpkg or a zipped Shapefile (.zip)"
        )
    if not data:
        raise InvalidGeofenceFile(f"{filename}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidGeofenceFile(f"{filename}: larger than {MAX_FILE_MB} MB, the most a fence file may be")
    if alert_on is not None and alert_on not in ALERT_ON:
        raise InvalidGeofenceFile(f"alert_on {alert_on!r} is not one of {', '.join(ALERT_ON)}")
    with tempfile.TemporaryDirectory(prefix="tembo-fences-") as folder:
        path = Path(folder) / ("upload" + suffix)
        path.write_bytes(data)
        if suffix == ".zip":
            frames = [_read_zipped_shapefile(path, data, filename)]
        else:
            frames = _read_layers(path, filename)
    crs_names = sorted({frame.crs.to_string() for frame in frames})
    fences: list[FenceShape] = []
    for frame in frames:
        fences.extend(_fences_of(frame, filename, kind, alert_on))
    if not fences:
        raise InvalidGeofenceFile(f"{filename}: no Polygon or MultiPolygon features (fences must be areas)")
    log.info("geofence file read", extra={"geofence_file": filename, "fences": len(fences), "crs": crs_names})
    return FenceFile(filename=filename[:MAX_FILENAME_CHARS], source_crs=", ".join(crs_names)[:MAX_CRS_CHARS],
                     fences=fences)


def _read_layers(path: Path, filename: str) -> list[gpd.GeoDataFrame]:
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
    except Exception as error:
        reason = _short(error).replace(str(path), filename)
        raise InvalidGeofenceFile(f"{filename}: not a readable GeoJSON or GeoPackage ({reason})") from error
    frames = []
    for layer_name, geometry_type in layers:
        if geometry_type is not None and "polygon" not in str(geometry_type).lower() and geometry_type != "Unknown":
            continue
        frame = _read(path, filename, layer=str(layer_name) if len(layers) > 1 else None)
        if len(layers) > 1:
            frame["_layer"] = str(layer_name)
        frames.append(frame)
    if not frames:
        if len(layers) == 1:  # a GeoJSON's one layer is named after our temporary copy: say what it holds
            raise InvalidGeofenceFile(
                f"{filename}: no polygon features (it holds {layers[0][1]} features; fences must be areas)"
            )
        found = ", ".join(f"{name} ({geometry_type})" for name, geometry_type in layers)
        raise InvalidGeofenceFile(f"{filename}: no polygon layer (layers: {found}; fences must be areas)")
    return frames


def _read_zipped_shapefile(path: Path, data: bytes, filename: str) -> gpd.GeoDataFrame:
    """The one Shapefile of the zip `data` (kept at `path`, in a folder of its own)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise InvalidGeofenceFile(f"{filename}: not a zip archive") from error
    with archive:
        return _read_shapefile_of(archive, path.parent / "shapefile", filename)


def _read_shapefile_of(archive: zipfile.ZipFile, folder: Path, filename: str) -> gpd.GeoDataFrame:
    """The one Shapefile of a zip. Its parts are matched whatever the case of their names, as GIS
    tools on Windows and macOS do (`fence.shp` with `FENCE.DBF` and `FENCE.PRJ`: GDAL on Linux looks
    for `fence.dbf` only and reads the shapes without attributes or CRS), so they are unpacked under
    one spelling first."""
    names = archive.namelist()
    unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_UNPACKED_BYTES:
        raise InvalidGeofenceFile(f"{filename}: unpacks to {unpacked // (1024 * 1024)} MB, more than "
                                  f"{MAX_UNPACKED_BYTES // (1024 * 1024)} MB")
    shapefiles = [name for name in names if name.lower().endswith(".shp") and not name.startswith("__MACOSX")]
    if not shapefiles:
        raise InvalidGeofenceFile(f"{filename}: the zip holds no .shp file (found: {', '.join(names) or 'nothing'})")
    if len(shapefiles) > 1:
        raise InvalidGeofenceFile(f"{filename}: the zip holds several Shapefiles ({', '.join(shapefiles)}); give one")
    stem = shapefiles[0][:-4]
    present = {name.lower() for name in names}
    for part in (".shx", ".dbf"):
        if (stem + part).lower() not in present:
            raise InvalidGeofenceFile(f"{filename}: {shapefiles[0]} comes without its {part} file")
    if (stem + ".prj").lower() not in present:
        raise InvalidGeofenceFile(
            f"{filename}: {shapefiles[0]} has no .prj, so its coordinates have no CRS; add the .prj to the zip"
        )
    folder.mkdir()
    for name in names:  # every part of the Shapefile (.shp, .shx, .dbf, .prj, .cpg, ...), under one spelling
        if name.lower().startswith(stem.lower() + ".") and "/" not in name[len(stem):]:
            (folder / ("fence" + name[len(stem):].lower())).write_bytes(archive.read(name))
    return _read(folder / "fence.shp", filename)


def _read(path: Path | str, filename: str, layer: str | None = None) -> gpd.GeoDataFrame:
    import geopandas as gpd

    try:
        frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as error:
        reason = _short(error).replace(str(path), filename)
        raise InvalidGeofenceFile(f"{filename}: cannot be read ({reason})") from error
    where = f"{filename}" + (f" layer {layer}" if layer else "")
    if frame.crs is None:
        raise InvalidGeofenceFile(f"{where}: no CRS, so its coordinates cannot be placed; save it with a CRS")
    return frame


def _fences_of(
    frame: gpd.GeoDataFrame, filename: str, kind: str | None, alert_on: str | None
) -> list[FenceShape]:
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    frame = frame[frame.geometry.geom_type.isin(POLYGON_TYPES)]
    if frame.empty:
        return []
    if frame.geometry.has_z.any():  # a boundary walked with a GPS keeps its heights: a fence is an area on the map
        frame = frame.set_geometry(shapely.force_2d(frame.geometry.values), crs=frame.crs)
        log.info("geofence heights dropped", extra={"geofence_file": filename})
    for index, geometry in zip(frame.index, frame.geometry, strict=True):
        if not geometry.is_valid:
            raise InvalidGeofenceFile(f"{filename}: feature {index} is not a valid polygon ({explain_validity(geometry)})")
    try:
        projected = frame.to_crs(WGS84)
    except Exception as error:
        raise InvalidGeofenceFile(f"{filename}: cannot reproject from {frame.crs} to WGS84 ({_short(error)})") from error
    minx, miny, maxx, maxy = projected.total_bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidGeofenceFile(f"{filename}: coordinates fall outside the globe in {frame.crs}; is the CRS right?")
    columns = {str(c).lower(): c for c in projected.columns if c != projected.geometry.name}
    fences = []
    for position, (index, row) in enumerate(projected.iterrows()):
        properties = {str(k): _plain(v) for k, v in row.items() if k != projected.geometry.name}
        fence_kind = str(_pick(row, columns, "kind") or row.get("_layer") or kind or "boundary").lower()
        if len(fence_kind) > MAX_KIND_CHARS:
            raise InvalidGeofenceFile(
                f"{filename}: feature {index} has kind {fence_kind[:40]!r}..., longer than {MAX_KIND_CHARS} characters")
        # A name column may hold a whole description: the fence keeps its first MAX_NAME_CHARS characters.
        name = str(_pick(row, columns, "name") or f"{Path(filename).stem} {position + 1}")[:MAX_NAME_CHARS]
        on = str(_pick(row, columns, "alert_on") or alert_on or _default_alert_on(fence_kind)).lower()
        if on not in ALERT_ON:
            raise InvalidGeofenceFile(f"{filename}: feature {index} has alert_on {on!r}; use {', '.join(ALERT_ON)}")
        fences.append(FenceShape(name=name, kind=fence_kind, alert_on=on, geometry=mapping(row.geometry), properties=properties))
    return fences


def _default_alert_on(kind: str) -> str:
    if kind in EXIT_KINDS:
        return "exit"
    if kind in ENTER_KINDS:
        return "enter"
    return "both"


def _pick(row: pd.Series, columns: dict[str, Any], name: str) -> Any:
    import pandas as pd

    column = columns.get(name)
    if column is None:
        return None
    value = row[column]
    return None if value is None or (isinstance(value, float) and pd.isna(value)) or value == "" else value


def _plain(value: Any) -> Any:
    import pandas as pd

    if value is None or isinstance(value, (str, int, float, bool)):
        return None if isinstance(value, float) and pd.isna(value) else value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# GDAL's advice to a programmer, cut from what a ranger reads.
_GDAL_HINT = "; It might help to specify the correct driver"


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0].split(_GDAL_HINT)[0][:200] if text else type(error).__name__


def far_from_reserve(fence_file: FenceFile, reserve: dict[str, Any]) -> None:
    """InvalidGeofenceFile when every fence of the file lies more than MAX_KM_FROM_RESERVE from the
    reserve's geography (a GeoJSON FeatureCollection in WGS84; nothing is checked without one)."""
    features = [f.get("geometry") for f in reserve.get("features", []) if isinstance(f, dict) and f.get("geometry")]
    if not features or not fence_file.fences:
        return
    west, south, east, north = shapely.union_all([shape(g) for g in features]).bounds
    fences = shapely.union_all([shape(f.geometry) for f in fence_file.fences])
    geod = Geod(ellps="WGS84")
    # The reserve's bounds widened by MAX_KM_FROM_RESERVE northward and eastward at its middle latitude.
    middle = (south + north) / 2
    _, north_lat, _ = geod.fwd(west, middle, 0, MAX_KM_FROM_RESERVE * 1000)
    east_lon, _, _ = geod.fwd(west, middle, 90, MAX_KM_FROM_RESERVE * 1000)
    margin_lat, margin_lon = north_lat - middle, east_lon - west
    near = shapely.box(west - margin_lon, south - margin_lat, east + margin_lon, north + margin_lat)
    if fences.intersects(near):
        return
    reserve_centre = shapely.box(west, south, east, north).centroid
    fence_centre = fences.centroid
    _, _, metres = geod.inv(reserve_centre.x, reserve_centre.y, fence_centre.x, fence_centre.y)
    raise InvalidGeofenceFile(
        f"{fence_file.filename}: read in {fence_file.source_crs}, its fences lie {metres / 1000:,.0f} km from the "
        f"reserve (around {fence_centre.y:.2f}, {fence_centre.x:.2f}); is that the CRS its coordinates are in?"
    )
