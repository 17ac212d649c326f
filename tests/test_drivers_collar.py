"""The real LIS2DW12 driver plugs into the collar's loop: an hour of Collar.step() over a fake I2C bus."""

from __future__ import annotations

import math

import pytest
from driver_fakes import FakeI2C

from collar_firmware import codec
from collar_firmware.hal import Hal
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
