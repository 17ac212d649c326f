"""Field pages' service calls: fences sent to collars within the collar's limits (said clearly when
exceeded), every collar's health in one call, and the models the bridge knows."""

from __future__ import annotations

import json
from datetime import timedelta

import bridge_builders as b
import pytest

from collar_firmware import codec
from collar_firmware.config import MAX_FENCE_POINTS, MAX_FENCES
from lora_bridge.domain import collar_fences
from lora_bridge.errors import CollarFenceLimits


def square(name: str, west: float, south: float, size: float = 0.01, corners: int = 4) -> dict:
    """A GeoJSON Feature: a closed ring of `corners` points around a square cell."""
    import math

    ring = [
        [
            west + size / 2 + size / 2 * math.cos(2 * math.pi * i / corners),
            south + size / 2 + size / 2 * math.sin(2 * math.pi * i / corners),
        ]
        for i in range(corners)
    ]
    return {
        "type": "Feature",
        "properties": {"name": name},
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
    }


def fence_file(*features: dict) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


@pytest.fixture
def bridge(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        yield bridge


def test_a_farm_and_the_boundary_go_to_every_collar_as_seven_point_parts(bridge):
    for n, device_id in enumerate(("collar-01", "collar-02"), start=1):
        body = b.tts_uplink(b.status(), device_id=device_id, f_cnt=1, dev_eui=f"70B3D57ED000000{n}")
        assert bridge.ingest_tts_uplink(body).ok
    farm = bridge.import_geofences(
        fence_file(square("Shamba", 37.5, -2.5, corners=10)), "farm.geojson", kind="farmland"
    )
    park = bridge.import_geofences(
        fence_file(square("Park", 37.4, -2.6, 0.3)), "park.geojson", kind="boundary"
    )
    queued = bridge.send_fences_to_collars([farm[0].geofence_id, park[0].geofence_id])
    per_collar = [d for d in queued if d.device_id == "collar-01"]
    assert [d.command for d in per_collar] == ["clear_fences", "fence", "fence", "fence"]
    parts = [codec.decode(d.f_port, bytes.fromhex(d.payload_hex)) for d in per_collar[1:]]
    assert [(p["fence_id"], p["kind"], p["last"], p["first_index"]) for p in parts] == [
        (0, "farmland", 0, 0),
        (0, "farmland", 1, 7),
        (1, "park", 1, 0),
    ]
    assert [len(p["points"]) for p in parts] == [7, 3, 4]
    assert {d.device_id for d in queued} == {"collar-01", "collar-02"}


def test_fences_beyond_the_collars_limits_are_refused_naming_each_problem(bridge):
    features = [square(f"Farm {i}", 37.0 + 0.02 * i, -2.5) for i in range(MAX_FENCES + 1)]
    features.append(square("Ragged village", 37.3, -2.5, corners=MAX_FENCE_POINTS + 8))
    stored = bridge.import_geofences(fence_file(*features), "many.geojson", kind="village")
    with pytest.raises(CollarFenceLimits) as refused:
        bridge.send_fences_to_collars([f.geofence_id for f in stored])
    message = str(refused.value)
    assert f"{MAX_FENCES + 2} fences chosen; a collar holds at most {MAX_FENCES}" in message
    assert f"'Ragged village' has {MAX_FENCE_POINTS + 8} corners" in message
    assert bridge.downlinks() == []  # nothing half-sent
    both = bridge.import_geofences(fence_file(square("Ford", 37.6, -2.5)), "ford.geojson", alert_on="both")
    with pytest.raises(CollarFenceLimits, match="alerts both ways"):
        bridge.send_fences_to_collars([both[0].geofence_id])


def test_collar_kind_follows_what_crossing_means():
    assert collar_fences.collar_kind("boundary", "exit") == "park"
    assert collar_fences.collar_kind("farmland", "enter") == "farmland"
    assert collar_fences.collar_kind("village", "enter") == "exclusion"
    assert collar_fences.collar_kind("village", "both") is None


def test_technician_sees_each_collars_health_in_one_call(bridge):
    bridge.register_animal("collar-01", "Amani")
    for hour in range(3):
        when = b.T0 + timedelta(hours=hour)
        body = b.tts_uplink(
            b.status(time_s=b.T0_S + 3600 * hour, battery_mv=3900 - 10 * hour, model_version=7),
            device_id="collar-01",
            f_cnt=1 + 2 * hour,  # every other frame lost on the way
            gateways=("gw-north", "gw-south"),
            received_at=when,
        )
        assert bridge.ingest_tts_uplink(body).ok
    (collar,) = bridge.fleet_health(now=b.T0 + timedelta(hours=2, minutes=5))
    assert (collar.name, collar.battery_mv, collar.fw_version, collar.model_version) == (
        "Amani",
        3880,
        "1.2.3",
        7,
    )
    assert collar.last_gateway == "gw-north"  # the stronger of the two
    assert collar.frame_loss_pct == pytest.approx(40.0)  # 3 of frames 1..5
    assert collar.expected_interval_s > 0 and collar.offline_after_s > collar.expected_interval_s
    assert collar.last_rssi_dbm is not None


def test_models_page_knows_the_shipped_model_and_what_collars_run(bridge):
    assert bridge.ingest_tts_uplink(b.tts_uplink(b.status(model_version=1), f_cnt=1)).ok
    versions = {m["model_version"]: m for m in bridge.model_versions()}
    assert versions[1]["collars"] == 1
    assert versions[1]["classes"]  # the shipped model's own class list
