"""Figures of the ranger dashboard, for `tembo bench dashboard --json`.

Two stores are filled in a temporary folder through the bridge's own ingest (The Things Stack
uplink bodies built with the collar's codec), once per run: a herd of `animals` (500) and one of
`small` (5) animals, `days` (30) of hourly fixes each, sent as the collar sends them — its
`positions` message carries five fixes — with a daily status, 15-minute activity summaries, and a
collar alert on one animal in 25. Every animal gets 15-minute activity for the last `activity_days`
days; the animal whose page is measured gets them for all `days` in both stores, so its page reads
the same amount in both and the ratio measures what the size of the herd costs.

Each store is served by the real dashboard (`launch.command`, the data's clock) and opened in
headless Chromium (Playwright, Debian's chromium). A page counts as drawn when its own DOM marker
is there and says it carries the whole herd (the live map: the deck canvas and
`#tembo-map-ready[data-animals=N]`), and the browser has painted two more frames. Loads of the two
stores alternate, after one unmeasured warm-up each; the median of `repeats` loads is reported,
with the ratio herd / small measured in the same run.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from collar_firmware import codec
from lora_bridge.service import Bridge, open_bridge
from ranger_dashboard import serving
from ranger_dashboard.markers import ALERTS_READY_ID, ANIMAL_READY_ID, MAP_READY_ID

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
END = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
FIXES_PER_UPLINK = 5
ALERT_EVERY = 25
# A 40 km x 30 km reserve in Laikipia, its boundary the offline base map.
SOUTH, WEST, NORTH, EAST = 0.20, 36.70, 0.47, 37.06
RESERVE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"kind": "boundary", "name": "Bench conservancy"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[WEST, SOUTH], [EAST, SOUTH], [EAST, NORTH], [WEST, NORTH], [WEST, SOUTH]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "gateway", "name": "HQ mast"},
            "geometry": {"type": "Point", "coordinates": [(WEST + EAST) / 2, (SOUTH + NORTH) / 2]},
        },
    ],
}


def _body(device_id: str, f_cnt: int, name: str, values: dict[str, Any], heard: datetime) -> bytes:
    """A The Things Stack v3 uplink webhook body carrying codec message `name`."""
    stamp = heard.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(
        {
            "end_device_ids": {
                "device_id": device_id,
                "application_ids": {"application_id": "tembo-bench"},
                "dev_eui": f"70B3D57ED1{int(device_id.rsplit('-', 1)[1]):06X}",
            },
            "received_at": stamp,
            "uplink_message": {
                "f_port": codec.port_of(name),
                "f_cnt": f_cnt,
                "frm_payload": base64.b64encode(codec.encode(name, values)).decode(),
                "rx_metadata": [{"gateway_ids": {"gateway_id": "hq-mast"}, "rssi": -104, "snr": 4.5}],
                "received_at": stamp,
            },
        }
    ).encode()


def herd_uplinks(
    index: int, days: int, activity_days: int, rng: np.random.Generator
) -> Iterator[tuple[datetime, bytes]]:
    """(time heard, body) of every uplink of collar `index` over `days` days up to END, in order."""
    device_id = f"bench-{index:04d}"
    start = END - timedelta(days=days)
    hours = days * 24
    # A correlated walk of about 300 m an hour, kept inside the reserve.
    steps = rng.normal(0, 0.0027, size=(hours, 2)).cumsum(axis=0)
    lat0 = rng.uniform(SOUTH + 0.03, NORTH - 0.03)
    lon0 = rng.uniform(WEST + 0.03, EAST - 0.03)
    lats = np.clip(lat0 + steps[:, 0], SOUTH + 0.005, NORTH - 0.005)
    lons = np.clip(lon0 + steps[:, 1], WEST + 0.005, EAST - 0.005)
    uplinks: list[tuple[datetime, str, dict[str, Any]]] = []
    for first in range(0, hours, FIXES_PER_UPLINK):
        batch = range(first, min(first + FIXES_PER_UPLINK, hours))
        t0 = start + timedelta(hours=first)
        fixes = [{"dt_s": 3600 * (h - first), "lat": float(lats[h]), "lon": float(lons[h])} for h in batch]
        heard = start + timedelta(hours=batch[-1], minutes=5)
        uplinks.append((heard, "positions", {"time_s": int(t0.timestamp()), "fixes": fixes}))
    for day in range(days):
        when = start + timedelta(days=day, hours=23, minutes=30)
        h = min(int((when - start).total_seconds() // 3600), hours - 1)
        uplinks.append((when, "status", _status(when, float(lats[h]), float(lons[h]), 3650 - 2 * day)))
    for quarter in range(activity_days * 96):
        when = END - timedelta(days=activity_days) + timedelta(minutes=15 * quarter)
        shares = rng.dirichlet([4, 3, 2, 0.5]) * 100
        rounded = [round(float(s) * 2) / 2 for s in shares]
        values = {
            "time_s": int(when.timestamp()),
            "interval_min": 15,
            "model_version": 1,
            "vedba_mean_mg": int(rng.integers(20, 200)),
            "vedba_max_mg": int(rng.integers(300, 900)),
            "shares": rounded,
        }
        uplinks.append((when + timedelta(minutes=15), "activity", values))
    if index % ALERT_EVERY == 0:
        when = END - timedelta(hours=2)
        alert = {
            "alert_type": ("mortality", "poaching_risk", "collar_drop")[(index // ALERT_EVERY) % 3],
            "seq": 1,
            "time_s": int(when.timestamp()),
            "lat": float(lats[-3]),
            "lon": float(lons[-3]),
        }
        uplinks.append((when, "alert", alert))
    uplinks.sort(key=lambda item: item[0])
    for f_cnt, (heard, name, values) in enumerate(uplinks, start=1):
        yield heard, _body(device_id, f_cnt, name, values, heard)


def _status(when: datetime, lat: float, lon: float, battery_mv: int) -> dict[str, Any]:
    return {
        "time_s": int(when.timestamp()),
        "lat": lat,
        "lon": lon,
        "fix_age_s": 60,
        "battery_mv": battery_mv,
        "temperature_c": 28.5,
        "fw_version": "1.4.0",
        "model_version": 1,
        "uptime_h": 500,
        "reset_cause": "power_on",
        "behaviour": "forage",
        "flags": {},
        "queue_depth": 0,
        "errors": 0,
    }


def fill_store(bridge: Bridge, animals: int, days: int, activity_days: int, seed: int = 7) -> dict[str, Any]:
    """Fill `bridge` through its ingest: the reserve, `animals` named collars and their uplinks."""
    rng = np.random.default_rng(seed)
    bridge.load_geography(RESERVE)
    started = time.perf_counter()
    uplinks = 0
    for index in range(animals):
        bridge.register_animal(f"bench-{index:04d}", f"Elephant {index:03d}")
        full = days if index == 0 else activity_days  # the animal whose page is measured
        for _, body in herd_uplinks(index, days, min(full, days), rng):
            result = bridge.ingest_tts_uplink(body)
            if not result.ok:
                raise RuntimeError(f"bench uplink refused: {result}")
            uplinks += 1
    counts = bridge.counts()
    return {
        "uplinks": uplinks,
        "fill_s": round(time.perf_counter() - started, 1),
        "positions": counts["positions"],
        "activity_summaries": counts["activity_summaries"],
        "open_alerts": counts["open_alerts"],
    }


def _after_two_frames(page: Any) -> None:
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def load_ms(page: Any, url: str, ready_selector: str, extra_selector: str | None = None) -> float:
    """Milliseconds from asking for `url` until `ready_selector` (and `extra_selector`) are in the
    page and two more frames are painted."""
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready_selector, state="attached", timeout=120_000)
    if extra_selector:
        page.wait_for_selector(extra_selector, state="attached", timeout=120_000)
    _after_two_frames(page)
    return 1000 * (time.perf_counter() - started)


def _pages(animals: int, alerts: int) -> dict[str, tuple[str, str, str | None]]:
    """Per figure: (path, DOM marker saying the whole herd is there, second element waited for)."""
    return {
        "first_map_ms": ("/", f"#{MAP_READY_ID}[data-animals='{animals}']", "[data-testid='stDeckGlJsonChart'] canvas"),
        "alerts_ms": ("/alerts", f"#{ALERTS_READY_ID}[data-alerts='{alerts}']", None),
        "animal_ms": ("/animals?animal=1", f"#{ANIMAL_READY_ID}[data-animal='1']", None),
    }


def run(
    animals: int = 500, small: int = 5, days: int = 30, activity_days: int = 1, repeats: int = 3, seed: int = 7
) -> dict[str, Any]:
    """Fill both stores, serve each with the dashboard, and time its pages in headless Chromium."""
    from playwright.sync_api import sync_playwright

    from tembo.local_services import free_port

    animals, small, days, repeats = int(animals), int(small), int(days), int(repeats)
    activity_days = max(0, min(int(activity_days), days))
    figures: dict[str, Any] = {"animals": animals, "small": small, "days": days, "activity_days": activity_days}
    # A RAM folder where the machine has one: the fill commits every uplink, the bench measures pages.
    ram = Path("/dev/shm")
    base_dir = str(ram) if ram.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="tembo-bench-dashboard-", dir=base_dir) as folder, ExitStack() as stack:
        servers: dict[str, tuple[str, int]] = {}
        for label, herd in (("500", animals), ("5", small)):
            url = f"sqlite:///{Path(folder) / f'herd-{herd}.db'}"
            with open_bridge(url) as bridge:
                filled = fill_store(bridge, herd, days, activity_days, seed)
                alerts = len(bridge.open_alerts())
            figures[f"store_{label}"] = filled
            port = free_port()
            base = stack.enter_context(
                serving.running(port, url, Path(folder) / f"dashboard-{herd}.log", clock="data", refresh_s=600)
            )
            servers[label] = (base, herd, alerts)  # type: ignore[assignment]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                samples: dict[str, list[float]] = {}
                for repeat in range(repeats + 1):
                    for label, (base, herd, alerts) in servers.items():  # type: ignore[misc]
                        for figure, (path, marker, extra) in _pages(herd, alerts).items():
                            page = browser.new_page(viewport={"width": 1400, "height": 1000})
                            try:
                                ms = load_ms(page, base + path, marker, extra)
                            finally:
                                page.close()
                            if repeat:  # the first round warms each server up and is not counted
                                samples.setdefault(f"{figure}_{label}", []).append(ms)
            finally:
                browser.close()
    for key, values in samples.items():
        figures[key] = round(statistics.median(values), 1)
    for figure in ("first_map_ms", "alerts_ms", "animal_ms"):
        ratio = figures[f"{figure}_500"] / figures[f"{figure}_5"]
        name = "ratio" if figure == "first_map_ms" else f"{figure.removesuffix('_ms')}_ratio"
        figures[name] = round(ratio, 2) if math.isfinite(ratio) else None
    figures["goals"] = {"ratio_at_most": 2.0, "first_map_ms_500_under": 3000}
    return figures
