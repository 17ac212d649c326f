"""Location privacy in the service layer: what each role sees of animals, positions, tracks, alerts
and activity, and the audit log of every read of positions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import bridge_builders as b
import pytest
from access_builders import CONSOLE, NOW, coordinates, exact_places, fix_time, live_bridge, viewer
from pyproj import Geod

from lora_bridge.access import ROLES, Viewer, privacy
from lora_bridge.access.privacy import coarsen, until, without_places
from lora_bridge.errors import Forbidden, UnknownAlert
from lora_bridge.store.utc import utc_now
from lora_bridge.views import AlertView

GEOD = Geod(ellps="WGS84")


@pytest.fixture
def bridge(sqlite_url):
    with live_bridge(sqlite_url) as bridge:
        yield bridge


def everything_seen(bridge, who: Viewer) -> list:
    """What `who` gets from every service method that returns animals, positions, tracks or alerts."""
    seen: list = [
        bridge.animals(viewer=who),
        bridge.latest_positions(viewer=who),
        bridge.tracks(viewer=who),
        bridge.tracks(since=NOW - timedelta(hours=3), viewer=who),
        bridge.alerts(viewer=who),
        bridge.open_alerts(viewer=who),
    ]
    for alert in bridge.alerts(viewer=who):
        seen.append(bridge.alert(alert.alert_id, viewer=who))
        seen.append(bridge.alert_events(alert.alert_id, viewer=who))
    return seen


def test_visitor_never_receives_an_exact_live_position_from_the_service(bridge):
    visitor = Viewer("kiosk", "visitor")
    exact = exact_places(bridge)
    seen = everything_seen(bridge, visitor)

    places = {(round(lat, 5), round(lon, 5)) for lat, lon in coordinates(seen)}
    assert places, "the visitor sees the herd, coarsely"
    assert not places & exact
    tracks = bridge.tracks(viewer=visitor)
    newest = {animal_id: max(p.time for p in fixes) for animal_id, fixes in tracks.items()}
    ids = {a.name: a.animal_id for a in bridge.animals(viewer=visitor)}
    assert newest[ids["Amani"]] <= NOW - timedelta(hours=24)
    assert ids["Tusker"] not in newest, "a high-value animal only 72 h late: older than these 48 h of fixes"
    activity = bridge.activity(ids["Amani"], viewer=visitor)
    assert activity and max(a.time + timedelta(minutes=a.interval_min) for a in activity) <= NOW - timedelta(hours=24)


def test_ranger_sees_exact_live_positions(bridge):
    ranger = viewer("amina")
    (amani, tusker) = sorted(bridge.latest_positions(viewer=ranger), key=lambda p: p.name)
    assert amani.time == fix_time(47)
    assert (amani.lat, amani.lon) == pytest.approx((-2.5 + 0.0013 * 47, 37.5 + 0.0017 * 47), abs=1e-5)
    assert {a.alert_type for a in bridge.open_alerts(viewer=ranger)} == {"mortality", "geofence_farmland"}


def test_researcher_sees_ordinary_animals_6_h_late_on_1_km_and_high_value_ones_24_h_late_on_5_km(bridge):
    researcher = viewer("rose")
    latest = {p.name: p for p in bridge.latest_positions(viewer=researcher)}
    amani, tusker = latest["Amani"], latest["Tusker"]

    assert amani.time == max(fix_time(h) for h in range(48) if fix_time(h) <= NOW - timedelta(hours=6))
    hour = next(h for h in range(48) if fix_time(h) == amani.time)
    assert (amani.lat, amani.lon) == coarsen(-2.5 + 0.0013 * hour, 37.5 + 0.0017 * hour, 1_000)
    assert tusker.time <= NOW - timedelta(hours=24)
    hour = next(h for h in range(48) if fix_time(h) == tusker.time)
    assert (tusker.lat, tusker.lon) == coarsen(-2.3 + 0.0013 * hour, 37.7 + 0.0017 * hour, 5_000)


def test_a_track_seen_coarsely_has_one_fix_per_run_of_fixes_in_a_cell(bridge):
    researcher = viewer("rose")
    ids = {a.name: a.animal_id for a in bridge.animals(viewer=researcher)}
    track = bridge.tracks(animal_ids=[ids["Amani"]], viewer=researcher)[ids["Amani"]]
    cells = [(p.lat, p.lon) for p in track]
    assert all(a != b for a, b in zip(cells, cells[1:], strict=False)), "no two neighbours in one cell"
    assert 1 < len(track) < 42


def test_alerts_for_roles_without_exact_positions_are_delayed_and_coarsened(bridge):
    ranger, visitor = viewer("amina"), Viewer("kiosk", "visitor")
    by_type = {a.alert_type: a for a in bridge.alerts(viewer=ranger)}
    mortality, fence = by_type["mortality"], by_type["geofence_farmland"]

    seen = bridge.alerts(viewer=visitor)
    assert [a.alert_type for a in seen] == ["geofence_farmland"], "the 30-minute-old mortality is held back"
    (shown,) = seen
    assert (shown.lat, shown.lon) == coarsen(fence.lat, fence.lon, 5_000)
    assert list(coordinates(shown.evidence)) == []
    with pytest.raises(UnknownAlert):
        bridge.alert(mortality.alert_id, viewer=visitor)
    with pytest.raises(UnknownAlert):
        bridge.alert_events(mortality.alert_id, viewer=visitor)
    tusker = next(a for a in bridge.animals(viewer=visitor) if a.name == "Tusker")
    assert tusker.open_alerts == 0, "an alert a visitor may not see yet is not counted either"


def test_evidence_loses_every_place_and_keeps_the_rest():
    evidence = {
        "positions": [{"time": "t", "lat": -2.5, "lon": 37.5}],
        "behaviour": {"rest": 80.0},
        "speed_mps": 4.2,
        "geometry": {"type": "Point", "coordinates": [37.5, -2.5]},
        "nearby": [{"lat": -2.4, "lon": 37.4, "name": "Kito"}],
    }
    assert without_places(evidence) == {"behaviour": {"rest": 80.0}, "speed_mps": 4.2, "nearby": [{"name": "Kito"}]}


def test_coarse_positions_snap_to_the_centre_of_an_equal_area_cell():
    lat, lon = coarsen(-1.90012, 37.20034, 1_000)
    _, _, distance_m = GEOD.inv(37.20034, -1.90012, lon, lat)
    assert 0 < distance_m <= 1_000 * 2**0.5 / 2
    assert coarsen(-1.90012 + 1e-5, 37.20034 + 1e-5, 1_000) == (lat, lon), "a close fix lands on the same centre"
    assert coarsen(-1.90012, 37.20034, 5_000) != (lat, lon)
    # At 60 degrees north a cell still covers a square kilometre: narrow east-west, tall north-south.
    north = coarsen(60.0001, 10.0001, 1_000)
    assert north != (60.0001, 10.0001)


def test_every_read_of_positions_is_in_the_audit_log_with_who_and_how_precise(bridge):
    ranger, visitor, admin = viewer("amina"), Viewer("kiosk", "visitor"), viewer("ada")
    bridge.latest_positions(viewer=ranger)
    bridge.tracks(viewer=visitor)
    bridge.animals(viewer=visitor)
    bridge.alerts(viewer=ranger)

    log = bridge.audit_log(viewer=admin)
    reads = [(e.username, e.action, e.precision, e.animals) for e in log if e.precision is not None]
    assert reads[:4] == [
        ("amina", "alerts", "exact", 2),
        ("kiosk", "animals", "coarse", 1),  # Tusker, high-value, has no fix old enough for a visitor
        ("kiosk", "tracks", "coarse", 1),
        ("amina", "latest_positions", "exact", 2),
    ]
    assert all(e.at == NOW for e in log[:4])
    with pytest.raises(Forbidden):
        bridge.audit_log(viewer=ranger)


def test_visitor_may_not_act_and_a_ranger_acts_in_their_own_name(bridge):
    ranger, visitor = viewer("amina"), Viewer("kiosk", "visitor")
    mortality = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "mortality")
    with pytest.raises(Forbidden):
        bridge.acknowledge_alert(mortality.alert_id, visitor)
    with pytest.raises(Forbidden):
        bridge.resolve_alert(mortality.alert_id, viewer("rose"), "true")
    with pytest.raises(TypeError):
        bridge.acknowledge_alert(mortality.alert_id, "amina")  # a name is not a signed-in viewer

    done = bridge.resolve_alert(mortality.alert_id, ranger, "true", note="carcass found")
    assert (done.state, done.resolved_by) == ("resolved", "amina")


def test_a_ranger_flags_an_animal_high_value_and_a_researcher_may_not(bridge):
    ranger, researcher = viewer("amina"), viewer("rose")
    amani = next(a for a in bridge.animals(viewer=ranger) if a.name == "Amani")
    before = next(p for p in bridge.latest_positions(viewer=researcher) if p.name == "Amani")
    with pytest.raises(Forbidden):
        bridge.set_high_value(amani.animal_id, True, viewer=researcher)

    bridge.set_high_value(amani.animal_id, True, viewer=ranger)

    after = next(p for p in bridge.latest_positions(viewer=researcher) if p.name == "Amani")
    assert after.time <= NOW - timedelta(hours=24) < before.time
    assert any(e.action == "animal_flagged" for e in bridge.audit_log(viewer=viewer("ada")))


def test_only_rangers_and_admins_see_exact_positions_and_a_viewer_needs_a_known_role():
    assert sorted(name for name, role in ROLES.items() if role.exact_positions) == ["admin", "ranger"]
    assert set(ROLES) == {"ranger", "researcher", "field_technician", "admin", "visitor"}
    for role in ROLES.values():
        assert role.high_value.grid_m >= role.animals.grid_m and role.high_value.delay >= role.animals.delay
    with pytest.raises(ValueError):
        Viewer("mallory", "poacher")
    with pytest.raises(ValueError):
        Viewer("", "ranger")


def report_now(bridge, device_id: str, dev_eui: str, f_cnt: int, message) -> None:
    """One more uplink from a collar of the herd, heard at NOW."""
    assert bridge.ingest_tts_uplink(b.tts_uplink(message, device_id=device_id, f_cnt=f_cnt, received_at=NOW,
                                                 dev_eui=dev_eui)).ok


def test_an_alert_repeated_just_now_does_not_tell_a_late_role_where_the_animal_is_now(bridge):
    ranger, visitor, researcher = viewer("amina"), Viewer("kiosk", "visitor"), viewer("rose")
    fence = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "geofence_farmland")
    # Amani, whose farmland alert was raised 30 h ago and is still open, is in farmland again, far away.
    now_lat, now_lon = -2.2, 37.9
    report_now(bridge, "collar-01", "70B3D57ED0000001", 90, b.alert(
        "geofence_farmland", seq=2, time_s=int((NOW - timedelta(minutes=5)).timestamp()), lat=now_lat, lon=now_lon))
    repeated = bridge.alert(fence.alert_id, viewer=ranger)
    assert repeated.occurrences == 2 and (repeated.lat, repeated.lon) == pytest.approx((now_lat, now_lon), abs=1e-5)

    for who, grid_m in ((visitor, 5_000), (researcher, 1_000)):
        for shown in (bridge.alert(fence.alert_id, viewer=who),
                      next(a for a in bridge.alerts(viewer=who) if a.alert_id == fence.alert_id)):
            assert (shown.lat, shown.lon) != coarsen(now_lat, now_lon, grid_m), f"{who.role} sees where Amani is now"
            assert shown.last_time == shown.time <= NOW - timedelta(hours=6)
            assert shown.occurrences == 1
            assert "11:55" not in str(shown.evidence), "the repeat's time is not in the evidence either"
        history = bridge.alert_events(fence.alert_id, viewer=who)
        assert [e.action for e in history if e.action in ("raised", "repeated")] == ["raised"]
    assert [e.action for e in bridge.alert_events(fence.alert_id, viewer=ranger)].count("repeated") == 1


def test_alert_evidence_for_a_late_role_names_no_gateway_and_no_behaviour_newer_than_it_may_see(bridge):
    ranger, visitor = viewer("amina"), Viewer("kiosk", "visitor")
    fence = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "geofence_farmland")
    assert fence.evidence["gateways"] and fence.evidence["behaviour"]["time"] > (NOW - timedelta(hours=24)).isoformat()

    shown = bridge.alert(fence.alert_id, viewer=visitor)
    assert "gateways" not in shown.evidence, "the gateway that heard the collar places it within its range"
    assert "behaviour" not in shown.evidence, "the collar's behaviour 1 h ago, given to a role 24 h late"
    assert shown.evidence["rule"] == fence.evidence["rule"]


def test_a_late_role_sees_the_behaviour_of_the_newest_interval_it_may_see_not_the_collars_live_one(bridge):
    ranger, visitor, researcher = viewer("amina"), Viewer("kiosk", "visitor"), viewer("rose")
    # Amani breaks into a run: the collar's status says so now, and the last hour's summary too.
    report_now(bridge, "collar-01", "70B3D57ED0000001", 91, b.status(
        time_s=int((NOW - timedelta(minutes=2)).timestamp()), lat=-2.44, lon=37.58, behaviour="run"))
    report_now(bridge, "collar-01", "70B3D57ED0000001", 92, b.activity(
        time_s=int((NOW - timedelta(hours=1)).timestamp()), shares_pct=(0.0, 5.0, 5.0, 90.0)))

    def behaviour(who: Viewer) -> dict[str, str | None]:
        return {a.name: a.behaviour for a in bridge.animals(viewer=who)}

    assert behaviour(ranger)["Amani"] == "run"
    assert behaviour(visitor) == {"Amani": "rest", "Tusker": None}, "Tusker's summaries are all under 72 h old"
    assert behaviour(researcher)["Amani"] == "rest"
    newest_seen = bridge.activity(next(a.animal_id for a in bridge.animals(viewer=visitor) if a.name == "Amani"),
                                  viewer=visitor)[-1]
    assert newest_seen.dominant == "rest"


def test_evidence_for_a_late_role_keeps_only_what_was_reported_by_its_cutoff():
    seen_until = NOW - timedelta(hours=24)
    evidence = {
        "rule": "collar",
        "behaviour": {"time": (NOW - timedelta(hours=1)).isoformat(), "dominant": "run"},
        "occurrences": [{"time": (NOW - timedelta(hours=30)).isoformat(), "seq": 1},
                        {"time": (NOW - timedelta(minutes=5)).isoformat(), "seq": 2}],
        "back_at": {"time": "not a time", "seq": 3},
    }
    assert until(evidence, seen_until) == {
        "rule": "collar",
        "occurrences": [{"time": (NOW - timedelta(hours=30)).isoformat(), "seq": 1}],
        "back_at": {"time": "not a time", "seq": 3},
    }


def test_moving_as_of_back_shows_a_repeated_alert_where_it_stood_then_and_never_where_the_animal_is_now(bridge):
    ranger, researcher = viewer("amina"), viewer("rose")
    fence = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "geofence_farmland")
    raised_at = (fence.lat, fence.lon)
    now_lat, now_lon = -2.2, 37.9
    report_now(bridge, "collar-01", "70B3D57ED0000001", 90, b.alert(
        "geofence_farmland", seq=2, time_s=int((NOW - timedelta(minutes=5)).timestamp()), lat=now_lat, lon=now_lon))
    yesterday = NOW - timedelta(hours=24)

    (then,) = [a for a in bridge.alerts_at(yesterday, viewer=ranger) if a.alert_id == fence.alert_id]
    assert (then.lat, then.lon) == raised_at, "the ranger's 'as of' shows the alert where it was then"
    assert (then.last_time, then.occurrences) == (fence.time, 1)
    (seen,) = [a for a in bridge.alerts_at(yesterday, viewer=researcher) if a.alert_id == fence.alert_id]
    assert (seen.lat, seen.lon) == coarsen(*raised_at, 1_000)
    assert (seen.lat, seen.lon) != coarsen(now_lat, now_lon, 1_000), "nor the researcher's where Amani is now"


def test_a_late_role_reads_how_long_an_animal_was_still_by_its_cutoff_not_that_it_is_still_now():
    # An immobility alert raised 30 h ago whose evidence kept growing with every still fix since.
    raised = NOW - timedelta(hours=30)
    immobile = AlertView(
        alert_id=7, animal_id="2", name="Tusker", device_id="collar-02", alert_type="immobility", priority=300,
        state="new", time=raised, lat=-2.3, lon=37.7, source="server", last_time=raised,
        evidence={"rule": "immobility", "still_since": (raised - timedelta(hours=12)).isoformat(), "still_h": 42.0,
                  "cluster_fixes": 42, "total_fixes": 44, "share_within_radius": 0.95,
                  "centre": {"lat": -2.3, "lon": 37.7}},
    )
    visitor = Viewer("kiosk", "visitor")  # Tusker is ordinary here: 24 h late
    (seen,) = privacy.alerts(visitor, [immobile], {"2": False}, NOW)
    assert seen.evidence["still_h"] == 18.0, "still for 18 h by the visitor's cutoff, not 42 h up to now"
    assert not {"cluster_fixes", "total_fixes", "share_within_radius"} & set(seen.evidence)
    assert seen.evidence["rule"] == "immobility" and seen.evidence["centre"] == {}
    (ranger_sees,) = privacy.alerts(viewer("amina"), [immobile], {"2": False}, NOW)
    assert ranger_sees.evidence["still_h"] == 42.0


def test_a_late_role_reads_an_alerts_history_and_state_as_they_stood_at_its_cutoff_not_the_steps_taken_since(
    sqlite_url,
):
    now = datetime.now(UTC).replace(microsecond=0)  # the bridge's clock is the wall clock its steps are taken by
    with live_bridge(sqlite_url, now=now) as bridge:
        ranger, visitor, researcher = viewer("amina"), Viewer("kiosk", "visitor"), viewer("rose")
        fence = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "geofence_farmland")
        bridge.run_rules(now)  # raised 30 h ago and never acknowledged: Tembo escalates it now
        assert bridge.alert(fence.alert_id, viewer=ranger).priority > fence.priority
        bridge.assign_alert(fence.alert_id, "juma", ranger)
        bridge.acknowledge_alert(fence.alert_id, ranger)
        bridge.resolve_alert(fence.alert_id, ranger, "true", "snare at the north waterhole")
        steps = [e.action for e in bridge.alert_events(fence.alert_id, viewer=ranger)]
        assert {"raised", "escalated", "assigned", "acknowledged", "resolved"} <= set(steps)

        for who in (visitor, researcher):  # 24 h and 6 h late: Amani's alert, raised 30 h ago, was open then
            history = bridge.alert_events(fence.alert_id, viewer=who)
            assert [e.action for e in history] == ["raised"], f"{who.role} reads the steps taken since its cutoff"
            shown = bridge.alert(fence.alert_id, viewer=who)
            assert (shown.state, shown.verdict, shown.note, shown.resolved_at, shown.acknowledged_by) == (
                "new", None, None, None, None
            )
            assert (shown.priority, shown.assigned_to) == (fence.priority, None), "escalated and handed to Juma since"
            assert fence.alert_id in [a.alert_id for a in bridge.open_alerts(viewer=who)]
            assert next(a for a in bridge.animals(viewer=who) if a.name == "Amani").open_alerts == 1
            # The "as of" slider at a moment past the cutoff (its last step, 'now' rounded up): the alert
            # stands as it did at the cutoff, not resolved by then.
            moment = now + timedelta(minutes=5)
            (then,) = [a for a in bridge.alerts_at(moment, viewer=who) if a.alert_id == fence.alert_id]
            assert (then.state, then.verdict) == ("new", None)
        assert fence.alert_id not in [a.alert_id for a in bridge.open_alerts(viewer=ranger)]


def test_a_late_role_reads_an_animals_last_report_battery_and_temperature_as_of_its_cutoff_not_live(bridge):
    ranger, visitor, researcher = viewer("amina"), Viewer("kiosk", "visitor"), viewer("rose")
    # Amani's collar reported 30 h ago, cool and full, and again two minutes ago, hot (in the sun, away
    # from the shade of the river) with a battery drained by a chase; neither status had a fix.
    for f_cnt, heard, battery_mv, temperature_c, fw_version in (
        (93, NOW - timedelta(hours=30), 3950, 24.0, "1.2.0"),
        (94, NOW - timedelta(minutes=2), 3610, 36.5, "1.3.0"),
    ):
        status = b.status(time_s=int(heard.timestamp()), lat=0.0, lon=0.0, battery_mv=battery_mv,
                          temperature_c=temperature_c, fw_version=fw_version)
        assert bridge.ingest_tts_uplink(b.tts_uplink(status, device_id="collar-01", f_cnt=f_cnt, received_at=heard,
                                                     dev_eui="70B3D57ED0000001")).ok

    def amani(who: Viewer):
        return next(a for a in bridge.animals(viewer=who) if a.name == "Amani")

    live = amani(ranger)
    assert (live.battery_mv, live.temperature_c, live.fw_version) == (3610, 36.5, "1.3.0")
    assert live.last_seen >= NOW - timedelta(minutes=2)
    for who, late in ((visitor, timedelta(hours=24)), (researcher, timedelta(hours=6))):
        seen = amani(who)
        assert (seen.battery_mv, seen.temperature_c, seen.fw_version) == (3950, 24.0, "1.2.0"), who.role
        assert NOW - late - timedelta(hours=4) <= seen.last_seen <= NOW - late, f"{who.role} reads when it was heard"
    tusker = next(a for a in bridge.animals(viewer=visitor) if a.name == "Tusker")
    assert (tusker.last_seen, tusker.battery_mv) == (None, None), "nothing of Tusker's is 72 h old"


def test_a_late_role_reads_the_rangers_verdict_but_not_the_note_that_says_in_words_where_they_found_it(bridge):
    ranger, visitor, researcher = viewer("amina"), Viewer("kiosk", "visitor"), viewer("rose")
    fence = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "geofence_farmland")
    note = "Tracks cross the maize by the north dam, 200 m west of the borehole"
    bridge.resolve_alert(fence.alert_id, ranger, "true", note)
    bridge.clock = lambda: datetime.now(UTC) + timedelta(days=2)  # long after: every role may see the verdict

    assert bridge.alert(fence.alert_id, viewer=ranger).note == note
    for who in (visitor, researcher):
        shown = bridge.alert(fence.alert_id, viewer=who)
        assert (shown.state, shown.verdict, shown.note) == ("resolved", "true", None), who.role
        resolved = next(e for e in bridge.alert_events(fence.alert_id, viewer=who) if e.action == "resolved")
        assert resolved.detail == {"verdict": "true"}
        assert note not in str(bridge.alerts(viewer=who))


def test_a_late_role_reads_when_a_late_heard_alert_was_raised_not_that_its_collar_was_heard_just_now(bridge):
    # Amani's farmland alert of 30 h ago reached the bridge only now (the collar kept it in its queue
    # out of a gateway's range): its "raised" step was taken now, on the bridge's wall clock.
    ranger, visitor = viewer("amina"), Viewer("kiosk", "visitor")
    fence = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "geofence_farmland")
    (raised,) = [e for e in bridge.alert_events(fence.alert_id, viewer=ranger) if e.action == "raised"]
    assert raised.at > NOW - timedelta(hours=24)

    history = bridge.alert_events(fence.alert_id, viewer=visitor)
    assert [(e.action, e.at) for e in history] == [("raised", fence.time)]


def test_a_late_role_reads_its_alerts_in_the_order_they_stood_in_at_its_cutoff_not_by_a_priority_raised_since(
    sqlite_url,
):
    now = datetime.now(UTC).replace(microsecond=0)
    with live_bridge(sqlite_url, now=now) as bridge:
        ranger, visitor = viewer("amina"), Viewer("kiosk", "visitor")
        dropped = now - timedelta(hours=26)  # Amani's collar said it had dropped, 4 h after its farmland alert
        assert bridge.ingest_tts_uplink(b.tts_uplink(
            b.alert("collar_drop", seq=3, time_s=int(dropped.timestamp()), lat=-2.49, lon=37.51),
            device_id="collar-01", f_cnt=95, received_at=dropped, dev_eui="70B3D57ED0000001")).ok
        drop = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "collar_drop")
        bridge.acknowledge_alert(drop.alert_id, ranger)
        bridge.run_rules(now)  # the farmland alert, never acknowledged, is escalated now
        now_priority = {a.alert_type: a.priority for a in bridge.alerts(viewer=ranger)}
        assert (now_priority["geofence_farmland"], now_priority["collar_drop"]) == (300, 200)

        seen = bridge.alerts(viewer=visitor)
        assert [(a.alert_type, a.priority) for a in seen] == [("collar_drop", 200), ("geofence_farmland", 200)], (
            "both medium then, the newer first"
        )


def test_a_late_role_reads_the_report_of_a_collar_whose_network_gave_no_reception_time(sqlite_url):
    # Amani's network server sends no received_at (a TTS field mask without it): the bridge dates her
    # status at its arrival. A day and an hour later, the visitor (24 h late) reads that report as the
    # ranger did then; it had kept no time at all, and her last report and battery never moved.
    now = datetime.now(UTC).replace(microsecond=0)
    with live_bridge(sqlite_url, now=now) as bridge:
        visitor = Viewer("kiosk", "visitor")
        status = b.status(time_s=int(now.timestamp()), lat=0.0, lon=0.0, battery_mv=3480)
        body = json.loads(b.tts_uplink(status, device_id="collar-01", f_cnt=94, dev_eui="70B3D57ED0000001"))
        del body["received_at"], body["uplink_message"]["received_at"]
        assert bridge.ingest_tts_uplink(json.dumps(body).encode()).ok

        bridge.clock = lambda: now + timedelta(hours=25)
        amani = next(a for a in bridge.animals(viewer=visitor) if a.name == "Amani")

        assert amani.battery_mv == 3480
        assert now - timedelta(minutes=1) <= amani.last_seen <= utc_now()


def test_the_visitor_kiosk_does_not_show_a_poaching_alert_of_now_from_a_collar_whose_clock_reset_to_1970(bridge):
    # Amani's collar lost its clock in a brown-out: its real-time clock counts from 1970 until the next
    # GNSS fix sets it. Its poaching alert and status of now are dated an hour after midnight, 1 Jan 1970.
    visitor, ranger = Viewer("kiosk", "visitor"), viewer("amina")
    for f_cnt, message in ((95, b.alert("poaching_risk", seq=2, time_s=3600, lat=-2.60, lon=37.40)),
                           (96, b.status(time_s=3660, lat=-2.60, lon=37.40))):
        body = b.tts_uplink(message, device_id="collar-01", f_cnt=f_cnt, received_at=NOW, dev_eui="70B3D57ED0000001")
        assert bridge.ingest_tts_uplink(body).ok

    assert "poaching_risk" not in {a.alert_type for a in bridge.alerts(viewer=visitor)}  # 72 h later, not now
    amani = next(a for a in bridge.animals(viewer=visitor) if a.name == "Amani")
    assert amani.lat is None or abs(amani.lat - -2.60) > 0.03  # her place of now is not on the kiosk either
    (poaching,) = [a for a in bridge.alerts(viewer=ranger) if a.alert_type == "poaching_risk"]
    assert poaching.time == NOW  # the ranger's: dated when the bridge heard it, as a clock-less collar's is


def test_the_visitor_kiosk_reading_an_old_alerts_history_never_learns_the_duty_officers_phone_number(
    sqlite_url, tmp_path
):
    rules = tmp_path / "rules.toml"
    rules.write_text('[notify.sms]\nurl = "http://127.0.0.1:9/send"\ntoken = "gateway-token"\n'
                     '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\n')
    with live_bridge(sqlite_url, now=utc_now(), rules_path=str(rules)) as bridge:
        (drop,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("collar_drop", seq=4), device_id="collar-01",
                                                        f_cnt=95, dev_eui="70B3D57ED0000001")).alert_ids
        ranger_saw = bridge.alert_events(drop, viewer=viewer("amina"))
        later = utc_now() + timedelta(days=4)  # old enough for every role to read
        bridge.clock = lambda: later
        seen = {who: bridge.alert_events(drop, viewer=viewer(who)) for who in ("kiosk", "rose", "tito")}

    assert any(e.detail.get("to") == "+254700000001" for e in ranger_saw)  # the control room knows who was told
    for who, history in seen.items():
        assert "notification_queued" in [e.action for e in history], who  # that the duty phone was told
        assert "+254700000001" not in json.dumps([e.detail for e in history]), who  # but not its number


def test_the_visitor_kiosk_does_not_learn_from_the_precision_figures_that_a_ranger_just_judged_a_carcass_true(bridge):
    from starlette.testclient import TestClient

    from lora_bridge.adapters.api import create_app

    ranger = viewer("amina")
    mortality = next(a for a in bridge.alerts(viewer=ranger) if a.alert_type == "mortality")  # Tusker, 30 min ago
    kiosk_token = bridge.create_token("kiosk", "visitor centre screen", actor=CONSOLE).secret
    with TestClient(create_app(bridge)) as api:
        before = api.get("/api/alerts/precision", headers={"Authorization": f"Bearer {kiosk_token}"}).json()
        bridge.resolve_alert(mortality.alert_id, ranger, "true", "carcass found, tusks gone")
        after = api.get("/api/alerts/precision", headers={"Authorization": f"Bearer {kiosk_token}"}).json()

    assert after == before  # the kiosk reads the judgement 72 hours later, with the alert itself
    assert bridge.alert_verdicts(viewer=ranger)["mortality"]["true"] == 1  # the control room's own figures
