"""The LIS2DW12 accelerometer driver seen from its I2C bus: probe, bring-up bytes, FIFO to milli-g."""

from __future__ import annotations

from array import array

import pytest
from driver_fakes import COUNTS, MILLI_G, FakeI2C

from collar_firmware.hal.lis2dw12 import LIS2DW12, nearest_odr

CTRL1, CTRL2, CTRL6, FIFO_CTRL = 0x20, 0x21, 0x25, 0x2E


def samples(n: int) -> array:
    return array("h", bytes(6 * n))


def test_collar_without_accelerometer_reports_the_i2c_address_it_probed():
    with pytest.raises(OSError, match="0x19"):
        LIS2DW12(FakeI2C(present=False))
    with pytest.raises(OSError, match="0x18"):
        LIS2DW12(FakeI2C(address=0x19), address=0x18)


def test_another_chip_at_the_address_is_refused_with_what_it_answered():
    with pytest.raises(OSError, match=r"0x19.*WHO_AM_I 0x33"):
        LIS2DW12(FakeI2C(chip_id=0x33))


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"range_g": 3}, "3"),
    ({"range_g": 32}, "32"),
    ({"rate_hz": 0}, "0"),
    ({"rate_hz": 5000}, "5000"),
    ({"address": 0x20}, "32"),
])
def test_bad_driver_arguments_are_refused_before_the_bus_is_touched(kwargs, named):
    bus = FakeI2C()
    with pytest.raises(ValueError, match=named):
        LIS2DW12(bus, **kwargs)
    assert bus.writes == [], "arguments are checked first"


def test_bring_up_resets_then_sets_rate_mode_bdu_scale_and_continuous_fifo():
    bus = FakeI2C()
    imu = LIS2DW12(bus, rate_hz=25, range_g=4)
    assert bus.writes == [
        (CTRL2, 0x40),  # 1. soft reset
        (CTRL1, 0x34),  # 2. ODR 25 Hz (0011), high-performance mode (01)
        (CTRL2, 0x0C),  # 3. block data update + register auto-increment
        (CTRL6, 0x14),  # 4. +-4 g (FS 01) + low noise
        (FIFO_CTRL, 0x00),  # 5. bypass: the FIFO starts empty
        (FIFO_CTRL, 0xC0),  # 6. continuous mode
    ]
    assert imu.odr_mhz == 25000 and imu.range_g == 4


@pytest.mark.parametrize(("rate_hz", "range_g", "ctrl1", "ctrl6", "odr_mhz"), [
    (10, 2, 0x24, 0x04, 12500),  # 10 Hz is not offered: the nearest, 12.5 Hz
    (12.5, 2, 0x24, 0x04, 12500),
    (30, 8, 0x34, 0x24, 25000),
    (50, 16, 0x44, 0x34, 50000),
    (100, 4, 0x54, 0x14, 100000),
    (180, 4, 0x64, 0x14, 200000),
])
def test_configure_writes_the_datasheet_register_values(rate_hz, range_g, ctrl1, ctrl6, odr_mhz):
    bus = FakeI2C()
    imu = LIS2DW12(bus)
    bus.writes.clear()
    imu.configure(rate_hz, range_g)
    assert bus.writes == [(CTRL1, ctrl1), (CTRL2, 0x0C), (CTRL6, ctrl6), (FIFO_CTRL, 0x00), (FIFO_CTRL, 0xC0)]
    assert imu.odr_mhz == odr_mhz
    assert nearest_odr(rate_hz)[0] == odr_mhz


@pytest.mark.parametrize(("rate_hz", "ctrl1", "odr_mhz"), [(25, 0x30, 25000), (50, 0x40, 50000), (400, 0x60, 200000)])
def test_low_power_mode_one_is_selected_with_its_own_rate_ceiling(rate_hz, ctrl1, odr_mhz):
    bus = FakeI2C()
    imu = LIS2DW12(bus, rate_hz=rate_hz, range_g=2, low_power=True)
    assert bus.writes[1] == (CTRL1, ctrl1), "MODE 00, LP_MODE 00: low-power mode 1"
    assert imu.odr_mhz == odr_mhz
    bus.push_raw(250 << 4, -(250 << 4), 2047 << 4)  # 12-bit samples, left-justified
    buf = samples(1)
    imu.read_fifo(buf)
    assert list(buf) == [244, -244, 1998], "0.976 mg/LSB at +-2 g in 12-bit mode"


def test_configure_refuses_a_range_the_chip_does_not_have():
    imu = LIS2DW12(FakeI2C())
    with pytest.raises(ValueError, match="6"):
        imu.configure(25, 6)


@pytest.mark.parametrize("range_g", [2, 4, 8, 16])
def test_fifo_samples_become_milli_g_at_each_range(range_g):
    bus = FakeI2C()
    imu = LIS2DW12(bus, range_g=range_g)
    bus.push_raw(COUNTS[0] << 2, COUNTS[1] << 2, COUNTS[2] << 2)  # 14-bit, left-justified
    bus.push_raw(COUNTS[3] << 2, COUNTS[4] << 2, COUNTS[5] << 2)
    buf = samples(2)
    assert imu.read_fifo(buf) == 2
    assert list(buf) == MILLI_G[range_g]


def test_read_fifo_drains_only_what_the_fifo_holds_without_a_sleep():
    bus = FakeI2C()
    imu = LIS2DW12(bus)
    for i in range(5):
        bus.push_mg(i * 100, -i * 100, 1000)
    buf = samples(10)
    assert imu.read_fifo(buf) == 5
    assert list(buf[:15:3]) == [0, 100, 200, 300, 400]
    assert bus.count == 0


def _walking(t_ms: int) -> tuple[int, int, int]:
    """A sample whose x is its own index (ms / 40 at 25 Hz), so order and gaps show."""
    return (t_ms // 40, -300, 950)


def test_a_ten_second_window_is_collected_across_fifo_refills_in_order():
    bus = FakeI2C(source=_walking)
    imu = LIS2DW12(bus, rate_hz=25, range_g=4, sleep_ms=bus.advance_ms)
    buf = samples(250)
    assert imu.read_fifo(buf) == 250
    xs = list(buf[0::3])
    assert xs == list(range(xs[0], xs[0] + 250)), "no sample lost or repeated"
    assert set(buf[1::3]) == {-300} and set(buf[2::3]) == {950}
    assert imu.overruns == 0 and bus.lost == 0 and imu.short_windows == 0
    assert 8 <= bus.burst_reads <= 40, "one burst per batch, not one read per sample"
    assert bus.max_burst_samples <= 32


def test_fifo_overrun_inside_a_window_is_counted():
    bus = FakeI2C(source=_walking)

    def oversleep(ms: int) -> None:
        bus.advance_ms(ms * 3)  # the MCU woke late: the FIFO overflowed

    imu = LIS2DW12(bus, sleep_ms=oversleep)
    buf = samples(250)
    assert imu.read_fifo(buf) == 250
    assert bus.lost > 0
    assert imu.overruns > 0


def test_a_silent_fifo_gives_a_short_window_instead_of_hanging():
    bus = FakeI2C()  # no source: the FIFO never fills
    imu = LIS2DW12(bus, sleep_ms=bus.advance_ms)
    assert imu.read_fifo(samples(250)) == 0
    assert imu.short_windows == 1
    assert bus.t_ms < 1000, "gives up after a few sample periods"


def test_read_into_gives_the_newest_sample():
    bus = FakeI2C()
    imu = LIS2DW12(bus)
    for mg in (100, 200, 300):
        bus.push_mg(mg, 0, -mg)
    buf3 = array("h", [0, 0, 0])
    assert imu.read_into(buf3) == 1
    assert list(buf3) == [300, 0, -300]
    assert imu.read_into(buf3) == 0, "the FIFO is empty now"


@pytest.mark.parametrize(("raw16", "deci_c"), [(0, 250), (16 << 4, 260), (-(16 * 5) << 4, 200), (8 << 4, 255)])
def test_temperature_reads_out_t_at_sixteen_lsb_per_degree_from_25_c(raw16, deci_c):
    bus = FakeI2C()
    imu = LIS2DW12(bus)
    bus.set_temperature_raw(raw16)
    assert imu.temperature_dc() == deci_c


def test_a_chip_stuck_in_soft_reset_is_an_oserror():
    with pytest.raises(OSError, match="soft reset"):
        LIS2DW12(FakeI2C(stuck_in_reset=True))
