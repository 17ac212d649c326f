"""Which collar runs what, as a field technician reads it from a script: `GET /api/updates/versions`
carries each collar's battery, radio and the time of its status, which say as much as its collar
health page, so a role with a delay reads them as that page shows them: as heard by its animal's
cutoff, not live."""

from __future__ import annotations

import json
from datetime import timedelta

import bridge_builders as b
import pytest
from access_builders import CONSOLE, PASSWORDS
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app

NOW = b.T0 + timedelta(hours=12)
EARLIER = NOW - timedelta(hours=3)  # a status every role with a delay of an ordinary animal may read
JUST_NOW = NOW - timedelta(minutes=5)  # a status only rangers and admins may read yet


def _status(battery_mv: int, rssi_dbm: float, at, f_cnt: int, update: dict | None = None) -> bytes:
    body = json.loads(b.tts_uplink(b.status(time_s=int(at.timestamp()), battery_mv=battery_mv, update=update),
                                   f_cnt=f_cnt, received_at=at))
    for gateway in body["uplink_message"]["rx_metadata"]:
        gateway["rssi"] = gateway["channel_rssi"] = rssi_dbm
    return json.dumps(body).encode()


@pytest.fixture
def api(sqlite_url):
    """Naserian's collar reported 3 h ago (3900 mV, -100 dBm at the mast) and again 5 min ago, from the
    edge of the mast's range (3700 mV, -117 dBm) with the result of the update it just took."""
    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        bridge.clock = lambda: NOW
        bridge.register_animal("collar-01", "Naserian", sex="female")
        assert bridge.ingest_tts_uplink(_status(3900, -100.0, EARLIER, 1)).ok
        applied = {"update_kind": "firmware", "update_outcome": "installed", "update_version": "1.3.0",
                   "update_reason": "ok"}
        assert bridge.ingest_tts_uplink(_status(3700, -117.0, JUST_NOW, 2, applied)).ok
        client.tokens = {}
        for username, (role, password) in PASSWORDS.items():
            bridge.add_user(username, role, password, actor=CONSOLE)
            client.tokens[role] = bridge.create_token(username, f"{role} fleet", actor=CONSOLE).secret
        yield client


def _get(api, path: str, role: str) -> list[dict]:
    answer = api.get(path, headers={"Authorization": f"Bearer {api.tokens[role]}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_field_technicians_fleet_versions_say_no_more_than_its_collar_health_of_the_same_collar(api):
    (live,) = _get(api, "/api/updates/versions", "admin")
    assert (live["battery_mv"], live["last_rssi_dbm"]) == (3700, -117.0)  # admins see the collar live
    assert live["update"]["outcome"] == "installed"

    (seen,) = _get(api, "/api/updates/versions", "field_technician")
    (health,) = _get(api, "/api/devices", "field_technician")
    assert (seen["battery_mv"], seen["last_rssi_dbm"]) == (health["battery_mv"], health["last_rssi_dbm"]) \
        == (3900, -100.0), "the link of 5 min ago says the animal is at the edge of the mast's range now"
    assert seen["status_time"] == EARLIER.isoformat()
    assert seen["update"] is None, "an update installed 5 min ago says the collar was heard just now"
    assert (seen["fw_version"], seen["model_version"]) == (health["fw_version"], health["model_version"])
