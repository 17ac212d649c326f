"""The field pages run by Streamlit's AppTest on a seeded store: fleet health for field technicians,
geofence import (broken files said clearly, any CRS reprojected) and sending fences to collars, the
models the bridge knows; every page under every role the dashboard has today."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
from browser_helpers import ACCOUNTS, seeded_sqlite
from shapely.geometry import box
from streamlit.testing.v1 import AppTest

import ranger_dashboard
from lora_bridge.access import Viewer
from lora_bridge.domain import geofence_files
from lora_bridge.service import open_bridge
from ranger_dashboard import fence_upload, login, navigation, roles, views

APP = Path(ranger_dashboard.__file__).resolve().parent / "app.py"
TIMEOUT_S = 60
AMINA = Viewer("amina", "ranger")
PAGES = ("live_map", "alerts", "animals", "fleet", "geofences", "models", "updates", "herd")


@pytest.fixture
def store(sqlite_url, monkeypatch) -> str:
    """The seeded reserve with its accounts, a copy of its own of the store `seed` filled for this process;
    the dashboard reads it through TEMBO_DATABASE_URL."""
    seeded_sqlite(sqlite_url)
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    return sqlite_url


# Who signs in to a dashboard started for each role (the visitor kiosk needs nobody).
SIGNED_IN = {"ranger": "amina", "researcher": "rose", "field_technician": "tito", "admin": "ada"}


def account_for(role: str) -> str:
    """The seeded account that signs in to a dashboard of `role` (an admin on the control room's, to
    reach every page)."""
    return "ada" if role == "ranger" else SIGNED_IN.get(role, "kiosk")


def open_page(page: str, ranger: str | None = None) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    role = os.environ.get("TEMBO_DASHBOARD_ROLE", "ranger")
    username = ranger or account_for(role)
    if role != "visitor":
        with open_bridge(os.environ["TEMBO_DATABASE_URL"]) as bridge:
            app.session_state[login.SESSION_KEY] = bridge.sign_in(username, ACCOUNTS[username][1])[1]
    app.run()
    app.switch_page(f"screens/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def farm_in_utm() -> bytes:
    """A 1 km x 1 km farm in UTM zone 37N (EPSG:32637), inside the seeded reserve, as a zipped Shapefile."""
    corner = gpd.GeoSeries.from_xy([37.55], [0.53], crs="EPSG:4326").to_crs("EPSG:32637").iloc[0]
    frame = gpd.GeoDataFrame(
        {"name": ["Shamba"]},
        geometry=[box(corner.x, corner.y, corner.x + 1000, corner.y + 1000)],
        crs="EPSG:32637",
    )
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(buffer, "w") as archive:
        frame.to_file(Path(folder) / "farm.shp")
        for part in Path(folder).iterdir():
            archive.write(part, part.name)
    return buffer.getvalue()


@pytest.mark.parametrize("role", sorted(roles.ROLES))
def test_every_page_opens_under_every_role(store, monkeypatch, role):
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", role)
    username = account_for(role)
    viewer = Viewer(username, ACCOUNTS[username][0]) if role != "visitor" else Viewer("kiosk", "visitor")
    allowed = {"live_map" if path == "live" else path for path in navigation.page_paths_for(viewer)}
    for page in PAGES:
        if page in allowed:
            open_page(page)
        else:
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                open_page(page)


def test_technician_sees_battery_uplinks_radio_and_versions_per_collar(store):
    app = open_page("fleet")
    assert app.title[0].value == "Fleet health"
    table = app.dataframe[0].value
    assert set(table[views.COL_COLLAR]) == {"collar-001", "collar-002", "collar-003"}
    zawadi = table[table[views.COL_NAME] == "Zawadi"].iloc[0]
    assert zawadi[views.COL_BATTERY] == "3.15 V (low)"
    assert zawadi["Gateway"] == "hq-mast"
    assert zawadi[views.COL_FIRMWARE] == "1.2.3"
    assert set(table[views.COL_UPLINK_DUE]) == {"overdue"}  # seeded days ago, on the wall clock
    assert next(m.value for m in app.metric if m.label == "Collars") == "3"


def test_broken_fence_files_get_a_clear_message(store):
    no_crs = json.dumps({"type": "FeatureCollection", "features": []}).encode()
    cases = {
        "broken.geojson": (b"{ not json", "broken.geojson:"),
        "no_shp.zip": (_zip({"readme.txt": b"no shapefile here"}), ".shp"),
        "notes.txt": (b"hello", "unknown file type"),
        "empty.geojson": (no_crs, "empty.geojson:"),
        "farm.zip": (_zip({k: v for k, v in _unzip(farm_in_utm()).items() if not k.endswith(".prj")}), "CRS"),
    }
    for name, (content, expected) in cases.items():
        outcome = fence_upload.import_upload(store, content, name, "farmland", AMINA)
        assert not outcome.ok and expected in outcome.message, (name, outcome.message)
    assert open_bridge(store).geofences() == []


def test_a_farm_drawn_in_degrees_but_labelled_utm_is_refused_as_a_wrong_crs_not_stored_in_antarctica(store):
    farm = {"type": "Polygon", "coordinates": [[[37.55, 0.53], [37.56, 0.53], [37.56, 0.54], [37.55, 0.53]]]}
    labelled_utm = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32637"}},
        "features": [{"type": "Feature", "properties": {"name": "Shamba"}, "geometry": farm}],
    }
    outcome = fence_upload.import_upload(store, json.dumps(labelled_utm).encode(), "shamba.geojson", "farmland", AMINA)
    assert not outcome.ok
    assert "read in EPSG:32637, its fences lie" in outcome.message and "km from the reserve" in outcome.message
    assert "is that the CRS its coordinates are in?" in outcome.message
    assert open_bridge(store).geofences() == []

    del labelled_utm["crs"]  # without a CRS, GeoJSON is WGS84 degrees (RFC 7946): inside the reserve
    outcome = fence_upload.import_upload(store, json.dumps(labelled_utm).encode(), "shamba.geojson", "farmland", AMINA)
    assert outcome.ok, outcome.message
    assert [f.name for f in open_bridge(store).geofences()] == ["Shamba"]


def test_a_shapefile_in_utm_is_reprojected_previewed_and_sent_to_the_collars(store):
    outcome = fence_upload.import_upload(store, farm_in_utm(), "farm.zip", "farmland", AMINA, name="Maize shamba")
    assert outcome.ok and "reprojected from EPSG:32637 to WGS84" in outcome.message, outcome.message
    app = open_page("geofences", ranger="amina")
    (fence,) = open_bridge(store).geofences()
    assert (fence.name, fence.kind, fence.alert_on) == ("Maize shamba", "farmland", "enter")
    lon, lat = fence.geometry["coordinates"][0][0]
    assert 37.5 < lon < 37.6 and 0.5 < lat < 0.6
    assert "fence-" + str(fence.geofence_id) in {
        layer["id"] for layer in json.loads(app.get("deck_gl_json_chart")[0].proto.json)["layers"]
    }
    app.multiselect(key="fences_to_send").set_value([fence.geofence_id]).run()
    app.button(key="send_fences").click().run()
    assert any("downlinks queued" in s.value for s in app.success)
    commands = [d.command for d in open_bridge(store).downlinks() if d.device_id == "collar-001"]
    assert commands == ["clear_fences", "fence"]


def test_ranger_uploads_a_shapefile_zipped_on_windows_whose_parts_differ_in_case_and_it_is_read_with_its_crs(store):
    # Windows keeps a name's case as typed and ignores it on reading: an office's zip holds farm.shp and
    # farm.shx beside FARM.DBF and FARM.PRJ, and QGIS or ArcGIS there read the four as one Shapefile.
    parts = {name.replace("farm.dbf", "FARM.DBF").replace("farm.prj", "FARM.PRJ"): content
             for name, content in _unzip(farm_in_utm()).items()}
    assert {"farm.shp", "farm.shx", "FARM.DBF", "FARM.PRJ"} <= set(parts)

    outcome = fence_upload.import_upload(store, _zip(parts), "farm.zip", "farmland", AMINA)
    assert outcome.ok and "reprojected from EPSG:32637 to WGS84" in outcome.message, outcome.message
    (fence,) = open_bridge(store).geofences()
    assert fence.name == "Shamba", "the name comes from the .dbf"
    lon, lat = fence.geometry["coordinates"][0][0]
    assert 37.5 < lon < 37.6 and 0.5 < lat < 0.6


def test_ranger_is_told_on_the_geofences_page_the_largest_fence_file_the_bridge_takes_and_a_larger_one_is_refused(
    store,
):
    (uploader,) = open_page("geofences", ranger="amina").get("file_uploader")
    # Streamlit refuses a larger file in the browser, saying "File must be 50.0MB or smaller": had it
    # taken 200 MB, a 120 MB file would have uploaded for minutes over a reserve's link to be refused.
    assert uploader.proto.max_upload_size_mb == geofence_files.MAX_FILE_MB
    assert f"at most {geofence_files.MAX_FILE_MB} MB" in uploader.proto.help

    outcome = fence_upload.import_upload(store, b"\0" * (geofence_files.MAX_FILE_BYTES + 1), "farm.zip", "farmland",
                                         AMINA)
    assert not outcome.ok
    assert outcome.message == f"farm.zip: larger than {geofence_files.MAX_FILE_MB} MB, the most a fence file may be"


def test_admin_finds_who_imported_a_fence_file_and_who_sent_the_fences_to_the_collars(store):
    fence_upload.import_upload(store, farm_in_utm(), "farm.zip", "farmland", AMINA, name="Maize shamba")
    app = open_page("geofences", ranger="amina")
    (fence,) = open_bridge(store).geofences()
    app.multiselect(key="fences_to_send").set_value([fence.geofence_id]).run()
    app.button(key="send_fences").click().run()
    assert any("downlinks queued" in s.value for s in app.success)

    with open_bridge(store) as bridge:
        log = bridge.audit_log(viewer=Viewer("ada", "admin"))
    done = {e.action: e for e in log if e.action in ("geofences_imported", "fences_sent")}
    assert done["geofences_imported"].username == "amina"
    assert done["geofences_imported"].detail["filename"] == "farm.zip"
    assert done["geofences_imported"].detail["geofence_ids"] == [fence.geofence_id]
    assert done["fences_sent"].username == "amina"
    assert done["fences_sent"].detail["geofence_ids"] == [fence.geofence_id]
    assert done["fences_sent"].detail["collars"] == 3
    assert not any("Type your name" in c.value for c in app.caption), "the page asks for no name: amina signed in"


def test_researcher_sees_the_models_the_bridge_knows(store, monkeypatch):
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "researcher")
    app = open_page("models")
    table = app.dataframe[0].value
    assert int(table["Collars running it"].sum()) == 3
    assert all(table["Classes"].str.len() > 0)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_every_role_gets_the_night_theme_and_no_deploy_button():
    import tomllib

    from ranger_dashboard import palette

    settings = tomllib.loads(
        (Path(ranger_dashboard.__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text()
    )
    assert settings["theme"] == palette.THEME  # one theme: the file and the launcher's flags agree
    assert settings["client"]["toolbarMode"] == "minimal"
