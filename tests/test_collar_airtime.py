"""Talking within the law of the air: AN1200.13 airtime, EU868 duty cycle, fair use, priorities."""

from __future__ import annotations

import math

from collar_helpers import CollarWorld
from hypothesis import given
from hypothesis import strategies as st

from collar_firmware import codec, scheduler
from collar_firmware.scheduler import PRIO_ALERT, PRIO_STATUS, PRIO_SUMMARY, Scheduler, airtime_us
from simulator.scripted import START_S, ScriptedRun

HOUR = 3600


def _an1200_13_s(payload: int, sf: int, bw_khz: int) -> float:
    """Semtech AN1200.13 in floating point: 8-symbol preamble, explicit header, CRC, CR 4/5."""
    t_sym = 2**sf / (bw_khz * 1000)
    de = 1 if t_sym >= 0.016 else 0
    pl = payload + 13
    n = 8 + max(math.ceil((8 * pl - 4 * sf + 28 + 16) / (4 * (sf - 2 * de))) * 5, 0)
    return (8 + 4.25 + n) * t_sym


def test_airtime_matches_the_semtech_an1200_13_examples():
    assert abs(airtime_us(10, 7, 125) / 1e6 - 0.0617) < 0.0005  # SF7: 10 B ~ 62 ms
    assert abs(airtime_us(24, 12, 125) / 1e6 - 1.974) < 0.002  # SF12: 24 B ~ 1.97 s
    assert abs(airtime_us(51, 12, 125) / 1e6 - 2.793) < 0.002  # SF12: 51 B ~ 2.79 s


@given(st.integers(0, 51), st.integers(7, 12), st.sampled_from([125, 250]))
def test_integer_airtime_agrees_with_the_formula_to_a_microsecond(payload, sf, bw_khz):
    assert abs(airtime_us(payload, sf, bw_khz) - _an1200_13_s(payload, sf, bw_khz) * 1e6) <= 1.0


def test_sub_band_closes_for_ninety_nine_times_the_airtime():
    s = Scheduler()
    t = START_S + 100
    air = airtime_us(51, 12, 125)
    b0 = s.pick_band(t, air, PRIO_ALERT)
    s.record(t, b0, air)
    b1 = s.pick_band(t, air, PRIO_ALERT)
    assert b1 not in (-1, b0), "the other 1 % sub-band is still open"
    s.record(t, b1, air)
    assert s.pick_band(t + 200, air, PRIO_ALERT) == -1, "both sub-bands closed for ~277 s"
    reopen = s.next_band_free_s(t)
    assert reopen - t == math.ceil(2794 * 100 / 1000)
    assert s.pick_band(reopen, air, PRIO_ALERT) >= 0


def test_fair_use_holds_summaries_before_status_and_never_holds_alerts():
    s = Scheduler(fair_use_airtime_s=30)
    t = START_S
    air = airtime_us(51, 12, 125)
    sent = 0
    while s.pick_band(t, air, PRIO_SUMMARY) >= 0:
        s.record(t, s.pick_band(t, air, PRIO_SUMMARY), air)
        t += 600
        sent += 1
    assert s.used_ms_today <= 0.75 * 30_000
    assert s.pick_band(t, air, PRIO_STATUS) >= 0, "status still has room"
    s.used_ms_today = 30_000
    assert s.pick_band(t, air, PRIO_STATUS) == -1
    assert s.pick_band(t, air, PRIO_ALERT) >= 0, "alerts are only bound by the duty-cycle law"
    assert s.pick_band(START_S + 86400, air, PRIO_SUMMARY) >= 0, "a new day, a new budget"


def test_a_day_at_sf12_stays_within_the_fair_use_budget_by_merging_summaries():
    run = ScriptedRun(sf=12, events=False)
    run.advance(START_S + 86400)
    lines = run.take_uplinks()
    airtime_s = sum(airtime_us(len(line.split()[2]) // 2, 12, 125) for line in lines) / 1e6
    assert airtime_s <= 30.0 * 1.05, airtime_s
    activity = [codec.decode(2, bytes.fromhex(line.split()[2])) for line in lines if line.split()[1] == "2"]
    assert activity and max(a["interval_min"] for a in activity) >= 30, "summaries merged to save airtime"


def test_every_uplink_of_a_scripted_day_fits_51_bytes_and_alerts_fit_11():
    run = ScriptedRun()
    run.advance(START_S + 86400)
    for line in run.take_uplinks():
        _, port, hexdata, _, _ = line.split()
        size = len(hexdata) // 2
        assert size <= codec.MAX_UPLINK_BYTES
        if port == "10":
            assert size <= codec.MAX_ALERT_BYTES


def test_alert_goes_out_before_waiting_summaries():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    world.run_for(2 * HOUR)
    world.battery_mv = 3100
    world.run_for(30 * 60)
    world.coverage = True
    world.run_for(HOUR)
    after = [d["message"] for d in world.decoded() if d["heard"] and d["sent_s"] > START_S + 3 * HOUR]
    assert after[0] == "alert"


def test_gnss_rate_adapts_to_tracking_battery_and_stillness():
    settings = {"gnss_interval_s": 3600, "tracking_gnss_interval_s": 120}
    assert scheduler.gnss_interval_s(settings, False, 0, 0) == 3600
    assert scheduler.gnss_interval_s(settings, True, 0, 0) == 120
    assert scheduler.gnss_interval_s(settings, False, 1, 0) == 7200
    assert scheduler.gnss_interval_s(settings, False, 2, 0) == 4 * 3600
    assert scheduler.gnss_interval_s(settings, False, 0, 5 * 3600) == 7200
