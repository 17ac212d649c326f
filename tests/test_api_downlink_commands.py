"""A field technician queues commands for a collar over the API: values are checked against the
codec table (the one list of commands), so a typo or a forgotten value is refused with 422 and
nothing is queued, instead of reaching the collar as something else."""

from __future__ import annotations

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from collar_firmware import codec
from lora_bridge.adapters.api import create_app

COLLAR = "collar-01"
# Every command the collar takes on its command port, straight from the codec's table.
COMMANDS = [row[0] for row in codec.MESSAGES if row[1] == 32 and row[3] == "down"]
# Values each command is sent with from the dashboard or a technician's script.
GOOD_VALUES = {
    "ack_alert": {"alert_type": "mortality", "seq": 3},
    "tracking": {"minutes": 30},
    "fence": {"fence_id": 1, "kind": "farmland", "last": 1, "first_index": 0,
              "points": [{"lat": -2.5, "lon": 37.5}, {"lat": -2.6, "lon": 37.5}, {"lat": -2.6, "lon": 37.6}]},
}


@pytest.fixture
def technician(sqlite_url):
    """An API client with a field technician's token, over a bridge that has heard collar-01."""
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=COLLAR))
        client.headers.update(b.api_headers(bridge, "field_technician"))
        client.bridge = bridge
        yield client


def queue(client: TestClient, command: str, values: dict):
    return client.post("/api/downlinks", json={"device_id": COLLAR, "command": command, "values": values})


def test_the_table_names_the_commands_this_story_covers():
    assert {"ack_alert", "request_status", "reboot", "tracking", "fence"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_with_a_value_it_does_not_know_is_refused_and_nothing_is_queued(technician, command):
    answer = queue(technician, command, {**GOOD_VALUES.get(command, {}), "delay_s": 60})

    assert answer.status_code == 422
    assert "unknown 'delay_s'" in answer.json()["error"] and command in answer.json()["error"]
    assert technician.bridge.downlinks() == []


@pytest.mark.parametrize("command", [c for c in COMMANDS if c in GOOD_VALUES])
def test_a_command_without_the_values_it_needs_is_refused_naming_them(technician, command):
    answer = queue(technician, command, {})

    assert answer.status_code == 422
    for name in GOOD_VALUES[command]:
        if name != "points":
            assert repr(name) in answer.json()["error"]
    assert technician.bridge.downlinks() == []


def test_a_reboot_with_a_value_is_refused_rather_than_sent_as_a_plain_reboot(technician):
    answer = queue(technician, "reboot", {"delay_s": 600})

    assert answer.status_code == 422
    assert answer.json()["error"] == "reboot: unknown 'delay_s' (it takes no values)"
    assert technician.bridge.downlinks() == []


def test_an_ack_without_its_alert_is_refused_rather_than_acking_alert_zero(technician):
    answer = queue(technician, "ack_alert", {"seq": 3})

    assert answer.status_code == 422
    assert answer.json()["error"] == "ack_alert: missing 'alert_type' (it takes alert_type, seq)"
    assert technician.bridge.downlinks() == []


def test_a_fence_point_with_a_misspelt_coordinate_is_refused(technician):
    values = {**GOOD_VALUES["fence"], "points": [{"lat": -2.5, "lng": 37.5}]}
    answer = queue(technician, "fence", values)

    assert answer.status_code == 422
    assert answer.json()["error"] == "fence: points[0]: unknown 'lng'; missing 'lon' (it takes lat, lon)"


def test_an_empty_settings_change_is_refused_and_a_real_one_is_queued(technician):
    empty = queue(technician, "settings", {})
    misspelt = queue(technician, "settings", {"status_interval": 10800})
    good = queue(technician, "settings", {"status_interval_s": 10800})

    assert (empty.status_code, misspelt.status_code, good.status_code) == (422, 422, 201)
    assert "needs at least one setting" in empty.json()["error"]
    assert "unknown 'status_interval'" in misspelt.json()["error"]
    assert [d.command for d in technician.bridge.downlinks()] == ["settings"]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_with_the_values_it_takes_is_queued(technician, command):
    answer = queue(technician, command, GOOD_VALUES.get(command, {}))

    assert answer.status_code == 201, answer.json()
    (downlink,) = technician.bridge.downlinks()
    assert downlink.command == command and downlink.device_id == COLLAR


@pytest.mark.parametrize("written", ["70b3d57ed0000c01", "70B3D57ED0000C01", "70-B3-D5-7E-D0-00-0C-01"])
def test_a_technician_names_the_collar_by_the_deveui_the_network_console_shows(technician, written):
    technician.bridge.ingest_chirpstack_uplink(
        b.chirpstack_uplink(b.status(), device_id="Tembo collar 7", dev_eui="70b3d57ed0000c01"))

    answer = technician.post("/api/downlinks", json={"device_id": written, "command": "request_status"})

    # Devices are identified by DevEUI everywhere; names are labels (the command had been a 404).
    assert answer.status_code == 201, answer.json()
    assert answer.json()["device_id"] == "Tembo collar 7"


def test_a_deveui_no_collar_has_is_still_a_404_naming_it(technician):
    answer = technician.post("/api/downlinks", json={"device_id": "70b3d57ed0000cff", "command": "request_status"})

    assert answer.status_code == 404
    assert "70b3d57ed0000cff" in answer.json()["error"]
    assert technician.bridge.downlinks() == []
