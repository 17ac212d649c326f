"""Geofences as the collar holds them: up to `config.MAX_FENCES` polygons of at most
`config.MAX_FENCE_POINTS` corners, sent as port-32 `fence` commands of seven points each.

The collar alerts on leaving a "park" fence and on entering a "farmland" or "exclusion" one; a
fence that alerts both ways, has holes, or has too many corners stays a server rule only, and
`fence_commands` says so instead of sending something the collar would refuse or misread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shapely.geometry import shape

from collar_firmware import codec
from collar_firmware.config import MAX_FENCE_POINTS, MAX_FENCES
from lora_bridge.errors import CollarFenceLimits

# Points of one `fence` downlink: the codec's list bound for the message.
POINTS_PER_PART = 7
COLLAR_KIND_EXIT = "park"
COLLAR_KIND_FARMLAND = "farmland"
COLLAR_KIND_EXCLUSION = "exclusion"


def collar_kind(kind: str, alert_on: str) -> str | None:
    """The collar's fence kind for a fence of `kind` alerting on `alert_on`; None when the collar
    has no such kind (alerts both ways)."""
    if alert_on == "exit":
        return COLLAR_KIND_EXIT
    if alert_on == "enter":
        return COLLAR_KIND_FARMLAND if kind == "farmland" else COLLAR_KIND_EXCLUSION
    return None


def fence_commands(fences: Sequence[Any]) -> list[dict[str, Any]]:
    """The values of every `fence` command that installs `fences` (`GeofenceView`s) on a collar, in
    order; CollarFenceLimits naming every fence that does not fit, and nothing planned then."""
    rings: list[tuple[str, str, list[tuple[float, float]]]] = []
    problems: list[str] = []
    for fence in fences:
        kind = collar_kind(fence.kind, fence.alert_on)
        if kind is None:
            problems.append(f"'{fence.name}' alerts both ways; a collar alerts only on leaving or on entering")
            continue
        geometry = shape(fence.geometry)
        polygons = list(geometry.geoms) if geometry.geom_type == "MultiPolygon" else [geometry]
        for number, polygon in enumerate(polygons, start=1):
            label = fence.name if len(polygons) == 1 else f"{fence.name} (part {number})"
            corners = list(polygon.exterior.coords)[:-1]
            if polygon.interiors:
                problems.append(f"'{label}' has holes; a collar fence is one ring")
            if len(corners) > MAX_FENCE_POINTS:
                problems.append(
                    f"'{label}' has {len(corners)} corners; a collar fence holds at most {MAX_FENCE_POINTS} "
                    "(simplify it, or keep it as a server rule)"
                )
            rings.append((label, kind, corners))
    if len(rings) > MAX_FENCES:
        problems.append(f"{len(rings)} fences chosen; a collar holds at most {MAX_FENCES}")
    if problems:
        raise CollarFenceLimits("; ".join(problems))
    commands = []
    for fence_id, (_, kind, corners) in enumerate(rings):
        if kind not in codec.FENCE_KINDS:
            raise CollarFenceLimits(f"the codec has no fence kind {kind!r}")
        for first in range(0, len(corners), POINTS_PER_PART):
            part = corners[first : first + POINTS_PER_PART]
            commands.append(
                {
                    "fence_id": fence_id,
                    "kind": kind,
                    "last": int(first + POINTS_PER_PART >= len(corners)),
                    "spare": 0,
                    "first_index": first,
                    "points": [{"lat": float(lat), "lon": float(lon)} for lon, lat, *_height in part],
                }
            )
    return commands
