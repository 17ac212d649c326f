"""Geometry on the collar: virtual fences, point in polygon and distance to a fence edge, in integers.

Coordinates are the codec's int24 units (`lat_raw = lat_deg * 2**23 / 90`, `lon_raw = lon_deg * 2**23 / 180`,
about 1.2 m and 2.4 m * cos(lat)). Distances are whole metres from a local flat-earth projection about
the fence, good to a fraction of a percent over a reserve's few tens of kilometres.
"""

import math
from array import array

from collar_firmware.compat import const

# Tembo's one metres-per-degree (WGS84 equatorial radius * pi / 180): a degree of latitude, and a degree
# of longitude times cos(latitude). The twin, the bridge and the dashboard import it from here.
METRES_PER_DEGREE = 111319.49

LAT_UNITS_PER_DEG = 8388608 / 90
LON_UNITS_PER_DEG = 8388608 / 180
_LAT_MM_PER_UNIT = const(1194)  # METRES_PER_DEGREE * 1000 * 90 / 2**23 (a literal for const; a test pins it)
_LON_MM_PER_UNIT_EQUATOR = METRES_PER_DEGREE * 1000 * 180 / 8388608

FENCE_PARK = const(0)
_FENCE_FARMLAND = const(1)
_FENCE_EXCLUSION = const(2)


def metres_per_degree_lon(lat_deg):
    """Return the metres in a degree of longitude at lat_deg."""
    return METRES_PER_DEGREE * math.cos(math.radians(lat_deg))


def lat_raw(lat_deg):
    """Return the int24 wire units of a latitude in degrees."""
    x = lat_deg * LAT_UNITS_PER_DEG
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def lon_raw(lon_deg):
    """Return the int24 wire units of a longitude in degrees."""
    x = lon_deg * LON_UNITS_PER_DEG
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


class Fence:
    """One virtual fence: a polygon of at most max_points vertices in int24 units, with a kind."""

    def __init__(self, fence_id, kind, max_points):
        self.fence_id = fence_id
        self.kind = kind
        self.lat = array("i", [0] * max_points)
        self.lon = array("i", [0] * max_points)
        self.n = 0
        self.complete = False
        self.lon_mm_per_unit = int(_LON_MM_PER_UNIT_EQUATOR)

    def set_point(self, index, lat_units, lon_units):
        """Store vertex index; return False when index is beyond the fence's capacity."""
        if index < 0 or index >= len(self.lat):
            return False
        self.lat[index] = lat_units
        self.lon[index] = lon_units
        if index + 1 > self.n:
            self.n = index + 1
        return True

    def close(self):
        """Mark the polygon complete (at least 3 vertices) and fix its longitude scale; return success."""
        if self.n < 3:
            return False
        lat0_deg = self.lat[0] / LAT_UNITS_PER_DEG
        self.lon_mm_per_unit = int(_LON_MM_PER_UNIT_EQUATOR * math.cos(math.radians(lat0_deg)))
        self.complete = True
        return True

    def contains(self, lat_units, lon_units):
        """Return True when the point is inside the polygon (even-odd rule)."""
        return contains(self.lat, self.lon, self.n, lat_units, lon_units)

    def edge_distance_m(self, lat_units, lon_units):
        """Return the distance in metres from the point to the nearest edge of the polygon."""
        return edge_distance_m(self.lat, self.lon, self.n, lat_units, lon_units, self.lon_mm_per_unit)


def contains(lats, lons, n, py, px):
    """Return True when (py, px) lies inside the polygon of the first n vertices (lats, lons)."""
    inside = False
    j = n - 1
    for i in range(n):
        yi = lats[i]
        yj = lats[j]
        if (yi > py) != (yj > py):
            xi = lons[i]
            xj = lons[j]
            lhs = (px - xi) * (yj - yi)
            rhs = (py - yi) * (xj - xi)
            if (lhs < rhs) if yj > yi else (lhs > rhs):
                inside = not inside
        j = i
    return inside


def edge_distance_m(lats, lons, n, py, px, lon_mm_per_unit):
    """Return the whole metres from (py, px) to the nearest edge of the polygon of n vertices."""
    best = -1
    j = n - 1
    for i in range(n):
        ax = (lons[j] - px) * lon_mm_per_unit // 1000
        ay = (lats[j] - py) * _LAT_MM_PER_UNIT // 1000
        bx = (lons[i] - px) * lon_mm_per_unit // 1000
        by = (lats[i] - py) * _LAT_MM_PER_UNIT // 1000
        d2 = _segment_d2(ax, ay, bx, by)
        if best < 0 or d2 < best:
            best = d2
        j = i
    return _isqrt(best) if best > 0 else 0


def _segment_d2(ax, ay, bx, by):
    """Squared distance from the origin to segment a-b (integer metres)."""
    vx = bx - ax
    vy = by - ay
    length2 = vx * vx + vy * vy
    t_num = -(ax * vx + ay * vy)
    if length2 == 0 or t_num <= 0:
        return ax * ax + ay * ay
    if t_num >= length2:
        return bx * bx + by * by
    cross = ax * vy - ay * vx
    return cross * cross // length2


def _isqrt(n):
    """Integer square root of n >= 0."""
    x = int(math.sqrt(n))
    while x * x > n:
        x -= 1
    while (x + 1) * (x + 1) <= n:
        x += 1
    return x


def distance_m(lat1, lon1, lat2, lon2):
    """Return the whole metres between two points given in int24 units (flat earth, short range)."""
    lat_mid_deg = (lat1 + lat2) / 2 / LAT_UNITS_PER_DEG
    kx = int(_LON_MM_PER_UNIT_EQUATOR * math.cos(math.radians(lat_mid_deg)))
    dx = (lon2 - lon1) * kx // 1000
    dy = (lat2 - lat1) * _LAT_MM_PER_UNIT // 1000
    return _isqrt(dx * dx + dy * dy)
