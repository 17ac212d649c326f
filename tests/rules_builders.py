"""Builders for the rules tests: a reserve drawn in metres (UTM zone 37S, EPSG:32737, where Tembo's
test collars roam), turned into files by GDAL (pyogrio) or written as text after the formats' own
documentation, and tracks given in metres so every answer can be checked with a ruler."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import bridge_builders as b
import geopandas as gpd
from pyproj import Transformer
from shapely.geometry import Polygon

UTM_37S = "EPSG:32737"
ARC_1960_UTM_37S = "EPSG:21037"  # Kenya's national grid: a CRS other than WGS84's own UTM
_TO_WGS84 = Transformer.from_crs(UTM_37S, "EPSG:4326", always_xy=True)

# The park: 10 km x 10 km, with a 2 km x 2 km hole (a fenced research plot) in its middle.
PARK_OUTER = [(300_000, 9_700_000), (310_000, 9_700_000), (310_000, 9_710_000), (300_000, 9_710_000)]
PARK_HOLE = [(304_000, 9_704_000), (306_000, 9_704_000), (306_000, 9_706_000), (304_000, 9_706_000)]
# Farmland east of the park, 2 km wide.
FARM = [(312_000, 9_700_000), (314_000, 9_700_000), (314_000, 9_710_000), (312_000, 9_710_000)]


def lat_lon(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point given in metres in UTM 37S."""
    lon, lat = _TO_WGS84.transform(x, y)
    return lat, lon


def reserve_frame(crs: str = UTM_37S) -> gpd.GeoDataFrame:
    """Park (with its hole) and farmland as a GeoDataFrame in crs."""
    frame = gpd.GeoDataFrame(
        {"name": ["Park", "East farms"], "kind": ["boundary", "farmland"]},
        geometry=[Polygon(PARK_OUTER, [PARK_HOLE]), Polygon(FARM)],
        crs=UTM_37S,
    )
    return frame.to_crs(crs)


def geojson_utm_bytes() -> bytes:
    """The reserve as GeoJSON written by hand in UTM 37S, naming its CRS the way GDAL reads it
    (the 2008 GeoJSON `crs` member; RFC 7946 files without it are WGS84)."""
    def ring(points: list[tuple[int, int]]) -> list[list[int]]:
        return [list(p) for p in [*points, points[0]]]

    document = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32737"}},
        "features": [
            {"type": "Feature", "properties": {"name": "Park", "kind": "boundary"},
             "geometry": {"type": "Polygon", "coordinates": [ring(PARK_OUTER), ring(PARK_HOLE)]}},
            {"type": "Feature", "properties": {"name": "East farms", "kind": "farmland"},
             "geometry": {"type": "Polygon", "coordinates": [ring(FARM)]}},
        ],
    }
    return json.dumps(document).encode()


def geopackage_bytes(folder: Path, crs: str | None = ARC_1960_UTM_37S) -> bytes:
    """A GeoPackage with two layers (boundary, farmland), written by GDAL in crs (None: no CRS)."""
    path = folder / "reserve.gpkg"
    frame = reserve_frame(crs or UTM_37S)
    for index, layer in enumerate(("boundary", "farmland")):
        part = frame.iloc[[index]][["name", "geometry"]]
        if crs is None:
            part = part.set_crs(None, allow_override=True)
        part.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    return path.read_bytes()


def zipped_shapefile_bytes(folder: Path, *, with_prj: bool = True, with_shp: bool = True) -> bytes:
    """The reserve as a Shapefile written by GDAL in UTM 37S, zipped (optionally without .prj or .shp)."""
    shp = folder / "reserve.shp"
    reserve_frame().to_file(shp, driver="ESRI Shapefile", engine="pyogrio")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part in sorted(folder.glob("reserve.*")):
            if part.suffix == ".prj" and not with_prj:
                continue
            if part.suffix == ".shp" and not with_shp:
                continue
            archive.write(part, f"reserve/{part.name}")
    return buffer.getvalue()


def fix_uplinks(device_id: str, start: datetime, fixes_m: list[tuple[float, float, float]], first_f_cnt: int = 1):
    """TTS uplink bodies of a positions message per fix; fixes_m are (minutes after start, x, y)."""
    bodies = []
    for n, (minutes, x, y) in enumerate(fixes_m):
        at = start + timedelta(minutes=minutes)
        lat, lon = lat_lon(x, y)
        message = b.positions(time_s=int(at.timestamp()), fixes=((0, lat, lon),))
        bodies.append(b.tts_uplink(message, device_id=device_id, f_cnt=first_f_cnt + n, received_at=at))
    return bodies


# What the geofence tests do to a bridge, shared by every test file that needs a fence or a track.

def park_and_farm(bridge):
    """Import the park (exit) and the farm (enter) fences as a technician does; the fences."""
    return bridge.import_geofences(geojson_utm_bytes(), "reserve.geojson")


def ingest_track(bridge, fixes_m: list[tuple[float, float, float]], device_id: str = "collar-01",
                 first_f_cnt: int = 1, start: datetime = b.T0) -> None:
    """Post a positions uplink per fix (minutes after start, x, y) to the bridge's webhook path."""
    for body in fix_uplinks(device_id, start, fixes_m, first_f_cnt):
        bridge.ingest_tts_uplink(body)


def collar_fence_alert(bridge, alert_type: str, minutes: float, x: float, y: float, f_cnt: int, seq: int = 1,
                       device_id: str = "collar-01", start: datetime = b.T0) -> None:
    """The collar's own fence alert (alert_type, its seq) raised `minutes` after start at (x, y)."""
    at = start + timedelta(minutes=minutes)
    lat, lon = lat_lon(x, y)
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert(alert_type, seq=seq, time_s=int(at.timestamp()), lat=lat, lon=lon),
                                          device_id=device_id, f_cnt=f_cnt, received_at=at))
