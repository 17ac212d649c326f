"""Decoding with Tembo's one wire format, `collar_firmware.codec`.

The codec is passed in (a module or any object with `decode`, `encode`, `CodecError`, `BEHAVIOURS`),
so a bridge can be started with a newer codec and replay its dead letters through it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from lora_bridge import wire_reader
from lora_bridge.errors import log_failure
from lora_bridge.fuota_answers import decode_answer, fuota_ports, split_answers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """A decoded payload: the codec's dict, or the reason it could not be decoded."""

    fields: dict[str, Any] | None
    reason: str | None = None
    more: tuple[dict[str, Any], ...] = ()  # the answers after the first of a FUOTA uplink that carries several

    @property
    def message(self) -> str | None:
        """The codec's message name (status, activity, positions, alert, ack, settings, ...); an uplink of several
        FUOTA answers is named by its first and how many follow ("frag_session_status_ans+2")."""
        if self.fields is None:
            return None
        first = str(self.fields.get("message"))
        return f"{first}+{len(self.more)}" if self.more else first

    @property
    def answers(self) -> tuple[dict[str, Any], ...]:
        """Every message the payload carried, in order (one, except a FUOTA uplink of several answers)."""
        return () if self.fields is None else (self.fields, *self.more)


def default_codec() -> ModuleType:
    """Tembo's codec from the collar firmware package."""
    from collar_firmware import codec

    return codec


def decode_payload(codec: Any, f_port: int, payload: bytes, frag_version: int = 1) -> Decoded:
    """payload on f_port through the codec; a CodecError (or a codec crash) becomes a reason. An uplink on a
    FUOTA port (TS005 200, TS004 201, TS003 202) may carry several answers one after another
    (`fuota_answers.split_answers`): each is decoded, and one that cannot be makes the whole uplink a reason (a
    dead letter, replayed whole after a codec fix: nothing of it is applied twice). frag_version: the TS004
    package version the collar's fragmentation session speaks (`frag_package.session_version`): its answers on
    port 201 are read in that version's layouts (the codec's versioned rows)."""
    if codec is wire_reader.CODEC and f_port not in wire_reader.FUOTA_PORTS:
        # nearly every uplink: one message, the whole payload, read from the collar codec's table as its decode
        # would (always a dict with its message name)
        try:
            return Decoded(wire_reader.read(f_port, bytes(payload), None, frag_version))
        except wire_reader.CODEC.CodecError as error:
            return Decoded(None, f"codec rejected port {f_port} payload {payload.hex()}: {error}")
        except Exception as error:  # a codec bug must not lose the uplink: keep it as a dead letter
            log_failure(log, error, "codec crashed", context={"f_port": f_port})
            return Decoded(None, f"codec crashed on port {f_port} payload {payload.hex()}: {error!r}")
    codec_error = getattr(codec, "CodecError", ValueError)
    try:
        if f_port in fuota_ports(codec):
            pieces = split_answers(codec, f_port, bytes(payload), frag_version)
            decoded = [decode_answer(codec, f_port, piece, frag_version) for piece in pieces]
        else:  # one message, the whole payload (what split_answers gives), decoded at once: nearly every uplink
            decoded = [decode_answer(codec, f_port, bytes(payload), frag_version)]
    except codec_error as error:
        return Decoded(None, f"codec rejected port {f_port} payload {payload.hex()}: {error}")
    except Exception as error:  # a codec bug must not lose the uplink: keep it as a dead letter
        log_failure(log, error, "codec crashed", context={"f_port": f_port})
        return Decoded(None, f"codec crashed on port {f_port} payload {payload.hex()}: {error!r}")
    for fields in decoded:
        if not isinstance(fields, dict) or "message" not in fields:
            return Decoded(None, f"codec returned {type(fields).__name__} without a message name")
    return Decoded(decoded[0], more=tuple(decoded[1:]))


# A collar time before this is no time: a real-time clock reset in a brown-out counts from 1970 until
# the next GNSS fix sets it, and a GPS week rollover puts the date 19.6 years back. Believed, such a
# message of now read as ancient history: roles that see alerts and fixes late (a visitor kiosk 72 h
# late) got a poaching alert and the animal's place the minute the collar sent them.
EARLIEST_COLLAR_TIME_S = 1_577_836_800  # 2020-01-01T00:00:00Z, before any Tembo collar


# A collar time further ahead of the message's reception than this is no time either. The collar's clock
# is set from its u-blox M8 GNSS (UTC to well under a second at each fix) and between fixes runs on the
# nRF52840's 32.768 kHz crystal (±20 ppm: 1.7 s a day, under a minute in a month without a fix); the
# reception time is the network's (gateways on GPS or NTP, already checked against the bridge's clock).
# A message cannot be sent after it was heard, so beyond two minutes (a month and more of drift, with
# room for the network's own error) the collar's clock is wrong (local time stamped as UTC, a clock set
# from a laptop), not drifting. Believed, a status a day ahead stayed the animal's newest place for that
# day (a later, true fix was "older") and its alerts were dated in the future.
MAX_COLLAR_AHEAD_S = 120
_MAX_COLLAR_AHEAD = timedelta(seconds=MAX_COLLAR_AHEAD_S)


def collar_time(fields: dict[str, Any]) -> datetime | None:
    """The time the collar gave the message (time_s, Unix seconds UTC), believed or not; None when it had
    none (0, or a clock that was never set: before EARLIEST_COLLAR_TIME_S)."""
    time_s = fields.get("time_s")
    if (type(time_s) is int or isinstance(time_s, int) and not isinstance(time_s, bool)) \
            and time_s >= EARLIEST_COLLAR_TIME_S:
        return datetime.fromtimestamp(time_s, UTC)
    return None


def collar_time_ahead(fields: dict[str, Any], heard_at: datetime | None) -> datetime | None:
    """The collar's time of the message when it is more than MAX_COLLAR_AHEAD_S ahead of heard_at (its
    reception), else None (believed, none, or no reception time to judge it by)."""
    claimed = collar_time(fields)
    if claimed is None or heard_at is None or claimed <= heard_at + _MAX_COLLAR_AHEAD:
        return None
    return claimed


def message_time(fields: dict[str, Any], fallback: datetime, *, heard_at: datetime | None = None) -> datetime:
    """The message's own time (time_s, Unix seconds UTC), or fallback when the collar had none (0, or a
    clock that was never set: before EARLIEST_COLLAR_TIME_S). heard_at: the message's reception; a collar
    time more than MAX_COLLAR_AHEAD_S ahead of it is not believed and the message is dated heard_at."""
    claimed = collar_time(fields)  # read once (every uplink's message is dated here, twice)
    if claimed is None:
        return fallback
    if heard_at is not None and claimed > heard_at + _MAX_COLLAR_AHEAD:
        return heard_at  # the collar's clock is ahead of the message's reception: not believed
    return claimed


def dated(fields: dict[str, Any], heard_at: datetime) -> tuple[datetime, datetime | None]:
    """(`message_time` of a message heard at heard_at, its `collar_time_ahead`) with one reading of the
    collar's time: every uplink's message asks both."""
    claimed = collar_time(fields)
    if claimed is None or claimed <= heard_at + _MAX_COLLAR_AHEAD:
        return (heard_at if claimed is None else claimed), None
    return heard_at, claimed  # the collar's clock is ahead of the message's reception: not believed


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
