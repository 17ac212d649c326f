"""The server rules after a field technician moves a collar to another elephant: each rule judges the
new wearer on his own fixes since the fitting, never on what the collar saw on the animal before (a
stillness in the workshop, the old wearer's side of a fence, the old wearer's last fix), and a backlog
of the old wearer heard after the swap raises nothing on the new one. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import bridge_builders as b
import pytest
import rules_builders as rb

from lora_bridge.access import Viewer

T = b.T0
TECHNICIAN = Viewer("juma", "field_technician")
ADMIN = Viewer("ada", "admin")
WORKSHOP = (302_000, 9_702_000)  # inside the park, away from its fenced plot


@pytest.fixture
def bridge(store_url):
    """Naserian on collar-01; Kito, a young bull, registered on a spare collar never heard."""
    with b.fresh_bridge(store_url) as bridge:
        bridge.clock = lambda: T + timedelta(days=2)
        bridge.register_animal("collar-01", "Naserian", sex="female")
        bridge.kito = bridge.register_animal("collar-02", "Kito", sex="male").animal_id
        yield bridge


def move_collar_01_to_kito(bridge, minutes: float) -> None:
    bridge.fit_collar(bridge.kito, "collar-01", viewer=TECHNICIAN, move=True,
                      fitted_at=T + timedelta(minutes=minutes))


def still_at(x: float, y: float, from_min: int, to_min: int) -> list[tuple[float, float, float]]:
    """A fix every hour from from_min to to_min (minutes after T), within 20 m of (x, y)."""
    return [(m, x + (15 if m % 120 else -15), y + 10) for m in range(from_min, to_min + 1, 60)]


def test_a_collar_lying_still_in_the_workshop_then_fitted_to_a_new_elephant_raises_no_mortality_for_him(bridge):
    # Off Naserian, collar-01 lies on the workshop bench for 8 h (still, still filed under her) ...
    rb.ingest_track(bridge, still_at(*WORKSHOP, 0, 8 * 60))
    # ... is fitted to Kito at 08:30, who dozes by the workshop for 4 h: 13 h of stillness for the
    # collar, 4 h for him.
    move_collar_01_to_kito(bridge, 8 * 60 + 30)
    rb.ingest_track(bridge, still_at(*WORKSHOP, 9 * 60, 13 * 60), first_f_cnt=100)

    assert bridge.alerts(viewer=b.RANGER) == []

    # Still 12 h on Kito himself: that is his immobility, counted from his first fix.
    rb.ingest_track(bridge, still_at(*WORKSHOP, 14 * 60, 21 * 60 + 1), first_f_cnt=200)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.animal_id) == ("immobility", bridge.kito)
    assert alert.evidence["still_since"] == (T + timedelta(hours=9)).isoformat()


def test_the_first_fix_on_the_new_elephant_is_no_teleport_from_the_old_ones_last(bridge):
    rb.park_and_farm(bridge)
    # Naserian's last fixes inside the park; the collar is fitted to Kito 30 km west, outside it.
    rb.ingest_track(bridge, [(0, *WORKSHOP), (60, WORKSHOP[0] + 500, WORKSHOP[1]), (120, *WORKSHOP)])
    move_collar_01_to_kito(bridge, 150)
    rb.ingest_track(bridge, [(180, 272_000, 9_702_000), (240, 272_300, 9_702_000), (300, 272_600, 9_702_000)],
                    first_f_cnt=100)

    assert bridge.alerts(viewer=b.RANGER) == []  # no 30 km/h leap out of the park at 02:15



def test_fence_state_of_the_first_elephant_does_not_decide_the_new_wearers_entry_alert(bridge):
    rb.park_and_farm(bridge)
    # Naserian grazes between the park and the farms (x 310-312 km), outside both ...
    rb.ingest_track(bridge, [(0, 311_000, 9_705_000), (60, 311_200, 9_705_000), (120, 311_000, 9_705_100)])
    # ... and the collar goes on Kito, who was darted in the farmland (x 312-314 km) and stays there.
    move_collar_01_to_kito(bridge, 150)
    rb.ingest_track(bridge, [(180 + 60 * i, 313_000 + 100 * i, 9_705_000) for i in range(4)], first_f_cnt=100)

    assert bridge.alerts(viewer=b.RANGER) == []  # nobody saw Kito enter the farms

    # Kito leaves the farms and comes back: that entry is his.
    rb.ingest_track(bridge, [(420, 311_000, 9_705_000), (480, 311_000, 9_705_200), (540, 313_000, 9_705_000),
                             (600, 313_100, 9_705_000)], first_f_cnt=200)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.animal_id) == ("geofence_farmland", bridge.kito)


def test_the_old_wearers_backlog_heard_after_the_swap_raises_nothing_on_the_new_elephant(bridge):
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, *WORKSHOP), (60, WORKSHOP[0] + 300, WORKSHOP[1])])
    move_collar_01_to_kito(bridge, 180)
    rb.ingest_track(bridge, [(180 + 60 * i, 303_000 + 200 * i, 9_702_000) for i in range(3)], first_f_cnt=100)
    # Naserian's flash, heard after the swap: at 01:30 and 02:00 she was 5 km out of the park.
    rb.ingest_track(bridge, [(90, 297_000, 9_702_000), (120, 297_200, 9_702_000)], first_f_cnt=200)

    assert [a for a in bridge.alerts(viewer=b.RANGER) if a.animal_id == bridge.kito] == []
    track = bridge.tracks(viewer=b.RANGER)
    naserian = next(key for key, fixes in track.items() if key != bridge.kito)
    assert len(track[naserian]) == 4 and len(track[bridge.kito]) == 3  # her backlog stays hers


def test_naserians_open_mortality_alert_stays_hers_and_kitos_stillness_raises_his_own(bridge):
    # Naserian's collar lies still for 13 h: her immobility alert, not yet answered.
    rb.ingest_track(bridge, still_at(*WORKSHOP, 0, 13 * 60))
    (hers,) = bridge.open_alerts(viewer=b.RANGER)
    # The technician takes the collar and fits it to Kito, who walks off east, then stands 12 h.
    move_collar_01_to_kito(bridge, 13 * 60 + 30)
    walk = [(14 * 60 + 60 * i, WORKSHOP[0] + 1_500 * i, WORKSHOP[1]) for i in range(1, 4)]
    rb.ingest_track(bridge, walk, first_f_cnt=100)

    assert [(a.alert_id, a.state) for a in bridge.alerts(viewer=b.RANGER)] == [(hers.alert_id, "new")]  # his walk closes nothing of hers

    rb.ingest_track(bridge, still_at(WORKSHOP[0] + 4_500, WORKSHOP[1], 18 * 60, 30 * 60 + 1), first_f_cnt=200)
    his = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_id != hers.alert_id]
    assert [(a.alert_type, a.animal_id, a.occurrences) for a in his] == [("immobility", bridge.kito, 1)]
    assert next(a for a in bridge.alerts(viewer=b.RANGER) if a.alert_id == hers.alert_id).occurrences == 1


def test_a_stillness_the_ranger_resolved_for_naserian_does_not_silence_kitos_on_the_same_spot(bridge):
    rb.ingest_track(bridge, still_at(*WORKSHOP, 0, 13 * 60))
    (hers,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(hers.alert_id, Viewer("ranger.amani", "ranger"), "true", note="collar slipped off")
    # Refitted to Kito at the same boma, where he lies down for 12 h.
    move_collar_01_to_kito(bridge, 13 * 60 + 30)
    rb.ingest_track(bridge, still_at(*WORKSHOP, 14 * 60, 26 * 60 + 1), first_f_cnt=100)

    (his,) = bridge.open_alerts(viewer=b.RANGER)
    assert (his.alert_type, his.animal_id) == ("immobility", bridge.kito)


def test_a_low_battery_the_ranger_resolved_for_naserian_is_still_told_to_kitos_team(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1, received_at=T))
    (hers,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(hers.alert_id, Viewer("ranger.amani", "ranger"), "true", note="collar comes off today")
    # The collar goes on Kito with the same tired pack.
    move_collar_01_to_kito(bridge, 120)
    at = T + timedelta(hours=3)
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=int(at.timestamp()), battery_mv=3240), f_cnt=2,
                                          received_at=at))

    (his,) = bridge.open_alerts(viewer=b.RANGER)
    assert (his.alert_type, his.animal_id) == ("low_battery", bridge.kito)


def test_a_silent_collar_moved_to_kito_is_reported_offline_on_him_too(bridge):
    rb.ingest_track(bridge, [(0, *WORKSHOP)])
    bridge.run_rules(now=T + timedelta(days=1))
    (hers,) = bridge.open_alerts(viewer=b.RANGER)
    assert (hers.alert_type, hers.animal_id) != ("offline", bridge.kito) and hers.alert_type == "offline"
    # Still silent, the collar is fitted to Kito (a technician trusts it); the timer runs again.
    move_collar_01_to_kito(bridge, 25 * 60)
    bridge.run_rules(now=T + timedelta(days=1, hours=2))

    offline = [(a.alert_type, a.animal_id) for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_id != hers.alert_id]
    assert offline == [("offline", bridge.kito)]



def collar_alert(bridge, alert_type: str, minutes: float, x: float, y: float, f_cnt: int, seq: int,
                 heard_min: float | None = None) -> None:
    """The collar's own alert raised `minutes` after T at (x, y), heard `heard_min` after T (default: then)."""
    at, heard = T + timedelta(minutes=minutes), T + timedelta(minutes=heard_min if heard_min is not None else minutes)
    lat, lon = rb.lat_lon(x, y)
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert(alert_type, seq=seq, time_s=int(at.timestamp()), lat=lat, lon=lon),
                                          f_cnt=f_cnt, received_at=heard))


def naserian(bridge) -> str:
    return next(a.animal_id for a in bridge.animals(viewer=b.RANGER) if a.name == "Naserian")


KITO_GROUND = (WORKSHOP[0] + 3_000, WORKSHOP[1])  # where Kito roams after the fitting, 3 km east


def test_naserians_mortality_alert_from_the_collars_flash_heard_after_the_swap_is_hers_not_grown_onto_kitos(bridge):
    rb.ingest_track(bridge, [(0, *WORKSHOP), (60, *WORKSHOP)])
    move_collar_01_to_kito(bridge, 180)
    rb.ingest_track(bridge, [(200 + 30 * i, *KITO_GROUND) for i in range(4)], first_f_cnt=100)
    collar_alert(bridge, "mortality", 300, *KITO_GROUND, f_cnt=110, seq=2)
    (his,) = bridge.open_alerts(viewer=b.RANGER)
    # The collar's flash still held Naserian's mortality alert of 01:30, sent at 05:30 from Kito's neck.
    collar_alert(bridge, "mortality", 90, *WORKSHOP, f_cnt=111, seq=1, heard_min=330)

    by_animal = {a.animal_id: a for a in bridge.open_alerts(viewer=b.RANGER)}
    assert set(by_animal) == {bridge.kito, naserian(bridge)}
    assert (by_animal[bridge.kito].alert_id, by_animal[bridge.kito].occurrences) == (his.alert_id, 1)
    hers = by_animal[naserian(bridge)]
    assert (hers.alert_type, hers.time) == ("mortality", T + timedelta(minutes=90))
    # Her evidence is her own last fixes (the alert's own among them), none of Kito's from after the swap.
    evidence_times = [p["time"] for p in hers.evidence["positions"]]
    assert evidence_times == [(T + timedelta(minutes=m)).isoformat() for m in (90, 60, 0)]


def test_kitos_own_mortality_alert_is_raised_for_him_after_naserians_backlog_alert_was_heard(bridge):
    rb.ingest_track(bridge, [(0, *WORKSHOP)])
    move_collar_01_to_kito(bridge, 180)
    collar_alert(bridge, "mortality", 90, *WORKSHOP, f_cnt=100, seq=1, heard_min=200)  # her backlog first
    collar_alert(bridge, "mortality", 300, *KITO_GROUND, f_cnt=101, seq=2)

    alerts = bridge.open_alerts(viewer=b.RANGER)
    assert sorted((a.animal_id, a.occurrences) for a in alerts) == sorted([(bridge.kito, 1), (naserian(bridge), 1)])


def test_a_low_battery_in_naserians_backlog_does_not_hide_kitos_low_battery_in_her_alert(bridge):
    move_collar_01_to_kito(bridge, 120)
    before, after = T + timedelta(minutes=60), T + timedelta(hours=4)
    # A status from the collar's flash, of 01:00 (still on Naserian), heard at 03:00 on Kito ...
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=int(before.timestamp()), battery_mv=3250), f_cnt=1,
                                          received_at=T + timedelta(hours=3)))
    # ... then his own, as low.
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=int(after.timestamp()), battery_mv=3240), f_cnt=2,
                                          received_at=after))

    assert [(a.alert_type, a.animal_id) for a in bridge.open_alerts(viewer=b.RANGER)] == [("low_battery", bridge.kito)]


def naserians_farmland_visit_resolved(bridge) -> Any:
    """Naserian walks into the farms at 00:30, her collar reports it, and a ranger resolves the visit
    (the alert, as it was open)."""
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, 311_000, 9_705_000), (30, 313_000, 9_705_000)])
    rb.collar_fence_alert(bridge, "geofence_farmland", 30, 313_000, 9_705_000, f_cnt=10)
    (hers,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(hers.alert_id, Viewer("ranger.amani", "ranger"), "true", note="chased back")
    return hers


def test_a_farmland_visit_the_ranger_resolved_for_naserian_does_not_swallow_kitos_collar_report(bridge):
    naserians_farmland_visit_resolved(bridge)
    # Two hours later the collar goes on Kito, who walks into the same farms an hour after.
    move_collar_01_to_kito(bridge, 150)
    rb.collar_fence_alert(bridge, "geofence_farmland", 210, 313_200, 9_705_000, f_cnt=20, seq=2)

    (his,) = bridge.open_alerts(viewer=b.RANGER)
    assert (his.alert_type, his.animal_id) == ("geofence_farmland", bridge.kito)


def test_an_offline_alert_the_ranger_resolved_for_naserian_does_not_keep_kitos_silent_collar_quiet(bridge):
    rb.ingest_track(bridge, [(0, *WORKSHOP)])
    bridge.run_rules(now=T + timedelta(days=1))
    (hers,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(hers.alert_id, Viewer("ranger.amani", "ranger"), "true", note="collar comes off")
    # The collar, still silent, goes on Kito; the timer runs twice.
    move_collar_01_to_kito(bridge, 25 * 60)
    bridge.run_rules(now=T + timedelta(days=1, hours=2))
    bridge.run_rules(now=T + timedelta(days=1, hours=3))

    assert [(a.alert_type, a.animal_id) for a in bridge.open_alerts(viewer=b.RANGER)] == [("offline", bridge.kito)]


def test_a_silent_collar_heard_again_on_kito_closes_both_offline_alerts_and_raises_no_new_one(bridge):
    rb.ingest_track(bridge, [(0, *WORKSHOP)])
    bridge.run_rules(now=T + timedelta(days=1))
    move_collar_01_to_kito(bridge, 25 * 60)
    bridge.run_rules(now=T + timedelta(days=1, hours=2))
    assert len(bridge.open_alerts(viewer=b.RANGER)) == 2
    # The collar speaks again from Kito's neck: it was silent, not dead, on either animal.
    rb.ingest_track(bridge, [(26 * 60 + 60 * i, *KITO_GROUND) for i in range(3)], first_f_cnt=100)
    bridge.run_rules(now=T + timedelta(days=1, hours=5))

    assert bridge.open_alerts(viewer=b.RANGER) == []
    closed = [(a.animal_id, a.verdict) for a in bridge.alerts(viewer=b.RANGER)]
    assert sorted(closed) == sorted([(naserian(bridge), "true"), (bridge.kito, "true")])


def test_naserians_exit_from_the_park_in_the_collars_flash_is_raised_for_her_once_heard_after_the_swap(bridge):
    rb.park_and_farm(bridge)
    rb.ingest_track(bridge, [(0, *WORKSHOP), (60, WORKSHOP[0] + 300, WORKSHOP[1])])
    move_collar_01_to_kito(bridge, 180)
    rb.ingest_track(bridge, [(180 + 60 * i, 303_000 + 200 * i, 9_702_000) for i in range(3)], first_f_cnt=100)
    # Naserian's flash, heard after the swap: at 01:30 and 02:00 she was 5 km out of the park, to the west.
    rb.ingest_track(bridge, [(90, 297_000, 9_702_000), (120, 297_200, 9_702_000)], first_f_cnt=200)

    (exit_alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (exit_alert.alert_type, exit_alert.animal_id) == ("geofence_exit", naserian(bridge))
    assert T + timedelta(minutes=60) < exit_alert.time < T + timedelta(minutes=90)
    # Kito walks on inside the park: nothing of his grows or closes her alert.
    rb.ingest_track(bridge, [(420 + 60 * i, 304_000 + 200 * i, 9_702_000) for i in range(3)], first_f_cnt=300)
    assert [(a.alert_id, a.occurrences) for a in bridge.open_alerts(viewer=b.RANGER)] == [(exit_alert.alert_id, 1)]


def test_naserians_farmland_report_from_the_collars_flash_joins_the_visit_the_ranger_resolved_for_her(bridge):
    hers = naserians_farmland_visit_resolved(bridge)
    move_collar_01_to_kito(bridge, 150)
    # Her flash repeats the farm report of 01:00, still in the same field, heard at 03:20 on Kito's neck.
    collar_alert(bridge, "geofence_farmland", 60, 313_100, 9_705_000, f_cnt=20, seq=2, heard_min=200)

    assert bridge.open_alerts(viewer=b.RANGER) == []
    (kept,) = bridge.alerts(viewer=b.RANGER)
    assert (kept.alert_id, kept.animal_id, kept.state) == (hers.alert_id, naserian(bridge), "resolved")


# ---------------------------------------------------------------- a collar in stock: taken off, worn by nobody


def take_off_naserians_collar(bridge, minutes: float) -> None:
    bridge.take_off_collar(naserian(bridge), viewer=TECHNICIAN, removed_at=T + timedelta(minutes=minutes))


def collar_01_status(bridge, minutes: float, battery_mv: int, f_cnt: int) -> None:
    at = T + timedelta(minutes=minutes)
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=int(at.timestamp()), battery_mv=battery_mv), f_cnt=f_cnt,
                                          received_at=at))


def test_ranger_is_not_paged_for_a_collar_lying_in_the_workshop(bridge):
    take_off_naserians_collar(bridge, 0)
    # On the bench for 13 h: still, then it calls a mortality of its own and its pack runs low; then
    # it lies silent in the drawer for a day and a half.
    rb.ingest_track(bridge, still_at(*WORKSHOP, 0, 13 * 60))
    collar_alert(bridge, "mortality", 13 * 60 + 5, *WORKSHOP, f_cnt=50, seq=3)
    collar_01_status(bridge, 13 * 60 + 10, 3250, f_cnt=51)
    bridge.run_rules(now=T + timedelta(days=2))

    assert bridge.alerts(viewer=b.RANGER) == []
    # What it said is kept for the technician: its battery, its fixes, and its alert acked so it stops repeating.
    (collar,) = bridge.devices(["collar-01"], viewer=TECHNICIAN)
    assert collar.battery_mv == 3250
    acks = [d for d in bridge.downlinks(viewer=ADMIN) if d.device_id == "collar-01" and d.command == "ack_alert"]
    assert [(d.seq, d.alert_id) for d in acks] == [(3, None)]


def test_naserians_alerts_still_open_when_her_collar_comes_off_are_closed_as_of_the_take_off(bridge):
    collar_01_status(bridge, 0, 3250, f_cnt=1)
    collar_alert(bridge, "mortality", 10, *WORKSHOP, f_cnt=2, seq=1)
    assert {a.alert_type for a in bridge.open_alerts(viewer=b.RANGER)} == {"low_battery", "mortality"}

    take_off_naserians_collar(bridge, 60)

    assert bridge.open_alerts(viewer=b.RANGER) == []
    for alert in bridge.alerts(viewer=b.RANGER):
        closed = bridge.alert_events(alert.alert_id, viewer=b.RANGER)[-1]
        assert (alert.state, alert.verdict, closed.action) == ("resolved", None, "auto_resolved")
        assert closed.detail == {"reason": "collar taken off Naserian: nobody wears it",
                                 "cleared_at": (T + timedelta(minutes=60)).isoformat()}
    # The ranger who went out still gives her verdict: it measures the mortality rule's precision.
    mortality = next(a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "mortality")
    assert bridge.resolve_alert(mortality.alert_id, b.RANGER, "false_alarm").verdict == "false_alarm"


def test_a_collar_fitted_out_of_stock_resumes_from_its_fitting_with_no_workshop_backlog(bridge):
    collar_01_status(bridge, 0, 3900, f_cnt=1)  # its last report on Naserian
    take_off_naserians_collar(bridge, 10)  # then out of reach in the workshop, unheard, for a day
    bridge.fit_collar(bridge.kito, "collar-01", viewer=TECHNICIAN, fitted_at=T + timedelta(hours=30))
    bridge.run_rules(now=T + timedelta(hours=31))  # 31 h since its last report, 1 h since its fitting
    assert bridge.alerts(viewer=b.RANGER) == []

    # On Kito it sends its flash: 8 h still on the bench, and a mortality it called there.
    rb.ingest_track(bridge, still_at(*WORKSHOP, 20, 8 * 60 + 20), first_f_cnt=10)
    collar_alert(bridge, "mortality", 7 * 60, *WORKSHOP, f_cnt=60, seq=4, heard_min=31 * 60)
    assert bridge.alerts(viewer=b.RANGER) == []

    bridge.run_rules(now=T + timedelta(hours=44))  # silent on Kito for 13 h: offline is his
    (offline,) = bridge.open_alerts(viewer=b.RANGER)
    assert (offline.alert_type, offline.animal_id) == ("offline", bridge.kito)
