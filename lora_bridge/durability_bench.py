"""What durability costs on SQLite: `tembo bench durability --json`.

The same uplinks go through the service layer (store raw, read, decode, apply) into two fresh SQLite
files, one opened with `synchronous=FULL` (Tembo's default: every commit fsyncs the WAL, so a 2xx
survives a crash of the machine) and one with `synchronous=NORMAL` (the WAL is fsynced only at
checkpoints: a power cut can take the last commits, which issue 17 measured as acknowledged uplinks
lost). The bare durable insert of the raw row is measured on both as the ceiling. Figures:

    full_uplinks_per_s, normal_uplinks_per_s, full_over_normal      the pipeline, and FULL's share
    full_raw_inserts_per_s, normal_raw_inserts_per_s               one committed raw row each
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from lora_bridge.service import open_bridge
from lora_bridge.store.tables import RawUplink


def _uplinks(count: int) -> list[bytes]:
    import base64
    import json
    from datetime import UTC, datetime

    from collar_firmware import codec

    start_s = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    bodies = []
    for n in range(count):
        payload = codec.encode("status", {
            "time_s": start_s + 600 * n, "lat": -2.5 + n * 1e-4, "lon": 37.5, "fix_age_s": 0, "battery_mv": 3900,
            "temperature_c": 30.0, "fw_version": "1.2.3", "model_version": 7, "uptime_h": 1,
            "reset_cause": "power_on", "behaviour": "forage", "queue_depth": 0, "errors": 0,
        })
        device = f"collar-{n % 25:02d}"
        bodies.append(json.dumps({
            "end_device_ids": {"device_id": device, "application_ids": {"application_id": "bench"},
                               "dev_eui": f"70B3D57ED0{n % 25:06X}"},
            "received_at": "2026-03-01T06:00:00Z",
            "uplink_message": {"f_port": 1, "f_cnt": n // 25 + 1, "frm_payload": base64.b64encode(payload).decode(),
                               "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -101, "snr": 6.5}],
                               "received_at": "2026-03-01T06:00:00Z"},
        }).encode())
    return bodies


def _pipeline_rate(folder: Path, synchronous: str, bodies: list[bytes]) -> float:
    with open_bridge(f"sqlite:///{folder / f'pipeline-{synchronous}.db'}", sqlite_synchronous=synchronous,
                     outbox_worker=False) as bridge:
        started = time.perf_counter()
        for body in bodies:
            bridge.ingest_network_message("tts", "up", body)
        return len(bodies) / (time.perf_counter() - started)


def _raw_insert_rate(folder: Path, synchronous: str, bodies: list[bytes]) -> float:
    with open_bridge(f"sqlite:///{folder / f'raw-{synchronous}.db'}", sqlite_synchronous=synchronous,
                     outbox_worker=False) as bridge:
        started = time.perf_counter()
        for body in bodies:
            with bridge.db.write() as session:
                session.add(RawUplink(source="tts", body=body, status="received", gateways=[]))
        return len(bodies) / (time.perf_counter() - started)


def run(uplinks: int = 400) -> dict[str, Any]:
    """Uplinks per second through the pipeline and bare raw inserts, SQLite FULL against NORMAL."""
    bodies = _uplinks(int(uplinks))
    with tempfile.TemporaryDirectory(prefix="tembo-bench-durability-") as name:
        folder = Path(name)
        figures = {
            "uplinks": len(bodies),
            "full_uplinks_per_s": _pipeline_rate(folder, "FULL", bodies),
            "normal_uplinks_per_s": _pipeline_rate(folder, "NORMAL", bodies),
            "full_raw_inserts_per_s": _raw_insert_rate(folder, "FULL", bodies),
            "normal_raw_inserts_per_s": _raw_insert_rate(folder, "NORMAL", bodies),
        }
    figures["full_over_normal"] = figures["full_uplinks_per_s"] / figures["normal_uplinks_per_s"]
    figures["raw_full_over_normal"] = figures["full_raw_inserts_per_s"] / figures["normal_raw_inserts_per_s"]
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}
