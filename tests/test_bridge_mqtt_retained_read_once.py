"""A retained uplink the store does not hold yet is read once: the worker reads it to ask the store whether
it holds that collar's uplink already, and its batch files it from that read, not from a second one. A
retained message whose topic names another kind than its body is read again under the body's kind, as
every message is filed. The broker's part is played by calling the worker's message callback, as paho does."""

from __future__ import annotations

import bridge_builders as b
import paho.mqtt.client as mqtt
from test_bridge_mqtt import applied_once, status_uplinks, tts_topic, wait_until
from test_bridge_mqtt_batches import NO_BROKER

from lora_bridge import network_messages
from lora_bridge.adapters.mqtt import MqttIngest


class CountedReads:
    """Stands in for the TTS body reader (`network_messages._read_tts`): counts each body read."""

    def __init__(self, monkeypatch) -> None:  # noqa: ANN001
        self.read = network_messages._read_tts
        self.calls = 0
        monkeypatch.setattr(network_messages, "_read_tts", self)

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        self.calls += 1
        return self.read(*args, **kwargs)


def filed_retained(bridge, messages: list[tuple[str, bytes]]) -> bool:  # noqa: ANN001
    """Hand messages to a worker of bridge with the retain flag set, QoS 1; whether each was acknowledged."""
    worker = MqttIngest(bridge.ingest_network_message, NO_BROKER, keep=bridge.keep_failed)
    worker.client.ack = lambda mid, qos: None
    for mid, (topic, body) in enumerate(messages, 1):
        message = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
        message.payload, message.qos, message.retain = body, 1, True
        worker.client.on_message(worker.client, None, message)
    all_in = wait_until(lambda: worker.acknowledged == len(messages), 30)
    worker.stop()
    return all_in


def test_retained_uplinks_not_yet_stored_are_each_read_once_and_applied_once(sqlite_url, monkeypatch):
    messages = status_uplinks([f"collar-r{n}" for n in range(3)], per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        reads = CountedReads(monkeypatch)
        assert filed_retained(bridge, messages)
        assert reads.calls == 3  # one read each: asked of the store, then filed
        assert applied_once(bridge) == (3, 3)


def test_a_retained_uplink_on_a_topic_of_another_kind_is_read_again_under_its_bodys_kind(sqlite_url, monkeypatch):
    (topic, body), = status_uplinks(["collar-j0"], per_device=1)
    assert topic == tts_topic("collar-j0")
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        reads = CountedReads(monkeypatch)
        assert filed_retained(bridge, [(tts_topic("collar-j0", event="join"), body)])
        assert reads.calls == 2  # the topic says join, the body holds an uplink_message: its batch reads it anew
        assert applied_once(bridge) == (1, 1)
