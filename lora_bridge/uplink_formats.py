"""Network-server uplink JSON (The Things Stack v3, ChirpStack v4) read into one `Uplink` record.

Pure functions: bytes in, `Uplink` out, `MalformedUplink` with a reason a ranger's technician can act on.

What the documentation allows is accepted, whatever it looks like:
- TTS leaves out every field whose value is empty, zero or false (`f_port` 0, `f_cnt` 0, an empty
  `frm_payload`): missing means zero, never "malformed".
- A TTS webhook with a field mask may post only `uplink_message`; the device then comes from the
  webhook's path variables (`path_ids`: application_id, device_id, dev_eui).
- Optional metadata of the wrong type (`settings.data_rate: null`, `rssi: "strong"`, `Infinity`,
  `NaN`) is dropped, never a reason to lose a valid uplink.
Identity: a collar is its DevEUI (16 hex digits, upper case); the TTS device id and the ChirpStack
device name are labels. A device without a DevEUI (a TTS ABP device of LoRaWAN 1.0.x) is its name
within its application and network scope (`network_scope`: the tenant, else the cluster): two such
devices of one name in two applications are two collars. Labels are escaped (control characters as `\\n`, `\\x1b`, ...), so a name
cannot forge a log line, and cut to 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lora_bridge.errors import MalformedUplink
from lora_bridge.store.utc import as_utc

MAX_F_CNT = 2**32 - 1
UINT64_MAX = 2**64 - 1  # a proto3 uint64 (TTS writes it as decimal text: "869525000")
# LoRa spreading factors a radio sends (SF5 and SF6 on the newer Semtech chips, SF7..SF12 on every one).
SPREADING_FACTORS = (5, 12)
MAX_LABEL = 64
SOURCE_TTS = "tts"
SOURCE_CHIRPSTACK = "chirpstack"
# Port 0 carries MAC commands only; the network server consumes them. Such a frame still counts.
MAC_PORT = 0
# Numbers written as text, as the Protobuf JSON mapping allows (at most 20 digits: a uint64).
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_DECIMAL = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")
# The digits of an EUI-64 as the networks write it (either case).
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# The time both networks write (`time_or_none`'s quick way): digits only ASCII ones, as fromisoformat's.
_RFC3339_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
# Labels and DevEUIs already judged, the network's text -> Tembo's (`label`, `eui_or_none`): a herd's
# names repeat in every body. Each holds at most this many (emptied then), far more than a fleet's names.
KNOWN_TEXTS = 65536
_LABELS: dict[str, str] = {}
_EUIS: dict[str, str] = {}
# what label and eui_or_none remember, looked up (never written) by `uplink_heard`
JUDGED_LABELS = _LABELS
JUDGED_EUIS = _EUIS
# json.loads' own decoder (the one it uses when given no options), called directly by load_json_object.
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class GatewayReception:
    """One gateway that heard the uplink."""

    gateway_id: str
    rssi_dbm: float | None = None
    snr_db: float | None = None


@dataclass(frozen=True)
class Uplink:
    """One LoRaWAN uplink, whichever network server delivered it."""

    source: str
    device_id: str
    f_port: int
    f_cnt: int
    payload: bytes
    heard_at: datetime | None
    dev_eui: str | None = None
    application_id: str | None = None
    # The tenant (else the cluster) the network names the application in (`tts_network_scope`,
    # `chirpstack_network_scope`): with the application, the identity of a collar without a DevEUI.
    network_scope: str | None = None
    gateways: tuple[GatewayReception, ...] = field(default_factory=tuple)
    spreading_factor: int | None = None
    airtime_ms: float | None = None
    # No payload came, yet what a payload formatter made of one did (TTS `decoded_payload`): a
    # webhook's field mask left `frm_payload` out. Not an empty frame: the collar's data is missing.
    payload_left_out: bool = False

    @property
    def identity(self) -> str:
        """The collar's identity: its DevEUI, else its name within its network scope and application."""
        return self.dev_eui or f"{self.source}:{self.network_scope or ''}:{self.application_id or ''}/{self.device_id}"

    @property
    def dedup_key(self) -> str:
        """Same device, frame counter and payload: one uplink, however many gateways heard it."""
        digest = hashlib.sha256(self.payload).hexdigest()[:32]
        return f"{self.identity}:{self.f_cnt}:{self.f_port}:{digest}"

    @property
    def best_rssi_dbm(self) -> float | None:
        """Strongest RSSI among the gateways (the first of equals, as max takes it), or None."""
        best = None
        for gateway in self.gateways:  # a loop, not a list and max(): an uplink asks twice, a herd all day
            if gateway.rssi_dbm is not None and (best is None or gateway.rssi_dbm > best):
                best = gateway.rssi_dbm
        return best

    @property
    def best_snr_db(self) -> float | None:
        """Best SNR among the gateways (the first of equals, as max takes it), or None."""
        best = None
        for gateway in self.gateways:
            if gateway.snr_db is not None and (best is None or gateway.snr_db > best):
                best = gateway.snr_db
        return best


def tts_uplink_body(device_id: str, dev_eui: str | None, application_id: str, f_port: int, f_cnt: int,
                    payload: bytes, heard_at: datetime, gateway: str = "gw-1") -> bytes:
    """The body The Things Stack posts for an uplink (`end_device_ids`, `received_at`, `uplink_message`
    with one gateway's metadata): what the bridge's benches and its warm-up feed the pipeline."""
    heard = as_utc(heard_at).isoformat().replace("+00:00", "Z")
    ids: dict[str, Any] = {"device_id": device_id, "application_ids": {"application_id": application_id}}
    if dev_eui:
        ids["dev_eui"] = dev_eui
    return json.dumps({
        "end_device_ids": ids,
        "received_at": heard,
        "uplink_message": {"f_port": f_port, "f_cnt": f_cnt, "frm_payload": base64.b64encode(payload).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": gateway}, "rssi": -110, "snr": 2.0}],
                           "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9}}},
                           "received_at": heard},
    }).encode()


def load_json_object(body: bytes) -> dict[str, Any]:
    """body parsed as a JSON object, or MalformedUplink saying why not."""
    document = quick_json_object(body)
    return document if document is not None else any_json_object(body)


def quick_json_object(body: bytes) -> dict[str, Any] | None:
    """body parsed as json.loads parses what a network server posts (UTF-8 text of an object, nothing after
    it), or None for anything else, which `any_json_object` then reads or refuses as it always did."""
    if body[:1] == b"{" and body[1:2] != b"\x00":
        # what json.loads makes of it, without its detection of the encoding (no BOM and no NUL among the
        # first two bytes: UTF-8) and its walk over leading white space (none): the decoder's own scanner
        # called as its raw_decode calls it (StopIteration: no value there), not ten calls
        try:
            text = body.decode("utf-8", "surrogatepass")  # as json.loads decodes it
            document, end = _DECODER.scan_once(text, 0)
            if end == len(text):  # the object, then nothing (white space after it: json.loads judges)
                return document
        except (StopIteration, ValueError, RecursionError):
            pass  # json.loads raises it again, and it is told as it always was
    return None


def any_json_object(body: bytes) -> dict[str, Any]:
    """load_json_object's general reader: `json.loads` (any encoding it detects), its refusals told."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedUplink(f"body is not JSON: {error}") from error
    except ValueError as error:  # a number of more digits than Python turns into an int (4300 by default)
        raise MalformedUplink(f"body is not JSON Tembo reads: a number of more than {sys.get_int_max_str_digits()} "
                              "digits, which no network server writes") from error
    except RecursionError as error:
        raise MalformedUplink("body is not JSON: nested too deeply") from error
    if not isinstance(document, dict):
        raise MalformedUplink(f"body is JSON {type(document).__name__}, not an object")
    return document


def parse_tts_uplink(body: bytes, path_ids: dict[str, str] | None = None) -> Uplink:
    """A The Things Stack v3 webhook/MQTT `uplink_message` body as an Uplink."""
    document = load_json_object(body)
    message = document.get("uplink_message")
    if not isinstance(message, dict):
        raise MalformedUplink("not a TTS uplink: no uplink_message object")
    return tts_uplink_from(document, message, path_ids)


def tts_uplink_from(
    document: dict[str, Any], message: dict[str, Any], path_ids: dict[str, str] | None = None
) -> Uplink:
    """The Uplink of a TTS message object (`uplink_message` or `uplink_normalized`) in document.

    Every field is read by subscript where the usual body has it, the tolerant reader taken only where it
    does not (a missing level, a value of another type): each reader is a call, and an uplink has a dozen
    fields (docs/bridge-scale.md, 7 December)."""
    device_id, dev_eui, application_id = tts_identity(document, path_ids)
    try:
        lora = message["settings"]["data_rate"]["lora"]
    except (KeyError, TypeError):  # a level missing, or not an object (only an object takes a text key)
        lora = None
    if type(lora) is not dict:
        lora = {}
    spreading_factor = lora["spreading_factor"] if "spreading_factor" in lora else None
    if type(spreading_factor) is not int or not SPREADING_FACTORS[0] <= spreading_factor <= SPREADING_FACTORS[1]:
        spreading_factor = int_within(spreading_factor, *SPREADING_FACTORS)
    payload = _base64(message, "frm_payload")  # judged before the port and the counter, as it always was
    f_port = message["f_port"] if "f_port" in message else MAC_PORT
    if type(f_port) is not int or not 0 <= f_port <= 255:
        f_port = _port(message, "f_port")
    f_cnt = message["f_cnt"] if "f_cnt" in message else 0
    if type(f_cnt) is not int or not 0 <= f_cnt <= MAX_F_CNT:
        f_cnt = _counter(message, "f_cnt")
    heard_at = time_or_none(message["received_at"]) if "received_at" in message else None
    if heard_at is None and "received_at" in document:
        heard_at = time_or_none(document["received_at"])
    return Uplink(
        source=SOURCE_TTS,
        device_id=device_id,
        f_port=f_port,
        f_cnt=f_cnt,
        payload=payload,
        payload_left_out=not payload and bool(message.get("decoded_payload") or message.get("normalized_payload")),
        heard_at=heard_at,
        dev_eui=dev_eui,
        application_id=application_id,
        network_scope=tts_network_scope(message, path_ids) if "network_ids" in message or path_ids else None,
        gateways=_tts_gateways(message["rx_metadata"]) if "rx_metadata" in message else (),
        spreading_factor=spreading_factor,
        airtime_ms=_duration_ms_or_none(message["consumed_airtime"]) if "consumed_airtime" in message else None,
    )


# The gateway id The Things Stack gives every reception that came through Packet Broker from another network's
# gateway (its rx_metadata names the forwarder's own gateway under `packet_broker`)
PACKET_BROKER = "packetbroker"


def _forwarder_gateway(packet_broker: Any) -> str:
    """The gateway of a Packet Broker reception as its forwarder names it ("packetbroker/{forwarder_net_id}/{its
    gateway id or EUI}"): each such gateway once in a raw row, not all of them one gateway "packetbroker"."""
    if type(packet_broker) is not dict:
        return PACKET_BROKER
    gateway = label(packet_broker.get("forwarder_gateway_id")) or label(packet_broker.get("forwarder_gateway_eui"))
    if not gateway:
        return PACKET_BROKER
    return label(f"{PACKET_BROKER}/{label(packet_broker.get('forwarder_net_id')) or '?'}/{gateway}") or PACKET_BROKER


def _tts_gateways(rx_metadata: Any) -> tuple[GatewayReception, ...]:
    """The gateways of a TTS `rx_metadata` list (anything but objects in it, and anything but a list: none);
    a gateway without its id is "?", an RSSI is `rssi`, else `channel_rssi`."""
    if type(rx_metadata) is not list and not isinstance(rx_metadata, list):
        return ()
    gateways = []
    for meta in rx_metadata:  # a loop, not a generator or a comprehension: each of those is a call of its own
        if type(meta) is not dict and not isinstance(meta, dict):
            continue
        try:
            gateway_id = meta["gateway_ids"]["gateway_id"]
        except (KeyError, TypeError):
            gateway_id = label(dig(meta, "gateway_ids").get("gateway_id")) or "?"
        else:
            try:  # a name label judged before, taken from what it remembers without its call
                gateway_id = (_LABELS[gateway_id] if type(gateway_id) is str else label(gateway_id)) or "?"
            except KeyError:  # not judged yet (or just forgotten, `_remember`): judged now
                gateway_id = label(gateway_id) or "?"
        if gateway_id == PACKET_BROKER and "packet_broker" in meta:
            gateway_id = _forwarder_gateway(meta["packet_broker"])
        rssi = meta["rssi"] if "rssi" in meta else meta.get("channel_rssi")
        snr = meta["snr"] if "snr" in meta else None
        # number_or_none's own first judgements (an RSSI an int of dBm, an SNR a float), made here without the call
        rssi_dbm = (float(rssi) if type(rssi) is int and -_FINITE_INT < rssi < _FINITE_INT
                    else rssi if type(rssi) is float and -_INFINITY < rssi < _INFINITY else number_or_none(rssi))
        snr_db = snr if type(snr) is float and -_INFINITY < snr < _INFINITY else number_or_none(snr)
        gateways.append(GatewayReception(gateway_id=gateway_id, rssi_dbm=rssi_dbm, snr_db=snr_db))
    return tuple(gateways)


def tts_identity(document: dict[str, Any], path_ids: dict[str, str] | None) -> tuple[str, str | None, str | None]:
    """(device label, DevEUI, application id) from end_device_ids, else the webhook's path ids."""
    ids = document["end_device_ids"] if "end_device_ids" in document else None
    if type(ids) is not dict:
        ids = ids if isinstance(ids, dict) else {}
    path = path_ids or {}
    # a DevEUI and labels already judged are taken from what eui_or_none and label remember, without their
    # calls; a KeyError is one not judged yet (or just forgotten, `_remember`), judged now
    dev_eui = ids["dev_eui"] if "dev_eui" in ids else None
    if dev_eui is not None:
        try:
            dev_eui = _EUIS[dev_eui] if type(dev_eui) is str else eui_or_none(dev_eui, "dev_eui")
        except KeyError:
            dev_eui = eui_or_none(dev_eui, "dev_eui")
    if dev_eui is None:
        dev_eui = eui_or_none(path.get("dev_eui"), "dev_eui")
    if dev_eui is None and not ids and _is_eui(path.get("device_id")):
        # A webhook whose base URL names the device by `{{devEUI}}` (a documented path variable): a
        # field-masked body carries no ids, and the path's EUI is the collar (it had become a second
        # collar filed under its DevEUI as a name).
        dev_eui = str(path["device_id"]).upper()
    device_id = ids["device_id"] if "device_id" in ids else None
    if device_id is not None:
        try:
            device_id = _LABELS[device_id] if type(device_id) is str else label(device_id)
        except KeyError:
            device_id = label(device_id)
    if not device_id:
        device_id = label(path.get("device_id")) or dev_eui
    elif "device_id" in path:
        _check_same_device(device_id, dev_eui, path["device_id"])
    if not device_id:
        raise MalformedUplink("missing text field 'device_id' (no end_device_ids and no device in the webhook path)")
    try:
        application_id = ids["application_ids"]["application_id"]
    except (KeyError, TypeError):  # missing, or application_ids not an object: as `dig` reads it
        application_id = None
    else:
        try:
            application_id = _LABELS[application_id] if type(application_id) is str else label(application_id)
        except KeyError:
            application_id = label(application_id)
    if not application_id:
        application_id = label(path.get("application_id"))
    return device_id, dev_eui, application_id


def _check_same_device(device_id: str, dev_eui: str | None, named: Any) -> None:
    """`check_topic_collar` for The Things Stack, which publishes a collar's messages under its device id
    (integrations/mqtt): the topic's (or webhook path's) device, named, against the body's `end_device_ids`
    (its device_id, or its DevEUI for a path that names it by `{{devEUI}}`; an EUI in the path of a body
    without a DevEUI passes)."""
    path_device = label(named)
    if path_device == device_id or (str(named).upper() == dev_eui if dev_eui is not None else _is_eui(named)):
        return  # the same label, or the path names the collar by its DevEUI (or by an EUI nothing gainsays)
    check_topic_collar(path_device, device_id, "device", "end_device_ids.device_id", where="topic (or webhook path)")


def check_topic_collar(topic_collar: str | None, body_collar: str | None, named_as: str, body_field: str,
                       where: str = "topic") -> None:
    """Raise MalformedUplink when the MQTT topic (or a webhook's path) names a collar, topic_collar, other
    than the body's, body_collar (named_as: what names it, a device or a DevEUI; body_field: where the body
    names it); either one None or empty passes. Both networks publish a collar's messages under its own
    topic (The Things Stack under its device id, ChirpStack under its DevEUI), and the broker's ACL vouches
    for who may publish there: a body naming another collar is no message of the network's, taken for
    neither collar (until 7 December it was filed, silently, under the body's)."""
    if topic_collar and body_collar and topic_collar != body_collar:
        raise MalformedUplink(f"the {where} names {named_as} {topic_collar!r} but the body's {body_field} is "
                              f"{body_collar!r}: taken for neither")


def tts_network_scope(message: dict[str, Any], path_ids: dict[str, str] | None) -> str | None:
    """The TTS tenant an application belongs to (an application id is unique only within its tenant):
    an uplink's `network_ids.tenant_id` (API reference, ApplicationUplink.network_ids), else the
    MQTT topic's `{application}@{tenant}` (integrations/mqtt); on a deployment without tenants (Open
    Source), the cluster that names it, `network_ids.cluster_address` or `cluster_id`; None when
    neither says (a field-masked webhook body, a join)."""
    network = dig(message, "network_ids")
    if not network:  # a webhook's body without them (the usual one): the topic's tenant, if any
        return label(path_ids.get("tenant_id")) if path_ids else None
    return (label(network.get("tenant_id")) or label((path_ids or {}).get("tenant_id"))
            or label(network.get("cluster_address")) or label(network.get("cluster_id")))


def parse_chirpstack_uplink(body: bytes, path_ids: dict[str, str] | None = None) -> Uplink:
    """A ChirpStack v4 `event/up` JSON body as an Uplink (the DevEUI is the collar; the name a label)."""
    return chirpstack_uplink_from(load_json_object(body), path_ids)


def chirpstack_uplink_from(document: dict[str, Any], path_ids: dict[str, str] | None = None) -> Uplink:
    """The Uplink of a ChirpStack v4 UplinkEvent as a JSON object (JSON or Protobuf turned JSON)."""
    device_id, dev_eui, application_id = chirpstack_identity(document, path_ids)
    tx_lora = dig(document, "txInfo", "modulation", "lora")
    gateways = tuple(
        GatewayReception(
            gateway_id=label(rx.get("gatewayId")) or "?",
            rssi_dbm=number_or_none(rx.get("rssi")),
            snr_db=number_or_none(rx.get("snr")),
        )
        for rx in list_of_objects(document.get("rxInfo"))
    )
    return Uplink(
        source=SOURCE_CHIRPSTACK,
        device_id=device_id,
        f_port=_port(document, "fPort"),
        f_cnt=_counter(document, "fCnt"),
        payload=_base64(document, "data"),
        heard_at=time_or_none(document.get("time")),
        dev_eui=dev_eui,
        application_id=application_id,
        network_scope=chirpstack_network_scope(document),
        gateways=gateways,
        spreading_factor=int_within(tx_lora.get("spreadingFactor"), *SPREADING_FACTORS),
    )


def chirpstack_identity(
    document: dict[str, Any], path_ids: dict[str, str] | None
) -> tuple[str, str | None, str | None]:
    """(device label, DevEUI, application id) of a ChirpStack v4 event's deviceInfo (or the MQTT topic)."""
    info = dig(document, "deviceInfo")
    path = path_ids or {}
    body_eui = eui_or_none(info.get("devEui"), "devEui")
    try:
        topic_eui = eui_or_none(path.get("dev_eui"), "devEui")
    except MalformedUplink:
        if not body_eui:
            raise
        topic_eui = None  # a topic level that is no EUI names no collar: the body's
    check_topic_collar(topic_eui, body_eui, "DevEUI", "deviceInfo.devEui")
    dev_eui = body_eui or topic_eui
    device_id = label(info.get("deviceName")) or dev_eui
    if not device_id and not info and ("devEUI" in document or "applicationID" in document):
        raise MalformedUplink(
            "a ChirpStack v3 event (devEUI and applicationID at the top level): Tembo reads ChirpStack v4 "
            "events, whose device is in deviceInfo")
    if not device_id:
        raise MalformedUplink("not a ChirpStack event: deviceInfo has neither deviceName nor devEui")
    application_id = label(info.get("applicationId")) or label(path.get("application_id"))
    return device_id, dev_eui, application_id


def chirpstack_network_scope(document: dict[str, Any]) -> str | None:
    """The ChirpStack tenant of an event's device (`deviceInfo.tenantId`), or None."""
    return label(dig(document, "deviceInfo").get("tenantId"))


PARSERS = {SOURCE_TTS: parse_tts_uplink, SOURCE_CHIRPSTACK: parse_chirpstack_uplink}


# ---- tolerant readers ------------------------------------------------------------------------


def dig(document: Any, *keys: str) -> dict[str, Any]:
    """document[k1][k2]... as a dict, or {} where a level is missing or not an object."""
    value = document
    try:  # of JSON's values only an object has `get`: a level that is none ends the walk
        for key in keys:
            value = value.get(key)
    except AttributeError:
        return {}
    return value if isinstance(value, dict) else {}


def list_of_objects(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def label(value: Any) -> str | None:
    """A name from the network as a safe label: text, control characters escaped, at most 64 chars."""
    if value is None:  # a name the body leaves out (most tenants, clusters): escaped_text's None at once
        return None
    if type(value) is str:
        try:  # a herd's few names come in every body: each is judged once
            return _LABELS[value]
        except KeyError:  # (a lookup, not `in` then a lookup: another thread may empty it between the two)
            pass
        if len(value) <= MAX_LABEL and value.isprintable():
            # the usual label, short text with nothing to escape, is what escaped_text makes of it (its
            # strip keeps it printable and within the limit) without the call: a body has several labels
            made = value.strip() or None
        else:
            made = escaped_text(value, MAX_LABEL)
        if made is not None:
            _remember(_LABELS, value, made)
        return made
    return escaped_text(value, MAX_LABEL)


def _remember(known: dict[str, str], value: str, made: str) -> None:
    """known[value] = made, known emptied first once it holds KNOWN_TEXTS (a bound on its memory)."""
    if len(known) >= KNOWN_TEXTS:
        known.clear()
    known[value] = made


def escaped_text(value: Any, limit: int) -> str | None:
    """Text (or an integer) from the network with control characters escaped, cut to limit chars."""
    if type(value) is not str and (isinstance(value, bool) or not isinstance(value, str | int)):
        return None  # (text, the usual value, is not asked about twice: every label of every body passes here)
    text = str(value)[: limit * 2].strip()
    if not text:
        return None
    if text.isprintable():  # no character of category C (nor a separator but the space): nothing to escape
        return text[:limit]
    return "".join(_escape(ch) for ch in text)[:limit]


def _escape(ch: str) -> str:
    if not unicodedata.category(ch).startswith("C"):
        return ch
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _is_eui(value: Any) -> bool:
    """True for 16 hex digits exactly (an EUI-64 as The Things Stack writes it in paths)."""
    return isinstance(value, str) and len(value) == 16 and _HEX_DIGITS.issuperset(value)


def eui_or_none(value: Any, key: str) -> str | None:
    """A DevEUI as 16 upper-case hex digits; None when absent; MalformedUplink when not an EUI."""
    if type(value) is str:
        try:  # a herd's DevEUIs come in every body: each is judged once
            return _EUIS[value]
        except KeyError:
            pass
        if len(value) == 16 and _HEX_DIGITS.issuperset(value):  # as the networks write it: nothing to strip
            upper = value.upper()
            _remember(_EUIS, value, upper)
            return upper
    if value is None or value == "":
        return None
    text = value.strip().replace("-", "").replace(":", "") if isinstance(value, str) else None
    if text is None or len(text) != 16 or not _HEX_DIGITS.issuperset(text):
        raise MalformedUplink(f"{key!r} must be an EUI-64 of 16 hex digits, got {value!r}"[:200])
    return text.upper()


def time_or_none(value: Any) -> datetime | None:
    """An RFC 3339 time (nanoseconds allowed) as aware UTC; None when absent or not a time."""
    if type(value) is str and _RFC3339_UTC.fullmatch(value) is not None:
        # The shape both networks write (the Protobuf JSON mapping of a Timestamp: UTC, "Z", 0 to 9
        # digits of fraction), read by position; the microseconds cut, as below, not rounded
        try:
            return datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                            int(value[14:16]), int(value[17:19]), int((value[20:-1] + "000000")[:6]), tzinfo=UTC)
        except ValueError:  # no such day or hour (a 30 February, a 60th second): judged as any other
            pass
    return any_time(value)


def any_time(value: Any) -> datetime | None:
    """time_or_none's general reader: any RFC 3339 / ISO 8601 text (offsets, nanoseconds, white space)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # TTS writes nanoseconds; Python reads at most microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        count = 0
        while count < len(tail) and tail[count].isdigit():
            count += 1
        digits, zone = tail[:count], tail[count:]
        text = f"{head}.{digits[:6]}{zone}" if digits else f"{head}{zone}"
    try:
        return as_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None


_FINITE_INT = 2**1023  # an int of less magnitude is a finite float (2**1024 overflows float())
_INFINITY = math.inf  # a float strictly between -_INFINITY and _INFINITY is finite (NaN is between nothing)


def number_or_none(value: Any) -> float | None:
    """A finite number, or None (Infinity, NaN, other text, null and booleans are dropped).

    Decimal text ("-35", "7.5") is a number: the Protobuf JSON mapping, which both networks' JSON
    follows, lets a writer send any number as a string (protobuf.dev/programming-guides/proto3/#json)."""
    if type(value) is float:  # the usual value (an SNR), judged at once: every gateway of every body has two
        return value if -_INFINITY < value < _INFINITY else None
    if type(value) is int and -_FINITE_INT < value < _FINITE_INT:  # the other usual one (an RSSI in dBm)
        return float(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _port(document: dict[str, Any], key: str) -> int:
    # Absent means 0 (TTS omits zero fields): a MAC-only frame.
    value = whole_number(document.get(key, MAC_PORT))
    if value is None:
        value = MAC_PORT
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)) or not 0 <= value <= 255:
        raise MalformedUplink(f"{key!r} must be a port 0..255, got {value!r}"[:200])
    return value


def _counter(document: dict[str, Any], key: str) -> int:
    # TTS and ChirpStack leave a zero frame counter out of the JSON.
    value = whole_number(document.get(key, 0))
    if value is None:
        value = 0
    if (type(value) is not int and (isinstance(value, bool) or not isinstance(value, int))
            or not 0 <= value <= MAX_F_CNT):
        raise MalformedUplink(f"{key!r} must be a frame counter 0..{MAX_F_CNT}, got {value!r}"[:200])
    return value


def _base64(document: dict[str, Any], key: str) -> bytes:
    value = document[key] if key in document else None
    if value is None or value == "":
        return b""  # an empty payload is left out
    if type(value) is not str and not isinstance(value, str):
        raise MalformedUplink(f"{key!r} must be base64 text, got {type(value).__name__}")
    try:
        # what base64.b64decode(value, validate=True) does, without its two calls around this one: text
        # other than ASCII is refused with the same ValueError
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedUplink(f"{key!r} is not base64: {error}") from error


def int_or_none(value: Any) -> int | None:
    """An integer field (a number, or decimal text as the Protobuf JSON mapping allows); else None."""
    value = whole_number(value)
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        return None
    return value


def int_within(value: Any, low: int, high: int) -> int | None:
    """An optional integer field within low..high (`int_or_none`); None outside it: a value no radio
    sends (a spreading factor of 2**40) is dropped like a wrong-typed one, rather than refused by the
    store's integer column and costing the message it came with."""
    number = int_or_none(value)
    return number if number is not None and low <= number <= high else None


def whole_number(value: Any) -> Any:
    """An integer field as the Protobuf JSON mapping allows it: a number, decimal text ("1") or a float
    without a fraction (1.0) is the int, and so is number text of a whole value ("1e5", "7.0": the protobuf
    conformance suite's required Int32FieldQuotedExponentialValue); anything else ("7.5") is returned as it
    came, for the caller to judge."""
    if type(value) is int:  # the usual value, as it came: each body has several
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        exact = Decimal(value)  # not float: "9007199254740993.0" is that integer, not its float neighbour
        if exact == exact.to_integral_value() and abs(exact) < 2**64:
            return int(exact)
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _duration_ms_or_none(value: Any) -> float | None:
    # TTS writes durations as "0.061696s".
    if not isinstance(value, str) or not value.endswith("s") or len(value) > 32:
        return None
    try:
        milliseconds = float(value[:-1]) * 1000.0
    except ValueError:
        return None
    return milliseconds if math.isfinite(milliseconds) else None
