"""Movement rules over a collar's fixes: GPS outliers (implausible speed) and immobility.

Both work in metres in the UTM zone of the fixes (pyproj), on plain (time, lat, lon) tuples, so a test
can hand-build a track and check the answer with a ruler. A collar's evaluation cleans its track and then
tests the kept fixes for immobility: the cleaning's projection goes along (`Metres`), so the same fixes
are not projected twice. With fences, the track as judged before the new fixes is cleaned too: from the
same walk over the same metres (`exclude_outliers_of_both`), not a second projection and walk.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

from lora_bridge.domain.batch_metres import BatchMetres
from lora_bridge.domain.geofences import metric_frame, metric_transformers
from lora_bridge.domain.rules_profiles import ImmobilityProfile, SpeedProfile

# A fix's time, its sort key (in C: a track's every fix is sorted so, several times a batch).
_TIME = itemgetter(0)
# A timedelta over this is its total_seconds(), the same float (both divide its whole microseconds by a
# million), as an operator and not a method call: the cleaning's walk takes one at each step.
_SECOND = timedelta(seconds=1)

Fix = tuple[datetime, float, float]  # (time, lat, lon)


def project(fixes: list[Fix]) -> tuple[np.ndarray, CRS]:
    """The fixes as an (n, 2) array of metres (x east, y north) in the UTM zone of their mean, and that CRS."""
    xy, crs, _ = _projected(fixes)
    return xy, crs


@dataclass(frozen=True)
class Metres:
    """Fixes already projected: the transformer that projected them (lon/lat to one UTM zone's metres)
    and each fix's (x, y). Fixes whose own zone has that transformer take their metres from here.
    `ordered`, `points` and `back`: the fixes projected, in time order, their (x, y) in that order and
    the transformer back to lon/lat; the very same fixes (a track with no outlier, all in its window:
    most of a herd's) take all three at once, their zone not worked out again from their mean."""

    forward: Transformer
    xy: dict[Fix, tuple[float, float]]
    ordered: list[Fix] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    back: Transformer | None = None


def _projected(fixes: list[Fix], known: Metres | None = None) -> tuple[np.ndarray, CRS, Transformer]:
    """project, with the transformer back to lon/lat; the metres of known taken when they are the same
    numbers (the same zone's transformer, every fix in it)."""
    xy, back = _projected_back(fixes, known)
    lon, lat = _means(*_lon_lat(fixes))
    return xy, metric_frame(lon, lat)[0], back


def _projected_back(fixes: list[Fix], known: Metres | None) -> tuple[np.ndarray, Transformer]:
    """project's metres (no CRS: immobility does not ask for it, and looking it up costs calls at every
    evaluation), with the transformer back to lon/lat; the metres of known taken when they are the same
    numbers (the same zone's transformer, every fix in it)."""
    if known is not None and known.back is not None and fixes == known.ordered:
        # the same fixes in the same order: the same mean, zone, transformers and metres
        return np.array(known.points, dtype=float), known.back
    lons, lats = _lon_lat(fixes)
    forward, back = metric_transformers(*_means(lons, lats))
    if known is not None and known.forward is forward:
        try:  # one look-up of each fix (a fix hashes its time, costlier than the numbers)
            return np.array([known.xy[f] for f in fixes], dtype=float), back
        except KeyError:
            pass  # a fix the cleaning did not project: all of them are projected here
    x, y = forward.transform(lons, lats)
    return np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)]), back


def _metres(fixes: list[Fix], batch: BatchMetres | None = None,
            ) -> tuple[list[tuple[float, float]], tuple[Transformer, Transformer]]:
    """The fixes as (x, y) metres in the UTM zone of their mean (the same numbers as project), and the
    zone's transformers (the one that gave them, the one back): plain floats, for the cleaning's walk
    from fix to fix. batch: the batch's fixes projected already, taken when they hold these."""
    lons, lats = _lon_lat(fixes)
    transformers = metric_transformers(*_means(lons, lats))
    if batch is not None and (xy := batch.metres(transformers[0], lons, lats)) is not None:
        return xy, transformers
    # in place, on the two arrays of doubles: pyproj takes them as they are (no copy, no numpy steps) and
    # gives them back as metres, each an exact float of PROJ's answer, as a numpy copy would hold it
    x, y = transformers[0].transform(lons, lats, inplace=True)
    return list(zip(x, y, strict=True)), transformers


_SUM = np.add.reduce  # the sum `ndarray.mean` takes (numpy's `_methods._mean`), called at once


def _means(lons: array, lats: array) -> tuple[float, float]:
    """(lons.mean(), lats.mean()) as floats, the same numbers: the sum numpy's mean takes over the count,
    without the Python steps of `ndarray.mean` (a dozen calls each: every collar's track asks twice a batch)."""
    count = len(lons)
    return float(_SUM(lons)) / count, float(_SUM(lats)) / count


def _lon_lat(fixes: list[Fix]) -> tuple[array, array]:
    """The fixes' longitudes and latitudes as two arrays of doubles (the order pyproj's lon/lat transformers
    take): the standard library's, which numpy's sums read as they are and pyproj transforms in place with
    fewer Python steps than a numpy array (every collar's track is projected at every batch)."""
    return array("d", [f[2] for f in fixes]), array("d", [f[1] for f in fixes])


@dataclass(frozen=True)
class CleanTrack:
    """A track with its GPS outliers set apart: `kept` in time order, `outliers` with the speed that gave
    them away, and `metres`, the projection the cleaning made (for `immobility` to reuse)."""

    kept: list[Fix]
    # Each outlier as (fix, speed in m/s from the fix before it): told as evidence (`outliers`) only
    # when an alert cites them; every collar's track is cleaned at every batch.
    outlier_speeds: list[tuple[Fix, float]] = field(default_factory=list)
    metres: Metres | None = None

    @property
    def outliers(self) -> list[dict[str, Any]]:
        """The outliers as an alert's evidence tells them: time, place and the speed that gave them away."""
        return [_outlier(fix, speed_mps) for fix, speed_mps in self.outlier_speeds]


def exclude_outliers(fixes: list[Fix], profile: SpeedProfile, batch: BatchMetres | None = None) -> CleanTrack:
    """Drop fixes that could only be reached faster than profile.max_speed_kmh from the last kept fix.

    A fix too fast to reach is an outlier unless the fix after it is also too fast to reach from the
    last kept one but close to it (then the animal really moved, e.g. after a gap): both are kept.
    The newest fix is judged on what is known; a later fix can rehabilitate it the same way.
    batch: the batch's fixes projected already (`batch_metres`), or None.
    """
    ordered = sorted(fixes, key=_TIME)
    if len(ordered) < 2:
        return CleanTrack(kept=list(ordered))
    xy, transformers = _metres(ordered, batch)
    return _cleaned(ordered, xy, transformers, profile, len(ordered))[0]


def exclude_outliers_of_both(fixes: list[Fix], older: list[Fix], profile: SpeedProfile,
                             batch: BatchMetres | None = None) -> tuple[CleanTrack, CleanTrack]:
    """(exclude_outliers(fixes), exclude_outliers(older)) for older, some of the fixes: a collar's
    track now and the track as it was judged before its new fixes. When older are the oldest of the
    fixes and their mean lies in the same UTM zone (a collar's new fixes came after the ones judged,
    as they nearly always do), the cleaning of older is the same walk stopped at its newest fix, on
    the same metres: taken from the one walk over fixes, not projected and walked again."""
    ordered = sorted(fixes, key=_TIME)
    if len(ordered) < 2 or len(older) < 2:
        return exclude_outliers(fixes, profile, batch), exclude_outliers(older, profile, batch)
    xy, transformers = _metres(ordered, batch)
    count = len(older)
    older_ordered = sorted(older, key=_TIME)
    lons, lats = _lon_lat(older_ordered)
    if ordered[:count] != older_ordered or metric_transformers(*_means(lons, lats))[0] is not transformers[0]:
        return _cleaned(ordered, xy, transformers, profile, len(ordered))[0], exclude_outliers(older, profile, batch)
    return _cleaned(ordered, xy, transformers, profile, count)


def _cleaned(
    ordered: list[Fix], xy: list[tuple[float, float]], transformers: tuple[Transformer, Transformer],
    profile: SpeedProfile, stop_at: int,
) -> tuple[CleanTrack, CleanTrack]:
    """exclude_outliers' walk over ordered (at least two fixes, in time order, xy their metres by
    transformers, the zone of their mean: to it and back): the track cleaned, and the track of its first stop_at fixes (2 <= stop_at <= all of them)
    cleaned, the walk's state at stop_at's newest fix ended as the walk ends (the first when stop_at
    is all of them)."""
    max_mps = profile.max_speed_kmh / 3.6
    kept_idx = [0]
    outliers: list[tuple[Fix, float]] = []
    pending: int | None = None  # a too-fast fix waiting for the next one to tell
    stopped: CleanTrack | None = None
    hypot = math.hypot
    for i in range(1, len(ordered)):
        last = kept_idx[-1]
        # _speed(ordered, xy, last, i), written out: the walk's every step asks it (a call less each)
        seconds = (ordered[i][0] - ordered[last][0]) / _SECOND
        metres = hypot(xy[i][0] - xy[last][0], xy[i][1] - xy[last][1])
        if seconds == 0:
            speed = 0.0 if metres == 0 else math.inf
        else:
            speed = metres / seconds
        if speed <= max_mps:
            if pending is not None:
                outliers.append((ordered[pending], _speed(ordered, xy, last, pending)))
                pending = None
            kept_idx.append(i)
        elif pending is not None and _speed(ordered, xy, pending, i) <= max_mps:
            kept_idx.extend([pending, i])  # two fixes agree: the animal is there
            pending = None
        else:
            if pending is not None:
                outliers.append((ordered[pending], _speed(ordered, xy, last, pending)))
            pending = i
        if i == stop_at - 1 and stop_at < len(ordered):
            # stopped early only when the first stop_at fixes' mean lies in the same zone
            # (`exclude_outliers_of_both`): the same transformers are theirs
            stopped = _ended(ordered[:stop_at], xy[:stop_at], transformers, kept_idx, outliers, pending)
    clean = _ended(ordered, xy, transformers, kept_idx, outliers, pending)
    return clean, stopped if stopped is not None else clean


def _ended(
    ordered: list[Fix], xy: list[tuple[float, float]], transformers: tuple[Transformer, Transformer],
    kept_idx: list[int], outliers: list[tuple[Fix, float]], pending: int | None,
) -> CleanTrack:
    """The cleaned track of the walk's state after ordered's newest fix: a fix still pending is an outlier.
    transformers: those of the zone of ordered's mean, to it (which gave xy) and back."""
    outliers = list(outliers)
    if pending is not None:
        outliers.append((ordered[pending], _speed(ordered, xy, kept_idx[-1], pending)))
    return CleanTrack(kept=[ordered[i] for i in sorted(kept_idx)], outlier_speeds=outliers,
                      metres=Metres(transformers[0], dict(zip(ordered, xy, strict=True)), ordered, xy,
                                    transformers[1]))


def _speed(fixes: list[Fix], xy: list[tuple[float, float]], a: int, b: int) -> float:
    """m/s from fix a to fix b of fixes in time order, a before b (so the seconds are never negative:
    every call of the cleaning's walk is such, and an `abs` would cost a call at each)."""
    seconds = (fixes[b][0] - fixes[a][0]) / _SECOND  # total_seconds()' very number, without its call
    metres = math.hypot(xy[b][0] - xy[a][0], xy[b][1] - xy[a][1])
    if seconds == 0:
        return 0.0 if metres == 0 else math.inf
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
    """The result of the immobility test, with its evidence; the cluster's centre (degrees) only when
    immobile (None otherwise)."""

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


def immobility(fixes: list[Fix], profile: ImmobilityProfile, known: Metres | None = None) -> Immobility:
    """Is the animal still at the newest fix? Walk back from the newest fix while at least
    profile.min_share of the fixes lie within profile.radius_m of their centre; the animal has been
    still since the oldest fix of that cluster that lies inside the radius; immobile when that is at
    least profile.duration_h ago (and the cluster has profile.min_fixes fixes). known: the fixes'
    metres when a cleaning of the track projected them already (`CleanTrack.metres`)."""
    ordered = sorted(fixes, key=_TIME)
    none = Immobility(False, None, 0.0, 0.0, 0, len(ordered), 0.0, None, None)
    if len(ordered) < 2:
        return none
    xy, back = _projected_back(ordered, known)
    newest = len(ordered) - 1
    start = _walk_back(xy, profile.radius_m, profile.min_share)
    if start is None:
        return none
    points = xy[start:]
    centre = _SUM(points, axis=0) / len(points)  # points.mean(axis=0), the same numbers (see _means)
    # The cluster's distances as floats (the same numbers): a few dozen fixes cost less in plain Python
    # than in numpy's calls (argmax, sum, a masked max), each of which costs microseconds on so few.
    distance = np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1]).tolist()
    within = [d for d in distance if d <= profile.radius_m]
    first_inside = start + next((i for i, d in enumerate(distance) if d <= profile.radius_m), 0)
    still_s = (ordered[newest][0] - ordered[first_inside][0]).total_seconds()
    cluster = len(within)
    total = len(distance)
    immobile = still_s >= profile.duration_h * 3600 and cluster >= profile.min_fixes
    # The centre in degrees only for a stillness: the alert's place and evidence are its only readers, and
    # its projection back takes a dozen of pyproj's Python steps at every evaluation of every collar.
    centre_lat = centre_lon = None
    if immobile:
        lon, lat = back.transform(float(centre[0]), float(centre[1]))
        centre_lat, centre_lon = float(lat), float(lon)
    return Immobility(
        immobile=immobile,
        still_since=ordered[first_inside][0],
        still_s=still_s,
        share=cluster / total,
        cluster_fixes=cluster,
        total_fixes=total,
        cluster_radius_m=max(within) if cluster else 0.0,
        centre_lat=centre_lat,
        centre_lon=centre_lon,
    )


# Up to this many fixes the walk back runs on plain floats (a start's centre from the running sums of
# the fixes after it); past it, on arrays, one start at a time (a step's cost then is in the arithmetic,
# not in the calls: a collar's usual day of fixes is far below it).
WALK_ON_FLOATS_FIXES = 48
# A fix this close to the radius (metres) sends the walk to arrays: there each start's centre is the
# mean of its fixes, which running sums may miss in the last bits.
WALK_EXACT_WITHIN_M = 1e-6


def _walk_back(xy: np.ndarray, radius_m: float, min_share: float) -> int | None:
    """The oldest start of immobility's walk back (the fixes from it on hold min_share within radius_m
    of their centre, and so do those of every later start); None when the newest two fixes do not."""
    n = len(xy)
    if n > WALK_ON_FLOATS_FIXES:
        return _walk_back_one_by_one(xy, radius_m, min_share)
    xs, ys = xy[:, 0].tolist(), xy[:, 1].tolist()
    sum_x, sum_y = xs[-1], ys[-1]
    best: int | None = None
    for start in range(n - 2, -1, -1):
        sum_x += xs[start]
        sum_y += ys[start]
        count = n - start
        centre_x, centre_y = sum_x / count, sum_y / count
        inside = 0
        for j in range(start, n):
            distance = math.hypot(xs[j] - centre_x, ys[j] - centre_y)
            # abs(distance - radius_m) <= WALK_EXACT_WITHIN_M, as comparisons (no call a fix and start)
            if -WALK_EXACT_WITHIN_M <= distance - radius_m <= WALK_EXACT_WITHIN_M:
                return _walk_back_one_by_one(xy, radius_m, min_share)
            inside += distance <= radius_m
        if inside / count < min_share:
            break
        best = start
    return best


def _walk_back_one_by_one(xy: np.ndarray, radius_m: float, min_share: float) -> int | None:
    """_walk_back, one start at a time, each centre the mean of its fixes."""
    best: int | None = None
    for start in range(len(xy) - 2, -1, -1):
        points = xy[start:]
        centre = points.mean(axis=0)
        distance = np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1])
        if (distance <= radius_m).mean() < min_share:
            break
        best = start
    return best
