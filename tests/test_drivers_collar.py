"""The real LIS2DW12 driver plugs into the collar's loop: an hour of Collar.step() over a fake I2C bus."""

from __future__ import annotations

import math
import os

import pytest
from driver_fakes import FakeClock, FakeI2C, FakeMachine, FakeModem, FakeTime, LiveM8

from collar_firmware import codec
from collar_firmware.hal import Hal
from collar_firmware.hal.board import make_board_hal
from collar_firmware.hal.lis2dw12 import LIS2DW12
from collar_firmware.main import ERR_IMU, Collar
from simulator.hal_sim import make_hal

START_S = 1772355600  # 2026-03-01 09:00 UTC, noon in the reserve
HOUR = 3600


def walking_mg(t_ms: int) -> tuple[int, int, int]:
    """A walking elephant's neck: gravity plus a 0.9 Hz stride, in mg."""
    phase = 2 * math.pi * 0.9 * t_ms / 1000
    return (int(80 + 180 * math.sin(phase)), int(-150 + 90 * math.cos(phase)), int(-975 + 60 * math.sin(2 * phase)))


def sim_source(t_s: int, n: int, rate_hz: int) -> list[tuple[int, int, int]]:
    return [walking_mg(k * 1000 // rate_hz) for k in range(n)]


def live_an_hour(hal: Hal) -> tuple[Collar, list[dict]]:
    collar = Collar(hal)
    wake_s = START_S
    while wake_s < START_S + HOUR:
        hal.clock.sleep_until(wake_s)
        wake_s = collar.step()
    return collar, [codec.decode(port, payload) for _, port, payload, _, _ in hal.radio.uplinks]


def hal_with_driver() -> tuple[Hal, FakeI2C]:
    bus = FakeI2C(source=walking_mg)
    hal = make_hal(START_S, sim_source, lambda t: (0.572, 37.585))
    hal.imu = LIS2DW12(bus, rate_hz=25, range_g=4, sleep_ms=bus.advance_ms)
    return hal, bus


def test_collar_classifies_and_summarises_an_hour_read_through_the_lis2dw12_driver():
    hal, bus = hal_with_driver()
    collar, uplinks = live_an_hour(hal)
    assert collar.errors[ERR_IMU] == 0, "every window came whole from the FIFO"
    assert collar.windows >= 60, "a window a minute"
    assert hal.imu.overruns == 0 and hal.imu.short_windows == 0
    assert bus.range_g() == 4 and bus.odr_mhz() == 25000, "the collar's settings reached the chip"
    activity = [u for u in uplinks if u["message"] == "activity"]
    assert len(activity) >= 3, "15-minute summaries queued and sent"
    walk = collar.model.classes.index("walk")
    for summary in activity:
        assert summary["model_version"] == collar.model.version
        assert summary["shares"][walk] == 100, summary
        assert 100 <= summary["vedba_mean_mg"] <= 200, summary
    assert [u["behaviour"] for u in uplinks if u["message"] == "status"] == ["walk"]


def test_the_driver_and_the_simulated_imu_give_the_collar_the_same_behaviour():
    driver_hal, _ = hal_with_driver()
    _, through_driver = live_an_hour(driver_hal)
    _, simulated = live_an_hour(make_hal(START_S, sim_source, lambda t: (0.572, 37.585)))
    a = [u for u in through_driver if u["message"] == "activity"]
    b = [u for u in simulated if u["message"] == "activity"]
    assert [u["shares"] for u in a] == [u["shares"] for u in b]
    for x, y in zip(a, b, strict=True):
        assert x["vedba_mean_mg"] == pytest.approx(y["vedba_mean_mg"], abs=3), "only the chip's 0.488 mg steps differ"


def test_a_collar_on_the_reference_board_hal_sets_its_clock_from_gnss_and_sends_through_the_modem(tmp_path):
    ms = FakeClock()
    position = (0.6012345, 37.4987654)
    gnss = LiveM8(ms, lambda: position, utc_at_zero_s=START_S - 7, ttff_ms=6000)
    machine = FakeMachine(i2c=FakeI2C(source=walking_mg, clock=ms), uarts={1: gnss}, adc_raw_u16=33000,
                          cause=FakeMachine.PWRON_RESET)
    modem = FakeModem()
    hal = make_board_hal(i2c_scl=27, i2c_sda=26, gnss_tx=6, gnss_rx=8, battery_adc=4, modem_transport=modem,
                         storage_root=str(tmp_path / "data"), machine=machine, time=FakeTime(ms), os=os)
    collar = Collar(hal)
    steps = 0
    while ms.now_ms() < HOUR * 1000:
        hal.clock.sleep_until(collar.step())
        steps += 1
    uplinks = [codec.decode(port, payload) for port, payload, _ in modem.uplinks]
    assert hal.clock.sets >= 1 and hal.clock.now_s() >= START_S + HOUR - 60, "GNSS time set the clock"
    assert not any(collar.errors), f"no stage failed: {list(collar.errors)}"
    assert hal.imu.short_windows == 0
    fixes = [f for u in uplinks if u["message"] == "positions" for f in u["fixes"]]
    assert fixes and fixes[-1]["lat"] == pytest.approx(position[0], abs=1e-5)
    assert fixes[-1]["lon"] == pytest.approx(position[1], abs=1e-5)
    walk = collar.model.classes.index("walk")
    activity = [u for u in uplinks if u["message"] == "activity" and u["time_s"] >= START_S]
    assert activity and all(u["shares"][walk] == 100 for u in activity)
    status = [u for u in uplinks if u["message"] == "status"]
    assert status[0]["reset_cause"] == "power_on"
    assert status[-1]["clock_unsynced"] == 0 and status[-1]["model_fallback"] == 0, "model read from flash files"
    assert status[0]["battery_mv"] == 33000 * 3600 // 65535 * 2
    assert machine.wdt.feeds == steps, "fed once per duty cycle"
    assert gnss.wakes >= 1 and gnss.awake_since_ms == -1, "the receiver sleeps between fixes"
    assert os.listdir(tmp_path / "data"), "queue records kept in flash files"
