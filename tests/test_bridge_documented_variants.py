"""Variants of the networks' messages that their documentation allows and the fixtures' first copies
did not show: numbers written as text, a frame counter of other digits, an empty body, a body
too large, Protobuf from a newer ChirpStack. Each is recorded for what it is, or refused with a
reason a technician can act on; none crashes a parser or leaves a traceback in the log."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

import bridge_builders as b
import network_fixtures as nf
import pytest
from google.protobuf.json_format import ParseDict
from starlette.testclient import TestClient
from test_bridge_mqtt import publish_all, publisher, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.adapters.webhook import create_app
from lora_bridge.chirpstack_protobuf import message_class
from lora_bridge.network_messages import MAX_BODY_BYTES

PROTOBUF = {"X-Tembo-Secret": b.SECRET, "Content-Type": "application/octet-stream"}


@pytest.fixture
def bridge_store(sqlite_url):  # reading a variant is the same on both stores
    return sqlite_url


def no_tracebacks(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.exc_info]


def test_numbers_written_as_text_are_read_as_the_protobuf_json_mapping_allows(client, bridge, caplog):
    # TTS's JSON and ChirpStack's are the Protobuf JSON mapping of their messages, whose parsers take
    # an integer or a float "either as a number or as a string" (protobuf.dev, proto3 "JSON Mapping").
    # TTS data-formats uplink_message, with f_port, f_cnt, rssi and spreading_factor as text:
    tts = nf.TTS["uplink_message"].copy()
    message = tts["uplink_message"]
    message.update(f_port="1", f_cnt="7")
    message["rx_metadata"][0]["rssi"] = "-41"
    message["settings"]["data_rate"]["lora"]["spreading_factor"] = "9"
    # ChirpStack events.html `up`, fPort and fCnt as text; `status` with margin and batteryLevel as text:
    chirpstack = nf.CHIRPSTACK["up"].copy() | {"fPort": "1", "fCnt": "8"}
    status = nf.CHIRPSTACK["status"].copy() | {"margin": "6", "batteryLevel": "75.5"}

    with caplog.at_level(logging.WARNING):
        tts_reply = client.post("/uplinks/tts", content=json.dumps(tts), headers=b.HEADERS)
        chirpstack_reply = client.post("/uplinks/chirpstack?event=up", content=json.dumps(chirpstack), headers=b.HEADERS)
        status_reply = client.post("/uplinks/chirpstack?event=status", content=json.dumps(status), headers=b.HEADERS)

    assert [r.status_code for r in (tts_reply, chirpstack_reply, status_reply)] == [200, 200, 200]
    assert [tts_reply.json()["status"], tts_reply.json()["f_cnt"], tts_reply.json()["message"]] == ["processed", 7, "status"]
    assert [chirpstack_reply.json()["status"], chirpstack_reply.json()["f_cnt"]] == ["processed", 8]
    assert bridge.dead_letters() == []
    assert bridge.counts()["positions"] == 2
    (tts_collar,) = bridge.devices(["dev1"])
    assert tts_collar.last_rssi_dbm == -41.0
    (reported,) = bridge.network_events(kind="status", viewer=b.RANGER)
    assert (reported["battery_pct"], reported["margin_db"]) == (75.5, 6)
    assert no_tracebacks(caplog) == []


@pytest.mark.parametrize(("value", "f_cnt"), [("7.0", 7), ("7e0", 7), ("0.7e1", 7), ("1e5", 100000)])
def test_a_frame_counter_written_as_whole_number_text_is_read_as_protobufs_json_parsers_read_it(client, bridge,
                                                                                                value, f_cnt):
    # The protobuf conformance suite's Required.Proto3.JsonInput.Int32FieldQuotedExponentialValue: an integer
    # field given as {"optionalInt32": "1e5"} is 100000; Go's protojson (TTS, ChirpStack) reads it so.
    body = nf.TTS["uplink_message"].copy()
    body["uplink_message"]["f_cnt"] = value

    reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200, reply.text
    assert (reply.json()["status"], reply.json()["f_cnt"]) == ("processed", f_cnt)
    assert bridge.dead_letters() == []


@pytest.mark.parametrize("value", ["7.5", "1e-1", "2e19"])
def test_a_frame_counter_of_number_text_that_is_not_a_whole_counter_is_kept_as_a_dead_letter_naming_it(client, bridge,
                                                                                                      value):
    body = nf.TTS["uplink_message"].copy()
    body["uplink_message"]["f_cnt"] = value

    reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"
    assert f"'f_cnt' must be a frame counter 0..4294967295, got '{value}'" in reply.json()["reason"]
    (dead,) = bridge.dead_letters()
    assert dead.stage == "parse"


@pytest.mark.parametrize("value", ["²", "１２", "1_000", "0x10", "-1"])
def test_a_frame_counter_not_of_ascii_digits_is_a_400_with_its_reason_not_a_crash(client, bridge, caplog, value):
    # TTS data-formats uplink_message whose f_cnt is text, but not a decimal counter ("²".isdigit() is
    # True in Python, and int("²") fails: the parser must not trust isdigit).
    body = nf.TTS["uplink_message"].copy()
    body["uplink_message"]["f_cnt"] = value

    with caplog.at_level(logging.WARNING):
        reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"
    assert "'f_cnt' must be a frame counter" in reply.json()["reason"]
    (dead,) = bridge.dead_letters()
    assert dead.stage == "parse"
    assert no_tracebacks(caplog) == []


def test_a_frame_with_a_port_and_no_payload_counts_and_is_no_dead_letter(client, bridge):
    # LoRaWAN lets a frame carry FPort with an empty FRMPayload. TTS data-formats: "Empty fields are
    # omitted" (no frm_payload, no decoded_payload); ChirpStack events.html `up` without `data`.
    tts = nf.TTS["uplink_message"].copy()
    for key in ("frm_payload", "decoded_payload"):
        del tts["uplink_message"][key]
    chirpstack = nf.CHIRPSTACK["up"].copy()
    del chirpstack["data"]

    answers = [client.post("/uplinks/tts", content=json.dumps(tts), headers=b.HEADERS).json(),
               client.post("/uplinks/chirpstack?event=up", content=json.dumps(chirpstack), headers=b.HEADERS).json()]

    assert [(a["status"], a["message"], a["f_cnt"]) for a in answers] == [
        ("processed", "empty_frame", tts["uplink_message"]["f_cnt"]), ("processed", "empty_frame", chirpstack["fCnt"])]
    assert bridge.dead_letters() == []
    assert {(d.dev_eui, d.last_f_cnt) for d in bridge.devices()} == {
        ("0004A30B001C0530", tts["uplink_message"]["f_cnt"]), ("0101010101010101", chirpstack["fCnt"])}
    assert bridge.counts()["positions"] == 0


def test_a_join_whose_message_a_field_mask_left_out_is_read_from_its_webhook_path(client, bridge):
    # TTS field masks "always return" the id fields and leave out the rest (docs: api/concepts/
    # fieldmasks), so a webhook whose mask names only uplink paths posts a join-accept (data-formats
    # "Join-accept Messages") as its ids alone, to the join path of its base URL .../{appID}/{devID}.
    first = nf.TTS["uplink_message"].copy()
    for holder in (first, first["uplink_message"]):
        del holder["received_at"]  # dated at arrival, so the join lies between the two uplinks
    masked_join = {key: value for key, value in nf.TTS["join_accept"].copy().items() if key.endswith("_ids")}

    assert client.post("/uplinks/tts", content=json.dumps(first), headers=b.HEADERS).json()["status"] == "processed"
    join = client.post("/uplinks/tts/app1/dev1/join", content=json.dumps(masked_join), headers=b.HEADERS)
    again = client.post("/uplinks/tts", content=json.dumps(first), headers=b.HEADERS)

    assert join.status_code == 200
    assert (join.json()["status"], join.json()["message"], join.json()["device_id"]) == ("recorded", "join", "dev1")
    assert bridge.dead_letters() == []
    # After the join, FCnt 1 with the same bytes is the new session's first frame, not a copy.
    assert again.json()["status"] == "processed"


def test_a_join_dated_far_ahead_is_dated_at_arrival_so_the_new_sessions_frames_are_its_own(client, bridge):
    # TTS data-formats "Join-accept Messages" with join_accept.received_at in year 9999 (a network
    # clock gone wrong). The uplinks carry no received_at: each is dated at its arrival.
    def uplink(f_cnt: int) -> dict:
        body = nf.TTS["uplink_message"].copy()
        for holder in (body, body["uplink_message"]):
            del holder["received_at"]
        body["uplink_message"].update(f_cnt=f_cnt, frm_payload=base64.b64encode(b.status(b.T0_S + f_cnt)[1]).decode())
        return body

    join = nf.TTS["join_accept"].copy()
    join["received_at"] = join["join_accept"]["received_at"] = "9999-01-01T00:00:00Z"
    for f_cnt in (1, 2, 3):
        assert client.post("/uplinks/tts", content=json.dumps(uplink(f_cnt)), headers=b.HEADERS).json()["status"] == "processed"
    assert client.post("/uplinks/tts", content=json.dumps(join), headers=b.HEADERS).json()["status"] == "recorded"
    # The rejoined collar's FCnt 1, the same bytes as the old session's FCnt 1: its new session's first frame.
    first_after_join = client.post("/uplinks/tts", content=json.dumps(uplink(1)), headers=b.HEADERS).json()

    assert first_after_join["status"] == "processed"
    (collar,) = bridge.devices()
    assert (collar.last_f_cnt, collar.uplinks_received, collar.frame_loss_pct) == (1, 4, 0.0)
    (joined,) = bridge.network_events(kind="join", viewer=b.RANGER)
    assert joined["time"].year < 9999 and joined["detail"]["time_reported"].startswith("9999-01-01")


def test_a_chirpstack_log_with_its_enums_as_integers_is_read_by_their_names(client, bridge):
    # ChirpStack events.html `log` (integration.proto LogEvent): the Protobuf JSON mapping writes enum
    # names, and its parsers take integers too; LogLevel 1 is WARNING, LogCode 5 UPLINK_F_CNT_RESET.
    client.post("/uplinks/chirpstack?event=up", content=json.dumps(nf.CHIRPSTACK["up"].body), headers=b.HEADERS)
    reset = nf.CHIRPSTACK["log"].copy() | {"level": 1, "code": 5, "time": "2022-07-18T10:00:00Z"}
    future_code = nf.CHIRPSTACK["log"].copy() | {"level": "ERROR", "code": 99, "time": "2022-07-18T10:00:01Z"}
    again = nf.CHIRPSTACK["up"].copy() | {"time": "2022-07-18T10:00:05Z"}

    for body in (reset, future_code):
        assert client.post("/uplinks/chirpstack?event=log", content=json.dumps(body), headers=b.HEADERS).status_code == 200
    answer = client.post("/uplinks/chirpstack?event=up", content=json.dumps(again), headers=b.HEADERS).json()

    logs = bridge.network_events(kind="log", viewer=b.RANGER)
    assert [(e["detail"]["level"], e["detail"]["code"]) for e in logs] == [
        ("WARNING", "UPLINK_F_CNT_RESET"), ("ERROR", "99")]
    assert answer["status"] == "processed", "the same frame counter and bytes after the reset are a new frame"


def test_a_simulated_uplink_is_recorded_for_the_technician_and_raises_nothing_for_the_rangers(client, bridge):
    # TTS data-formats uplink_message with the top-level `"simulated": true` ("Signals if the message is
    # coming from the Network Server or is simulated"): the Console's "Simulate uplink" of a mortality
    # alert, with f_cnt left out (0), after the collar's real FCnt 40.
    real = nf.TTS["uplink_message"].copy()
    real["uplink_message"]["f_cnt"] = 40
    simulated = nf.TTS["uplink_message"].copy()
    simulated["simulated"] = True
    del simulated["uplink_message"]["f_cnt"]
    port, payload = b.alert("mortality")
    simulated["uplink_message"].update(f_port=port, frm_payload=base64.b64encode(payload).decode())
    following = nf.TTS["uplink_message"].copy()
    # The next real status a minute after the collar's, heard as it is sent (a collar time ahead of its
    # reception is not believed: dated at reception, it would share the first fix's time).
    heard = b.rfc3339(datetime.fromtimestamp(nf.STATUS_TIME_S + 62, UTC))
    following["received_at"] = heard
    following["uplink_message"].update(f_cnt=41, frm_payload=base64.b64encode(b.status(nf.STATUS_TIME_S + 60)[1]).decode(),
                                       received_at=heard)

    assert client.post("/uplinks/tts", content=json.dumps(real), headers=b.HEADERS).json()["status"] == "processed"
    answer = client.post("/uplinks/tts", content=json.dumps(simulated), headers=b.HEADERS).json()
    assert client.post("/uplinks/tts", content=json.dumps(following), headers=b.HEADERS).json()["status"] == "processed"

    assert (answer["status"], answer["message"], answer["device_id"]) == ("recorded", "simulated_uplink", "dev1")
    counts = bridge.counts()
    assert (counts["alerts"], counts["positions"], counts["downlinks_queued"]) == (0, 2, 0)
    (collar,) = bridge.devices()
    assert (collar.last_f_cnt, collar.uplinks_received, collar.frame_loss_pct) == (41, 2, 0.0)
    (recorded,) = bridge.network_events(kind="simulated_uplink", viewer=b.RANGER)
    assert (recorded["detail"]["f_port"], recorded["detail"]["payload_hex"]) == (port, payload.hex())


def test_an_empty_body_is_refused_as_empty_and_starts_no_session(client, bridge):
    # ChirpStack's HTTP integration with Protobuf encoding: an empty body would parse as an UplinkEvent
    # with every field at its default (FCnt 0). No documented event is empty.
    first = client.post("/uplinks/chirpstack?event=up", content=json.dumps(nf.CHIRPSTACK["up"].body), headers=b.HEADERS)
    empty = client.post("/uplinks/chirpstack?event=up", content=b"", headers=PROTOBUF)

    assert first.status_code == 200
    assert empty.status_code == 200 and empty.json()["reason"] == "body is empty"
    (collar,) = bridge.devices()
    assert collar.last_f_cnt == nf.CHIRPSTACK["up"].body["fCnt"]


def test_a_body_cut_at_the_webhooks_limit_says_so_in_its_dead_letter(client, bridge):
    # A TTS data-formats uplink_message padded past the limit (say, a payload formatter's decoded_payload).
    body = nf.TTS["uplink_message"].copy()
    body["uplink_message"]["decoded_payload"] = {"blob": "x" * MAX_BODY_BYTES}

    reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"
    assert reply.json()["reason"].startswith(f"body too large: at least {MAX_BODY_BYTES} bytes")
    (dead,) = bridge.dead_letters()
    assert dead.reason.startswith("body too large")


@pytest.mark.mqtt
def test_mqtt_empty_message_and_newer_protobuf_are_told_apart_on_a_real_broker(mosquitto, sqlite_url, caplog):
    # ChirpStack events.html `up` in binary Protobuf, from a newer ChirpStack: fields 999 (varint) and
    # 1000 (bytes) that the pinned chirpstack-api does not know. Protobuf parsers skip unknown fields.
    topic = f"application/{nf.CHIRPSTACK['up'].body['deviceInfo']['applicationId']}/device/0101010101010101/event/up"
    event = ParseDict(nf.CHIRPSTACK["up"].copy() | {"fCnt": 9}, message_class("up")(), ignore_unknown_fields=True)
    newer = event.SerializeToString() + bytes([0xB8, 0x3E, 0x05, 0xC2, 0x3E, 0x03]) + b"abc"
    messages = [(topic, newer), (topic, b"")]  # an empty publish (what clears a retained message)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, caplog.at_level(logging.WARNING):
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-variants",
                        share_group="variants") as worker, publisher(mosquitto, client_id="network-variants") as client:
            publish_all(client, messages)
            acknowledged = wait_until(lambda: worker.acknowledged == len(messages))
        (collar,) = bridge.devices()
        (dead,) = bridge.dead_letters()

    assert acknowledged
    assert collar.last_f_cnt == 9 and collar.uplinks_received == 1
    assert (dead.stage, dead.reason) == ("parse", "body is empty")
    assert no_tracebacks(caplog) == []


@pytest.fixture
def any_store_client(store_url):
    """The webhook over a store of either engine: PostgreSQL enforces column lengths, SQLite does not."""
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        client.bridge = bridge
        yield client


def test_a_kind_with_a_long_name_in_the_webhook_path_is_kept_on_either_store(any_store_client):
    # A TTS webhook's per-message path (webhooks/creating-webhooks: each message type has its own path)
    # set to a name longer than the store's event column: a future kind, kept and answered 2xx.
    path = "/uplinks/tts/app1/dev1/" + "future-message-kind-of-the-things-stack/with-parts"
    body = {"end_device_ids": nf.TTS_END_DEVICE_IDS, "received_at": "2020-02-17T10:32:24.590413417Z"}

    reply = any_store_client.post(path, content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "kept"
    (dead,) = any_store_client.bridge.dead_letters()
    assert dead.stage == "kind"


@pytest.mark.mqtt
@pytest.mark.postgres
def test_an_mqtt_kind_with_a_long_name_does_not_hold_back_the_acknowledgements_on_postgres(mosquitto, postgres_url):
    # TTS MQTT topics v3/{app}@{tenant}/devices/{dev}/{kind} (integrations/other-integrations/mqtt): a
    # future kind named longer than the store's event column, then the data-formats uplink_message.
    # PUBACKs leave in arrival order, so a body the store refused held back every later one.
    long_kind = "v3/app1@ttn/devices/dev1/future-message-kind-of-the-things-stack/with-parts"
    messages = [(long_kind, json.dumps({"end_device_ids": nf.TTS_END_DEVICE_IDS}).encode()),
                ("v3/app1@ttn/devices/dev1/up", json.dumps(nf.TTS["uplink_message"].body).encode())]
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-long-kind",
                        share_group="long-kind") as worker, publisher(mosquitto, client_id="network-long-kind") as client:
            publish_all(client, messages)
            acknowledged = wait_until(lambda: worker.acknowledged == len(messages))
        positions = bridge.counts()["positions"]
        (kept,) = bridge.dead_letters()

    assert acknowledged
    assert positions == 1 and kept.stage == "kind"


@pytest.mark.parametrize("path", ["/uplinks/tts/app1/dev1/join%00", "/uplinks/tts/app%00/dev%00", "/uplinks/chirpstack?event=up%00"])
def test_a_nul_in_the_kind_named_by_path_or_query_is_kept_on_either_store(any_store_client, path):
    # PostgreSQL text holds no NUL character; a percent-encoded %00 in a webhook's path or ?event= did reach it.
    network = "chirpstack" if "chirpstack" in path else "tts"
    body = nf.CHIRPSTACK["up"].body if network == "chirpstack" else nf.TTS["join_accept"].body

    reply = any_store_client.post(path, content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200, reply.text


@pytest.mark.mqtt
def test_an_mqtt_message_over_the_webhooks_limit_is_cut_kept_and_acknowledged(mosquitto, sqlite_url):
    # ChirpStack events.html `up` padded past 256 KiB (a broker takes up to 256 MB), then the plain `up`.
    topic = f"application/{nf.CHIRPSTACK['up'].body['deviceInfo']['applicationId']}/device/0101010101010101/event/up"
    padded = nf.CHIRPSTACK["up"].copy() | {"object": {"blob": "x" * (2 * MAX_BODY_BYTES)}, "fCnt": 3}
    messages = [(topic, json.dumps(padded).encode()), (topic, json.dumps(nf.CHIRPSTACK["up"].body).encode())]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-big",
                        share_group="big") as worker, publisher(mosquitto, client_id="network-big") as client:
            publish_all(client, messages)
            acknowledged = wait_until(lambda: worker.acknowledged == len(messages))
        (dead,) = bridge.dead_letters()
        positions = bridge.counts()["positions"]

    assert acknowledged
    assert dead.reason.startswith(f"body too large: at least {MAX_BODY_BYTES} bytes") and len(dead.body) == MAX_BODY_BYTES
    assert positions == 1


def test_a_chirpstack_v3_uplink_is_refused_with_a_reason_that_names_the_version(client, bridge):
    # ChirpStack Application Server v3's HTTP integration `up` (its docs, integrations/events): devEUI
    # base64 and applicationID at the top level, no deviceInfo; Tembo reads ChirpStack v4.
    v3 = {"applicationID": "123", "applicationName": "collars", "deviceName": "collar-07", "devEUI": "AgICAgICAgI=",
          "rxInfo": [{"gatewayID": "AwMDAwMDAwM=", "rssi": -57, "loRaSNR": 10}], "adr": True, "fCnt": 10, "fPort": 1,
          "data": nf.status_payload()}

    reply = client.post("/uplinks/chirpstack?event=up", content=json.dumps(v3), headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"
    assert reply.json()["reason"].startswith("a ChirpStack v3 event")
    (dead,) = bridge.dead_letters()
    assert dead.stage == "parse"
