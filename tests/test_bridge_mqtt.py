"""MQTT ingest against a real Mosquitto: The Things Stack and ChirpStack topics, several applications,
a broker restart, a store that is down, and two workers sharing one subscription on one PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import bridge_builders as b
import network_fixtures as nf
import paho.mqtt.client as mqtt
import pytest
from chirpstack_api import integration
from sqlalchemy import func, select
from test_bridge_network_messages import CHIRPSTACK_OUTCOMES, TTS_OUTCOMES

from lora_bridge.adapters.mqtt import (
    HandInThreads,
    MqttIngest,
    content_type_of,
    parse_broker_url,
    route,
    subscriptions,
    worker_from_settings,
)
from lora_bridge.errors import StoreUnavailable
from lora_bridge.settings import load_settings
from lora_bridge.store.tables import Position, RawUplink

TTS_APP = "tembo-north"
TENANT = "kws"


# ---- topics, URLs, settings (no broker) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("v3/tembo-north@kws/devices/collar-07/up",
         ("tts", "up", {"application_id": "tembo-north", "device_id": "collar-07", "tenant_id": "kws"})),
        ("v3/tembo-north/devices/collar-07/join", ("tts", "join", {"application_id": "tembo-north", "device_id": "collar-07"})),
        ("v3/a@t/devices/c/down/nack", ("tts", "down/nack", {"application_id": "a", "device_id": "c", "tenant_id": "t"})),
        ("v3/a@t/devices/c/location/solved", ("tts", "location/solved", {"application_id": "a", "device_id": "c", "tenant_id": "t"})),
        ("v3/a@t/devices/c/service/data", ("tts", "service/data", {"application_id": "a", "device_id": "c", "tenant_id": "t"})),
        ("application/0b8e8ae8/device/70B3D57ED0000001/event/txack",
         ("chirpstack", "txack", {"application_id": "0b8e8ae8", "dev_eui": "70b3d57ed0000001"})),
    ],
)
def test_each_network_topic_names_its_network_kind_and_collar(topic, expected):
    routed = route(topic)
    assert (routed.network, routed.event, routed.path_ids) == expected


@pytest.mark.parametrize(
    "topic",
    ["v3/a@t/devices/c/down/push", "v3/a@t/devices/c/down/replace", "application/1/device/70b3/command/down",
     "v3/a@t/devices", "application/1/device/70b3/event", "application/1/device/70b3/event/", "tembo/anything",
     "", "v3//devices//up"],
)
def test_topics_the_bridge_publishes_or_does_not_know_are_not_ingested(topic):
    assert route(topic) is None


def test_chirpstack_protobuf_and_json_bodies_are_told_apart():
    event = integration.UplinkEvent(f_cnt=3, f_port=1, data=b"\x01")
    assert content_type_of("chirpstack", event.SerializeToString()) == "application/octet-stream"
    assert content_type_of("chirpstack", b' {"fCnt": 3}') == "application/json"
    assert content_type_of("tts", b"\x08\x03") == "application/json"


def test_broker_credentials_come_from_the_url_or_settings_and_never_show():
    address = parse_broker_url("mqtt://bridge:s3cret@broker.reserve:1884")
    assert (address.host, address.port, address.username, address.password) == ("broker.reserve", 1884, "bridge", "s3cret")
    assert "s3cret" not in repr(address)
    assert parse_broker_url("mqtts://broker", "u", "p").port == 8883
    with pytest.raises(ValueError, match="mqtt://"):
        parse_broker_url("http://broker")
    settings = load_settings(mqtt_url="mqtt://bridge:s3cret@broker:1883", mqtt_password="other-secret")
    assert "s3cret" not in repr(settings) and "other-secret" not in repr(settings)
    assert subscriptions(["v3/+/devices/+/#"], "tembo") == ["$share/tembo/v3/+/devices/+/#"]


def test_a_tts_kind_not_listed_here_still_goes_in_to_be_kept():
    routed = route("v3/a@t/devices/c/down/queue_invalidated")
    assert (routed.network, routed.event) == ("tts", "down/queue_invalidated")


def test_a_workers_messages_are_each_handed_in_once_by_no_more_threads_than_it_has():
    handed: list[int] = []
    at_once = {"now": 0, "most": 0}
    lock = threading.Lock()
    release = threading.Event()

    def hand_in(n: int) -> None:
        with lock:
            at_once["now"] += 1
            at_once["most"] = max(at_once["most"], at_once["now"])
        release.wait(5)  # each waits for its batch's commit, as an ingest does
        with lock:
            at_once["now"] -= 1
            handed.append(n)

    threads = HandInThreads(hand_in, 4, "test-hand-in")
    for n in range(4):
        threads.put(n)
    assert wait_until(lambda: at_once["now"] == 4, 5)  # four messages in hand, each on a thread of its own
    for n in range(4, 10):
        threads.put(n)
    release.set()
    threads.close()  # the ten put are all handed in before it returns

    assert sorted(handed) == list(range(10))
    assert at_once["most"] == 4
    with pytest.raises(RuntimeError):
        threads.put(10)


# ---- against the broker ------------------------------------------------------------------------


@contextmanager
def publisher(broker, client_id: str = "network-server"):
    """A network server's MQTT client (QoS 1, a session kept across broker restarts)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.username, broker.password)
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    client.connect(broker.host, broker.port, clean_start=False)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    # After a broker restart the network server's own client reconnects by itself, in its time.
    assert wait_until(client.is_connected, 60), "the network server's client did not reconnect"
    infos = [client.publish(topic, body, qos=1) for topic, body in messages]
    for info in infos:
        info.wait_for_publish(timeout=30)


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def tts_topic(device: str, event: str = "up", app: str = TTS_APP) -> str:
    return f"v3/{app}@{TENANT}/devices/{device}/{event}"


def status_uplinks(devices: list[str], per_device: int) -> list[tuple[str, bytes]]:
    return [
        (tts_topic(device), b.tts_uplink(b.status(time_s=b.T0_S + 600 * n, lat=-2.5 - n / 1000), device_id=device,
                                         f_cnt=n + 1, dev_eui=f"70B3D57ED00{d:05X}"))
        for n in range(per_device) for d, device in enumerate(devices)
    ]


def applied_once(bridge) -> tuple[int, int]:
    """(uplinks stored once, positions): equal when no uplink was lost or applied twice."""
    with bridge.db.read() as session:
        firsts = session.scalar(select(func.count()).select_from(RawUplink).where(RawUplink.duplicate_of.is_(None),
                                                                                   RawUplink.status == "processed"))
        positions = session.scalar(select(func.count()).select_from(Position))
    return int(firsts or 0), int(positions or 0)


@pytest.mark.mqtt
def test_ranger_sees_collars_of_two_tts_applications_and_a_chirpstack_one_through_mqtt(mosquitto, sqlite_url):
    chirpstack_json = b.chirpstack_uplink(b.status(lat=-2.7), device_id="collar-cs", f_cnt=4, dev_eui="70b3d57ed0000c01")
    document = json.loads(b.chirpstack_uplink(b.status(time_s=b.T0_S + 600, lat=-2.8), device_id="collar-pb",
                                              f_cnt=5, dev_eui="70b3d57ed0000c02"))
    protobuf = integration.UplinkEvent(
        deduplication_id="9f1c4a2e-0000-4000-8000-000000000005",
        device_info=integration.DeviceInfo(tenant_id="t", application_id="0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1",
                                           application_name="tembo", device_name="collar-pb",
                                           dev_eui="70b3d57ed0000c02"),
        dev_addr="260b0002", dr=3, f_cnt=5, f_port=document["fPort"], data=base64.b64decode(document["data"]),
    )
    protobuf.time.FromJsonString(document["time"])
    messages = [
        (tts_topic("collar-n1"), b.tts_uplink(b.status(lat=-2.5), device_id="collar-n1", dev_eui="70B3D57ED0000A01")),
        (tts_topic("collar-s1", app="tembo-south"),
         b.tts_uplink(b.status(lat=-2.6), device_id="collar-s1", dev_eui="70B3D57ED0000B01")),
        ("application/0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1/device/70b3d57ed0000c01/event/up", chirpstack_json),
        ("application/0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1/device/70b3d57ed0000c02/event/up",
         protobuf.SerializeToString()),
        ("v3/tembo-north@kws/devices/collar-n1/down/push", b'{"downlinks": []}'),  # ours, not ingested
    ]
    settings = dict(mqtt_url=mosquitto.url, mqtt_client_id="bridge-apps", mqtt_share_group="apps")
    with b.fresh_bridge(sqlite_url, **settings) as bridge, worker_from_settings(bridge, bridge.settings) as worker:
        with publisher(mosquitto) as client:
            publish_all(client, messages)
        arrived = wait_until(lambda: applied_once(bridge)[1] == 4 and worker.acknowledged == 5)
        latitudes = sorted(round(p.lat, 3) for p in bridge.latest_positions(viewer=b.RANGER))

    assert arrived, (worker.received, worker.acknowledged, applied_once(bridge))
    assert latitudes == [-2.8, -2.7, -2.6, -2.5]
    assert worker.ignored == 1


TTS_TOPIC_OF = {
    "uplink_message": "up", "join_accept": "join", "downlink_queued": "down/queued", "downlink_sent": "down/sent",
    "downlink_ack": "down/ack", "downlink_nack": "down/nack", "downlink_failed": "down/failed",
    "location_solved": "location/solved", "service_data": "service/data",
}


@pytest.mark.mqtt
def test_every_documented_message_kind_arrives_by_mqtt_and_is_recorded_for_what_it_is(mosquitto, sqlite_url):
    messages = [(f"v3/app1@ttn/devices/dev1/{TTS_TOPIC_OF[name]}", json.dumps(nf.TTS[name].body).encode())
                for name in TTS_TOPIC_OF]
    messages += [(f"application/{nf.CHIRPSTACK[name].body['deviceInfo']['applicationId']}/device/0101010101010101"
                  f"/event/{name}", json.dumps(nf.CHIRPSTACK[name].body).encode()) for name in CHIRPSTACK_OUTCOMES]
    expected = sorted([TTS_OUTCOMES[name] for name in TTS_TOPIC_OF] + list(CHIRPSTACK_OUTCOMES.values()))
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-kinds",
                        share_group="kinds") as worker, publisher(mosquitto, client_id="network-kinds") as client:
            publish_all(client, messages)
            acknowledged = wait_until(lambda: worker.acknowledged == len(messages))
        with bridge.db.read() as session:
            outcomes = sorted((raw.status, raw.message) for raw in session.scalars(select(RawUplink)))
        dead = bridge.dead_letters()

    assert acknowledged
    assert outcomes == expected
    assert dead == []


@pytest.mark.mqtt
def test_broker_restart_loses_no_acknowledged_uplink_and_applies_none_twice(mqtt_broker, sqlite_url):
    devices = [f"collar-{i:02d}" for i in range(5)]
    messages = status_uplinks(devices, per_device=12)
    half = len(messages) // 2
    with b.fresh_bridge(sqlite_url) as bridge:
        worker = MqttIngest(bridge.ingest_network_message, parse_broker_url(mqtt_broker.url), client_id="bridge-1")
        with worker, publisher(mqtt_broker) as client:
            publish_all(client, messages[:half])
            mqtt_broker.restart()
            assert worker.wait_connected(30) or wait_until(lambda: worker.wait_connected(1), 30)
            publish_all(client, messages[half:])
            wait_until(lambda: applied_once(bridge) == (len(messages), len(messages)))
        stored, positions = applied_once(bridge)

    lost = len(messages) - stored
    applied_twice = positions - stored
    assert (lost, applied_twice) == (0, 0)


@pytest.mark.mqtt
def test_a_message_not_yet_durable_is_not_acknowledged_and_comes_back_to_the_restarted_worker(mosquitto, sqlite_url):
    store_down = threading.Event()
    store_down.set()
    tried = []

    def failing_store(*args, **kwargs):
        tried.append(args[1])
        raise StoreUnavailable("disk full")

    topic, body = status_uplinks(["collar-crash"], per_device=1)[0]
    broker = parse_broker_url(mosquitto.url)
    with MqttIngest(failing_store, broker, client_id="bridge-crashy") as worker, publisher(mosquitto) as client:
        publish_all(client, [(topic, body)])
        assert wait_until(lambda: len(tried) >= 2, 30)
        assert worker.acknowledged == 0
    # The worker stopped without a PUBACK (a crash looks the same to the broker): its session
    # still holds the message, and the restarted worker (same client id) gets it again.
    with b.fresh_bridge(sqlite_url) as bridge:
        with MqttIngest(bridge.ingest_network_message, broker, client_id="bridge-crashy") as worker:
            delivered = wait_until(lambda: applied_once(bridge) == (1, 1) and worker.acknowledged == 1, 30)

    assert delivered


@pytest.mark.mqtt
def test_a_worker_back_to_a_backlog_is_sent_no_more_at_once_than_it_has_threads_and_loses_none(mosquitto, sqlite_url):
    # The worker asks the broker for no more messages in flight than it has threads to hand them in
    # (MQTT 5 Receive Maximum): a backlog waits at the broker, not unacknowledged in the worker.
    broker = parse_broker_url(mosquitto.url)
    messages = status_uplinks([f"collar-b{n}" for n in range(10)], per_device=1)
    store_slow = threading.Event()
    handing_in = []
    with b.fresh_bridge(sqlite_url) as bridge:
        def slow_store(*args, **kwargs):
            handing_in.append(args[2])
            assert store_slow.wait(60)
            return bridge.ingest_network_message(*args, **kwargs)

        MqttIngest(slow_store, broker, client_id="bridge-backlog", threads=4).start().stop()  # its session
        with publisher(mosquitto, client_id="network-backlog") as client:
            publish_all(client, messages)
        worker = MqttIngest(slow_store, broker, client_id="bridge-backlog", threads=4).start()
        try:
            # The broker sends the session's backlog right after the connection is accepted, ahead of
            # the answer to the worker's subscription, which start() waits for.
            four_handed_in = wait_until(lambda: len(handing_in) == 4, 30)
            received_while_held = worker.received
            store_slow.set()
            all_in = wait_until(lambda: applied_once(bridge) == (10, 10) and worker.acknowledged == 10, 60)
        finally:
            store_slow.set()
            worker.stop()

    assert four_handed_in and received_while_held == 4
    assert all_in and worker.received == 10


@pytest.mark.mqtt
@pytest.mark.postgres
def test_two_workers_sharing_a_subscription_process_every_uplink_once_on_postgres(mosquitto, postgres_url):
    devices = [f"collar-{i:02d}" for i in range(10)]
    messages = status_uplinks(devices, per_device=12)
    with b.fresh_bridge(postgres_url) as first, b.fresh_bridge(postgres_url) as second:
        workers = [
            MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), share_group="tembo-workers",
                       client_id=f"bridge-worker-{n}", topics=("v3/+/devices/+/up",))
            for n, bridge in enumerate((first, second))
        ]
        for worker in workers:
            worker.start()
        try:
            with publisher(mosquitto, client_id="network-server-shared") as client:
                publish_all(client, messages)
            wait_until(lambda: applied_once(first) == (len(messages), len(messages)), 90)
        finally:
            for worker in workers:
                worker.stop()
        stored, positions = applied_once(first)
        received = [worker.received for worker in workers]

    assert (len(messages) - stored, positions - stored) == (0, 0)  # lost, applied twice
    assert sum(received) == len(messages)
    assert min(received) > 0


@pytest.mark.mqtt
def test_a_message_arriving_while_a_worker_stops_is_left_to_the_broker_and_comes_back(mosquitto, sqlite_url):
    topic, body = status_uplinks(["collar-late"], per_device=1)[0]
    broker = parse_broker_url(mosquitto.url)
    with b.fresh_bridge(sqlite_url) as bridge:
        worker = MqttIngest(bridge.ingest_network_message, broker, client_id="bridge-stopping",
                            keep=bridge.keep_failed).start()
        worker.stop()
        # The broker delivers a message in the moment between the worker's threads ending and its
        # disconnection: paho calls the worker's message callback, as it does for every publish.
        late = mqtt.MQTTMessage(mid=7, topic=topic.encode())
        late.payload, late.qos = body, 1
        worker.client.on_message(worker.client, None, late)
        unacknowledged = worker.acknowledged
        # The broker still holds its copy for the worker's session (here: published while it is away).
        with publisher(mosquitto, client_id="network-stopping") as client:
            publish_all(client, [(topic, body)])
        with MqttIngest(bridge.ingest_network_message, broker, client_id="bridge-stopping",
                        keep=bridge.keep_failed) as again:
            arrived = wait_until(lambda: applied_once(bridge) == (1, 1) and again.acknowledged == 1, 30)

    assert unacknowledged == 0
    assert arrived


@pytest.mark.mqtt
def test_topics_under_a_mosquitto_bridge_prefix_are_ingested_and_a_stray_topic_is_reported(mosquitto, sqlite_url, caplog):
    # An operator bridges The Things Stack's MQTT server into the reserve's Mosquitto under `ttn/`
    # (`topic v3/# in 0 ttn/ ""`) and templates ChirpStack's event topic under its region.
    tts = ("ttn/v3/tembo-north@kws/devices/collar-p1/up",
           b.tts_uplink(b.status(lat=-2.51), device_id="collar-p1", dev_eui="70B3D57ED0000D01"))
    chirpstack = ("eu868/application/0b8e8ae8/device/70b3d57ed0000d02/event/up",
                  b.chirpstack_uplink(b.status(lat=-2.52), device_id="collar-p2", dev_eui="70b3d57ed0000d02"))
    stray = ("ttn/status/gateway-7", b'{"online": true}')
    topics = ("ttn/v3/+/devices/+/#", "eu868/application/+/device/+/event/+", "ttn/status/#")
    with b.fresh_bridge(sqlite_url) as bridge, caplog.at_level(logging.WARNING, logger="lora_bridge.adapters.mqtt"):
        with MqttIngest(bridge.ingest_network_message, parse_broker_url(mosquitto.url), client_id="bridge-prefixed",
                        topics=topics, keep=bridge.keep_failed) as worker, \
                publisher(mosquitto, client_id="network-prefixed") as client:
            publish_all(client, [tts, chirpstack, stray])
            arrived = wait_until(lambda: applied_once(bridge) == (2, 2) and worker.acknowledged == 3)
        latitudes = sorted(round(p.lat, 2) for p in bridge.latest_positions(viewer=b.RANGER))

    assert arrived, (worker.received, worker.acknowledged, applied_once(bridge))  # they had all been dropped
    assert latitudes == [-2.52, -2.51]
    assert [r.topic for r in caplog.records if "neither network" in r.getMessage()] == ["ttn/status/gateway-7"]


@pytest.mark.mqtt
def test_operator_takes_two_tts_applications_each_with_its_own_mqtt_login(mosquitto, mqtt_broker, sqlite_url):
    # The Things Stack's MQTT server takes one application per login (username app@tenant, the
    # application's API key): a bridge that takes two applications by MQTT holds two logins.
    from lora_bridge.adapters.mqtt import workers_from_settings

    north = [(tts_topic("collar-n1"), b.tts_uplink(b.status(lat=-2.5), device_id="collar-n1",
                                                   dev_eui="70B3D57ED0000A01"))]
    south = [(tts_topic("collar-s1", app="tembo-south"), b.tts_uplink(b.status(lat=-2.6), device_id="collar-s1",
                                                                      dev_eui="70B3D57ED0000B01"))]
    settings = dict(mqtt_url=mosquitto.url, mqtt_more_urls=[mqtt_broker.url], mqtt_client_id="bridge-logins")
    with b.fresh_bridge(sqlite_url, outbox_worker=False, **settings) as bridge:
        workers = [worker.start() for worker in workers_from_settings(bridge, bridge.settings)]
        try:
            with publisher(mosquitto, client_id="tts-north") as client:
                publish_all(client, north)
            with publisher(mqtt_broker, client_id="tts-south") as client:
                publish_all(client, south)
            arrived = wait_until(lambda: applied_once(bridge) == (2, 2))
        finally:
            for worker in workers:
                worker.stop()
        shown = repr(bridge.settings)

    assert arrived and len(workers) == 2
    assert len({worker.client_id for worker in workers}) == 2
    assert mqtt_broker.password not in shown and mosquitto.password not in shown
