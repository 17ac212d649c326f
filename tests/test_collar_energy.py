"""The energy model and the collar bench: the figures a conservation team plans a deployment with."""

from __future__ import annotations

import pytest

from collar_firmware import config, energy
from simulator import collar_bench


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
