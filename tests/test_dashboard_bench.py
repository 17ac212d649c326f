"""The dashboard bench's stores: filled through the bridge's ingest as collars send their reports,
kept between runs under their parameters, and never reused half-filled."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np

from collar_firmware import codec
from lora_bridge.service import open_bridge
from ranger_dashboard import bench


def test_a_collar_of_the_bench_herd_reports_hourly_fixes_daily_status_and_quarter_hour_activity():
    bodies = list(bench.herd_uplinks(0, days=2, activity_days=1, rng=np.random.default_rng(1)))
    heard = [when for when, _ in bodies]
    assert heard == sorted(heard)
    assert heard[-1] <= bench.END and heard[0] >= bench.END - timedelta(days=2)
    ports = [json.loads(body)["uplink_message"]["f_port"] for _, body in bodies]
    assert ports.count(codec.port_of("positions")) == 48 // bench.FIXES_PER_UPLINK + 1  # 48 fixes, five a message
    assert ports.count(codec.port_of("status")) == 2
    assert ports.count(codec.port_of("activity")) == 96
    assert ports.count(codec.port_of("alert")) == 1  # collar 0 is one of every ALERT_EVERY that raises one


def test_bench_store_is_filled_through_the_bridge_once_and_reused_by_its_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMBO_BENCH_CACHE", str(tmp_path))
    store, filled = bench.filled_store(animals=2, days=1, activity_days=0, seed=3)
    assert filled["cached"] is False
    assert filled["positions"] == 2 * (24 + 1)  # hourly fixes and the daily status's own
    with open_bridge(f"sqlite:///{store}") as bridge:
        assert {a.name for a in bridge.animals(viewer=bench.BENCH_VIEWER)} == {"Elephant 000", "Elephant 001"}
        assert bridge.counts()["uplinks_stored"] == filled["uplinks"]
    again, reused = bench.filled_store(animals=2, days=1, activity_days=0, seed=3)
    assert (again, reused) == (store, {**filled, "cached": True})
    other, _ = bench.filled_store(animals=1, days=1, activity_days=0, seed=3)
    assert other != store
    assert not list(tmp_path.glob("*.partial.db"))


def test_bench_herd_reaches_the_bridge_through_its_batch_ingest(tmp_path):
    with open_bridge(f"sqlite:///{tmp_path / 'herd.db'}") as bridge:
        filled = bench.fill_store(bridge, animals=3, days=1, activity_days=1, seed=5, batch=40)
        batches = bridge.ingest_batches()
        assert batches["bodies"] == filled["uplinks"] == 3 * (24 // bench.FIXES_PER_UPLINK + 1 + 1 + 96) + 1
        assert batches["batches"] == -(-filled["uplinks"] // 40)  # every call one batch of up to 40 bodies
        assert filled["activity_summaries"] == 3 * 96 and filled["open_alerts"] >= 1
        assert {a.name for a in bridge.animals(viewer=bench.BENCH_VIEWER)} == {f"Elephant {i:03d}" for i in range(3)}
