"""Geometry of Tembo's digital twin, off the collar: one metres-per-degree, one night, pyproj and shapely.

The facts the collar and the twin share are the collar's own (`collar_firmware.geo.METRES_PER_DEGREE`,
`collar_firmware.risk.is_night` and the collar's default `utc_offset_min`); this module imports them so
the CPython rooms never write them again. Distances between lon/lat points are geodesics on the WGS84
ellipsoid (pyproj); areas are shapely geometries, and a reserve is a geopandas GeoDataFrame.

`LocalFrame` is the movement model's metric frame about a centre (pyproj azimuthal equidistant); the
collar's flat metres-per-degree remains for small offsets (GNSS errors) where it is good to a few mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pyproj import CRS, Geod, Transformer

from collar_firmware import config
from collar_firmware.geo import METRES_PER_DEGREE, metres_per_degree_lon
from collar_firmware.risk import NIGHT_END_MIN, NIGHT_START_MIN
from collar_firmware.risk import is_night as _collar_is_night

__all__ = [
    "METRES_PER_DEGREE", "NIGHT_END_MIN", "NIGHT_START_MIN", "UTC_OFFSET_MIN", "LocalFrame", "distance_m",
    "distances_m", "is_night", "local_hour", "metres_per_degree_lon",
]

UTC_OFFSET_MIN = config.DEFAULTS["utc_offset_min"]  # the collar's local time (East Africa Time)
WGS84 = Geod(ellps="WGS84")


def local_hour(t_s: float, utc_offset_min: int = UTC_OFFSET_MIN) -> float:
    """Local clock hour (0..24) of Unix second t_s."""
    return ((t_s + utc_offset_min * 60) / 3600.0) % 24.0


def is_night(t_s: float, utc_offset_min: int = UTC_OFFSET_MIN) -> bool:
    """The collar's night (collar_firmware.risk.is_night) at Unix second t_s."""
    return _collar_is_night(int(t_s), utc_offset_min)


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Geodesic distance in metres between two lon/lat points (WGS84, pyproj)."""
    return float(WGS84.inv(lon1, lat1, lon2, lat2)[2])


def distances_m(lons1, lats1, lons2, lats2) -> np.ndarray:
    """Geodesic distances in metres between arrays of lon/lat points (element by element)."""
    return np.asarray(WGS84.inv(np.asarray(lons1, float), np.asarray(lats1, float),
                                np.asarray(lons2, float), np.asarray(lats2, float))[2], dtype=float)


@dataclass(frozen=True)
class LocalFrame:
    """Azimuthal equidistant projection (pyproj, WGS84) about (lon0, lat0): x metres east, y metres north."""

    lon0: float
    lat0: float
    _forward: Transformer = field(init=False, repr=False, compare=False)
    _inverse: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        crs = CRS.from_proj4(f"+proj=aeqd +lat_0={self.lat0} +lon_0={self.lon0} +ellps=WGS84 +units=m")
        object.__setattr__(self, "_forward", Transformer.from_crs("EPSG:4326", crs, always_xy=True))
        object.__setattr__(self, "_inverse", Transformer.from_crs(crs, "EPSG:4326", always_xy=True))

    def to_xy(self, lon, lat):
        """Degrees -> metres (x east, y north); scalars or numpy arrays."""
        return self._forward.transform(lon, lat)

    def to_lonlat(self, x_m, y_m):
        """Metres (x east, y north) -> degrees (lon, lat); scalars or numpy arrays."""
        return self._inverse.transform(x_m, y_m)


def offset_lonlat(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point east_m east and north_m north of (lon, lat) (flat, short range; GNSS errors)."""
    return lon + east_m / metres_per_degree_lon(lat), lat + north_m / METRES_PER_DEGREE


def heading_deg(x_m: float, y_m: float) -> float:
    """Compass heading (0 = north, 90 = east) of a local displacement."""
    return math.degrees(math.atan2(x_m, y_m)) % 360.0
