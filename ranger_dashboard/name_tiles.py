"""Animal names on the live map that appear where they fit, at every zoom: names served as map tiles.

Streamlit's map does not tell the server where the ranger has zoomed to, and deck.gl's collision
filter draws nothing in this browser (see `map_layers`), so the names come from the dashboard itself
as tiles: the live map carries a deck.gl `TileLayer` whose tiles are `GET /map/names/{z}/{x}/{y}.json`
(`name_routes.py`). For tile zoom `z` the server places the names of the whole herd as they would
be drawn at the smallest view zoom that shows those tiles (deck.gl shows tile zoom `z` from view
zoom `z - 0.5`), each placed only where it overlaps no name placed before it (`map_layers.
labels_that_fit`: the focused animal first, then animals that need a look, then by name), and
answers the names whose animal is in the tile. Zooming in shows more names, zooming out fewer,
and at no zoom do two names overlap: 500 names never run into one block. A herd larger than
`map_layers.NAME_EVERY_ANIMAL_UP_TO` is named at the whole-reserve view (up to one zoom level in
from where the map was fitted) only where an animal needs a look, as before; every animal still
names itself in the hover tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pydeck as pdk

from ranger_dashboard import palette
from ranger_dashboard.map_layers import (
    LABEL_OFFSET_PX,
    NAME_EVERY_ANIMAL_UP_TO,
    PIXELS,
    MapBounds,
    labels_that_fit,
)

NAMES_PATH = "/map/names"
TILE_SIZE_PX = 512
# deck.gl picks the tiles of zoom round(view zoom) (512 px tiles): tile zoom z is shown from view
# zoom z - 0.5, where the names are closest together, so they are placed for that zoom.
SHOWN_FROM = 0.5
MIN_ZOOM = 1
MAX_ZOOM = 17  # further in, the tiles of MAX_ZOOM are drawn larger: names only spread further apart


def tile_bounds(z: int, x: int, y: int) -> MapBounds:
    """The latitude/longitude box of Web Mercator tile z/x/y."""
    n = 2.0**z

    def lat(row: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return MapBounds(south=lat(y + 1), west=x / n * 360.0 - 180.0, north=lat(y), east=(x + 1) / n * 360.0 - 180.0)


def tile_of(lat: float, lon: float, z: int) -> tuple[int, int]:
    """The (x, y) of the Web Mercator tile of zoom z holding (lat, lon)."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def valid_tile(z: int, x: int, y: int) -> bool:
    """True for a tile that exists at a zoom the names are served for."""
    return MIN_ZOOM <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


def named_at_zoom(
    points: Sequence[Mapping[str, Any]],
    zoom: int,
    whole_zoom: float | None = None,
    focus_animal_id: str | None = None,
) -> list[Mapping[str, Any]]:
    """The animals (`map_layers.animal_points` records) named at tile zoom `zoom`: placed without
    overlap at view zoom `zoom - SHOWN_FROM`. A large herd at the whole-reserve view (tile zoom below
    `whole_zoom + 1`, `whole_zoom` the zoom the map was fitted at) without a focused animal is named
    only where an animal needs a look."""
    candidates: Sequence[Mapping[str, Any]] = points
    whole = whole_zoom is not None and zoom < whole_zoom + 1
    if len(points) > NAME_EVERY_ANIMAL_UP_TO and focus_animal_id is None and whole:
        candidates = [p for p in points if p.get("state", "normal") != "normal"]
    view = pdk.ViewState(latitude=0.0, longitude=0.0, zoom=zoom - SHOWN_FROM)
    return labels_that_fit(candidates, view, focus_animal_id)


def tile_names(named: Sequence[Mapping[str, Any]], z: int, x: int, y: int) -> dict[str, Any]:
    """The names of `named` whose animal is in tile z/x/y, as a GeoJSON FeatureCollection."""
    box = tile_bounds(z, x, y)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
            "properties": {"name": str(p["name"])},
        }
        for p in named
        if box.west <= float(p["lon"]) < box.east and box.south < float(p["lat"]) <= box.north
    ]
    return {"type": "FeatureCollection", "features": features}


def names_url(whole_zoom: float, focus_animal_id: str | None = None, as_of: str | None = None) -> str:
    """The tiles' URL template for the live map (relative, like Streamlit's own files)."""
    query = {"whole": f"{whole_zoom:.2f}"}
    if focus_animal_id is not None:
        query["focus"] = str(focus_animal_id)
    if as_of is not None:
        query["at"] = as_of
    return f".{NAMES_PATH}/{{z}}/{{x}}/{{y}}.json?{urlencode(query)}"


def names_layer(url: str) -> pdk.Layer:
    """The names as a deck.gl TileLayer of `url`'s tiles, each drawn as text (GeoJSON points of kind
    text): white with a dark outline, 13 px, above the animal's dot; not pickable (the dot is)."""
    return pdk.Layer(
        "TileLayer",
        id="animal-names",
        data=url,
        tile_size=TILE_SIZE_PX,
        min_zoom=MIN_ZOOM,
        max_zoom=MAX_ZOOM,
        # While tiles of a new zoom load, their parents stay drawn only where no child is yet: names
        # of two zooms are never drawn over one another.
        refinement_strategy="'no-overlap'",  # a constant string, quoted for pydeck
        point_type="'text'",
        get_text="properties.name",
        get_text_color=palette.LABEL_COLOUR,
        get_text_size=13,
        text_size_units=PIXELS,
        get_text_pixel_offset=[0, -LABEL_OFFSET_PX],
        text_font_weight=600,
        text_font_settings={"sdf": True},
        text_outline_width=2,
        text_outline_color=[0, 0, 0, 255],
        pickable=False,
    )
