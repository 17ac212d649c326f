"""A network server says some things twice: The Things Stack retries a webhook call, an MQTT broker
hands a QoS 1 message over again after a reconnect, an operator runs both integrations at once.
The operator still finds each join, delivery report, location or status recorded once, and what it
means applied once; a broken body the server keeps retrying is one dead letter with its tries."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import bridge_builders as b
import network_fixtures as nf
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.store.tables import Device, RawUplink

TTS_EVENTS = [name for name in nf.TTS if not name.startswith("uplink_")]
CHIRPSTACK_EVENTS = [name for name in nf.CHIRPSTACK if name != "up"]


def url_of(fixture: nf.Fixture) -> str:
    return "/uplinks/tts" if fixture.network == "tts" else f"/uplinks/chirpstack?event={fixture.event}"


def events_of(bridge) -> list[dict]:
    return bridge.network_events(viewer=b.RANGER)


@pytest.mark.parametrize("name", [("tts", n) for n in TTS_EVENTS] + [("chirpstack", n) for n in CHIRPSTACK_EVENTS],
                         ids=lambda name: "-".join(name))
def test_operator_finds_a_network_event_delivered_twice_recorded_once(client, bridge, name):
    network, kind = name
    fixture = (nf.TTS if network == "tts" else nf.CHIRPSTACK)[kind]

    first = b.webhook_post(client, url_of(fixture), fixture.body)
    again = b.webhook_post(client, url_of(fixture), fixture.body)  # the network server's retry, byte for byte

    assert first["status"] == "recorded"
    assert (again["status"], again["message"]) == ("duplicate", first["message"])
    assert len(events_of(bridge)) == 1


def test_operator_finds_one_join_when_webhook_and_mqtt_both_deliver_it_written_differently(client, bridge):
    join = nf.TTS["join_accept"].body
    webhook_body = json.dumps(join).encode()
    mqtt_body = json.dumps(join, indent=2, sort_keys=True).encode()  # the same message, other bytes

    b.webhook_post(client, "/uplinks/tts", webhook_body)
    again = bridge.ingest_network_message("tts", "join", mqtt_body,
                                          path_ids={"application_id": "app1", "device_id": "dev1"})

    assert again.status == "duplicate"
    assert [event["kind"] for event in events_of(bridge)] == ["join"]


def test_operator_finds_one_join_when_a_field_masked_webhook_and_mqtt_both_deliver_it(client, bridge):
    # The webhook's field mask keeps join_accept but not received_at or correlation_ids; the MQTT copy
    # is whole. Their content differs, and the join had been recorded twice (a second session started
    # behind the collar's first frames). The Join Server's session key id names the join in both.
    join = nf.TTS["join_accept"].body
    masked = {"join_accept": {"session_key_id": join["join_accept"]["session_key_id"]}}

    first = b.webhook_post(client, "/uplinks/tts/app1/dev1/join", masked)
    again = bridge.ingest_network_message("tts", "join", json.dumps(join).encode(),
                                          path_ids={"application_id": "app1", "device_id": "dev1"})

    assert (first["status"], again.status) == ("recorded", "duplicate")
    assert [event["kind"] for event in events_of(bridge)] == ["join"]


def test_operator_keeps_every_distinct_event_of_one_kind(client, bridge):
    later_join = nf.TTS["join_accept"].copy()
    later_join["received_at"] = later_join["join_accept"]["received_at"] = "2020-02-17T11:00:00Z"
    later_join["join_accept"]["session_key_id"] = "AXBSH1Pk6Z0G166RlH16Cw=="  # each join, its own session keys
    second_status = nf.CHIRPSTACK["status"].copy()
    second_status.update(deduplicationId="0f4c2b8e-2a6b-4a57-9a7f-1f0d3c1d9e11", time="2022-07-18T10:34:15Z",
                         batteryLevel=74.0)
    # ChirpStack gives the uplink's deduplicationId to every event it caused: the status and the
    # location of one uplink share it and are two events.
    location_of_that_uplink = nf.CHIRPSTACK["location"].copy()
    location_of_that_uplink["deduplicationId"] = second_status["deduplicationId"]

    b.webhook_post(client, "/uplinks/tts", nf.TTS["join_accept"].body)
    b.webhook_post(client, "/uplinks/tts", later_join)
    b.webhook_post(client, "/uplinks/chirpstack?event=status", nf.CHIRPSTACK["status"].body)
    b.webhook_post(client, "/uplinks/chirpstack?event=status", second_status)
    answer = b.webhook_post(client, "/uplinks/chirpstack?event=location", location_of_that_uplink)

    assert answer["status"] == "recorded"
    assert sorted(event["kind"] for event in events_of(bridge)) == ["join", "join", "location", "status", "status"]


def test_operator_with_a_field_masked_webhook_sees_the_collars_second_join_a_day_later_start_a_new_session(
        client, bridge):
    # A field mask without received_at and correlation_ids: TTS posts `{}` to the webhook's /join path,
    # the same bytes for every join of the collar. While TTS may still retry the call (90 min) an equal
    # body is a retry; a day later it is the collar joining again. That join had been answered
    # `duplicate` and not applied, so the rejoined collar's frame 1 was taken for the old frame 1.
    frame = {"uplink_message": {"f_port": 1, "f_cnt": 1, "frm_payload": nf.status_payload()}}
    answers = [b.webhook_post(client, "/uplinks/tts/app1/dev1/join", {})]
    answers.append(b.webhook_post(client, "/uplinks/tts/app1/dev1", frame))
    answers.append(b.webhook_post(client, "/uplinks/tts/app1/dev1/join", {}))  # TTS's retry of the join
    _a_day_passes(bridge)
    answers.append(b.webhook_post(client, "/uplinks/tts/app1/dev1/join", {}))  # the collar rejoins
    answers.append(b.webhook_post(client, "/uplinks/tts/app1/dev1", frame))  # its new frame 1, the same bytes
    answers.append(b.webhook_post(client, "/uplinks/tts/app1/dev1/join", {}))  # TTS's retry of the rejoin
    joins = client.get("/api/network_events?kind=join", headers=b.api_headers(bridge, "admin")).json()

    assert [(a["status"], a["message"]) for a in answers] == [
        ("recorded", "join"), ("processed", "status"), ("duplicate", "join"),
        ("recorded", "join"), ("processed", "status"), ("duplicate", "join"),
    ]
    assert len(joins) == 2
    (device,) = bridge.devices()
    assert (device.uplinks_received, device.uplinks_lost) == (2, 0)


def _a_day_passes(bridge) -> None:
    """What the bridge heard so far, and when it saw the collars, dated a day earlier."""
    with bridge.db.write() as session:
        for raw in session.scalars(select(RawUplink)):
            raw.received_at -= timedelta(days=1)
        for device in session.scalars(select(Device)):
            device.joined_at -= timedelta(days=1)
            device.first_seen -= timedelta(days=1)
            device.last_seen -= timedelta(days=1)


def test_a_log_chirpstack_sends_twice_is_one_log_and_a_new_log_is_another(client, bridge):
    log = nf.CHIRPSTACK["log"].body
    later = nf.CHIRPSTACK["log"].copy() | {"time": "2022-07-18T09:40:00Z"}

    answers = [b.webhook_post(client, "/uplinks/chirpstack?event=log", body)["status"] for body in (log, log, later)]

    assert answers == ["recorded", "duplicate", "recorded"]
    assert len(events_of(bridge)) == 2


def test_operator_sees_a_queue_invalidation_delivered_again_send_the_collars_ack_once_more_not_twice(store_url, network):
    # The collar rejoined: TTS drops its downlink queue and says so; Tembo sends the ack again. The
    # same report delivered again later (an MQTT redelivery) must not send it a third time.
    with b.pushing_to(network, store_url) as bridge, TestClient(create_app(bridge)) as client:
        alert = nf.TTS["uplink_message"].copy()
        port, payload = b.alert("mortality", seq=2, time_s=nf.STATUS_TIME_S)
        alert["uplink_message"].update(f_port=port, f_cnt=3, frm_payload=base64.b64encode(payload).decode())
        b.webhook_post(client, "/uplinks/tts", alert)
        bridge.flush_downlinks()
        (pushed,) = network.pushes
        invalidated = nf.TTS["downlink_queue_invalidated"].copy()
        invalidated["downlink_queue_invalidated"]["downlinks"] = [{
            "f_port": 32, "frm_payload": base64.b64encode(pushed["payload"]).decode(),
            "correlation_ids": pushed["correlation_ids"],
        }]

        b.webhook_post(client, "/uplinks/tts", invalidated)
        bridge.flush_downlinks()
        again = b.webhook_post(client, "/uplinks/tts", invalidated)
        bridge.flush_downlinks()
        (downlink,) = bridge.downlinks()

    assert again["status"] == "duplicate"
    assert len(network.pushes) == 2
    assert downlink.state == "sent"


def test_operator_finds_one_dead_letter_with_its_tries_when_the_network_server_retries_a_broken_body(client, bridge):
    # The Things Stack sends a body again when its answer did not come back in time (up to seven tries).
    broken = nf.TTS["uplink_message"].copy()
    broken["uplink_message"]["frm_payload"] = "not base64!"
    other = nf.TTS["uplink_message"].copy()
    other["uplink_message"]["f_cnt"] = "a lot"
    body = json.dumps(broken).encode()

    codes = [client.post("/uplinks/tts", content=body, headers=b.HEADERS).status_code for _ in range(7)]
    other_code = client.post("/uplinks/tts", content=json.dumps(other), headers=b.HEADERS).status_code
    listed = client.get("/api/dead_letters", headers=b.api_headers(bridge, "admin")).json()

    assert codes == [200] * 7 and other_code == 200  # kept, and answered 2xx: the webhook stays healthy
    assert [(letter["stage"], letter["tries"]) for letter in listed] == [("parse", 7), ("parse", 1)]
    assert json.loads(bytes.fromhex(listed[0]["body"])) == broken


def test_operator_still_reads_a_dead_letters_tries_after_the_store_is_compacted(store_url):
    from datetime import timedelta

    from lora_bridge.store.utc import utc_now

    broken = nf.TTS["uplink_message"].copy()
    broken["end_device_ids"]["dev_eui"] = "not a DevEUI"
    with b.fresh_bridge(store_url, raw_retention_days=30, outbox_worker=False) as bridge:
        for _ in range(3):
            assert bridge.ingest_network_message("tts", None, json.dumps(broken).encode()).malformed
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1, gateways=("gw-b",)))  # another gateway's copy

        report = bridge.compact_raw_bodies(now=utc_now() + timedelta(days=31))
        (letter,) = bridge.dead_letters()

    assert report.duplicates_deleted == 1  # the uplink's copy; the refused body's tries stay with its letter
    assert letter.tries == 3


@pytest.mark.mqtt
def test_operator_finds_events_the_broker_delivered_again_after_a_lost_puback_recorded_once(mosquitto, sqlite_url):
    # The bridge kept each message, then lost its PUBACK (it crashed, or its connection dropped):
    # at QoS 1 the broker delivers every one of them again.
    from test_bridge_mqtt import publish_all, publisher, wait_until

    from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
    from lora_bridge.errors import StoreUnavailable

    messages = [
        ("v3/app1@ttn/devices/dev1/join", json.dumps(nf.TTS["join_accept"].body).encode()),
        ("v3/app1@ttn/devices/dev1/location/solved", json.dumps(nf.TTS["location_solved"].body).encode()),
        ("application/17c82e96/device/0101010101010101/event/status", json.dumps(nf.CHIRPSTACK["status"].body).encode()),
    ]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        kept_once: set[bytes] = set()

        def keeps_then_loses_the_puback(network, event, body, **kwargs):
            result = bridge.ingest_network_message(network, event, body, **kwargs)
            if body not in kept_once:
                kept_once.add(body)
                raise StoreUnavailable("connection dropped before the PUBACK")
            return result

        with MqttIngest(keeps_then_loses_the_puback, parse_broker_url(mosquitto.url), client_id="bridge-again",
                        share_group="again") as worker, publisher(mosquitto, client_id="network-again") as client:
            publish_all(client, messages)
            acknowledged = wait_until(lambda: worker.acknowledged == len(messages))
        kinds = sorted(event["kind"] for event in events_of(bridge))

    assert acknowledged
    assert kinds == ["join", "location", "status"]


def test_operator_keeps_a_gnss_and_a_tdoa_location_chirpstack_solved_from_one_uplink(client, bridge):
    # One uplink, two resolvers: both locations carry the uplink's deduplicationId and are two events.
    tdoa = nf.CHIRPSTACK["location"].body
    gnss = nf.CHIRPSTACK["location"].copy()
    gnss["location"] = {"latitude": 52.37411, "longitude": 4.91455, "altitude": 3.0, "source": "GEO_RESOLVER_GNSS",
                        "accuracy": 8.0}
    looked_up = nf.CHIRPSTACK["integration"].copy()
    looked_up["object"] = {"accuracy": 8, "latitude": 52.37411}  # the same kind of lookup, another answer

    answers = [b.webhook_post(client, f"/uplinks/chirpstack?event={name}", body)["status"] for name, body in (
        ("location", tdoa), ("location", gnss), ("location", tdoa),
        ("integration", nf.CHIRPSTACK["integration"].body), ("integration", looked_up))]

    assert answers == ["recorded", "recorded", "duplicate", "recorded", "recorded"]
    assert sorted(event["detail"]["source"] for event in events_of(bridge) if event["kind"] == "location") == [
        "GEO_RESOLVER_GNSS", "GEO_RESOLVER_TDOA"]


@pytest.mark.parametrize("name", [name for name in CHIRPSTACK_EVENTS if name != "integration"])
def test_an_event_chirpstack_sends_as_json_and_as_protobuf_is_recorded_once(client, bridge, name):
    # Two integrations of one ChirpStack (HTTP in JSON, MQTT in Protobuf) deliver the same event.
    from google.protobuf.json_format import ParseDict

    from lora_bridge.chirpstack_protobuf import message_class

    body = nf.CHIRPSTACK[name].copy()
    if name == "location":
        body["location"]["accuracy"] = 13.7  # a 32-bit float in Protobuf: 13.699999809265137
    protobuf = ParseDict(body, message_class(name)(), ignore_unknown_fields=True).SerializeToString()

    b.webhook_post(client, f"/uplinks/chirpstack?event={name}", body)
    reply = client.post(f"/uplinks/chirpstack?event={name}", content=protobuf,
                        headers={**b.HEADERS, "Content-Type": "application/octet-stream"})

    assert reply.json()["status"] == "duplicate"
    assert len(events_of(bridge)) == 1


def test_field_technician_still_sees_the_gateway_that_heard_a_collar_after_its_network_reports(client, bridge):
    # ChirpStack reports the collar's battery after an uplink that answered DevStatusReq, and the
    # network confirms the ack downlink it sent: neither was heard by a gateway of its own.
    b.webhook_post(client, "/uplinks/chirpstack?event=up", nf.CHIRPSTACK["up"].body)
    b.webhook_post(client, "/uplinks/chirpstack?event=status", nf.CHIRPSTACK["status"].body)
    b.webhook_post(client, "/uplinks/chirpstack?event=txack", nf.CHIRPSTACK["txack"].body)

    (health,) = bridge.fleet_health()

    assert health.last_gateway == "0016c001f153a14c"


def test_operator_replaying_the_letters_of_an_older_store_folds_one_bodys_tries_into_one_letter(bridge):
    # A store from before the bodies were keyed holds one letter per try of the same broken body.
    from lora_bridge import ingest

    broken = nf.TTS["uplink_message"].copy()
    broken["uplink_message"]["f_cnt"] = "a lot"
    body = json.dumps(broken).encode()
    with bridge.db.write() as session:
        for _ in range(3):
            raw = ingest.raw_row(body, "tts", event="uplink_message", content_type="application/json")
            session.add(raw)
            session.flush()
            ingest.dead_letter(session, raw, ingest.STAGE_PARSE, "not yet keyed")

    report = bridge.replay_dead_letters()
    again = bridge.replay_dead_letters()
    (letter,) = bridge.dead_letters()

    assert report.still_dead == 3 and again.still_dead == 1
    assert letter.tries == 3


def test_operator_keeps_the_reports_of_two_downlinks_queued_at_one_instant(client, bridge):
    # One push of two downlinks: the Application Server may date both reports alike; each downlink's
    # own correlation ids tell them apart, and a retry of either is still one.
    first = nf.TTS["downlink_queued"].copy()
    second = nf.TTS["downlink_queued"].copy()
    second["downlink_queued"].update(f_cnt=2, correlation_ids=["as:downlink:01E19B99501X84X6CV471TVSZ2"])

    answers = [b.webhook_post(client, "/uplinks/tts", body)["status"] for body in (first, second, second)]

    assert answers == ["recorded", "recorded", "duplicate"]


def test_an_integration_answer_holding_a_number_no_float_holds_is_still_recorded(client, bridge):
    answer = nf.CHIRPSTACK["integration"].copy()
    answer["object"] = {"counter": 10**400, "accuracy": 25}

    reply = client.post("/uplinks/chirpstack?event=integration", content=json.dumps(answer), headers=b.HEADERS)

    assert (reply.status_code, reply.json()["status"]) == (200, "recorded")
