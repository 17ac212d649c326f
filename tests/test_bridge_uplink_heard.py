"""The durable intake's writer reads a common TTS uplink only as far as its answer needs
(`lora_bridge.uplink_heard`): every body, valid or broken, must come out as the full reader has it:
the same collar, DevEUI and frame counter in the answer, the same dead letter with the same reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import network_fixtures as nf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_bridge.bench import synthetic_bodies
from lora_bridge.errors import MalformedUplink
from lora_bridge.network_messages import event_name_of, read_network_message
from lora_bridge.uplink_formats import Uplink, tts_uplink_body
from lora_bridge.uplink_heard import UplinkHeard, heard_plainly, read_to_answer

# Anything a field may hold instead of what the documentation says.
ODD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=24)
    | st.sampled_from(["", " ", "7", "1e5", "7.0", "0x10", "vu8=", "vu8", "AQ==\n", "Infinity", "NaN"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
# Device names as tenants write them, and as a network may pass them on (newlines, escapes, long names).
NAMES = st.text(max_size=70) | st.sampled_from(["collar-07", " collar-07 ", "collar\n07", "a" * 64, "a" * 65,
                                                 "\x1b[31mred", "", "  "])
ODD_EUIS = [None, "70B3D57ED0000001", "70b3d57ed0000001", "70-B3-D5-7E-D0-00-00-01", "70:b3:d5:7e:d0:00:00:01",
            " 70B3D57ED0000001", "70B3D57ED000000", "", "70B3D57ED000000G", "70B3D57ED00000011", 0x70B3D57ED0000001]
EUIS = st.sampled_from(ODD_EUIS) | ODD_VALUES
TIMES = st.sampled_from(["2026-12-06T10:00:00Z", "2020-02-12T15:15:45.789585559Z", "9999-12-31T23:59:59.999999999Z",
                         "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "yesterday", ""]) | ODD_VALUES
# The fields the full reader refuses a body for, and what each may hold instead.
CHECKED = [("ids", "dev_eui"), ("ids", "device_id"), ("ids", "application_ids"), ("message", "f_port"),
           ("message", "f_cnt"), ("message", "frm_payload"), ("message", "network_ids"), ("document", "simulated"),
           ("document", "end_device_ids"), ("document", "uplink_message")]
ODD_NUMBERS = [-1, 256, 2**32 - 1, 2**32, "1", "7.0", "1e5", 1.0, 2.5, True, False, None, "", [], {}]
NUMBERS = st.integers(-5, 300) | st.integers(2**32 - 3, 2**32 + 3) | st.sampled_from(ODD_NUMBERS) | ODD_VALUES
ODD_PAYLOADS = ["vu8", "vu8=", "AQ==\n", "\u00e9", "", "====", "QUJD", "QU JD", "QUJD=", 7, None, ["QUJD"]]
# Each checked field with each value a test below puts in it: every broken shape the reader knows.
ODD_FIELDS = {"dev_eui": ODD_EUIS, "device_id": [None, "", "  ", "collar\n07", "a" * 65, 7, True, ["x"]],
              "f_port": ODD_NUMBERS, "f_cnt": ODD_NUMBERS, "frm_payload": ODD_PAYLOADS,
              "simulated": [True, False, "true", 1, None], "application_ids": [None, "app", [], {"application_id": 7}],
              "network_ids": [None, "x", {"tenant_id": "\n"}, {"cluster_id": 7, "cluster_address": "eu1"}],
              "end_device_ids": [None, {}, [], {"dev_eui": "70B3D57ED0000001"}], "uplink_message": [None, [], "x", {}]}
BROKEN = {
    "dev_eui": EUIS, "device_id": NAMES | ODD_VALUES, "f_port": NUMBERS, "f_cnt": NUMBERS,
    "frm_payload": st.sampled_from(ODD_PAYLOADS) | ODD_VALUES,
    "simulated": st.sampled_from([True, False, "true", 1, None]),
    "application_ids": ODD_VALUES | st.fixed_dictionaries({"application_id": NAMES | ODD_VALUES}),
    "network_ids": ODD_VALUES | st.fixed_dictionaries({"tenant_id": NAMES | ODD_VALUES, "cluster_id": NAMES | ODD_VALUES}),
    "end_device_ids": ODD_VALUES | st.fixed_dictionaries({"dev_eui": EUIS}),
    "uplink_message": ODD_VALUES,
}
EVENTS = st.sampled_from([None, "up", "uplink", "uplink_message", "join", "down/ack", "up/normalized", "x\ny"])


@st.composite
def tts_uplink_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """(a TTS uplink document, whether it is written plainly: the quick way must read it). Built from the
    documented uplink and its variants (no f_port; field-masked with only uplink_message; settings.data_rate
    null; rssi Infinity; a year-9999 received_at), each field plain, left out, or replaced by anything."""
    plain = True
    document = draw(st.sampled_from([nf.TTS["uplink_message"], nf.TTS["uplink_message_without_f_port"]])).copy()
    ids = dict(document["end_device_ids"])
    message = dict(document["uplink_message"])
    choice = draw(st.integers(0, 2))  # 0: plain; 1: changed within what is plain; 2: anything
    if choice >= 1:
        ids["device_id"] = draw(NAMES)
        message["f_cnt"] = draw(st.integers(0, 2**32 - 1))
        message["f_port"] = draw(st.integers(0, 255))
        message["frm_payload"] = base64.b64encode(draw(st.binary(max_size=51))).decode()
        ids["dev_eui"] = draw(st.sampled_from(["70B3D57ED0000001", "70b3d57ed0000abc"]))
        if draw(st.booleans()):
            del ids["dev_eui"]
        if draw(st.booleans()):
            message["network_ids"] = {"net_id": "000013", "tenant_id": draw(NAMES), "cluster_id": draw(NAMES),
                                      "cluster_address": draw(NAMES)}
        message["settings"] = {"data_rate": None}
        message["rx_metadata"] = [{"gateway_ids": {"gateway_id": draw(NAMES)}, "rssi": float("inf"), "snr": "NaN"}]
        message["received_at"] = draw(TIMES)
        document["received_at"] = draw(TIMES)
        plain = bool(ids["device_id"].strip()) or "dev_eui" in ids
    document = {**document, "end_device_ids": ids, "uplink_message": message}
    if choice == 2:
        plain = False
        for _ in range(draw(st.integers(1, 3))):
            where, key = draw(st.sampled_from(CHECKED) if draw(st.integers(0, 3)) else
                              st.tuples(st.sampled_from(["ids", "message", "document"]), st.text(max_size=3)))
            target = {"ids": ids, "message": message, "document": document}[where]
            if draw(st.integers(0, 4)) == 0:
                target.pop(key, None)
            else:
                target[key] = draw(BROKEN.get(key, ODD_VALUES))
    if draw(st.integers(0, 4)) == 0:
        document = {"uplink_message": message}  # a field mask that keeps only the message
        plain = False
    return document, plain


def answered(reader: Any, event: str | None, body: bytes, content_type: str | None = "application/json",
             path_ids: dict[str, str] | None = None) -> tuple[Any, ...]:
    """What the writer answers body with, read by reader after event_name_of, as the writer reads it."""
    event = event_name_of("tts", event, body)
    try:
        message = reader("tts", event, body, content_type=content_type, path_ids=path_ids)
    except MalformedUplink as error:
        return ("dead letter", str(error))
    if isinstance(message, Uplink | UplinkHeard):
        return ("uplink", message.source, message.device_id, message.dev_eui, message.f_cnt,
                message.application_id, message.network_scope)
    return ("event", message)


def kept_and_answered(event: str | None, body: bytes, content_type: str | None = "application/json",
                      path_ids: dict[str, str] | None = None, *, writer: bool = True) -> tuple[Any, ...]:
    """(the event name the journal keeps body under, its answer): as the writer has them (writer: its
    quickest way, `heard_plainly`, first), else as event_name_of and the full reader have them."""
    heard = heard_plainly("tts", body, content_type, path_ids) if writer else None
    if heard is not None:
        return "uplink_message", ("uplink", heard.source, heard.device_id, heard.dev_eui, heard.f_cnt,
                                  heard.application_id, heard.network_scope)
    reader = read_to_answer if writer else read_network_message
    return event_name_of("tts", event, body), answered(reader, event, body, content_type, path_ids)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tts_uplink_bodies(), EVENTS)
def test_a_tts_uplink_is_answered_and_dead_lettered_as_the_full_reader_has_it(drawn, event):
    """The documented uplink and its variants, plain or with any field broken, under any path's event
    name: the quick way gives the full reader's collar and frame counter, or its dead letter and reason;
    and a plainly written uplink is read the quick way."""
    document, plain = drawn
    body = json.dumps(document, allow_nan=True).encode()
    quick = answered(read_to_answer, event, body)
    assert quick == answered(read_network_message, event, body)
    assert kept_and_answered(event, body) == kept_and_answered(event, body, writer=False)
    if plain:
        assert isinstance(heard_plainly("tts", body, "application/json", None), UplinkHeard)
        event_name_of("tts", event, body)
        heard = read_to_answer("tts", "uplink_message", body, content_type="application/json", path_ids=None)
        assert isinstance(heard, UplinkHeard)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.sampled_from([b"", b" ", b"[]", b"null", b'{"uplink_message": null}',
                                                  b'{"uplink_message": {}, "simulated": true}']),
       EVENTS, st.sampled_from(["application/json", "application/octet-stream", None]),
       st.none() | st.fixed_dictionaries({"application_id": NAMES, "device_id": NAMES}))
def test_any_other_body_is_answered_as_the_full_reader_has_it(body, event, content_type, path_ids):
    """Bytes that are no uplink, a Protobuf content type, a webhook path naming the device: the full
    reader's answer or dead letter, every time."""
    assert (answered(read_to_answer, event, body, content_type, path_ids)
            == answered(read_network_message, event, body, content_type, path_ids))
    assert (kept_and_answered(event, body, content_type, path_ids)
            == kept_and_answered(event, body, content_type, path_ids, writer=False))


def test_the_bench_herd_and_the_bridges_own_bodies_are_read_the_quick_way():
    """The bodies the bridge's benches post (one collar's frame as The Things Stack posts it) are read the
    quick way, with the Uplink's collar, DevEUI and frame counter."""
    bodies = synthetic_bodies(2, 2) + [tts_uplink_body("collar-07", None, "reserve", 2, 9, b"\x01",
                                                       datetime(2026, 12, 6, tzinfo=UTC))]
    for body in bodies:
        event = event_name_of("tts", None, body)
        heard = read_to_answer("tts", event, body, content_type="application/json", path_ids=None)
        assert isinstance(heard, UplinkHeard)
        assert heard_plainly("tts", body, "application/json", None) == heard
        full = read_network_message("tts", event, body)
        assert (heard.device_id, heard.dev_eui, heard.f_cnt, heard.application_id, heard.network_scope) == (
            full.device_id, full.dev_eui, full.f_cnt, full.application_id, full.network_scope)


def test_every_broken_shape_of_a_field_the_reader_checks_is_answered_as_before():
    """The documented uplink with each field the full reader refuses a body for (ids, port, counter,
    payload, the message itself, the simulated flag) left out or holding each odd value: the same
    answer or dead letter, word for word, as the full reader gives."""
    where = {"dev_eui": "ids", "device_id": "ids", "application_ids": "ids", "f_port": "message", "f_cnt": "message",
             "frm_payload": "message", "network_ids": "message"}
    for key, values in ODD_FIELDS.items():
        for value in [*values, "left out"]:
            document = nf.TTS["uplink_message"].copy()
            ids, message = dict(document["end_device_ids"]), dict(document["uplink_message"])
            document = {**document, "end_device_ids": ids, "uplink_message": message}
            target = {"ids": ids, "message": message}.get(where.get(key, ""), document)
            if value == "left out":
                target.pop(key, None)
            else:
                target[key] = value
            body = json.dumps(document).encode()
            assert answered(read_to_answer, None, body) == answered(read_network_message, None, body), (key, value)
            assert kept_and_answered(None, body) == kept_and_answered(None, body, writer=False), (key, value)
