"""`tembo bench replay`: real elephant tracks (Movebank, Wall et al. 2014) through the real firmware,
with three GNSS schedules side by side: fixed hourly, fixed 15-minute and smart fixes (adaptive).

Each real track is replayed as a collared animal inside the demo reserve (shape kept, moved to start
near the centre): the collar firmware runs on the twin's hardware, the network delivers its uplinks as
The Things Stack JSON, and the bench decodes them with the codec, as the bridge would. Per schedule:

- `path_kept`: the length of the real track through the positions at the collar's fix times, over the
  length of the 15-minute track (tracks fixed every 15 minutes or more often; the schedule's share of
  the path, GNSS noise left out);
- `median_position_error_m`: reported positions against the real track at their times (GNSS noise and
  the wire's int24 rounding);
- `fixes_per_day` and `battery_life_years`: the fixes tried and the uplinks sent in the run, through the
  datasheet energy model of `simulator.energy` (MCU time from an assumed fuel per window);
- the alerts the collar raised for animals that were alive and well.

The data set is not part of the project: by default it is read from ../shared/data beside the checkout;
without it the bench stops with a message saying where it looked (`BenchDataMissing`).
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from collar_firmware import codec, config
from simulator import energy
from simulator.fleet import Fleet
from simulator.geo import distances_m
from simulator.movebank import MovebankReplay, read_movebank, replay_animals
from simulator.reserve import demo_reserve

DATA_FILE = "elephants_wall2014_movebank.csv.gz"
START = datetime(2026, 3, 1, tzinfo=UTC)
ASSUMED_FUEL_PER_WINDOW = 12_000_000  # MicroPython fuel of one window's duty cycle (collar bench)
SCHEDULES = {
    "fixed_hourly": {"gnss_interval_s": 3600},
    "fixed_15min": {"gnss_interval_s": 900},
    "adaptive": {"gnss_adaptive": 1},
}
GOAL_PATH_KEPT = 0.95
GOAL_YEARS = 10.0


class BenchDataMissing(FileNotFoundError):
    """The bench's data file is not there; the message says where it looked and how to give one."""


def default_path() -> Path:
    """The Wall 2014 elephant tracks in ../shared/data beside the checkout."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / DATA_FILE


def _path_m(lats: np.ndarray, lons: np.ndarray) -> float:
    if len(lats) < 2:
        return 0.0
    return float(distances_m(lons[:-1], lats[:-1], lons[1:], lats[1:]).sum())


def _collar_run(animals, days: float, seed: int, settings: dict) -> tuple[Fleet, dict, dict]:
    """Run the fleet; return it, each device's decoded fixes (time_s, lat, lon) and alert counts."""
    fleet = Fleet(n_collars=len(animals), seed=seed, start=START, days=days, animals=animals,
                  reserve=demo_reserve(), settings=settings, library_windows=32)
    fixes: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    alerts: dict[str, Counter] = defaultdict(Counter)
    seen: set[tuple[str, int]] = set()
    seen_alerts: set[tuple[str, int, int]] = set()
    for uplink in fleet.uplinks():
        device = uplink["end_device_ids"]["device_id"]
        message = uplink["uplink_message"]
        key = (device, int(message.get("f_cnt", 0)))
        if key in seen:  # a repeat delivery of the same frame
            continue
        seen.add(key)
        fields = codec.decode(int(message.get("f_port", 0)), base64.b64decode(message.get("frm_payload", "")))
        if fields["message"] == "positions":
            for fix in fields["fixes"]:
                fixes[device].append((fields["time_s"] + fix["dt_s"], fix["lat"], fix["lon"]))
        elif fields["message"] == "alert" and (device, fields["seq"], fields["time_s"]) not in seen_alerts:
            seen_alerts.add((device, fields["seq"], fields["time_s"]))  # repeats until acked count once
            alerts[device][fields["alert_type"]] += 1
    return fleet, fixes, alerts


def _battery_life_years(fleet: Fleet, device: str, days: float) -> tuple[float, float]:
    """(fixes tried per day, battery life in years) of one collar's run, through the energy model."""
    collar = fleet.collar(device)
    gnss = collar.hal.gnss
    tries = gnss.fixes + gnss.failures
    windows_per_day = collar.windows / days
    mah = energy.daily_mah(
        windows_per_day=windows_per_day,
        mcu_active_s_per_day=ASSUMED_FUEL_PER_WINDOW * windows_per_day * energy.CYCLES_PER_FUEL / energy.MCU_HZ,
        gnss_fixes_per_day=tries / days,
        gnss_ttff_s=gnss.on_s / tries if tries else 0,
        uplinks_per_day=collar.sched.sent_total / days,
        airtime_s_per_day=collar.sched.airtime_ms_total / 1000 / days,
        sf=collar.hal.radio.sf,
    )
    return tries / days, energy.battery_life_years(mah["total"])


def _schedule(animals: list[MovebankReplay], days: float, seed: int, settings: dict) -> dict:
    start_s = int(START.timestamp())
    end_s = start_s + int(days * 86400)
    fleet, fixes, alerts = _collar_run(animals, days, seed, settings)
    per_animal = {}
    for animal in animals:
        device = animal.identity.device_id
        track = animal.track
        lo, hi = start_s + animal.offset_s, end_s + animal.offset_s
        inside = (track.time_s >= lo) & (track.time_s < hi)
        got = sorted(fixes.get(device, []))
        times = np.array([t for t, _, _ in got], dtype=float)
        truth = np.array([track.position_at(t + animal.offset_s) for t in times]) if len(times) else np.zeros((0, 2))
        errors = (distances_m([f[2] for f in got], [f[1] for f in got], truth[:, 1], truth[:, 0])
                  if len(got) else np.zeros(0))
        interval_min = float(np.median(np.diff(track.time_s[inside]))) / 60 if inside.sum() > 1 else None
        track_m = _path_m(track.lat[inside], track.lon[inside])
        kept_m = _path_m(truth[:, 0], truth[:, 1]) if len(truth) else 0.0
        fixes_per_day, years = _battery_life_years(fleet, device, days)
        per_animal[track.individual] = {
            "track_interval_min": round(interval_min, 1) if interval_min else None,
            "path_kept": round(kept_m / track_m, 4) if track_m and interval_min and interval_min <= 15.5 else None,
            "median_position_error_m": round(float(np.median(errors)), 1) if len(errors) else None,
            "fixes_per_day": round(fixes_per_day, 1),
            "battery_life_years": round(years, 2),
            "collar_positions": len(got),
            "alerts": dict(alerts.get(device, {})),
        }
    scored = [a for a in per_animal.values() if a["path_kept"] is not None]

    def mean(key: str) -> float | None:
        values = [a[key] for a in (scored or per_animal.values()) if a[key] is not None]
        return round(float(np.mean(values)), 4) if values else None

    return {
        "path_kept": mean("path_kept"),
        "median_position_error_m": mean("median_position_error_m"),
        "battery_life_years": mean("battery_life_years"),
        "fixes_per_day": mean("fixes_per_day"),
        "mortality_alerts_on_live_animals": sum(a.get("mortality", 0) for a in alerts.values()),
        "per_animal": per_animal,
    }


def run(days: float = 14.0, seed: int = 1, path: str | None = None) -> dict:
    """Replay every track of the Movebank file for days through the firmware under each schedule."""
    source = Path(path) if path else default_path()
    if not source.exists():
        raise BenchDataMissing(
            f"tembo bench replay needs the Wall 2014 elephant tracks ({DATA_FILE}); looked for {source}. "
            "Put the file in ../shared/data beside the checkout or pass -o path=FILE (a Movebank CSV)."
        )
    tracks = read_movebank(source)
    animals = replay_animals(tracks, int(START.timestamp()), demo_reserve(), start_in_reserve=True)
    schedules = {}
    for name, settings in SCHEDULES.items():
        schedules[name] = _schedule(animals, days, seed, settings)
    adaptive = schedules["adaptive"]
    return {
        "source": source.name,
        "days": days,
        "seed": seed,
        "animals": len(animals),
        "adaptive_settings": {k: config.DEFAULTS[k] for k in
                              ("gnss_rest_interval_s", "gnss_interval_s", "gnss_move_interval_s", "gnss_min_gap_s")},
        "schedules": schedules,
        "path_kept_vs_15min_ratio": (round(adaptive["path_kept"] / schedules["fixed_15min"]["path_kept"], 4)
                                     if adaptive["path_kept"] and schedules["fixed_15min"]["path_kept"] else None),
        "goal_met": bool(adaptive["path_kept"] is not None and adaptive["path_kept"] >= GOAL_PATH_KEPT
                         and adaptive["battery_life_years"] >= GOAL_YEARS),
    }
