"""Decoding with Tembo's one wire format, `collar_firmware.codec`.

The codec is passed in (a module or any object with `decode`, `encode`, `CodecError`, `BEHAVIOURS`),
so a bridge can be started with a newer codec and replay its dead letters through it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """A decoded payload: the codec's dict, or the reason it could not be decoded."""

    fields: dict[str, Any] | None
    reason: str | None = None

    @property
    def message(self) -> str | None:
        """The codec's message name (status, activity, positions, alert, ack, settings, ...)."""
        return None if self.fields is None else str(self.fields.get("message"))


def default_codec() -> ModuleType:
    """Tembo's codec from the collar firmware package."""
    from collar_firmware import codec

    return codec


def decode_payload(codec: Any, f_port: int, payload: bytes) -> Decoded:
    """payload on f_port through the codec; a CodecError (or a codec crash) becomes a reason."""
    codec_error = getattr(codec, "CodecError", ValueError)
    try:
        fields = codec.decode(f_port, bytes(payload))
    except codec_error as error:
        return Decoded(None, f"codec rejected port {f_port} payload {payload.hex()}: {error}")
    except Exception as error:  # a codec bug must not lose the uplink: keep it as a dead letter
        log.exception("codec crashed", extra={"f_port": f_port})
        return Decoded(None, f"codec crashed on port {f_port} payload {payload.hex()}: {error!r}")
    if not isinstance(fields, dict) or "message" not in fields:
        return Decoded(None, f"codec returned {type(fields).__name__} without a message name")
    return Decoded(fields)


# A collar time before this is no time: a real-time clock reset in a brown-out counts from 1970 until
# the next GNSS fix sets it, and a GPS week rollover puts the date 19.6 years back. Believed, such a
# message of now read as ancient history: roles that see alerts and fixes late (a visitor kiosk 72 h
# late) got a poaching alert and the animal's place the minute the collar sent them.
EARLIEST_COLLAR_TIME_S = 1_577_836_800  # 2020-01-01T00:00:00Z, before any Tembo collar


def message_time(fields: dict[str, Any], fallback: datetime) -> datetime:
    """The message's own time (time_s, Unix seconds UTC), or fallback when the collar had none (0, or a
    clock that was never set: before EARLIEST_COLLAR_TIME_S)."""
    time_s = fields.get("time_s")
    if isinstance(time_s, int) and not isinstance(time_s, bool) and time_s >= EARLIEST_COLLAR_TIME_S:
        return datetime.fromtimestamp(time_s, UTC)
    return fallback


def degrees(fields: dict[str, Any], lat_key: str = "lat", lon_key: str = "lon") -> tuple[float, float] | None:
    """(lat, lon) in degrees from a decoded message, or None for no fix (0, 0 or out of range)."""
    lat = fields.get(lat_key)
    lon = fields.get(lon_key)
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None
    lat, lon = float(lat), float(lon)
    if lat == 0.0 and lon == 0.0:
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return lat, lon
