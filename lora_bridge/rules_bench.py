"""Figures of the server rules, for `tembo bench rules --json`.

A reserve of `fences` polygon fences (a park boundary and farmland / exclusion plots inside and around
it) and `collars` collars, each with a day of hourly fixes already stored and evaluated. Then every
collar sends `rounds` positions uplinks (one fix each, a seeded random walk, so some cross fences),
ingested twice into stores with the same history: once with the rules on (what the bridge does) and
once with them off (store, decode, apply only: the in-run baseline). Figures: milliseconds per uplink
of the rule evaluation alone (mean, p50, p99), of the whole ingest with and without rules, and their ratio;
the CPU time of the rule evaluation (this process only: less hostage to a busy machine than the
clock); SQL statements per evaluation (counted on the store's engine, so they do not depend on the
machine);
and the rules of the rules-off store run once per collar per batch of `batch` uplinks
(`Bridge.evaluate_rules_for`, one unit of work per batch), in milliseconds per uplink.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Transformer
from shapely.geometry import Polygon, box, mapping
from sqlalchemy import event

from lora_bridge import ingest
from lora_bridge.decode import default_codec
from lora_bridge.domain import positions as positions_domain
from lora_bridge.domain.devices import DEFAULT_SPECIES
from lora_bridge.pipeline import process_raw
from lora_bridge.service import Bridge, open_bridge
from lora_bridge.store.tables import Animal, Device

START = datetime(2026, 3, 1, tzinfo=UTC)
UTM_37S = "EPSG:32737"
PARK = (300_000.0, 9_700_000.0, 340_000.0, 9_740_000.0)  # 40 km x 40 km, metres in UTM 37S


def reserve_geojson(fences: int, seed: int = 7) -> bytes:
    """A park boundary and fences-1 plots (2 km squares) in and around it, as GeoJSON in UTM 37S."""
    rng = np.random.default_rng(seed)
    features = [{"type": "Feature", "properties": {"name": "Park", "kind": "boundary"},
                 "geometry": mapping(Polygon(box(*PARK).exterior.coords))}]
    for i in range(fences - 1):
        x = rng.uniform(PARK[0] - 4_000, PARK[2] + 2_000)
        y = rng.uniform(PARK[1], PARK[3] - 2_000)
        kind = "farmland" if i % 2 == 0 else "exclusion"
        features.append({"type": "Feature", "properties": {"name": f"{kind} {i + 1}", "kind": kind},
                         "geometry": mapping(box(x, y, x + 2_000, y + 2_000))})
    document = {"type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32737"}},
                "features": features}
    return json.dumps(document).encode()


def _walks(collars: int, steps: int, seed: int) -> np.ndarray:
    """(collars, steps, 2) metres: random walks of 0-1.5 km an hour from random starts in the park."""
    rng = np.random.default_rng(seed)
    start = rng.uniform((PARK[0] + 2_000, PARK[1] + 2_000), (PARK[2] - 2_000, PARK[3] - 2_000), size=(collars, 2))
    heading = rng.uniform(0, 2 * np.pi, size=(collars, steps))
    length = rng.uniform(0, 1_500, size=(collars, steps))
    moves = np.stack([np.cos(heading) * length, np.sin(heading) * length], axis=-1)
    return start[:, None, :] + np.cumsum(moves, axis=1)


def _store_with_history(folder: Path, name: str, geojson: bytes, tracks_deg: np.ndarray, history: int) -> Bridge:
    bridge = open_bridge(f"sqlite:///{folder / name}.db", webhook_secret="bench-webhook-secret")
    bridge.import_geofences(geojson, "reserve.geojson")
    with bridge.db.write() as session:
        for c in range(tracks_deg.shape[0]):
            device_id = f"bench-{c:03d}"
            session.add(Device(device_id=device_id, reported_settings={}, first_seen=START, last_seen=START))
            session.flush()
            animal = Animal(name=device_id, species=DEFAULT_SPECIES, device_id=device_id)
            session.add(animal)
            session.flush()
            for h in range(history):
                lat, lon = tracks_deg[c, h]
                positions_domain.add_position(session, device_id=device_id, animal_id=animal.id,
                                              time=START + timedelta(hours=h), lat=float(lat), lon=float(lon),
                                              message="positions", raw_uplink_id=None)
    for c in range(tracks_deg.shape[0]):
        bridge.evaluate_rules(f"bench-{c:03d}")  # the history is read: cursors at its end
    return bridge


def _positions_body(collar: int, f_cnt: int, payload: bytes, t_s: int, port: int) -> bytes:
    """A The Things Stack v3 uplink of one collar's positions message, as the webhook receives it."""
    heard = datetime.fromtimestamp(t_s + 2, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({
        "end_device_ids": {"device_id": f"bench-{collar:03d}", "application_ids": {"application_id": "tembo-bench"},
                           "dev_eui": f"70B3D57ED1{collar:06X}"},
        "received_at": heard,
        "uplink_message": {"f_port": port, "f_cnt": f_cnt, "frm_payload": base64.b64encode(payload).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-bench"}, "rssi": -110, "snr": 2.0}],
                           "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9}}},
                           "received_at": heard},
    }).encode()


def _uplinks(tracks_deg: np.ndarray, history: int, rounds: int) -> list[bytes]:
    codec = default_codec()
    bodies = []
    for r in range(rounds):
        h = history + r
        t_s = int((START + timedelta(hours=h)).timestamp())
        for c in range(tracks_deg.shape[0]):
            lat, lon = tracks_deg[c, h]
            values = {"time_s": t_s, "fixes": [{"dt_s": 0, "lat": float(lat), "lon": float(lon)}]}
            bodies.append(_positions_body(c, 100 + h, codec.encode("positions", values), t_s, codec.port_of("positions")))
    return bodies


def _stats(ms: list[float]) -> dict[str, float]:
    values = np.array(ms)
    return {"mean": round(float(values.mean()), 3), "p50": round(float(np.percentile(values, 50)), 3),
            "p99": round(float(np.percentile(values, 99)), 3)}


def run(collars: int = 500, fences: int = 20, rounds: int = 2, history: int = 24, seed: int = 11,
        batch: int = 100) -> dict[str, Any]:
    """Rule evaluation per uplink for `collars` collars and `fences` fences, against rules off."""
    collars, fences, rounds, history, batch = int(collars), int(fences), int(rounds), int(history), int(batch)
    walks = _walks(collars, history + rounds, seed)
    lon, lat = Transformer.from_crs(UTM_37S, "EPSG:4326", always_xy=True).transform(walks[..., 0], walks[..., 1])
    tracks_deg = np.stack([lat, lon], axis=-1)
    geojson = reserve_geojson(fences, seed)
    bodies = _uplinks(tracks_deg, history, rounds)
    with tempfile.TemporaryDirectory(prefix="tembo-bench-rules-") as folder:
        on = _store_with_history(Path(folder), "rules_on", geojson, tracks_deg, history)
        off = _store_with_history(Path(folder), "rules_off", geojson, tracks_deg, history)
        statements = [0]

        def count(*_: Any) -> None:
            statements[0] += 1

        event.listen(on.db.write_engine, "before_cursor_execute", count)
        try:
            rules_ms, rules_cpu_ms, ingest_on_ms, ingest_off_ms, per_evaluation, batched_ms = [], [], [], [], [], []
            waiting: list[str] = []
            for n, body in enumerate(bodies, start=1):
                t0 = time.perf_counter()
                raw_id = ingest.store_raw(off.db, body, "tts")
                waiting.append(process_raw(off.db, raw_id, off.codec, off.settings, rules_file=off.rules_file).device_id)
                ingest_off_ms.append((time.perf_counter() - t0) * 1000)
                if len(waiting) == batch or n == len(bodies):
                    t0 = time.perf_counter()
                    off.evaluate_rules_for(waiting)
                    batched_ms.extend([(time.perf_counter() - t0) * 1000 / len(waiting)] * len(waiting))
                    waiting = []

                t0 = time.perf_counter()
                raw_id = ingest.store_raw(on.db, body, "tts")
                result = process_raw(on.db, raw_id, on.codec, on.settings, rules_file=on.rules_file)
                before = statements[0]
                t1, cpu = time.perf_counter(), time.process_time()
                on.evaluate_rules(result.device_id)
                t2 = time.perf_counter()
                rules_cpu_ms.append((time.process_time() - cpu) * 1000)
                per_evaluation.append(statements[0] - before)
                rules_ms.append((t2 - t1) * 1000)
                ingest_on_ms.append((t2 - t0) * 1000)
            counts = on.counts()
            alerts = counts["alerts"]
            stored = counts["positions"]
            alerts_batched = off.counts()["alerts"]
            builds = on.rules_runtime.fence_builds
        finally:
            event.remove(on.db.write_engine, "before_cursor_execute", count)
            on.close()
            off.close()
    with_rules, without = _stats(ingest_on_ms), _stats(ingest_off_ms)
    return {
        "collars": collars,
        "fences": fences,
        "uplinks": len(bodies),
        "history_fixes_per_collar": history,
        "rules_ms_per_uplink": _stats(rules_ms),
        "rules_cpu_ms_per_uplink": _stats(rules_cpu_ms),
        "ingest_ms_per_uplink_rules_on": with_rules,
        "ingest_ms_per_uplink_rules_off": without,
        "ratio_mean_rules_on_to_off": round(with_rules["mean"] / without["mean"], 2),
        "ratio_p99_rules_on_to_off": round(with_rules["p99"] / without["p99"], 2),
        "sql_statements_per_evaluation": {"mean": round(float(np.mean(per_evaluation)), 2),
                                          "max": int(max(per_evaluation))},
        "fence_index_builds": builds,
        "batch_uplinks": batch,
        "rules_ms_per_uplink_batched": _stats(batched_ms),
        "alerts_raised": alerts,
        "alerts_raised_batched": alerts_batched,
        "positions_stored": stored,
        "store": "sqlite",
    }
