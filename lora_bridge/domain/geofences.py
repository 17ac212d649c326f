"""Geofences: stored in WGS84, checked in metres, crossings found the way ecoscope finds them.

A crossing is where a track segment (two consecutive plausible fixes) intersects a fence's lines
(its outer ring and the rings of its holes), in the reserve's UTM projection. The crossing time is
interpolated along the segment by distance; whether it is an exit or an entry comes from containment
just before and just after each intersection, so a segment that touches a fence without crossing it,
runs along it, or cuts a corner (out and back in between two fixes) gives the right answer, and a
hole counts as outside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from shapely.geometry import LineString, Point, shape
from shapely.prepared import prep
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lora_bridge.domain.geofence_files import FenceFile
from lora_bridge.errors import UnknownGeofence
from lora_bridge.store.tables import Geofence

log = logging.getLogger(__name__)

ENTER = "enter"
EXIT = "exit"


@dataclass(frozen=True)
class Crossing:
    """An animal crossed a fence: where, when (interpolated), and which way."""

    fence_id: int
    fence_name: str
    fence_kind: str
    direction: str  # "enter" or "exit"
    time: datetime
    lat: float
    lon: float
    fraction: float  # along the segment, 0 at the first fix


@dataclass(frozen=True)
class _Fence:
    id: int
    name: str
    kind: str
    alert_on: str
    area: object  # projected shapely polygon
    prepared: object
    lines: object  # its rings (outer and holes)


def metric_crs(lon: float, lat: float) -> CRS:
    """The UTM CRS that holds lon/lat (looked up once per whole degree: a reserve needs one or two)."""
    return _utm_of_cell(round(lon), round(lat))


@lru_cache(maxsize=256)
def _utm_of_cell(lon: int, lat: int) -> CRS:
    return CRS.from_epsg(_utm_code_of_cell(lon, lat))


@lru_cache(maxsize=256)
def _utm_code_of_cell(lon: int, lat: int) -> int:
    """The EPSG code of the WGS 84 / UTM zone holding the whole-degree point (lon, lat): the first of
    the zones whose area of use holds it, as PROJ's database lists them (`utm_code_from_database`),
    computed rather than looked up (that query took ~0.1 s of CPU per cell, paid by the first fixes
    of every bridge process). The zones' areas of use in the database are 6° wide from 180°W, the
    north from the equator to 84°N, the south from 80°S to it, bounds included, so a point on a
    bound belongs to the lower code (western zone, northern hemisphere). Anything else (the poles)
    is asked of the database."""
    if -180 <= lon <= 180 and -80 <= lat <= 84:
        zone = max(1, -(-(lon + 180) // 6))  # the westernmost zone whose east bound is at or east of lon
        return (32600 if lat >= 0 else 32700) + zone
    return utm_code_from_database(lon, lat)


def utm_code_from_database(lon: int, lat: int) -> int:
    """The first WGS 84 / UTM code PROJ's database gives for the point (lon, lat); IndexError when none
    holds it (beyond 84°N or 80°S)."""
    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    return int(infos[0].code)


def metric_transformers(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    """(lon/lat → metres, metres → lon/lat) in the UTM zone that holds lon/lat, both cached: the rules
    project a few fixes on every evaluation, so no CRS lookup happens on that path."""
    return _transformers_of_cell(round(lon), round(lat))


@lru_cache(maxsize=256)
def _transformers_of_cell(lon: int, lat: int) -> tuple[Transformer, Transformer]:
    """metric_transformers of a whole-degree cell, the pair kept: one cached call an evaluation's projection,
    not three (the zone's code, then each transformer)."""
    code = _utm_code_of_cell(lon, lat)
    return _transformer(code, forward=True), _transformer(code, forward=False)


def metric_frame(lon: float, lat: float) -> tuple[CRS, Transformer, Transformer]:
    """The UTM CRS that holds lon/lat with its two transformers (metric_transformers), all cached."""
    return (_utm_of_cell(round(lon), round(lat)), *metric_transformers(lon, lat))


def to_metric(crs: CRS) -> Transformer:
    """lon/lat (EPSG:4326, x=lon) → metres in crs."""
    return _transformer(crs.to_epsg() or crs.to_wkt(), forward=True)


def from_metric(crs: CRS) -> Transformer:
    """metres in crs → lon/lat."""
    return _transformer(crs.to_epsg() or crs.to_wkt(), forward=False)


@lru_cache(maxsize=64)
def _transformer(code: int | str, forward: bool) -> Transformer:
    crs = CRS.from_user_input(code)
    if forward:
        return Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


class FenceIndex:
    """Every stored fence projected once to the reserve's UTM zone, with a spatial index on its lines."""

    def __init__(self, rows: list[Geofence]) -> None:
        self.version = fence_version_of(rows)
        self.fences: list[_Fence] = []
        self.crs: CRS | None = None
        if not rows:
            self._tree = None
            return
        union = shapely.union_all([shape(row.geometry) for row in rows])
        centre = union.centroid
        self.crs = metric_crs(centre.x, centre.y)
        forward = self._forward = to_metric(self.crs)
        self._back = from_metric(self.crs)
        for row in rows:
            area = shapely.transform(shape(row.geometry), lambda xy, f=forward: np.column_stack(f.transform(xy[:, 0], xy[:, 1])))
            self.fences.append(
                _Fence(row.id, row.name, row.kind, row.alert_on, area, prep(area), area.boundary)
            )
        self._tree = shapely.STRtree([fence.lines for fence in self.fences])

    def __len__(self) -> int:
        return len(self.fences)

    def crossings(
        self, start: tuple[datetime, float, float], end: tuple[datetime, float, float]
    ) -> list[Crossing]:
        """Every fence crossing of the segment between two fixes (time, lat, lon), in time order."""
        if self._tree is None or self.crs is None:
            return []
        (t0, lat0, lon0), (t1, lat1, lon1) = start, end
        forward = self._forward
        x0, y0 = forward.transform(lon0, lat0)
        x1, y1 = forward.transform(lon1, lat1)
        if (x0, y0) == (x1, y1):
            return []
        segment = LineString([(x0, y0), (x1, y1)])
        found: list[Crossing] = []
        for index in self._tree.query(segment, predicate="intersects"):
            found.extend(self._fence_crossings(self.fences[int(index)], segment, t0, t1))
        found.sort(key=lambda c: (c.time, c.fence_id))
        return found

    def containing(self, lat: float, lon: float) -> list[int]:
        """Ids of the fences whose area holds the point (holes excluded)."""
        if self.crs is None:
            return []
        x, y = self._forward.transform(lon, lat)
        point = Point(x, y)
        return [fence.id for fence in self.fences if fence.prepared.contains(point)]

    def place(self, fence_id: int, lat: float, lon: float) -> tuple[bool, float]:
        """(inside, metres to the nearest of its lines) of a point against one fence (holes outside)."""
        fence = self.fence(fence_id)
        if fence is None or self.crs is None:
            return False, 0.0
        point = Point(*self._forward.transform(lon, lat))
        return bool(fence.prepared.contains(point)), float(fence.lines.distance(point))

    def _fence_crossings(self, fence: _Fence, segment: LineString, t0: datetime, t1: datetime) -> list[Crossing]:
        touched = segment.intersection(fence.lines)
        fractions = sorted({segment.project(Point(c), normalized=True) for c in _coordinates(touched)})
        if not fractions:
            return []
        # Containment between consecutive intersections decides; a touch leaves it unchanged.
        cuts = [0.0, *fractions, 1.0]
        states = [
            fence.prepared.contains(segment.interpolate((a + b) / 2, normalized=True))
            for a, b in zip(cuts, cuts[1:], strict=False)
        ]
        back = self._back
        crossings = []
        for i, fraction in enumerate(fractions):
            before, after = states[i], states[i + 1]
            if before == after:
                continue
            x, y = segment.interpolate(fraction, normalized=True).coords[0]
            lon, lat = back.transform(x, y)
            crossings.append(
                Crossing(
                    fence_id=fence.id,
                    fence_name=fence.name,
                    fence_kind=fence.kind,
                    direction=ENTER if after else EXIT,
                    time=t0 + timedelta(seconds=(t1 - t0).total_seconds() * fraction),
                    lat=lat,
                    lon=lon,
                    fraction=fraction,
                )
            )
        return crossings

    def fence(self, fence_id: int) -> _Fence | None:
        """The projected fence with this id."""
        for fence in self.fences:
            if fence.id == fence_id:
                return fence
        return None


def _coordinates(geometry: object) -> list[tuple[float, float]]:
    """Every vertex of an intersection result (points, or the ends of a stretch run along a fence)."""
    if geometry is None or geometry.is_empty:
        return []
    if hasattr(geometry, "geoms"):
        out: list[tuple[float, float]] = []
        for part in geometry.geoms:
            out.extend(_coordinates(part))
        return out
    coords = list(geometry.coords)
    if geometry.geom_type == "Point":
        return coords
    return [coords[0], coords[-1]]


def fence_version_of(rows: list[Geofence]) -> tuple[int, int, str]:
    """A cheap fingerprint of the fence table (count, highest id, newest change) to know when to rebuild."""
    stamps = [row.updated_at or row.created_at for row in rows]
    newest = max((_as_utc(stamp) for stamp in stamps if stamp is not None), default=None)
    return (len(rows), max((row.id for row in rows), default=0), newest.isoformat() if newest else "")


def fence_version_columns() -> list[Any]:
    """The fingerprint's three aggregates as scalar subqueries, to ride along another query."""
    stamp = func.coalesce(Geofence.updated_at, Geofence.created_at)
    return [
        select(func.count(Geofence.id)).scalar_subquery(),
        select(func.max(Geofence.id)).scalar_subquery(),
        select(func.max(stamp)).scalar_subquery(),
    ]


def fence_version_from(count: Any, top: Any, newest: Any) -> tuple[int, int, str]:
    """The fingerprint from the three aggregates as the store hands them back."""
    if isinstance(newest, str):  # SQLite hands an aggregate back as text
        newest = datetime.fromisoformat(newest)
    newest = _as_utc(newest) if newest is not None else None
    return (int(count or 0), int(top or 0), newest.isoformat() if newest else "")


_FENCE_VERSION: Any = None


# session.info: the fingerprint read along the batch's first statement (`pipeline.read_batch_start`),
# taken once by the next `fence_version` of the same transaction
FENCE_VERSION_READ = "tembo_fence_version_read"


def fence_version(session: Session) -> tuple[int, int, str]:
    """The fingerprint of the stored fences, read with one query (built once: every batch reads it),
    unless already read in this transaction's batch start (taken once, never kept across batches)."""
    read = session.info.pop(FENCE_VERSION_READ, None)
    if read is not None:
        return read
    global _FENCE_VERSION
    if _FENCE_VERSION is None:
        _FENCE_VERSION = select(*fence_version_columns())
    return fence_version_from(*session.execute(_FENCE_VERSION).one())


def _as_utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def store_fences(session: Session, fence_file: FenceFile, *, replace: bool = False) -> list[Geofence]:
    """Store the fences of a read file (after removing every stored fence when replace)."""
    session.info.pop(FENCE_VERSION_READ, None)  # a fingerprint read before this change is stale
    if replace:
        session.execute(delete(Geofence))
    rows = [
        Geofence(
            name=fence.name,
            kind=fence.kind,
            alert_on=fence.alert_on,
            geometry=fence.geometry,
            source_file=fence_file.filename,
            source_crs=fence_file.source_crs,
            properties=fence.properties,
        )
        for fence in fence_file.fences
    ]
    session.add_all(rows)
    session.flush()
    log.info("geofences stored", extra={"geofence_file": fence_file.filename, "fences": len(rows)})
    return rows


def all_fences(session: Session) -> list[Geofence]:
    """Every stored fence, oldest first."""
    return list(session.scalars(select(Geofence).order_by(Geofence.id)))


def delete_fence(session: Session, fence_id: int) -> None:
    """Remove one fence (UnknownGeofence when there is none with this id)."""
    session.info.pop(FENCE_VERSION_READ, None)  # a fingerprint read before this change is stale
    row = session.get(Geofence, int(fence_id))
    if row is None:
        raise UnknownGeofence(f"no geofence {fence_id!r}")
    session.delete(row)
