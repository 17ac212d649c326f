"""Who looks at the dashboard, and what that role may see and do.

Poachers read leaked positions, so exact live positions are for the roles that need them; other
roles see positions snapped to a coarse grid and held back by a delay. A role is chosen when a
dashboard is started (`--role`, or TEMBO_DASHBOARD_ROLE): the control room runs `ranger`, a
research office `researcher`, a screen in the visitor centre `visitor`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from collar_firmware.geo import METRES_PER_DEGREE


@dataclass(frozen=True)
class Role:
    """What one kind of dashboard user may see and do."""

    name: str
    title: str
    exact_positions: bool
    position_grid_m: int = 0
    position_delay: timedelta = timedelta(0)
    handles_alerts: bool = False

    def __post_init__(self) -> None:
        if not self.exact_positions and self.position_grid_m <= 0:
            raise ValueError(f"role {self.name}: coarsened positions need a grid size in metres")

    def describe_positions(self) -> str:
        """How this role sees positions, in one sentence for the page."""
        if self.exact_positions:
            return "Exact live positions."
        delay_h = self.position_delay.total_seconds() / 3600
        delay = f", {delay_h:g} h late" if delay_h else ""
        return f"Positions coarsened to {self.position_grid_m / 1000:g} km{delay} ({self.title} view)."


ROLES: dict[str, Role] = {
    "ranger": Role("ranger", "Ranger", exact_positions=True, handles_alerts=True),
    "researcher": Role(
        "researcher",
        "Researcher",
        exact_positions=False,
        position_grid_m=1_000,
        position_delay=timedelta(hours=6),
    ),
    "visitor": Role(
        "visitor",
        "Visitor centre",
        exact_positions=False,
        position_grid_m=5_000,
        position_delay=timedelta(hours=24),
    ),
}
DEFAULT_ROLE = "ranger"


def role(name: str) -> Role:
    """The role called `name`; ValueError naming the known roles otherwise."""
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; expected one of {sorted(ROLES)}") from None


# ---------------------------------------------------------------- location privacy

METRES_PER_DEGREE_LAT = METRES_PER_DEGREE  # Tembo's one metres-per-degree (collar_firmware.geo)


def coarsen(lat: float, lon: float, grid_m: int) -> tuple[float, float]:
    """(lat, lon) snapped to the centre of its cell in a grid of about grid_m x grid_m metres."""
    lat_step = grid_m / METRES_PER_DEGREE_LAT
    lat_centre = (math.floor(lat / lat_step) + 0.5) * lat_step
    lon_step = grid_m / (METRES_PER_DEGREE_LAT * max(math.cos(math.radians(lat_centre)), 0.01))
    lon_centre = (math.floor(lon / lon_step) + 0.5) * lon_step
    return round(lat_centre, 6), round(lon_centre, 6)


def withheld_positions(
    tracks: Mapping[Any, Sequence[Any]], cutoff: datetime, grid_m: int
) -> tuple[list[Any], dict[str, list[Any]]]:
    """What a role without exact positions sees: fixes up to `cutoff` only, snapped to a grid.

    Returns (last such fix per animal, tracks), both as copies of the given `PositionView`s with
    coarse lat/lon; a run of fixes in the same cell becomes one.
    """
    latest: list[Any] = []
    coarse_tracks: dict[str, list[Any]] = {}
    for animal_id, fixes in tracks.items():
        kept: list[Any] = []
        for p in sorted(fixes, key=lambda p: p.time):
            if p.time > cutoff or p.lat is None or p.lon is None:
                continue
            lat, lon = coarsen(float(p.lat), float(p.lon), grid_m)
            if kept and (kept[-1].lat, kept[-1].lon) == (lat, lon):
                kept[-1] = replace(p, lat=lat, lon=lon)
            else:
                kept.append(replace(p, lat=lat, lon=lon))
        if kept:
            coarse_tracks[str(animal_id)] = kept
            latest.append(kept[-1])
    return latest, coarse_tracks
