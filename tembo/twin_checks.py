"""End-to-end checks of the network events a twin scenario injects, read back from the bridge's store.

The alert score says whether rangers heard about the animals; these checks say whether the radio's
troubles cost any data on the way to the bridge:
- `frame_counter_reset`: the collar rejoined and its frame counter restarted at 0; every frame the
  network delivered after it is in the store as a new uplink (not taken for a replay or a duplicate).
- `gateway_outage` / `no_coverage`: the collars no gateway heard for the whole window kept what they
  measured in flash and sent it again once heard; every data message (status, activity, positions,
  alert) they sent unheard in the window is in the store by the end, most of it marked back-filled.

`SentFrames` listens to the fleet (`Fleet.on_sent`) and to the deliveries; `network_event_checks`
compares what was sent with the bridge's `raw_uplinks` table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from collar_firmware import codec
from simulator.network import Delivery, Uplink
from simulator.scenario import Scenario
from simulator.scoring import _device, _iso

DATA_PORTS = tuple(codec.port_of(m) for m in ("status", "activity", "positions", "alert"))
SETTLE_S = 2 * 3600  # a window closing later than this before the end may not have been sent again yet


@dataclass
class SentFrames:
    """Every uplink a collar sent (heard or not) and every frame the network delivered, per device."""

    sent: dict[str, list[tuple[float, int, bytes, bool]]] = field(default_factory=lambda: defaultdict(list))
    delivered: dict[str, list[tuple[float, int, bytes]]] = field(default_factory=lambda: defaultdict(list))

    def on_sent(self, uplink: Uplink, heard: bool) -> None:
        """Fleet.on_sent hook."""
        self.sent[uplink.device_id].append((uplink.time_s, uplink.f_port, bytes(uplink.payload), heard))

    def on_delivery(self, delivery: Delivery) -> None:
        """Told of each delivery handed to the bridge."""
        up = delivery.uplink
        self.delivered[up.device_id].append((up.time_s, up.f_cnt, bytes(up.payload)))


def _stored(session, device_id: str) -> list[tuple[int | None, bytes, bool]]:
    """(f_cnt, payload, back-filled) of the device's uplinks the bridge took as new."""
    from sqlalchemy import select

    from lora_bridge.ingest import STATUS_PROCESSED
    from lora_bridge.store.tables import RawUplink

    rows = session.execute(
        select(RawUplink.f_cnt, RawUplink.payload, RawUplink.backfilled)
        .where(RawUplink.device_id == device_id, RawUplink.status == STATUS_PROCESSED,
               RawUplink.duplicate_of.is_(None))
    )
    return [(f_cnt, bytes(payload or b""), bool(backfilled)) for f_cnt, payload, backfilled in rows]


def _fate(session, device_id: str, payload: bytes) -> list[str]:
    """What the bridge did with every copy of a payload it did not take as new (its status, error)."""
    from sqlalchemy import select

    from lora_bridge.store.tables import RawUplink

    rows = session.execute(select(RawUplink.f_cnt, RawUplink.status, RawUplink.error)
                           .where(RawUplink.device_id == device_id, RawUplink.payload == payload))
    return [f"f_cnt {f_cnt}: {status}" + (f" ({error})" if error else "") for f_cnt, status, error in rows]


def network_event_checks(session, scenario: Scenario, frames: SentFrames, end_s: int) -> list[dict]:
    """One check per network event of the scenario (see the module doc); `lost` must be 0."""
    out = []
    for e in scenario.events:
        if e.start_s >= end_s:
            continue
        if e.kind == "frame_counter_reset":
            device_id = _device(e.collar)
            after = {(f, p) for t, f, p in frames.delivered.get(device_id, []) if t >= e.start_s}
            stored = {(f, p) for f, p, _ in _stored(session, device_id)}
            check = {"kind": e.kind, "device_id": device_id, "at": _iso(e.start_s),
                     "frames_delivered_after": len(after), "stored": len(after & stored),
                     "lost": len(after - stored)}
            if after - stored:
                check["lost_messages"] = [{"f_cnt": f, "payload": p.hex(), "bridge": _fate(session, device_id, p)}
                                          for f, p in sorted(after - stored)[:20]]
            out.append(check)
        elif e.kind in ("gateway_outage", "no_coverage"):
            stop_s = min(e.end_s if e.end_s is not None else end_s, end_s)
            check = {"kind": e.kind, "from": _iso(e.start_s), "to": _iso(stop_s),
                     "where": e.gateway or [list(p) for p in e.area_km]}
            if stop_s > end_s - SETTLE_S:
                check["skipped"] = "the window closes too near the end of the run to see the back-fill"
                out.append(check)
                continue
            silenced, unheard, stored_n, backfilled, lost = [], 0, 0, 0, []
            for device_id, sent in sorted(frames.sent.items()):
                inside = [s for s in sent if e.start_s <= s[0] < stop_s]
                if not inside or any(heard for *_, heard in inside):
                    continue  # not silenced for the whole window (another mast heard it, or it was elsewhere)
                silenced.append(device_id)
                payloads = {(port, payload) for _, port, payload, _ in inside if port in DATA_PORTS}
                kept = {}
                for _, payload, was_backfilled in _stored(session, device_id):
                    kept[payload] = kept.get(payload, False) or was_backfilled
                for port, payload in sorted(payloads):
                    unheard += 1
                    if payload in kept:
                        stored_n += 1
                        backfilled += kept[payload]
                    else:
                        lost.append({"device_id": device_id, "f_port": port, "payload": payload.hex(),
                                     "bridge": _fate(session, device_id, payload) or "never delivered"})
            check.update(collars_silenced=silenced, data_sent_unheard=unheard, stored_later=stored_n,
                         marked_backfilled=backfilled, lost=len(lost))
            if lost:
                check["lost_messages"] = lost[:20]
            out.append(check)
    return out
