"""A ranger zooming into a herd of 500 reads more names the closer they look, and at no zoom do the
names run into one block: the live map's names come as tiles from the dashboard
(`ranger_dashboard.name_tiles`, `ranger_dashboard.name_routes`), only to whom the page would show them."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from dashboard_route_helpers import filled_store, route_client
from starlette.testclient import TestClient

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import bench, map_layers, name_routes, name_tiles, palette, session_cookie

RANGER = Viewer("ranger.amani", "ranger")
NAMES = "/map/names/{z}/{x}/{y}.json"


def herd(count: int = 500, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "animal_id": f"a{i}",
            "name": f"Elephant {i:03d}",
            "lat": 0.20 + rng.random() * 0.27,
            "lon": 36.70 + rng.random() * 0.36,
            "state": "alert" if i % 25 == 0 else "normal",
            "priority": 1 if i % 25 == 0 else 0,
            "colour": palette.state_colour("alert" if i % 25 == 0 else "normal"),
            "tooltip": f"Elephant {i:03d}",
        }
        for i in range(count)
    ]


def boxes_at(named: list, zoom: float) -> list[tuple[float, float, float, float]]:
    view = map_layers.pdk.ViewState(latitude=0.0, longitude=0.0, zoom=zoom)
    boxes = []
    for p in named:
        x, y = map_layers.screen_xy(p["lat"], p["lon"], view)
        half = len(p["name"]) * map_layers.LABEL_CHAR_PX / 2
        boxes.append((x - half, y - map_layers.LABEL_HEIGHT_PX / 2, x + half, y + map_layers.LABEL_HEIGHT_PX / 2))
    return boxes


def overlapping(boxes: list[tuple[float, float, float, float]]) -> int:
    return sum(
        1
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
    )


def test_zooming_into_500_animals_names_more_of_them_and_never_overlaps_two_names():
    points = herd()
    whole = map_layers.view_state_for(map_layers.map_bounds({}, points), 640, 620).zoom
    counts = []
    for zoom in range(int(whole), name_tiles.MAX_ZOOM + 1):
        named = name_tiles.named_at_zoom(points, zoom, whole)
        counts.append(len(named))
        # Drawn from view zoom zoom - 0.5 (where names are closest) to zoom + 0.5: never overlapping.
        for shown_at in (zoom - name_tiles.SHOWN_FROM, zoom, zoom + 0.49):
            assert overlapping(boxes_at(named, shown_at)) == 0, (zoom, shown_at)
        if zoom < whole + 1:  # the whole reserve: only the animals that need a look
            assert {p["state"] for p in named} == {"alert"}
    # Close in nearly every animal is named (two within metres of each other share one name's room:
    # the other names itself on hover).
    assert counts == sorted(counts) and counts[-1] >= 495 and counts[0] < 30


def test_a_name_tile_holds_the_names_of_the_animals_inside_it_once():
    points = herd()
    named = name_tiles.named_at_zoom(points, 13, 10.5)
    assert len(named) > 100
    # The tiles of zoom 13 over the reserve and around it: every name in exactly one tile, its own.
    tiles = {name_tiles.tile_of(p["lat"], p["lon"], 13) for p in named}
    xs, ys = {x for x, _ in tiles}, {y for _, y in tiles}
    found: list[str] = []
    for x in range(min(xs) - 1, max(xs) + 2):
        for y in range(min(ys) - 1, max(ys) + 2):
            in_tile = name_tiles.tile_names(named, 13, x, y)["features"]
            box = name_tiles.tile_bounds(13, x, y)
            assert all(box.west <= f["geometry"]["coordinates"][0] < box.east for f in in_tile)
            found += [f["properties"]["name"] for f in in_tile]
    assert sorted(found) == sorted(p["name"] for p in named)
    assert (x := name_tiles.tile_of(0.3, 36.9, 13)) == (4935, 4089), x
    assert not name_tiles.valid_tile(0, 0, 0) and not name_tiles.valid_tile(13, 2**13, 0)
    assert name_tiles.valid_tile(13, 4935, 4089)


def test_focused_animal_is_named_first_even_among_the_whole_herd():
    points = herd()
    named = name_tiles.named_at_zoom(points, 11, 10.5, focus_animal_id="a7")
    assert "Elephant 007" in {p["name"] for p in named}  # a normal animal, named because it is focused


def test_live_map_asks_for_its_names_as_tiles_of_the_dashboard():
    moment = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    spec = json.loads(map_layers.build_deck({}, herd(), [], [], "a7", fit_px=(640, 620), as_of=moment).to_json())
    names = next(layer for layer in spec["layers"] if layer["id"] == "animal-names")
    assert names["@@type"] == "TileLayer" and names["pointType"] == "text"
    assert names["data"].startswith("./map/names/{z}/{x}/{y}.json?")
    query = parse_qs(urlsplit(names["data"]).query)
    assert query["focus"] == ["a7"] and query["at"] == [moment.isoformat()]
    assert float(query["whole"][0]) == pytest.approx(spec["initialViewState"]["zoom"], abs=0.01)
    assert names["getText"] == "@@=properties.name" and not names["pickable"]
    assert names["minZoom"] == name_tiles.MIN_ZOOM and names["refinementStrategy"] == "no-overlap"
    assert "TextLayer" not in {layer["@@type"] for layer in spec["layers"]}  # no text in the first frame


@pytest.fixture
def filled(sqlite_url):
    return filled_store(sqlite_url, animals=30, days=1)


def client(url: str, role: str, monkeypatch) -> TestClient:
    return route_client(url, role, name_routes.routes(), monkeypatch)


def all_names(
    client: TestClient, zoom: int, headers: dict | None = None, query: str = "whole=10"
) -> tuple[int, list[dict]]:
    """Every name tile of `zoom` that could hold an animal of the bench's reserve (a 5 km grid cell's
    centre may lie just outside it): the highest status answered and the names."""
    features: list[dict] = []
    status = 200
    (west, north), (east, south) = (name_tiles.tile_of(lat, lon, zoom) for lat, lon in ((0.52, 36.65), (0.15, 37.11)))
    for x in range(west, east + 1):
        for y in range(north, south + 1):
            answer = client.get(NAMES.format(z=zoom, x=x, y=y) + "?" + query, headers=headers)
            status = max(status, answer.status_code)
            if answer.status_code == 200:
                features += answer.json()["features"]
    return status, features


def test_names_go_only_to_a_signed_in_viewer_and_as_that_viewer_may_see_them(filled, monkeypatch):
    url, ranger_secret, researcher_secret = filled
    cookie = session_cookie.cookie_name("127.0.0.1:8501")
    ranger_dashboard = client(url, "ranger", monkeypatch)
    assert ranger_dashboard.get(NAMES.format(z=12, x=2466, y=2043)).status_code == 401  # nobody signed in
    assert ranger_dashboard.get(NAMES.format(z=12, x=2466, y=2043), headers={"cookie": f"{cookie}=forged"}).status_code == 401
    # A researcher's sign-in is not for a ranger dashboard.
    status, _ = all_names(ranger_dashboard, 12, {"cookie": f"{cookie}={researcher_secret}"})
    assert status == 401
    status, features = all_names(ranger_dashboard, 13, {"cookie": f"{cookie}={ranger_secret}"})
    assert status == 200 and 25 <= len(features) <= 30  # close in, (nearly) every animal by name
    assert len({f["properties"]["name"] for f in features}) == len(features)
    with open_bridge(url) as bridge:
        exact = {(p.lon, p.lat) for p in bridge.latest_positions(viewer=RANGER)}
        audited = bridge.audit_log(viewer=bench.BENCH_ADMIN)
    assert {tuple(f["geometry"]["coordinates"]) for f in features} <= {(round(x, 5), round(y, 5)) for x, y in exact}
    assert any(line.username == "ranger.amani" and line.action == "latest_positions" for line in audited)
    assert ranger_dashboard.get(NAMES.format(z=30, x=1, y=1), headers={"cookie": f"{cookie}={ranger_secret}"}).status_code == 404
    broken = ranger_dashboard.get(NAMES.format(z=12, x=2466, y=2043) + "?at=yesterday", headers={"cookie": f"{cookie}={ranger_secret}"})
    assert broken.status_code == 400
    # At an "as of" moment (the fill ends 2026-11-30 18:00 UTC): the names of the animals then.
    earlier = name_tiles.names_url(10, as_of="2026-11-30T12:00:00+00:00").split("?", 1)[1]
    name_routes._cache.clear()
    status, then = all_names(ranger_dashboard, 13, {"cookie": f"{cookie}={ranger_secret}"}, earlier)
    assert status == 200 and 25 <= len(then) <= 30
    assert {tuple(f["geometry"]["coordinates"]) for f in then} != {tuple(f["geometry"]["coordinates"]) for f in features}
    # On a researcher dashboard the researcher's names sit on the coarse grid, never at a fix.
    researcher_dashboard = client(url, "researcher", monkeypatch)
    status, features = all_names(researcher_dashboard, 13, {"cookie": f"{cookie}={researcher_secret}"})
    assert status == 200 and features
    coarse = {(round(f["geometry"]["coordinates"][0], 5), round(f["geometry"]["coordinates"][1], 5)) for f in features}
    assert not coarse & {(round(x, 5), round(y, 5)) for x, y in exact}


def test_a_visitor_kiosk_gets_names_without_a_sign_in_but_never_at_exact_positions(filled, monkeypatch):
    url, _, _ = filled
    kiosk = client(url, "visitor", monkeypatch)
    status, features = all_names(kiosk, 13)
    assert status == 200 and features
    with open_bridge(url) as bridge:
        exact = {(round(p.lon, 5), round(p.lat, 5)) for p in bridge.latest_positions(viewer=RANGER)}
    assert not {tuple(f["geometry"]["coordinates"]) for f in features} & exact


def test_a_route_asked_while_the_page_prepares_its_answer_waits_for_it_and_reads_the_store_once():
    name_routes._cache.clear()
    started, release, made = threading.Event(), threading.Event(), []

    def make():
        made.append(1)
        started.set()
        release.wait(10)
        return {"herd": len(made)}

    answers = []
    first = threading.Thread(target=lambda: answers.append(name_routes.cached(("herd", "warm"), make)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: answers.append(name_routes.cached(("herd", "warm"), make)))
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert answers == [{"herd": 1}, {"herd": 1}] and made == [1]


def test_a_failed_preparation_leaves_the_route_to_read_the_store_itself():
    name_routes._cache.clear()

    def broken():
        raise RuntimeError("store gone for a moment")

    with pytest.raises(RuntimeError):
        name_routes.cached(("tracks", "warm"), broken)
    assert name_routes.cached(("tracks", "warm"), lambda: b"[]") == b"[]"
