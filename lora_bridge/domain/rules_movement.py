"""Movement rules over a collar's fixes: GPS outliers (implausible speed) and immobility.

Both work in metres in the UTM zone of the fixes (pyproj), on plain (time, lat, lon) tuples, so a test
can hand-build a track and check the answer with a ruler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

from lora_bridge.domain.geofences import metric_frame, metric_transformers
from lora_bridge.domain.rules_profiles import ImmobilityProfile, SpeedProfile

Fix = tuple[datetime, float, float]  # (time, lat, lon)


def project(fixes: list[Fix]) -> tuple[np.ndarray, CRS]:
    """The fixes as an (n, 2) array of metres (x east, y north) in the UTM zone of their mean, and that CRS."""
    xy, crs, _ = _projected(fixes)
    return xy, crs


def _projected(fixes: list[Fix]) -> tuple[np.ndarray, CRS, Transformer]:
    """project, with the transformer back to lon/lat."""
    lats = np.array([f[1] for f in fixes], dtype=float)
    lons = np.array([f[2] for f in fixes], dtype=float)
    crs, forward, back = metric_frame(float(lons.mean()), float(lats.mean()))
    x, y = forward.transform(lons, lats)
    return np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)]), crs, back


def _metres(fixes: list[Fix]) -> list[tuple[float, float]]:
    """The fixes as (x, y) metres in the UTM zone of their mean (the same numbers as project)."""
    lats = np.array([f[1] for f in fixes], dtype=float)
    lons = np.array([f[2] for f in fixes], dtype=float)
    forward, _ = metric_transformers(float(lons.mean()), float(lats.mean()))
    x, y = forward.transform(lons, lats)
    return list(zip(np.asarray(x, dtype=float).tolist(), np.asarray(y, dtype=float).tolist(), strict=True))


@dataclass(frozen=True)
class CleanTrack:
    """A track with its GPS outliers set apart: `kept` in time order, `outliers` with the speed that gave them away."""

    kept: list[Fix]
    outliers: list[dict[str, Any]] = field(default_factory=list)


def exclude_outliers(fixes: list[Fix], profile: SpeedProfile) -> CleanTrack:
    """Drop fixes that could only be reached faster than profile.max_speed_kmh from the last kept fix.

    A fix too fast to reach is an outlier unless the fix after it is also too fast to reach from the
    last kept one but close to it (then the animal really moved, e.g. after a gap): both are kept.
    The newest fix is judged on what is known; a later fix can rehabilitate it the same way.
    """
    ordered = sorted(fixes, key=lambda f: f[0])
    if len(ordered) < 2:
        return CleanTrack(kept=list(ordered))
    xy = _metres(ordered)
    max_mps = profile.max_speed_kmh / 3.6
    kept_idx = [0]
    outliers: list[dict[str, Any]] = []
    pending: int | None = None  # a too-fast fix waiting for the next one to tell
    for i in range(1, len(ordered)):
        last = kept_idx[-1]
        speed = _speed(ordered, xy, last, i)
        if speed <= max_mps:
            if pending is not None:
                outliers.append(_outlier(ordered[pending], _speed(ordered, xy, last, pending)))
                pending = None
            kept_idx.append(i)
            continue
        if pending is not None and _speed(ordered, xy, pending, i) <= max_mps:
            kept_idx.extend([pending, i])  # two fixes agree: the animal is there
            pending = None
            continue
        if pending is not None:
            outliers.append(_outlier(ordered[pending], _speed(ordered, xy, last, pending)))
        pending = i
    if pending is not None:
        outliers.append(_outlier(ordered[pending], _speed(ordered, xy, kept_idx[-1], pending)))
    return CleanTrack(kept=[ordered[i] for i in sorted(kept_idx)], outliers=outliers)


def _speed(fixes: list[Fix], xy: list[tuple[float, float]], a: int, b: int) -> float:
    seconds = abs((fixes[b][0] - fixes[a][0]).total_seconds())
    metres = math.hypot(xy[b][0] - xy[a][0], xy[b][1] - xy[a][1])
    if seconds == 0:
        return 0.0 if metres == 0 else float("inf")
    return metres / seconds


def _outlier(fix: Fix, speed_mps: float) -> dict[str, Any]:
    return {
        "time": fix[0].isoformat(),
        "lat": fix[1],
        "lon": fix[2],
        "speed_kmh": round(speed_mps * 3.6, 1) if np.isfinite(speed_mps) else None,
    }


@dataclass(frozen=True)
class Immobility:
    """The result of the immobility test, with its evidence."""

    immobile: bool
    still_since: datetime | None
    still_s: float
    share: float
    cluster_fixes: int
    total_fixes: int
    cluster_radius_m: float
    centre_lat: float | None
    centre_lon: float | None

    def evidence(self, profile: ImmobilityProfile) -> dict[str, Any]:
        """What a ranger reads: the profile, the cluster, and since when."""
        return {
            "rule": "immobility (Wall et al. 2014, ecoscope form)",
            "profile": profile.model_dump(),
            "still_since": self.still_since.isoformat() if self.still_since else None,
            "still_h": round(self.still_s / 3600, 2),
            "share_within_radius": round(self.share, 3),
            "cluster_fixes": self.cluster_fixes,
            "total_fixes": self.total_fixes,
            "cluster_radius_m": round(self.cluster_radius_m, 1),
            "centre": {"lat": self.centre_lat, "lon": self.centre_lon},
        }


def immobility(fixes: list[Fix], profile: ImmobilityProfile) -> Immobility:
    """Is the animal still at the newest fix? Walk back from the newest fix while at least
    profile.min_share of the fixes lie within profile.radius_m of their centre; the animal has been
    still since the oldest fix of that cluster that lies inside the radius; immobile when that is at
    least profile.duration_h ago (and the cluster has profile.min_fixes fixes)."""
    ordered = sorted(fixes, key=lambda f: f[0])
    none = Immobility(False, None, 0.0, 0.0, 0, len(ordered), 0.0, None, None)
    if len(ordered) < 2:
        return none
    xy, _, back = _projected(ordered)
    newest = len(ordered) - 1
    best: tuple[int, np.ndarray, np.ndarray] | None = None
    for start in range(newest - 1, -1, -1):
        points = xy[start:]
        centre = points.mean(axis=0)
        distance = np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1])
        inside = distance <= profile.radius_m
        if inside.mean() < profile.min_share:
            break
        best = (start, centre, inside)
    if best is None:
        return none
    start, centre, inside = best
    first_inside = start + int(np.argmax(inside))
    still_s = (ordered[newest][0] - ordered[first_inside][0]).total_seconds()
    lon, lat = back.transform(float(centre[0]), float(centre[1]))
    cluster = int(inside.sum())
    total = len(inside)
    distance = np.hypot(xy[start:, 0] - centre[0], xy[start:, 1] - centre[1])
    return Immobility(
        immobile=still_s >= profile.duration_h * 3600 and cluster >= profile.min_fixes,
        still_since=ordered[first_inside][0],
        still_s=still_s,
        share=cluster / total,
        cluster_fixes=cluster,
        total_fixes=total,
        cluster_radius_m=float(distance[inside].max()) if cluster else 0.0,
        centre_lat=float(lat),
        centre_lon=float(lon),
    )
