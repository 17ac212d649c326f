"""The simulated HAL back ends behave as their docstrings promise (the twin builds on them)."""

from __future__ import annotations

from array import array

import pytest

from collar_firmware.geo import METRES_PER_DEGREE, metres_per_degree_lon
from simulator.battery_curve import battery_percent
from simulator.hal_sim import (
    PowerCut,
    SimClock,
    SimFlash,
    SimGNSS,
    SimIMU,
    SimRadio,
    curve_drain,
    linear_drain,
    make_hal,
)

START_S = 1772323200


def test_clock_jumps_forward_only():
    clock = SimClock(START_S, "watchdog")
    clock.sleep_until(START_S + 600)
    clock.sleep_until(START_S + 60)
    assert clock.now_s() == START_S + 600 and clock.slept_s == 600 and clock.reset_cause() == "watchdog"


def test_imu_takes_a_callable_of_triples_or_a_flat_list_clipped_to_the_range():
    clock = SimClock(START_S)
    buf = array("h", bytes(6 * 4))
    imu = SimIMU(clock, lambda t, n, rate: [(1, 2, 3)] * n)
    assert imu.read_fifo(buf) == 4 and list(buf[:3]) == [1, 2, 3]
    imu = SimIMU(clock, lambda t, n, rate: [9000, -9000, 5] * n)
    imu.configure(25, 4)
    imu.read_fifo(buf)
    assert list(buf[:3]) == [4000, -4000, 5]
    imu.fail_reads = 1
    with pytest.raises(OSError):
        imu.read_fifo(buf)
    with pytest.raises(ValueError):
        imu.configure(25, 3)


def test_gnss_noise_is_deterministic_and_bounded():
    clock = SimClock(START_S)
    a = SimGNSS(clock, lambda t: (0.5, 37.5), noise_m=20, seed=7)
    b = SimGNSS(clock, lambda t: (0.5, 37.5), noise_m=20, seed=7)
    fixes = [a.acquire(90) for _ in range(20)]
    assert fixes == [b.acquire(90) for _ in range(20)]
    assert all(abs(f[0] - 0.5) * METRES_PER_DEGREE <= 20.01 for f in fixes)
    assert SimGNSS(clock, lambda t: None).acquire(90) is None
    assert SimGNSS(clock, lambda t: (0, 0), ttff_s=120).acquire(90) is None


def test_gnss_noise_is_in_metres_east_as_well_as_north_far_from_the_equator():
    clock = SimClock(START_S)
    gnss = SimGNSS(clock, lambda t: (60.0, 10.0), noise_m=20, seed=3)
    fixes = [gnss.acquire(90) for _ in range(40)]
    east_m = [abs(f[1] - 10.0) * metres_per_degree_lon(60.0) for f in fixes]
    north_m = [abs(f[0] - 60.0) * METRES_PER_DEGREE for f in fixes]
    assert max(east_m) <= 20.01 and max(north_m) <= 20.01
    assert max(east_m) > 15, "the east error spans the stated half-width, not half of it"


def test_radio_delivers_a_downlink_only_after_an_uplink_a_gateway_heard():
    clock = SimClock(START_S)
    covered = [False]
    radio = SimRadio(clock, coverage=lambda t: covered[0])
    radio.push_downlink(32, b"\x02")
    assert radio.send(2, b"\x01", False) is True, "unconfirmed: the collar cannot tell"
    assert radio.receive() is None
    assert radio.send(1, b"\x01", True) is False
    covered[0] = True
    assert radio.send(1, b"\x01", True) is True
    assert radio.receive() == (32, b"\x02") and radio.receive() is None
    assert [u[4] for u in radio.uplinks] == [False, False, True]


def test_flash_power_cut_tears_the_armed_write_and_keeps_the_others():
    flash = SimFlash()
    flash.write("a", b"1234")
    flash.arm_power_cut(1, 2)
    flash.write("b", b"5678")
    with pytest.raises(PowerCut):
        flash.write("c", b"abcdef")
    assert flash.read("a") == b"1234" and flash.read("b") == b"5678" and flash.read("c") == b"ab"


def test_battery_sources_fall_with_time():
    linear = linear_drain(3600, 10, START_S)
    assert linear(START_S + 86400 * 3) == 3570
    curve = curve_drain(8.0, START_S)
    assert curve(START_S) == 3650
    ten_years = curve(START_S + 3650 * 86400)
    assert ten_years < 3600 and battery_percent(ten_years) < 60


def test_make_hal_bundles_every_back_end():
    hal = make_hal(START_S, lambda t, n, r: [(0, 0, -1000)] * n, lambda t: (0.5, 37.5))
    assert hal.clock.now_s() == START_S and hal.watchdog is not None and hal.fuota is None
    assert hal.power.battery_mv() == 3640 and hal.radio.data_rate() == (7, 125)
