"""What the network servers (and whoever can post to the bridge as one) send at the edges of their languages,
as an operator or a ranger meets it: copies of one uplink naming ever more gateways, a flood of garbage
kept as dead letters, a topic that names another collar than its body, a downlink URL in no usual form, and
a ChirpStack call naming two events at once."""

from __future__ import annotations

import json
import logging

import bridge_builders as b
import pytest
from sqlalchemy import select

from lora_bridge.group_commit import Submission
from lora_bridge.store.gateway_merges import GATEWAYS_KEPT
from lora_bridge.store.tables import RawUplink


def up(body: bytes) -> Submission:
    return Submission("tts", "up", body, content_type="application/json")


def first_copy(bridge, device_id: str, f_cnt: int) -> tuple[list[dict], float, float]:
    """(gateways, best RSSI, best SNR) of the first copy of device_id's uplink f_cnt, as stored."""
    with bridge.db.read() as session:
        row = session.scalars(select(RawUplink).where(RawUplink.device_id == device_id, RawUplink.f_cnt == f_cnt,
                                                      RawUplink.duplicate_of.is_(None))).one()
        return row.gateways, row.best_rssi_dbm, row.best_snr_db


def test_operators_store_keeps_a_handful_of_gateways_however_many_copies_a_hostile_sender_posts(store_url, caplog):
    # Forty copies of one uplink, each naming 30 gateways of long names never heard before (and the first
    # gateway again): the first copy's row had taken every one of them, 748 KB of gateways for one uplink.
    # A real uplink is heard by a handful: the row keeps the strongest GATEWAYS_KEPT, and says how many not.
    status = b.status(time_s=b.T0_S + 600)
    copies = [b.tts_uplink(status, device_id="collar-01", f_cnt=1,
                           gateways=("gw-north",) + tuple(f"gw-{n:02d}-{i:02d}-" + "x" * 200 for i in range(30)))
              for n in range(40)]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, caplog.at_level(logging.INFO):
        bridge.ingest_batch([up(copies[0])])
        for body in copies[1:]:
            bridge.ingest_batch([up(body)])
        gateways, best_rssi_dbm, best_snr_db = first_copy(bridge, "collar-01", 1)

    ids = [g["gateway_id"] for g in gateways]
    assert len(ids) == GATEWAYS_KEPT and len(set(ids)) == GATEWAYS_KEPT
    assert ids[0] == "gw-north", "the strongest gateway (the first of every copy, -100 dBm) stays"
    assert (best_rssi_dbm, best_snr_db) == (-100, 7.5)
    assert len(json.dumps(gateways)) < 8_000
    left_out = [r for r in caplog.records if "gateways left out" in r.getMessage()]
    assert left_out and all(r.device_id == "collar-01" for r in left_out)
    assert left_out[0].gateways_left_out == 31 - GATEWAYS_KEPT, "the first copy named 31 gateways"


def test_a_copy_naming_gateways_the_row_holds_adds_nothing(sqlite_url):
    # The same uplink delivered again (a webhook retried, the MQTT copy of it) names the gateways the row
    # holds, one of them twice in its own metadata: the row keeps each gateway once.
    status = b.status(time_s=b.T0_S + 600)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([up(b.tts_uplink(status, device_id="collar-02", f_cnt=1, gateways=("gw-a", "gw-b")))])
        bridge.ingest_batch([up(b.tts_uplink(status, device_id="collar-02", f_cnt=1,
                                             gateways=("gw-b", "gw-c", "gw-c", "gw-a")))])
        gateways, _, _ = first_copy(bridge, "collar-02", 1)

    assert [g["gateway_id"] for g in gateways] == ["gw-a", "gw-b", "gw-c"]


def test_operators_store_lets_a_flood_of_garbage_dead_letters_go_and_keeps_every_waiting_letter(store_url, caplog):
    # A broken (or hostile) sender posted forty 250 KiB bodies no reader takes: dead letters whose space
    # had been kept forever, twice (the letter and its raw row). A real letter waits beside them, and one
    # replayed after a fix long ago has done its work.
    from datetime import timedelta

    from sqlalchemy import func, update

    from lora_bridge.store.retention import TRIMMED_BODY_BYTES
    from lora_bridge.store.tables import DeadLetter
    from lora_bridge.store.utc import utc_now

    size = 250 * 1024
    garbage = [Submission("tts", None, b"%02d" % n + b"x" * (size - 2)) for n in range(40)]
    real = Submission("tts", None, b'{"end_device_ids": {"device_id": "collar-09"}, "uplink_message": 7}')
    replayed = Submission("tts", None, b"not json, replayed long ago")
    budget = 1024 * 1024
    with b.fresh_bridge(store_url, outbox_worker=False, dead_letter_body_budget_bytes=budget,
                        dead_letter_retention_days=90) as bridge, caplog.at_level(logging.INFO):
        results = bridge.ingest_batch(garbage + [real, replayed])
        assert {r.status for r in results} <= {"dead_letter", "kept"}
        done = [letter for letter in bridge.dead_letters() if letter.body == replayed.body][0]
        with bridge.db.write() as session:  # a fix applied it 100 days ago
            session.execute(update(DeadLetter).where(DeadLetter.id == done.dead_letter_id)
                            .values(replayed_at=utc_now() - timedelta(days=100), replay_result="processed"))

        report = bridge.compact_dead_letters()
        again = bridge.compact_dead_letters()
        waiting = bridge.dead_letters()
        with bridge.db.read() as session:
            raw_bytes = session.scalar(select(func.sum(func.length(RawUplink.body))))

    assert report.letters_deleted == 1 and again.letters_deleted == again.bodies_trimmed == 0
    assert len(waiting) == 41, "no letter still waiting is dropped"
    by_body = {letter.body[:1]: letter for letter in waiting}
    assert by_body[b"{"].body == real.body and "trimmed" not in by_body[b"{"].reason
    trimmed = [letter for letter in waiting if "trimmed" in letter.reason]
    assert len(trimmed) == report.bodies_trimmed > 0
    assert all(len(letter.body) == TRIMMED_BODY_BYTES and f"of {size} bytes" in letter.reason for letter in trimmed)
    assert sum(len(letter.body) for letter in waiting) <= budget
    assert raw_bytes < 2 * budget, "the raw rows of trimmed letters are trimmed with them"
    assert report.bytes_freed > 30 * 2 * size
    assert any("dead letter bodies trimmed" in r.getMessage() for r in caplog.records)


def test_operator_compacts_dead_letters_from_the_command_line(sqlite_url, capsys):
    from tembo.cli import main

    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([Submission("tts", None, b"not json")])

    assert main(["bridge", "compact", "--database-url", sqlite_url, "--dead-letter-retention-days", "30"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["dead_letters"] == {"letters_deleted": 0, "bodies_trimmed": 0, "bytes_freed": 0}, "a waiting letter stays"


@pytest.mark.mqtt
def test_operators_timer_reads_the_dead_letters_once_when_there_is_nothing_to_compact(store_url):
    # The bridge's timer compacts dead letters every run (`rules_every_s`): with none replayed long ago and the
    # waiting ones within their budget, a run is one pass over the letters, not one per question it asks.
    from sqlalchemy import event

    letters = [Submission("tts", None, b"not json %d" % n) for n in range(30)]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.ingest_batch(letters)
        statements: list[str] = []

        def seen(_conn, _cursor, statement, *_args) -> None:
            if "dead_letters" in statement:
                statements.append(statement)

        event.listen(bridge.db.write_engine, "before_cursor_execute", seen)
        try:
            report = bridge.compact_dead_letters()
        finally:
            event.remove(bridge.db.write_engine, "before_cursor_execute", seen)
        waiting = bridge.dead_letters()

    assert report.letters_deleted == report.bodies_trimmed == 0 and len(waiting) == 30
    assert len(statements) == 1, statements


def test_a_message_whose_topic_names_another_collar_than_its_body_is_a_dead_letter_not_that_collars_fix(
        mosquitto, sqlite_url):
    # The broker's ACL vouches for the topic (The Things Stack publishes each collar's messages under its
    # own device id); a body naming another collar came from something else. It had been taken for the
    # body's collar silently: a fix of collar-02 written by whoever could publish under collar-01.
    from test_bridge_mqtt import publish_all, publisher, tts_topic, wait_until

    from lora_bridge.adapters.mqtt import worker_from_settings

    forged = b.tts_uplink(b.status(lat=-2.9), device_id="collar-02", f_cnt=7)
    honest = b.tts_uplink(b.status(lat=-2.5), device_id="collar-03", f_cnt=1)
    settings = dict(mqtt_url=mosquitto.url, mqtt_client_id="bridge-forged", mqtt_share_group="forged")
    with b.fresh_bridge(sqlite_url, **settings) as bridge, worker_from_settings(bridge, bridge.settings) as worker:
        with publisher(mosquitto, client_id="network-forged") as client:
            publish_all(client, [(tts_topic("collar-01"), forged), (tts_topic("collar-03"), honest)])
        arrived = wait_until(lambda: worker.acknowledged == 2)
        letters = bridge.dead_letters()
        collars = {p.device_id for p in bridge.latest_positions(viewer=b.RANGER)}

    assert arrived
    assert collars == {"collar-03"}
    (letter,) = letters
    assert letter.body == forged and "collar-01" in letter.reason and "collar-02" in letter.reason


def test_operator_reads_once_per_collar_that_a_downlink_url_from_tts_is_in_no_usual_form(sqlite_url, caplog):
    # A proxy before The Things Stack rewrote its X-Downlink-Push header into a URL of its own: the route
    # was dropped without a word, and the collar's acks never went. The operator reads it once per collar
    # (not with every uplink), with the collar and the header's name, never the API key.
    from starlette.testclient import TestClient

    from lora_bridge.adapters.webhook import create_app

    key = "NNSXS.SECRET-KEY-NEVER-LOGGED"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": key,
                                 "X-Downlink-Push": "https://proxy.example/tts-push?collar=odd-01"})
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client, \
            caplog.at_level(logging.INFO):
        for f_cnt in (1, 2, 3):
            body = b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id="odd-01", f_cnt=f_cnt)
            assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200

    told = [r for r in caplog.records if "X-Downlink-Push" in r.getMessage()]
    assert len(told) == 1 and "odd-01" in told[0].getMessage() and told[0].levelno == logging.WARNING
    assert all(key not in r.getMessage() and key not in str(r.__dict__) for r in caplog.records)


def test_chirpstack_operator_gets_a_400_saying_why_for_a_call_naming_two_events(sqlite_url):
    # `?event=up&event=join`: the bridge had taken the last one and read an uplink as a join. Which one the
    # server meant nobody can tell: the call is refused with a 400 that says why, its body kept as a dead letter.
    from starlette.testclient import TestClient

    from lora_bridge.adapters.webhook import create_app

    body = b.chirpstack_uplink(b.status(), device_id="collar-cs", f_cnt=4, dev_eui="70b3d57ed0000c01")
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        answer = client.post("/uplinks/chirpstack?event=up&event=join", content=body, headers=b.HEADERS)
        same = client.post("/uplinks/chirpstack?event=up&event=up", content=body, headers=b.HEADERS)
        letters = bridge.dead_letters()

    assert answer.status_code == 400
    assert answer.json()["status"] == "dead_letter" and "event" in answer.json()["reason"]
    assert "'up'" in answer.json()["reason"] and "'join'" in answer.json()["reason"]
    (letter,) = letters
    assert letter.body == body and "event" in letter.reason
    assert same.status_code == 200 and same.json()["status"] == "processed", "the same event twice is no doubt"


def test_the_running_bridges_timer_keeps_garbage_dead_letters_within_their_budget(sqlite_url):
    # An operator who never runs `tembo bridge compact` by hand: the bridge's own timer trims them too.
    from lora_bridge.server import RulesTimer
    from lora_bridge.store.retention import TRIMMED_BODY_BYTES

    garbage = [Submission("tts", None, b"%02d" % n + b"x" * (100 * 1024)) for n in range(4)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False, dead_letter_body_budget_bytes=250 * 1024) as bridge:
        bridge.ingest_batch(garbage)
        RulesTimer(bridge, every_s=3600).run_once()
        sizes = sorted(len(letter.body) for letter in bridge.dead_letters())

    assert sizes == [TRIMMED_BODY_BYTES, TRIMMED_BODY_BYTES, 100 * 1024 + 2, 100 * 1024 + 2]


def test_a_webhook_path_naming_the_collar_by_its_deveui_is_still_that_collar(sqlite_url):
    # A webhook whose base URL names the device by `{{devEUI}}` (a documented path variable) names the same
    # collar as the body's device id: no dead letter. Another collar's id in the path is one.
    body = b.tts_uplink(b.status(), device_id="collar-05", f_cnt=1, dev_eui="70B3D57ED0000A05")
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        by_eui = bridge.ingest_network_message("tts", "up", body, path_ids={
            "application_id": b.APPLICATION_ID, "device_id": "70b3d57ed0000a05"})
        other = bridge.ingest_network_message("tts", "up", b.tts_uplink(b.status(), device_id="collar-05", f_cnt=2),
                                              path_ids={"application_id": b.APPLICATION_ID, "device_id": "collar-06"})

    assert by_eui.status == "processed" and by_eui.device_id is not None
    assert (other.status, other.stage) == ("dead_letter", "parse") and "'collar-06'" in other.reason


def _packet_broker_reception(gateway_eui: str, rssi: int, snr: float) -> dict:
    """One rx_metadata entry of a reception that came through Packet Broker from another network's gateway, in
    the shape The Things Stack documents and sends (gateway_ids.gateway_id "packetbroker", the forwarder's own
    gateway under packet_broker)."""
    return {"gateway_ids": {"gateway_id": "packetbroker"},
            "packet_broker": {"message_id": "01FD7XDEWQ4KMZ4PMYYDG34X50", "forwarder_net_id": "000013",
                              "forwarder_tenant_id": "ttnv2", "forwarder_cluster_id": "ttn-v2-eu-3",
                              "forwarder_gateway_eui": gateway_eui.upper(),
                              "forwarder_gateway_id": f"eui-{gateway_eui.lower()}",
                              "home_network_net_id": "000013", "home_network_tenant_id": "ttn",
                              "home_network_cluster_id": "eu1.cloud.thethings.network"},
            "rssi": rssi, "channel_rssi": rssi, "snr": snr}


def test_gateways_of_other_networks_heard_through_packet_broker_are_each_kept_not_merged_into_one(sqlite_url):
    # Every reception Packet Broker forwards carries the gateway id "packetbroker": kept once each by that id, the
    # row had kept one of two roaming gateways (and a ranger's coverage map lost the other).
    body = json.loads(b.tts_uplink(b.status(time_s=b.T0_S + 600), device_id="collar-03", f_cnt=1, gateways=("gw-a",)))
    body["uplink_message"]["rx_metadata"] += [_packet_broker_reception("c0ee40ffff293507", -119, -9.5),
                                              _packet_broker_reception("0015fcc23d0dd9be", -111, -2.8)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([up(json.dumps(body).encode())])
        gateways, _, _ = first_copy(bridge, "collar-03", 1)

    assert [g["gateway_id"] for g in gateways] == [
        "gw-a", "packetbroker/000013/eui-c0ee40ffff293507", "packetbroker/000013/eui-0015fcc23d0dd9be"]
    assert [g["rssi_dbm"] for g in gateways][1:] == [-119, -111]


@pytest.mark.mqtt
def test_a_chirpstack_event_whose_topic_names_another_deveui_than_its_body_is_a_dead_letter_not_that_collars_fix(
        mosquitto, sqlite_url):
    # ChirpStack publishes each device's events under its own DevEUI (application/{id}/device/{devEui}/event/up),
    # and the broker's ACL vouches for who may publish there: a body naming another collar, in JSON or in
    # Protobuf, had been filed silently under the body's collar.
    import base64

    from chirpstack_api import integration
    from test_bridge_mqtt import publish_all, publisher, wait_until

    from lora_bridge.adapters.mqtt import worker_from_settings

    application = "0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1"
    forged_json = b.chirpstack_uplink(b.status(lat=-2.9), device_id="collar-c2", f_cnt=7, dev_eui="70b3d57ed0000c02")
    document = json.loads(b.chirpstack_uplink(b.status(lat=-2.8), device_id="collar-c2", f_cnt=8,
                                              dev_eui="70b3d57ed0000c02"))
    forged_protobuf = integration.UplinkEvent(
        deduplication_id="9f1c4a2e-0000-4000-8000-000000000008",
        device_info=integration.DeviceInfo(tenant_id="t", application_id=application, application_name="tembo",
                                           device_name="collar-c2", dev_eui="70b3d57ed0000c02"),
        dev_addr="260b0002", dr=3, f_cnt=8, f_port=document["fPort"], data=base64.b64decode(document["data"]),
    ).SerializeToString()
    honest = b.chirpstack_uplink(b.status(lat=-2.5), device_id="collar-c3", f_cnt=1, dev_eui="70b3d57ed0000c03")
    topic = f"application/{application}/device/{{}}/event/up"
    settings = dict(mqtt_url=mosquitto.url, mqtt_client_id="bridge-forged-cs", mqtt_share_group="forged-cs")
    with b.fresh_bridge(sqlite_url, **settings) as bridge, worker_from_settings(bridge, bridge.settings) as worker:
        with publisher(mosquitto, client_id="network-forged-cs") as client:
            publish_all(client, [(topic.format("70b3d57ed0000c01"), forged_json),
                                 (topic.format("70b3d57ed0000c01"), forged_protobuf),
                                 (topic.format("70b3d57ed0000c03"), honest)])
        arrived = wait_until(lambda: worker.acknowledged == 3)
        letters = bridge.dead_letters()
        collars = {p.device_id for p in bridge.latest_positions(viewer=b.RANGER)}

    assert arrived
    assert collars == {"collar-c3"}
    assert sorted(letter.body for letter in letters) == sorted([forged_json, forged_protobuf])
    assert all("70B3D57ED0000C01" in letter.reason and "70B3D57ED0000C02" in letter.reason for letter in letters)
