"""The networks' documented messages (tests/network_fixtures.py, written from The Things Stack's and
ChirpStack's pages) with one field broken the way a network server, a proxy or a bad firmware build
breaks it: each is still recorded for what it is, with the odd value dropped, on either store; and
The Things Stack's own MQTT topic names (`up/normalized`, `down/invalidated`) are read as its kinds.

Found by sending every documented shape with each field replaced by a wrong value: an integer
too large for the store's column cost the whole message (a dead letter of stage apply, on
PostgreSQL past 2**31, on SQLite past 2**63), a queue invalidation whose `downlinks` was not a
list crashed its reader, and a ChirpStack Protobuf event with an impossible time was taken for a
bug of the bridge (a dead letter of stage apply, answered 200) rather than a broken body."""

from __future__ import annotations

import json

import bridge_builders as b
import network_fixtures as nf
import pytest
from google.protobuf.json_format import ParseDict
from sqlalchemy import select
from test_bridge_mqtt import publish_all, publisher, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.chirpstack_protobuf import message_class
from lora_bridge.store.tables import NetworkEvent, RawUplink

TOO_LARGE = [2**40, -(2**40), 2**70]


def raw_rows(bridge) -> list[tuple]:
    """(status, message, spreading factor) of every body kept, in arrival order."""
    with bridge.db.read() as session:
        query = select(RawUplink.status, RawUplink.message, RawUplink.spreading_factor).order_by(RawUplink.id)
        return [tuple(row) for row in session.execute(query)]


def events(bridge) -> list[tuple]:
    """(kind, battery, margin) of every network event recorded."""
    with bridge.db.read() as session:
        query = select(NetworkEvent.kind, NetworkEvent.battery_pct, NetworkEvent.margin_db).order_by(NetworkEvent.id)
        return [tuple(row) for row in session.execute(query)]


@pytest.mark.parametrize("spreading_factor", TOO_LARGE)
def test_an_uplink_whose_spreading_factor_no_radio_sends_still_brings_its_position(client, bridge, spreading_factor):
    tts = nf.TTS["uplink_message"].copy()
    tts["uplink_message"]["settings"]["data_rate"]["lora"]["spreading_factor"] = spreading_factor
    chirpstack = nf.CHIRPSTACK["up"].copy()
    chirpstack["txInfo"] = {**chirpstack["txInfo"], "modulation": {"lora": {"spreadingFactor": spreading_factor}}}

    replies = [client.post("/uplinks/tts", content=json.dumps(tts), headers=b.HEADERS),
               client.post("/uplinks/chirpstack?event=up", content=json.dumps(chirpstack), headers=b.HEADERS)]

    assert [(r.status_code, r.json()["status"], r.json()["message"]) for r in replies] == [
        (200, "processed", "status"), (200, "processed", "status")]
    assert raw_rows(bridge) == [("processed", "status", None)] * 2
    assert bridge.dead_letters() == []


@pytest.mark.parametrize("name", ["downlink_queued", "downlink_sent", "downlink_ack", "downlink_nack", "downlink_failed"])
def test_a_delivery_report_whose_port_is_out_of_range_is_still_recorded(client, bridge, name):
    body = nf.TTS[name].copy()
    downlink = body[name]["downlink"] if name == "downlink_failed" else body[name]
    downlink["f_port"] = 2**40

    reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert (reply.status_code, reply.json()["status"], reply.json()["message"]) == (200, "recorded", name)
    assert bridge.dead_letters() == []


@pytest.mark.parametrize("name", ["downlink_sent", "downlink_ack", "downlink_failed", "downlink_queue_invalidated"])
@pytest.mark.parametrize("correlation", ["tembo:downlink:²", "tembo:downlink:" + "9" * 20])
def test_a_delivery_report_with_a_correlation_id_that_only_looks_like_tembos_is_still_recorded(
        client, bridge, name, correlation):
    # TTS hands back every correlation id of the message; one that starts like Tembo's own but holds
    # no row id (a superscript digit, more digits than a 64-bit id) had failed the whole report.
    body = nf.TTS[name].copy()
    message = body[name]
    downlinks = message["downlinks"] if name == "downlink_queue_invalidated" else [
        message["downlink"] if name == "downlink_failed" else message]
    for downlink in downlinks:
        downlink["correlation_ids"] = [*downlink["correlation_ids"], correlation]

    reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert (reply.status_code, reply.json()["status"], reply.json()["message"]) == (200, "recorded", name)
    assert bridge.dead_letters() == []


@pytest.mark.parametrize("margin", TOO_LARGE)
def test_a_chirpstack_status_with_a_margin_out_of_range_keeps_its_battery_and_drops_the_margin(client, bridge, margin):
    status = nf.CHIRPSTACK["status"].copy() | {"margin": margin}

    reply = client.post("/uplinks/chirpstack?event=status", content=json.dumps(status), headers=b.HEADERS)

    assert (reply.status_code, reply.json()["status"]) == (200, "recorded")
    assert events(bridge) == [("status", 75.5, None)]


@pytest.mark.parametrize("downlinks", [True, 7, 0.5, "vu8=", {"f_port": 15}])
def test_a_queue_invalidation_whose_downlinks_are_not_a_list_is_still_recorded(client, bridge, downlinks):
    body = nf.TTS["downlink_queue_invalidated"].copy()
    body["downlink_queue_invalidated"]["downlinks"] = downlinks

    reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert (reply.status_code, reply.json()["status"], reply.json()["message"]) == (
        200, "recorded", "downlink_queue_invalidated")
    assert bridge.dead_letters() == []


@pytest.mark.mqtt
def test_normalized_uplinks_and_a_field_masked_queue_invalidation_arrive_on_the_things_stacks_topics(
        mosquitto, sqlite_url):
    ids = {"end_device_ids": nf.TTS["uplink_normalized"].body["end_device_ids"]}
    messages = [
        ("v3/app1@ttn/devices/dev1/up/normalized", json.dumps(nf.TTS["uplink_normalized"].body).encode()),
        # A field mask that leaves the message object out: the topic names the kind. Topic names from
        # lorawan-stack's pkg/applicationserver/io/mqtt/topics (UplinkNormalizedTopic,
        # DownlinkQueueInvalidatedTopic); `down/invalidated` had been kept as an unknown kind.
        ("v3/app1@ttn/devices/dev1/down/invalidated", json.dumps(ids).encode()),
    ]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-topics",
                        share_group="topics", keep=bridge.keep_failed) as worker, \
                publisher(mosquitto, client_id="network-topics") as client:
            publish_all(client, messages)
            acknowledged = wait_until(lambda: worker.acknowledged == len(messages))
        outcomes = [(status, message) for status, message, _ in raw_rows(bridge)]
        kept = bridge.dead_letters()

    assert acknowledged
    assert sorted(outcomes) == [("processed", "status"), ("recorded", "downlink_queue_invalidated")]
    assert kept == []


@pytest.mark.parametrize("name", ["up", "join", "status", "location"])
def test_a_chirpstack_protobuf_event_whose_time_no_clock_writes_is_refused_as_broken_not_taken_for_a_bug(
        client, bridge, name):
    event = message_class(name)()
    ParseDict(nf.CHIRPSTACK[name].body, event, ignore_unknown_fields=True)
    event.time.nanos = 1_311_894_154  # past 999,999,999: a byte flipped on the way

    reply = client.post(f"/uplinks/chirpstack?event={name}", content=event.SerializeToString(),
                        headers={**b.HEADERS, "Content-Type": "application/octet-stream"})

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"  # kept: no retry wanted
    assert "is not a ChirpStack" in reply.json()["reason"] and "Nanos" in reply.json()["reason"]
    assert [letter.stage for letter in bridge.dead_letters()] == ["parse"]
