"""The reference board's HAL built over fake `machine`, `time` and `os`: clock, battery, flash
records, watchdog, reset cause and the LR1110 modem's host protocol."""

from __future__ import annotations

import os

import pytest
from driver_fakes import FakeClock, FakeI2C, FakeMachine, FakeModem, FakeTime, FakeUart, crc8

from collar_firmware.hal import Hal
from collar_firmware.hal.board import (
    BoardClock,
    BoardPower,
    FileStorage,
    Lr1110Modem,
    MissingDevice,
    UartModemTransport,
    make_board_hal,
    reset_cause_name,
)
from collar_firmware.hal.lis2dw12 import LIS2DW12
from collar_firmware.hal.ublox import UbloxM8

PINS = {"i2c_scl": 27, "i2c_sda": 26, "gnss_tx": 6, "gnss_rx": 8, "battery_adc": 4}


def board(tmp_path, machine: FakeMachine | None = None, **kwargs) -> tuple[Hal, FakeMachine, FakeModem]:
    clock = FakeClock()
    machine = machine or FakeMachine(uarts={1: FakeUart(clock)}, adc_raw_u16=32768, cause=FakeMachine.WDT_RESET)
    modem = FakeModem()
    hal = make_board_hal(**PINS, modem_transport=modem, storage_root=str(tmp_path / "data"), machine=machine,
                         time=FakeTime(clock), os=os, **kwargs)
    return hal, machine, modem


def test_board_hal_wires_each_chip_to_its_bus_and_pins(tmp_path):
    hal, machine, _ = board(tmp_path)
    assert isinstance(hal.imu, LIS2DW12) and hal.imu.address == 0x19
    assert (0x20, 0x30) in machine.i2c.writes, "25 Hz in low-power mode 1, as the energy budget counts"
    assert isinstance(hal.gnss, UbloxM8) and isinstance(hal.radio, Lr1110Modem)
    assert ("I2C", 0, 27, 26, 400000) in machine.made
    assert ("UART", 1, 9600, 6, 8) in machine.made
    assert ("ADC", 4) in machine.made
    assert ("WDT", 300000) in machine.made
    assert hal.faults == []
    assert hal.clock.reset_cause() == "watchdog"


def test_battery_voltage_is_read_through_the_divider(tmp_path):
    hal, machine, _ = board(tmp_path)
    assert hal.power.battery_mv() == 3600, "half of the 3.6 V ADC range at the pin, times two"
    assert machine.adc.reads == 8, "averaged over eight readings"
    power = BoardPower(machine.adc, hal.imu, top_kohm=560, bottom_kohm=1000)
    assert power.battery_mv() == 2808, "1.8 V at the pin through 560 k / 1 M"
    with pytest.raises(ValueError, match="0"):
        BoardPower(machine.adc, hal.imu, bottom_kohm=0)


def test_temperature_comes_from_the_accelerometer(tmp_path):
    machine = FakeMachine(i2c=FakeI2C(), uarts={1: FakeUart(FakeClock())})
    hal, _, _ = board(tmp_path, machine)
    machine.i2c.set_temperature_raw(32 << 4)  # 2 degC above 25
    assert hal.power.temperature_dc() == 270


def test_a_missing_accelerometer_does_not_stop_the_board_and_is_reported(tmp_path):
    machine = FakeMachine(i2c=FakeI2C(present=False), uarts={1: FakeUart(FakeClock())})
    hal, _, _ = board(tmp_path, machine)
    assert isinstance(hal.imu, MissingDevice)
    assert hal.faults and "0x19" in hal.faults[0]
    with pytest.raises(OSError, match="0x19"):
        hal.imu.read_fifo(bytearray(6))
    with pytest.raises(OSError):
        hal.power.temperature_dc()


def test_the_watchdog_is_the_machine_wdt_and_optional(tmp_path):
    hal, machine, _ = board(tmp_path)
    hal.watchdog.feed()
    hal.watchdog.feed()
    assert machine.wdt.feeds == 2
    hal2, _, _ = board(tmp_path, watchdog_ms=None)
    assert hal2.watchdog is None


def test_board_needs_a_modem_transport_or_modem_pins(tmp_path):
    with pytest.raises(ValueError, match="modem"):
        make_board_hal(**PINS, machine=FakeMachine(uarts={1: FakeUart()}), time=FakeTime(FakeClock()), os=os,
                       storage_root=str(tmp_path))


@pytest.mark.parametrize(("code", "cause"), [
    (FakeMachine.PWRON_RESET, "power_on"), (FakeMachine.HARD_RESET, "pin"), (FakeMachine.WDT_RESET, "watchdog"),
    (FakeMachine.SOFT_RESET, "software"), (FakeMachine.LOCKUP_RESET, "lockup"),
    (FakeMachine.BROWNOUT_RESET, "brownout"), (99, "unknown"),
])
def test_reset_causes_map_to_the_codec_names(code, cause):
    assert reset_cause_name(FakeMachine(cause=code)) == cause


# ---- clock -----------------------------------------------------------------------------------

def test_clock_counts_ticks_and_is_set_by_gnss_time():
    ms = FakeClock()
    clock = BoardClock(FakeTime(ms))
    assert clock.now_s() == 0, "unset: the collar flags clock_unsynced"
    clock.set_time_s(1772323200)
    ms.sleep_ms(2500)
    assert clock.now_s() == 1772323202
    ms.sleep_ms(600)
    assert clock.now_s() == 1772323203, "milliseconds carry over between readings"


def test_clock_survives_the_millisecond_counter_wrapping():
    ms = FakeClock(start_ms=(1 << 30) - 1500)
    clock = BoardClock(FakeTime(ms))
    clock.set_time_s(1772323200)
    for _ in range(10):
        clock.sleep_until(clock.now_s() + 60)
    assert clock.now_s() == 1772323200 + 600


def test_clock_sleeps_until_a_second_in_bounded_chunks():
    ms = FakeClock()
    naps: list[int] = []

    def nap(n: int) -> None:
        naps.append(n)
        ms.sleep_ms(n)

    clock = BoardClock(FakeTime(ms), sleep_ms=nap)
    clock.set_time_s(1772323200)
    clock.sleep_until(1772323200 + 150)
    assert clock.now_s() == 1772323350
    assert naps == [60000, 60000, 30000]


def test_an_rtc_kept_over_a_soft_reset_seeds_the_clock():
    clock = BoardClock(FakeTime(FakeClock(), epoch_s=1772323200))
    assert clock.now_s() == 1772323200


# ---- flash records ---------------------------------------------------------------------------

def test_records_survive_a_restart_and_are_replaced_whole(tmp_path):
    store = FileStorage(str(tmp_path / "data"), os)
    assert store.read("settings") is None
    store.write("settings", b"\x01\x02")
    store.write("settings", b"\x03\x04\x05")
    again = FileStorage(str(tmp_path / "data"), os)
    assert again.read("settings") == b"\x03\x04\x05"
    assert sorted(os.listdir(tmp_path / "data")) == ["settings"]


def test_a_write_cut_by_power_loss_leaves_the_old_record(tmp_path):
    root = tmp_path / "data"
    store = FileStorage(str(root), os)
    store.write("q07", b"old record")
    (root / "q07.tmp").write_bytes(b"new rec")  # power lost before the rename
    store = FileStorage(str(root), os)
    assert store.read("q07") == b"old record"
    assert not (root / "q07.tmp").exists(), "the torn temporary file is cleared at start-up"


def test_every_key_the_collar_uses_is_a_valid_record_name(tmp_path):
    store = FileStorage(str(tmp_path), os)
    for key in ("settings", "fences", "state", "model", "model.good", "q00", "q95"):
        store.write(key, key.encode())
        assert store.read(key) == key.encode()


def test_the_collar_keeps_its_last_good_model_by_comparing_and_copying_files_not_reading_them_whole(tmp_path):
    store = FileStorage(str(tmp_path), os)
    blob = bytes(range(256)) * 40 + b"tail"  # longer than the bytes handled at a time, not a multiple of them
    store.write("model", blob)
    store.mirror("model", "model.good")  # no last-good copy yet
    assert store.read("model.good") == blob
    assert sorted(os.listdir(tmp_path)) == ["model", "model.good"], "the copy replaced its record atomically"
    kept = os.stat(tmp_path / "model.good").st_ino
    store.mirror("model", "model.good")
    assert os.stat(tmp_path / "model.good").st_ino == kept, "the same bytes are not written again"
    changed = bytearray(blob)
    changed[-3] ^= 1
    for other in (bytes(changed), blob[:-1], blob + b"!", b""):  # one byte near the end differs; shorter; longer
        store.write("model.good", other)
        store.mirror("model", "model.good")
        assert store.read("model.good") == blob
    store.write("model", b"")
    store.mirror("model", "model.good")
    assert store.read("model.good") == b""


@pytest.mark.parametrize("key", ["", "../etc", "a/b", "x" * 32, "q.tmp", ".hidden", 7])
def test_storage_keys_cannot_escape_their_folder(tmp_path, key):
    with pytest.raises(ValueError):
        FileStorage(str(tmp_path), os).write(key, b"x")


# ---- the LR1110 modem ------------------------------------------------------------------------

def test_an_uplink_goes_to_the_modem_as_a_framed_send_command():
    modem = FakeModem()
    radio = Lr1110Modem(modem)
    assert radio.send(2, b"\x01\x02\x03", False) is True
    request = modem.requests[-1]
    assert request[:8] == bytes((0xA5, 0x01, 5, 2, 0, 1, 2, 3))
    assert request[8] == crc8(request, 1, 8)
    assert modem.uplinks == [(2, b"\x01\x02\x03", False)]


def test_a_confirmed_uplink_out_of_coverage_is_not_acknowledged():
    modem = FakeModem(coverage=False)
    radio = Lr1110Modem(modem)
    assert radio.send(10, bytes(11), True) is False
    assert radio.no_acks == 1
    assert radio.send(2, bytes(5), False) is True, "unconfirmed: sent is all it can say"


def test_a_modem_that_has_not_joined_does_not_send():
    radio = Lr1110Modem(FakeModem(joined=False))
    assert radio.send(1, b"\x01", True) is False
    assert radio.not_sent == 1


def test_a_downlink_heard_after_an_uplink_is_received_once():
    modem = FakeModem()
    modem.downlinks.append((32, b"\x02"))
    radio = Lr1110Modem(modem)
    assert radio.receive() is None
    radio.send(1, b"\x01", True)
    assert radio.receive() == (32, b"\x02")
    assert radio.receive() is None


def test_the_modem_reports_its_data_rate():
    assert Lr1110Modem(FakeModem(sf=12, bw_code=0)).data_rate() == (12, 125)
    assert Lr1110Modem(FakeModem(sf=8, bw_code=2)).data_rate() == (8, 500)


def test_a_garbled_or_missing_answer_is_an_oserror_and_bad_arguments_a_valueerror():
    modem = FakeModem()
    radio = Lr1110Modem(modem)
    modem.corrupt_next = True
    with pytest.raises(OSError, match="CRC"):
        radio.send(1, b"\x01", False)
    modem.silent = True
    with pytest.raises(OSError):
        radio.data_rate()
    with pytest.raises(ValueError, match="224"):
        radio.send(224, b"\x01", False)
    with pytest.raises(ValueError, match="300"):
        radio.send(1, bytes(300), False)


def test_the_modem_protocol_runs_over_a_uart_with_a_timeout():
    ms = FakeClock()
    modem = FakeModem()
    response = bytearray(64)

    def answer(data: bytes) -> None:
        n = modem.exchange(data, len(data), response)
        uart.schedule(ms.now_ms() + 40, b"\x00\x13" + bytes(response[:n]))  # line noise, then the frame

    uart = FakeUart(ms, on_write=answer)
    transport = UartModemTransport(uart, ms.now_ms, FakeTime(ms).ticks_diff, ms.sleep_ms)
    radio = Lr1110Modem(transport)
    assert radio.send(4, b"\xaa\xbb", False) is True
    assert modem.uplinks == [(4, b"\xaa\xbb", False)]
    assert radio.data_rate() == (9, 125)
    silent = UartModemTransport(FakeUart(ms), ms.now_ms, FakeTime(ms).ticks_diff, ms.sleep_ms, timeout_ms=500)
    with pytest.raises(OSError, match="did not answer"):
        Lr1110Modem(silent).data_rate()


# ---- TS005 multicast through the LR1110 modem --------------------------------------------------


def test_a_multicast_group_and_a_class_c_window_go_to_the_modem_as_framed_commands():
    modem = FakeModem()
    radio = Lr1110Modem(modem)
    assert radio.supports_class_c() is True
    key = bytes(range(16))
    assert radio.multicast_group(1, 0x01020304, key, 0, 0xFFFF) is True
    # A5 | 04 MC_GROUP | 29 | group | McAddr LE | McKey_encrypted | min LE | max LE | crc8
    body = b"\x01" + bytes((4, 3, 2, 1)) + key + bytes(4) + b"\xff\xff\x00\x00"
    assert modem.requests[-1] == b"\xa5\x04\x1d" + body + bytes((crc8(b"\x04\x1d" + body, 0, 31),))
    assert modem.groups[1] == (0x01020304, key, 0, 0xFFFF)
    radio.set_class_c(869_525_000, 3)
    assert modem.listening == (869_525_000, 3)
    assert modem.requests[-1][3:8] == (869_525_000).to_bytes(4, "little") + b"\x03"
    radio.set_class_a()
    assert modem.listening is None
    radio.multicast_delete(1)
    assert modem.groups == {}
    asked = sum(1 for r in modem.requests if r[1] == 0x08)
    assert asked == 1, "the capability is asked once"


def test_a_group_the_modem_refuses_or_out_of_range_is_not_taken():
    modem = FakeModem()
    radio = Lr1110Modem(modem)
    modem.refuse_groups = True
    assert radio.multicast_group(0, 1, bytes(16), 0, 10) is False
    modem.refuse_groups = False
    assert radio.multicast_group(4, 1, bytes(16), 0, 10) is False
    assert radio.multicast_group(0, 1, bytes(15), 0, 10) is False
    assert modem.groups == {}


def test_a_modem_firmware_without_class_c_is_never_asked_to_leave_class_a():
    for modem in (FakeModem(class_c=None), FakeModem(class_c=False)):
        radio = Lr1110Modem(modem)
        assert radio.supports_class_c() is False
        assert radio.multicast_group(0, 1, bytes(16), 0, 10) is False
        with pytest.raises(OSError, match="cannot do Class C"):
            radio.set_class_c(869_525_000, 3)
        radio.set_class_a()
        radio.multicast_delete(0)
        assert [r[1] for r in modem.requests] == [0x08], "only the question was asked"


def test_a_modem_that_did_not_answer_the_capability_question_is_asked_again():
    modem = FakeModem()
    radio = Lr1110Modem(modem)
    modem.silent = True
    with pytest.raises(OSError):
        radio.supports_class_c()
    modem.silent = False
    assert radio.supports_class_c() is True


def test_a_collar_on_a_modem_without_class_c_answers_the_session_request_mcgroupundefined(tmp_path):
    from test_collar_multicast import CLASS_C_SESSION_REQ, GROUP_SETUP_REQ, T0

    from collar_firmware import codec, multicast
    from collar_firmware.hal.board import FileStorage

    modem = FakeModem(class_c=None)
    mc = multicast.Multicast(Lr1110Modem(modem), FileStorage(str(tmp_path), None))
    got = []
    for frame in (GROUP_SETUP_REQ, CLASS_C_SESSION_REQ):
        msg = codec.decode(200, bytes.fromhex(frame), "down")
        name, values = mc.handle(msg["message"], msg, T0)
        got.append(codec.encode(name, values).hex())
    assert got == ["0205", "0410"], "IDerror; McGroupUndefined, no TimeToStart"
    assert mc.step(T0 + 3600) == 0 and modem.listening is None and not mc.scheduled()
