"""Every message kind The Things Stack and ChirpStack send reaches the bridge's webhook as their
documentation shows it, is answered 2xx and is recorded for what it is."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import bridge_builders as b
import network_fixtures as nf
import pytest
from google.protobuf.json_format import ParseDict
from starlette.testclient import TestClient

from lora_bridge.adapters.mqtt import route
from lora_bridge.adapters.webhook import create_app
from lora_bridge.chirpstack_protobuf import has_message, message_class
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Downlink
from lora_bridge.store.utc import utc_now

TTS_OUTCOMES = {
    "uplink_message": ("processed", "status"),
    "uplink_message_without_f_port": ("processed", "mac_commands"),
    "uplink_normalized": ("processed", "status"),
    "join_accept": ("recorded", "join"),
    "downlink_queued": ("recorded", "downlink_queued"),
    "downlink_sent": ("recorded", "downlink_sent"),
    "downlink_ack": ("recorded", "downlink_ack"),
    "downlink_nack": ("recorded", "downlink_nack"),
    "downlink_failed": ("recorded", "downlink_failed"),
    "downlink_queue_invalidated": ("recorded", "downlink_queue_invalidated"),
    "location_solved": ("recorded", "location"),
    "service_data": ("recorded", "service_data"),
}
CHIRPSTACK_OUTCOMES = {
    "up": ("processed", "status"),
    "join": ("recorded", "join"),
    "ack": ("recorded", "downlink_ack"),
    "txack": ("recorded", "downlink_sent"),
    "status": ("recorded", "status"),
    "log": ("recorded", "log"),
    "location": ("recorded", "location"),
    "integration": ("recorded", "integration"),
}


@pytest.fixture
def bridge_store(sqlite_url):  # reading the kinds is the same on both stores; the downlink tests below run on both
    return sqlite_url


def test_every_documented_message_kind_has_a_fixture():
    assert set(nf.TTS) == set(TTS_OUTCOMES)
    assert set(nf.CHIRPSTACK) == set(CHIRPSTACK_OUTCOMES)
    assert all(f.doc.startswith("https://") for f in [*nf.TTS.values(), *nf.CHIRPSTACK.values()])


@pytest.mark.parametrize("name", sorted(TTS_OUTCOMES))
def test_every_tts_message_kind_is_answered_2xx_and_recorded_for_what_it_is(client, bridge, name):
    answer = b.webhook_post(client, "/uplinks/tts", nf.TTS[name].body)

    assert (answer["status"], answer["message"]) == TTS_OUTCOMES[name]
    assert bridge.dead_letters() == []
    (device,) = bridge.devices()
    assert device.device_id == "dev1", "the TTS device id names a collar first heard"
    if answer["status"] == "recorded":
        (event,) = bridge.network_events(viewer=b.RANGER)
        assert (event["kind"], event["device_id"], event["network"]) == (answer["message"], "dev1", "tts")
    else:
        assert device.dev_eui == "0004A30B001C0530"


@pytest.mark.parametrize("name", sorted(CHIRPSTACK_OUTCOMES))
def test_every_chirpstack_event_is_answered_2xx_and_recorded_for_what_it_is(client, bridge, name):
    answer = b.webhook_post(client, f"/uplinks/chirpstack?event={name}", nf.CHIRPSTACK[name].body)

    assert (answer["status"], answer["message"]) == CHIRPSTACK_OUTCOMES[name]
    (device,) = bridge.devices()
    assert (device.device_id, device.dev_eui) == ("Test device", "0101010101010101")
    assert bridge.dead_letters() == []


@pytest.mark.parametrize("name", sorted(n for n in CHIRPSTACK_OUTCOMES if has_message(n)))
def test_chirpstack_fixtures_are_valid_integration_proto_json_and_read_the_same_as_protobuf(client, bridge, name):
    message = ParseDict(nf.CHIRPSTACK[name].body, message_class(name)())  # strict: unknown fields fail
    reply = client.post(
        f"/uplinks/chirpstack?event={name}",
        content=message.SerializeToString(),
        headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/octet-stream"},
    )

    assert reply.status_code == 200
    assert (reply.json()["status"], reply.json()["message"]) == CHIRPSTACK_OUTCOMES[name]
    (device,) = bridge.devices()
    assert device.dev_eui == "0101010101010101"


def test_chirpstack_integration_event_in_protobuf_is_kept_when_the_pinned_api_lacks_its_message(client, bridge):
    reply = client.post(
        "/uplinks/chirpstack?event=integration",
        content=b"\x0a\x03abc",
        headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/octet-stream"},
    )

    assert reply.status_code == 200 and reply.json()["status"] in ("recorded", "kept")


def test_broken_protobuf_is_a_400_dead_letter_and_the_next_uplink_still_lands(client, bridge):
    broken = client.post(
        "/uplinks/chirpstack?event=up",
        content=b"\xff\xff\xff\xff",
        headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/octet-stream"},
    )
    good = b.webhook_post(client, "/uplinks/chirpstack?event=up", nf.CHIRPSTACK["up"].body)

    assert broken.status_code == 200 and "Protobuf" in broken.json()["reason"]
    assert good["status"] == "processed"
    (letter,) = bridge.dead_letters()
    assert letter.stage == "parse"


def test_field_masked_uplink_takes_its_collar_from_the_webhook_path(client, bridge):
    masked = {"uplink_message": nf.TTS["uplink_message"].copy()["uplink_message"]}

    answer = b.webhook_post(client, "/uplinks/tts/app1/dev1", masked)

    assert (answer["status"], answer["device_id"], answer["message"]) == ("processed", "dev1", "status")
    (animal,) = bridge.animals(viewer=b.RANGER)
    assert animal.battery_mv == 3900


def test_a_webhook_naming_the_device_by_its_deveui_path_variable_keeps_one_collar_when_field_masked(client, bridge):
    # TTS webhook base URL https://HOST/uplinks/tts/{{appID}}/{{devEUI}} (path variables page): the first
    # body carries its ids, a later one is reduced by a field mask to `uplink_message`.
    full = nf.TTS["uplink_message"].copy()
    masked_message = nf.TTS["uplink_message"].copy()["uplink_message"]
    masked_message.update(f_cnt=2, received_at="2020-02-12T15:25:45Z")

    first = b.webhook_post(client, "/uplinks/tts/app1/0004A30B001C0530", full)
    masked = b.webhook_post(client, "/uplinks/tts/app1/0004A30B001C0530", {"uplink_message": masked_message})

    assert [(a["status"], a["device_id"], a["dev_eui"]) for a in (first, masked)] == [
        ("processed", "dev1", "0004A30B001C0530"), ("processed", "dev1", "0004A30B001C0530")]
    assert [(d.device_id, d.dev_eui, d.uplinks_received) for d in bridge.devices()] == [
        ("dev1", "0004A30B001C0530", 2)]  # had been a second collar named after its DevEUI


def test_operator_whose_webhook_field_mask_leaves_out_the_payload_sees_a_dead_letter_saying_so(client, bridge):
    # A field mask of `up.uplink_message.decoded_payload` (and the ids, port, counter): TTS posts what
    # its payload formatter made of the bytes, not the bytes. A collar's alert had been taken for an
    # empty frame, answered "processed", and nobody learnt that every report was being dropped.
    masked = nf.TTS["uplink_message"].copy()
    del masked["uplink_message"]["frm_payload"]

    answer = b.webhook_post(client, "/uplinks/tts/app1/dev1", masked)

    assert (answer["status"], answer["f_cnt"]) == ("dead_letter", 1)
    assert "frm_payload" in answer["reason"] and "field mask" in answer["reason"]
    (letter,) = bridge.dead_letters()
    assert letter.stage == "decode" and "frm_payload" in letter.reason
    # A frame that carries no bytes and no decoded payload is still an empty frame, not a dead letter.
    empty = nf.TTS["uplink_message"].copy()["uplink_message"]
    for field in ("frm_payload", "decoded_payload"):
        del empty[field]
    empty.update(f_cnt=2, received_at="2020-02-12T15:25:45Z")
    assert b.webhook_post(client, "/uplinks/tts/app1/dev1", {"uplink_message": empty})["message"] == "empty_frame"


def test_a_webhook_whose_message_paths_are_appended_to_its_base_url_keeps_every_message(client, bridge):
    # The Things Stack appends each enabled message's path to the base URL; its creating-webhooks page
    # shows `/uplinks`, `/join-accept` and `/downlink-ack` (nf.TTS_FIELD_MASK). With the base URL
    # https://HOST/uplinks/tts each came to /uplinks/tts/<path>: answered 404, kept nowhere, lost.
    sent = [("/uplinks/tts/uplinks", "uplink_message"), ("/uplinks/tts/join-accept", "join_accept"),
            ("/uplinks/tts/downlink-ack", "downlink_ack")]

    replies = [client.post(path, content=json.dumps(nf.TTS[name].body), headers=b.HEADERS) for path, name in sent]

    assert [r.status_code for r in replies] == [200, 200, 200]  # had been 404
    assert [(r.json()["status"], r.json()["message"]) for r in replies] == [
        ("processed", "status"), ("recorded", "join"), ("recorded", "downlink_ack")]
    assert [r.json()["device_id"] for r in replies] == ["dev1"] * 3
    assert [e["kind"] for e in bridge.network_events(viewer=b.RANGER)] == ["join", "downlink_ack"]


def test_field_masked_uplink_without_path_ids_is_a_dead_letter_with_a_clear_reason(client, bridge):
    masked = {"uplink_message": nf.TTS["uplink_message"].copy()["uplink_message"]}

    reply = client.post("/uplinks/tts", content=json.dumps(masked), headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["stage"] == "parse" and "device" in reply.json()["reason"]


def test_event_named_in_the_webhook_path_reads_the_body_as_that_kind(client, bridge):
    answer = b.webhook_post(client, "/uplinks/tts/app1/dev1/join-accept", nf.TTS["join_accept"].body)

    assert (answer["status"], answer["message"]) == ("recorded", "join")


def test_uplink_without_f_port_keeps_the_collar_alive_and_counts_its_frame(client, bridge):
    b.webhook_post(client, "/uplinks/tts", nf.TTS["uplink_message"].body)

    answer = b.webhook_post(client, "/uplinks/tts", nf.TTS["uplink_message_without_f_port"].body)

    assert answer["message"] == "mac_commands"
    (device,) = bridge.devices()
    assert (device.last_f_cnt, device.uplinks_received, device.frame_loss_pct) == (2, 2, 0.0)


def test_a_kind_the_bridge_does_not_know_is_kept_and_answered_2xx(client, bridge):
    future = {"end_device_ids": nf.TTS_END_DEVICE_IDS, "uplink_teleported": {"f_cnt": 3}}

    replies = [client.post("/uplinks/tts", content=json.dumps(future), headers=b.HEADERS) for _ in range(2)]

    assert [r.status_code for r in replies] == [200, 200]
    assert [r.json()["status"] for r in replies] == ["kept", "duplicate"]  # the same body again: one letter
    (letter,) = bridge.dead_letters()
    assert letter.stage == "kind"
    assert json.loads(letter.body) == future


def test_unknown_chirpstack_event_is_kept_and_answered_2xx(client, bridge):
    answer = b.webhook_post(client, "/uplinks/chirpstack?event=gateway_mesh", {"deviceInfo": nf.CHIRPSTACK_DEVICE_INFO})

    assert answer["status"] == "kept"
    (letter,) = bridge.dead_letters()
    assert "gateway_mesh" in letter.reason


def test_a_renamed_chirpstack_device_stays_one_collar(client, bridge):
    b.webhook_post(client, "/uplinks/chirpstack?event=up", nf.CHIRPSTACK["up"].body)
    renamed = nf.CHIRPSTACK["up"].copy()
    renamed["deviceInfo"] = dict(renamed["deviceInfo"], deviceName="Tembo Kubwa collar")
    renamed["fCnt"] = 5

    answer = b.webhook_post(client, "/uplinks/chirpstack?event=up", renamed)

    (device,) = bridge.devices()
    assert answer["device_id"] == device.device_id == "Test device"
    assert device.uplinks_received == 2


def test_one_collar_moved_from_the_things_stack_to_chirpstack_stays_one_collar(client, bridge):
    b.webhook_post(client, "/uplinks/tts", nf.TTS["uplink_message"].body)
    moved = nf.CHIRPSTACK["up"].copy()
    moved["deviceInfo"] = dict(moved["deviceInfo"], devEui="0004a30b001c0530", deviceName="elephant-7")

    b.webhook_post(client, "/uplinks/chirpstack?event=up", moved)

    (device,) = bridge.devices()
    assert (device.device_id, device.network) == ("dev1", "chirpstack")


def test_two_collars_with_one_name_in_two_applications_stay_two_collars(client, bridge):
    first = nf.TTS["uplink_message"].copy()
    second = nf.TTS["uplink_message"].copy()
    second["end_device_ids"] = dict(second["end_device_ids"], dev_eui="0004A30B001C0531",
                                    application_ids={"application_id": "app2"})

    answers = [b.webhook_post(client, "/uplinks/tts", body) for body in (first, second)]

    assert [a["status"] for a in answers] == ["processed", "processed"]
    assert sorted((d.device_id, d.dev_eui, d.label) for d in bridge.devices()) == [
        ("0004A30B001C0531", "0004A30B001C0531", "dev1"),
        ("dev1", "0004A30B001C0530", "dev1"),
    ]


def test_network_location_and_status_are_stored_for_the_technician(client, bridge):
    b.webhook_post(client, "/uplinks/tts", nf.TTS["location_solved"].body)
    b.webhook_post(client, "/uplinks/chirpstack?event=status", nf.CHIRPSTACK["status"].body)
    b.webhook_post(client, "/uplinks/chirpstack?event=location", nf.CHIRPSTACK["location"].body)

    location = bridge.network_events(kind="location", viewer=b.RANGER)
    status = bridge.network_events(kind="status", viewer=b.RANGER)
    assert [(e["device_id"], e["lat"], e["accuracy_m"]) for e in location] == [
        ("dev1", pytest.approx(37.97155556731436), 13.0),
        ("Test device", pytest.approx(52.3740364), 25.0),
    ]
    assert [(e["battery_pct"], e["margin_db"]) for e in status] == [(75.5, 6)]
    assert bridge.latest_positions(viewer=b.RANGER) == [], "a network's guess is not a GNSS fix on the ranger's map"


def test_join_starts_a_new_session_and_a_replayed_old_frame_is_still_a_duplicate(client, bridge):
    first = nf.TTS["uplink_message"].copy()
    b.webhook_post(client, "/uplinks/tts", first)
    join = nf.TTS["join_accept"].copy()
    join["join_accept"]["received_at"] = "2020-02-17T07:49:09.736532315Z"

    b.webhook_post(client, "/uplinks/tts", join)
    after_rejoin = nf.TTS["uplink_message"].copy()
    after_rejoin["uplink_message"]["received_at"] = "2020-02-17T08:00:00Z"
    same_frame_counter_new_session = b.webhook_post(client, "/uplinks/tts", after_rejoin)
    replayed_old_frame = b.webhook_post(client, "/uplinks/tts", first)

    assert same_frame_counter_new_session["status"] == "processed"
    assert replayed_old_frame["status"] == "duplicate"


@pytest.mark.parametrize("join_names", ["device_and_deveui", "device_only"])
def test_a_rejoined_collars_first_uplink_batched_with_its_join_is_a_copy_when_delivered_again(bridge, join_names):
    # The Things Stack's MQTT server (integrations/mqtt: v3/{application id}@{tenant id}/devices/{device
    # id}/join and .../up): the join, then 7 s later frame 0 of the new session, taken in one batch by
    # a worker (group commit); the topic names the device by its id, the uplink body by its DevEUI.
    # The collar had sent 20 frames before it rejoined. Its join names the DevEUI as data-formats
    # shows it, or not (a webhook's field mask of `end_device_ids.device_id` and the application).
    join_topic, up_topic = route("v3/app1@ttn/devices/dev1/join"), route("v3/app1@ttn/devices/dev1/up")
    before = nf.TTS["uplink_message"].copy()
    before["uplink_message"].update(f_cnt=20, received_at="2020-02-17T07:00:00Z")
    join = nf.TTS["join_accept"].copy()
    join["join_accept"]["received_at"] = "2020-02-17T07:49:09.736532315Z"
    if join_names == "device_only":
        join["end_device_ids"] = {"device_id": "dev1", "application_ids": {"application_id": "app1"}}
    first_of_session = nf.TTS["uplink_message"].copy()
    first_of_session["uplink_message"].update(f_cnt=0, received_at="2020-02-17T07:49:16.5Z")
    first_of_session["received_at"] = "2020-02-17T07:49:16.6Z"

    def submitted(topic, body) -> Submission:
        return Submission(topic.network, topic.event, json.dumps(body).encode(), path_ids=topic.path_ids)

    bridge.ingest_batch([submitted(up_topic, before)])
    batch = bridge.ingest_batch([submitted(join_topic, join), submitted(up_topic, first_of_session)])
    (redelivered,) = bridge.ingest_batch([submitted(up_topic, first_of_session)])  # MQTT QoS 1, again
    (device,) = bridge.devices()

    assert [r.status for r in batch] == ["recorded", "processed"]
    assert redelivered.status == "duplicate"  # had been applied twice: frame 0 was filed in the old session
    assert (device.uplinks_received, device.uplinks_lost) == (2, 0)  # had counted frames 1..19 lost


def rejoin_story() -> tuple[dict, dict, list[dict]]:
    """A collar's frame 20 at 07:00, its join at 07:49:09 (data-formats join_accept), and frames 0 and 1
    of the new session at 07:49:16 and 07:59:16 (data-formats uplink_message, each its own status)."""
    before = nf.TTS["uplink_message"].copy()
    before["uplink_message"].update(f_cnt=20, received_at="2020-02-17T07:00:00Z")
    join = nf.TTS["join_accept"].copy()
    join["join_accept"]["received_at"] = "2020-02-17T07:49:09.736532315Z"
    frames = []
    for f_cnt, at in ((0, "07:49:16"), (1, "07:59:16")):
        frame = nf.TTS["uplink_message"].copy()
        frame["uplink_message"].update(f_cnt=f_cnt, received_at=f"2020-02-17T{at}Z",
                                       frm_payload=base64.b64encode(b.status(time_s=b.T0_S + f_cnt)[1]).decode())
        frame["received_at"] = f"2020-02-17T{at}.1Z"
        frames.append(frame)
    return before, join, frames


def test_a_join_that_came_after_its_collars_first_frame_files_that_frame_in_the_new_session(client, bridge):
    # The Things Stack posts each message by its own webhook call: the join's call was answered 503
    # (the store held by a backup) and retried minutes later (integrations/webhooks/retries), after
    # frame 0 of the session it began had come.
    before, join, frames = rejoin_story()

    answers = [b.webhook_post(client, "/uplinks/tts", body)["status"]
               for body in (before, frames[0], join, frames[1], frames[0])]
    (device,) = bridge.devices()

    assert answers == ["processed", "processed", "recorded", "processed", "duplicate"]  # frame 0 had been applied twice
    assert (device.uplinks_received, device.uplinks_lost) == (3, 0)  # frames 1..19 had been counted lost


def test_a_join_batched_after_its_collars_first_frame_files_that_frame_in_the_new_session(store_url):
    # The same, frame 0 and the late join taken in one batch (an MQTT worker's group commit).
    before, join, frames = rejoin_story()
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([Submission("tts", None, json.dumps(before).encode())])
        batch = bridge.ingest_batch([Submission("tts", None, json.dumps(body).encode()) for body in (frames[0], join)])
        later = bridge.ingest_batch([Submission("tts", None, json.dumps(body).encode()) for body in frames[::-1]])
        (device,) = bridge.devices()

    assert [r.status for r in batch + later] == ["processed", "recorded", "processed", "duplicate"]
    assert (device.uplinks_received, device.uplinks_lost, device.last_f_cnt) == (3, 0, 1)


def test_a_chirpstack_join_dated_by_the_uplink_it_came_with_files_that_uplink_in_the_new_session(client, bridge):
    # ChirpStack's JoinEvent "is sent at the first uplink after OTAA" (docs.rs chirpstack_api 4.7.0,
    # integration::JoinEvent), dated like that uplink by its reception (events.html `join`, `up`):
    # the `up` event of frame 0 is posted first, then the join, both of one time.
    before = nf.CHIRPSTACK["up"].copy() | {"fCnt": 20, "time": "2022-07-18T08:00:00Z"}
    first = nf.CHIRPSTACK["up"].copy() | {"fCnt": 0, "time": "2022-07-18T09:34:15.775023242+00:00",
                                          "deduplicationId": "c9dbe358-2578-4fb7-b295-66b44edc45a6"}
    join = nf.CHIRPSTACK["join"].copy()  # deduplicationId c9dbe358-..., time 09:34:15.775023242

    answers = [b.webhook_post(client, f"/uplinks/chirpstack?event={event}", body)["status"]
               for event, body in (("up", before), ("up", first), ("join", join), ("up", first))]
    (device,) = bridge.devices()

    assert answers == ["processed", "processed", "recorded", "duplicate"]  # frame 0 had been applied twice
    assert (device.uplinks_received, device.uplinks_lost) == (2, 0)  # frames 1..19 had been counted lost


def test_a_join_delivered_again_late_starts_no_session_so_a_frame_delivered_again_is_still_a_copy(client, bridge):
    # The collar rejoined at 09:00 and sent frames 1 and 2; then an older join (07:49, a webhook retry
    # or an MQTT redelivery) arrives, and frame 2 comes again from a second gateway's late path.
    rejoin = nf.TTS["join_accept"].copy()
    rejoin["join_accept"]["received_at"] = rejoin["received_at"] = "2020-02-17T09:00:00Z"
    old_join = nf.TTS["join_accept"].copy()
    old_join["join_accept"]["received_at"] = old_join["received_at"] = "2020-02-17T07:49:09Z"
    rejoin["join_accept"]["session_key_id"] = "AXBSH1Pk6Z0G166RlH16Cw=="  # each join, its own session keys
    frames = []
    for f_cnt in (1, 2, 3):
        frame = nf.TTS["uplink_message"].copy()
        frame["uplink_message"].update(f_cnt=f_cnt, received_at=f"2020-02-17T09:0{f_cnt}:00Z")
        frames.append(frame)

    b.webhook_post(client, "/uplinks/tts", rejoin)
    answers = [b.webhook_post(client, "/uplinks/tts", frames[0]), b.webhook_post(client, "/uplinks/tts", frames[1])]
    late = b.webhook_post(client, "/uplinks/tts", old_join)
    answers += [b.webhook_post(client, "/uplinks/tts", frames[2]), b.webhook_post(client, "/uplinks/tts", frames[1])]
    (device,) = bridge.devices()

    assert late["status"] == "recorded"
    assert [a["status"] for a in answers] == ["processed", "processed", "processed", "duplicate"]  # had been applied twice
    assert (device.uplinks_received, device.uplinks_lost) == (3, 0)


def test_a_chirpstack_reset_log_delivered_again_starts_no_second_session(client, bridge):
    reset = nf.CHIRPSTACK["log"].copy()
    reset.update(code="UPLINK_F_CNT_RESET", level="WARNING", time="2022-07-18T10:00:00Z")
    frames = []
    for f_cnt, at in ((1, "10:00:05"), (2, "10:00:10")):
        frame = nf.CHIRPSTACK["up"].copy() | {"fCnt": f_cnt, "time": f"2022-07-18T{at}Z"}
        frames.append(frame)

    b.webhook_post(client, "/uplinks/chirpstack?event=log", reset)
    answers = [b.webhook_post(client, "/uplinks/chirpstack?event=up", frame) for frame in frames]
    b.webhook_post(client, "/uplinks/chirpstack?event=log", reset)  # the same report again (MQTT redelivery)
    answers.append(b.webhook_post(client, "/uplinks/chirpstack?event=up", frames[1]))

    assert [a["status"] for a in answers] == ["processed", "processed", "duplicate"]


def test_a_frame_counter_that_restarts_without_a_join_starts_a_session_not_a_loss(bridge):
    for f_cnt in (500, 501, 502):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + f_cnt), f_cnt=f_cnt,
                                              received_at=b.T0 + b.timedelta(seconds=f_cnt)))
    for f_cnt in (0, 1, 3):  # the collar rebooted and rejoined; frame 2 was lost
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 1000 + f_cnt), f_cnt=f_cnt,
                                              received_at=b.T0 + b.timedelta(seconds=1000 + f_cnt)))

    (device,) = bridge.devices()
    assert device.uplinks_received == 6
    assert device.uplinks_lost == 1


def test_lost_uplinks_per_collar_are_gaps_less_what_the_flash_queue_sent_later(bridge):
    heard = b.T0 + b.timedelta(days=1)
    for f_cnt in (1, 2, 5):  # frames 3 and 4 were lost on the air
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600 * f_cnt), f_cnt=f_cnt,
                                              received_at=b.T0 + b.timedelta(hours=f_cnt)))
    # the collar's flash queue later sends one of the lost messages again, under a new frame counter
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600 * 3), f_cnt=6, received_at=heard))

    (device,) = bridge.devices()
    assert (device.uplinks_received, device.uplinks_backfilled, device.uplinks_lost) == (4, 1, 1)


def test_chirpstack_frame_counter_reset_log_starts_a_new_session(client, bridge):
    b.webhook_post(client, "/uplinks/chirpstack?event=up", nf.CHIRPSTACK["up"].body)
    reset = nf.CHIRPSTACK["log"].copy()
    reset.update(code="UPLINK_F_CNT_RESET", level="WARNING", time="2022-07-18T10:00:00Z")
    b.webhook_post(client, "/uplinks/chirpstack?event=log", reset)
    again = nf.CHIRPSTACK["up"].copy()
    again["time"] = "2022-07-18T10:00:05Z"

    answer = b.webhook_post(client, "/uplinks/chirpstack?event=up", again)

    assert answer["status"] == "processed", "the same frame counter and bytes after a reset are a new frame"


@pytest.fixture
def pushing(store_url, network):
    """A bridge that pushes its downlinks to the stand-in network server by hand, on both stores, and its client."""
    with b.pushing_to(network, store_url) as bridge, TestClient(create_app(bridge)) as client:
        yield bridge, client


def test_downlink_delivery_reports_follow_the_ack_to_the_network_and_the_collar(pushing, network):
    bridge, client = pushing
    pushed = _tts_ack_pushed(pushing, network)
    (downlink,) = bridge.downlinks()
    assert pushed["correlation_ids"] == [f"tembo:downlink:{downlink.downlink_id}"]
    states = []
    for minute, key in enumerate(("downlink_queued", "downlink_sent")):
        b.webhook_post(client, "/uplinks/tts", _report(key, pushed, minute))
        states.append(bridge.downlinks()[0].network_state)
    ack_port, ack_payload = b.ack("ack_alert", "ok", time_s=nf.STATUS_TIME_S + 60)
    collar_ack = _alert_uplink(f_cnt=4)
    collar_ack["uplink_message"].update(f_port=ack_port, frm_payload=base64.b64encode(ack_payload).decode())
    b.webhook_post(client, "/uplinks/tts", collar_ack)
    (after,) = bridge.downlinks()

    assert states == ["queued", "sent"]
    assert (after.state, after.network_state) == ("acknowledged", "sent")


def test_a_failed_downlink_report_lets_the_collar_get_its_ack_again(pushing, network):
    bridge, client = pushing
    pushed = _tts_ack_pushed(pushing, network)
    failed = nf.TTS["downlink_failed"].copy()
    failed["downlink_failed"]["downlink"].update(
        f_port=32, frm_payload=base64.b64encode(pushed["payload"]).decode(), correlation_ids=pushed["correlation_ids"]
    )
    b.webhook_post(client, "/uplinks/tts", failed)
    b.webhook_post(client, "/uplinks/tts", _alert_uplink(f_cnt=4))  # the collar repeats its alert
    bridge.flush_downlinks()
    states = [(d.state, d.network_state) for d in bridge.downlinks()]

    assert states == [("failed", "failed"), ("sent", "queued")]
    assert len(network.pushes) == 2


def test_operator_sees_a_nacked_ack_that_the_things_stack_sends_again_reach_the_collar_without_a_second_push(
        pushing, network):
    # TTS: a nacked confirmed downlink is put back at the head of the collar's queue by the
    # Application Server and sent again (devices/concepts/confirmed-downlinks-behavior). Its later
    # reports had been dropped as "older" than the nack, and the collar's repeat of its alert had
    # made the bridge push a second ack beside the one TTS was already sending again.
    bridge, client = pushing
    pushed = _tts_ack_pushed(pushing, network)
    states = []
    for minute, key in enumerate(("downlink_sent", "downlink_nack", None, "downlink_sent", "downlink_ack")):
        if key is None:
            b.webhook_post(client, "/uplinks/tts", _alert_uplink(f_cnt=4))  # the collar repeats its alert
            bridge.flush_downlinks()
        else:
            b.webhook_post(client, "/uplinks/tts", _report(key, pushed, minute))
        states.append([(d.state, d.network_state) for d in bridge.downlinks()])

    assert len(network.pushes) == 1
    assert states == [
        [("sent", "sent")],
        [("sent", "nacked")],
        [("sent", "nacked")],
        [("sent", "sent")],
        [("sent", "acked")],
    ]


def test_a_sent_report_of_the_first_round_delivered_after_the_nack_does_not_hide_the_nack(pushing, network):
    bridge, client = pushing
    pushed = _tts_ack_pushed(pushing, network)
    b.webhook_post(client, "/uplinks/tts", _report("downlink_nack", pushed, minute=2))
    b.webhook_post(client, "/uplinks/tts", _report("downlink_sent", pushed, minute=1))  # a late webhook retry
    (downlink,) = bridge.downlinks()

    assert downlink.network_state == "nacked"


def test_a_report_of_an_earlier_round_delivered_after_the_failure_leaves_the_downlink_failed(pushing, network):
    bridge, client = pushing
    pushed = _tts_ack_pushed(pushing, network)
    failed = _report("downlink_failed", pushed, minute=2)
    b.webhook_post(client, "/uplinks/tts", failed)
    b.webhook_post(client, "/uplinks/tts", _report("downlink_sent", pushed, minute=1))  # a late webhook retry
    (downlink,) = bridge.downlinks()

    assert (downlink.state, downlink.network_state) == ("failed", "failed")


def test_chirpstack_txack_and_ack_move_the_downlink_by_its_queue_item(pushing, network):
    bridge, client = pushing
    _chirpstack_ack_pushed(pushing)
    states, answers = [], []
    for name in ("txack", "ack"):
        report = nf.CHIRPSTACK[name].copy()
        report["queueItemId"] = "q-1"  # the id the stand-in's queue answered with
        answers.append(b.webhook_post(client, f"/uplinks/chirpstack?event={name}", report))
        states.append(bridge.downlinks()[0].network_state)
    (downlink,) = bridge.downlinks()

    assert states == ["sent", "acked"]
    # The operator reads in each answer which of Tembo's downlinks the report moved.
    assert [answer["downlink_ids"] for answer in answers] == [[downlink.downlink_id]] * 2


def test_operator_sees_an_ack_chirpstack_discarded_unacknowledged_pushed_again(pushing, network):
    # ChirpStack v4 deletes a confirmed queue item the device did not acknowledge in time and says so
    # with an ack event of `acknowledged: false`; unlike The Things Stack it does not send it again.
    bridge, client = pushing
    _chirpstack_ack_pushed(pushing)
    nack = nf.CHIRPSTACK["ack"].copy()
    nack.update(queueItemId="q-1", acknowledged=False)
    b.webhook_post(client, "/uplinks/chirpstack?event=ack", nack)
    bridge.flush_downlinks()
    (downlink,) = bridge.downlinks()

    first, again = network.pushes
    assert first["payload"] == again["payload"]
    assert (downlink.command, downlink.state, downlink.attempts) == ("ack_alert", "sent", 2)


def test_operator_sees_the_things_stacks_resends_of_a_nacked_ack_spend_the_collars_fair_use_day(store_url, network):
    # Fair use counts what goes on air (about ten downlinks a collar a day on The Things Network). A
    # nacked confirmed downlink is sent again by TTS itself, each resend reported as downlink_sent: the
    # bridge had counted the one row it pushed, and pushed a settings change past the day's limit.
    with b.pushing_to(network, store_url, downlinks_per_device_per_day=3) as bridge, \
            TestClient(create_app(bridge)) as client:
        pushed = _tts_ack_pushed((bridge, client), network)
        for minute, key in enumerate(("downlink_sent", "downlink_nack", "downlink_sent", "downlink_nack",
                                      "downlink_sent", "downlink_sent")):  # the last: a copy of the third round's report
            b.webhook_post(client, "/uplinks/tts", _report(key, pushed, minute // 2 * 2))
        bridge.queue_command(bridge.downlinks()[0].device_id, "settings", {"gnss_interval_s": 900})
        bridge.flush_downlinks()
        settings = bridge.downlinks()[-1]

    assert len(network.pushes) == 1, "three transmissions of the ack in the day: the settings change waits"
    assert (settings.command, settings.state) == ("settings", "queued")


def test_operator_sees_a_resend_whose_sent_report_was_lost_still_spend_the_collars_fair_use_day(store_url, network):
    # TTS sent the nacked ack again and the collar acked it, but that round's downlink_sent never
    # reached the bridge: the ack report after the nack tells the resend went on air all the same.
    with b.pushing_to(network, store_url, downlinks_per_device_per_day=2) as bridge, \
            TestClient(create_app(bridge)) as client:
        pushed = _tts_ack_pushed((bridge, client), network)
        for minute, key in enumerate(("downlink_sent", "downlink_nack", "downlink_ack")):
            b.webhook_post(client, "/uplinks/tts", _report(key, pushed, minute))
        bridge.queue_command(bridge.downlinks()[0].device_id, "settings", {"gnss_interval_s": 900})
        bridge.flush_downlinks()
        states = [(d.command, d.state, d.network_state) for d in bridge.downlinks()]

    assert len(network.pushes) == 1
    assert states == [("ack_alert", "sent", "acked"), ("settings", "queued", None)]


def test_operator_sees_an_ack_chirpstack_discarded_and_pushed_again_count_twice_in_fair_use(store_url, network):
    # One downlink row pushed twice (ChirpStack discarded the unacknowledged first one) went on air twice.
    with b.pushing_to(network, store_url, downlinks_per_device_per_day=2) as bridge, \
            TestClient(create_app(bridge)) as client:
        _chirpstack_ack_pushed((bridge, client))
        nack = nf.CHIRPSTACK["ack"].copy()
        nack.update(queueItemId="q-1", acknowledged=False)
        b.webhook_post(client, "/uplinks/chirpstack?event=ack", nack)
        bridge.flush_downlinks()
        bridge.queue_command(bridge.downlinks()[0].device_id, "settings", {"gnss_interval_s": 900})
        bridge.flush_downlinks()
        states = [(d.command, d.state) for d in bridge.downlinks()]

    assert len(network.pushes) == 2
    assert states == [("ack_alert", "sent"), ("settings", "queued")]


def test_operator_sees_a_collar_that_keeps_nacking_get_no_second_ack_beside_the_things_stacks_resends(
        store_url, network):
    # An hour after its ack went (ack_resend_after_s), the collar still repeats its alert while TTS is
    # still sending the nacked ack again: the bridge had queued a second ack beside TTS's resends.
    with b.pushing_to(network, store_url, ack_resend_after_s=60) as bridge, \
            TestClient(create_app(bridge)) as client:
        pushed = _tts_ack_pushed((bridge, client), network)
        for minute, key in enumerate(("downlink_sent", "downlink_nack")):
            b.webhook_post(client, "/uplinks/tts", _report(key, pushed, minute))
        with bridge.db.write() as session:
            session.get(Downlink, bridge.downlinks()[0].downlink_id).sent_at = utc_now() - timedelta(hours=2)
        b.webhook_post(client, "/uplinks/tts", _alert_uplink(f_cnt=4))  # the collar repeats its alert
        bridge.flush_downlinks()
        states = [(d.state, d.network_state) for d in bridge.downlinks()]

    assert len(network.pushes) == 1
    assert states == [("sent", "nacked")]


def _tts_ack_pushed(pushing, network) -> dict:
    """A collar's alert through TTS, and the ack the bridge pushed for it."""
    bridge, client = pushing
    b.webhook_post(client, "/uplinks/tts", _alert_uplink(f_cnt=3))
    bridge.flush_downlinks()
    (pushed,) = network.pushes
    return pushed


def _chirpstack_ack_pushed(pushing) -> None:
    """A collar's alert through ChirpStack, and its ack pushed (the stand-in's queue item q-1)."""
    bridge, client = pushing
    up = nf.CHIRPSTACK["up"].copy()
    port, payload = b.alert("mortality", seq=2)
    up.update(fPort=port, data=base64.b64encode(payload).decode())
    b.webhook_post(client, "/uplinks/chirpstack?event=up", up)
    bridge.flush_downlinks()


def _report(key: str, pushed: dict, minute: int) -> dict:
    """A TTS delivery report of the pushed downlink, as TTS sent it `minute` minutes after the docs' example."""
    report = nf.TTS[key].copy()
    report["received_at"] = f"2020-02-17T10:{32 + minute:02d}:24.590413417Z"
    (report[key]["downlink"] if key == "downlink_failed" else report[key]).update(
        f_port=32,
        frm_payload=base64.b64encode(pushed["payload"]).decode(),
        correlation_ids=[*pushed["correlation_ids"], "as:downlink:01E19B99501X84X6CV471TVSZ1"],
    )
    return report


def _alert_uplink(f_cnt: int) -> dict:
    body = nf.TTS["uplink_message"].copy()
    port, payload = b.alert("mortality", seq=2, time_s=nf.STATUS_TIME_S)
    body["uplink_message"].update(f_port=port, f_cnt=f_cnt, frm_payload=base64.b64encode(payload).decode())
    return body


def test_operator_told_why_a_tts_body_whose_message_is_no_object_is_kept(client, bridge):
    body = nf.TTS["join_accept"].copy() | {"join_accept": None}

    answer = b.webhook_post(client, "/uplinks/tts", body)

    assert answer["status"] == "kept"
    assert "its join_accept is null, not an object" in answer["reason"]
