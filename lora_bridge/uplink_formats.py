"""Network-server uplink JSON (The Things Stack v3, ChirpStack v4) read into one `Uplink` record.

Pure functions: bytes in, `Uplink` out, `MalformedUplink` with a reason a ranger's technician can act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lora_bridge.errors import MalformedUplink
from lora_bridge.store.utc import as_utc

MAX_F_CNT = 2**32 - 1
SOURCE_TTS = "tts"
SOURCE_CHIRPSTACK = "chirpstack"


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
    gateways: tuple[GatewayReception, ...] = field(default_factory=tuple)
    spreading_factor: int | None = None
    airtime_ms: float | None = None

    @property
    def dedup_key(self) -> str:
        """Same device, frame counter and payload: one uplink, however many gateways heard it."""
        digest = hashlib.sha256(self.payload).hexdigest()[:32]
        return f"{self.device_id}:{self.f_cnt}:{self.f_port}:{digest}"

    @property
    def best_rssi_dbm(self) -> float | None:
        """Strongest RSSI among the gateways, or None."""
        values = [g.rssi_dbm for g in self.gateways if g.rssi_dbm is not None]
        return max(values) if values else None

    @property
    def best_snr_db(self) -> float | None:
        """Best SNR among the gateways, or None."""
        values = [g.snr_db for g in self.gateways if g.snr_db is not None]
        return max(values) if values else None


def load_json_object(body: bytes) -> dict[str, Any]:
    """body parsed as a JSON object, or MalformedUplink saying why not."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedUplink(f"body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise MalformedUplink(f"body is JSON {type(document).__name__}, not an object")
    return document


def parse_tts_uplink(body: bytes) -> Uplink:
    """A The Things Stack v3 webhook/MQTT `uplink_message` body as an Uplink."""
    document = load_json_object(body)
    ids = _object(document, "end_device_ids")
    message = document.get("uplink_message")
    if not isinstance(message, dict):
        raise MalformedUplink("not a TTS uplink: no uplink_message object")
    device_id = _text(ids, "device_id")
    application_id = ids.get("application_ids", {}).get("application_id") if isinstance(
        ids.get("application_ids"), dict
    ) else None
    lora = message.get("settings", {}).get("data_rate", {}).get("lora", {}) if isinstance(
        message.get("settings"), dict
    ) else {}
    gateways = tuple(
        GatewayReception(
            gateway_id=str((meta.get("gateway_ids") or {}).get("gateway_id", "?")),
            rssi_dbm=_number_or_none(meta.get("rssi", meta.get("channel_rssi"))),
            snr_db=_number_or_none(meta.get("snr")),
        )
        for meta in message.get("rx_metadata") or []
        if isinstance(meta, dict)
    )
    return Uplink(
        source=SOURCE_TTS,
        device_id=device_id,
        f_port=_port(message, "f_port"),
        f_cnt=_counter(message, "f_cnt"),
        payload=_base64(message, "frm_payload"),
        heard_at=_time_or_none(message.get("received_at") or document.get("received_at")),
        dev_eui=_eui_or_none(ids.get("dev_eui")),
        application_id=application_id if isinstance(application_id, str) else None,
        gateways=gateways,
        spreading_factor=_int_or_none(lora.get("spreading_factor") if isinstance(lora, dict) else None),
        airtime_ms=_duration_ms_or_none(message.get("consumed_airtime")),
    )


def parse_chirpstack_uplink(body: bytes) -> Uplink:
    """A ChirpStack v4 `event/up` JSON body as an Uplink (device_id = deviceName, else devEui)."""
    document = load_json_object(body)
    info = _object(document, "deviceInfo")
    dev_eui = _eui_or_none(info.get("devEui"))
    device_id = info.get("deviceName") or dev_eui
    if not isinstance(device_id, str) or not device_id:
        raise MalformedUplink("not a ChirpStack uplink: deviceInfo has neither deviceName nor devEui")
    tx_lora = (((document.get("txInfo") or {}).get("modulation") or {}).get("lora") or {})
    gateways = tuple(
        GatewayReception(
            gateway_id=str(rx.get("gatewayId", "?")),
            rssi_dbm=_number_or_none(rx.get("rssi")),
            snr_db=_number_or_none(rx.get("snr")),
        )
        for rx in document.get("rxInfo") or []
        if isinstance(rx, dict)
    )
    return Uplink(
        source=SOURCE_CHIRPSTACK,
        device_id=device_id,
        f_port=_port(document, "fPort"),
        f_cnt=_counter(document, "fCnt", default_zero=True),
        payload=_base64(document, "data"),
        heard_at=_time_or_none(document.get("time")),
        dev_eui=dev_eui,
        application_id=info.get("applicationId") if isinstance(info.get("applicationId"), str) else None,
        gateways=gateways,
        spreading_factor=_int_or_none(tx_lora.get("spreadingFactor") if isinstance(tx_lora, dict) else None),
    )


PARSERS = {SOURCE_TTS: parse_tts_uplink, SOURCE_CHIRPSTACK: parse_chirpstack_uplink}


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict):
        raise MalformedUplink(f"missing object {key!r}")
    return value


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedUplink(f"missing text field {key!r}")
    return value


def _port(document: dict[str, Any], key: str) -> int:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
        raise MalformedUplink(f"{key!r} must be an application port 1..255, got {value!r}")
    return value


def _counter(document: dict[str, Any], key: str, default_zero: bool = False) -> int:
    # TTS and ChirpStack leave a zero frame counter out of the JSON.
    value = document.get(key, 0 if default_zero else None)
    if value is None:
        value = 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_F_CNT:
        raise MalformedUplink(f"{key!r} must be a frame counter 0..{MAX_F_CNT}, got {value!r}")
    return value


def _base64(document: dict[str, Any], key: str) -> bytes:
    value = document.get(key)
    if not isinstance(value, str):
        raise MalformedUplink(f"missing base64 field {key!r}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedUplink(f"{key!r} is not base64: {error}") from error


def _time_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    # TTS writes nanoseconds; Python reads at most microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        count = 0
        while count < len(tail) and tail[count].isdigit():
            count += 1
        digits, zone = tail[:count], tail[count:]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _eui_or_none(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.upper()


def _duration_ms_or_none(value: Any) -> float | None:
    # TTS writes durations as "0.061696s".
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return float(value[:-1]) * 1000.0
    except ValueError:
        return None
