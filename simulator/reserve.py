"""The demo reserve of Tembo's digital twin: boundary, farmland, water, roads and LoRaWAN gateways.

The reserve is a made-up conservancy of about 30 km x 20 km in Kenyan savanna, centred on the range of
the elephant "Habiba" (Wall et al. 2014, Movebank), so her real track replays inside it. The geometry is
written in kilometres east/north of the centre (easy to read and to change) and offered as lon/lat and as
a GeoJSON FeatureCollection whose `properties.kind` is one of boundary, farmland, water, road, gateway.

Movement code works in a local metric frame (`LocalFrame`): x metres east, y metres north of the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EARTH_RADIUS_M = 6_371_008.8
KINDS = ("boundary", "farmland", "water", "road", "gateway")

# Centre of Habiba's 2014 range (Movebank, Wall et al. 2014), degrees.
DEMO_CENTRE_LON = 37.585
DEMO_CENTRE_LAT = 0.572


@dataclass(frozen=True)
class LocalFrame:
    """Equirectangular projection about (lon0, lat0): x metres east, y metres north (good to ~50 km)."""

    lon0: float
    lat0: float

    @property
    def _m_per_deg_lat(self) -> float:
        return EARTH_RADIUS_M * math.pi / 180.0

    @property
    def _m_per_deg_lon(self) -> float:
        return self._m_per_deg_lat * math.cos(math.radians(self.lat0))

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """Degrees -> metres (x east, y north)."""
        return (lon - self.lon0) * self._m_per_deg_lon, (lat - self.lat0) * self._m_per_deg_lat

    def to_lonlat(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Metres (x east, y north) -> degrees (lon, lat)."""
        return self.lon0 + x_m / self._m_per_deg_lon, self.lat0 + y_m / self._m_per_deg_lat


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle (haversine) distance in metres between two lon/lat points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def point_in_polygon(x: float, y: float, ring: tuple[tuple[float, float], ...]) -> bool:
    """Even-odd ray casting; ring is a sequence of (x, y) vertices (closing vertex optional)."""
    inside = False
    n = len(ring)
    j = n - 1
    for i in range(n):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def distance_to_ring_m(x: float, y: float, ring: tuple[tuple[float, float], ...]) -> float:
    """Shortest distance in metres from (x, y) to the edges of a ring in local metres."""
    best = math.inf
    n = len(ring)
    for i in range(n):
        ax, ay = ring[i]
        bx, by = ring[(i + 1) % n]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        t = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / seg2))
        best = min(best, math.hypot(x - (ax + t * dx), y - (ay + t * dy)))
    return best


@dataclass(frozen=True)
class Gateway:
    """A LoRaWAN gateway on a mast: where it stands and how far it hears a collar."""

    gateway_id: str
    name: str
    lon: float
    lat: float
    altitude_m: float = 10.0
    range_m: float = 15_000.0
    eui: str = ""


@dataclass(frozen=True)
class Area:
    """A named polygon (boundary or farmland); ring_lonlat is closed-less [(lon, lat), ...]."""

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


@dataclass(frozen=True)
class Reserve:
    """A reserve's geometry with fast local-metre lookups for the movement model."""

    name: str
    frame: LocalFrame
    boundary: Area
    farmland: tuple[Area, ...]
    water: tuple[WaterPoint, ...]
    roads: tuple[Road, ...]
    gateways: tuple[Gateway, ...]
    _boundary_xy: tuple[tuple[float, float], ...] = field(init=False, repr=False, compare=False)
    _farmland_xy: tuple[tuple[tuple[float, float], ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        to_xy = self.frame.to_xy
        object.__setattr__(self, "_boundary_xy", tuple(to_xy(*p) for p in self.boundary.ring_lonlat))
        object.__setattr__(
            self, "_farmland_xy", tuple(tuple(to_xy(*p) for p in a.ring_lonlat) for a in self.farmland)
        )

    # --- lookups in local metres (used in the movement loop) ---
    def inside_xy(self, x_m: float, y_m: float) -> bool:
        """True when the local point lies inside the reserve boundary."""
        return point_in_polygon(x_m, y_m, self._boundary_xy)

    def farmland_at_xy(self, x_m: float, y_m: float) -> str | None:
        """Name of the farmland patch containing the local point, or None."""
        for area, ring in zip(self.farmland, self._farmland_xy, strict=True):
            if point_in_polygon(x_m, y_m, ring):
                return area.name
        return None

    def boundary_distance_m(self, x_m: float, y_m: float) -> float:
        """Distance in metres from the local point to the boundary line."""
        return distance_to_ring_m(x_m, y_m, self._boundary_xy)

    def water_xy(self) -> list[tuple[float, float]]:
        """Water points in local metres, in the order of `water`."""
        return [self.frame.to_xy(w.lon, w.lat) for w in self.water]

    def farmland_centres_xy(self) -> list[tuple[float, float]]:
        """Vertex centroid of each farmland patch in local metres."""
        return [
            (sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring))
            for ring in self._farmland_xy
        ]

    def boundary_xy(self) -> tuple[tuple[float, float], ...]:
        """Boundary ring in local metres."""
        return self._boundary_xy

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
