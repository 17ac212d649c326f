"""Page logic of the ranger dashboard as plain functions over the bridge's view dataclasses.

Nothing here imports streamlit: the pages call these functions and show what they return, and
unit tests call them directly. Inputs are the frozen views of `lora_bridge.views` (read by
attribute: `AnimalView`, `PositionView`, `AlertView`, activity summaries) and the reserve's
GeoJSON from `Bridge.geography()`. All times are timezone-aware UTC.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pydeck as pdk

from ranger_dashboard import palette

# Battery of the reference collar (Li-SOCl2 cells): 3.6 V nominal, flat until nearly empty.
# The bridge's low_battery rule threshold is passed in by the pages; this is its default.
LOW_BATTERY_MV = 3500
# An animal not heard from for this long is shown as silent.
SILENT_AFTER = timedelta(hours=6)
# Streamlit passes this to its map component to mean "no base map": no online tiles are fetched.
NO_BASE_MAP = "__MAP_STYLE__"
# pydeck reads a bare string as a data accessor; a constant string must be quoted.
PIXELS = "'pixels'"
# Verdicts a ranger gives when resolving an alert: label shown -> value stored by the bridge.
VERDICTS: dict[str, str] = {"True alert": "true", "False alarm": "false_alarm", "Unknown": "unknown"}
# Alert type names as rangers read them.
ALERT_TYPE_LABELS: dict[str, str] = {
    "mortality": "Possible mortality",
    "immobility": "Immobile",
    "poaching_risk": "Possible poaching",
    "geofence_farmland": "Entered farmland",
    "geofence_exit": "Left the reserve",
    "collar_drop": "Collar drop",
    "tamper": "Collar tamper",
    "low_battery": "Low battery",
    "offline": "Offline",
    "speed": "Unusual speed",
    "test": "Test alert",
}

# Column names of the tables, imported by tests.
COL_PRIORITY = "Priority"
COL_TYPE = "Alert"
COL_ANIMAL = "Animal"
COL_TIME = "Time (UTC)"
COL_AGE = "Age"
COL_STATE = "State"
COL_SOURCE = "Source"
COL_POSITION = "Position"
COL_NAME = "Name"
COL_SPECIES = "Species"
COL_COLLAR = "Collar"
COL_LAST_SEEN = "Last seen (UTC)"
COL_HEARD = "Heard"
COL_BATTERY = "Battery (V)"
COL_BEHAVIOUR = "Behaviour"
COL_FIRMWARE = "Firmware"
COL_MODEL = "Model"
VEDBA_MEAN = "vedba_mean_mg"
VEDBA_MAX = "vedba_max_mg"


@dataclass(frozen=True)
class MapBounds:
    """A latitude/longitude box in degrees."""

    south: float
    west: float
    north: float
    east: float


# ---------------------------------------------------------------- formatting


def format_age(then: datetime | None, now: datetime) -> str:
    """How long ago, as a ranger says it: 'just now', '12 min ago', '3 h ago', '2 d ago', 'never'."""
    if then is None:
        return "never"
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def format_time(when: datetime | None) -> str:
    """'2026-11-25 08:40' in UTC, or an empty string when unknown."""
    if when is None:
        return ""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def format_position(lat: float | None, lon: float | None) -> str:
    """'-2.33412, 34.83371' (about 1 m), or an empty string when there is no fix."""
    if lat is None or lon is None:
        return ""
    return f"{lat:.5f}, {lon:.5f}"


def format_battery(battery_mv: int | None, low_battery_mv: int = LOW_BATTERY_MV) -> str:
    """'3.61 V', with ' (low)' below low_battery_mv, or an empty string when unknown."""
    if battery_mv is None:
        return ""
    text = f"{battery_mv / 1000:.2f} V"
    return text + " (low)" if battery_mv < low_battery_mv else text


def alert_type_label(alert_type: str) -> str:
    """The ranger's words for an alert type ('mortality' -> 'Possible mortality')."""
    return ALERT_TYPE_LABELS.get(alert_type, alert_type.replace("_", " ").capitalize())


def alert_label(alert: Any) -> str:
    """One line naming an alert in a select box: 'HIGH · Possible mortality · Tembo · 2026-11-25 08:40 · new'."""
    return (
        f"{palette.priority_label(alert.priority).upper()} · {alert_type_label(alert.alert_type)} · "
        f"{alert.name or alert.device_id} · {format_time(alert.time)} · {alert.state}"
    )


# ---------------------------------------------------------------- alerts


def sort_alerts(alerts: Iterable[Any]) -> list[Any]:
    """Most urgent first: priority high to low, then newest first, then by alert id."""
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(
        alerts,
        key=lambda a: (-int(a.priority), -(a.time or epoch).timestamp(), str(a.alert_id)),
    )


def alert_table(alerts: Iterable[Any], now: datetime, show_positions: bool = True) -> pd.DataFrame:
    """Open alerts as the table the Alerts page shows, most urgent first (positions only if allowed)."""
    rows = [
        {
            COL_PRIORITY: palette.priority_label(a.priority),
            COL_TYPE: alert_type_label(a.alert_type),
            COL_ANIMAL: a.name or a.device_id,
            COL_TIME: format_time(a.time),
            COL_AGE: format_age(a.time, now),
            COL_STATE: a.state,
            COL_SOURCE: a.source,
            COL_POSITION: format_position(a.lat, a.lon) if show_positions else "withheld",
        }
        for a in sort_alerts(alerts)
    ]
    columns = [COL_PRIORITY, COL_TYPE, COL_ANIMAL, COL_TIME, COL_AGE, COL_STATE, COL_SOURCE, COL_POSITION]
    return pd.DataFrame(rows, columns=columns)


def state_text(alert: Any) -> str:
    """'new', or 'acknowledged by Amina at 2026-11-25 08:40'."""
    if alert.state == "acknowledged" and getattr(alert, "acknowledged_by", None):
        when = getattr(alert, "acknowledged_at", None)
        return f"acknowledged by {alert.acknowledged_by}" + (f" at {format_time(when)} UTC" if when else "")
    return str(alert.state)


def style_alert_table(table: pd.DataFrame) -> Any:
    """The alert table with each priority cell in its priority colour (a pandas Styler)."""
    colours = {
        palette.PRIORITY_LABELS[step]: "rgb({}, {}, {})".format(*palette.PRIORITY_COLOURS[step][:3])
        for step in palette.PRIORITY_LABELS
    }
    return table.style.map(
        lambda label: f"color: {colours.get(label, 'inherit')}; font-weight: 600", subset=[COL_PRIORITY]
    )


def alert_history_table(events: Iterable[Any]) -> pd.DataFrame:
    """An alert's history (`AlertEventView`), oldest first: time, who, what."""
    rows = [
        {COL_TIME: format_time(e.at), "Who": e.actor, "What": e.action.replace("_", " ")}
        for e in sorted(events, key=lambda e: e.at)
    ]
    return pd.DataFrame(rows, columns=[COL_TIME, "Who", "What"])


def precision_table(verdicts: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per alert type, from rangers' verdicts (`Bridge.alert_verdicts()`): counts and precision,
    true / (true + false alarm), as a percentage; worst precision first."""
    rows = [
        {
            COL_TYPE: alert_type_label(alert_type),
            "True": int(entry.get("true", 0)),
            "False alarm": int(entry.get("false_alarm", 0)),
            "Unknown": int(entry.get("unknown", 0)),
            "Precision (%)": None
            if entry.get("precision") is None
            else round(100 * float(entry["precision"]), 1),
        }
        for alert_type, entry in verdicts.items()
    ]
    table = pd.DataFrame(rows, columns=[COL_TYPE, "True", "False alarm", "Unknown", "Precision (%)"])
    return table.sort_values(["Precision (%)", COL_TYPE], na_position="last").reset_index(drop=True)


def can_acknowledge(alert: Any) -> bool:
    """Only a new alert can be acknowledged."""
    return alert.state == "new"


def can_resolve(alert: Any) -> bool:
    """A new or acknowledged alert can be resolved with a verdict."""
    return alert.state in ("new", "acknowledged")


# ---------------------------------------------------------------- animals


def animal_table(
    animals: Iterable[Any], now: datetime, low_battery_mv: int = LOW_BATTERY_MV, show_positions: bool = True
) -> pd.DataFrame:
    """Per animal: last seen, battery, behaviour, firmware and model versions (and position if allowed)."""
    rows = [
        {
            COL_NAME: a.name,
            COL_SPECIES: a.species,
            COL_COLLAR: a.device_id or "",
            COL_LAST_SEEN: format_time(a.last_seen),
            COL_AGE: format_age(a.last_seen, now),
            COL_BATTERY: format_battery(a.battery_mv, low_battery_mv),
            COL_BEHAVIOUR: a.behaviour or "",
            COL_FIRMWARE: a.fw_version or "",
            COL_MODEL: "" if a.model_version is None else str(a.model_version),
            COL_POSITION: format_position(a.lat, a.lon) if show_positions else "withheld",
        }
        for a in sorted(animals, key=lambda a: (a.name or "", a.device_id or ""))
    ]
    columns = [
        COL_NAME,
        COL_SPECIES,
        COL_COLLAR,
        COL_LAST_SEEN,
        COL_AGE,
        COL_BATTERY,
        COL_BEHAVIOUR,
        COL_FIRMWARE,
        COL_MODEL,
        COL_POSITION,
    ]
    return pd.DataFrame(rows, columns=columns)


def fleet_summary(
    animals: Sequence[Any], alerts: Sequence[Any], now: datetime, low_battery_mv: int = LOW_BATTERY_MV
) -> dict[str, int]:
    """Counts for the header metrics: animals, heard within SILENT_AFTER, low battery, open alerts, high."""
    return {
        "animals": len(animals),
        "reporting": sum(1 for a in animals if a.last_seen is not None and now - a.last_seen <= SILENT_AFTER),
        "low_battery": sum(1 for a in animals if a.battery_mv is not None and a.battery_mv < low_battery_mv),
        "open_alerts": len(alerts),
        "high_priority": sum(1 for a in alerts if a.priority >= 300),
    }


def activity_frame(summaries: Iterable[Any]) -> pd.DataFrame:
    """Activity summaries (`ActivityView`) as a frame indexed by interval start (UTC): one column
    per behaviour (percent of the interval) plus `vedba_mean_mg` and `vedba_max_mg`."""
    rows = []
    for s in summaries:
        row: dict[str, Any] = {"time": s.time, VEDBA_MEAN: s.vedba_mean_mg, VEDBA_MAX: s.vedba_max_mg}
        for behaviour, share_pct in dict(s.shares_pct).items():
            row[behaviour] = float(share_pct)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=[VEDBA_MEAN, VEDBA_MAX])
    frame = pd.DataFrame(rows).set_index("time").sort_index()
    behaviours = [c for c in frame.columns if c not in (VEDBA_MEAN, VEDBA_MAX)]
    frame[behaviours] = frame[behaviours].fillna(0.0)
    return frame


def behaviour_shares(frame: pd.DataFrame) -> pd.Series:
    """Percent of the whole period spent in each behaviour, most common first, from `activity_frame`."""
    behaviours = [c for c in frame.columns if c not in (VEDBA_MEAN, VEDBA_MAX)]
    if frame.empty or not behaviours:
        return pd.Series(dtype=float)
    return frame[behaviours].mean().sort_values(ascending=False)


# ---------------------------------------------------------------- location privacy

METRES_PER_DEGREE_LAT = 111_320.0


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


# ---------------------------------------------------------------- the live map


def animal_points(positions: Iterable[Any], animals: Iterable[Any], now: datetime) -> list[dict[str, Any]]:
    """One record per animal's last position, coloured by its behaviour, for the map layers."""
    behaviour_of = {a.animal_id: a.behaviour for a in animals}
    points = []
    for p in positions:
        if p.lat is None or p.lon is None:
            continue
        behaviour = behaviour_of.get(p.animal_id)
        points.append(
            {
                "animal_id": str(p.animal_id),
                "name": p.name or p.device_id,
                "lat": float(p.lat),
                "lon": float(p.lon),
                "behaviour": behaviour or "unknown",
                "colour": palette.behaviour_colour(behaviour),
                "tooltip": f"{p.name or p.device_id} · {behaviour or 'unknown'} · {format_age(p.time, now)}",
            }
        )
    return sorted(points, key=lambda r: r["name"])


def track_paths(tracks: Mapping[Any, Sequence[Any]]) -> list[dict[str, Any]]:
    """One path per animal (oldest fix first) with a distinct colour; single fixes are no path."""
    paths = []
    for index, animal_id in enumerate(sorted(tracks, key=str)):
        fixes = sorted(
            (p for p in tracks[animal_id] if p.lat is not None and p.lon is not None), key=lambda p: p.time
        )
        if len(fixes) < 2:
            continue
        paths.append(
            {
                "animal_id": str(animal_id),
                "name": fixes[-1].name or fixes[-1].device_id,
                "path": [[float(p.lon), float(p.lat)] for p in fixes],
                "colour": palette.track_colour(index),
                "tooltip": f"{fixes[-1].name or fixes[-1].device_id} · track of {len(fixes)} fixes",
            }
        )
    return paths


def alert_points(alerts: Iterable[Any], now: datetime, positions: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Open alerts as rings coloured by priority, the most urgent drawn last (on top).

    An alert without a position of its own (low battery, offline) is ringed at its animal's last
    position from `positions`; one with neither is left off the map (it is still in the tables).
    """
    last_fix = {str(p.animal_id): p for p in positions if p.lat is not None and p.lon is not None}
    points = []
    for a in alerts:
        lat, lon = a.lat, a.lon
        if (lat is None or lon is None) and str(a.animal_id) in last_fix:
            lat, lon = last_fix[str(a.animal_id)].lat, last_fix[str(a.animal_id)].lon
        if lat is None or lon is None:
            continue
        points.append(
            {
                "alert_id": str(a.alert_id),
                "animal_id": None if a.animal_id is None else str(a.animal_id),
                "name": a.name or a.device_id,
                "lat": float(lat),
                "lon": float(lon),
                "priority": int(a.priority),
                "colour": palette.priority_colour(a.priority),
                "tooltip": f"{alert_type_label(a.alert_type)} · {a.name or a.device_id} · {format_age(a.time, now)}",
            }
        )
    return sorted(points, key=lambda r: (r["priority"], r["alert_id"]))


def features_of_kind(geography: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The features of the reserve's FeatureCollection whose properties.kind is `kind`."""
    return [f for f in geography.get("features", []) if (f.get("properties") or {}).get("kind") == kind]


def point_features(geography: Mapping[str, Any], kind: str, label: str) -> list[dict[str, Any]]:
    """Point features of `kind` (gateways, waterholes) as map records with name and tooltip."""
    points = []
    for f in features_of_kind(geography, kind):
        geometry = f.get("geometry") or {}
        if geometry.get("type") != "Point":
            continue
        lon, lat = geometry["coordinates"][:2]
        name = (f.get("properties") or {}).get("name") or kind
        points.append({"name": str(name), "lat": float(lat), "lon": float(lon), "tooltip": f"{label} {name}"})
    return points


def gateway_points(geography: Mapping[str, Any]) -> list[dict[str, Any]]:
    """LoRaWAN gateways of the reserve (Point features of kind 'gateway') with their names."""
    return point_features(geography, "gateway", "Gateway")


def _coordinates(geometry: Mapping[str, Any]) -> Iterable[tuple[float, float]]:
    """Every (lon, lat) pair of a GeoJSON geometry, whatever its nesting."""
    stack: list[Any] = [geometry.get("coordinates", [])]
    while stack:
        item = stack.pop()
        if (
            isinstance(item, (list, tuple))
            and len(item) >= 2
            and all(isinstance(v, (int, float)) for v in item[:2])
        ):
            yield float(item[0]), float(item[1])
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def map_bounds(geography: Mapping[str, Any], points: Iterable[Mapping[str, Any]]) -> MapBounds | None:
    """The box holding the reserve boundary (or, without one, every feature) and every point."""
    boundary = features_of_kind(geography, "boundary") or list(geography.get("features", []))
    lons: list[float] = []
    lats: list[float] = []
    for f in boundary:
        for lon, lat in _coordinates(f.get("geometry") or {}):
            lons.append(lon)
            lats.append(lat)
    for p in points:
        lons.append(float(p["lon"]))
        lats.append(float(p["lat"]))
    if not lons:
        return None
    return MapBounds(south=min(lats), west=min(lons), north=max(lats), east=max(lons))


def view_state_for(bounds: MapBounds | None, width_px: int = 720, height_px: int = 600) -> pdk.ViewState:
    """A top-down view that fits `bounds` in a map of the given size (Web Mercator, 512 px tiles)."""
    if bounds is None:
        return pdk.ViewState(latitude=0.0, longitude=20.0, zoom=2, pitch=0, bearing=0)
    lat = (bounds.south + bounds.north) / 2
    lon = (bounds.west + bounds.east) / 2
    span_lon = max(bounds.east - bounds.west, 1e-4) * 1.15
    span_lat = max(bounds.north - bounds.south, 1e-4) * 1.15
    zoom_lon = math.log2(360.0 * width_px / (512.0 * span_lon))
    zoom_lat = math.log2(360.0 * height_px * max(math.cos(math.radians(lat)), 0.01) / (512.0 * span_lat))
    zoom = max(1.0, min(16.0, zoom_lon, zoom_lat))
    return pdk.ViewState(latitude=lat, longitude=lon, zoom=round(zoom, 2), pitch=0, bearing=0)


def _point_layer(layer_id: str, points: list[dict[str, Any]], colour: list[int], radius_px: int) -> pdk.Layer:
    """Named points of the reserve (gateways, waterholes) as fixed-size dots with a dark outline."""
    return pdk.Layer(
        "ScatterplotLayer",
        id=layer_id,
        data=points,
        get_position=["lon", "lat"],
        get_fill_color=colour,
        radius_units=PIXELS,
        get_radius=radius_px,
        stroked=True,
        get_line_color=[20, 30, 30, 255],
        line_width_units=PIXELS,
        get_line_width=1,
        pickable=True,
    )


def geography_layers(geography: Mapping[str, Any]) -> list[pdk.Layer]:
    """The offline base map: reserve boundary, farmland, water, roads and gateways as pydeck layers.

    Areas and lines are GeoJSON layers; point features (waterholes, gateways) are fixed-size dots
    so they stay visible at every zoom.
    """
    layers = []
    for kind, layer_id, filled in (
        ("boundary", "reserve-boundary", True),
        ("farmland", "farmland", True),
        ("water", "water", True),
        ("road", "roads", False),
    ):
        features = [
            f for f in features_of_kind(geography, kind) if (f.get("geometry") or {}).get("type") != "Point"
        ]
        if not features:
            continue
        layers.append(
            pdk.Layer(
                "GeoJsonLayer",
                id=layer_id,
                data={"type": "FeatureCollection", "features": features},
                stroked=True,
                filled=filled,
                get_fill_color=palette.GEOGRAPHY_FILL.get(kind, [0, 0, 0, 0]),
                get_line_color=palette.GEOGRAPHY_LINE[kind],
                line_width_units=PIXELS,
                get_line_width=3 if kind == "boundary" else 2,
                pickable=False,
            )
        )
    waterholes = point_features(geography, "water", "Water:")
    if waterholes:
        layers.append(_point_layer("waterholes", waterholes, palette.GEOGRAPHY_LINE["water"], 6))
    gateways = gateway_points(geography)
    if gateways:
        layers.append(_point_layer("gateways", gateways, palette.GATEWAY_COLOUR, 5))
    return layers


def live_layers(
    points: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    focus_animal_id: str | None = None,
) -> list[pdk.Layer]:
    """Tracks, alert rings, animals coloured by behaviour and their name labels, in drawing order."""
    layers = []
    if paths:
        layers.append(
            pdk.Layer(
                "PathLayer",
                id="tracks",
                data=list(paths),
                get_path="path",
                get_color="colour",
                width_units=PIXELS,
                get_width=2,
                joint_rounded=True,
                cap_rounded=True,
                pickable=True,
            )
        )
    if alerts:
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                id="open-alerts",
                data=list(alerts),
                get_position=["lon", "lat"],
                filled=False,
                stroked=True,
                get_line_color="colour",
                line_width_units=PIXELS,
                get_line_width=3,
                radius_units=PIXELS,
                get_radius=14,
                pickable=True,
            )
        )
    if points:
        focus = [p for p in points if p["animal_id"] == focus_animal_id]
        if focus:
            layers.append(
                pdk.Layer(
                    "ScatterplotLayer",
                    id="focus",
                    data=focus,
                    get_position=["lon", "lat"],
                    filled=False,
                    stroked=True,
                    get_line_color=palette.LABEL_COLOUR,
                    line_width_units=PIXELS,
                    get_line_width=2,
                    radius_units=PIXELS,
                    get_radius=20,
                )
            )
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                id="animals",
                data=list(points),
                get_position=["lon", "lat"],
                get_fill_color="colour",
                radius_units=PIXELS,
                get_radius=7,
                stroked=True,
                get_line_color=[10, 10, 10, 255],
                line_width_units=PIXELS,
                get_line_width=1,
                pickable=True,
            )
        )
        layers.append(
            pdk.Layer(
                "TextLayer",
                id="animal-names",
                data=list(points),
                get_position=["lon", "lat"],
                get_text="name",
                get_color=palette.LABEL_COLOUR,
                get_size=13,
                size_units=PIXELS,
                get_pixel_offset=[0, -18],
                font_weight=600,
                font_settings={"sdf": True},
                outline_width=2,
                outline_color=[0, 0, 0, 255],
            )
        )
    return layers


SELECTABLE_LAYERS = ("animals", "open-alerts", "tracks", "focus")


def selected_animal_id(selected: Mapping[str, Sequence[Mapping[str, Any]]]) -> str | None:
    """The animal a ranger clicked on the map (a dot, an alert ring or a track), from the chart's
    selection (objects per layer id), or None."""
    for layer_id in SELECTABLE_LAYERS:
        for record in selected.get(layer_id) or ():
            if record.get("animal_id"):
                return str(record["animal_id"])
    return None


def build_deck(
    geography: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    focus_animal_id: str | None = None,
    online_tiles: bool = False,
) -> pdk.Deck:
    """The live map: reserve geometry as the base layer, then tracks, alerts and animals.

    Without `online_tiles` the map fetches nothing from the internet: Streamlit draws no base map
    and the reserve's own geometry is the background. With it, CARTO's dark tiles go underneath.
    """
    focus = [p for p in points if p["animal_id"] == focus_animal_id]
    if focus:
        lat, lon = focus[0]["lat"], focus[0]["lon"]
        bounds: MapBounds | None = MapBounds(
            south=lat - 0.02, west=lon - 0.02, north=lat + 0.02, east=lon + 0.02
        )
    else:
        bounds = map_bounds(geography, points)
    deck = pdk.Deck(
        layers=geography_layers(geography) + live_layers(points, paths, alerts, focus_animal_id),
        initial_view_state=view_state_for(bounds),
        map_provider="carto" if online_tiles else None,
        map_style="dark" if online_tiles else None,
        tooltip={"text": "{tooltip}"},
    )
    if not online_tiles:
        deck.map_style = NO_BASE_MAP
    return deck


def live_table(
    points: Sequence[Mapping[str, Any]],
    animals: Iterable[Any],
    now: datetime,
    low_battery_mv: int = LOW_BATTERY_MV,
) -> pd.DataFrame:
    """The table beside the map: each mapped animal, behaviour, last seen and battery, by name."""
    by_id = {str(a.animal_id): a for a in animals}
    rows = []
    for p in points:
        animal = by_id.get(p["animal_id"])
        rows.append(
            {
                COL_NAME: p["name"],
                COL_BEHAVIOUR: p["behaviour"],
                COL_HEARD: format_age(animal.last_seen if animal else None, now),
                COL_BATTERY: format_battery(animal.battery_mv if animal else None, low_battery_mv),
            }
        )
    return pd.DataFrame(rows, columns=[COL_NAME, COL_BEHAVIOUR, COL_HEARD, COL_BATTERY])
