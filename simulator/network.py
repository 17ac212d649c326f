"""The LoRaWAN network of Tembo's digital twin: gateways, path loss, loss, duplicates, and the JSON a
network server hands to the bridge (The Things Stack v3 uplink messages, ChirpStack v4 `event/up`).

Radio model: log-distance path loss with log-normal shadowing from the collar to every gateway in range;
a gateway hears the frame when its SNR clears the demodulation floor of the spreading factor, minus a
random loss (interference), pure-ALOHA collisions between collars on one channel and spreading factor
(`collide`, with a 6 dB capture effect), gateway outages and areas without coverage. A collar's
spreading factor is the one ADR settles on from the link margin at its best gateway. The network server deduplicates the copies heard by several
gateways into one message whose rx_metadata lists them all (as TTS and ChirpStack do); now and then a
message is delivered twice (a retried webhook, a second route), which the bridge must store once.
Airtime is the collar's own (collar_firmware.scheduler.airtime_us: Semtech AN1200.13 on the whole PHY
frame, application payload + 13 bytes of LoRaWAN header, port and MIC), so the twin's network charges
exactly what the collar's duty-cycle bookkeeping counts.

Every random draw comes from the Network's own seeded Generator; ids (correlation ids, deduplication
ids, tokens) are derived from the uplink, so the same seed gives byte-identical JSON.
"""

from __future__ import annotations

import base64
import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import shapely
from shapely.geometry import Polygon

from collar_firmware.scheduler import airtime_us
from simulator.geo import distance_m
from simulator.reserve import Gateway, Reserve, demo_reserve

EU868_CHANNELS_HZ = (868_100_000, 868_300_000, 868_500_000, 867_100_000,
                     867_300_000, 867_500_000, 867_700_000, 867_900_000)
# Demodulation floor (dB SNR) per spreading factor, Semtech SX1276/LR1110 datasheets.
SNR_FLOOR_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
EU868_DATA_RATE = {12: 0, 11: 1, 10: 2, 9: 3, 8: 4, 7: 5}  # DR index at 125 kHz
TENANT_ID = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
_NAMESPACE = uuid.UUID("6a1f3e0c-8f2b-4c58-9d7e-7e6b0d1c7a10")  # Tembo's uuid5 namespace for ids


def airtime_s(payload_bytes: int, spreading_factor: int, bandwidth_hz: int = 125_000) -> float:
    """Time on air (s) of a LoRaWAN uplink with this application payload, as the collar counts it."""
    return airtime_us(payload_bytes, spreading_factor, bandwidth_hz // 1000) / 1_000_000


def airtime_text(seconds: float) -> str:
    """Duration as protobuf JSON text, the way TTS writes consumed_airtime ("0.061696s")."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def rfc3339(t_s: float) -> str:
    """UTC timestamp with microseconds and a Z, as network servers write them."""
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PathLossModel:
    """Log-distance path loss at 868 MHz for a collar on an elephant's neck and a gateway on a mast."""

    tx_power_dbm: float = 14.0
    collar_antenna_gain_dbi: float = -2.0
    gateway_antenna_gain_dbi: float = 3.0
    loss_at_1m_db: float = 31.2  # free space at 868 MHz, 1 m
    exponent: float = 2.7
    shadowing_sigma_db: float = 6.0
    noise_figure_db: float = 6.0

    def mean_rssi_dbm(self, distance_m_: float) -> float:
        """Mean received power (dBm) at this distance, before shadowing."""
        loss = self.loss_at_1m_db + 10.0 * self.exponent * math.log10(max(distance_m_, 1.0))
        return self.tx_power_dbm + self.collar_antenna_gain_dbi + self.gateway_antenna_gain_dbi - loss

    def noise_floor_dbm(self, bandwidth_hz: int) -> float:
        """Thermal noise plus the receiver's noise figure in this bandwidth (dBm)."""
        return -174.0 + 10.0 * math.log10(bandwidth_hz) + self.noise_figure_db


@dataclass(frozen=True)
class Uplink:
    """A frame as the collar sent it, with where it was sent from (for the radio path)."""

    device_id: str
    dev_eui: str
    f_port: int
    f_cnt: int
    payload: bytes
    time_s: float
    lat: float
    lon: float
    spreading_factor: int = 9
    bandwidth_hz: int = 125_000
    confirmed: bool = False


@dataclass(frozen=True)
class Reception:
    """One gateway's copy of an uplink."""

    gateway: Gateway
    rssi_dbm: int
    snr_db: float
    distance_m: float
    timestamp_us: int  # the gateway concentrator's free-running microsecond counter
    channel_index: int


@dataclass(frozen=True)
class Delivery:
    """An uplink as the network server passes it on: the frame, who heard it, when, and on what."""

    uplink: Uplink
    receptions: tuple[Reception, ...]
    frequency_hz: int
    airtime_s: float
    received_at_s: float
    copy: int = 0  # 0 = first delivery, 1.. = repeated deliveries of the same frame

    @property
    def best(self) -> Reception:
        """The reception with the best SNR (the gateway the network answers through)."""
        return max(self.receptions, key=lambda r: (r.snr_db, r.rssi_dbm))


class Network:
    """Gateways of a reserve plus the radio physics and the network server's delivery behaviour."""

    def __init__(
        self,
        gateways: Sequence[Gateway] | Reserve | None = None,
        seed: int | np.random.SeedSequence = 0,
        path_loss: PathLossModel | None = None,
        loss_probability: float = 0.02,
        duplicate_probability: float = 0.01,
        application_id: str = "tembo-demo",
        application_name: str = "Tembo demo herd",
        deduplicate: bool = True,
    ) -> None:
        if isinstance(gateways, Reserve):
            gateways = gateways.gateways
        self.gateways = tuple(gateways if gateways is not None else demo_reserve().gateways)
        if not self.gateways:
            raise ValueError("a network needs at least one gateway")
        for name, p in (("loss_probability", loss_probability), ("duplicate_probability", duplicate_probability)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {p}")
        self.rng = np.random.default_rng(seed)
        self.path_loss = path_loss or PathLossModel()
        self.loss_probability = loss_probability
        self.duplicate_probability = duplicate_probability
        self.application_id = application_id
        self.application_name = application_name
        self.deduplicate = deduplicate
        self._counter_offset_us = {
            g.gateway_id: int.from_bytes(hashlib.sha256(g.gateway_id.encode()).digest()[:4], "little")
            for g in self.gateways
        }
        self.outages: list[tuple[str, float, float]] = []  # (gateway_id, start_s, end_s): a mast down
        self.holes: list[tuple[shapely.Geometry, float, float]] = []  # lon/lat areas no gateway hears
        self._on_air: list[tuple[float, float, int, int, str, dict[str, float]]] = []
        self.collisions = 0
        self.lost_in_holes = 0

    def add_outage(self, gateway_id: str, start_s: float, end_s: float) -> None:
        """The gateway hears nothing from start_s to end_s (power cut, backhaul down)."""
        if gateway_id not in {g.gateway_id for g in self.gateways}:
            raise ValueError(f"no gateway {gateway_id!r}; known: {sorted(g.gateway_id for g in self.gateways)}")
        self.outages.append((gateway_id, float(start_s), float(end_s)))

    def add_hole(self, ring_lonlat: Sequence[tuple[float, float]], start_s: float, end_s: float) -> None:
        """No gateway hears a collar inside the polygon ring_lonlat from start_s to end_s (a valley)."""
        area = Polygon(ring_lonlat)
        shapely.prepare(area)
        self.holes.append((area, float(start_s), float(end_s)))

    def _down(self, gateway_id: str, t_s: float) -> bool:
        return any(g == gateway_id and a <= t_s < b for g, a, b in self.outages)

    def _in_hole(self, lon: float, lat: float, t_s: float) -> bool:
        return any(a <= t_s < b and shapely.contains_xy(area, lon, lat) for area, a, b in self.holes)

    def spreading_factor(self, lon: float, lat: float, margin_db: float = 10.0) -> int:
        """The data rate ADR settles on here: the lowest SF whose mean SNR at the best gateway clears the
        SF's demodulation floor by margin_db (LoRaWAN ADR's installation margin), else SF12."""
        model = self.path_loss
        best_dbm = max(model.mean_rssi_dbm(math.hypot(distance_m(lon, lat, g.lon, g.lat), g.altitude_m))
                       for g in self.gateways)
        snr_db = best_dbm - model.noise_floor_dbm(125_000)
        for sf in sorted(SNR_FLOOR_DB):
            if snr_db - SNR_FLOOR_DB[sf] >= margin_db:
                return sf
        return 12

    def collide(self, uplink: Uplink, frequency_hz: int, receptions: Sequence[Reception]) -> list[Reception]:
        """Pure ALOHA: drop the receptions of this frame that overlap in time another frame on the same
        channel and spreading factor at the same gateway, unless this one is 6 dB stronger (capture)."""
        start = uplink.time_s
        end = start + airtime_s(len(uplink.payload), uplink.spreading_factor, uplink.bandwidth_hz)
        self._on_air = [a for a in self._on_air if a[1] > start - 5.0]
        kept = []
        for r in receptions:
            gw = r.gateway.gateway_id
            lost = False
            for a_start, a_end, a_freq, a_sf, a_dev, a_rssi in self._on_air:
                if (a_freq == frequency_hz and a_sf == uplink.spreading_factor and a_dev != uplink.dev_eui
                        and a_start < end and start < a_end and gw in a_rssi and r.rssi_dbm < a_rssi[gw] + 6):
                    lost = True
                    break
            if lost:
                self.collisions += 1
            else:
                kept.append(r)
        self._on_air.append((start, end, frequency_hz, uplink.spreading_factor, uplink.dev_eui,
                             {r.gateway.gateway_id: r.rssi_dbm for r in receptions}))
        return kept

    def __repr__(self) -> str:
        return f"Network({len(self.gateways)} gateways, application_id={self.application_id!r})"

    # --- the radio path ---
    def hear(self, uplink: Uplink) -> tuple[int, list[Reception]]:
        """(frequency_hz, receptions): which gateways heard this frame, with RSSI and SNR."""
        rng, model = self.rng, self.path_loss
        channel_index = int(rng.integers(len(EU868_CHANNELS_HZ)))
        floor_snr = SNR_FLOOR_DB[uplink.spreading_factor]
        noise_dbm = model.noise_floor_dbm(uplink.bandwidth_hz)
        receptions = []
        hidden = bool(self.holes) and self._in_hole(uplink.lon, uplink.lat, uplink.time_s)
        if hidden:
            self.lost_in_holes += 1
        for gw in self.gateways:
            d = math.hypot(distance_m(uplink.lon, uplink.lat, gw.lon, gw.lat), gw.altitude_m)
            shadow_db = float(rng.normal(0.0, model.shadowing_sigma_db))
            lost = rng.random() < self.loss_probability
            if d > gw.range_m or lost or hidden or (self.outages and self._down(gw.gateway_id, uplink.time_s)):
                continue
            signal_dbm = model.mean_rssi_dbm(d) + shadow_db
            snr_db = signal_dbm - noise_dbm
            if snr_db < floor_snr:
                continue
            # A gateway reports total power in the channel: the signal, or the noise floor under it.
            rssi = 10.0 * math.log10(10 ** (signal_dbm / 10.0) + 10 ** (noise_dbm / 10.0))
            counter = (int(uplink.time_s * 1_000_000) + self._counter_offset_us[gw.gateway_id]) % 2**32
            receptions.append(
                Reception(gw, int(round(rssi)), round(snr_db, 1), d, counter, channel_index)
            )
        return EU868_CHANNELS_HZ[channel_index], receptions

    def deliver(self, uplink: Uplink) -> list[Delivery]:
        """What the network server passes on for this frame: [] when no gateway heard it, else 1+ deliveries."""
        frequency_hz, receptions = self.hear(uplink)
        return self.package(uplink, frequency_hz, receptions)

    def package(self, uplink: Uplink, frequency_hz: int, receptions: Sequence[Reception]) -> list[Delivery]:
        """The network server's deliveries for receptions already heard (see `hear`)."""
        if not receptions:
            return []
        air_s = airtime_s(len(uplink.payload), uplink.spreading_factor, uplink.bandwidth_hz)
        backhaul_s = float(self.rng.uniform(0.05, 0.4))
        arrived_s = uplink.time_s + air_s + backhaul_s
        groups = [tuple(receptions)] if self.deduplicate else [(r,) for r in receptions]
        deliveries = [
            Delivery(uplink, group, frequency_hz, air_s, arrived_s + 0.01 * i, copy=i)
            for i, group in enumerate(groups)
        ]
        if self.rng.random() < self.duplicate_probability:
            again_s = arrived_s + float(self.rng.uniform(1.0, 30.0))
            deliveries.append(
                Delivery(uplink, tuple(receptions), frequency_hz, air_s, again_s, copy=len(deliveries))
            )
        return deliveries

    # --- the JSON the bridge receives ---
    def tts_uplink(self, delivery: Delivery) -> dict:
        """The Things Stack v3 uplink message (webhook / MQTT `up` body) for a delivery."""
        return tts_uplink_json(delivery, self.application_id)

    def chirpstack_uplink(self, delivery: Delivery) -> dict:
        """ChirpStack v4 `application/{id}/device/{devEui}/event/up` JSON for a delivery."""
        return chirpstack_uplink_json(delivery, self.application_id, self.application_name)


def omit_empty(value: object) -> object:
    """Drop fields holding a default value (0, 0.0, "", false, empty), as the proto3 JSON mapping of
    TTS and ChirpStack does: the first uplink carries no f_cnt, a 0 dB SNR no snr."""
    if isinstance(value, dict):
        kept = {k: omit_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (0, "", False, None, [], {})}
    if isinstance(value, list):
        return [omit_empty(v) for v in value]
    return value


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def dev_addr_of(dev_eui: str) -> str:
    """A stable device address (8 hex digits, Tembo's demo NetID block) for a DevEUI."""
    return "260B" + _digest("dev_addr", dev_eui.upper()).hex()[:4].upper()


def _ulid_like(*parts: object) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    n = int.from_bytes(_digest(*parts)[:16], "big")
    return "".join(alphabet[(n >> (5 * i)) & 31] for i in range(26))


def tts_uplink_json(delivery: Delivery, application_id: str) -> dict:
    """The Things Stack v3 `uplink_message` JSON (fields as in TTS's data-formats documentation; fields
    at their default value are left out, as TTS does)."""
    up = delivery.uplink
    received_at = rfc3339(delivery.received_at_s)
    tag = (up.dev_eui, up.f_cnt, delivery.copy)
    rx_metadata = []
    for r in delivery.receptions:
        rx_metadata.append(
            {
                "gateway_ids": {"gateway_id": r.gateway.gateway_id, "eui": r.gateway.eui},
                "time": rfc3339(up.time_s),
                "timestamp": r.timestamp_us,
                "rssi": r.rssi_dbm,
                "channel_rssi": r.rssi_dbm,
                "snr": r.snr_db,
                "location": {
                    "latitude": r.gateway.lat,
                    "longitude": r.gateway.lon,
                    "altitude": int(r.gateway.altitude_m),
                    "source": "SOURCE_REGISTRY",
                },
                "uplink_token": base64.b64encode(_digest("token", *tag, r.gateway.gateway_id)[:24]).decode(),
                "channel_index": r.channel_index,
                "received_at": rfc3339(up.time_s + delivery.airtime_s + 0.02),
            }
        )
    message = {
        "end_device_ids": {
            "device_id": up.device_id,
            "application_ids": {"application_id": application_id},
            "dev_eui": up.dev_eui.upper(),
            "join_eui": "70B3D57ED0000000",
            "dev_addr": dev_addr_of(up.dev_eui),
        },
        "correlation_ids": [f"as:up:{_ulid_like('as', *tag)}", f"ns:uplink:{_ulid_like('ns', *tag)}"],
        "received_at": received_at,
        "uplink_message": {
            "session_key_id": base64.b64encode(_digest("session", up.dev_eui)[:16]).decode(),
            "f_port": up.f_port,
            "f_cnt": up.f_cnt,
            "frm_payload": base64.b64encode(up.payload).decode(),
            "rx_metadata": rx_metadata,
            "settings": {
                "data_rate": {
                    "lora": {
                        "bandwidth": up.bandwidth_hz,
                        "spreading_factor": up.spreading_factor,
                        "coding_rate": "4/5",
                    }
                },
                "frequency": str(delivery.frequency_hz),
                "timestamp": delivery.best.timestamp_us,
                "time": rfc3339(up.time_s),
            },
            "received_at": received_at,
            "consumed_airtime": airtime_text(delivery.airtime_s),
            "network_ids": {"net_id": "000013", "tenant_id": "tembo", "cluster_id": "eu1"},
        },
    }
    message["uplink_message"]["confirmed"] = up.confirmed
    return omit_empty(message)


def chirpstack_uplink_json(delivery: Delivery, application_id: str, application_name: str) -> dict:
    """ChirpStack v4 uplink event JSON (integration.UplinkEvent in protobuf JSON mapping)."""
    up = delivery.uplink
    tag = (up.dev_eui, up.f_cnt, delivery.copy)
    app_uuid = str(uuid.uuid5(_NAMESPACE, f"application:{application_id}"))
    rx_info = []
    for r in delivery.receptions:
        rx_info.append(
            {
                "gatewayId": r.gateway.eui.lower(),
                "uplinkId": int.from_bytes(_digest("uplink", *tag, r.gateway.gateway_id)[:4], "big"),
                "gwTime": rfc3339(up.time_s),
                "nsTime": rfc3339(delivery.received_at_s),
                "rssi": r.rssi_dbm,
                "snr": r.snr_db,
                "channel": r.channel_index,
                "rfChain": 0 if r.channel_index < 3 else 1,
                "location": {
                    "latitude": r.gateway.lat,
                    "longitude": r.gateway.lon,
                    "altitude": r.gateway.altitude_m,
                },
                "context": base64.b64encode(r.timestamp_us.to_bytes(4, "big")).decode(),
                "metadata": {"region_config_id": "eu868", "region_common_name": "EU868"},
                "crcStatus": "CRC_OK",
            }
        )
    return omit_empty({
        "deduplicationId": str(uuid.uuid5(_NAMESPACE, "dedup:" + "|".join(map(str, tag)))),
        "time": rfc3339(delivery.received_at_s),
        "deviceInfo": {
            "tenantId": TENANT_ID,
            "tenantName": "Tembo",
            "applicationId": app_uuid,
            "applicationName": application_name,
            "deviceProfileId": str(uuid.uuid5(_NAMESPACE, "profile:tembo-collar-eu868")),
            "deviceProfileName": "Tembo collar EU868",
            "deviceName": up.device_id,
            "devEui": up.dev_eui.lower(),
            "deviceClassEnabled": "CLASS_A",
            "tags": {"application_id": application_id},
        },
        "devAddr": dev_addr_of(up.dev_eui).lower(),
        "adr": True,
        "dr": EU868_DATA_RATE.get(up.spreading_factor, 0),
        "fCnt": up.f_cnt,
        "fPort": up.f_port,
        "confirmed": up.confirmed,
        "data": base64.b64encode(up.payload).decode(),
        "rxInfo": rx_info,
        "txInfo": {
            "frequency": delivery.frequency_hz,
            "modulation": {
                "lora": {
                    "bandwidth": up.bandwidth_hz,
                    "spreadingFactor": up.spreading_factor,
                    "codeRate": "CR_4_5",
                }
            },
        },
        "regionConfigId": "eu868",
    })
