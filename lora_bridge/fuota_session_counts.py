"""TS004 v2.0.0's SessionCnt of each fragmentation set-up the bridge queues for a collar.

A collar on v2.0.0 takes a set-up only when its SessionCnt is greater than the last it took, else it answers
SessionCntReplay (TS004 v2.0.0 FragSessionSetupAns bit 4); it keeps that count in flash across a reset
(collar_firmware/update_install.py). A delivery's first set-up of a collar carries its campaign's id (mod 2**16: it
grows from one campaign to the next) or, when the collar was given more before, one above that; a collar the same
delivery sets up again (its session lost to a reset, a rejoin) gets more than the last it was given, so the new
set-up is taken, in v2.0.0 with its key ring, not refused as a replay of the first.

The count given is kept on the delivery's collar (`FuotaCollar.session_cnt`), where retention does not prune it (the
outbox's set-up rows are read too, for deliveries queued before the column). A collar whose own count is ahead of
what the bridge gave it (a store restored from a backup, a collar set up by another bridge) refuses the set-up as a
replay without holding the delivery's session (`REPLAY_EVENT`, `fuota_delivery._replayed_setup`); each such
refusal doubles the step to its next set-up (+2, +4, +8, ...), so a collar whose count is c, the bridge's first f,
takes set-up number floor(log2(c - f + 2)) + 1: at most 16 set-ups refused, whatever its count below the last.

The last is 65,535. TS004 v2.0.0 has a collar refuse a count not above the last it took and says nothing of
wrapping; LoRa Basics Modem refuses any count not above the last and any from 2**16 up, and so does the collar
(collar_firmware/update_install.py): a wrapped count would let a recorded old set-up be taken again. A collar given
65,535 (or refusing it as a replay) has spent its counts: `next_count` gives none, and the delivery sets it up in
TS004 v1.0.0 instead (`fuota_delivery._queue_frag_setup`), its history saying so (`SPENT_EVENT`): the image is still
signed and checked on the collar, without the block's MIC.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collar_firmware import codec as wire
from lora_bridge.domain.frag_package import SETUP, V2, setup_version
from lora_bridge.store.tables import CampaignEvent, Downlink, FuotaCollar

COUNT_SPAN = 1 << 16  # SessionCnt is a u16 on the wire
LAST_COUNT = COUNT_SPAN - 1  # the greatest: the collar refuses any set-up after it (not greater), so never wrapped
REPLAY_EVENT = "collar_session_cnt_replay"  # the history's word for a refusal that may be a count ahead
SPENT_EVENT = "collar_session_cnt_spent"  # the history's word for a collar past the last count: set up in v1.0.0


def highest_given(session: Session, device_id: str) -> int | None:
    """The highest SessionCnt of the v2.0.0 set-ups the bridge gave the collar, in any delivery (None: never)."""
    kept = session.scalar(select(func.max(FuotaCollar.session_cnt)).where(FuotaCollar.device_id == device_id))
    port = wire.port_of(SETUP)
    payloads = session.scalars(select(Downlink.payload).where(Downlink.device_id == device_id,
                                                              Downlink.command == SETUP))
    queued = [wire.decode(port, bytes(p), "down", V2)["session_cnt"] for p in payloads
              if setup_version(bytes(p), wire) == V2]
    return max([c for c in (kept, *queued) if c is not None], default=None)


def replays_refused(session: Session, device_id: str, campaign_id: int) -> int:
    """How many of the collar's set-ups in the delivery of campaign_id it refused as replays without holding the
    delivery's session (its campaign's history, `REPLAY_EVENT`)."""
    return session.scalar(select(func.count(CampaignEvent.id)).where(
        CampaignEvent.campaign_id == campaign_id, CampaignEvent.device_id == device_id,
        CampaignEvent.event == REPLAY_EVENT)) or 0


def next_count(session: Session, device_id: str, campaign_id: int) -> int | None:
    """The SessionCnt of the collar's next v2.0.0 set-up in the delivery of campaign_id: the campaign's id, or
    2**k above the highest it was given after k refusals as a replay in this delivery (1 above with none), at most
    LAST_COUNT; None when it was given LAST_COUNT already (its counts are spent: no v2.0.0 set-up can be taken)."""
    first = campaign_id % COUNT_SPAN
    given = highest_given(session, device_id)
    if given is None or given < first:
        return first
    if given >= LAST_COUNT:
        return None
    return min(given + (1 << replays_refused(session, device_id, campaign_id)), LAST_COUNT)


def give(session: Session, device_id: str, campaign_id: int) -> int | None:
    """The SessionCnt of the collar's next v2.0.0 set-up (`next_count`), kept on its delivery's row (None: spent)."""
    count = next_count(session, device_id, campaign_id)
    collar = session.get(FuotaCollar, (campaign_id, device_id))
    if collar is not None and count is not None:
        collar.session_cnt = count
    return count
