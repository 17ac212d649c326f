"""Which uplink bodies the store holds already, byte for byte, as a collar's raw uplink.

An MQTT worker asks it of the messages that came with the retain flag (`adapters.retained_copies`):
a broker hands a retained uplink to a worker again at every new subscription and with every
redelivery, and the store needs no second raw copy of a body it holds.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import Device, RawUplink

# Collars (and frame counters) asked in one statement, at most: well under SQLite's bound parameters.
CHUNK = 400

UplinkBody = tuple[str, int, bytes]  # a collar's DevEUI, the uplink's frame counter, the body as delivered


def stored_uplink_bodies(session: Session, wanted: Collection[UplinkBody]) -> set[UplinkBody]:
    """Those of wanted whose body the store holds, byte for byte, as a raw uplink of the collar with
    that DevEUI and that frame counter (first copy or copy: either is the body kept)."""
    asked = sorted(wanted)
    held: set[UplinkBody] = set()
    for start in range(0, len(asked), CHUNK):
        chunk = asked[start:start + CHUNK]
        query = (select(Device.dev_eui, RawUplink.f_cnt, RawUplink.body)
                 .join(Device, Device.device_id == RawUplink.device_id)
                 .where(Device.dev_eui.in_({dev_eui for dev_eui, _, _ in chunk}),
                        RawUplink.f_cnt.in_({f_cnt for _, f_cnt, _ in chunk})))
        held.update((dev_eui, f_cnt, bytes(body)) for dev_eui, f_cnt, body in session.execute(query))
    return held.intersection(asked)
