"""`tembo bench replay`: real elephant tracks (Movebank, Wall et al. 2014) through the real firmware.

Each real track is replayed as a collared animal inside the demo reserve (shape kept, moved to start
near the centre): the collar firmware runs on the twin's hardware, the network delivers its uplinks as
The Things Stack JSON, and the bench decodes them with the codec, as the bridge would. It measures
what a ranger's map would get from a real elephant: how many fixes arrive, how far the reported
positions lie from the real track (GNSS noise plus the wire's int24 rounding), how much of the real
path the hourly positions keep, and which alerts the collar raised for animals that were alive and well.

The data set is not part of the project: by default it is read from ../shared/data beside the checkout.
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from collar_firmware import codec
from simulator.fleet import Fleet
from simulator.movebank import MovebankReplay, read_movebank, replay_animals
from simulator.reserve import demo_reserve, distance_m

DATA_FILE = "elephants_wall2014_movebank.csv.gz"
START = datetime(2026, 3, 1, tzinfo=UTC)


def default_path() -> Path:
    """The Wall 2014 elephant tracks in ../shared/data beside the checkout."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / DATA_FILE


def _path_km(lats: np.ndarray, lons: np.ndarray) -> float:
    return sum(distance_m(lons[i], lats[i], lons[i + 1], lats[i + 1]) for i in range(len(lats) - 1)) / 1000


def _error_m(animal: MovebankReplay, t_s: int, lat: float, lon: float) -> float:
    """Metres between a position the collar reported for t_s and where the real track was then."""
    truth = animal.state_at(t_s)
    return distance_m(lon, lat, truth.lon, truth.lat)


def _collar_fixes(fleet: Fleet) -> tuple[dict[str, list[tuple[int, float, float]]], dict[str, Counter]]:
    """Run the fleet; return each device's decoded fixes (time_s, lat, lon) and alert counts."""
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
    return fixes, alerts


def run(days: float = 7.0, seed: int = 1, path: str | None = None) -> dict:
    """Replay every track of the Movebank file for days through the firmware; return the figures."""
    source = Path(path) if path else default_path()
    if not source.exists():
        raise FileNotFoundError(f"{source} not found: pass -o path=FILE (a Movebank CSV)")
    tracks = read_movebank(source)
    reserve = demo_reserve()
    start_s = int(START.timestamp())
    animals = replay_animals(tracks, start_s, reserve, start_in_reserve=True)
    fleet = Fleet(n_collars=len(animals), seed=seed, start=START, days=days, animals=animals, reserve=reserve)
    fixes, alerts = _collar_fixes(fleet)
    end_s = start_s + int(days * 86400)
    per_animal = {}
    for animal in animals:
        device = animal.identity.device_id
        track = animal.track
        lo, hi = start_s + animal.offset_s, end_s + animal.offset_s
        inside = (track.time_s >= lo) & (track.time_s < hi)
        got = sorted(fixes.get(device, []))
        errors = [_error_m(animal, t, lat, lon) for t, lat, lon in got]
        collar_lats = np.array([f[1] for f in got])
        collar_lons = np.array([f[2] for f in got])
        per_animal[track.individual] = {
            "track_fixes": int(inside.sum()),
            "track_interval_min": (round(float(np.median(np.diff(track.time_s[inside]))) / 60, 1)
                                   if inside.sum() > 1 else None),
            "collar_positions": len(got),
            "position_error_m_median": round(float(np.median(errors)), 1) if errors else None,
            "position_error_m_p95": round(float(np.percentile(errors, 95)), 1) if errors else None,
            "track_km": round(_path_km(track.lat[inside], track.lon[inside]), 1),
            "collar_path_km": round(_path_km(collar_lats, collar_lons), 1) if len(got) > 1 else 0.0,
            "alerts": dict(alerts.get(device, {})),
        }
    counters = fleet.counters()
    return {
        "source": source.name,
        "days": days,
        "seed": seed,
        "animals": len(animals),
        "uplinks_sent": counters.get("uplinks_sent"),
        "uplinks_delivered": counters.get("uplinks_delivered"),
        "per_animal": per_animal,
        "mortality_alerts_on_live_animals": sum(a.get("mortality", 0) for a in alerts.values()),
    }
