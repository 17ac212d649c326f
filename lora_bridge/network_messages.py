"""Every message kind The Things Stack v3 and ChirpStack v4 send, read into an `Uplink` or a `NetworkEvent`.

    read_network_message("tts", None, body)                       # kind from the body's key
    read_network_message("tts", "down/ack", body, path_ids=ids)   # kind from an MQTT topic / webhook path
    read_network_message("chirpstack", "txack", body, content_type="application/octet-stream")

The Things Stack posts one JSON object per message whose single top-level message key names the kind
(`uplink_message`, `join_accept`, `downlink_ack`, ...; docs: thethingsindustries.com/docs/integrations/
data-formats/); ChirpStack names the kind in the HTTP integration's `event` query parameter or the
MQTT topic's last level, and encodes the body as JSON (Protobuf JSON mapping) or binary Protobuf
(docs: chirpstack.io/docs/chirpstack/integrations/events.html). Network kinds map onto Tembo's:

    TTS                          ChirpStack                 Tembo kind
    uplink_message               up                         (an Uplink)
    uplink_normalized            -                          (an Uplink; same frame as uplink_message)
    either, with simulated: true -                          simulated_uplink (recorded; no collar sent it)
    join_accept                  join                       join
    downlink_queued              -                          downlink_queued
    downlink_sent                txack                      downlink_sent
    downlink_ack                 ack (acknowledged true)    downlink_ack
    downlink_nack                ack (acknowledged false)   downlink_nack
    downlink_failed              -                          downlink_failed
    downlink_queue_invalidated   -                          downlink_queue_invalidated
    location_solved              location                   location
    -                            status                     status
    -                            log                        log
    service_data                 integration                service_data / integration
    anything else                anything else              unknown (kept for inspection)
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lora_bridge.errors import MalformedUplink
from lora_bridge.uplink_formats import (
    MAX_F_CNT,
    SOURCE_CHIRPSTACK,
    SOURCE_TTS,
    Uplink,
    chirpstack_identity,
    chirpstack_network_scope,
    chirpstack_uplink_from,
    dig,
    escaped_text,
    eui_or_none,
    int_or_none,
    int_within,
    label,
    list_of_objects,
    load_json_object,
    number_or_none,
    time_or_none,
    tts_identity,
    tts_network_scope,
    tts_uplink_from,
    whole_number,
)

NETWORKS = (SOURCE_TTS, SOURCE_CHIRPSTACK)
# Network-server bodies are a few KB (a TTS uplink heard by 300 gateways is about 150 KB); the
# webhook reads at most this much, and a body cut there is refused with that said.
MAX_BODY_BYTES = 256 * 1024
MAX_PORT = 255
# DevStatusAns: the demodulation margin is a 6-bit signed integer (LoRaWAN 1.0.x, 5.5), in dB.
DEV_STATUS_MARGIN_DB = (-32, 31)

KIND_UPLINK = "uplink"
KIND_JOIN = "join"
KIND_DOWNLINK_QUEUED = "downlink_queued"
KIND_DOWNLINK_SENT = "downlink_sent"
KIND_DOWNLINK_ACK = "downlink_ack"
KIND_DOWNLINK_NACK = "downlink_nack"
KIND_DOWNLINK_FAILED = "downlink_failed"
KIND_DOWNLINK_INVALIDATED = "downlink_queue_invalidated"
KIND_LOCATION = "location"
KIND_STATUS = "status"
KIND_LOG = "log"
KIND_SERVICE_DATA = "service_data"
KIND_INTEGRATION = "integration"
KIND_SIMULATED = "simulated_uplink"
KIND_UNKNOWN = "unknown"

DOWNLINK_REPORTS = (
    KIND_DOWNLINK_QUEUED,
    KIND_DOWNLINK_SENT,
    KIND_DOWNLINK_ACK,
    KIND_DOWNLINK_NACK,
    KIND_DOWNLINK_FAILED,
    KIND_DOWNLINK_INVALIDATED,
)
# Every kind a network event is recorded as (`network_events.kind`).
EVENT_KINDS = (KIND_JOIN, *DOWNLINK_REPORTS, KIND_LOCATION, KIND_STATUS, KIND_LOG, KIND_SERVICE_DATA,
               KIND_INTEGRATION, KIND_SIMULATED)

# The Things Stack: the message key in the body -> Tembo's kind.
TTS_MESSAGE_KEYS = {
    "uplink_message": KIND_UPLINK,
    "uplink_normalized": KIND_UPLINK,
    "join_accept": KIND_JOIN,
    "downlink_queued": KIND_DOWNLINK_QUEUED,
    "downlink_sent": KIND_DOWNLINK_SENT,
    "downlink_ack": KIND_DOWNLINK_ACK,
    "downlink_nack": KIND_DOWNLINK_NACK,
    "downlink_failed": KIND_DOWNLINK_FAILED,
    "downlink_queue_invalidated": KIND_DOWNLINK_INVALIDATED,
    "location_solved": KIND_LOCATION,
    "service_data": KIND_SERVICE_DATA,
}
# Names of the same messages in TTS MQTT topics (v3/{app}/devices/{dev}/...) and webhook paths.
TTS_EVENT_ALIASES = {
    "up": "uplink_message",
    "uplink": "uplink_message",
    "up_normalized": "uplink_normalized",
    "normalized": "uplink_normalized",
    "join": "join_accept",
    "down_queued": "downlink_queued",
    "down_sent": "downlink_sent",
    "down_ack": "downlink_ack",
    "down_nack": "downlink_nack",
    "down_failed": "downlink_failed",
    "down_queue_invalidated": "downlink_queue_invalidated",
    "down_invalidated": "downlink_queue_invalidated",  # the MQTT topic's name (topics.DownlinkQueueInvalidatedTopic)
    "location": "location_solved",
    "location_solved": "location_solved",
    "service_data": "service_data",
}
CHIRPSTACK_EVENTS = ("up", "join", "ack", "txack", "status", "log", "location", "integration")
# A ChirpStack body names its event only in the MQTT topic or the HTTP integration's ?event=. Read
# without either (a capture of bodies), it is the first event whose own fields it carries
# (integration.proto, JSON names): tried in this order because an uplink names its DevAddr as a join
# does and carries an `object` as an integration event does, and a txack names its queue item as an ack does.
CHIRPSTACK_EVENT_FIELDS = (
    ("integration", ("integrationName", "eventType")),
    ("log", ("level", "code", "description")),
    ("location", ("location",)),
    ("status", ("margin", "batteryLevel", "batteryLevelUnavailable", "externalPowerSource")),
    ("txack", ("downlinkId", "gatewayId")),
    ("ack", ("acknowledged", "queueItemId")),
    ("up", ("fCnt", "fPort", "data", "rxInfo", "txInfo", "dr", "adr", "object", "confirmed")),
    ("join", ("devAddr",)),
)
PROTOBUF_CONTENT_TYPES = (
    "application/octet-stream",
    "application/x-protobuf",
    "application/protobuf",
    "application/vnd.google.protobuf",
)


@dataclass(frozen=True)
class NetworkEvent:
    """What a network server said that is not an uplink, with the fields Tembo acts on and the rest."""

    network: str
    event: str
    kind: str
    device_id: str | None = None
    dev_eui: str | None = None
    application_id: str | None = None
    network_scope: str | None = None
    time: datetime | None = None
    f_port: int | None = None
    payload: bytes | None = None
    correlation_ids: tuple[str, ...] = ()
    queue_item_id: str | None = None
    # What tells this message from every other of its kind and collar, as the network documents it
    # (`message_identity`): the same in a retry, a redelivery, or the other integration's copy.
    identity: str | None = None
    # When identity is the message's content alone (a TTS body whose field mask left out `received_at`
    # and `correlation_ids`): an equal body is a copy only within this span of the first one, the
    # longest a network retries a call; later, it is a message of its own (a collar's second join).
    copies_within: timedelta | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    battery_pct: float | None = None
    margin_db: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def canonical_event(network: str, event: str | None) -> str | None:
    """The network's own name of a message kind from a topic level, webhook path or query value."""
    if event is None:
        return None
    if event in (_TTS_NAMES if network == SOURCE_TTS else _CHIRPSTACK_NAMES):
        return event  # a name as the writer journals it (`event_name_of`): what the steps below give back
    # Control characters escaped (a %00 in a path or ?event= is text "\\x00": PostgreSQL text holds no NUL).
    name = escaped_text(event.strip().strip("/").lower().replace("/", "_").replace("-", "_"), 64)
    if not name:
        return None
    if network == SOURCE_TTS:
        return TTS_EVENT_ALIASES.get(name, name)[:32]
    return name[:32]


def _names_kept(network: str, names: tuple[str, ...]) -> frozenset[str]:
    """The names canonical_event gives back as they are on network, judged by its own steps (while the
    sets below are still empty)."""
    return frozenset(name for name in names if canonical_event(network, name) == name)


# Every body the applier reads comes with the name the writer journalled (`event_name_of`: a TTS message
# key, a ChirpStack event): each such name is taken as it is, not cleaned again (ten calls an uplink).
_TTS_NAMES: frozenset[str] = frozenset()
_CHIRPSTACK_NAMES: frozenset[str] = frozenset()
_TTS_NAMES, _CHIRPSTACK_NAMES = (_names_kept(SOURCE_TTS, (*TTS_MESSAGE_KEYS, *TTS_EVENT_ALIASES.values())),
                                 _names_kept(SOURCE_CHIRPSTACK, CHIRPSTACK_EVENTS))


def chirpstack_event_of(body: bytes) -> str:
    """The ChirpStack event a JSON body is, read from its fields (`CHIRPSTACK_EVENT_FIELDS`) when
    nothing else names it; "up" (the HTTP integration's default) when none says."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "up"
    if isinstance(document, dict):
        for event, fields in CHIRPSTACK_EVENT_FIELDS:
            if any(name in document for name in fields):
                return event
    return "up"


def is_protobuf(content_type: str | None) -> bool:
    """True when the Content-Type says binary Protobuf."""
    if content_type == "application/json":  # what nearly every body says, judged without splitting it
        return False
    return (content_type or "").split(";")[0].strip().lower() in PROTOBUF_CONTENT_TYPES


def read_network_message(
    network: str,
    event: str | None,
    body: bytes,
    *,
    content_type: str | None = "application/json",
    path_ids: dict[str, str] | None = None,
) -> Uplink | NetworkEvent:
    """An Uplink or a NetworkEvent from body; MalformedUplink when a known kind is broken."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    if body[:1] != b"{" and not body.strip():  # (a body that opens an object is not empty: no strip to ask)
        # No message kind of either network is empty. An empty binary Protobuf would otherwise read as
        # an uplink with every field zero (FCnt 0: a false frame-counter reset) once an MQTT topic names
        # the collar; an empty MQTT publish is what clears a retained message.
        raise MalformedUplink("body is empty")
    reader = _read_tts if network == SOURCE_TTS else _read_chirpstack
    try:
        return reader(event, body, content_type, path_ids)
    except MalformedUplink as error:
        if len(body) >= MAX_BODY_BYTES:
            raise MalformedUplink(
                f"body too large: at least {len(body)} bytes, more than a network server's message "
                f"({error})"[:300]
            ) from error
        raise


# The TTS body event_name_of parsed last in this thread, and its document: the reader that usually
# follows at once for the same body (the durable intake's writer) takes it instead of parsing again.
class _JustParsed(threading.local):
    last: tuple[bytes, dict[str, Any]] | None = None  # every thread's until it parses (no getattr to ask)


_just_parsed = _JustParsed()


def event_name_of(network: str, event: str | None, body: bytes) -> str:
    """The network's name of body's kind as stored beside the raw body (before it is read)."""
    named = canonical_event(network, event) if event is not None else None
    if network == SOURCE_TTS:
        _just_parsed.last = None
        try:
            document = load_json_object(body)
        except MalformedUplink:
            return named or "unknown"
        _just_parsed.last = (body, document)
        if "uplink_message" in document:  # the first message key, and nearly every body's: asked at once
            return "uplink_message"
        keys = [key for key in TTS_MESSAGE_KEYS if key in document]
        return keys[0] if keys else (named or "unknown")
    return named or "up"


def parsed_just_now(body: bytes) -> dict[str, Any] | None:
    """The JSON object event_name_of parsed last in this thread, if it parsed this very body (else None);
    left for the reader that follows (`lora_bridge.uplink_heard` only looks, it changes nothing)."""
    last = _just_parsed.last
    return last[1] if last is not None and last[0] is body else None


def _tts_document(body: bytes) -> dict[str, Any]:
    """body's JSON object: the one event_name_of just parsed from this very body, else parsed now."""
    last = _just_parsed.last
    _just_parsed.last = None  # taken once: no two readers share a document
    if last is not None and last[0] is body:
        return last[1]
    return load_json_object(body)


@dataclass(frozen=True)
class CollarNamed:
    """The collar a body names, for a log line about the body: its device id (a label), its DevEUI,
    and the frame counter of an uplink (None for every other kind, and where a body names none)."""

    device_id: str | None = None
    dev_eui: str | None = None
    f_cnt: int | None = None


def collar_named(
    network: str,
    event: str | None,
    body: bytes,
    *,
    content_type: str | None = "application/json",
    path_ids: dict[str, Any] | None = None,
) -> CollarNamed:
    """The collar body names, whatever becomes of it: as read (`read_network_message`), else (a body
    that does not read, a kind the bridge does not read, a reader's bug) what its topic or path ids
    and its JSON's ids say (TTS `end_device_ids`, ChirpStack `deviceInfo`), read tolerantly: labels
    escaped, a DevEUI only as 16 hex digits, a frame counter only an uplink's and only within
    0..MAX_F_CNT (a value in its place stays out of the log). Never raises: naming the collar must
    never stop the body being kept. Until 6 December the dead letter of a `location_solved` or a join
    that did not read was logged "device_id=None" though its topic and its ids named the collar."""
    try:
        message = read_network_message(network, event, body, content_type=content_type, path_ids=path_ids)
    except Exception:  # noqa: BLE001 - a body that does not read (or a reader's bug) still names its collar
        message = None
    if isinstance(message, Uplink):
        return CollarNamed(message.device_id, message.dev_eui, message.f_cnt)
    if isinstance(message, NetworkEvent) and message.device_id:
        f_cnt = message.detail.get("f_cnt") if message.kind == KIND_SIMULATED else None
        return CollarNamed(message.device_id, message.dev_eui, f_cnt)
    return _collar_named_tolerantly(network, event, body, content_type, path_ids or {})


def _collar_named_tolerantly(
    network: str, event: str | None, body: bytes, content_type: str | None, path_ids: dict[str, Any]
) -> CollarNamed:
    """`collar_named` of a body the readers refused: its path ids and JSON ids, each taken only if it reads."""
    document: dict[str, Any] = {}
    if not is_protobuf(content_type):
        try:
            document = load_json_object(body)
        except (MalformedUplink, ValueError):
            pass
    if network == SOURCE_TTS:
        ids = dig(document, "end_device_ids")
        device_id, dev_eui = label(ids.get("device_id")), _eui_or_none(ids.get("dev_eui"))
        uplink = next((document[key] for key in TTS_MESSAGE_KEYS
                       if TTS_MESSAGE_KEYS[key] == KIND_UPLINK and isinstance(document.get(key), dict)), {})
        f_cnt = int_within(uplink.get("f_cnt"), 0, MAX_F_CNT)
    else:
        info = dig(document, "deviceInfo")
        device_id, dev_eui = label(info.get("deviceName")), _eui_or_none(info.get("devEui"))
        is_up = (canonical_event(SOURCE_CHIRPSTACK, event) or "up") == "up"
        f_cnt = int_within(document.get("fCnt"), 0, MAX_F_CNT) if is_up else None
    dev_eui = dev_eui or _eui_or_none(path_ids.get("dev_eui"))
    device_id = device_id or label(path_ids.get("device_id")) or dev_eui
    return CollarNamed(device_id, dev_eui, f_cnt)


def _eui_or_none(value: Any) -> str | None:
    """A DevEUI as 16 upper-case hex digits (`eui_or_none`), None for anything else."""
    try:
        return eui_or_none(value, "dev_eui")
    except MalformedUplink:
        return None


# ---- The Things Stack ---------------------------------------------------------------------------


def _read_tts(
    event: str | None, body: bytes, content_type: str | None, path_ids: dict[str, str] | None
) -> Uplink | NetworkEvent:
    named = event if event is None or event in _TTS_NAMES else canonical_event(SOURCE_TTS, event)
    if content_type != "application/json" and is_protobuf(content_type):
        return _unknown(SOURCE_TTS, named or "unknown", {"reason": "TTS Protobuf webhook format is not read; use JSON"})
    last = _just_parsed.last  # `_tts_document`, without its call
    _just_parsed.last = None
    document = last[1] if last is not None and last[0] is body else load_json_object(body)
    # the first message key holding an object (an uplink's is the first looked at: asked at once)
    key: str | None = "uplink_message"
    if "uplink_message" not in document or type(document["uplink_message"]) is not dict:
        key = next((key for key in TTS_MESSAGE_KEYS if isinstance(document.get(key), dict)), None)
    message: dict[str, Any] = document[key] if key is not None else {}
    if key is None:
        if named in TTS_MESSAGE_KEYS and named not in document:
            if TTS_MESSAGE_KEYS[named] == KIND_UPLINK:
                raise MalformedUplink(f"not a TTS uplink: no {named} object")
            # A webhook's field mask returns the ids and leaves out what it does not name, the message
            # object too (docs: api/concepts/fieldmasks): the webhook path or topic names the kind.
            key = named
        else:
            detail: dict[str, Any] = {"keys": sorted(str(k) for k in document)[:20]}
            broken = [name for name in TTS_MESSAGE_KEYS if name in document]
            if broken:  # a message key whose value is no object: say so, not that the kind is unknown
                value = document[broken[0]]
                detail["reason"] = f"its {broken[0]} is {'null' if value is None else type(value).__name__}, not an object"
            return _unknown(SOURCE_TTS, named or "unknown", detail)
    kind = TTS_MESSAGE_KEYS[key]
    if kind == KIND_UPLINK:
        uplink = tts_uplink_from(document, message, path_ids)
        return _simulated(key, uplink, document) if "simulated" in document and document["simulated"] is True \
            else uplink
    device_id, dev_eui, application_id = tts_identity(document, path_ids)
    common = {
        "network": SOURCE_TTS,
        "event": key,
        "kind": kind,
        "device_id": device_id,
        "dev_eui": dev_eui,
        "application_id": application_id,
        "network_scope": tts_network_scope(message, path_ids),
        "time": time_or_none(message.get("received_at")) or time_or_none(document.get("received_at")),
        **_tts_message_identity(document),
    }
    if kind == KIND_JOIN:
        session_key_id = _text(message.get("session_key_id"))
        if session_key_id:  # one per join (the Join Server's id of the session it derived): the same in a
            # field-masked webhook body and the whole MQTT copy, whose received_at the mask may leave out
            common.update(identity=f"session_key_id={session_key_id}", copies_within=None)
        return NetworkEvent(**common, detail={"session_key_id": session_key_id})
    if kind in DOWNLINK_REPORTS:
        return _tts_downlink_report(common, kind, message)
    if kind == KIND_LOCATION:
        where = dig(message, "location")
        return NetworkEvent(
            **common,
            lat=_latitude(where.get("latitude")),
            lon=_longitude(where.get("longitude")),
            accuracy_m=number_or_none(where.get("accuracy")),
            detail={"service": _text(message.get("service")), "source": _text(where.get("source")),
                    "altitude_m": number_or_none(where.get("altitude"))},
        )
    return NetworkEvent(**common, detail={"service": _text(message.get("service")), "data": _small(message.get("data"))})


def _simulated(key: str, uplink: Uplink, document: dict[str, Any]) -> NetworkEvent:
    """An uplink TTS marks `"simulated": true` (Console "Simulate uplink", `ttn-lw-cli simulate`;
    data-formats: "Signals if the message is coming from the Network Server or is simulated"): no
    collar sent it, so it is recorded for the technician who tests the integration, and moves no
    frame counter, position, alert or downlink."""
    return NetworkEvent(
        network=SOURCE_TTS,
        event=key,
        kind=KIND_SIMULATED,
        device_id=uplink.device_id,
        dev_eui=uplink.dev_eui,
        application_id=uplink.application_id,
        network_scope=uplink.network_scope,
        time=uplink.heard_at,
        f_port=uplink.f_port,
        payload=uplink.payload,
        **_tts_message_identity(document),
        detail={"f_cnt": uplink.f_cnt, "f_port": uplink.f_port, "payload_hex": uplink.payload.hex()[:512]},
    )


def _tts_downlink_report(common: dict[str, Any], kind: str, message: dict[str, Any]) -> NetworkEvent:
    if kind == KIND_DOWNLINK_INVALIDATED:
        downlinks = list_of_objects(message.get("downlinks"))
        detail = {"downlinks": len(downlinks), "last_f_cnt_down": int_within(message.get("last_f_cnt_down"), 0, MAX_F_CNT)}
        ids = tuple(c for d in downlinks for c in _strings(d.get("correlation_ids")))
        return NetworkEvent(**_of_downlinks(common, ids), correlation_ids=ids, detail=detail)
    downlink = dig(message, "downlink") if kind == KIND_DOWNLINK_FAILED else message
    common = _of_downlinks(common, _strings(downlink.get("correlation_ids")))
    detail: dict[str, Any] = {"f_cnt_down": int_within(downlink.get("f_cnt"), 0, MAX_F_CNT),
                              "confirmed": bool(downlink.get("confirmed"))}
    if kind == KIND_DOWNLINK_FAILED:
        error = dig(message, "error")
        detail["error"] = {
            "name": _text(error.get("name")),
            "message_format": _text(error.get("message_format")),
            "code": int_or_none(error.get("code")),
        }
    return NetworkEvent(
        **common,
        f_port=int_within(downlink.get("f_port"), 0, MAX_PORT) or 0,
        payload=_bytes(downlink.get("frm_payload")),
        correlation_ids=_strings(downlink.get("correlation_ids")),
        detail=detail,
    )


def _of_downlinks(common: dict[str, Any], correlation_ids: tuple[str, ...]) -> dict[str, Any]:
    """common with the reported downlinks' own correlation ids in its identity: two downlinks queued by
    one push are two reports even should the Application Server date both at the same instant."""
    if not correlation_ids:
        return common
    return {**common, "identity": f"{common['identity']};downlinks={','.join(sorted(correlation_ids))}"}


# ---- ChirpStack ---------------------------------------------------------------------------------


def _read_chirpstack(
    event: str | None, body: bytes, content_type: str | None, path_ids: dict[str, str] | None
) -> Uplink | NetworkEvent:
    name = (event if event in _CHIRPSTACK_NAMES else canonical_event(SOURCE_CHIRPSTACK, event)) or "up"
    if name not in CHIRPSTACK_EVENTS:
        return _unknown(SOURCE_CHIRPSTACK, name, {"reason": f"ChirpStack event {name!r} is not one Tembo reads"})
    if is_protobuf(content_type):
        from lora_bridge.chirpstack_protobuf import has_message, protobuf_event_as_json

        if not has_message(name):
            return _unknown(SOURCE_CHIRPSTACK, name, {"reason": f"no Protobuf message for {name!r} in chirpstack-api"})
        document = protobuf_event_as_json(name, body)
    else:
        document = load_json_object(body)
    if name == "up":
        return chirpstack_uplink_from(document, path_ids)
    device_id, dev_eui, application_id = chirpstack_identity(document, path_ids)
    common = {
        "network": SOURCE_CHIRPSTACK,
        "event": name,
        "device_id": device_id,
        "dev_eui": dev_eui,
        "application_id": application_id,
        "network_scope": chirpstack_network_scope(document),
        "time": time_or_none(document.get("time")),
        "identity": _chirpstack_event_identity(name, document),
    }
    if name == "join":
        return NetworkEvent(**common, kind=KIND_JOIN, detail={"dev_addr": _text(document.get("devAddr"))})
    if name in ("ack", "txack"):
        if name == "txack":
            kind = KIND_DOWNLINK_SENT
        else:
            kind = KIND_DOWNLINK_ACK if document.get("acknowledged") is True else KIND_DOWNLINK_NACK
        return NetworkEvent(
            **common,
            kind=kind,
            queue_item_id=_text(document.get("queueItemId")),
            detail={"f_cnt_down": int_within(document.get("fCntDown"), 0, MAX_F_CNT),
                    "gateway_id": label(document.get("gatewayId"))},
        )
    if name == "status":
        battery = None if document.get("batteryLevelUnavailable") else number_or_none(document.get("batteryLevel"))
        return NetworkEvent(
            **common,
            kind=KIND_STATUS,
            battery_pct=battery if battery is None or 0 <= battery <= 100 else None,
            margin_db=int_within(document.get("margin"), *DEV_STATUS_MARGIN_DB),
            detail={"external_power_source": bool(document.get("externalPowerSource"))},
        )
    if name == "location":
        where = dig(document, "location")
        return NetworkEvent(
            **common,
            kind=KIND_LOCATION,
            lat=_latitude(where.get("latitude")),
            lon=_longitude(where.get("longitude")),
            accuracy_m=number_or_none(where.get("accuracy")),
            detail={"source": _text(where.get("source")), "altitude_m": number_or_none(where.get("altitude"))},
        )
    if name == "log":
        return NetworkEvent(
            **common,
            kind=KIND_LOG,
            detail={
                "level": _enum_name("LogLevel", document.get("level")) or "INFO",
                "code": _enum_name("LogCode", document.get("code")) or "UNKNOWN",
                "description": _text(document.get("description")),
                "context": _small(document.get("context")),
            },
        )
    return NetworkEvent(
        **common,
        kind=KIND_INTEGRATION,
        detail={
            "integration_name": _text(document.get("integrationName")),
            "event_type": _text(document.get("eventType")),
            "object": _small(document.get("object")),
        },
    )


# ---- which message is which ---------------------------------------------------------------------


# The Things Stack tries a webhook call 7 times: at once, then after 4 and 8 minutes and four times
# every 15 minutes, each interval with 15 % jitter (docs: integrations/webhooks/retries): the last
# try comes at most 72 min x 1.15 = 83 min after the first, each taking up to 10 s.
TTS_RETRY_SPAN = timedelta(minutes=90)


def _tts_message_identity(document: dict[str, Any]) -> dict[str, Any]:
    """What tells one TTS message from another of its kind and collar (`identity`, `copies_within`):
    its top-level `received_at`, "the timestamp at which the message has been received by the
    Application Server" (data-formats), set once per message, so the same in a webhook retry and in
    the MQTT copy; else its correlation ids; else its whole content, which tells a retry only for as
    long as TTS retries: a field mask without either (a join of `{}` from a `/join` path) is the same
    for every join of a collar, and the second join had been taken for a retry of the first."""
    received = time_or_none(document.get("received_at"))
    if received is not None:
        return {"identity": f"received_at={received.isoformat()}"}
    correlation = _strings(document.get("correlation_ids"))
    if correlation:
        return {"identity": "correlation_ids=" + ",".join(sorted(correlation))}
    return {"identity": "content=" + _canonical(document), "copies_within": TTS_RETRY_SPAN}


# ChirpStack's own ids of an event (integration.proto): `deduplicationId` of the uplink that caused it
# (join, ack, status, location, integration; shared by every event of that uplink, so the kind is part
# of the key), `downlinkId` of the transmission a txack reports; a log has none.
_CHIRPSTACK_IDS = ("deduplicationId", "downlinkId", "queueItemId", "integrationName", "eventType")
# What one uplink can have more than one of: locations (a GNSS and a TDOA resolver) and integration
# answers; their content tells them apart.
_CHIRPSTACK_CONTENT = {"location": "location", "integration": "object"}


def _chirpstack_event_identity(name: str, document: dict[str, Any]) -> str:
    """What tells one ChirpStack event from another of its kind and collar: its documented ids (with
    a location's or integration answer's content), or for a log (which has none) its time, code and
    description; the same whether it came by MQTT or HTTP, as JSON or Protobuf."""
    ids = {key: str(document[key]) for key in _CHIRPSTACK_IDS if isinstance(document.get(key), str | int)}
    if name in _CHIRPSTACK_CONTENT:
        ids["content"] = _canonical(_numbers_as_floats(document.get(_CHIRPSTACK_CONTENT[name])))
    if not ids.get("deduplicationId") and not ids.get("downlinkId"):
        at = time_or_none(document.get("time"))
        ids.update(time=at.isoformat() if at else _canonical(document.get("time")),
                   code=_enum_name("LogCode", document.get("code")), level=_enum_name("LogLevel", document.get("level")),
                   description=_canonical(document.get("description")), context=_canonical(document.get("context")))
    return _canonical(ids)


def _numbers_as_floats(value: Any) -> Any:
    """value with every number a float of 6 significant digits, as the same message reads whether it
    came as JSON or Protobuf: a Protobuf Struct holds only doubles (25 comes back 25.0), and a float
    field is 32-bit (a location's accuracy 13.7 comes back 13.699999809265137)."""
    if isinstance(value, dict):
        return {key: _numbers_as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(f"{float(value):.6g}")
        except OverflowError:  # an integer no float holds (JSON allows any): kept as its digits
            return str(value)
    return value


def _canonical(value: Any) -> str:
    """value as JSON with sorted keys and no spaces: two writings of one document read the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# ---- helpers ------------------------------------------------------------------------------------


def _unknown(network: str, event: str, detail: dict[str, Any]) -> NetworkEvent:
    return NetworkEvent(network=network, event=event[:32], kind=KIND_UNKNOWN, detail=detail)


def _text(value: Any, limit: int = 200) -> str | None:
    """Text from the network, escaped like a label, cut to limit."""
    return escaped_text(value, limit) if isinstance(value, str) else None


def _enum_name(enum: str, value: Any) -> str | None:
    """A ChirpStack enum value by its name: the Protobuf JSON mapping writes names, and its parsers
    take the integer too (protobuf.dev, proto3 "JSON Mapping": enum). An integer the pinned
    chirpstack-api does not name stays a number, as text."""
    number = whole_number(value)
    if isinstance(number, int) and not isinstance(number, bool):
        from chirpstack_api import integration

        try:
            return str(getattr(integration, enum).Name(number))
        except ValueError:
            return str(number)
    return _text(value, 64)


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(text for text in (_text(item, 120) for item in value[:32]) if text)


def _bytes(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _latitude(value: Any) -> float | None:
    number = number_or_none(value)
    return number if number is not None and -90.0 <= number <= 90.0 else None


def _longitude(value: Any) -> float | None:
    number = number_or_none(value)
    return number if number is not None and -180.0 <= number <= 180.0 else None


def _small(value: Any, budget: int = 2000) -> Any:
    """A JSON value kept for inspection, only if it is small, finite and JSON-safe."""
    import math

    def finite(item: Any) -> bool:
        if isinstance(item, float):
            return math.isfinite(item)
        if isinstance(item, dict):
            return all(finite(v) for v in item.values())
        if isinstance(item, list):
            return all(finite(v) for v in item)
        return True

    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return value if len(text) <= budget and finite(value) else {"truncated": len(text)}
