"""An integrator's odd requests to the HTTP API (a time at the calendar's edge, an id longer than any
row id, JSON nested deeper than Python recurses, a command value of the wrong type) are answered
400 or 404 with a reason, never 500, and the server logs no traceback for them."""

from __future__ import annotations

import json
import logging

import bridge_builders as b
import pytest
from access_builders import CONSOLE
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app


@pytest.fixture
def admin(sqlite_url):
    """A client of the API over a store with one collar, and an admin's bearer header."""
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        bridge.add_user("odd-admin", "admin", "odd-admin-access-password", actor=CONSOLE)
        assert bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1)).ok
        token = bridge.create_token("odd-admin", "odd requests", actor=CONSOLE).secret
        with TestClient(create_app(bridge), raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            yield client


@pytest.mark.parametrize("path", [
    # 9999-12-31 at UTC-5 is year 10000 in UTC, 0001-01-01 at UTC+5 is year 0: both outside Python's calendar
    "/api/positions?since=9999-12-31T23:59:59-05:00",
    "/api/positions?since=0001-01-01T00:00:00%2B05:00",
    "/api/tracks?until=9999-12-31T23:59:59-01:00",
    "/api/audit?since=9999-12-31T23:59:59-05:00",
    "/api/exports/movebank.csv?since=9999-12-31T23:59:59-05:00",
])
def test_a_time_at_the_calendars_edge_is_a_400_with_its_reason(admin, path, caplog):
    with caplog.at_level(logging.ERROR):
        reply = admin.get(path)

    assert reply.status_code == 400
    assert "outside the years 1..9999" in reply.json()["error"]
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/alerts/99999999999999999999999"),
    ("POST", "/api/alerts/99999999999999999999/acknowledge"),
    ("GET", "/api/updates/campaigns/99999999999999999999999"),
    ("POST", "/api/updates/campaigns/999999999999999999999/abort"),
    ("DELETE", "/api/geofences/999999999999999999999999"),
])
def test_an_id_longer_than_any_row_id_is_a_404_like_an_id_that_names_nothing(admin, method, path):
    reply = admin.request(method, path, json={})

    assert reply.status_code == 404
    # ...and an id of the same route that fits names nothing here either: same answer.
    assert admin.request(method, path.replace("9999999999999999999", "9"), json={}).status_code == 404


def test_a_flag_setting_takes_true_and_a_whole_number_written_with_a_point_is_still_a_whole_number(admin):
    flag = admin.post("/api/downlinks", json={"device_id": "collar-01", "command": "settings",
                                              "values": {"confirmed_alerts": True}})
    minutes = admin.post("/api/downlinks", json={"device_id": "collar-01", "command": "tracking",
                                                 "values": {"minutes": 30.0}})

    assert (flag.status_code, minutes.status_code) == (201, 201)
    assert (flag.json()["payload_hex"], minutes.json()["payload_hex"]) == ("0e0101", "041e00")


@pytest.mark.parametrize("path", ["/api/downlinks", "/api/alerts/1/resolve", "/api/animals/x/high_value"])
def test_json_nested_deeper_than_python_recurses_is_a_400(admin, path):
    reply = admin.post(path, content=b"[" * 50_000, headers={"Content-Type": "application/json"})

    assert reply.status_code in (400, 404)  # 404 where the route looks its id up first
    if reply.status_code == 400:
        assert "nested too deeply" in reply.json()["error"]


@pytest.mark.parametrize(("command", "values"), [
    ("tracking", {"minutes": "abc"}),
    ("tracking", {"minutes": [1]}),
    ("tracking", {"minutes": None}),
    ("settings", {"gnss_interval_s": "NaN"}),
    ("settings", {"gnss_interval_s": None}),
    # A boolean or a fraction for a whole number had been cast: `true` set one minute of tracking,
    # 600.9 went out as 600.
    ("tracking", {"minutes": True}),
    ("tracking", {"minutes": 30.5}),
    ("settings", {"tracking_minutes": True}),
    ("settings", {"gnss_interval_s": 600.9}),
])
def test_a_command_value_of_the_wrong_type_is_a_400_naming_it_and_nothing_is_queued(admin, command, values):
    reply = admin.post("/api/downlinks", json={"device_id": "collar-01", "command": command, "values": values})

    assert reply.status_code == 400
    assert "wrong type" in reply.json()["error"]
    assert admin.get("/api/downlinks").json() == []
    # The same command with a value of the right type is queued.
    right = {"minutes": 30} if command == "tracking" else {"gnss_interval_s": 600}
    queued = admin.post("/api/downlinks", json={"device_id": "collar-01", "command": command, "values": right})
    assert queued.status_code in (200, 201)
    assert [d["command"] for d in admin.get("/api/downlinks").json()] == [command]


def test_a_downlink_state_that_is_no_state_is_a_400_not_an_empty_list(admin):
    assert admin.post("/api/downlinks", json={"device_id": "collar-01", "command": "request_status"}).status_code in (200, 201)

    typo = admin.get("/api/downlinks?state=queud")
    queued = admin.get("/api/downlinks?state=queued")

    assert typo.status_code == 400 and "unknown downlink state 'queud'" in typo.json()["error"]
    assert [d["command"] for d in queued.json()] == ["request_status"]
    assert len(admin.get("/api/downlinks?state=").json()) == 1


@pytest.fixture
def fence_admin(store_url):
    """The API over a store of either engine (PostgreSQL enforces column lengths; SQLite does not)."""
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.add_user("fence-admin", "admin", "fence-admin-access-password", actor=CONSOLE)
        token = bridge.create_token("fence-admin", "odd fences", actor=CONSOLE).secret
        with TestClient(create_app(bridge), raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            yield client


def _square(name: str) -> bytes:
    feature = {"type": "Feature", "properties": {"name": name},
               "geometry": {"type": "Polygon", "coordinates": [[[37.0, -2.0], [37.1, -2.0], [37.1, -2.1], [37.0, -2.0]]]}}
    return json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()


def test_a_fence_files_long_names_are_cut_to_fit_and_a_kind_too_long_is_a_400(fence_admin):
    # A GIS file's name column may hold a description; its file name and CRS list may be long too.
    long_name = "Farmland of the northern villages, " * 10
    stored = fence_admin.post(f"/api/geofences?filename={'reserve-' * 40}.geojson", content=_square(long_name))
    refused = fence_admin.post(f"/api/geofences?filename=r.geojson&kind={'k' * 40}", content=_square("x"))

    assert stored.status_code == 201, stored.text
    (fence,) = fence_admin.get("/api/geofences").json()["features"]
    assert long_name.startswith(fence["properties"]["name"]) and len(fence["properties"]["name"]) == 128
    assert refused.status_code == 400 and "kind" in refused.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/audit?username=%00", None),
    ("GET", "/api/positions?animal_id=%00", None),
    ("GET", "/api/exports/movebank.csv?animal_id=a%00b", None),
    ("GET", "/api/animals/%00/activity", None),
    ("POST", "/api/downlinks", {"device_id": "collar\u0000", "command": "reboot", "values": {}}),
    ("POST", "/api/geofences?filename=reserve%00.geojson", None),
])
def test_a_nul_character_in_a_parameter_or_body_is_a_400_on_either_store(fence_admin, method, path, body):
    # PostgreSQL text cannot hold NUL: these reached it and answered 500 there.
    reply = fence_admin.request(method, path, json=body) if body is not None else fence_admin.request(method, path)

    assert reply.status_code == 400, reply.text
    assert "NUL" in reply.json()["error"]


def test_a_ranger_asked_to_try_again_later_while_a_backup_holds_the_store_not_shown_a_500(sqlite_url, caplog):
    # A read of positions writes its audit line first and an acknowledgement writes the alert: while
    # another program holds SQLite's write lock, neither can be kept, so the answer is a 503 with
    # Retry-After (the positions are not handed out unlogged); it had been a 500 and a traceback.
    import sqlite3

    with b.fresh_bridge(sqlite_url, outbox_worker=False, sqlite_busy_timeout_ms=200) as bridge:
        assert bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1)).ok
        headers = b.api_headers(bridge, "ranger")
        with TestClient(create_app(bridge), raise_server_exceptions=False) as client:
            (animal,) = client.get("/api/animals", headers=headers).json()
            backup = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
            backup.execute("BEGIN IMMEDIATE")
            try:
                with caplog.at_level(logging.WARNING):
                    replies = [client.get("/api/positions/latest", headers=headers),
                               client.post(f"/api/animals/{animal['animal_id']}/high_value", headers=headers,
                                           json={"high_value": True})]
            finally:
                backup.execute("ROLLBACK")
                backup.close()
            after = client.get("/api/positions/latest", headers=headers)

    assert [reply.status_code for reply in replies] == [503, 503]
    assert all(reply.headers["Retry-After"] and "try again" in reply.json()["error"] for reply in replies)
    assert not [record for record in caplog.records if record.exc_info]
    # The operator finds why under the answer's error_id: the driver's words, not its SQL.
    for reply in replies:
        (logged,) = [r for r in caplog.records if getattr(r, "error_id", None) == reply.json()["error_id"]]
        assert "database is locked" in logged.getMessage() and "[SQL" not in logged.getMessage()
    assert after.status_code == 200 and len(after.json()["features"]) == 1
