"""Geofences from the reserve's own files, and the crossings rangers are told about."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import bridge_builders as b
import pytest
import rules_builders as rb
from shapely.geometry import shape

from lora_bridge.access import Viewer
from lora_bridge.errors import InvalidGeofenceFile, UnknownGeofence

T = b.T0


@pytest.fixture
def bridge(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        yield bridge


@pytest.fixture
def any_store_bridge(store_url):
    """The same on SQLite, then on PostgreSQL + PostGIS."""
    with b.fresh_bridge(store_url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        yield bridge


def test_park_drawn_in_utm_geojson_is_stored_in_wgs84_with_its_hole(bridge):
    park, farm = rb.park_and_farm(bridge)

    assert (park.name, park.kind, park.alert_on, park.source_crs) == ("Park", "boundary", "exit", "EPSG:32737")
    assert (farm.kind, farm.alert_on) == ("farmland", "enter")
    polygon = shape(park.geometry)
    assert len(polygon.interiors) == 1
    lat, lon = rb.lat_lon(300_000, 9_700_000)
    assert polygon.exterior.coords[0] == pytest.approx((lon, lat), abs=1e-9)
    assert [f["properties"]["name"] for f in bridge.geofences_geojson()["features"]] == ["Park", "East farms"]


def test_geopackage_in_kenyas_arc_1960_grid_gives_one_fence_per_layer(bridge, tmp_path):
    fences = bridge.import_geofences(rb.geopackage_bytes(tmp_path), "reserve.gpkg")

    assert [(f.name, f.kind, f.alert_on, f.source_crs) for f in fences] == [
        ("Park", "boundary", "exit", "EPSG:21037"),
        ("East farms", "farmland", "enter", "EPSG:21037"),
    ]
    # Arc 1960 and WGS84 differ by a datum shift of a few hundred metres; pyproj applies it.
    lat, lon = rb.lat_lon(310_000, 9_700_000)
    assert shape(fences[0].geometry).exterior.distance(shape({"type": "Point", "coordinates": [lon, lat]})) < 1e-5


def test_zipped_shapefile_with_its_prj_is_read(bridge, tmp_path):
    fences = bridge.import_geofences(rb.zipped_shapefile_bytes(tmp_path), "reserve.zip")

    assert [(f.name, f.kind) for f in fences] == [("Park", "boundary"), ("East farms", "farmland")]
    assert fences[0].source_file == "reserve.zip"


def test_fence_is_listed_and_deleted(bridge):
    park, farm = rb.park_and_farm(bridge)

    bridge.delete_geofence(park.geofence_id)

    assert [f.geofence_id for f in bridge.geofences()] == [farm.geofence_id]
    with pytest.raises(UnknownGeofence):
        bridge.delete_geofence(park.geofence_id)


BOWTIE = (
    b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon",'
    b'"coordinates":[[[37,-2],[37.1,-2.1],[37.1,-2],[37,-2.1],[37,-2]]]}}]}'
)
POINTS_ONLY = (
    b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
    b'"geometry":{"type":"Point","coordinates":[37,-2]}}]}'
)


def zip_bomb() -> bytes:
    """A zip of a few hundred kilobytes whose Shapefile unpacks to 300 MB of zeros."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("reserve.shp", "w", force_zip64=True) as shp:
            block = bytes(1024 * 1024)
            for _ in range(300):
                shp.write(block)
        for part in ("reserve.shx", "reserve.dbf", "reserve.prj"):
            archive.writestr(part, b"")
    return out.getvalue()


@pytest.mark.parametrize(
    ("build", "filename", "says"),
    [
        (lambda tmp: b"{not json", "reserve.geojson", "not a readable GeoJSON"),
        (lambda tmp: rb.geojson_utm_bytes()[:200], "reserve.geojson", "Unterminated"),
        (lambda tmp: POINTS_ONLY, "gates.geojson", r"no polygon features \(it holds Point features"),
        (lambda tmp: BOWTIE, "bowtie.geojson", "Self-intersection"),
        (lambda tmp: b"", "reserve.geojson", "empty"),
        (lambda tmp: b"<kml/>", "reserve.kml", "unknown file type .kml"),
        (lambda tmp: rb.geopackage_bytes(tmp)[:4096], "reserve.gpkg", "reserve.gpkg"),
        (lambda tmp: rb.geopackage_bytes(tmp, crs=None), "reserve.gpkg", "no CRS"),
        (lambda tmp: rb.zipped_shapefile_bytes(tmp, with_shp=False), "reserve.zip", "no .shp"),
        (lambda tmp: rb.zipped_shapefile_bytes(tmp, with_prj=False), "reserve.zip", "has no .prj"),
        (lambda tmp: b"PK\x03\x04 cut short", "reserve.zip", "not a zip"),
        (lambda tmp: zip_bomb(), "reserve.zip", "unpacks to 300 MB, more than 200 MB"),
    ],
    ids=["not-json", "truncated-geojson", "points-only", "self-intersecting", "empty", "kml", "truncated-gpkg",
         "gpkg-without-crs", "zip-without-shp", "shapefile-without-prj", "broken-zip", "zip-bomb"],
)
@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_broken_geofence_file_is_refused_with_a_clear_reason_and_nothing_stored(sqlite_url, tmp_path, build, filename,
                                                                                says):
    with b.fresh_bridge(sqlite_url) as bridge:
        rb.park_and_farm(bridge)

        with pytest.raises(InvalidGeofenceFile, match=says) as refused:
            bridge.import_geofences(build(tmp_path), filename)

        assert "/tmp" not in str(refused.value)  # the reason names the user's file, not ours
        assert len(bridge.geofences()) == 2


def test_a_web_page_saved_as_json_or_a_file_of_gates_gets_a_sentence_a_ranger_can_act_on(bridge):
    with pytest.raises(InvalidGeofenceFile) as web_page:
        bridge.import_geofences(b"<html><body>404 Not Found</body></html>", "reserve.json")
    assert str(web_page.value).startswith("reserve.json: not a readable GeoJSON or GeoPackage")
    assert "driver" not in str(web_page.value), "GDAL's advice to programmers is not the ranger's"

    with pytest.raises(InvalidGeofenceFile) as gates:
        bridge.import_geofences(POINTS_ONLY, "gates.geojson")
    assert str(gates.value) == "gates.geojson: no polygon features (it holds Point features; fences must be areas)"
    assert bridge.geofences() == []


def test_ranger_sees_park_exit_at_the_interpolated_crossing_time(any_store_bridge):
    bridge = any_store_bridge
    rb.park_and_farm(bridge)
    # 08:00 inside at x=308 km, 09:00 outside at x=311 km (the fence is at x=310 km): 2/3 of the way.
    rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (60, 311_000, 9_702_000)])

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.source, alert.priority) == ("geofence_exit", "server", 200)
    crossed = alert.evidence["crossed_at"]
    assert abs((alert.time - (T + timedelta(minutes=40))).total_seconds()) < 30
    assert crossed == alert.time.isoformat()
    assert (alert.evidence["fence"], alert.evidence["direction"]) == ("Park", "exit")
    lat, lon = rb.lat_lon(310_000, 9_702_000)
    assert (alert.lat, alert.lon) == (pytest.approx(lat, abs=2e-5), pytest.approx(lon, abs=2e-5))


def test_loop_back_inside_closes_the_exit_alert_with_the_reason(any_store_bridge):
    bridge = any_store_bridge
    rb.park_and_farm(bridge)
    # Out 1 km past the line at 09:00 (raised), back inside at 10:00 and still inside at 11:00: the way
    # back is confirmed the way a crossing is (two fixes back, or one far past the line).
    rb.ingest_track(bridge, [(0, 309_000, 9_702_000), (60, 311_000, 9_702_000), (120, 309_500, 9_702_000)])
    assert [a.alert_type for a in bridge.open_alerts(viewer=b.RANGER)] == ["geofence_exit"]
    rb.ingest_track(bridge, [(180, 309_300, 9_702_000)], first_f_cnt=4)

    assert bridge.open_alerts(viewer=b.RANGER) == []
    (alert,) = bridge.alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.state, alert.verdict, alert.resolved_by) == ("geofence_exit", "resolved", None, "tembo")
    (closing,) = [e for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "auto_resolved"]
    assert closing.detail["reason"] == "back inside the fence"
    assert closing.detail["cleared_at"] == (T + timedelta(minutes=180)).isoformat(), "the time is said once, apart"
    # The ranger still gives the verdict.
    assert bridge.resolve_alert(alert.alert_id, Viewer("ranger.amani", "ranger"), "true").verdict == "true"
    assert bridge.alert_verdicts()["geofence_exit"]["precision"] == 1.0


def test_walking_into_the_fenced_hole_is_an_exit_from_the_park(bridge):
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 303_000, 9_705_000), (60, 305_000, 9_705_000)])

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert alert.alert_type == "geofence_exit"
    assert abs((alert.time - (T + timedelta(minutes=30))).total_seconds()) < 30


def test_walking_inside_the_park_past_the_hole_raises_nothing(bridge):
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 302_000, 9_703_000), (60, 308_000, 9_703_000), (120, 308_000, 9_707_000)])

    assert bridge.alerts(viewer=b.RANGER) == []


def test_crossing_park_and_farm_fence_in_one_segment_raises_exit_then_farmland(bridge):
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 309_000, 9_702_000), (60, 313_000, 9_702_000)])

    by_type = {a.alert_type: a for a in bridge.open_alerts(viewer=b.RANGER)}
    assert set(by_type) == {"geofence_exit", "geofence_farmland"}
    assert abs((by_type["geofence_exit"].time - (T + timedelta(minutes=15))).total_seconds()) < 30
    assert abs((by_type["geofence_farmland"].time - (T + timedelta(minutes=45))).total_seconds()) < 30


def test_gps_outlier_outside_the_fence_is_ignored(bridge):
    rb.park_and_farm(bridge)
    # 30 km east for one fix, back an hour later: 30 km/h would be needed (limit 20 km/h): an outlier.
    rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (60, 338_000, 9_702_000), (120, 308_100, 9_702_000)])

    assert bridge.alerts(viewer=b.RANGER) == []



def test_a_fence_crossed_by_a_translocated_animal_is_found_once_its_next_fix_agrees(bridge):
    rb.park_and_farm(bridge)
    # Trucked out of the park: 10 km in 20 min (too fast, set apart), then a fix that agrees with it.
    rb.ingest_track(bridge, [(0, 305_000, 9_702_000), (20, 315_000, 9_702_000), (30, 315_200, 9_702_000)])

    exits = [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "geofence_exit"]
    assert len(exits) == 1
    assert abs((exits[0].time - (T + timedelta(minutes=10))).total_seconds()) < 30


# Back-filled fixes: after a coverage gap the collar sends what it kept in flash, older than the fix the
# rules last judged. They are judged in time order between their neighbours.


def test_fix_back_filled_after_a_coverage_gap_shows_an_excursion_out_of_the_park_and_back(any_store_bridge):
    bridge = any_store_bridge
    rb.park_and_farm(bridge)
    # Live: inside at 08:00 and inside again at 14:00 (the gap hid what happened between).
    rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (360, 309_000, 9_702_000)])
    assert bridge.alerts(viewer=b.RANGER) == []
    # From the flash: at 11:00 the animal was 1 km outside the park (fence at x = 310 km).
    rb.ingest_track(bridge, [(180, 311_000, 9_702_000)], first_f_cnt=3)

    (alert,) = bridge.alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.source, alert.state) == ("geofence_exit", "server", "resolved")
    # Crossed between 08:00 (x = 308 km) and 11:00 (x = 311 km), 2/3 of the way: 10:00.
    assert abs((alert.time - (T + timedelta(minutes=120))).total_seconds()) < 30
    (closing,) = [e for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "auto_resolved"]
    assert closing.detail["reason"] == "back inside the fence"

    # The same flash page heard twice, and the timer: nothing is raised again.
    rb.ingest_track(bridge, [(180, 311_000, 9_702_000)], first_f_cnt=4)
    bridge.run_rules(now=T + timedelta(hours=7))
    assert [a.alert_id for a in bridge.alerts(viewer=b.RANGER)] == [alert.alert_id]


def test_back_filled_fixes_place_a_crossing_already_raised_without_raising_it_twice(any_store_bridge):
    bridge = any_store_bridge
    rb.park_and_farm(bridge)
    # Live: inside at 08:00 (x = 308 km), outside at 14:00 (x = 311 km): the exit is placed at 2/3, 12:00.
    rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (360, 311_000, 9_702_000)])
    (raised,) = bridge.open_alerts(viewer=b.RANGER)
    assert abs((raised.time - (T + timedelta(minutes=240))).total_seconds()) < 30
    # The flash, newest page first: outside at 11:00 (x = 310.5 km), then inside at 10:00 (x = 309.5 km).
    rb.ingest_track(bridge, [(180, 310_500, 9_702_000)], first_f_cnt=3)
    rb.ingest_track(bridge, [(120, 309_500, 9_702_000)], first_f_cnt=4)

    (alert,) = bridge.alerts(viewer=b.RANGER)
    assert (alert.alert_id, alert.state, alert.occurrences) == (raised.alert_id, "new", 1)
    # Now between the right pair, 10:00 and 11:00, half way: 10:30.
    assert abs((alert.time - (T + timedelta(minutes=150))).total_seconds()) < 30
    assert alert.evidence["crossed_at"] == alert.time.isoformat()
    refined = [e.detail for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "crossing_refined"]
    assert len(refined) == 2 and refined[-1]["to"] == alert.time.isoformat()
    lat, lon = rb.lat_lon(310_000, 9_702_000)
    assert (alert.lat, alert.lon) == (pytest.approx(lat, abs=2e-5), pytest.approx(lon, abs=2e-5))


def test_the_timer_finds_a_back_filled_fix_the_uplink_path_did_not_judge(bridge):
    from lora_bridge.domain import positions as positions_domain
    from lora_bridge.domain.rules_engine import devices_behind

    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (360, 309_000, 9_702_000)])
    with bridge.db.read() as session:
        assert devices_behind(session) == []
    lat, lon = rb.lat_lon(311_000, 9_702_000)
    with bridge.db.write() as session:  # stored by a worker that stopped before its rules ran
        positions_domain.add_position(session, device_id="collar-01", animal_id=None, time=T + timedelta(hours=3),
                                      lat=lat, lon=lon, message="positions", raw_uplink_id=None)
    with bridge.db.read() as session:
        assert devices_behind(session) == ["collar-01"]

    bridge.run_rules(now=T + timedelta(hours=7))

    assert [a.alert_type for a in bridge.alerts(viewer=b.RANGER)] == ["geofence_exit"]
    with bridge.db.read() as session:
        assert devices_behind(session) == []


def test_rules_run_once_per_collar_after_a_batch_judge_every_fix_of_the_batch(bridge, monkeypatch):
    from lora_bridge import ingest
    from lora_bridge.domain import rules_engine
    from lora_bridge.pipeline import process_raw

    bridge.register_animal("collar-02", "Lemayian")
    rb.park_and_farm(bridge)
    # A batch: two uplinks of each collar, stored and applied without rules (as a batching ingest does).
    bodies = [*rb.fix_uplinks("collar-01", T, [(0, 308_000, 9_702_000), (60, 311_000, 9_702_000)]),
              *rb.fix_uplinks("collar-02", T, [(0, 311_000, 9_703_000), (60, 313_000, 9_703_000)]),
              *rb.fix_uplinks("collar-03", T, [(0, 308_000, 9_703_000), (60, 312_500, 9_703_000)])]
    devices = [process_raw(bridge.db, ingest.store_raw(bridge.db, body, "tts"), bridge.codec, bridge.settings,
                           rules_file=bridge.rules_file).device_id
               for body in bodies]
    judge = rules_engine._battery

    def broken_for_collar_03(session, device, *args):
        if device.device_id == "collar-03":
            raise RuntimeError("a bug in one collar's rules")
        return judge(session, device, *args)

    monkeypatch.setattr(rules_engine, "_battery", broken_for_collar_03)
    changed = bridge.evaluate_rules_for(devices)

    by_collar = {(a.device_id, a.alert_type) for a in bridge.alerts(viewer=b.RANGER)}
    assert by_collar == {("collar-01", "geofence_exit"), ("collar-02", "geofence_farmland")}
    assert len(changed) == 2
    with bridge.db.read() as session:  # collar-03's rules are rolled back: the timer judges it again
        assert rules_engine.devices_behind(session) == ["collar-03"]


def test_fence_index_is_built_once_and_rebuilt_when_a_ranger_renames_a_fence(bridge):
    park, _ = rb.park_and_farm(bridge)
    bridge.register_animal("collar-02", "Lemayian")
    rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (60, 311_000, 9_702_000), (120, 311_500, 9_702_000)])
    assert bridge.rules_runtime.fence_builds == 1  # three evaluations, one build

    bridge.rename_geofence(park.geofence_id, "Maasai Mara")
    rb.ingest_track(bridge, [(0, 308_000, 9_704_000), (60, 311_000, 9_704_000)], device_id="collar-02")

    names = {a.device_id: a.evidence["fence"] for a in bridge.alerts(viewer=b.RANGER)}
    assert names == {"collar-01": "Park", "collar-02": "Maasai Mara"}
    assert bridge.rules_runtime.fence_builds == 2


# A crossing is believed once the fixes after it confirm it: a second fix past the line, or one fix at
# least 800 m past it (rules.fences). The park's east fence is at x = 310 km; fixes every 2 minutes
# (the collar tracks after a crossing of its own).


def _exits(bridge):
    return [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "geofence_exit"]


def test_one_bad_fix_past_the_park_fence_during_a_chase_raises_no_exit(bridge):
    rb.park_and_farm(bridge)
    # Running east inside the park, 300 m from the fence; one fix lands 150 m outside (a bad fix: 450 m
    # in 2 minutes is 13.5 km/h, plausible while running), the next is back inside.
    rb.ingest_track(bridge, [(0, 309_500, 9_702_000), (2, 309_700, 9_702_000), (4, 310_150, 9_702_000),
                          (6, 309_800, 9_702_100), (8, 309_750, 9_702_300)])

    assert bridge.alerts(viewer=b.RANGER) == []


def test_real_exit_is_raised_when_the_second_fix_outside_arrives_at_the_interpolated_time(bridge):
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 309_800, 9_702_000), (2, 310_100, 9_702_000)])
    assert bridge.alerts(viewer=b.RANGER) == []  # 100 m past the line: waiting for the next fix

    rb.ingest_track(bridge, [(4, 310_300, 9_702_000)], first_f_cnt=3)

    (alert,) = _exits(bridge)
    assert alert.state == "new"
    # Crossed 200 m along the 300 m from 309.8 to 310.1 km: 2/3 of 2 minutes after 08:00.
    assert abs((alert.time - (T + timedelta(seconds=80))).total_seconds()) < 2
    confirmation = alert.evidence["confirmation"]
    assert confirmation["decided"] == "2 fixes in a row past the line"
    # (the positions message carries about a metre of rounding)
    assert [f["metres_past_line"] for f in confirmation["fixes_past_line"]] == [pytest.approx(100, abs=2),
                                                                             pytest.approx(300, abs=2)]
    assert "confirmed" in alert.evidence["rule"]


def test_one_fix_far_past_the_line_is_raised_at_once(bridge):
    rb.park_and_farm(bridge)
    # An hour between fixes, the second 900 m past the fence: further than a bad fix goes.
    rb.ingest_track(bridge, [(0, 309_000, 9_702_000), (60, 310_900, 9_702_000)])

    (alert,) = _exits(bridge)
    assert alert.evidence["confirmation"]["decided"].startswith("a fix 900 m past the line")


def test_quick_exit_and_return_seen_by_one_fix_is_not_raised_but_seen_by_two_is_raised_and_closed(bridge):
    rb.park_and_farm(bridge)
    bridge.register_animal("collar-02", "Lemayian")
    # collar-01: one fix 200 m outside, then back: a step over the line cannot be told from a bad fix.
    rb.ingest_track(bridge, [(0, 309_700, 9_702_000), (2, 310_200, 9_702_000), (4, 309_800, 9_702_000),
                          (6, 309_600, 9_702_000)])
    # collar-02: two fixes outside, then two back: a real excursion, raised and closed by Tembo.
    rb.ingest_track(bridge, [(0, 309_700, 9_704_000), (2, 310_200, 9_704_000), (4, 310_300, 9_704_000),
                          (6, 309_800, 9_704_000), (8, 309_600, 9_704_000)], device_id="collar-02")

    (alert,) = _exits(bridge)
    assert (alert.device_id, alert.state, alert.resolved_by) == ("collar-02", "resolved", "tembo")
    (closing,) = [e for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "auto_resolved"]
    assert closing.detail["reason"] == "back inside the fence"


def test_one_fix_back_inside_does_not_close_an_exit_nor_raise_it_again(bridge):
    rb.park_and_farm(bridge)
    # Out (two fixes), one bad fix back inside, out again: one exit alert, still open.
    rb.ingest_track(bridge, [(0, 309_700, 9_702_000), (2, 310_200, 9_702_000), (4, 310_400, 9_702_000),
                          (6, 309_900, 9_702_000), (8, 310_600, 9_702_000), (10, 310_700, 9_702_000)])

    (alert,) = _exits(bridge)
    assert alert.state == "new" and alert.occurrences == 1


def test_a_lone_fix_inside_the_farmland_raises_no_farmland_alert(bridge):
    rb.park_and_farm(bridge)
    # Out of the park (1.7 km past its fence: raised at once), then near the farm (fence at x = 312 km):
    # one fix 100 m into the field, then out again.
    rb.ingest_track(bridge, [(0, 309_500, 9_702_000), (30, 311_700, 9_702_000), (32, 312_100, 9_702_000),
                          (34, 311_800, 9_702_000), (36, 311_700, 9_702_000)])

    assert [a.alert_type for a in bridge.alerts(viewer=b.RANGER)] == ["geofence_exit"]  # it did leave the park


def test_a_segment_through_the_fenced_plot_with_both_fixes_in_the_park_raises_nothing(bridge):
    rb.park_and_farm(bridge)
    # 08:00 west of the plot (x = 304-306 km), 09:00 east of it: the straight line crosses the plot, out
    # of the park and back, but no fix was ever outside.
    rb.ingest_track(bridge, [(0, 303_000, 9_705_000), (60, 307_000, 9_705_000), (120, 307_500, 9_705_000)])

    assert bridge.alerts(viewer=b.RANGER) == []


def test_collar_exit_alert_from_one_bad_fix_is_held_once_the_next_fix_is_back_inside(bridge):
    rb.park_and_farm(bridge)
    bridge.register_animal("collar-02", "Lemayian")
    rb.ingest_track(bridge, [(0, 309_500, 9_702_000), (2, 309_700, 9_702_000)])
    # The collar's own rule raises an exit from its fix 150 m outside (past its 50 m margin) ...
    rb.collar_fence_alert(bridge, "geofence_exit", 4, 310_150, 9_702_000, f_cnt=3)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.source, alert.priority) == ("collar", 200) and "track_check" not in alert.evidence
    # ... and its next fix is back inside: one fix past the line, then back.
    rb.ingest_track(bridge, [(6, 309_800, 9_702_000)], first_f_cnt=4)

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.priority) == ("geofence_exit", 0)  # in the list, nobody woken
    check = alert.evidence["track_check"]
    assert (check["verdict"], check["held"], check["fence"]) == ("lone_fix", True, "Park")
    assert check["fixes_past_line"][0]["metres_past_line"] == pytest.approx(150, abs=2)

    # Another collar's exit with a second fix outside after it is confirmed and keeps its priority.
    rb.ingest_track(bridge, [(0, 309_500, 9_704_000), (2, 309_700, 9_704_000)], device_id="collar-02")
    rb.collar_fence_alert(bridge, "geofence_exit", 4, 310_150, 9_704_000, f_cnt=3, device_id="collar-02")
    for body in rb.fix_uplinks("collar-02", T + timedelta(minutes=6), [(0, 310_300, 9_704_000)], 4):
        bridge.ingest_tts_uplink(body)
    (other,) = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.device_id == "collar-02"]
    assert (other.alert_type, other.priority, other.evidence["track_check"]["verdict"]) == ("geofence_exit", 200, "confirmed")


# One visit, one alert (rules_visits): the collar's own fence alert and the bridge's crossing rule report
# the same visit; once the ranger resolved its alert, later reports of that visit wake nobody again.

def _farmland(bridge):
    return [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]


def _farm_raid(bridge, collar_reports: bool) -> object:
    """Out of the park (1 km past its fence) at 08:00, into the farm at 08:32 (a fix 200 m in) and 08:34;
    with collar_reports the collar raises its own farmland alert at 08:32 (the bridge's own crossing rule
    waits for the second fix). The ranger resolves the one alert of the visit (elephant chased out)."""
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 311_000, 9_702_000), (30, 311_700, 9_702_000), (32, 312_200, 9_702_000)])
    if collar_reports:
        _collar_report(bridge, 32, 312_200, seq=1, f_cnt=10)
    rb.ingest_track(bridge, [(34, 312_400, 9_702_000)], first_f_cnt=11)
    (alert,) = _farmland(bridge)
    assert (alert.source, alert.state) == ("collar" if collar_reports else "server", "new")
    bridge.resolve_alert(alert.alert_id, b.RANGER, "true", note="elephant in the maize, chased out")
    return alert


def _into_the_farm(bridge):
    """The raid seen by the bridge's crossing rule alone."""
    return _farm_raid(bridge, collar_reports=False)


def test_collar_farmland_alert_after_the_ranger_resolved_the_bridges_alert_of_that_visit_is_no_second_alert(bridge):
    first = _into_the_farm(bridge)
    # The collar's own alert of the same visit arrives after the ranger's round.
    rb.collar_fence_alert(bridge, "geofence_farmland", 40, 312_500, 9_702_000, f_cnt=10)

    (alert,) = _farmland(bridge)
    assert (alert.alert_id, alert.state, alert.occurrences) == (first.alert_id, "resolved", 2)
    (repeat,) = [e for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "repeated"]
    assert (repeat.detail["source"], repeat.detail["same_visit"], repeat.detail["while"]) == ("collar", True, "resolved")
    assert not [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]


def test_a_step_out_of_the_field_and_back_is_the_same_visit_but_ten_minutes_out_is_a_new_one(bridge):
    first = _into_the_farm(bridge)
    # 08:36 and 08:38 back outside the field (confirmed), 08:40 in again: four minutes out, one visit.
    rb.ingest_track(bridge, [(36, 311_800, 9_702_000), (38, 311_700, 9_702_000), (40, 312_200, 9_702_000),
                          (42, 312_300, 9_702_000)], first_f_cnt=12)
    (alert,) = _farmland(bridge)
    assert (alert.alert_id, alert.state, alert.occurrences) == (first.alert_id, "resolved", 2)
    # 08:44 out again until 09:02: eighteen minutes beside the field, then back in: a new visit.
    rb.ingest_track(bridge, [(44, 311_800, 9_702_000), (46, 311_700, 9_702_000), (60, 311_600, 9_702_000),
                          (62, 312_200, 9_702_000), (64, 312_300, 9_702_000)], first_f_cnt=16)
    old, new = sorted(_farmland(bridge), key=lambda a: a.alert_id)
    assert old.alert_id == first.alert_id and (new.state, new.source) == ("new", "server")
    assert abs((new.time - (T + timedelta(minutes=61))).total_seconds()) < 60


# The collar's own farmland alerts through one visit and after it: the collar enters a field on one fix
# past its margin and leaves it on two, so it re-raises farmland whenever two fixes fall outside; the
# bridge folds each report into the visit's alert (farm fence at x = 312 km, fixes 2 minutes apart).

def _collar_report(bridge, minutes, x, seq, f_cnt):
    rb.collar_fence_alert(bridge, "geofence_farmland", minutes, x, 9_702_000, f_cnt, seq=seq)


def _collar_raid(bridge):
    """The raid with the collar's own alert at 08:32."""
    return _farm_raid(bridge, collar_reports=True)


def test_ranger_gets_one_farmland_alert_when_collar_steps_out_twice_in_one_visit(bridge):
    first = _collar_raid(bridge)
    # Out at 08:36 and 08:38 (the collar leaves the field), in at 08:40: the collar raises farmland again.
    rb.ingest_track(bridge, [(36, 311_800, 9_702_000), (38, 311_700, 9_702_000), (40, 312_200, 9_702_000)],
                 first_f_cnt=20)
    _collar_report(bridge, 40, 312_200, seq=2, f_cnt=23)
    # Out at 08:44 and 08:46, in at 08:48: and a third time.
    rb.ingest_track(bridge, [(42, 312_300, 9_702_000), (44, 311_850, 9_702_000), (46, 311_750, 9_702_000),
                          (48, 312_150, 9_702_000), (50, 312_300, 9_702_000)], first_f_cnt=30)
    _collar_report(bridge, 48, 312_150, seq=3, f_cnt=35)

    (alert,) = _farmland(bridge)  # one visit, one alert: each step out was 4 minutes, under rejoin_min (10)
    assert (alert.alert_id, alert.state) == (first.alert_id, "resolved")
    repeats = [e.detail for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "repeated"]
    from_collar = [d for d in repeats if d.get("source") == "collar"]
    assert [d["same_visit"] for d in from_collar] == [True, True]
    assert [o.get("seq") for o in alert.evidence["occurrences"] if o.get("source") == "collar"] == [2, 3]
    # each report still got its ack, so the collar stops repeating it
    acks = [e.detail["seq"] for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "ack_queued"]
    assert acks == [1, 2, 3]
    assert not [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]


def test_collar_farmland_alert_from_one_bad_fix_deep_in_the_field_after_the_visit_wakes_nobody(bridge):
    first = _collar_raid(bridge)
    # Out of the field from 08:36 to 09:00 (24 minutes: the visit is over), then one fix 400 m inside at
    # 09:02 (a bad fix: the collar raises farmland on it) and the next back out beside the field at 09:04.
    rb.ingest_track(bridge, [(36, 311_800, 9_702_000), (38, 311_700, 9_702_000), (50, 311_650, 9_702_000),
                          (60, 311_700, 9_702_000), (62, 312_400, 9_702_000)], first_f_cnt=20)
    _collar_report(bridge, 62, 312_400, seq=2, f_cnt=25)
    assert not [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]
    rb.ingest_track(bridge, [(64, 311_700, 9_702_000), (66, 311_650, 9_702_000)], first_f_cnt=26)

    (alert,) = _farmland(bridge)  # no second alert: the track never confirmed a new visit
    assert (alert.alert_id, alert.state) == (first.alert_id, "resolved")
    (report,) = [e.detail for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER)
                 if e.action == "repeated" and e.detail.get("source") == "collar"]
    assert report["same_visit"] is False and "reentry" in report
    kept = [o for o in alert.evidence["occurrences"] if o.get("seq") == 2]
    assert len(kept) == 1 and kept[0]["reentry"] and kept[0]["lat"] == pytest.approx(rb.lat_lon(312_400, 9_702_000)[0], abs=1e-4)


def test_collar_farmland_alert_of_a_true_return_to_the_field_is_raised_once_the_next_fix_confirms_it(bridge):
    first = _collar_raid(bridge)
    rb.ingest_track(bridge, [(36, 311_800, 9_702_000), (38, 311_700, 9_702_000), (50, 311_650, 9_702_000),
                          (60, 311_700, 9_702_000), (62, 312_200, 9_702_000)], first_f_cnt=20)
    _collar_report(bridge, 62, 312_200, seq=2, f_cnt=25)
    assert not [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]
    # 09:04 still in the field: the bridge's crossing rule confirms the return (one fix later) and raises it.
    rb.ingest_track(bridge, [(64, 312_350, 9_702_000)], first_f_cnt=26)
    (new,) = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]
    assert new.alert_id != first.alert_id and new.source == "server"
    # crossed x = 312 km 300 m after 311.7 km on the way to 312.2 km: 60 + 2 * 300 / 500 = 61.2 minutes
    assert abs((new.time - (T + timedelta(minutes=61.2))).total_seconds()) < 2
    # The collar repeats its alert until the ack reaches it: an occurrence of the new alert, no third one.
    _collar_report(bridge, 62, 312_200, seq=2, f_cnt=27)
    assert len(_farmland(bridge)) == 2
    assert bridge.alert(new.alert_id, viewer=b.RANGER).occurrences == 2


@pytest.mark.parametrize("lon, lat", [
    (37, -2), (36, -2), (36, 0), (0, 0), (6, 60), (10, 78), (-180, 10), (180, 10), (0, 84), (0, -80), (-6, 50),
    (12, -3), (179, -79), (-174, 83),
])
def test_the_utm_zone_the_rules_measure_a_reserve_in_is_the_one_projs_database_lists(lon, lat):
    """Reserves on a zone's or the equator's bound included: computed, it is the zone PROJ's own
    database names first for that point, so fixes are measured in the same metres as before."""
    from lora_bridge.domain.geofences import _utm_code_of_cell, utm_code_from_database

    assert _utm_code_of_cell(lon, lat) == utm_code_from_database(lon, lat)


def test_a_point_past_the_utm_zones_still_has_no_zone():
    from lora_bridge.domain.geofences import _utm_code_of_cell

    with pytest.raises(IndexError):
        _utm_code_of_cell(0, 86)


def test_a_boundary_walked_with_a_gps_keeps_no_heights_and_goes_to_the_collars(any_store_bridge):
    from lora_bridge.domain.collar_fences import fence_commands

    walked = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "Shamba", "kind": "farmland"},
        "geometry": {"type": "Polygon", "coordinates": [[
            [37.50, -2.50, 1204.5], [37.56, -2.50, 1198.0], [37.56, -2.44, 1210.2], [37.50, -2.44, 1201.7],
            [37.50, -2.50, 1204.5]]]}}]}
    (fence,) = any_store_bridge.import_geofences(json.dumps(walked).encode(), "shamba.geojson")
    assert fence.geometry["coordinates"][0][:2] == ((37.50, -2.50), (37.56, -2.50))
    (stored,) = any_store_bridge.geofences()
    assert all(len(corner) == 2 for corner in stored.geometry["coordinates"][0])
    corners = [(-2.50, 37.50), (-2.50, 37.56), (-2.44, 37.56), (-2.44, 37.50)]
    assert [(p["lat"], p["lon"]) for p in fence_commands([stored])[0]["points"]] == corners
    imported_before = dataclasses.replace(stored, geometry=walked["features"][0]["geometry"])  # heights kept then
    assert [(p["lat"], p["lon"]) for p in fence_commands([imported_before])[0]["points"]] == corners


def _fence_alerts_of_track_batches(sqlite_url: str, batches: list[list[bytes]]) -> set[tuple[str, str, str]]:
    with b.fresh_bridge(sqlite_url) as bridge:
        rb.park_and_farm(bridge)
        for bodies in batches:
            bridge.ingest_batch([bridge.submission("tts", None, body) for body in bodies])
        return {(a.device_id, a.alert_type, a.evidence["crossed_at"]) for a in bridge.alerts(viewer=b.RANGER)}


def test_collars_judged_in_one_batch_get_the_fence_alerts_each_gets_alone_a_long_silent_one_too(tmp_path):
    # Three collars with a first fix each (their cursors); collar-03's is four days older, so the batch's
    # one read of its collars' tracks cannot cover it at the others' cost. The next batch takes all
    # three out of the park; each must be judged on its own track as if it were alone.
    first = [*rb.fix_uplinks("collar-01", T, [(0, 308_000, 9_702_000)]),
             *rb.fix_uplinks("collar-02", T, [(0, 309_000, 9_703_000)]),
             *rb.fix_uplinks("collar-03", T - timedelta(days=4), [(0, 309_500, 9_704_000)])]
    then = [*rb.fix_uplinks("collar-01", T, [(60, 311_000, 9_702_000), (120, 311_500, 9_702_000)], first_f_cnt=2),
            *rb.fix_uplinks("collar-02", T, [(60, 309_500, 9_703_000), (120, 311_000, 9_703_000)], first_f_cnt=2),
            *rb.fix_uplinks("collar-03", T, [(60, 311_000, 9_704_000), (120, 311_200, 9_704_000)], first_f_cnt=2)]
    together = _fence_alerts_of_track_batches(f"sqlite:///{tmp_path / 'together.db'}", [first, then])
    alone = _fence_alerts_of_track_batches(f"sqlite:///{tmp_path / 'alone.db'}",
                                           [[body] for body in first] + [[body] for body in then])

    assert {(device_id, alert_type) for device_id, alert_type, _ in together} == {
        ("collar-01", "geofence_exit"), ("collar-02", "geofence_exit"), ("collar-03", "geofence_exit")}
    assert together == alone
