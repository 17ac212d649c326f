"""TS004 v2.0.0's SessionCnt of each fragmentation set-up the bridge queues for a collar.

A collar on v2.0.0 refuses a set-up whose SessionCnt is not above the last it took (SessionCntReplay), and keeps that
count in flash across a reset (collar_firmware/update_install.py). A delivery's first set-up of a collar carries its
campaign's id (mod 2**16: it grows from one campaign to the next); a collar the same delivery sets up again (its
session lost to a reset, a rejoin) gets one above the highest the bridge ever queued for it, so the new set-up is
taken, in v2.0.0 with its key ring, not refused as a replay of the first.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from collar_firmware import codec as wire
from lora_bridge.domain.frag_package import SETUP, V2, setup_version
from lora_bridge.store.tables import Downlink

COUNT_SPAN = 1 << 16  # SessionCnt is a u16 on the wire


def highest_given(session: Session, device_id: str) -> int | None:
    """The highest SessionCnt of the v2.0.0 set-ups queued for the collar (None: it was never set up in v2.0.0)."""
    port = wire.port_of(SETUP)
    payloads = session.scalars(select(Downlink.payload).where(Downlink.device_id == device_id,
                                                              Downlink.command == SETUP))
    counts = [wire.decode(port, bytes(p), "down", V2)["session_cnt"] for p in payloads
              if setup_version(bytes(p), wire) == V2]
    return max(counts, default=None)


def next_count(session: Session, device_id: str, campaign_id: int) -> int:
    """The SessionCnt of the collar's next v2.0.0 set-up in the delivery of campaign_id."""
    first = campaign_id % COUNT_SPAN
    given = highest_given(session, device_id)
    return first if given is None or given < first else (given + 1) % COUNT_SPAN
