"""Figures of the bridge's ingest path, for `tembo bench bridge --json`.

A small synthetic herd (status, activity and alert uplinks through the real codec, a quarter of them
heard by two gateways) goes into an empty SQLite store, once through the service layer and once
through the HTTP webhook under uvicorn; the figures are uplinks per second and milliseconds per uplink.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lora_bridge.adapters.webhook import SECRET_HEADER, create_app
from lora_bridge.decode import default_codec
from lora_bridge.server import serve_app_in_thread
from lora_bridge.service import open_bridge

BENCH_SECRET = "bench-secret"
START_S = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


def synthetic_bodies(collars: int = 20, hours: int = 12) -> list[bytes]:
    """TTS uplink bodies of `collars` collars over `hours` hours (status + activity per hour, one alert each)."""
    codec = default_codec()
    bodies: list[bytes] = []
    for c in range(collars):
        device_id = f"bench-{c:03d}"
        f_cnt = 0
        for h in range(hours):
            t_s = START_S + 3600 * h
            messages = [
                ("status", {"time_s": t_s, "lat": -2.5 + c / 1000, "lon": 37.5 + h / 1000, "fix_age_s": 30,
                            "battery_mv": 3900, "temperature_c": 30.0, "fw_version": "1.0.0",
                            "model_version": 1, "uptime_h": h, "reset_cause": "power_on",
                            "behaviour": "forage", "queue_depth": 0, "errors": 0}),
                ("activity", {"time_s": t_s, "interval_min": 60, "model_version": 1, "vedba_mean_mg": 80,
                              "vedba_max_mg": 600, "shares": [40.0, 40.0, 15.0, 5.0]}),
            ]
            if h == hours // 2:
                messages.append(("alert", {"alert_type": "immobility", "seq": 1, "time_s": t_s,
                                           "lat": -2.5, "lon": 37.5}))
            for name, values in messages:
                f_cnt += 1
                body = _tts_body(device_id, f_cnt, codec.port_of(name), codec.encode(name, values), t_s)
                bodies.append(body)
                if f_cnt % 4 == 0:
                    bodies.append(body)  # a second gateway's copy
    return bodies


def _tts_body(device_id: str, f_cnt: int, port: int, payload: bytes, t_s: int) -> bytes:
    heard = datetime.fromtimestamp(t_s + 2, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({
        "end_device_ids": {"device_id": device_id, "application_ids": {"application_id": "bench"}},
        "received_at": heard,
        "uplink_message": {"f_port": port, "f_cnt": f_cnt, "frm_payload": base64.b64encode(payload).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -110, "snr": 2.0}],
                           "received_at": heard},
    }).encode()


def ingest_figures(collars: int = 20, hours: int = 12) -> dict[str, Any]:
    """Uplinks per second and ms per uplink, service layer and HTTP webhook, on fresh SQLite stores."""
    bodies = synthetic_bodies(collars, hours)
    figures: dict[str, Any] = {"bodies": len(bodies)}
    with tempfile.TemporaryDirectory(prefix="tembo-bench-") as folder:
        with open_bridge(f"sqlite:///{Path(folder) / 'service.db'}", webhook_secret=BENCH_SECRET) as bridge:
            started = time.perf_counter()
            for body in bodies:
                bridge.ingest_tts_uplink(body)
            elapsed = time.perf_counter() - started
            figures["service_uplinks_per_s"] = round(len(bodies) / elapsed, 1)
            figures["service_ms_per_uplink"] = round(1000 * elapsed / len(bodies), 3)
            figures["counts"] = bridge.counts()
        with open_bridge(f"sqlite:///{Path(folder) / 'webhook.db'}", webhook_secret=BENCH_SECRET) as bridge:
            with serve_app_in_thread(create_app(bridge)) as server, httpx.Client(base_url=server.url) as client:
                started = time.perf_counter()
                for body in bodies:
                    client.post("/uplinks/tts", content=body, headers={SECRET_HEADER: BENCH_SECRET})
                elapsed = time.perf_counter() - started
            figures["webhook_uplinks_per_s"] = round(len(bodies) / elapsed, 1)
            figures["webhook_ms_per_uplink"] = round(1000 * elapsed / len(bodies), 3)
    # Same run, same bodies: what HTTP adds over the service layer, robust to a busy machine.
    figures["webhook_over_service_cost"] = round(figures["webhook_ms_per_uplink"] / figures["service_ms_per_uplink"], 2)
    return figures
