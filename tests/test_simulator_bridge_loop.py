"""The twin closing the loop with the real bridge: collar alert -> TTS JSON -> bridge -> ack downlink over HTTP
-> collar stops repeating."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from collar_firmware import codec
from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from simulator.animals import AnimalIdentity, Scenario, SimulatedAnimal
from simulator.fleet import Fleet
from simulator.network_server import NetworkServerStandIn
from simulator.reserve import demo_reserve, demo_reserve_geojson

RANGER = Viewer("ranger.amani", "ranger")

START = datetime(2026, 3, 1, tzinfo=UTC)
START_S = int(START.timestamp())
API_KEY = "NNSXS.TEMBO-LOOP"


def test_bridge_acknowledges_a_mortality_alert_and_the_collar_stops_repeating_it(sqlite_url):
    reserve = demo_reserve()
    animal = SimulatedAnimal(AnimalIdentity("tembo-collar-01", "70B3D57ED0060001", "Amani"), reserve, START_S,
                             seed=3, home_xy=(0.0, 0.0), scenarios=[Scenario("mortality", START_S + 3600)])
    fleet = Fleet(animals=[animal], reserve=reserve, start=START, days=20 / 24)
    with NetworkServerStandIn(fleet, api_key=API_KEY) as server:
        bridge = open_bridge(sqlite_url, network_server_url=server.url, network_server_api_key=API_KEY)
        with bridge:
            bridge.load_geography(demo_reserve_geojson())
            for entry in fleet.manifest():
                bridge.register_animal(entry["device_id"], entry["name"], entry["species"], entry["sex"])
            mortality_uplinks = 0
            for message in fleet.uplinks():
                bridge.ingest_tts_uplink(json.dumps(message).encode())
                bridge.flush_downlinks()
                up = message["uplink_message"]
                decoded = codec.decode(up["f_port"], base64.b64decode(up["frm_payload"]))
                mortality_uplinks += decoded.get("alert_type") == "mortality"
            open_types = {a.alert_type for a in bridge.open_alerts(viewer=RANGER) if a.device_id == "tembo-collar-01"}
            animals = {a.name: a for a in bridge.animals(viewer=RANGER)}
    assert "mortality" in open_types
    assert animals["Amani"].lat is not None
    # Without the bridge's ack the collar repeats the alert every hour until the run ends (7 hours here).
    assert mortality_uplinks == 1
    assert fleet.collar("tembo-collar-01").downlinks >= 1
