"""Server rules over tracks, batteries and collar alerts, on hand-built data whose answer a ranger can check."""

from __future__ import annotations

import random
from datetime import timedelta

import bridge_builders as b
import numpy as np
import pytest
import rules_builders as rb
from conftest import empty_store

from lora_bridge.access import Viewer
from lora_bridge.domain import rules_movement
from lora_bridge.domain.rules_movement import exclude_outliers, immobility
from lora_bridge.domain.rules_profiles import ImmobilityProfile, RulesConfig, SpeedProfile
from lora_bridge.errors import InvalidRequest
from lora_bridge.rules_file import read_rules_file

T = b.T0
SPOT = (305_000, 9_705_000)


@pytest.fixture
def bridge(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        bridge.register_animal("collar-02", "Lemayian", sex="male")
        yield bridge


def still_track(minutes_still: int) -> list[tuple[float, float, float]]:
    """Walking east for 3 h, then still at SPOT (within 20 m) with a fix every hour and one at the end."""
    walk = [(-180 + 60 * i, SPOT[0] - 6_000 + 2_000 * i, SPOT[1]) for i in range(3)]
    still = [(m, SPOT[0] + (15 if m % 120 else -15), SPOT[1] + 10) for m in range(0, minutes_still, 60)]
    return [*walk, *still, (minutes_still, SPOT[0] + 5, SPOT[1] - 5)]


def test_collar_still_for_11_h_59_min_raises_no_immobility(bridge):
    for body in rb.fix_uplinks("collar-01", T, still_track(11 * 60 + 59)):
        bridge.ingest_tts_uplink(body)

    assert [a.alert_type for a in bridge.alerts(viewer=b.RANGER)] == []


def test_collar_still_for_12_h_1_min_raises_immobility_with_its_evidence(bridge):
    for body in rb.fix_uplinks("collar-01", T, still_track(12 * 60 + 1)):
        bridge.ingest_tts_uplink(body)

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.source, alert.priority) == ("immobility", "server", 200)
    evidence = alert.evidence
    assert evidence["still_since"] == T.isoformat()
    assert evidence["still_h"] == pytest.approx(12.02, abs=0.01)
    assert evidence["profile"] == {"radius_m": 100.0, "duration_h": 12.0, "min_share": 0.8, "min_fixes": 4,
                                   "max_active_share": 0.25, "activity_cover_min": 0.25}
    assert evidence["activity"] == {"minutes": 0, "active_share": None}  # no summary: the fixes decide
    assert evidence["share_within_radius"] == 1.0 and evidence["cluster_fixes"] == 14  # 0:00..12:00 hourly, 12:01


def _hourly_activity(bridge, device_id: str, shares_pct: tuple[float, ...], hours: int, first_f_cnt: int) -> None:
    for h in range(1, hours + 1):
        at = T + timedelta(hours=h)
        bridge.ingest_tts_uplink(b.tts_uplink(b.activity(time_s=int(at.timestamp()), shares_pct=shares_pct),
                                              device_id=device_id, f_cnt=first_f_cnt + h, received_at=at))


def test_an_animal_foraging_in_one_patch_for_12_h_raises_no_immobility_but_a_collar_reporting_rest_does(bridge):
    # Both still within 20 m for 12 h 1 min. Naserian's collar says she foraged 60 % of every hour
    # (alive, feeding in one patch); Lemayian's says rest 97 % (as a carcass or a dropped collar does).
    _hourly_activity(bridge, "collar-01", (40.0, 60.0, 0.0, 0.0), 12, first_f_cnt=500)
    _hourly_activity(bridge, "collar-02", (97.0, 3.0, 0.0, 0.0), 12, first_f_cnt=500)
    for device_id in ("collar-01", "collar-02"):
        for body in rb.fix_uplinks(device_id, T, still_track(12 * 60 + 1)):
            bridge.ingest_tts_uplink(body)

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.device_id) == ("immobility", "collar-02")
    assert alert.evidence["activity"] == {"minutes": 720, "active_share": 0.03}


def test_an_hour_of_foraging_in_a_still_half_day_does_not_hold_the_immobility_alert(bridge):
    # Summaries covering 1 h of the 12 (less than a quarter of the spell) cannot overrule the fixes.
    _hourly_activity(bridge, "collar-01", (10.0, 90.0, 0.0, 0.0), 1, first_f_cnt=500)
    for body in rb.fix_uplinks("collar-01", T, still_track(12 * 60 + 1)):
        bridge.ingest_tts_uplink(body)

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert alert.alert_type == "immobility"
    assert alert.evidence["activity"] == {"minutes": 60, "active_share": 0.9}


def test_a_stillness_the_ranger_resolved_is_not_raised_again_while_the_animal_stays(bridge):
    for body in rb.fix_uplinks("collar-01", T, still_track(12 * 60 + 1)):
        bridge.ingest_tts_uplink(body)
    (first,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(first.alert_id, Viewer("ranger.amani", "ranger"), "true", note="collar on the ground")

    more = [(12 * 60 + 60 * i, SPOT[0] + 10 * i, SPOT[1]) for i in range(1, 4)]  # still there 3 h on
    for body in rb.fix_uplinks("collar-01", T, more, first_f_cnt=100):
        bridge.ingest_tts_uplink(body)
    assert bridge.open_alerts(viewer=b.RANGER) == []

    # Picked up and carried 3 km away, then still there for 12 h: a new stillness.
    elsewhere = [(16 * 60 + 60 * i, SPOT[0] + 3_000, SPOT[1] + (5 if i % 2 else -5)) for i in range(14)]
    for body in rb.fix_uplinks("collar-01", T, elsewhere, first_f_cnt=200):
        bridge.ingest_tts_uplink(body)
    (second,) = bridge.open_alerts(viewer=b.RANGER)
    assert second.alert_type == "immobility" and second.alert_id != first.alert_id


def test_one_bad_fix_off_a_carcass_the_ranger_resolved_does_not_raise_it_again(bridge):
    for body in rb.fix_uplinks("collar-01", T, still_track(12 * 60 + 1)):
        bridge.ingest_tts_uplink(body)
    (first,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(first.alert_id, Viewer("ranger.amani", "ranger"), "true", note="carcass found")

    # A day on the spot with one fix 300 m off (slow enough between hourly fixes to pass the speed
    # test), then 13 h more on the spot: the same carcass, not a new stillness.
    day = [(12 * 60 + 60 * i, SPOT[0] + (300 if i == 5 else 10 * (i % 2)), SPOT[1]) for i in range(1, 26)]
    for body in rb.fix_uplinks("collar-01", T, day, first_f_cnt=100):
        bridge.ingest_tts_uplink(body)
    assert bridge.open_alerts(viewer=b.RANGER) == []


def test_immobility_closes_itself_when_the_animal_walks_away(bridge):
    track = still_track(12 * 60 + 1)
    track.append((13 * 60, SPOT[0] + 1_500, SPOT[1]))
    for body in rb.fix_uplinks("collar-01", T, track):
        bridge.ingest_tts_uplink(body)

    (alert,) = bridge.alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.state, alert.verdict) == ("immobility", "resolved", None)
    (closing,) = [e for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "auto_resolved"]
    assert closing.detail["reason"] == "moving again"
    assert closing.detail["cleared_at"] == (T + timedelta(minutes=13 * 60)).isoformat(), "the fix 1.5 km away"


def test_an_outlier_fix_inside_a_still_period_does_not_break_it():
    fixes = [(T + timedelta(hours=h), *rb.lat_lon(*SPOT)) for h in range(13)]
    fixes.insert(6, (T + timedelta(hours=5, minutes=30), *rb.lat_lon(SPOT[0] + 30_000, SPOT[1])))  # 60 km/h away

    clean = exclude_outliers(fixes, SpeedProfile())
    result = immobility(clean.kept, ImmobilityProfile())

    assert [o["time"] for o in clean.outliers] == [(T + timedelta(hours=5, minutes=30)).isoformat()]
    assert clean.outliers[0]["speed_kmh"] == pytest.approx(60.0, abs=0.5)
    assert result.immobile and result.still_s == 12 * 3600


def test_two_fixes_that_agree_after_a_jump_are_kept():
    # Translocated by truck: 15 km in 10 min (90 km/h), then two fixes that agree with each other.
    fixes = [
        (T, *rb.lat_lon(*SPOT)),
        (T + timedelta(minutes=10), *rb.lat_lon(SPOT[0] + 15_000, SPOT[1])),
        (T + timedelta(minutes=20), *rb.lat_lon(SPOT[0] + 15_200, SPOT[1])),
    ]
    clean = exclude_outliers(fixes, SpeedProfile())
    assert (len(clean.kept), clean.outliers) == (3, [])


def test_battery_trend_predicts_the_date_of_empty_and_warns_within_thirty_days(bridge):
    # 20 mV a day down from 3700 mV: the collar's critical level (3100 mV) is 30 days after the first reading.
    for day in range(10):
        message = b.status(time_s=b.T0_S + day * 86400, battery_mv=3700 - 20 * day)
        bridge.ingest_tts_uplink(b.tts_uplink(message, f_cnt=day + 1, received_at=T + timedelta(days=day)))

    trend = bridge.battery_trend("collar-01", now=T + timedelta(days=9))
    assert trend["slope_mv_per_day"] == pytest.approx(-20.0)
    assert trend["critical_on"].startswith((T + timedelta(days=30)).date().isoformat())
    assert trend["empty_on"].startswith((T + timedelta(days=40)).date().isoformat())  # 2900 mV, the pack's 0 %
    (alert,) = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "battery_forecast"]
    assert alert.priority == 100 and alert.evidence["critical_mv"] == 3100


def test_a_battery_forecast_the_ranger_resolved_is_not_raised_again_while_the_pack_keeps_falling(bridge):
    def day_status(day, mv):
        message = b.status(time_s=b.T0_S + day * 86400, battery_mv=mv)
        bridge.ingest_tts_uplink(b.tts_uplink(message, f_cnt=day + 1, received_at=T + timedelta(days=day)))

    for day in range(10):
        day_status(day, 3700 - 20 * day)
    (first,) = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "battery_forecast"]
    bridge.resolve_alert(first.alert_id, Viewer("ranger.amani", "ranger"), "true", note="pack ordered")

    day_status(10, 3500)

    assert [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "battery_forecast"] == []


def test_a_battery_that_barely_falls_gets_no_date_of_empty_and_no_forecast_alert(bridge):
    # 3700 mV for ten days, one millivolt less on the last: the line reaches empty thousands of years on.
    for day in range(10):
        message = b.status(time_s=b.T0_S + day * 86400, battery_mv=3700 - (day == 9))
        bridge.ingest_tts_uplink(b.tts_uplink(message, f_cnt=day + 1, received_at=T + timedelta(days=day)))

    trend = bridge.battery_trend("collar-01", now=T + timedelta(days=9))
    assert trend["slope_mv_per_day"] < 0
    assert (trend["low_on"], trend["critical_on"], trend["empty_on"]) == (None, None, None)
    assert not [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "battery_forecast"]


def test_a_failed_pack_flat_below_its_levels_keeps_the_collars_rules_running(bridge, caplog, monkeypatch):
    # A failed pack reads 3000 mV (below the collar's low and critical levels) day after day; the least-squares
    # line through equal readings comes out with a slope of rounding noise, a hair below zero, so the line
    # "left" those levels some 10^14 days before its first reading (seen in the twin's month: every
    # evaluation of that collar's rules failed on the date). The noise is pinned here as numpy's polyfit gave
    # it then (the line now comes from the readings' sums, `rules.ReadingSums.line`).
    from lora_bridge.domain import rules

    monkeypatch.setattr(rules.ReadingSums, "line", lambda sums: (-1e-12, 3000.0))
    for day in range(10):
        message = b.status(time_s=b.T0_S + day * 86400, battery_mv=3000)
        bridge.ingest_tts_uplink(b.tts_uplink(message, f_cnt=day + 1, received_at=T + timedelta(days=day)))

    trend = bridge.battery_trend("collar-01", now=T + timedelta(days=9))
    assert trend["slope_mv_per_day"] <= 0 and (trend["low_on"], trend["critical_on"], trend["empty_on"]) == (
        None, None, None)
    assert not [r for r in caplog.records if "server rules failed" in r.getMessage()]
    assert "low_battery" in {a.alert_type for a in bridge.alerts(viewer=b.RANGER)}


def test_low_battery_closes_itself_once_the_collar_reads_above_its_level_again(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1))
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, battery_mv=3360), f_cnt=2))

    (alert,) = bridge.alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.state) == ("low_battery", "resolved")
    (closing,) = [e for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "auto_resolved"]
    assert closing.detail["reason"] == "battery back at 3360 mV"


NIGHT = T + timedelta(hours=17)  # 23:00 UTC, 02:00 in the collar's East Africa Time


def poaching_scene(bridge, at, *, fled: bool):
    """A collar poaching-risk alert at `at`, with fixes 20 min either side, an activity summary,
    and a herd mate 1 km away; fled: the animal ran 6 km in 40 min and the herd ran too."""
    x_after = SPOT[0] + (6_000 if fled else 100)
    lat, lon = rb.lat_lon(*SPOT)
    alert = b.alert("poaching_risk", seq=1, time_s=int(at.timestamp()), lat=lat, lon=lon)
    bodies = [
        *rb.fix_uplinks("collar-01", at, [(-20, *SPOT)], first_f_cnt=1),
        b.tts_uplink(alert, f_cnt=2, received_at=at),
        *rb.fix_uplinks("collar-01", at, [(20, x_after, SPOT[1])], first_f_cnt=3),
        *rb.fix_uplinks("collar-02", at, [(0, SPOT[0] + 1_000, SPOT[1])], first_f_cnt=1),
    ]
    run = 40.0 if fled else 0.0
    shares = (10.0, 25.0, 25.0, run) if fled else (60.0, 30.0, 10.0, 0.0)
    start = int((at - timedelta(minutes=15)).timestamp())
    bodies.append(b.tts_uplink(b.activity(start, shares, interval_min=30), f_cnt=5, received_at=at))
    bodies.append(b.tts_uplink(b.activity(start, shares, interval_min=30), device_id="collar-02", f_cnt=2,
                               received_at=at))
    for body in bodies:
        bridge.ingest_tts_uplink(body)
    bridge.run_rules(now=at + timedelta(minutes=30))
    (found,) = [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "poaching_risk"]
    return found


def test_poaching_alert_at_night_with_flight_and_a_fleeing_herd_is_confident(bridge):
    alert = poaching_scene(bridge, NIGHT, fled=True)

    corroboration = alert.evidence["corroboration"]
    assert corroboration["confidence"] > 0.95 and not corroboration["held"]
    assert {f["witness"]: f["weight"] > 0 for f in corroboration["factors"]} == {
        "positions": True, "behaviour": True, "herd": True, "night": True
    }
    assert alert.priority == 300


def test_poaching_alert_on_a_calm_animal_by_day_is_kept_but_held_at_priority_zero(bridge):
    alert = poaching_scene(bridge, T + timedelta(hours=3), fled=False)

    corroboration = alert.evidence["corroboration"]
    assert corroboration["confidence"] < 0.35 and corroboration["held"]
    assert alert.priority == 0 and alert.state == "new"
    reasons = {f["witness"]: f["reason"] for f in corroboration["factors"]}
    assert "no flight" in reasons["positions"] and "stayed calm" in reasons["herd"]


def test_unacknowledged_mortality_alert_escalates_after_ten_minutes_once_per_period(bridge):
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1)).alert_ids

    bridge.run_rules(now=T + timedelta(minutes=9))
    assert [e.action for e in bridge.alert_events(alert_id, viewer=b.RANGER)].count("escalated") == 0
    bridge.run_rules(now=T + timedelta(minutes=11))
    bridge.run_rules(now=T + timedelta(minutes=12))
    levels = [e.detail["level"] for e in bridge.alert_events(alert_id, viewer=b.RANGER) if e.action == "escalated"]
    assert levels == [1]
    bridge.run_rules(now=T + timedelta(minutes=21))
    bridge.run_rules(now=T + timedelta(hours=5))
    levels = [e.detail["level"] for e in bridge.alert_events(alert_id, viewer=b.RANGER) if e.action == "escalated"]
    assert levels == [1, 2]  # max_level 2


def test_unanswered_low_battery_alert_climbs_one_priority_step_per_escalation_up_to_high(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3200), f_cnt=1))
    (alert,) = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "low_battery"]
    assert alert.priority == 100

    def escalations():
        return [e.detail for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER) if e.action == "escalated"]

    bridge.run_rules(now=alert.time + timedelta(minutes=239))
    assert escalations() == []
    bridge.run_rules(now=alert.time + timedelta(minutes=241))  # low: 240 min
    assert bridge.alert(alert.alert_id, viewer=b.RANGER).priority == 200
    bridge.run_rules(now=alert.time + timedelta(minutes=299))  # now medium: 60 min after the last was due
    assert len(escalations()) == 1
    bridge.run_rules(now=alert.time + timedelta(minutes=301))
    bridge.run_rules(now=alert.time + timedelta(hours=10))  # max_level 2

    assert bridge.alert(alert.alert_id, viewer=b.RANGER).priority == 300
    assert [(e["level"], e["priority_from"], e["priority_to"]) for e in escalations()] == [(1, 100, 200), (2, 200, 300)]
    assert escalations()[1]["due_at"] == (alert.time + timedelta(minutes=300)).isoformat()


def test_an_escalated_mortality_alert_stays_at_high_the_top_of_the_scale(bridge, caplog):
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1)).alert_ids

    with caplog.at_level("WARNING", logger="lora_bridge.domain.rules_lifecycle"):
        bridge.run_rules(now=T + timedelta(minutes=11))
        bridge.run_rules(now=T + timedelta(minutes=21))

    assert bridge.alert(alert_id, viewer=b.RANGER).priority == 300
    details = [e.detail for e in bridge.alert_events(alert_id, viewer=b.RANGER) if e.action == "escalated"]
    # Still escalated (the escalation routes are told), but no change of priority is recorded or logged.
    assert [(d["level"], d["priority"], d["top_of_scale"]) for d in details] == [(1, 300, True), (2, 300, True)]
    assert not [d for d in details if "priority_from" in d or "priority_to" in d]
    messages = [r.getMessage() for r in caplog.records if "escalated" in r.getMessage()]
    assert len(messages) == 2 and not [m for m in messages if "->" in m]


def test_a_poaching_alert_held_at_priority_zero_is_never_escalated(bridge):
    held = poaching_scene(bridge, T + timedelta(hours=3), fled=False)

    bridge.run_rules(now=T + timedelta(hours=9))

    assert bridge.alert(held.alert_id, viewer=b.RANGER).priority == 0
    assert "escalated" not in [e.action for e in bridge.alert_events(held.alert_id, viewer=b.RANGER)]


def test_acknowledged_alert_does_not_escalate(bridge):
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1)).alert_ids
    bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))

    bridge.run_rules(now=T + timedelta(hours=1))

    assert "escalated" not in [e.action for e in bridge.alert_events(alert_id, viewer=b.RANGER)]


def test_thresholds_differ_per_species_and_per_animal_from_one_file(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        '[rules.default.immobility]\nradius_m = 80\n'
        '[rules.species."Giraffa camelopardalis".speed]\nmax_speed_kmh = 30\n'
        '[rules.animals.Naserian.immobility]\nduration_h = 8\n'
    )
    config = read_rules_file(str(path)).rules

    assert config.profile_for("Loxodonta africana", "Naserian").immobility.duration_h == 8
    assert config.profile_for("Loxodonta africana", "Naserian").immobility.radius_m == 80
    assert config.profile_for("Giraffa camelopardalis", "Twiga").speed.max_speed_kmh == 30
    assert config.profile_for("Loxodonta africana", "Lemayian") == RulesConfig(
        default=config.default
    ).profile_for(None)


@pytest.mark.parametrize(
    "text",
    ['[rules.default.immobility]\nradius_m = -5\n', '[rules.animals.Naserian.immobility]\nradius_mm = 5\n', "[rules\n"],
    ids=["negative-radius", "misspelt-key", "not-toml"],
)
def test_a_broken_rules_file_is_refused_naming_the_problem(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)

    with pytest.raises(InvalidRequest, match="rules file"):
        read_rules_file(str(path))


def test_rules_bench_reports_rule_cost_per_uplink_against_the_same_uplinks_with_rules_off():
    from lora_bridge.rules_bench import run

    figures = run(collars=4, fences=3, rounds=1, history=6)

    assert (figures["collars"], figures["fences"], figures["uplinks"]) == (4, 3, 4)
    assert set(figures["rules_ms_per_uplink"]) == {"mean", "p50", "p99"}
    assert figures["ratio_mean_rules_on_to_off"] > 0
    assert figures["positions_stored"] == 4 * (6 + 1)  # every uplink reached its collar's track
    # Rules once per collar per batch judge the same uplinks the same way.
    assert figures["alerts_raised_batched"] == figures["alerts_raised"]
    assert figures["sql_statements_per_evaluation"]["mean"] >= 4  # collar, alerts, track, cursor at least
    assert figures["fence_index_builds"] == 1  # built once, whatever the number of evaluations


def _battery_herd() -> list[bytes]:
    """Three collars' statuses, hourly for two days, delivered hour by hour with the collars
    interleaved: collar-01's pack falls 1 mV an hour (24 mV a day: its critical 3100 mV some 25 days
    on); collar-02 sags under its low level (3300 mV) at hours 20-23, stays a little above it, and is
    back above it by the hysteresis in its last status; collar-03 holds 3900 mV. They walk north
    (550 m an hour: nobody still, nobody too fast). Only the last status
    spans the two days a forecast needs, so every batching judges the same readings last."""
    def mv(device_id: str, hour: int) -> int:
        if device_id == "collar-01":
            return 3700 - hour
        if device_id == "collar-02":
            return 3900 if hour < 20 else 3250 if hour < 24 else 3320 if hour < 48 else 3400
        return 3900

    return [
        b.tts_uplink(b.status(time_s=b.T0_S + 3600 * hour, lat=-2.5 + 0.005 * hour, battery_mv=mv(device_id, hour)),
                     device_id=device_id,
                     f_cnt=hour + 1, received_at=T + timedelta(hours=hour, seconds=2))
        for hour in range(49)
        for device_id in ("collar-01", "collar-02", "collar-03")
    ]


def _stored_readings(bridge) -> list[tuple[str, str, int]]:
    from sqlalchemy import select

    from lora_bridge.store.tables import BatteryReading

    with bridge.db.read() as session:
        return [(d, t.isoformat(), mv) for d, t, mv in session.execute(
            select(BatteryReading.device_id, BatteryReading.time, BatteryReading.battery_mv)
            .order_by(BatteryReading.device_id, BatteryReading.time))]


def _alerts_seen(bridge) -> list[tuple]:
    """What a ranger reads of every alert (not its id nor the wall-clock time it was closed at)."""
    return sorted(
        (a.device_id, a.alert_type, a.source, a.state, a.priority, a.time, a.last_time, a.occurrences, a.verdict,
         repr(a.evidence), tuple((e.action, repr(e.detail)) for e in bridge.alert_events(a.alert_id, viewer=b.RANGER)))
        for a in bridge.alerts(viewer=b.RANGER)
    )


@pytest.fixture
def another_store_url(store_url, request, tmp_path):
    """A second empty store on the engine of store_url."""
    engine = "sqlite" if store_url.startswith("sqlite") else "postgres"
    with empty_store(engine, request, tmp_path / "tembo-2.db") as url:
        yield url


def test_every_status_keeps_its_battery_reading_and_the_same_alerts_in_one_big_batch_or_in_small_ones(
    store_url, another_store_url
):
    herd = _battery_herd()
    seen = {}
    for batch, url in ((len(herd), store_url), (5, another_store_url)):
        with b.fresh_bridge(url, ingest_max_batch=batch) as bridge:
            for n in (1, 2, 3):
                bridge.register_animal(f"collar-0{n}", f"Elephant {n}")
            bridge.ingest_batch([bridge.submission("tts", None, body) for body in herd])
            seen[batch] = (_stored_readings(bridge), _alerts_seen(bridge))

    (big_readings, big_alerts), (small_readings, small_alerts) = seen[len(herd)], seen[5]
    # every status's reading, at its own time, whatever the batch it came in
    assert len(big_readings) == 3 * 49
    assert ("collar-01", (T + timedelta(hours=30)).isoformat(), 3670) in big_readings
    assert ("collar-02", (T + timedelta(hours=21)).isoformat(), 3250) in big_readings
    assert big_readings == small_readings
    # the rules judged the same readings: the same forecast and low-battery alerts, opened and closed alike
    assert big_alerts == small_alerts
    kinds = {(device_id, alert_type, state) for device_id, alert_type, _, state, *_ in big_alerts}
    assert ("collar-01", "battery_forecast", "new") in kinds
    assert ("collar-02", "low_battery", "resolved") in kinds
    (forecast,) = [a for a in big_alerts if a[1] == "battery_forecast" and a[0] == "collar-01"]
    assert "'readings': 49" in forecast[9] and "'slope_mv_per_day': -24.0" in forecast[9]


def test_a_status_sent_again_replayed_or_late_keeps_one_reading_at_its_own_time(store_url):
    from lora_bridge.domain import rules

    first = b.tts_uplink(b.status(time_s=b.T0_S + 3600, battery_mv=3600), f_cnt=1)
    with b.fresh_bridge(store_url) as bridge:
        bridge.register_animal("collar-01", "Naserian")
        bridge.ingest_tts_uplink(first)
        bridge.ingest_tts_uplink(first)  # the network server delivers it twice
        # the collar sends the same status again from its flash under a new frame counter, with a
        # status held back from earlier (an older time), in one batch and then as a replayed capture
        again = b.tts_uplink(b.status(time_s=b.T0_S + 3600, battery_mv=3600), f_cnt=2)
        late = b.tts_uplink(b.status(time_s=b.T0_S, battery_mv=3610), f_cnt=3)
        bridge.ingest_batch([bridge.submission("tts", None, body) for body in (again, late)])
        bridge.ingest_batch([bridge.submission("replay:tts", None, body) for body in (first, again, late)])
        with bridge.db.write() as session:  # and the status applied to the store once more by hand
            rules.queue_reading(session, "collar-01", T + timedelta(hours=1), 3600)

        assert _stored_readings(bridge) == [
            ("collar-01", T.isoformat(), 3610),
            ("collar-01", (T + timedelta(hours=1)).isoformat(), 3600),
        ]
        (collar,) = bridge.devices(["collar-01"])
        assert collar.battery_mv == 3600  # the late status is kept as a reading, not as the collar's latest


def _wandering_tracks(count: int, seed: int) -> list[tuple[list[tuple], ImmobilityProfile]]:
    """Hand-made tracks in the reserve: an animal resting, grazing or walking off, some with a GPS jump,
    from 2 fixes to more than the walk back takes on plain floats; each with a profile."""
    rng = random.Random(seed)
    tracks = []
    for _ in range(count):
        n = rng.choice([2, 3, 5, 8, 12, 24, 48, 49, 90])
        lat0, lon0, spread = rng.uniform(-3.5, -1.0), rng.uniform(35.0, 38.5), rng.choice([0.0002, 0.0008, 0.003])
        fixes = [
            (T + timedelta(hours=i), lat0 + rng.gauss(0, spread) + (0.05 if rng.random() < 0.05 else 0.0),
             lon0 + rng.gauss(0, spread) + (i * 0.001 if rng.random() < 0.3 else 0.0))
            for i in range(n)
        ]
        profile = ImmobilityProfile(radius_m=rng.choice([50.0, 100.0, 200.0]), duration_h=rng.choice([3.0, 12.0]),
                                    min_share=rng.choice([0.6, 0.8, 1.0]), min_fixes=4)
        tracks.append((fixes, profile))
    return tracks


def test_immobility_walks_back_on_floats_as_it_does_one_start_at_a_time():
    judged = still = 0
    for fixes, profile in _wandering_tracks(400, seed=11):
        clean = exclude_outliers(fixes, SpeedProfile())
        xy = rules_movement.project(clean.kept)[0] if len(clean.kept) > 1 else None
        if xy is not None:
            assert rules_movement._walk_back(xy, profile.radius_m, profile.min_share) == \
                rules_movement._walk_back_one_by_one(xy, profile.radius_m, profile.min_share)
            judged += 1
        # the cleaning's metres reused give the very same answer as projecting the fixes again
        assert immobility(clean.kept, profile, clean.metres) == immobility(clean.kept, profile)
        still += immobility(clean.kept, profile).immobile
    assert judged > 350 and 0 < still < judged  # both answers were met


def test_a_fix_on_the_radius_is_judged_by_the_walk_whose_centres_are_exact_means(monkeypatch):
    exact_walks = []
    one_by_one = rules_movement._walk_back_one_by_one

    def spied(*args):
        exact_walks.append(args)
        return one_by_one(*args)

    monkeypatch.setattr(rules_movement, "_walk_back_one_by_one", spied)
    # the newest two fixes 200 m apart: each lies exactly 100 m from their centre
    xy = np.array([[300_000.0, 9_700_500.0], [305_000.0, 9_705_000.0], [305_200.0, 9_705_000.0]])

    assert rules_movement._walk_back(xy, 100.0, 0.8) == 1  # inside counts "within or on the radius"
    assert len(exact_walks) == 1
    assert rules_movement._walk_back(xy, 99.0, 0.8) is None and len(exact_walks) == 1  # clear of it: floats alone


def _herd_tracks_with_the_fixes_judged_before(count: int, seed: int) -> list[tuple[list[tuple], list[tuple]]]:
    """A herd's tracks as the rules read them at a batch: (every fix, the fixes judged before it). Fixes
    every 15 to 60 minutes with GPS jumps of kilometres (outliers, some rehabilitated by the fix after),
    some near the 36.5 degree edge between two UTM zones' cells, and now and then a back-filled fix older
    than some judged ones."""
    rng = random.Random(seed)
    tracks = []
    for _ in range(count):
        n = rng.choice([3, 5, 12, 25, 26, 49, 90])
        lat, lon = rng.uniform(-3.5, -1.0), rng.choice([rng.uniform(35.0, 38.5), 36.5 + rng.uniform(-0.002, 0.002)])
        at, fixes = T, []
        for _ in range(n):
            at += timedelta(minutes=rng.choice([0, 15, 30, 60]))
            lat, lon = lat + rng.gauss(0, 0.002), lon + rng.gauss(0, 0.002)
            jump = rng.choice([0.03, 0.1]) if rng.random() < 0.08 else 0.0
            fixes.append((at, lat + jump, lon - jump))
        fixes = list({f[0]: f for f in fixes}.values())  # one fix a time, as the store keeps them
        new = rng.choice([1, 1, 2, 3])
        judged = fixes[:-new] if rng.random() < 0.8 else [f for i, f in enumerate(fixes) if i != len(fixes) // 2]
        rng.shuffle(judged)
        tracks.append((fixes, judged))
    return tracks


def test_a_track_with_no_outlier_takes_its_zone_and_metres_from_its_cleaning():
    whole = 0
    for fixes, _ in _wandering_tracks(200, seed=23):
        clean = exclude_outliers(fixes, SpeedProfile())
        if len(clean.kept) < 2 or clean.outlier_speeds:
            continue
        xy, back = rules_movement._projected_back(clean.kept, clean.metres)
        # the same fixes: the cleaning's transformer back and metres, the very numbers of a projection anew
        assert back is clean.metres.back
        assert xy.tolist() == rules_movement.project(clean.kept)[0].tolist()
        whole += 1
    assert whole > 100


def test_a_track_and_the_track_as_judged_before_clean_in_one_walk_as_they_clean_apart():
    outliers = other_zone = back_filled = 0
    for fixes, judged in _herd_tracks_with_the_fixes_judged_before(600, seed=17):
        apart = (exclude_outliers(fixes, SpeedProfile()), exclude_outliers(judged, SpeedProfile()))

        assert rules_movement.exclude_outliers_of_both(fixes, judged, SpeedProfile()) == apart
        outliers += bool(apart[0].outlier_speeds and apart[1].outlier_speeds)
        if apart[0].metres and apart[1].metres:
            other_zone += apart[0].metres.forward is not apart[1].metres.forward
        back_filled += sorted(judged) != sorted(fixes)[:len(judged)]
    assert outliers > 50 and other_zone >= 5 and back_filled > 50  # every way of the walk was met


def _immobility_on_arrays(fixes, profile, known=None):
    """The immobility test's cluster as numpy arrays judged it before the cluster's tail went to floats:
    (still_since, share, cluster fixes, total fixes, cluster radius), or None when no walk back."""
    ordered = sorted(fixes, key=lambda f: f[0])
    xy, _, _ = rules_movement._projected(ordered, known)
    start = rules_movement._walk_back(xy, profile.radius_m, profile.min_share)
    if start is None:
        return None
    points = xy[start:]
    centre = points.mean(axis=0)
    distance = np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1])
    inside = distance <= profile.radius_m
    cluster = int(inside.sum())
    return (ordered[start + int(np.argmax(inside))][0], cluster / len(inside), cluster, len(inside),
            float(distance[inside].max()) if cluster else 0.0)


def test_a_stillness_is_judged_to_the_same_fix_and_metre_as_the_arrays_judged_it():
    """Rangers get the same immobility alerts and evidence (since when, the cluster, its radius) from the
    cluster's tail in plain floats as from numpy's arrays: seeded random herds, still, wandering and
    jittering around the radius, with and without the cleaning's metres handed in."""
    rng = random.Random(20261206)
    profile = ImmobilityProfile()
    judged = stillnesses = 0
    for _ in range(400):
        count = rng.randint(2, 60)  # past WALK_ON_FLOATS_FIXES too
        spread_deg = rng.choice((0.00005, 0.0002, 0.0004, 0.003))
        lat, lon = -2.5 + rng.uniform(-0.5, 0.5), 37.5 + rng.uniform(-0.5, 0.5)
        fixes = [(T + timedelta(minutes=rng.randint(0, 60 * 48)), lat + rng.gauss(0, spread_deg),
                  lon + rng.gauss(0, spread_deg)) for _ in range(count)]
        clean = exclude_outliers(fixes, SpeedProfile())
        for known in (None, clean.metres):
            result = immobility(clean.kept, profile, known)
            expected = _immobility_on_arrays(clean.kept, profile, known)
            if expected is None:
                assert (result.still_since, result.cluster_fixes) == (None, 0)
                continue
            judged += 1
            stillnesses += result.immobile
            assert (result.still_since, result.share, result.cluster_fixes, result.total_fixes,
                    result.cluster_radius_m) == expected
            assert type(result.cluster_radius_m) is float
    assert judged > 300 and stillnesses > 20  # the herds above were judged, and some were still
