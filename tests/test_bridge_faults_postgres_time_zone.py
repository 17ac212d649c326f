"""A reserve's PostgreSQL server keeps its clock in the reserve's zone (`timezone = 'America/La_Paz'`, set
for the database by its administrator): the bridge stores and shows every collar's times as it does on a
server in UTC, through the API's device list and the dashboard's reads alike."""

from __future__ import annotations

from datetime import UTC, datetime

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app


def _what_rangers_see(store_url: str) -> dict[str, object]:
    """Three collars' uplinks taken, then the device list, the latest positions and the store's raw times."""
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        for n in range(3):
            answer = client.post("/uplinks/tts", headers=b.HEADERS,
                                 content=b.tts_uplink(b.status(time_s=b.T0_S + 600 * n), device_id=f"collar-{n}", f_cnt=1))
            assert answer.status_code == 200
        devices = client.get("/api/devices", headers=b.api_headers(bridge, "field_technician")).json()
        positions = bridge.latest_positions(viewer=b.RANGER)
    return {
        "devices": sorted((device["device_id"], {key: value for key, value in device.items()
                                                 if "at" in key or "seen" in key}) for device in devices),
        "positions": sorted((p.device_id, p.time) for p in positions),
    }


@pytest.mark.postgres
def test_a_server_in_the_reserves_zone_shows_the_same_times_as_one_in_utc(postgres_server):
    in_utc = postgres_server.create_database()
    in_la_paz = postgres_server.create_database()
    postgres_server.psql(f"ALTER DATABASE {in_la_paz.rsplit('/', 1)[-1]} SET timezone = 'America/La_Paz'")
    try:
        utc_view, la_paz_view = _what_rangers_see(in_utc), _what_rangers_see(in_la_paz)
    finally:
        postgres_server.drop_database(in_utc)
        postgres_server.drop_database(in_la_paz)

    print(la_paz_view)
    assert la_paz_view["positions"][0][1].tzinfo is UTC
    assert la_paz_view["positions"][0][1] == datetime.fromtimestamp(b.T0_S, UTC)
    assert la_paz_view == utc_view
