"""What the network servers said besides uplinks (joins, delivery reports, network locations, status,
logs), read over the HTTP API by the operator and the field technician who look after the collars."""

from __future__ import annotations

import base64
import json

import bridge_builders as b
import network_fixtures as nf
import pytest
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app


@pytest.fixture
def bridge_store(sqlite_url):  # reading events over the API is the same on both stores
    return sqlite_url


@pytest.fixture
def client(bridge):
    with TestClient(create_app(bridge)) as client:
        for fixture in (nf.TTS["join_accept"], nf.TTS["location_solved"], nf.CHIRPSTACK["join"],
                        nf.CHIRPSTACK["status"], nf.CHIRPSTACK["status"]):  # the status came twice
            url = "/uplinks/tts" if fixture.network == "tts" else f"/uplinks/chirpstack?event={fixture.event}"
            assert client.post(url, content=json.dumps(fixture.body), headers=b.HEADERS).status_code == 200
        yield client


def test_field_technician_reads_a_collars_joins_and_battery_reports_over_the_api(client, bridge):
    headers = b.api_headers(bridge, "field_technician")

    every = client.get("/api/network_events", headers=headers).json()
    status = client.get("/api/network_events?kind=status&device_id=01-01-01-01-01-01-01-01", headers=headers).json()

    assert [(e["network"], e["kind"]) for e in every] == [
        ("tts", "join"), ("tts", "location"), ("chirpstack", "join"), ("chirpstack", "status")]
    assert [(e["dev_eui"], e["battery_pct"], e["margin_db"]) for e in status] == [("0101010101010101", 75.5, 6)]


def test_operator_gets_the_newest_events_first_limited_and_a_clear_400_for_a_kind_that_does_not_exist(client, bridge):
    headers = b.api_headers(bridge, "admin")

    newest = client.get("/api/network_events?limit=2", headers=headers).json()
    typo = client.get("/api/network_events?kind=stauts", headers=headers)
    unknown_collar = client.get("/api/network_events?device_id=ffffffffffffffff", headers=headers)

    assert [e["kind"] for e in newest] == ["join", "status"]  # the two newest, oldest of them first
    assert typo.status_code == 400 and "stauts" in typo.json()["error"]
    assert unknown_collar.status_code == 404


def test_a_network_location_is_as_exact_as_the_role_may_see_positions(client, bridge):
    ranger = client.get("/api/network_events?kind=location", headers=b.api_headers(bridge, "ranger")).json()
    researcher = client.get("/api/network_events?kind=location", headers=b.api_headers(bridge, "researcher"))

    assert (ranger[0]["lat"], ranger[0]["lon"]) == (37.97155556731436, 23.72678801175413)
    assert researcher.status_code == 200 and researcher.json()[0]["lat"] is None
    # nor the fix's height, which with the reserve's terrain narrows where the collar is
    assert ranger[0]["detail"]["altitude_m"] == 10 and "altitude_m" not in researcher.json()[0]["detail"]


def test_a_researcher_and_a_field_technician_read_a_collars_network_reports_only_as_late_as_its_fixes(client, bridge):
    # A battery report heard a minute ago says the collar is in a gateway's range now: a role that
    # sees positions a day late reads it a day late too; the ranger reads it at once.
    now = bridge.clock().isoformat()
    fresh = {**nf.CHIRPSTACK["status"].body, "time": now, "deduplicationId": "0b2f6a51-27d4-4f3e-9d0c-61a5bd1f0c11",
             "batteryLevel": 12.0}
    posted = client.post("/uplinks/chirpstack?event=status", content=json.dumps(fresh), headers=b.HEADERS)
    assert posted.status_code == 200

    def batteries(role: str) -> list[float]:
        events = client.get("/api/network_events?kind=status", headers=b.api_headers(bridge, role)).json()
        return [event["battery_pct"] for event in events]

    assert batteries("ranger") == [75.5, 12.0]
    assert batteries("researcher") == [75.5]
    assert batteries("field_technician") == [75.5]


def test_a_researcher_reads_no_exact_place_a_location_service_answered_in_a_network_event(client, bridge):
    # LoRa Cloud answers through TTS `service_data` and a ChirpStack integration event with its own
    # shapes: a position solution as `llh` (Semtech's uplink response), a geolocation `object`; and a
    # ChirpStack txack names the gateway that sent the downlink, which places the collar in its range.
    service_data = nf.TTS["service_data"].copy()
    service_data["service_data"]["data"] = {"result": {"deveui": "0004A30B001C0530", "position_solution": {
        "llh": [-2.4012345, 37.5123456, 1180.0], "accuracy": 12.0, "algorithm_type": "gnssng"}}}
    for fixture, body in ((nf.TTS["service_data"], service_data), (nf.CHIRPSTACK["integration"], None),
                          (nf.CHIRPSTACK["txack"], None)):
        url = "/uplinks/tts" if fixture.network == "tts" else f"/uplinks/chirpstack?event={fixture.event}"
        posted = client.post(url, content=json.dumps(body or fixture.body), headers=b.HEADERS)
        assert posted.status_code == 200

    def read(role: str) -> str:
        answer = client.get("/api/network_events", headers=b.api_headers(bridge, role))
        assert answer.status_code == 200
        return answer.text

    for role in ("researcher", "field_technician"):
        shown = read(role)
        assert "integration" in shown and "service_data" in shown and "downlink_sent" in shown
        assert "37.5123456" not in shown and "52.3740364" not in shown and "0016c001f153a14c" not in shown
    ranger = read("ranger")
    assert "37.5123456" in ranger and "52.3740364" in ranger
    admin = b.api_headers(bridge, "admin")
    answers = client.get("/api/network_events?kind=integration", headers=admin).json()  # no network location
    seen = client.get("/api/audit?username=admin-tests", headers=admin).json()
    assert "52.3740364" in json.dumps(answers)
    assert any(entry["action"] == "network_locations" for entry in seen)  # a view of a place, logged


def test_researcher_cannot_decode_a_live_fix_from_a_simulated_uplinks_payload(client, bridge):
    # The Console's "Simulate uplink" of a collar's status or positions: its bytes are the fix, and the
    # codec (published, and in the payload formatter) decodes them to the exact place no grid coarsened.
    # A role without exact positions reads the event without them; an activity summary's bytes, which
    # place nothing, stay for the technician testing the integration.
    where = (-2.4012345, 37.5123456)
    payloads = {"status": b.status(lat=where[0], lon=where[1]), "positions": b.positions(fixes=((0, *where),)),
                "activity": b.activity()}
    for second, (port, payload) in enumerate(payloads.values()):
        simulated = nf.TTS["uplink_message"].copy()
        simulated.update(simulated=True, received_at=f"2020-02-12T15:16:0{second}Z")
        simulated["uplink_message"] = {**simulated["uplink_message"], "f_port": port,
                                       "frm_payload": base64.b64encode(payload).decode()}
        answer = client.post("/uplinks/tts", content=json.dumps(simulated), headers=b.HEADERS)
        assert answer.status_code == 200 and answer.json()["status"] == "recorded"

    def payloads_seen(role: str) -> dict[int, str | None]:
        answer = client.get("/api/network_events?kind=simulated_uplink", headers=b.api_headers(bridge, role))
        assert answer.status_code == 200
        return {event["detail"]["f_port"]: event["detail"].get("payload_hex") for event in answer.json()}

    every = {port: payload.hex() for port, payload in payloads.values()}
    activity_port = payloads["activity"][0]
    assert payloads_seen("ranger") == every
    for role in ("researcher", "field_technician"):
        assert payloads_seen(role) == {port: (hexed if port == activity_port else None) for port, hexed in every.items()}
