"""The fixes a batch read for its collars' rules, projected to metres in one transform a zone.

The rules clean every heard collar's track at every batch (`rules_movement.exclude_outliers`), its fixes
projected to the UTM zone of their mean: pyproj's array transform took some fifteen Python calls a collar
in its wrapper (buffers, checks) for a few dozen points. Here the fixes the batch read for all its collars
(`rules_engine._read_collars`) go through one transform a zone, and a collar's cleaning takes its fixes'
metres from them; a track with a fix they do not hold is projected for itself, as before. PROJ transforms each point alone, so a fix's metres are the same numbers either way.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from datetime import datetime

from pyproj import Transformer

from lora_bridge.domain.geofences import metric_transformers

Row = tuple[int, datetime, float, float]  # a fix as the rules read it: (id, time, lat, lon)
# A batch whose fixes span more whole-degree cells than this (a fleet across a continent) is not projected
# ahead: each track is, for itself
MOST_CELLS = 16


Metres = dict[tuple[float, float], tuple[float, float]]  # (lon, lat) -> (x, y)


class BatchMetres:
    """Metres of a batch's fixes by zone: by the id of the zone's forward transformer (a Transformer does
    not hash), the transformer with the fixes' metres by (lon, lat)."""

    def __init__(self, by_zone: dict[int, tuple[Transformer, Metres]]) -> None:
        self.by_zone = by_zone

    @classmethod
    def of(cls, tracks: Iterable[list[Row]]) -> BatchMetres:
        """The metres of every fix of tracks (the collars' fixes read) in every zone a track of them can
        be projected in: the zones of the whole-degree cells their box spans (the mean of a track's fixes
        lies in it, and `metric_transformers` picks a track's zone by the cell of its mean). None when
        the box spans more than MOST_CELLS cells."""
        tracks = list(tracks)
        lons = array("d", [row[3] for rows in tracks for row in rows])
        lats = array("d", [row[2] for rows in tracks for row in rows])
        if not lons:
            return cls({})
        west, east, south, north = round(min(lons)), round(max(lons)), round(min(lats)), round(max(lats))
        if (east - west + 1) * (north - south + 1) > MOST_CELLS:
            return cls({})
        zones = {}
        for lon in range(west, east + 1):
            for lat in range(south, north + 1):
                forward = metric_transformers(lon, lat)[0]
                zones[id(forward)] = forward
        places = list(zip(lons, lats, strict=True))
        by_zone = {}
        for key, forward in zones.items():
            x, y = forward.transform(lons, lats)
            by_zone[key] = (forward, dict(zip(places, zip(x, y, strict=True), strict=True)))
        return cls(by_zone)

    def metres(self, forward: Transformer, lons: array, lats: array) -> list[tuple[float, float]] | None:
        """The (x, y) metres by forward of the fixes at lons, lats (in order); None when this batch's
        projection lacks that zone or one of the fixes."""
        zone = self.by_zone.get(id(forward))
        if zone is None or zone[0] is not forward:
            return None
        known = zone[1]
        try:
            return [known[place] for place in zip(lons, lats, strict=True)]
        except KeyError:
            return None
