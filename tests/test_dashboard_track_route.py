"""The live map's tracks come after its first frame, from the dashboard's tracks route
(`ranger_dashboard.track_routes`), only to whom the page would show them and as that viewer may
see them."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from browser_helpers import backup_holds_the_store
from dashboard_route_helpers import filled_store, route_client
from starlette.testclient import TestClient

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import bench, map_layers, session_cookie, track_routes

RANGER = Viewer("ranger.amani", "ranger")
UNTIL = bench.END
WINDOW = {"since": (UNTIL - timedelta(hours=24)).isoformat(), "until": UNTIL.isoformat()}


@pytest.fixture
def filled(sqlite_url):
    return filled_store(sqlite_url, animals=12, days=2)


def client(url: str, role: str, monkeypatch) -> TestClient:
    return route_client(url, role, track_routes.routes(), monkeypatch)


def get(client: TestClient, secret: str | None = None, window: dict | None = None):
    headers = {"cookie": f"{session_cookie.cookie_name('127.0.0.1:8501')}={secret}"} if secret else None
    return client.get(track_routes.TRACKS_PATH + "?" + urlencode(WINDOW if window is None else window), headers=headers)


def places(segments: list[dict]) -> set[tuple[float, float]]:
    return {(round(lon, 5), round(lat, 5)) for s in segments for lon, lat in (s["from"], s["to"])}


def test_tracks_go_only_to_a_signed_in_viewer_and_as_that_viewer_may_see_them(filled, monkeypatch):
    url, ranger_secret, researcher_secret = filled
    ranger_dashboard = client(url, "ranger", monkeypatch)
    assert get(ranger_dashboard).status_code == 401  # nobody signed in
    assert get(ranger_dashboard, "forged").status_code == 401
    assert get(ranger_dashboard, researcher_secret).status_code == 401  # not a ranger dashboard's role
    answer = get(ranger_dashboard, ranger_secret)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "private, no-store"
    segments = answer.json()
    with open_bridge(url) as bridge:
        tracks = bridge.tracks(
            since=UNTIL - timedelta(hours=24), until=UNTIL, viewer=RANGER, max_points=track_routes_max_points()
        )
        exact = {(round(p.lon, 5), round(p.lat, 5)) for fixes in tracks.values() for p in fixes}
        audited = bridge.audit_log(viewer=bench.BENCH_ADMIN)
    # Every animal's track, fix to fix, in its own colour: what the map drew before from its JSON.
    assert segments == map_layers.track_segments(map_layers.track_paths(tracks))
    assert len({s["animal_id"] for s in segments}) == 12 and places(segments) == exact
    assert any(line.username == "ranger.amani" and line.action == "tracks" for line in audited)
    # On a researcher dashboard the researcher's tracks run on the coarse grid, never through a fix.
    researcher_dashboard = client(url, "researcher", monkeypatch)
    coarse = get(researcher_dashboard, researcher_secret)
    assert coarse.status_code == 200 and coarse.json()
    assert not places(coarse.json()) & exact


def track_routes_max_points() -> int:
    from ranger_dashboard import data

    return data.TRACK_MAX_POINTS


def test_a_visitor_kiosk_gets_tracks_without_a_sign_in_but_never_through_an_exact_fix(filled, monkeypatch):
    url, _, _ = filled
    with open_bridge(url) as bridge:
        exact = {(round(p.lon, 5), round(p.lat, 5)) for fixes in bridge.tracks(viewer=RANGER).values() for p in fixes}
    kiosk = client(url, "visitor", monkeypatch)
    answer = get(kiosk)
    assert answer.status_code == 200 and answer.json(), "the kiosk shows the herd's tracks, coarsely"
    assert not places(answer.json()) & exact


@pytest.mark.parametrize(
    "window",
    [
        {"until": UNTIL.isoformat()},
        {"since": "yesterday", "until": UNTIL.isoformat()},
        {"since": UNTIL.isoformat(), "until": (UNTIL - timedelta(hours=1)).isoformat()},
        {"since": (UNTIL - timedelta(hours=169)).isoformat(), "until": UNTIL.isoformat()},
    ],
    ids=["no_start", "not_a_time", "backwards", "longer_than_a_week"],
)
def test_a_broken_track_window_gets_a_clear_error(filled, monkeypatch, window):
    url, ranger_secret, _ = filled
    answer = get(client(url, "ranger", monkeypatch), ranger_secret, window)
    assert answer.status_code == 400 and answer.json()["error"]


def test_the_live_maps_first_frame_carries_the_herd_and_names_the_tracks_route_for_its_window():
    since, until = UNTIL - timedelta(hours=24), UNTIL
    points = [{"animal_id": "1", "name": "Amani", "lat": 0.3, "lon": 36.9, "state": "normal", "colour": [1, 2, 3, 255],
               "priority": 0, "tooltip": "Amani"}]
    tracks_url = track_routes.tracks_url(since, until, (7, 1, 2))
    spec = json.loads(map_layers.build_deck(bench.RESERVE, points, [], [], tracks_url=tracks_url).to_json())
    tracks = next(layer for layer in spec["layers"] if layer["id"] == "tracks")
    assert tracks["@@type"] == "LineLayer" and tracks["data"] == tracks_url
    assert track_routes.window(dict(part.split("=", 1) for part in tracks_url.split("?", 1)[1].split("&")) | WINDOW)
    assert tracks_url != track_routes.tracks_url(since, until, (8, 1, 2))  # a changed store: fetched again
    assert [a["name"] for a in next(layer for layer in spec["layers"] if layer["id"] == "animals")["data"]] == ["Amani"]


def test_while_a_backup_holds_the_store_the_maps_tracks_and_names_say_busy_and_when_to_retry(filled, monkeypatch):
    # The map asks for its tracks and names while a backup holds the store's write lock: their audit
    # line cannot be written, so no positions leave; the browser is told the store is busy and when to
    # ask again (they had answered 500, a fault of the dashboard's).
    from ranger_dashboard import name_routes, name_tiles

    url, ranger_secret, _ = filled
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    routes_client = route_client(url, "ranger", track_routes.routes() + name_routes.routes(), monkeypatch)
    with backup_holds_the_store(url):
        tracks = get(routes_client, ranger_secret)
        headers = {"cookie": f"{session_cookie.cookie_name('127.0.0.1:8501')}={ranger_secret}"}
        names = routes_client.get(f"{name_tiles.NAMES_PATH}/1/1/1.json", headers=headers)
    for answer in (tracks, names):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == str(name_routes.RETRY_AFTER_S)
        assert "busy" in answer.json()["error"] and "lat" not in answer.text
    assert get(routes_client, ranger_secret).status_code == 200, "answered again once the backup ended"
