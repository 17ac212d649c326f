"""Every view of live positions is in the audit log, also when the dashboard hands out an answer it
kept (its page caches, the live map's tracks and name tiles): each hand-out is logged for the viewer
who got it, an answer read ahead that no browser fetched is not logged as a view, and an answer kept
for one viewer never reaches another or comes out finer than that viewer may see now."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from dashboard_route_helpers import PASSWORD, filled_store, route_client
from starlette.testclient import TestClient

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import bench, data, kept_answers, map_layers, name_routes, session_cookie, track_routes

RANGER = Viewer("ranger.amani", "ranger")
RESEARCHER = Viewer("dr.wanjiru", "researcher")
UNTIL = bench.END
SINCE = UNTIL - timedelta(hours=24)
TRACKS = track_routes.TRACKS_PATH + "?" + urlencode({"since": SINCE.isoformat(), "until": UNTIL.isoformat()})
# Tiles covering the bench's reserve at zoom 10 (36.70 to 37.06 E, 0.20 to 0.47 N).
NAME_TILES = [f"/map/names/10/{x}/{y}.json" for x in (616, 617) for y in (510, 511)]


@pytest.fixture
def filled(sqlite_url):
    return filled_store(sqlite_url, animals=12, days=2)


def client(url: str, role: str, monkeypatch) -> TestClient:
    return route_client(url, role, track_routes.routes() + name_routes.routes(), monkeypatch)


def cookie(secret: str) -> dict[str, str]:
    return {"cookie": f"{session_cookie.cookie_name('127.0.0.1:8501')}={secret}"}


def views_logged(url: str, username: str, action: str) -> int:
    """How many reads of `action` the audit log counts for `username` (its lines' repeats)."""
    with open_bridge(url) as bridge:
        lines = bridge.audit_log(viewer=bench.BENCH_ADMIN, username=username)
    return sum(line.repeats for line in lines if line.action == action)


def wait_for_read_ahead() -> None:
    """The live map's read-ahead runs on one thread: a task queued after it ends after it."""
    name_routes._warming.submit(lambda: None).result(timeout=60)


def test_a_ranger_who_fetches_the_maps_tracks_twice_within_a_minute_is_logged_for_both_views(filled, monkeypatch):
    url, ranger_secret, _ = filled
    dashboard = client(url, "ranger", monkeypatch)
    first = dashboard.get(TRACKS, headers=cookie(ranger_secret))
    second = dashboard.get(TRACKS, headers=cookie(ranger_secret))  # the kept answer, not read again
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert views_logged(url, "ranger.amani", "tracks") == 2


def test_every_name_tile_a_ranger_gets_from_a_kept_herd_is_logged_as_a_view_of_the_herd(filled, monkeypatch):
    url, ranger_secret, _ = filled
    dashboard = client(url, "ranger", monkeypatch)
    named = 0
    for tile in NAME_TILES:
        answer = dashboard.get(tile, headers=cookie(ranger_secret))
        assert answer.status_code == 200
        named += len(answer.json()["features"])
    assert named > 0, "the tiles cover the reserve: some animals are named"
    # The herd was read once and kept; each of the four tiles handed out is a view of its positions.
    assert views_logged(url, "ranger.amani", "latest_positions") == len(NAME_TILES)
    assert views_logged(url, "ranger.amani", "animals") == len(NAME_TILES)


def test_tracks_and_names_read_ahead_but_never_fetched_leave_no_view_in_the_audit_log(filled, monkeypatch):
    url, ranger_secret, _ = filled
    dashboard = client(url, "ranger", monkeypatch)  # empties the routes' kept answers
    bridge = data.bridge(url)
    # The live map page reads the tracks and the names' herd ahead while the browser loads the map...
    track_routes.warm(bridge, RANGER, track_routes.tracks_url(SINCE, UNTIL))
    name_routes.warm_herd(bridge, RANGER, None, "wall")
    wait_for_read_ahead()
    # ...and the ranger closes the tab before the map asks for them: nobody saw those positions.
    for action in ("tracks", "latest_positions", "animals", "alerts"):
        assert views_logged(url, "ranger.amani", action) == 0, action
    # When the map does fetch them, each is logged once, as the ranger's view.
    assert dashboard.get(TRACKS, headers=cookie(ranger_secret)).status_code == 200
    assert dashboard.get(NAME_TILES[0], headers=cookie(ranger_secret)).status_code == 200
    assert views_logged(url, "ranger.amani", "tracks") == 1
    assert views_logged(url, "ranger.amani", "latest_positions") == 1


def test_an_answer_kept_for_one_ranger_never_reaches_another_person_or_another_role(filled, monkeypatch):
    url, ranger_secret, _ = filled
    with open_bridge(url) as bridge:
        bridge.add_user("ranger.baraka", "ranger", PASSWORD, actor=bench.BENCH_ADMIN)
        baraka_secret = bridge.sign_in("ranger.baraka", PASSWORD)[1]
    dashboard = client(url, "ranger", monkeypatch)
    assert dashboard.get(TRACKS, headers=cookie(ranger_secret)).status_code == 200
    assert dashboard.get(TRACKS, headers=cookie(baraka_secret)).status_code == 200
    # Each ranger's view is in the log under their own name, once: Baraka's came from his own read.
    assert views_logged(url, "ranger.amani", "tracks") == 1
    assert views_logged(url, "ranger.baraka", "tracks") == 1
    bridge = data.bridge(url)
    kept = track_routes.body_for(bridge, RANGER, SINCE, UNTIL)
    for stranger in (Viewer("ranger.baraka", "ranger"), Viewer("ranger.amani", "researcher")):
        with pytest.raises(PermissionError):
            kept_answers.hand_out(bridge, kept, stranger)
    assert views_logged(url, "ranger.baraka", "tracks") == 1  # a refused hand-out is no view


def test_a_researcher_sees_an_animal_coarser_at_once_when_a_ranger_moves_the_high_value_flag_to_it(filled, monkeypatch):
    url, _, researcher_secret = filled
    # Animals 1 and 2 are high-value; the researcher's map shows animal 3 on the 1 km grid.
    with open_bridge(url) as bridge:
        for animal_id in (1, 2):
            bridge.set_high_value(animal_id, True, viewer=RANGER)
    dashboard = client(url, "researcher", monkeypatch)

    def animal_3() -> set[tuple[float, float]]:
        answer = dashboard.get(TRACKS, headers=cookie(researcher_secret))
        assert answer.status_code == 200
        return {tuple(end) for s in answer.json() if s["animal_id"] == "3" for end in (s["from"], s["to"])}

    fine = animal_3()
    assert fine
    # A ranger moves the flag from animals 1 and 2 to animal 3 (3 = 1 + 2): on the next fetch the
    # researcher gets animal 3 on the 5 km grid, not the kept 1 km answer.
    with open_bridge(url) as bridge:
        for animal_id in (1, 2):
            bridge.set_high_value(animal_id, False, viewer=RANGER)
        bridge.set_high_value(3, True, viewer=RANGER)
        with bridge.audit_deferred():  # the test's own look, not a view of the researcher's
            now = bridge.tracks(since=SINCE, until=UNTIL, animal_ids=["3"], viewer=RESEARCHER, max_points=data.TRACK_MAX_POINTS)
    expected = {tuple(end) for s in map_layers.track_segments(map_layers.track_paths(now)) for end in (s["from"], s["to"])}
    coarse = animal_3()
    assert coarse == expected and coarse != fine


def test_the_pages_kept_reads_are_logged_each_time_a_page_shows_them(filled):
    url, _, _ = filled
    changed = data.changes(url)
    for _ in range(3):  # three runs of the live map within its answers' minute: read once, shown three times
        data.positions_at(url, RANGER, None, changed)
        data.animals_at(url, RANGER, changed)
    assert views_logged(url, "ranger.amani", "latest_positions") == 3
    assert views_logged(url, "ranger.amani", "animals") == 3


def test_two_kept_reads_asked_the_same_question_each_answer_with_their_own_data(filled):
    url, _, _ = filled
    changed = data.changes(url)
    positions = data.positions_at(url, RANGER, None, changed)
    alerts = data.alerts_at(url, RANGER, None, changed)  # the same arguments, another read
    assert positions and all(type(view).__name__ == "PositionView" for view in positions)
    assert alerts and all(type(view).__name__ == "AlertView" for view in alerts)
    data.alerts_at.clear()  # clearing one read's answers leaves the other's
    assert data.positions_at(url, RANGER, None, changed) == positions
    assert data.positions_at(url, viewer=RANGER, as_of=None, changed=changed) == positions
