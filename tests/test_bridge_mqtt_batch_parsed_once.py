"""Each body of an MQTT worker's batch is parsed once: a TTS body's JSON, parsed to name its kind, is read
there and then, and its batch files it from that read (each was parsed twice: the batch read its first body
before its last, and that read let go of the document the last one was named by). A ChirpStack body, JSON or
Protobuf, is parsed once as before. A body that does not read as its kind says is still a dead letter with
its reason. The broker's part is played by calling the worker's message callback, as paho does; the first
message's batch is held, so the others come in one batch together."""

from __future__ import annotations

import base64
import json
from collections import Counter

import bridge_builders as b
import pytest
from chirpstack_api import integration
from conftest import empty_store
from test_bridge_batch_equivalence import TABLES, stored
from test_bridge_mqtt import applied_once, status_uplinks, tts_topic
from test_bridge_mqtt_batches import HeldBatches, all_handed_in

from lora_bridge import chirpstack_protobuf, uplink_formats
from lora_bridge.adapters import mqtt_hand_in
from lora_bridge.adapters.mqtt import content_type_of, in_flight, route
from lora_bridge.adapters.mqtt_hand_in import BridgeBatches, InHand
from lora_bridge.bench import synthetic_bodies

CHIRPSTACK_APP = "0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1"


class CountedParses:
    """Stands in for the parsers a body goes through (the JSON decoder `load_json_object` scans with,
    `json.loads`, ChirpStack's Protobuf reader): counts each parse of each of bodies, by its place."""

    def __init__(self, monkeypatch, bodies: list[bytes]) -> None:  # noqa: ANN001
        self.places = {body: n for n, body in enumerate(bodies)}
        self.texts = {body.decode("utf-8"): n for n, body in enumerate(bodies) if body[:1] == b"{"}
        self.parses: Counter[int] = Counter()
        self.decoder = uplink_formats._DECODER
        self.loads = json.loads
        self.protobuf = chirpstack_protobuf.protobuf_event_as_json
        monkeypatch.setattr(uplink_formats, "_DECODER", self)
        monkeypatch.setattr(json, "loads", self.counted_loads)
        monkeypatch.setattr(chirpstack_protobuf, "protobuf_event_as_json", self.counted_protobuf)

    def scan_once(self, text: str, index: int):  # noqa: ANN201 - the decoder's (value, end)
        if text in self.texts:
            self.parses[self.texts[text]] += 1
        return self.decoder.scan_once(text, index)

    def counted_loads(self, text, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        place = self.places.get(text) if isinstance(text, bytes) else self.texts.get(text)
        if place is not None:
            self.parses[place] += 1
        return self.loads(text, *args, **kwargs)

    def counted_protobuf(self, event: str, body: bytes):  # noqa: ANN201
        if body in self.places:
            self.parses[self.places[body]] += 1
        return self.protobuf(event, body)

    def each(self) -> list[int]:
        """How many times each body was parsed, in the order given."""
        return [self.parses[n] for n in range(len(self.places))]


def chirpstack_topic(dev_eui: str) -> str:
    return f"application/{CHIRPSTACK_APP}/device/{dev_eui}/event/up"


def chirpstack_protobuf_uplink(device_id: str, dev_eui: str, f_cnt: int) -> bytes:
    """The ChirpStack `event/up` of `b.chirpstack_uplink` (a status), as binary Protobuf."""
    document = json.loads(b.chirpstack_uplink(b.status(lat=-2.8), device_id=device_id, f_cnt=f_cnt, dev_eui=dev_eui))
    event = integration.UplinkEvent(
        deduplication_id=f"9f1c4a2e-0000-4000-8000-{f_cnt:012d}",
        device_info=integration.DeviceInfo(tenant_id="t", application_id=CHIRPSTACK_APP, application_name="tembo",
                                           device_name=device_id, dev_eui=dev_eui),
        dev_addr="260b0002", dr=3, f_cnt=f_cnt, f_port=document["fPort"], data=base64.b64decode(document["data"]),
    )
    event.time.FromJsonString(document["time"])
    return event.SerializeToString()


def broken_uplink(device_id: str, dev_eui: str) -> bytes:
    """A TTS uplink whose frame counter is no number: JSON, but no uplink (a dead letter, stage parse)."""
    document = json.loads(b.tts_uplink(b.status(), device_id=device_id, dev_eui=dev_eui))
    document["uplink_message"]["f_cnt"] = "seven"
    return json.dumps(document).encode()


def parses_in_one_batch(bridge, monkeypatch, messages: list[tuple[str, bytes]]) -> list[int]:  # noqa: ANN001
    """How many times each of messages' bodies was parsed as a worker of bridge handed them in: the first
    by itself, the others, which came while it was written, together (`all_handed_in`)."""
    parses = CountedParses(monkeypatch, [body for _, body in messages])
    batches = HeldBatches(bridge)
    _, _, all_in = all_handed_in(bridge, batches, messages)
    assert all_in
    assert max(batches.sizes) >= len(messages) - 1  # those that came while the first was written: one batch
    return parses.each()


def test_every_tts_uplink_of_a_batch_is_parsed_once_and_applied_once(sqlite_url, monkeypatch):
    messages = status_uplinks([f"collar-p{n}" for n in range(6)], per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        assert parses_in_one_batch(bridge, monkeypatch, messages) == [1] * 6
        assert applied_once(bridge) == (6, 6)


def test_a_tts_body_that_does_not_read_as_an_uplink_is_parsed_once_and_kept_as_a_dead_letter_with_its_reason(
        sqlite_url, monkeypatch):
    (first_topic, first), (topic, good) = status_uplinks(["collar-q0", "collar-q1"], per_device=1)
    messages = [(first_topic, first), (tts_topic("collar-q2"), broken_uplink("collar-q2", "70B3D57ED0000F02")),
                (topic, good)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        # the broken body: read once on arrival (it was twice), then twice more as its dead letter names its
        # collar (`network_messages.collar_named`: read, then read tolerantly)
        assert parses_in_one_batch(bridge, monkeypatch, messages) == [1, 3, 1]
        dead = bridge.dead_letters()
        assert [(letter.stage, "'f_cnt' must be a frame counter" in letter.reason) for letter in dead] == [("parse", True)]
        assert applied_once(bridge) == (2, 2)


def test_chirpstack_json_and_protobuf_uplinks_of_a_batch_are_each_parsed_once(sqlite_url, monkeypatch):
    euis = [f"70b3d57ed0000d0{n}" for n in range(5)]
    messages = [(tts_topic("collar-c0"), status_uplinks(["collar-c0"], per_device=1)[0][1])]
    messages += [(chirpstack_topic(eui), b.chirpstack_uplink(b.status(lat=-2.7), device_id=f"collar-c{n}", f_cnt=4,
                                                             dev_eui=eui)) for n, eui in enumerate(euis[1:3], 1)]
    messages += [(chirpstack_topic(eui), chirpstack_protobuf_uplink(f"collar-c{n}", eui, 5))
                 for n, eui in enumerate(euis[3:], 3)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        assert parses_in_one_batch(bridge, monkeypatch, messages) == [1] * 5
        assert applied_once(bridge) == (5, 5)


def herd_on_mqtt() -> list[tuple[str, bytes]]:
    """The bench's herd (20 collars, 12 hours) on its collars' TTS `up` topics, with a body of each kind a
    batch reads otherwise among them: a broken uplink, a join, a body that is no JSON, and ChirpStack
    uplinks in JSON and in Protobuf."""
    herd = [(tts_topic(json.loads(body)["end_device_ids"]["device_id"]), body)
            for body in synthetic_bodies(collars=20, hours=12)]
    others = [
        (tts_topic("collar-x1"), broken_uplink("collar-x1", "70B3D57ED0000E01")),
        (tts_topic("collar-x2", event="join"), b.tts_join(device_id="collar-x2")),
        (tts_topic("collar-x3"), b"not json"),
        (chirpstack_topic("70b3d57ed0000e04"), b.chirpstack_uplink(b.status(lat=-2.7), device_id="collar-x4",
                                                                   f_cnt=4, dev_eui="70b3d57ed0000e04")),
        (chirpstack_topic("70b3d57ed0000e05"), chirpstack_protobuf_uplink("collar-x5", "70b3d57ed0000e05", 5)),
    ]
    return herd[:100] + others + herd[100:]


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_herd_on_mqtt_stores_the_same_rows_whether_its_batch_or_its_arrival_reads_each_body(
        engine, request, tmp_path, monkeypatch):
    messages = [InHand(route(topic), body, content_type_of(route(topic).network, body), in_flight(mid, 1, False))
                for mid, (topic, body) in enumerate(herd_on_mqtt(), 1)]
    dumps = []
    for name, read_on_arrival in (("batch", False), ("arrival", True)):
        with monkeypatch.context() as patched:
            if not read_on_arrival:  # as before: each body read by its batch, from its raw row's values
                patched.setattr(mqtt_hand_in, "read_as_its_batch", lambda submission: None)
            with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
                writer = BridgeBatches(bridge)
                fates = [fate for first in range(0, len(messages), 62)
                         for fate in writer.write(messages[first:first + 62])]
                assert fates == [None] * len(messages)  # each durable or kept
                dumps.append(stored(bridge))
    read_by_batch, read_on_arrival = dumps
    assert len(read_on_arrival["dead_letters"]) == 2 and len(read_on_arrival["network_events"]) == 1
    for name in TABLES:
        assert read_on_arrival[name] == read_by_batch[name], name
