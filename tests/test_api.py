"""The bridge's HTTP API: bearer tokens with roles on every data route, what each role may call, the
OpenAPI schema that lists every route, and a visitor who never gets an exact live position."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import timedelta

import bridge_builders as b
import geopandas as gpd
import pandas as pd
import pytest
from access_builders import CONSOLE, HERD, NOW, PASSWORDS, coordinates, exact_places, live_bridge, viewer
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from lora_bridge.access import ROLES
from lora_bridge.adapters.api import create_app
from lora_bridge.exports import MOVEBANK_COLUMNS

# 48 hourly fixes per animal, and the fix each collar alert carries.
FIXES = 2 * 48 + 2
# A body that each POST route accepts from a role that may use it.
BODIES = {
    "/api/animals/{animal_id}/high_value": {"high_value": True},
    "/api/alerts/{alert_id}/resolve": {"verdict": "false_alarm", "note": "checked from the air"},
    "/api/downlinks": {"device_id": "collar-01", "command": "request_status", "values": {}},
}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A client of the API over the live herd, and a token per role (owned by that role's account)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'tembo.db'}"
    with live_bridge(url) as bridge, TestClient(create_app(bridge)) as client:
        tokens = {}
        for username, (role, _) in PASSWORDS.items():
            tokens[role] = bridge.create_token(username, f"{role} tests", actor=CONSOLE).secret
        client.tokens = tokens
        client.bridge = bridge
        # A campaign the technicians track (no image: no multicast group), for the update routes.
        client.campaign_id = bridge.create_campaign(name="model 0.0.9", kind="model", version="0.0.9",
                                                    image_sha256="ab" * 32, image_bytes=3844, user="tito")["id"]
        client.bridge_ranger = viewer("amina")
        yield client


def auth(api, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[role]}"}


def concrete(api, path: str) -> str:
    """A route path with its parameters filled with ids that exist."""
    ranger = auth(api, "ranger")
    animal_id = api.get("/api/animals", headers=ranger).json()[0]["animal_id"]
    # The 30-hour-old fence alert on Amani: old enough for every role to see.
    alerts = api.get("/api/alerts?state=all", headers=ranger).json()
    alert_id = next(a["alert_id"] for a in alerts if a["alert_type"] == "geofence_farmland")
    fences = api.get("/api/geofences", headers=ranger).json()["features"]
    geofence_id = fences[0]["id"] if fences else 1  # a fence that may not exist: only refusals are tried
    return (path.replace("{animal_id}", str(animal_id)).replace("{alert_id}", str(alert_id))
            .replace("{geofence_id}", str(geofence_id)).replace("{campaign_id}", str(api.campaign_id)))


def data_routes(api) -> list[tuple[str, str, list[str]]]:
    """(method, path, roles) of every route in the OpenAPI schema that wants a token."""
    schema = api.get("/api/openapi.json").json()
    return [
        (method.upper(), path, operation["x-tembo-roles"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"bearer": []}]
    ]


def test_openapi_lists_every_route_the_app_serves(api):
    schema = api.get("/api/openapi.json").json()
    listed = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    served = {
        (method, re.sub(r":\w+}", "}", route.path))
        for route in api.app.routes
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert served == listed
    assert schema["openapi"].startswith("3.") and schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert len(data_routes(api)) >= 20


def test_every_data_route_wants_a_token(api):
    for method, path, _ in data_routes(api):
        for headers in ({}, {"Authorization": "Bearer tembo_not-a-real-token"}, {"Authorization": "Basic abc"}):
            answer = api.request(method, concrete(api, path), headers=headers, json=BODIES.get(path))
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        # Ten bad tokens from one address lock it out (test_access_lockout); this test tries routes.
        api.bridge.unlock(actor=CONSOLE, client="testclient")
    assert api.get("/healthz").status_code == 200
    assert set(api.get("/healthz").json()) == {"status"}


def test_each_role_may_call_its_routes_and_is_refused_the_others(api):
    assert set(api.tokens) == set(ROLES)
    checked = 0
    for method, path, allowed in data_routes(api):
        if method != "GET":
            continue  # the writes are tried one by one below
        for role in ROLES:
            answer = api.get(concrete(api, path), headers=auth(api, role))
            expected = 200 if role in allowed else 403
            assert answer.status_code == expected, (role, path, answer.status_code, answer.text[:200])
            if expected == 200:  # nothing a token was shown stays in a browser's or proxy's cache
                assert answer.headers["Cache-Control"] == "private, no-store", (role, path)
            checked += 1
    assert checked >= 5 * 18
    for path, role in (("/api/downlinks", "researcher"), ("/api/dead_letters/replay", "ranger"),
                       ("/api/alerts/{alert_id}/acknowledge", "field_technician"),
                       ("/api/animals/{animal_id}/high_value", "visitor")):
        answer = api.post(concrete(api, path), headers=auth(api, role), json=BODIES.get(path))
        assert answer.status_code == 403, (path, role)


def test_a_visitor_token_never_receives_an_exact_live_position_from_any_route(api):
    exact = exact_places(api.bridge)
    visitor = auth(api, "visitor")
    seen_places = 0
    for method, path, _ in data_routes(api):
        answer = api.request(method, concrete(api, path), headers=visitor, json=BODIES.get(path))
        assert answer.status_code in (200, 403), (path, answer.status_code)
        if answer.status_code != 200:
            continue
        kind = answer.headers["content-type"]
        document = answer.json() if "json" in kind else None
        if document is None:
            continue
        places = {(round(lat, 5), round(lon, 5)) for lat, lon in coordinates(document)}
        assert not places & exact, f"{path} leaked an exact position to a visitor"
        seen_places += len(places)
        for feature in document.get("features", []) if isinstance(document, dict) else []:
            time = feature.get("properties", {}).get("time")
            if time:
                assert time <= (NOW - timedelta(hours=24)).isoformat(), path
    assert seen_places > 0, "the visitor sees the herd, coarsely"


def test_ranger_acknowledges_and_resolves_in_the_token_owners_name(api):
    ranger = auth(api, "ranger")
    alert = next(a for a in api.get("/api/alerts", headers=ranger).json() if a["alert_type"] == "mortality")
    acked = api.post(f"/api/alerts/{alert['alert_id']}/acknowledge", headers=ranger)
    resolved = api.post(f"/api/alerts/{alert['alert_id']}/resolve", headers=ranger,
                        json={"verdict": "true", "note": "carcass found, tusks intact"})
    bad = api.post(f"/api/alerts/{alert['alert_id']}/resolve", headers=ranger, json={"verdict": "maybe"})
    detail = api.get(f"/api/alerts/{alert['alert_id']}", headers=ranger).json()

    assert acked.json()["acknowledged_by"] == "amina"
    assert (resolved.json()["state"], resolved.json()["resolved_by"]) == ("resolved", "amina")
    assert bad.status_code == 400
    assert detail["events"][-1]["detail"]["note"] == "carcass found, tusks intact"


def test_ranger_lists_the_alerts_tembo_closed_that_await_a_verdict_and_a_visitor_may_not(api):
    device_id = HERD[0][0]
    for f_cnt, hours_ago, battery_mv in ((900, 3, 3250), (901, 2, 4000)):  # low, then a new pack: closed by Tembo
        at = NOW - timedelta(hours=hours_ago)
        status = b.status(time_s=int(at.timestamp()), battery_mv=battery_mv, fix_age_s=0xFFFF)  # no fix in it
        body = b.tts_uplink(status, device_id=device_id, f_cnt=f_cnt, received_at=at, dev_eui="70B3D57ED0000001")
        assert api.bridge.ingest_tts_uplink(body).ok

    awaiting = api.get("/api/alerts/awaiting-verdict", headers=auth(api, "ranger"))

    assert awaiting.status_code == 200
    (closed,) = [a for a in awaiting.json() if a["device_id"] == device_id]
    assert (closed["alert_type"], closed["state"], closed["verdict"], closed["resolved_by"]) == (
        "low_battery", "resolved", None, "tembo")
    for role in ("visitor", "researcher", "field_technician"):
        assert api.get("/api/alerts/awaiting-verdict", headers=auth(api, role)).status_code == 403, role


def test_tracks_come_downsampled_as_geojson_lines_within_a_time_range(api):
    ranger = auth(api, "ranger")
    since, until = (NOW - timedelta(hours=30)).isoformat(), (NOW - timedelta(hours=6)).isoformat()
    answer = api.get("/api/tracks", headers=ranger, params={"since": since, "until": until, "max_points": 5})
    broken = api.get("/api/tracks", headers=ranger, params={"since": "yesterday"})

    assert answer.headers["content-type"].startswith("application/geo+json")
    lines = answer.json()["features"]
    assert {f["geometry"]["type"] for f in lines} == {"LineString"}
    for line in lines:
        times = line["properties"]["times"]
        assert len(line["geometry"]["coordinates"]) == len(times) == 5
        assert since <= times[0] and times[-1] <= until
        stored = api.bridge.tracks(since=NOW - timedelta(hours=30), animal_ids=[line["properties"]["animal_id"]],
                                   viewer=api.bridge_ranger)[line["properties"]["animal_id"]]
        assert line["properties"]["fixes_total"] == sum(1 for p in stored if p.time <= NOW - timedelta(hours=6))
    assert broken.status_code == 400 and "ISO 8601" in broken.json()["error"]


def test_movebank_csv_export_uses_movebanks_column_names_and_time_format(api):
    answer = api.get("/api/exports/movebank.csv", headers=auth(api, "ranger"))
    rows = list(csv.DictReader(io.StringIO(answer.text)))

    assert answer.headers["content-type"].startswith("text/csv")
    assert tuple(answer.text.splitlines()[0].split(",")) == MOVEBANK_COLUMNS
    assert len(rows) == FIXES
    first = rows[0]
    assert first["timestamp"] == (NOW - timedelta(minutes=10) - timedelta(hours=47)).strftime("%Y-%m-%d %H:%M:%S.000")
    assert (first["sensor-type"], first["animal-nickname"], first["tag-local-identifier"]) == (
        "gps", "Amani", "collar-01")
    animals = {a["name"]: str(a["animal_id"]) for a in api.get("/api/animals", headers=auth(api, "ranger")).json()}
    assert first["individual-local-identifier"] == animals["Amani"], "the animal's id, kept through a rename"
    assert float(first["location-long"]) == pytest.approx(37.5, abs=1e-4)  # the wire's int24 degrees
    assert first["individual-taxon-canonical-name"] == "Loxodonta africana"


def test_movebank_export_reads_back_with_the_twins_movebank_reader(api, tmp_path):
    from simulator.movebank import read_movebank

    path = tmp_path / "export.csv"
    path.write_text(api.get("/api/exports/movebank.csv", headers=auth(api, "researcher")).text)
    animals = {str(a["animal_id"]): a["name"] for a in api.get("/api/animals", headers=auth(api, "ranger")).json()}
    tracks = {animals[individual]: track for individual, track in read_movebank(path).items()}

    assert set(tracks) == {"Amani", "Tusker"}
    newest_s = {name: int(track.time_s.max()) for name, track in tracks.items()}
    assert newest_s["Amani"] <= (NOW - timedelta(hours=6)).timestamp()
    assert newest_s["Tusker"] <= (NOW - timedelta(hours=24)).timestamp(), "high-value: a day late for researchers"


def test_a_researcher_merging_two_movebank_exports_of_overlapping_days_keeps_every_fix_once(api):
    # Two downloads a day apart, overlapping by 12 hours; Movebank gives each event one unique event-id, and a
    # researcher merging the files drops the rows whose event-id she has already seen.
    researcher = auth(api, "researcher")

    def export(since_h: int, until_h: int) -> pd.DataFrame:
        window = {"since": (NOW - timedelta(hours=since_h)).isoformat(),
                  "until": (NOW - timedelta(hours=until_h)).isoformat()}
        answer = api.get("/api/exports/movebank.csv", params=window, headers=researcher)
        assert answer.status_code == 200, answer.text
        return pd.read_csv(io.StringIO(answer.text), dtype={"individual-local-identifier": str})

    first, second = export(48, 24), export(36, 0)
    both = pd.concat([first, second])
    fixes = both.drop_duplicates(["individual-local-identifier", "timestamp"])
    merged = both.drop_duplicates("event-id")
    assert len(first) and len(second) and len(fixes) < len(both), "the downloads overlap"
    assert sorted(zip(merged["individual-local-identifier"], merged["timestamp"], strict=True)) == sorted(
        zip(fixes["individual-local-identifier"], fixes["timestamp"], strict=True))


def test_geojson_and_geopackage_exports_read_back_with_geopandas(api, tmp_path):
    ranger = auth(api, "ranger")
    geojson = api.get("/api/exports/positions.geojson", headers=ranger)
    gpkg = api.get("/api/exports/positions.gpkg", headers=ranger)
    path = tmp_path / "positions.gpkg"
    path.write_bytes(gpkg.content)

    frame = gpd.read_file(path, layer="positions")
    assert gpkg.headers["content-type"] == "application/geopackage+sqlite3"
    assert frame.crs.to_epsg() == 4326 and len(frame) == FIXES
    assert set(frame["name"]) == {"Amani", "Tusker"}
    document = geojson.json()
    assert document["type"] == "FeatureCollection" and len(document["features"]) == FIXES
    assert document["precision"] == "exact", "the file says whether its points are the animals' exact places"
    assert document["features"][0]["properties"]["species"] == "Loxodonta africana"
    assert document["features"][0]["geometry"]["coordinates"] == pytest.approx([37.5, -2.5], abs=1e-4)


def test_park_gis_staff_download_the_fixes_as_a_zipped_shapefile_as_exact_as_their_role_sees_them(api, tmp_path):
    exact = exact_places(api.bridge)
    places = {}
    for role in ("ranger", "researcher"):
        answer = api.get("/api/exports/positions.shp.zip", headers=auth(api, role))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        assert 'filename="tembo-positions.shp.zip"' in answer.headers["content-disposition"]
        path = tmp_path / f"{role}.shp.zip"
        path.write_bytes(answer.content)
        frame = gpd.read_file(path)
        assert frame.crs.to_epsg() == 4326 and set(frame["name"]) == {"Amani", "Tusker"}
        gpkg = tmp_path / f"{role}.gpkg"
        gpkg.write_bytes(api.get("/api/exports/positions.gpkg", headers=auth(api, role)).content)
        assert [(p.x, p.y) for p in frame.geometry] == [(p.x, p.y) for p in gpd.read_file(gpkg).geometry], (
            "the Shapefile holds the GeoPackage's points")
        with zipfile.ZipFile(path) as archive:
            assert f"Positions: {'exact' if role == 'ranger' else 'coarse'}" in archive.read("README.txt").decode()
        places[role] = {(round(p.y, 5), round(p.x, 5)) for p in frame.geometry}
    assert len(places["ranger"]) == FIXES and places["ranger"] <= exact
    assert places["researcher"] and not places["researcher"] & exact, "a researcher's fixes are coarsened"

    empty = api.get("/api/exports/positions.shp.zip", params={"since": (NOW - timedelta(hours=3)).isoformat()},
                    headers=auth(api, "researcher"))
    (tmp_path / "empty.shp.zip").write_bytes(empty.content)
    assert empty.status_code == 200 and len(gpd.read_file(tmp_path / "empty.shp.zip")) == 0, (
        "6 hours late: no fix of the last 3 hours, an empty layer")
    assert api.get("/api/exports/positions.shp.zip", headers=auth(api, "field_technician")).status_code == 403


def test_prometheus_metrics_want_a_token_and_speak_the_text_format(api):
    refused = api.get("/metrics")
    forbidden = api.get("/metrics", headers=auth(api, "ranger"))
    answer = api.get("/metrics", headers=auth(api, "field_technician"))

    families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    assert (refused.status_code, forbidden.status_code, answer.status_code) == (401, 403, 200)
    assert families["tembo_animals"].samples[0].value == 2
    assert families["tembo_positions"].samples[0].value == FIXES
    assert any(s.labels.get("status") == "403" for s in families["tembo_api_requests"].samples)


def test_field_technician_scraping_metrics_does_not_learn_of_the_mortality_alert_raised_half_an_hour_ago(api):
    # Tusker's mortality alert is 30 min old: the technician's alert list shows it in half an hour
    # (24 h if Tusker were high-value). Its scrape had counted it in tembo_open_alerts at once.
    technician = api.get("/metrics", headers=auth(api, "field_technician"))
    admin = api.get("/metrics", headers=auth(api, "admin"))
    seen_by_technician = api.get("/api/alerts", headers=auth(api, "field_technician")).json()
    seen_by_admin = api.get("/api/alerts", headers=auth(api, "admin")).json()

    technician_gauges = {family.name for family in text_string_to_metric_families(technician.text)}
    admin_gauges = {family.name: family for family in text_string_to_metric_families(admin.text)}
    assert "mortality" not in {a["alert_type"] for a in seen_by_technician}
    assert {"tembo_alerts", "tembo_open_alerts"}.isdisjoint(technician_gauges)
    assert {"tembo_positions", "tembo_dead_letter", "tembo_downlinks_queued", "tembo_store_up"} <= technician_gauges
    assert admin_gauges["tembo_open_alerts"].samples[0].value == len(seen_by_admin)


def test_field_technician_queues_a_command_and_an_admin_reads_the_audit_log(api):
    seen_by_kiosk = api.get("/api/positions/latest", headers=auth(api, "visitor"))
    queued = api.post("/api/downlinks", headers=auth(api, "field_technician"),
                      json={"device_id": "collar-01", "command": "request_status"})
    unknown = api.post("/api/downlinks", headers=auth(api, "admin"), json={"device_id": "collar-01", "command": "fly"})
    audit = api.get("/api/audit", headers=auth(api, "admin")).json()

    assert seen_by_kiosk.status_code == 200
    assert queued.status_code == 201 and queued.json()["command"] == "request_status"
    assert unknown.status_code == 400
    assert any(e["username"] == "kiosk" and e["precision"] == "coarse" for e in audit)
    assert json.dumps(audit).count("tembo_") == 0, "no token secret in the audit log"


def test_a_researcher_or_technician_reads_a_collar_on_api_devices_as_heard_by_their_cutoff_not_in_farmland_now(
    sqlite_url,
):
    with live_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as api:
        api.tokens = {role: bridge.create_token(username, "devices", actor=CONSOLE).secret
                      for username, (role, _) in PASSWORDS.items()}
        # Amani's collar reported 30 h ago from the bush, and two minutes ago from inside the farmland.
        for f_cnt, heard, battery_mv, in_farmland in ((93, NOW - timedelta(hours=30), 3950, False),
                                                     (94, NOW - timedelta(minutes=2), 3400, True)):
            status = b.status(time_s=int(heard.timestamp()), lat=0.0, lon=0.0, battery_mv=battery_mv,
                              flags={"in_farmland": in_farmland})
            assert bridge.ingest_tts_uplink(b.tts_uplink(status, device_id="collar-01", f_cnt=f_cnt, received_at=heard,
                                                         dev_eui="70B3D57ED0000001")).ok

        def amanis_collar(role: str) -> dict:
            answer = api.get("/api/devices", headers=auth(api, role))
            assert answer.status_code == 200, answer.text
            return next(d for d in answer.json() if d["device_id"] == "collar-01")

        live = amanis_collar("ranger")
        assert (live["flags"]["in_farmland"], live["battery_mv"]) == (True, 3400)
        for role, late in (("researcher", timedelta(hours=6)), ("field_technician", timedelta(hours=1))):
            seen = amanis_collar(role)
            assert seen["flags"]["in_farmland"] is False, f"a {role} reads that Amani is in the farmland now"
            assert seen["battery_mv"] == 3950
            assert seen["last_seen"] <= (NOW - late).isoformat() and seen["last_f_cnt"] != 94
        assert api.get("/api/devices", headers=auth(api, "visitor")).status_code == 403


def test_a_field_technician_reads_no_ack_of_an_alert_it_may_not_see_yet_among_the_downlinks(api):
    ranger, technician = auth(api, "ranger"), auth(api, "field_technician")
    alerts = {a["alert_type"]: a["alert_id"] for a in api.get("/api/alerts?state=all", headers=ranger).json()}
    acked = {d["alert_id"] for d in api.get("/api/downlinks", headers=ranger).json() if d["alert_id"]}
    assert acked == {alerts["mortality"], alerts["geofence_farmland"]}

    # Tusker's mortality alert, 30 min old on a high-value animal, reaches a technician after 24 h: its
    # ack, queued for Tusker's collar at once, had told them of it (and a farmland alert's ack where
    # the animal is now) among the downlinks they read to follow the queue. Amani's farmland alert,
    # 30 h old, the technician sees; its ack not yet: the collar sent the alert late, and the ack
    # queued when it was heard, just now, says the collar was in a gateway's range now.
    answer = api.get("/api/downlinks", headers=technician)
    assert answer.status_code == 200
    assert {d["alert_id"] for d in answer.json() if d["alert_id"]} == set()
    assert api.get(f"/api/alerts/{alerts['geofence_farmland']}", headers=technician).status_code == 200
    assert api.get(f"/api/alerts/{alerts['mortality']}", headers=technician).status_code == 404


def test_an_integrator_reads_every_answer_the_webhook_gives_in_the_openapi_schema(api):
    # The webhook answers 202 (pending, or received in durable mode) and 503 (store unavailable:
    # send again); the schema had listed only 200, 400 and 401, so a generated client took a 202 or a
    # 503 for an undocumented error.
    schema = api.get("/api/openapi.json").json()
    webhook = [path for path in schema["paths"] if path.startswith("/uplinks/")]

    assert len(webhook) == 5
    for path in webhook:
        # a broken body is a 200 dead_letter (kept), a body that never all came a 408
        assert set(schema["paths"][path]["post"]["responses"]) == {"200", "202", "401", "408", "503"}, path



def test_admin_asking_for_every_dead_letter_with_all_true_gets_the_replayed_ones_too(tmp_path):
    # A script's `?all=true` was read as no: the admin saw only the letters still waiting and took the
    # replayed one for lost.
    from test_bridge_kept_failures import (
        REFUSED_COLLAR,
        accept_every_raw_row,
        refuse_raw_rows_naming,
        status_body,
    )

    with b.fresh_bridge(f"sqlite:///{tmp_path / 'tembo.db'}") as bridge, TestClient(create_app(bridge)) as client:
        bridge.add_user("ada", "admin", PASSWORDS["ada"][1], actor=CONSOLE)
        headers = {"Authorization": f"Bearer {bridge.create_token('ada', 'ops', actor=CONSOLE).secret}"}
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        kept = client.post(f"/uplinks/tts/tembo-test/{REFUSED_COLLAR}/up", content=status_body(REFUSED_COLLAR, 1, -2.41),
                           headers=b.HEADERS)
        accept_every_raw_row(bridge)
        bridge.replay_dead_letters()  # fixed and applied: no longer waiting
        listed = {flag: len(client.get(f"/api/dead_letters?all={flag}", headers=headers).json())
                  for flag in ("true", "1", "TRUE", "false", "0", "")}
        odd = client.get("/api/dead_letters?all=maybe", headers=headers)

    assert (kept.status_code, kept.json()["status"]) == (200, "dead_letter")
    assert listed == {"true": 1, "1": 1, "TRUE": 1, "false": 0, "0": 0, "": 0}
    assert odd.status_code == 400 and "all is true or false" in odd.json()["error"]


def test_an_admins_script_queues_failed_notifications_again_over_the_api_and_a_ranger_may_not(tmp_path):
    # After renewing EarthRanger's token the warden's script asks the bridge to send the night's failed
    # notifications again; the retry is in the audit log under her name, and only an admin may ask.
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'tembo.db'}") as bridge, TestClient(create_app(bridge)) as client:
        bridge.add_user("ada", "admin", PASSWORDS["ada"][1], actor=CONSOLE)
        bridge.add_user("amina", "ranger", PASSWORDS["amina"][1], actor=CONSOLE)
        admin = {"Authorization": f"Bearer {bridge.create_token('ada', 'ops', actor=CONSOLE).secret}"}
        ranger = {"Authorization": f"Bearer {bridge.create_token('amina', 'phone', actor=CONSOLE).secret}"}
        refused = client.post("/api/notifications/retry", headers=ranger)
        unknown = client.post("/api/notifications/retry?channel=pager", headers=admin)
        retried = client.post("/api/notifications/retry?channel=earthranger&since=2026-12-05T00:00:00Z",
                              headers=admin)
        audit = client.get("/api/audit?username=ada", headers=admin).json()

    assert refused.status_code == 403
    assert unknown.status_code == 400 and "earthranger" in unknown.json()["error"]
    assert (retried.status_code, retried.json()) == (200, {"requeued": [], "withdrawn": []})
    assert [e["detail"] for e in audit if e["action"] == "notifications_retried"] == [
        {"channel": "earthranger", "since": "2026-12-05T00:00:00+00:00", "requeued": [], "withdrawn": []}]
