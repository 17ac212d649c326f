"""Geofences over the API: a ranger (the role that manages fences, as on the dashboard) uploads the reserve's fence file (any format the bridge
reads, any CRS), removes a fence, and both are in the audit log; other roles are refused; a broken file
is refused with its reason and nothing is stored."""

from __future__ import annotations

import io
import os
import zipfile

import bridge_builders as b
import pytest
import rules_builders as rb
from access_builders import CONSOLE, NOW
from starlette.testclient import TestClient

from lora_bridge.access import ROLES, Viewer
from lora_bridge.adapters.api import create_app
from lora_bridge.domain import geofence_files


@pytest.fixture
def api(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        bridge.clock = lambda: NOW
        client.bridge = bridge
        client.tokens = {}
        for role in ROLES:
            username = f"{role.replace('_', '')}1"
            bridge.add_user(username, role, f"{role}-fence-password-1", actor=CONSOLE)
            client.tokens[role] = bridge.create_token(username, "fence tests", actor=CONSOLE).secret
        yield client


def auth(api, role):
    return {"Authorization": f"Bearer {api.tokens[role]}"}


def test_ranger_uploads_the_reserves_geopackage_and_removes_a_fence_both_audited(api, tmp_path):
    data = rb.geopackage_bytes(tmp_path)  # park (with its hole) and farm layers, Arc 1960 / UTM 37S
    answer = api.post("/api/geofences?filename=reserve.gpkg", content=data, headers=auth(api, "ranger"))

    assert answer.status_code == 201, answer.text
    features = answer.json()["features"]
    assert sorted((f["properties"]["kind"], f["properties"]["alert_on"]) for f in features) == [
        ("boundary", "exit"), ("farmland", "enter")]
    listed = api.get("/api/geofences", headers=auth(api, "ranger")).json()["features"]
    assert sorted(f["id"] for f in listed) == sorted(f["id"] for f in features)
    # stored in WGS84: the farm's west edge (x = 312 km in UTM 37S) near 37.31 degrees east
    farm = next(f for f in listed if f["properties"]["kind"] == "farmland")
    assert min(x for x, _ in farm["geometry"]["coordinates"][0]) == pytest.approx(rb.lat_lon(312_000, 9_700_000)[1], abs=0.01)

    gone = api.delete(f"/api/geofences/{farm['id']}", headers=auth(api, "ranger"))
    assert gone.status_code == 200 and gone.json() == {"deleted": farm["id"]}
    assert [f["id"] for f in api.get("/api/geofences", headers=auth(api, "ranger")).json()["features"]] == [
        f["id"] for f in listed if f["id"] != farm["id"]]
    assert api.delete(f"/api/geofences/{farm['id']}", headers=auth(api, "ranger")).status_code == 404

    entries = api.bridge.audit_log(viewer=Viewer("console:tests", "admin"))
    changes = {e.action: e for e in entries if e.action in ("geofences_imported", "geofence_deleted")}
    assert changes["geofences_imported"].username == "ranger1"
    assert changes["geofences_imported"].detail["filename"] == "reserve.gpkg"
    assert sorted(changes["geofences_imported"].detail["geofence_ids"]) == sorted(f["id"] for f in features)
    assert changes["geofence_deleted"].detail == {"geofence_id": farm["id"]}


def test_only_roles_that_manage_geofences_may_upload_or_remove_them(api):
    data = rb.geojson_utm_bytes()
    for role in ROLES:
        answer = api.post("/api/geofences?filename=reserve.geojson", content=data, headers=auth(api, role))
        may = ROLES[role].may("manage_geofences")
        assert answer.status_code == (201 if may else 403), (role, answer.text)
    assert api.post("/api/geofences?filename=reserve.geojson", content=data).status_code == 401
    fence_id = api.get("/api/geofences", headers=auth(api, "admin")).json()["features"][0]["id"]
    for role in ROLES:
        if not ROLES[role].may("manage_geofences"):
            assert api.delete(f"/api/geofences/{fence_id}", headers=auth(api, role)).status_code == 403, role


@pytest.mark.parametrize(
    ("query", "body", "says"),
    [
        ("filename=reserve.geojson", b'{"type": "FeatureCollection", "features": [', "reserve.geojson"),
        ("filename=reserve.geojson", b'{"type": "FeatureCollection", "features": []}', "reserve.geojson"),
        ("", None, "filename"),
        ("filename=reserve.zip", b"PK\x03\x04 not really a zip", "reserve.zip"),
        ("filename=reserve.geojson&replace=maybe", None, "replace"),
    ],
)
def test_a_broken_fence_upload_is_refused_with_its_reason_and_nothing_is_stored(api, query, body, says):
    answer = api.post(f"/api/geofences?{query}", content=body if body is not None else rb.geojson_utm_bytes(),
                      headers=auth(api, "admin"))

    assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    assert api.get("/api/geofences", headers=auth(api, "admin")).json()["features"] == []


def test_ranger_posts_a_fence_file_as_large_as_the_dashboard_takes_and_a_larger_one_is_refused_saying_the_limit(
    api, tmp_path
):
    # The reserve's Shapefile zipped with the office's 40 MB scan of the survey map beside it.
    shapefile = rb.zipped_shapefile_bytes(tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(shapefile)) as source, zipfile.ZipFile(buffer, "w") as archive:
        for name in source.namelist():
            archive.writestr(name, source.read(name))
        archive.writestr("survey_scan.tif", os.urandom(40 * 2**20))
    assert 32 * 2**20 < len(buffer.getvalue()) < geofence_files.MAX_FILE_BYTES

    answer = api.post("/api/geofences?filename=reserve.zip", content=buffer.getvalue(), headers=auth(api, "ranger"))
    assert answer.status_code == 201, answer.text[:300]

    too_large = b"\0" * (geofence_files.MAX_FILE_BYTES + 1)
    for body in (too_large, iter([too_large[: 2**20], too_large[2**20 :]])):  # with a length, and sent in chunks
        refused = api.post("/api/geofences?filename=big.zip", content=body, headers=auth(api, "ranger"))
        assert refused.status_code == 400
        assert f"larger than {geofence_files.MAX_FILE_MB} MB, the most a fence file may be" in refused.text
