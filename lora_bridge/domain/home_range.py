"""Movement summaries of one animal's track: home range (minimum convex polygon and kernel density
estimate), speed between fixes, and activity by day and by night.

Geometry in metres, never in degrees: the fixes are projected to the UTM zone that holds them
(`geofences.metric_crs`, the bridge's one lookup), worked on with shapely/geopandas, and the
outlines come back in WGS84. Night is the collar's own (`collar_firmware.risk.is_night` with the
collar's `utc_offset_min`), the one night of the whole system.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import MultiPoint, box, mapping
from shapely.ops import unary_union

from collar_firmware.config import DEFAULTS as COLLAR_DEFAULTS
from collar_firmware.risk import is_night
from lora_bridge.domain.geofences import metric_crs

WGS84 = "EPSG:4326"
# The share of the utilisation distribution inside the KDE home range (the usual 95 % isopleth).
KDE_LEVEL = 0.95
# Cells of the density grid along its longer side.
KDE_GRID = 120


@dataclass(frozen=True)
class HomeRange:
    """A home-range outline in WGS84 (GeoJSON geometry) and its area in km²."""

    method: str
    area_km2: float
    geometry: dict[str, Any]
    fixes: int


def _metric_points(fixes: Sequence[Any]) -> gpd.GeoSeries:
    lons = np.array([float(p.lon) for p in fixes])
    lats = np.array([float(p.lat) for p in fixes])
    crs = metric_crs(float(np.mean(lons)), float(np.mean(lats)))
    return gpd.GeoSeries(gpd.points_from_xy(lons, lats), crs=WGS84).to_crs(crs)


def minimum_convex_polygon(fixes: Sequence[Any]) -> HomeRange | None:
    """The 100 % minimum convex polygon of the fixes (None with fewer than three distinct fixes)."""
    if len(fixes) < 3:
        return None
    points = _metric_points(fixes)
    hull = MultiPoint(list(points.geometry)).convex_hull
    if hull.geom_type != "Polygon":
        return None
    outline = gpd.GeoSeries([hull], crs=points.crs).to_crs(WGS84).iloc[0]
    return HomeRange("MCP 100 %", round(hull.area / 1e6, 3), mapping(outline), len(fixes))


def kernel_density_range(fixes: Sequence[Any], level: float = KDE_LEVEL) -> HomeRange | None:
    """The `level` isopleth of a Gaussian kernel density estimate of the fixes (reference bandwidth
    h_ref = sqrt((sx² + sy²) / 2) · n^(-1/6), in metres), as the union of the grid cells holding the
    densest `level` of the distribution. None with fewer than five fixes or no spread."""
    if len(fixes) < 5:
        return None
    points = _metric_points(fixes)
    xy = np.column_stack([points.x.to_numpy(), points.y.to_numpy()])
    n = len(xy)
    spread = np.sqrt((xy[:, 0].var(ddof=1) + xy[:, 1].var(ddof=1)) / 2)
    if not np.isfinite(spread) or spread <= 0:
        return None
    h = float(spread * n ** (-1 / 6))
    if not np.isfinite(h) or h < 1.0:  # under a metre: the fixes are one place
        return None
    (x0, y0), (x1, y1) = xy.min(axis=0) - 3 * h, xy.max(axis=0) + 3 * h
    cell = max(x1 - x0, y1 - y0) / KDE_GRID
    xs = np.arange(x0, x1 + cell, cell)
    ys = np.arange(y0, y1 + cell, cell)
    gx, gy = np.meshgrid(xs + cell / 2, ys + cell / 2)
    density = np.zeros_like(gx)
    for px, py in xy:  # one Gaussian per fix: n is an animal's fixes, the grid is fixed
        density += np.exp(-((gx - px) ** 2 + (gy - py) ** 2) / (2 * h * h))
    total = float(density.sum())
    if density.size == 0 or not np.isfinite(total) or total <= 0:
        return None
    order = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(order) / order.sum()
    threshold = order[min(np.searchsorted(cumulative, level), len(order) - 1)]
    rows, cols = np.nonzero(density >= threshold)
    cells = unary_union([box(xs[c], ys[r], xs[c] + cell, ys[r] + cell) for r, c in zip(rows, cols, strict=True)])
    area = cells.simplify(cell / 2)  # the grid's staircase smoothed, within half a cell
    outline = gpd.GeoSeries([area], crs=points.crs).to_crs(WGS84).iloc[0]
    return HomeRange(f"KDE {level:.0%}", round(area.area / 1e6, 3), mapping(outline), n)


def speeds(fixes: Sequence[Any]) -> pd.DataFrame:
    """Speed between consecutive fixes: time (of the later fix), distance_m, hours, speed_km_h."""
    ordered = sorted(fixes, key=lambda p: p.time)
    if len(ordered) < 2:
        return pd.DataFrame(columns=["time", "distance_m", "hours", "speed_km_h"])
    points = _metric_points(ordered)
    distance = points.distance(points.shift(1)).to_numpy()[1:]
    times = pd.to_datetime([p.time for p in ordered], utc=True)
    hours = (times[1:] - times[:-1]).total_seconds().to_numpy() / 3600
    frame = pd.DataFrame({"time": times[1:], "distance_m": distance, "hours": hours})
    frame = frame[frame["hours"] > 0]
    frame["speed_km_h"] = frame["distance_m"] / 1000 / frame["hours"]
    return frame.reset_index(drop=True)


def utc_offset_min(reported_settings: dict[str, Any] | None) -> int:
    """The collar's local-time offset: what it reported, else its firmware default."""
    value = (reported_settings or {}).get("utc_offset_min")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else int(COLLAR_DEFAULTS["utc_offset_min"])


def day_night_activity(summaries: Sequence[Any], offset_min: int) -> pd.DataFrame:
    """Mean VeDBA (mg) and share of each behaviour (%) by day and by night (the collar's night),
    one row per period ('day', 'night'), from activity summaries (`ActivityView`)."""
    rows = []
    for s in summaries:
        middle = s.time.timestamp() + 30 * s.interval_min
        row: dict[str, Any] = {"period": "night" if is_night(int(middle), offset_min) else "day"}
        row["VeDBA mean (mg)"] = s.vedba_mean_mg
        row.update({behaviour: float(share) for behaviour, share in dict(s.shares_pct).items()})
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).fillna({c: 0.0 for c in pd.DataFrame(rows).columns if c not in ("period",)})
    return frame.groupby("period").mean(numeric_only=True).round(1)


def daily_budget(summaries: Sequence[Any]) -> pd.DataFrame:
    """Hours per behaviour per UTC day from activity summaries (share × interval)."""
    rows = []
    for s in summaries:
        for behaviour, share in dict(s.shares_pct).items():
            rows.append(
                {"day": s.time.date(), "behaviour": behaviour, "hours": float(share) / 100 * s.interval_min / 60}
            )
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(index="day", columns="behaviour", values="hours", aggfunc="sum").fillna(0)
