"""The energy model and the collar bench: the figures a conservation team plans a deployment with."""

from __future__ import annotations

import pytest

from collar_firmware import codec, config, scheduler
from simulator import collar_bench, energy


def test_default_settings_last_beyond_eight_years_on_the_reference_pack():
    mah = energy.estimate(config.defaults())
    assert 2.0 < mah["total"] < 15.0
    assert energy.battery_life_years(mah["total"]) >= 8.0


def test_gnss_dominates_and_more_fixes_cost_more():
    hourly = energy.estimate(config.defaults())
    fast = dict(config.defaults(), gnss_interval_s=600)
    assert energy.estimate(fast)["total"] > hourly["total"]
    assert hourly["gnss_fixes"] == max(v for k, v in hourly.items() if k != "total")


def test_transmit_current_grows_with_output_power_and_slower_data_rates_cost_more():
    assert energy.tx_current_ma(14) < energy.tx_current_ma(20)
    sf7 = energy.estimate(config.defaults(), sf=7)
    sf12 = energy.estimate(config.defaults(), sf=12)
    assert sf12["radio_tx"] > 20 * sf7["radio_tx"]


def test_planning_estimate_charges_the_airtime_of_the_bytes_the_collar_really_sends():
    settings = dict(config.defaults(), positions_per_uplink=3)
    activity = codec.encode("activity", {"time_s": 1_700_000_000, "interval_min": 15, "model_version": 1,
                                         "vedba_mean_mg": 40, "vedba_max_mg": 300,
                                         "shares": [50.0, 25.0, 20.0, 5.0]})
    fix = {"dt_s": 3600, "lat": -2.5, "lon": 37.5}
    positions = codec.encode("positions", {"time_s": 1_700_000_000, "fixes": [fix, fix, fix]})
    status = codec.encode("status", {"time_s": 1_700_000_000, "lat": -2.5, "lon": 37.5, "fix_age_s": 60,
                                     "battery_mv": 3600, "temperature_c": 24.5, "fw_version": "1.0.0",
                                     "model_version": 1, "uptime_h": 5, "reset_cause": "power_on",
                                     "behaviour": "walk", "queue_depth": 0, "errors": 0,
                                     "update_kind": "none", "update_outcome": "none", "update_version": 0,
                                     "update_reason": "ok"})  # version 2: the last update's result
    assert (len(activity), len(positions), len(status)) == (16, 29, 34)
    day = 86400
    airtime_s = (day // settings["summary_interval_s"] * scheduler.airtime_us(len(activity), 7, 125)
                 + day // settings["status_interval_s"] * scheduler.airtime_us(len(status), 7, 125)
                 + day // settings["gnss_interval_s"] // 3 * scheduler.airtime_us(len(positions), 7, 125)) / 1e6
    mah = energy.estimate(settings)
    assert mah["radio_tx"] == pytest.approx(energy.tx_current_ma(energy.EU868_TX_DBM) * airtime_s / 3600)


def test_parts_add_up_to_the_total():
    mah = energy.estimate(config.defaults())
    assert abs(sum(v for k, v in mah.items() if k != "total") - mah["total"]) < 1e-9


def test_self_discharge_bounds_battery_life_even_at_zero_load():
    years = energy.battery_life_years(0.0)
    assert years == pytest.approx(energy.USABLE_FRACTION * 100 / energy.SELF_DISCHARGE_PCT_PER_YEAR)


@pytest.mark.micropython
@pytest.mark.slow
def test_collar_bench_meets_the_goals_on_a_day_under_micropython():
    figures = collar_bench.run(days=1, seed=1)
    assert figures["micropython"] is True
    assert figures["cpython_identical"] is True
    assert figures["reduction"] >= 0.9995
    assert figures["airtime_s_per_day"] <= figures["fair_use_airtime_s"]
    assert figures["battery_life_years"] >= 8.0
    assert figures["max_uplink_bytes"] <= 51
    assert figures["fuel_per_hour"] > 0 and figures["mpy_bytes"] > 0 and figures["peak_heap_bytes"] > 0
    assert figures["gnss_fixes_per_day"] == 24.0
