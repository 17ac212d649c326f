"""The demo reserve of Tembo's digital twin: boundary, farmland, water, roads and LoRaWAN gateways.

The reserve is a made-up conservancy of about 30 km x 20 km in Kenyan savanna, centred on the range of
the elephant "Habiba" (Wall et al. 2014, Movebank), so her real track replays inside it. The geometry is
written in kilometres east/north of the centre (easy to read and to change) and offered as lon/lat and as
a GeoJSON FeatureCollection whose `properties.kind` is one of boundary, farmland, water, road, gateway.

Movement code works in a local metric frame (`LocalFrame`): x metres east, y metres north of the centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon

from simulator.geo import LocalFrame, distance_m

__all__ = ["KINDS", "Area", "Gateway", "LocalFrame", "Reserve", "Road", "WaterPoint", "demo_reserve",
           "demo_reserve_geojson", "distance_m"]

KINDS = ("boundary", "farmland", "village", "water", "road", "gateway")

# Centre of Habiba's 2014 range (Movebank, Wall et al. 2014), degrees.
DEMO_CENTRE_LON = 37.585
DEMO_CENTRE_LAT = 0.572


@dataclass(frozen=True)
class Gateway:
    """A LoRaWAN gateway on a mast: where it stands and how far it hears a collar."""

    gateway_id: str
    name: str
    lon: float
    lat: float
    altitude_m: float = 10.0  # antenna height above the ground
    range_m: float = 15_000.0
    eui: str = ""


@dataclass(frozen=True)
class Area:
    """A named polygon (boundary, farmland or village); ring_lonlat is closed-less [(lon, lat), ...]."""

    name: str
    ring_lonlat: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class WaterPoint:
    """A named water point (spring, dam, river pool)."""

    name: str
    lon: float
    lat: float


@dataclass(frozen=True)
class Road:
    """A named road as a polyline [(lon, lat), ...]."""

    name: str
    line_lonlat: tuple[tuple[float, float], ...]


class CellLookup:
    """Point in polygon through a grid of cells: a cell wholly inside or outside the polygon answers at
    once, a cell its edge crosses asks shapely (exact everywhere; the movement loop asks millions of
    times, and most points lie far from any edge)."""

    def __init__(self, polygon: shapely.Geometry, cell_m: float = 200.0) -> None:
        self.polygon = polygon
        self.cell_m = cell_m
        if polygon.is_empty:
            self.x0 = self.y0 = 0.0
            self.nx = self.ny = 0
            self.cells = b""
            return
        minx, miny, maxx, maxy = polygon.bounds
        self.x0, self.y0 = minx - cell_m, miny - cell_m
        self.nx = int((maxx - self.x0) // cell_m) + 2
        self.ny = int((maxy - self.y0) // cell_m) + 2
        ix, iy = np.meshgrid(np.arange(self.nx), np.arange(self.ny))
        x = self.x0 + ix.ravel() * cell_m
        y = self.y0 + iy.ravel() * cell_m
        boxes = shapely.box(x, y, x + cell_m, y + cell_m)
        inside = shapely.contains(polygon, boxes)
        edge = shapely.intersects(polygon.boundary, boxes)
        self.cells = np.where(inside, 1, np.where(edge, 2, 0)).astype(np.uint8).tobytes()

    def contains(self, x_m: float, y_m: float) -> bool:
        """True when (x_m, y_m) lies inside the polygon."""
        i = int((x_m - self.x0) // self.cell_m)
        j = int((y_m - self.y0) // self.cell_m)
        if i < 0 or j < 0 or i >= self.nx or j >= self.ny:
            return False
        cell = self.cells[j * self.nx + i]
        if cell == 2:
            return bool(shapely.contains_xy(self.polygon, x_m, y_m))
        return cell == 1

    def contains_many(self, xs_m: np.ndarray, ys_m: np.ndarray) -> np.ndarray:
        """`contains` for arrays of points at once: a boolean array."""
        xs_m, ys_m = np.asarray(xs_m, dtype=float), np.asarray(ys_m, dtype=float)
        out = np.zeros(xs_m.shape, dtype=bool)
        if not self.nx:
            return out
        i = np.floor((xs_m - self.x0) / self.cell_m).astype(np.int64)
        j = np.floor((ys_m - self.y0) / self.cell_m).astype(np.int64)
        held = (i >= 0) & (j >= 0) & (i < self.nx) & (j < self.ny)
        cells = np.zeros(xs_m.shape, dtype=np.uint8)
        cells[held] = np.frombuffer(self.cells, dtype=np.uint8)[j[held] * self.nx + i[held]]
        out[cells == 1] = True
        edge = cells == 2
        if edge.any():
            out[edge] = shapely.contains_xy(self.polygon, xs_m[edge], ys_m[edge])
        return out


@dataclass(frozen=True)
class Reserve:
    """A reserve's geometry; shapely polygons in local metres answer the movement model's lookups."""

    name: str
    frame: LocalFrame
    boundary: Area
    farmland: tuple[Area, ...]
    water: tuple[WaterPoint, ...]
    roads: tuple[Road, ...]
    gateways: tuple[Gateway, ...]
    villages: tuple[Area, ...] = ()
    _boundary_xy: Polygon = field(init=False, repr=False, compare=False)
    _farmland_xy: tuple[Polygon, ...] = field(init=False, repr=False, compare=False)
    _any_farmland_xy: shapely.Geometry = field(init=False, repr=False, compare=False)
    _inside: CellLookup = field(init=False, repr=False, compare=False)
    _in_farmland: CellLookup = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        boundary = self._polygon_xy(self.boundary)
        farmland = tuple(self._polygon_xy(a) for a in self.farmland)
        any_farmland = shapely.union_all(farmland) if farmland else Polygon()
        for geometry in (boundary, any_farmland, *farmland):
            shapely.prepare(geometry)
        object.__setattr__(self, "_boundary_xy", boundary)
        object.__setattr__(self, "_farmland_xy", farmland)
        object.__setattr__(self, "_any_farmland_xy", any_farmland)
        object.__setattr__(self, "_inside", CellLookup(boundary))
        object.__setattr__(self, "_in_farmland", CellLookup(any_farmland))

    def _polygon_xy(self, area: Area) -> Polygon:
        polygon = Polygon([self.frame.to_xy(*p) for p in area.ring_lonlat])
        if not polygon.is_valid:
            raise ValueError(f"area {area.name!r} is not a valid polygon: {shapely.is_valid_reason(polygon)}")
        return polygon

    # --- lookups in local metres (used in the movement loop) ---
    def inside_xy(self, x_m: float, y_m: float) -> bool:
        """True when the local point lies inside the reserve boundary."""
        return self._inside.contains(x_m, y_m)

    def farmland_at_xy(self, x_m: float, y_m: float) -> str | None:
        """Name of the farmland patch containing the local point, or None."""
        if not self.farmland or not self._in_farmland.contains(x_m, y_m):
            return None
        for area, polygon in zip(self.farmland, self._farmland_xy, strict=True):
            if shapely.contains_xy(polygon, x_m, y_m):
                return area.name
        return None

    def inside_many(self, xs_m: np.ndarray, ys_m: np.ndarray) -> np.ndarray:
        """`inside_xy` for arrays of local points: a boolean array."""
        return self._inside.contains_many(xs_m, ys_m)

    def in_farmland_many(self, xs_m: np.ndarray, ys_m: np.ndarray) -> np.ndarray:
        """True where a local point lies in any farmland patch (arrays in, a boolean array out)."""
        return self._in_farmland.contains_many(xs_m, ys_m)

    def farmland_depth_m(self, x_m: float, y_m: float) -> float:
        """How far inside a farmland patch the local point lies (metres to its edge; 0 outside any)."""
        depth = 0.0
        for polygon in self._farmland_xy:
            if shapely.contains_xy(polygon, x_m, y_m):
                depth = max(depth, float(polygon.exterior.distance(Point(x_m, y_m))))
        return depth

    def boundary_distance_m(self, x_m: float, y_m: float) -> float:
        """Distance in metres from the local point to the boundary line."""
        return float(self._boundary_xy.exterior.distance(Point(x_m, y_m)))

    def water_xy(self) -> list[tuple[float, float]]:
        """Water points in local metres, in the order of `water`."""
        return [self.frame.to_xy(w.lon, w.lat) for w in self.water]

    def farmland_centres_xy(self) -> list[tuple[float, float]]:
        """Centroid of each farmland patch in local metres."""
        return [(p.centroid.x, p.centroid.y) for p in self._farmland_xy]

    def boundary_xy(self) -> tuple[tuple[float, float], ...]:
        """Boundary ring in local metres (not closed)."""
        return tuple(self._boundary_xy.exterior.coords)[:-1]

    def geodataframe(self) -> gpd.GeoDataFrame:
        """The reserve as a GeoDataFrame in lon/lat (EPSG:4326): kind, name, altitude_m, geometry."""
        rows = [("boundary", self.boundary.name, None, Polygon(self.boundary.ring_lonlat))]
        rows += [("farmland", a.name, None, Polygon(a.ring_lonlat)) for a in self.farmland]
        rows += [("village", a.name, None, Polygon(a.ring_lonlat)) for a in self.villages]
        rows += [("water", w.name, None, Point(w.lon, w.lat)) for w in self.water]
        rows += [("road", r.name, None, LineString(r.line_lonlat)) for r in self.roads]
        rows += [("gateway", g.name, g.altitude_m, Point(g.lon, g.lat)) for g in self.gateways]
        kind, name, altitude, geometry = zip(*rows, strict=True)
        return gpd.GeoDataFrame({"kind": kind, "name": name, "altitude_m": altitude}, geometry=list(geometry),
                                crs="EPSG:4326")

    # --- lon/lat lookups ---
    def contains(self, lon: float, lat: float) -> bool:
        """True when (lon, lat) lies inside the reserve boundary."""
        return self.inside_xy(*self.frame.to_xy(lon, lat))

    def farmland_at(self, lon: float, lat: float) -> str | None:
        """Name of the farmland patch containing (lon, lat), or None."""
        return self.farmland_at_xy(*self.frame.to_xy(lon, lat))

    def gateway(self, gateway_id: str) -> Gateway:
        """The gateway with this id (KeyError if unknown)."""
        for g in self.gateways:
            if g.gateway_id == gateway_id:
                return g
        raise KeyError(gateway_id)

    def geojson(self) -> dict:
        """The reserve as a GeoJSON FeatureCollection (RFC 7946, [lon, lat] order)."""
        features = [_polygon_feature("boundary", self.boundary)]
        features += [_polygon_feature("farmland", a) for a in self.farmland]
        features += [_polygon_feature("village", a) for a in self.villages]
        features += [
            _feature("water", w.name, {"type": "Point", "coordinates": [w.lon, w.lat]}) for w in self.water
        ]
        features += [
            _feature("road", r.name, {"type": "LineString", "coordinates": [list(p) for p in r.line_lonlat]})
            for r in self.roads
        ]
        for g in self.gateways:
            feature = _feature("gateway", g.name, {"type": "Point", "coordinates": [g.lon, g.lat]})
            feature["properties"].update(
                gateway_id=g.gateway_id, eui=g.eui, altitude_m=g.altitude_m, range_m=g.range_m
            )
            features.append(feature)
        return {"type": "FeatureCollection", "name": self.name, "features": features}


def _feature(kind: str, name: str, geometry: dict) -> dict:
    return {"type": "Feature", "properties": {"kind": kind, "name": name}, "geometry": geometry}


def _polygon_feature(kind: str, area: Area) -> dict:
    ring = [list(p) for p in area.ring_lonlat]
    ring.append(list(area.ring_lonlat[0]))  # GeoJSON rings are closed
    return _feature(kind, area.name, {"type": "Polygon", "coordinates": [ring]})


# Demo geometry in kilometres (east, north) of the centre.
_BOUNDARY_KM = (
    (-15.0, -8.0), (-9.0, -10.0), (0.0, -10.5), (8.0, -9.5), (15.0, -7.0), (15.5, 2.0),
    (13.0, 9.0), (4.0, 10.5), (-5.0, 10.0), (-12.0, 8.5), (-15.5, 3.0),
)
_FARMLAND_KM = (
    ("Lengishu shambas", ((11.5, 6.0), (17.5, 6.5), (18.0, 11.5), (12.0, 11.0))),
    ("Oldonyiro maize fields", ((-19.0, -11.0), (-13.0, -11.5), (-12.5, -7.0), (-18.5, -6.0))),
    ("Archers Post farms", ((2.0, -13.5), (8.0, -13.0), (7.5, -9.0), (2.5, -9.8))),
)
_WATER_KM = (
    ("Ewaso Ng'iro pool", (-2.0, -7.5)),
    ("Kalama dam", (7.0, 4.0)),
    ("Simba springs", (-9.0, 2.0)),
    ("Nkoteiya waterhole", (1.0, 6.5)),
    ("Lorian pan", (10.0, -4.0)),
)
_ROADS_KM = (
    ("Isiolo-Marsabit road (A2)", ((11.0, -15.0), (11.5, -6.0), (9.5, 3.0), (10.5, 14.0))),
    ("Park track", ((-14.0, -2.0), (-3.0, 1.0), (6.0, 0.0), (11.2, -1.5))),
)
_GATEWAYS_KM = (
    ("tembo-gw-hq", "HQ mast", (0.0, -2.0), 18.0, 14_000.0),
    ("tembo-gw-north", "North ridge", (-6.0, 7.0), 12.0, 14_000.0),
    ("tembo-gw-east", "East hill", (10.0, 5.0), 15.0, 14_000.0),
    ("tembo-gw-southwest", "Southwest tower", (-10.0, -6.0), 12.0, 14_000.0),
)


def demo_reserve(centre_lon: float = DEMO_CENTRE_LON, centre_lat: float = DEMO_CENTRE_LAT) -> Reserve:
    """The Tembo demo reserve (~31 km x 21 km) around (centre_lon, centre_lat)."""
    frame = LocalFrame(centre_lon, centre_lat)

    def ll(km: tuple[float, float]) -> tuple[float, float]:
        lon, lat = frame.to_lonlat(km[0] * 1000.0, km[1] * 1000.0)
        return round(lon, 6), round(lat, 6)

    gateways = []
    for i, (gid, name, km, alt, rng) in enumerate(_GATEWAYS_KM):
        lon, lat = ll(km)
        gateways.append(Gateway(gid, name, lon, lat, alt, rng, eui=f"7076FF00640{i:05X}"))
    return Reserve(
        name="Tembo demo reserve",
        frame=frame,
        boundary=Area("Tembo demo reserve", tuple(ll(p) for p in _BOUNDARY_KM)),
        farmland=tuple(Area(n, tuple(ll(p) for p in ring)) for n, ring in _FARMLAND_KM),
        water=tuple(WaterPoint(n, *ll(p)) for n, p in _WATER_KM),
        roads=tuple(Road(n, tuple(ll(p) for p in line)) for n, line in _ROADS_KM),
        gateways=tuple(gateways),
    )


def demo_reserve_geojson() -> dict:
    """GeoJSON FeatureCollection of the demo reserve (what the bridge stores and the map draws)."""
    return demo_reserve().geojson()
