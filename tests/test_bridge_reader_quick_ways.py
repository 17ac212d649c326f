"""A network server's uplink reads the same as it did before the reader took its quick ways (a subscript
where the usual body has the field, one decoder call for the JSON, an RFC 3339 time read by position,
labels and DevEUIs judged once): the same Uplink, or the same refusal, for the documented bodies with any
field changed, any body bytes and any time text. The plain readers here are the reader as it was; the time's
and the JSON's references are the module's own general readers (`any_time`, `any_json_object`), which the
quick ways stand in front of."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import network_fixtures as nf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bridge_parser_properties import json_values, mutated

from lora_bridge.errors import MalformedUplink
from lora_bridge.network_messages import (
    CHIRPSTACK_EVENTS,
    TTS_EVENT_ALIASES,
    TTS_MESSAGE_KEYS,
    canonical_event,
)
from lora_bridge.uplink_formats import (
    MAX_LABEL,
    SOURCE_CHIRPSTACK,
    SOURCE_TTS,
    SPREADING_FACTORS,
    GatewayReception,
    Uplink,
    _counter,
    _duration_ms_or_none,
    _is_eui,
    _port,
    any_json_object,
    any_time,
    dig,
    escaped_text,
    int_within,
    list_of_objects,
    load_json_object,
    number_or_none,
    time_or_none,
    tts_network_scope,
    tts_uplink_from,
)

# (the message key, the documented body) of every TTS uplink fixture
TTS_UPLINKS = [(key, fixture) for fixture in nf.TTS.values()
               for key in ("uplink_message", "uplink_normalized") if key in fixture.body]


def _plain_label(value: Any) -> str | None:
    return None if value is None else escaped_text(value, MAX_LABEL)


def _plain_eui(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    text = value.strip().replace("-", "").replace(":", "") if isinstance(value, str) else None
    if text is None or len(text) != 16 or not set(text) <= set("0123456789abcdefABCDEF"):
        raise MalformedUplink(f"{key!r} must be an EUI-64 of 16 hex digits, got {value!r}"[:200])
    return text.upper()


def _plain_base64(document: dict[str, Any], key: str) -> bytes:
    value = document.get(key)
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise MalformedUplink(f"{key!r} must be base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedUplink(f"{key!r} is not base64: {error}") from error


def _plain_uplink(document: dict[str, Any], message: dict[str, Any], path_ids: dict[str, str] | None) -> Uplink:
    """tts_uplink_from as it read every field through the tolerant readers."""
    ids = document.get("end_device_ids")
    ids = ids if isinstance(ids, dict) else {}
    path = path_ids or {}
    dev_eui = _plain_eui(ids.get("dev_eui"), "dev_eui") or _plain_eui(path.get("dev_eui"), "dev_eui")
    if dev_eui is None and not ids and _is_eui(path.get("device_id")):
        dev_eui = str(path["device_id"]).upper()
    device_id = _plain_label(ids.get("device_id")) or _plain_label(path.get("device_id")) or dev_eui
    named = _plain_label(path.get("device_id"))
    by_eui = str(path.get("device_id")).upper() == dev_eui if dev_eui is not None else _is_eui(path.get("device_id"))
    if _plain_label(ids.get("device_id")) and named and named != device_id and not by_eui:  # another collar's topic
        raise MalformedUplink(f"the topic (or webhook path) names device {named!r} but the body's "
                              f"end_device_ids.device_id is {device_id!r}: taken for neither")
    if not device_id:
        raise MalformedUplink("missing text field 'device_id' (no end_device_ids and no device in the webhook path)")
    application_id = (_plain_label(dig(ids, "application_ids").get("application_id"))
                      or _plain_label(path.get("application_id")))
    lora = dig(message, "settings", "data_rate", "lora")
    gateways = tuple(
        GatewayReception(gateway_id=_plain_label(dig(meta, "gateway_ids").get("gateway_id")) or "?",
                         rssi_dbm=number_or_none(meta.get("rssi", meta.get("channel_rssi"))),
                         snr_db=number_or_none(meta.get("snr")))
        for meta in list_of_objects(message.get("rx_metadata")))
    payload = _plain_base64(message, "frm_payload")
    return Uplink(
        source=SOURCE_TTS, device_id=device_id,
        f_port=_port(message, "f_port"),
        f_cnt=_counter(message, "f_cnt"), payload=payload,
        payload_left_out=not payload and bool(message.get("decoded_payload") or message.get("normalized_payload")),
        heard_at=any_time(message.get("received_at")) or any_time(document.get("received_at")),
        dev_eui=dev_eui, application_id=application_id, network_scope=tts_network_scope(message, path_ids),
        gateways=gateways, spreading_factor=int_within(lora.get("spreading_factor"), *SPREADING_FACTORS),
        airtime_ms=_duration_ms_or_none(message.get("consumed_airtime")),
    )


def _outcome(read: Any, *args: Any) -> str:
    """What read made of args: the repr of its value, or its refusal's words."""
    try:
        return repr(read(*args))
    except MalformedUplink as error:
        return f"refused: {error}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_tts_uplink_with_any_field_changed_reads_as_the_field_by_field_reader_read_it(data):
    key, fixture = data.draw(st.sampled_from(TTS_UPLINKS))
    document = json.loads(mutated(fixture, data))
    message = document.get(key)
    if not isinstance(message, dict):
        message = {}
    path_ids = data.draw(st.none() | st.fixed_dictionaries({
        "application_id": st.text(max_size=10), "device_id": st.text(max_size=17) | st.just("70B3D57ED0000001"),
        "dev_eui": st.sampled_from(["", "70b3d57ed0000002", "not-an-eui"]), "tenant_id": st.text(max_size=5)}))
    assert _outcome(tts_uplink_from, document, message, path_ids) == _outcome(_plain_uplink, document, message, path_ids)


digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@settings(max_examples=600, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)), st.integers(0, 10),
       st.sampled_from(["Z", "z", "+00:00", "+02:00", "", " "]), st.sampled_from(["T", "t", " "]),
       st.lists(st.tuples(st.integers(0, 29), digits | st.sampled_from(["٣", "x", "-"])), max_size=2))
def test_a_network_time_reads_as_the_general_parser_read_it(moment, fraction_digits, zone, separator, changes):
    """The times TTS and ChirpStack write (the Protobuf JSON mapping: UTC, "Z", 0 to 9 digits of fraction)
    and everything near them: no such day, a 24th hour, other zones, non-ASCII digits."""
    fraction = f"{moment.microsecond:06d}999"[:fraction_digits]
    text = moment.strftime("%Y-%m-%d") + separator + moment.strftime("%H:%M:%S") + \
        (f".{fraction}" if fraction else "") + zone
    for position, character in changes:
        text = text[:position] + character + text[position + 1:]
    assert repr(time_or_none(text)) == repr(any_time(text))


object_bodies = st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(
    lambda value: json.dumps(value, allow_nan=True))


@settings(max_examples=400, deadline=None)
@given(object_bodies, st.sampled_from(["utf-8", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]),
       st.binary(max_size=3) | st.sampled_from([b"", b" ", b"\n", b"}", b"\x00", b"\xff"]), st.booleans())
def test_a_body_reads_as_json_loads_read_it(text, encoding, tail, cut):
    """Any object body in any encoding json.loads detects, with bytes after it or cut short: the same
    document, or the same refusal in the same words."""
    body = text.encode(encoding) + tail
    if cut:
        body = body[: len(body) // 2]
    assert _outcome(load_json_object, body) == _outcome(any_json_object, body)


def test_a_tts_uplink_of_the_usual_shape_reads_its_documented_fields():
    """The documented uplink through the quick ways: every field the plain reader reads."""
    fixture = nf.TTS["uplink_message"]
    document = fixture.copy()
    uplink = tts_uplink_from(document, document["uplink_message"], None)
    assert uplink == _plain_uplink(document, document["uplink_message"], None)
    assert uplink.dev_eui is not None and uplink.heard_at is not None and uplink.gateways


def test_an_event_name_the_webhook_journals_reads_as_the_same_name_written_loosely():
    """A message kind named as the writer journals it (`event_name_of`: a TTS message key, a ChirpStack
    event) is taken as it is; written with the slashes, case and spaces a topic or path may add, it is
    cleaned to the same name, and a TTS alias to its message key."""
    for network, names in ((SOURCE_TTS, (*TTS_MESSAGE_KEYS, *TTS_EVENT_ALIASES)), (SOURCE_CHIRPSTACK, CHIRPSTACK_EVENTS)):
        for name in names:
            loose = f" /{name.upper().replace('_', '-')}/ "
            assert canonical_event(network, name) == canonical_event(network, loose)
    assert canonical_event(SOURCE_TTS, "uplink_message") == "uplink_message"
    assert canonical_event(SOURCE_TTS, "down/ack") == "downlink_ack"
    assert canonical_event(SOURCE_CHIRPSTACK, "txack") == "txack"
