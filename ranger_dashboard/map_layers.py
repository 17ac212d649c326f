"""The live map as pydeck layers, built from the bridge's views by plain functions.

Without internet: Streamlit is told to draw no base map, and the reserve's own geometry from
`Bridge.geography()` (boundary, farmland, water, roads, gateways) is the background. On top come
the recent tracks, rings around open alerts in their priority colour (drawn where the animal is
now), and each animal's last position coloured by its state (normal, open alert, offline, collar
dropped). Names are placed where they fit (`labels_that_fit`): a label that would overlap one
already placed is left off (alerts and the focused animal are placed first), so a herd of hundreds
stays readable; they come as tiles of the dashboard for the zoom the ranger looks at
(`name_tiles`), and every dot still names its animal on hover. (deck.gl's CollisionFilterExtension
would place them in the browser, but in Streamlit's deck.gl build it draws no label at all in
Chromium, so it is not used.)
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
from ranger_dashboard.views import alert_type_label, format_age, name_of

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
        # Unescaped non-ASCII text (the tooltips' "·"): fewer bytes for the page's JSON5 parser to read.
        return json.dumps(self, default=default_serialize, separators=(",", ":"), ensure_ascii=False)


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
                "tooltip": f"{name_of(p)} · {palette.STATE_LABELS[state]} · "
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
                "tooltip": f"{name_of(fixes[-1])} · track of {len(fixes)} fixes",
            }
        )
    return paths


TRACK_WIDTH_PX = 2


def track_segments(paths: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tracks of `track_paths` as the map's line segments (`line_segments`): `from`, `to`, the
    track's `colour` and its `animal_id`; every track is TRACK_WIDTH_PX wide (the layer's width)."""
    return [
        {key: segment[key] for key in ("from", "to", "colour", "animal_id")}
        for segment in line_segments([{**p, "width": TRACK_WIDTH_PX} for p in paths], carried=("animal_id",))
    ]


def tracks_layer(url: str) -> pdk.Layer:
    """The herd's tracks as a LineLayer whose segments (`track_segments`) deck.gl fetches from the
    dashboard's `url` (`track_routes`) after the map's first frame; not pickable."""
    return segment_layer("tracks", url, TRACK_WIDTH_PX)


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
                "tooltip": f"{alert_type_label(a.alert_type)} · {name_of(a)} · {format_age(a.time, now)}",
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


def dot_layer(layer_id: str, records: Sequence[Mapping[str, Any]], *, filled: bool = True, pickable: bool = True) -> pdk.Layer:
    """Fixed-size dots (or rings, `filled=False`) read from each record's `fill`, `line`, `radius`
    and `line_width`: every dot layer of the map has the same attributes, so the browser compiles
    one drawing pipeline for all of them (each distinct one costs seconds in a software-rendered
    browser, see README)."""
    return pdk.Layer(
        "ScatterplotLayer",
        id=layer_id,
        data=list(records),
        get_position=["lon", "lat"],
        filled=filled,
        stroked=True,
        get_fill_color="fill",
        get_line_color="line",
        get_radius="radius",
        get_line_width="line_width",
        radius_units=PIXELS,
        line_width_units=PIXELS,
        pickable=pickable,
    )


def line_segments(records: Sequence[Mapping[str, Any]], carried: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Each record's `path` ([[lon, lat], ...]) as straight segments `from` -> `to`, with the
    record's `colour` and `width` and the fields named in `carried`."""
    segments = []
    for record in records:
        extra = {key: record[key] for key in carried if key in record}
        path = record["path"]
        segments.extend(
            {"from": start, "to": end, "colour": record["colour"], "width": record["width"], **extra}
            for start, end in zip(path, path[1:], strict=False)
        )
    return segments


def line_layer(
    layer_id: str, records: Sequence[Mapping[str, Any]], *, carried: tuple[str, ...] = ()
) -> pdk.Layer:
    """Lines of each record's `path`, `colour` and `width` (pixels), drawn as straight segments
    (`line_segments`): the reserve's outlines, roads and the tracks share one drawing pipeline, and
    deck.gl's LineLayer is a far cheaper one to compile in a software-rendered browser than its
    PathLayer (which draws joints and caps; see README). Not pickable: an animal is picked by its
    dot or its alert ring."""
    return segment_layer(layer_id, line_segments(records, carried), "width")


def segment_layer(layer_id: str, data: Any, width: Any) -> pdk.Layer:
    """A LineLayer of segments (`line_segments`: `from`, `to`, `colour`), given as records or as the
    URL deck.gl fetches them from, `width` pixels wide (a number, or the records' field naming it);
    not pickable."""
    return pdk.Layer(
        "LineLayer",
        id=layer_id,
        data=data,
        get_source_position="from",
        get_target_position="to",
        get_color="colour",
        get_width=width,
        width_units=PIXELS,
        pickable=False,
    )


def _rings(geometry: Mapping[str, Any]) -> list[list[list[list[float]]]]:
    """The polygons of a Polygon or MultiPolygon geometry, each as its rings; [] for other types."""
    kind = geometry.get("type")
    if kind == "Polygon":
        return [geometry.get("coordinates") or []]
    if kind == "MultiPolygon":
        return list(geometry.get("coordinates") or [])
    return []


def _lines(geometry: Mapping[str, Any]) -> list[list[list[float]]]:
    """Every line to draw of a geometry: polygon rings, line strings."""
    kind = geometry.get("type")
    if kind == "LineString":
        return [geometry.get("coordinates") or []]
    if kind == "MultiLineString":
        return list(geometry.get("coordinates") or [])
    return [ring for polygon in _rings(geometry) for ring in polygon]


def _xy(line: Sequence[Sequence[float]]) -> list[list[float]]:
    return [[_rounded(c[0]), _rounded(c[1])] for c in line]


# Kinds of reserve areas drawn filled; the reserve boundary is an outline only (a fill would be
# one more drawing pipeline for a faint tint).
FILLED_KINDS = ("farmland", "water")
LINE_KINDS = (("boundary", "reserve-boundary", 3), ("farmland", "farmland", 2), ("water", "water", 2), ("road", "roads", 2))


def geography_layers(geography: Mapping[str, Any]) -> list[pdk.Layer]:
    """The offline base map: farmland and water filled (`reserve-areas`), then the outlines of the
    reserve boundary, farmland and water and the roads as lines, then waterholes and gateways as
    fixed-size dots (visible at every zoom)."""
    layers = []
    areas = [
        {"kind": kind, "name": (f.get("properties") or {}).get("name"), "polygon": [_xy(r) for r in rings],
         "fill": palette.GEOGRAPHY_FILL[kind]}
        for kind in FILLED_KINDS
        for f in features_of_kind(geography, kind)
        for rings in _rings(f.get("geometry") or {})
    ]
    if areas:
        layers.append(
            pdk.Layer(
                "SolidPolygonLayer", id="reserve-areas", data=areas, get_polygon="polygon", get_fill_color="fill"
            )
        )
    for kind, layer_id, width in LINE_KINDS:
        lines = [
            {"kind": kind, "name": (f.get("properties") or {}).get("name"), "path": _xy(line),
             "colour": palette.GEOGRAPHY_LINE[kind], "width": width}
            for f in features_of_kind(geography, kind)
            for line in _lines(f.get("geometry") or {})
            if len(line) >= 2
        ]
        if lines:
            layers.append(line_layer(layer_id, lines, carried=("kind",)))
    for layer_id, records, colour, radius in (
        ("waterholes", point_features(geography, "water", "Water:"), palette.GEOGRAPHY_LINE["water"], 6),
        ("gateways", gateway_points(geography), palette.GATEWAY_COLOUR, 5),
    ):
        if records:
            dots = [{**r, "fill": colour, "line": GEOGRAPHY_DOT_OUTLINE, "radius": radius, "line_width": 1} for r in records]
            layers.append(dot_layer(layer_id, dots))
    return layers


# What an animal's dot carries in the map's JSON: its position, its tooltip, the id a click hands
# back, its name and state (read by tests and kept readable); the state's colour travels as the
# dot's `fill`. Not the behaviour (in the tooltip), the colour again or the label priority (the
# name tiles' concern): Streamlit's map parses its JSON with JSON5 on the page's main thread
# before the map is drawn, 0.13 to 0.17 s for 500 animals' dots (docs/dashboard.md).
ANIMAL_DOT_FIELDS = ("animal_id", "name", "state", "lat", "lon", "tooltip")
GEOGRAPHY_DOT_OUTLINE = [20, 30, 30, 255]
ANIMAL_OUTLINE = [10, 10, 10, 255]


# A herd larger than this is named, at the whole-reserve view, only where an animal needs a look
# (an open alert, offline, collar dropped) or is focused: every other name on hover or closer in
# (`name_tiles.named_at_zoom`).
NAME_EVERY_ANIMAL_UP_TO = 100


def animal_radius_px(count: int) -> int:
    """The radius of an animal's dot: smaller for a large herd, so 500 dots do not cover the reserve."""
    return 7 if count <= 50 else 5 if count <= 200 else 4


def live_layers(
    points: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    focus_animal_id: str | None = None,
    names_url: str | None = None,
    tracks_url: str | None = None,
) -> list[pdk.Layer]:
    """Tracks (`paths` in the map's JSON, or fetched from `tracks_url` after the first frame), alert
    rings, animals coloured by state and, with `names_url`, their names as tiles of the dashboard
    (`name_tiles`), in drawing order."""
    layers = []
    if tracks_url is not None:
        layers.append(tracks_layer(tracks_url))
    elif paths:
        layers.append(line_layer("tracks", [{**p, "width": TRACK_WIDTH_PX} for p in paths], carried=("animal_id",)))
    if alerts:
        rings = [{**a, "fill": a["colour"], "line": a["colour"], "radius": 14, "line_width": 3} for a in alerts]
        layers.append(dot_layer("open-alerts", rings, filled=False))
    if points:
        radius = animal_radius_px(len(points))
        focus = [
            {**p, "fill": palette.LABEL_COLOUR, "line": palette.LABEL_COLOUR, "radius": 20, "line_width": 2}
            for p in points
            if p["animal_id"] == focus_animal_id
        ]
        if focus:
            layers.append(dot_layer("focus", focus, filled=False, pickable=False))
        # Drawn in order: animals that need a look (alert, offline, dropped) on top. Each dot carries
        # only what the browser draws, names on hover and hands back on a click (`ANIMAL_DOT_FIELDS`).
        dots = [
            {**{key: p[key] for key in ANIMAL_DOT_FIELDS if key in p},
             "fill": p["colour"], "line": ANIMAL_OUTLINE, "radius": radius, "line_width": 1}
            for p in sorted(points, key=lambda p: int(p.get("priority", 0)))
        ]
        layers.append(dot_layer("animals", dots))
        if names_url is not None:
            from ranger_dashboard import name_tiles  # it builds on this module

            layers.append(name_tiles.names_layer(names_url))
    return layers


SELECTABLE_LAYERS = ("animals", "open-alerts", "focus")


def selected_animal_id(selected: Mapping[str, Sequence[Mapping[str, Any]]]) -> str | None:
    """The animal a ranger clicked on the map (a dot or an alert ring), from the chart's
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


# The hover tooltip: a box beside the pointer, on the side towards the map's centre (as the map is
# fitted), so the name of an animal near the map's right or bottom edge is not cut off by the edge.
# Streamlit fills {tooltip} and {tooltip_side} from the hovered record, HTML-escaped; the box itself
# is the inner element, so moving it moves all of it; the outer one must not catch the click meant
# for the dot under it.
TOOLTIP_GAP_PX = 14
TOOLTIP_BOX = (
    f"background:{palette.THEME['secondaryBackgroundColor']};color:{palette.THEME['textColor']};"
    "padding:4px 8px;border-radius:4px;font-size:13px;white-space:nowrap;box-shadow:0 1px 4px #000"
)
TOOLTIP = {
    "html": f"<div style='{TOOLTIP_BOX};{{tooltip_side}}'>{{tooltip}}</div>",
    "style": {"pointerEvents": "none", "backgroundColor": "transparent", "padding": "0"},
}


def tooltip_side(x_px: float, y_px: float) -> str:
    """CSS that places the tooltip of a record drawn (x_px, y_px) from the map's centre: to the left
    of the pointer right of the centre, above it below the centre."""
    across = f"calc(-100% - {TOOLTIP_GAP_PX}px)" if x_px > 0 else f"{TOOLTIP_GAP_PX}px"
    down = f"calc(-100% - {TOOLTIP_GAP_PX}px)" if y_px > 0 else f"{TOOLTIP_GAP_PX}px"
    return f"translate:{across} {down}"


def with_tooltip_sides(records: Sequence[Mapping[str, Any]], view: pdk.ViewState) -> list[dict[str, Any]]:
    """`records` (with `lat` and `lon`) each with its `tooltip_side` at `view`."""
    return [
        {**record, "tooltip_side": tooltip_side(*screen_xy(float(record["lat"]), float(record["lon"]), view))}
        for record in records
    ]


def build_deck(
    geography: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    paths: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    focus_animal_id: str | None = None,
    online_tiles: bool = False,
    fit_px: tuple[int, int] = (720, 600),
    names: bool = True,
    as_of: datetime | None = None,
    tracks_url: str | None = None,
) -> pdk.Deck:
    """The live map: reserve geometry as the base layer, then tracks (`paths`, or with `tracks_url`
    fetched from the dashboard after the first frame, `track_routes`), alerts and animals, and (with
    `names`) the animals' names where they fit at every zoom, as tiles of the dashboard's names route
    for the moment `as_of` (None: live; `name_tiles`).

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
    names_url = None
    if names and points:
        from ranger_dashboard import name_tiles  # it builds on this module

        focused = focus_animal_id if focus else None
        names_url = name_tiles.names_url(float(view.zoom), focused, as_of.isoformat() if as_of else None)
    layers = geography_layers(geography) + live_layers(points, paths, alerts, focus_animal_id, names_url, tracks_url)
    for layer in layers:
        if getattr(layer, "pickable", False):
            layer.data = with_tooltip_sides(layer.data, view)
    deck = CompactDeck(
        layers=layers,
        initial_view_state=view,
        map_provider="carto" if online_tiles else None,
        map_style="dark" if online_tiles else None,
        tooltip=TOOLTIP,
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
            layers.append(line_layer(f"track-{layer_id}", [{"path": path, "colour": colour, "width": 3}]))
        if path:
            fixes_dots = [{"lon": lon, "lat": lat, "fill": colour, "line": colour, "radius": 3, "line_width": 0} for lon, lat in path]
            layers.append(dot_layer(f"fixes-{layer_id}", fixes_dots, pickable=False))
    if raised_at is not None:
        lat, lon = raised_at
        points.append({"lat": lat, "lon": lon})
        ring = {"lat": _rounded(lat), "lon": _rounded(lon), "fill": palette.LABEL_COLOUR, "line": palette.LABEL_COLOUR,
                "radius": 12, "line_width": 2}
        layers.append(dot_layer("raised-at", [ring], filled=False, pickable=False))
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
        layers.append(line_layer("track", [{"path": path, "colour": palette.track_colour(1), "width": 2}]))
    if points:
        newest = {**points[-1], "fill": palette.LABEL_COLOUR, "line": palette.LABEL_COLOUR, "radius": 6, "line_width": 0}
        layers.append(dot_layer("newest-fix", [newest], pickable=False))
    deck = CompactDeck(
        layers=layers, initial_view_state=view_state_for(map_bounds({}, points), *fit_px), map_provider=None
    )
    deck.map_style = NO_BASE_MAP
    return deck
