"""The live map as pydeck layers, built from the bridge's views by plain functions.

Without internet: Streamlit is told to draw no base map, and the reserve's own geometry from
`Bridge.geography()` (boundary, farmland, water, roads, gateways) is the background. On top come
the recent tracks, rings around open alerts in their priority colour (drawn where the animal is
now), and each animal's last position coloured by its state (normal, open alert, offline, collar
dropped). Name labels are placed here, where they fit: at the map's fitted view a label that would
overlap one already placed is left off (alerts and the focused animal are placed first), so a herd
of hundreds stays readable; every dot still names its animal on hover. (deck.gl's
CollisionFilterExtension would do this in the browser, but in Streamlit's deck.gl build it draws
no label at all in Chromium, so it is not used.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydeck as pdk
from pydeck.bindings.json_tools import default_serialize

from ranger_dashboard import palette
from ranger_dashboard.views import alert_type_label, format_age

# Streamlit passes this to its map component to mean "no base map": no online tiles are fetched.
NO_BASE_MAP = "__MAP_STYLE__"
# pydeck reads a bare string as a data accessor; a constant string must be quoted.
PIXELS = "'pixels'"
# Decimal places of coordinates sent to the browser: 5 is about a metre, finer than any GNSS fix.
COORDINATE_DECIMALS = 5
# The online base map's tiles; whether the dashboard's machine reaches them is checked first.
ONLINE_TILES_PROBE = "https://basemaps.cartocdn.com/"


@dataclass(frozen=True)
class MapBounds:
    """A latitude/longitude box in degrees."""

    south: float
    west: float
    north: float
    east: float


class CompactDeck(pdk.Deck):
    """A pydeck Deck whose JSON for the browser is compact: pydeck's own `to_json` indents by two
    and puts every coordinate on a line of its own, several times the bytes for a large herd."""

    def to_json(self) -> str:
        return json.dumps(self, default=default_serialize, separators=(",", ":"))


def _rounded(value: float) -> float:
    return round(float(value), COORDINATE_DECIMALS)


def animal_points(
    positions: Iterable[Any], animals: Iterable[Any], now: datetime, states: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One record per animal's last position, coloured by its state (`views.animal_states`)."""
    behaviour_of = {str(a.animal_id): a.behaviour for a in animals}
    states = states or {}
    points = []
    for p in positions:
        if p.lat is None or p.lon is None:
            continue
        animal_id = str(p.animal_id)
        behaviour = behaviour_of.get(animal_id)
        state = states.get(animal_id, "normal")
        points.append(
            {
                "animal_id": animal_id,
                "name": p.name or p.device_id,
                "lat": _rounded(p.lat),
                "lon": _rounded(p.lon),
                "state": state,
                "behaviour": behaviour or "unknown",
                "colour": palette.state_colour(state),
                # Labels that collide give way to the higher priority: alerts first.
                "priority": palette.ANIMAL_STATES.index(state) if state != "normal" else 0,
                "tooltip": f"{p.name or p.device_id} · {palette.STATE_LABELS[state]} · "
                f"{behaviour or 'unknown'} · {format_age(p.time, now)}",
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
                "path": [[_rounded(p.lon), _rounded(p.lat)] for p in fixes],
                "colour": palette.track_colour(index),
                "tooltip": f"{fixes[-1].name or fixes[-1].device_id} · track of {len(fixes)} fixes",
            }
        )
    return paths


def alert_points(alerts: Iterable[Any], now: datetime, positions: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Open alerts as rings coloured by priority, the most urgent drawn last (on top).

    A ring is drawn where the animal is now (its last position in `positions`), not where the
    alert was raised: the ranger drives to the animal. An alert whose animal has no known fix is
    ringed where it was raised; one with neither is left off the map (it is still in the tables).
    """
    last_fix = {str(p.animal_id): p for p in positions if p.lat is not None and p.lon is not None}
    points = []
    for a in alerts:
        fix = last_fix.get(str(a.animal_id))
        lat, lon = (fix.lat, fix.lon) if fix is not None else (a.lat, a.lon)
        if lat is None or lon is None:
            continue
        points.append(
            {
                "alert_id": str(a.alert_id),
                "animal_id": None if a.animal_id is None else str(a.animal_id),
                "name": a.name or a.device_id,
                "lat": _rounded(lat),
                "lon": _rounded(lon),
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


# A herd larger than this is named, at the whole-reserve view, only where an animal needs a look
# (an open alert, offline, collar dropped) or is focused: every other name on hover or when focused.
NAME_EVERY_ANIMAL_UP_TO = 100


def animal_radius_px(count: int) -> int:
    """The radius of an animal's dot: smaller for a large herd, so 500 dots do not cover the reserve."""
    return 7 if count <= 50 else 5 if count <= 200 else 4


def label_candidates(points: Sequence[Mapping[str, Any]], focus_animal_id: str | None = None) -> list[Mapping[str, Any]]:
    """The animals that may get a name label: all of a small herd or when one animal is focused
    (the map is zoomed in on it); of a large herd at the whole-reserve view, those not in the normal
    state."""
    if len(points) <= NAME_EVERY_ANIMAL_UP_TO or focus_animal_id is not None:
        return list(points)
    return [p for p in points if p.get("state", "normal") != "normal"]


def live_layers(
    points: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    focus_animal_id: str | None = None,
    labels: Sequence[Mapping[str, Any]] | None = None,
) -> list[pdk.Layer]:
    """Tracks, alert rings, animals coloured by state and name labels (`labels`, default every
    point), in drawing order."""
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
                # Drawn in order: animals that need a look (alert, offline, dropped) on top.
                data=sorted(points, key=lambda p: int(p.get("priority", 0))),
                get_position=["lon", "lat"],
                get_fill_color="colour",
                radius_units=PIXELS,
                get_radius=animal_radius_px(len(points)),
                stroked=True,
                get_line_color=[10, 10, 10, 255],
                line_width_units=PIXELS,
                get_line_width=1,
                pickable=True,
            )
        )
        named = [
            {"name": p["name"], "lat": p["lat"], "lon": p["lon"]} for p in (labels if labels is not None else points)
        ]
        layers.append(
            pdk.Layer(
                "TextLayer",
                id="animal-names",
                data=named,
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


# Size of a name label on screen: 13 px text, about 7.5 px per character, drawn 18 px above its dot.
LABEL_CHAR_PX = 7.5
LABEL_HEIGHT_PX = 16
LABEL_OFFSET_PX = 18
LABEL_MARGIN_PX = 4


def screen_xy(lat: float, lon: float, view: pdk.ViewState) -> tuple[float, float]:
    """Pixel offset of (lat, lon) from the centre of a Web Mercator view (deck.gl's 512 px tiles)."""

    def mercator(lat_: float, lon_: float) -> tuple[float, float]:
        x = (lon_ + 180.0) / 360.0
        sin = math.sin(math.radians(max(min(lat_, 85.0), -85.0)))
        y = 0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)
        return x, y

    scale = 512.0 * 2.0 ** float(view.zoom)
    x, y = mercator(lat, lon)
    cx, cy = mercator(float(view.latitude), float(view.longitude))
    return (x - cx) * scale, (y - cy) * scale


def labels_that_fit(
    points: Sequence[Mapping[str, Any]], view: pdk.ViewState, focus_animal_id: str | None = None
) -> list[Mapping[str, Any]]:
    """The points whose name label fits at `view` without overlapping a label placed before it.

    Placed first: the focused animal, then by state priority (collar dropped, offline, alert) and
    name. What is left off is still named on hover.
    """
    order = sorted(
        points, key=lambda p: (p["animal_id"] != focus_animal_id, -int(p.get("priority", 0)), p["name"])
    )
    placed: list[tuple[float, float, float, float]] = []
    cells: dict[tuple[int, int], list[int]] = {}
    cell_px = 64.0
    kept = []
    for point in order:
        x, y = screen_xy(point["lat"], point["lon"], view)
        half = len(str(point["name"])) * LABEL_CHAR_PX / 2 + LABEL_MARGIN_PX
        box = (
            x - half,
            y - LABEL_OFFSET_PX - LABEL_HEIGHT_PX / 2,
            x + half,
            y - LABEL_OFFSET_PX + LABEL_HEIGHT_PX / 2,
        )
        span = [
            (i, j)
            for i in range(int(box[0] // cell_px), int(box[2] // cell_px) + 1)
            for j in range(int(box[1] // cell_px), int(box[3] // cell_px) + 1)
        ]
        overlaps = any(
            box[0] < placed[k][2]
            and placed[k][0] < box[2]
            and box[1] < placed[k][3]
            and placed[k][1] < box[3]
            for cell in span
            for k in cells.get(cell, ())
        )
        if overlaps:
            continue
        for cell in span:
            cells.setdefault(cell, []).append(len(placed))
        placed.append(box)
        kept.append(point)
    return sorted(kept, key=lambda p: p["name"])


def build_deck(
    geography: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    focus_animal_id: str | None = None,
    online_tiles: bool = False,
    fit_px: tuple[int, int] = (720, 600),
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
    view = view_state_for(bounds, *fit_px)
    labels = labels_that_fit(label_candidates(points, focus_animal_id if focus else None), view, focus_animal_id)
    deck = CompactDeck(
        layers=geography_layers(geography) + live_layers(points, paths, alerts, focus_animal_id, labels),
        initial_view_state=view,
        map_provider="carto" if online_tiles else None,
        map_style="dark" if online_tiles else None,
        # The tooltip must not catch the click meant for the dot under it.
        tooltip={"text": "{tooltip}", "style": {"pointerEvents": "none"}},
    )
    if not online_tiles:
        deck.map_style = NO_BASE_MAP
    return deck


# Evidence of an alert: the track before it was raised, the track after, and where it was raised.
BEFORE_COLOUR = [235, 180, 80, 230]
AFTER_COLOUR = [90, 200, 230, 230]


def evidence_deck(
    geography: Mapping[str, Any],
    before: Sequence[Any],
    after: Sequence[Any],
    raised_at: tuple[float, float] | None,
    fit_px: tuple[int, int] = (600, 320),
) -> pdk.Deck:
    """A small offline map of an alert's evidence: the track before (amber) and after (cyan) it
    was raised, and a white ring where it was raised; fitted to the track."""
    layers = geography_layers(geography)
    points: list[dict[str, Any]] = []
    for layer_id, fixes, colour in (("before", before, BEFORE_COLOUR), ("after", after, AFTER_COLOUR)):
        path = [[_rounded(p.lon), _rounded(p.lat)] for p in fixes if p.lat is not None and p.lon is not None]
        points += [{"lon": lon, "lat": lat} for lon, lat in path]
        if len(path) >= 2:
            layers.append(
                pdk.Layer(
                    "PathLayer",
                    id=f"track-{layer_id}",
                    data=[{"path": path, "colour": colour}],
                    get_path="path",
                    get_color="colour",
                    width_units=PIXELS,
                    get_width=3,
                )
            )
        if path:
            layers.append(
                pdk.Layer(
                    "ScatterplotLayer",
                    id=f"fixes-{layer_id}",
                    data=[{"lon": lon, "lat": lat} for lon, lat in path],
                    get_position=["lon", "lat"],
                    get_fill_color=colour,
                    radius_units=PIXELS,
                    get_radius=3,
                )
            )
    if raised_at is not None:
        lat, lon = raised_at
        points.append({"lat": lat, "lon": lon})
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                id="raised-at",
                data=[{"lat": _rounded(lat), "lon": _rounded(lon)}],
                get_position=["lon", "lat"],
                filled=False,
                stroked=True,
                get_line_color=palette.LABEL_COLOUR,
                line_width_units=PIXELS,
                get_line_width=2,
                radius_units=PIXELS,
                get_radius=12,
            )
        )
    box = map_bounds({}, points) if points else map_bounds(geography, [])
    deck = CompactDeck(layers=layers, initial_view_state=view_state_for(box, *fit_px), map_provider=None)
    deck.map_style = NO_BASE_MAP
    return deck


HOME_RANGE_FILL = {"KDE": [235, 180, 80, 50], "MCP": [0, 0, 0, 0]}
HOME_RANGE_LINE = {"KDE": [235, 180, 80, 220], "MCP": [200, 200, 230, 220]}


def animal_deck(
    geography: Mapping[str, Any], fixes: Sequence[Any], ranges: Sequence[Any], fit_px: tuple[int, int] = (640, 360)
) -> pdk.Deck:
    """One animal's track on the reserve with its home-range outlines (`home_range.HomeRange`s),
    fitted to the track; its newest fix ringed."""
    layers = geography_layers(geography)
    for home in ranges:
        family = home.method.split()[0]
        layers.append(
            pdk.Layer(
                "GeoJsonLayer",
                id=f"home-range-{family.lower()}",
                data={"type": "Feature", "geometry": home.geometry, "properties": {"name": home.method}},
                stroked=True,
                filled=True,
                get_fill_color=HOME_RANGE_FILL.get(family, [0, 0, 0, 0]),
                get_line_color=HOME_RANGE_LINE.get(family, palette.LABEL_COLOUR),
                line_width_units=PIXELS,
                get_line_width=2,
            )
        )
    path = [[_rounded(p.lon), _rounded(p.lat)] for p in sorted(fixes, key=lambda p: p.time)]
    points = [{"lon": lon, "lat": lat} for lon, lat in path]
    if len(path) >= 2:
        layers.append(
            pdk.Layer(
                "PathLayer",
                id="track",
                data=[{"path": path}],
                get_path="path",
                get_color=palette.track_colour(1),
                width_units=PIXELS,
                get_width=2,
            )
        )
    if points:
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                id="newest-fix",
                data=points[-1:],
                get_position=["lon", "lat"],
                get_fill_color=palette.LABEL_COLOUR,
                radius_units=PIXELS,
                get_radius=6,
            )
        )
    deck = CompactDeck(
        layers=layers, initial_view_state=view_state_for(map_bounds({}, points), *fit_px), map_provider=None
    )
    deck.map_style = NO_BASE_MAP
    return deck
