"""A field technician pauses and resumes a campaign whose image the bridge delivers (fuota_delivery.py).

A pause holds what the outbox still has for the campaign's collars (version questions, set-ups,
stragglers' unicast fragments: `HELD_WHILE_PAUSED`) and says in the history what it means for a window that is open or
about to open; the delivery's ticks stop (fuota_delivery.tick moves active campaigns only) and its
time limits do not count the pause (campaigns.running_s). A resume releases the held frames and goes
on from the fragment the multicast stopped at, in a new window when the collars' one closed
meanwhile. Resuming a campaign its canaries stopped (the override) opens its ended delivery again.
`Bridge.steer_campaign` calls these after the campaign's own step (campaigns.steer).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import campaigns, downlinks
from lora_bridge.domain import fuota_delivery as fd
from lora_bridge.store.tables import CampaignCollar, FuotaCollar, FuotaSession, UpdateCampaign
from lora_bridge.updates import delivery

log = logging.getLogger(__name__)

HELD_WHILE_PAUSED = datetime(9999, 12, 31, tzinfo=UTC)  # a queued delivery frame's not_before while its campaign is paused


def paused(session: Session, campaign: UpdateCampaign, now: datetime) -> None:
    """The technician paused the campaign: nothing more goes to the group or the collars until the resume.
    What that means for a delivery whose window is open (or about to open) goes into the history: the
    collars keep their Class C windows open until the TS005 timeout and hear nothing more; multicast
    frames the outbox holds for the next fuota_delivery.HORIZON_S still go, and the unicast frames it holds for the
    collars (version questions, set-ups, stragglers' fragments) wait for the resume (`HELD_WHILE_PAUSED`). A collar
    missing fragments says so when its window closes, and keeps what it holds for the resume."""
    row = session.get(FuotaSession, campaign.id)
    if row is None or row.ended_at is not None:
        return
    held = fd.queued_for_collars(session, row)
    for frame in held:  # questions, set-ups and fragments the outbox still holds wait for the resume
        frame.not_before = HELD_WHILE_PAUSED
    if row.state not in (fd.SETUP, fd.WINDOW, fd.REPAIR):
        campaigns.record_event(session, campaign, "delivery_paused", time=now, delivery_state=row.state,
                               frames_held=len(held))
        return
    campaigns.record_event(session, campaign, "delivery_paused", time=now, delivery_state=row.state,
                           fragments_sent=row.next_fragment - 1, fragments_planned=row.target_fragment,
                           window_opens=row.session_time.isoformat(), window_closes=fd.window_closes(row).isoformat(),
                           frames_held=len(held))
    log.info("delivery paused campaign_id=%d in %s after %d of %d fragments; the collars' window closes %s",
             row.campaign_id, row.state, row.next_fragment - 1, row.target_fragment, fd.window_closes(row).isoformat(),
             extra={"campaign_id": row.campaign_id})


def resumed(session: Session, codec: Any, campaign: UpdateCampaign, now: datetime) -> int:
    """The technician resumed the campaign: a delivery whose multicast was cut by the pause goes on from
    the fragment it stopped at. While the collars' window is open long enough for the fragments still
    planned, in that window; otherwise (it closed during the pause, or opened and closed) in a new one:
    every collar of the group still missing fragments is sent a new McClassCSessionReq (its
    fragmentation session, and what it holds of the image, are kept), and the window opens
    fuota_delivery.SETUP_LEAD_S later. Return how many downlinks were queued."""
    row = session.get(FuotaSession, campaign.id)
    if row is None or row.ended_at is not None:
        return 0
    for frame in fd.queued_for_collars(session, row):
        if frame.not_before == HELD_WHILE_PAUSED:
            frame.not_before = None  # the outbox pushes it within fair use again
    if row.state not in (fd.SETUP, fd.WINDOW, fd.REPAIR):
        return 0
    left_s = max(0, row.target_fragment - row.next_fragment + 1) * row.spacing_s + delivery.ANSWER_WAIT_S
    if now < row.session_time or now + timedelta(seconds=left_s) <= fd.window_closes(row):
        campaigns.record_event(session, campaign, "delivery_resumed", time=now, window_closes=fd.window_closes(row)
                               .isoformat(), from_fragment=row.next_fragment)
        return 0
    group = list(session.scalars(
        select(FuotaCollar).join(CampaignCollar, (CampaignCollar.campaign_id == FuotaCollar.campaign_id)
                                 & (CampaignCollar.device_id == FuotaCollar.device_id))
        .where(FuotaCollar.campaign_id == row.campaign_id, FuotaCollar.setup_queued_at.is_not(None),
               FuotaCollar.unicast_reason.is_(None), FuotaCollar.complete.is_(False),
               CampaignCollar.state == "sending")))
    row.state = fd.SETUP
    row.session_time = (now + timedelta(seconds=fd.SETUP_LEAD_S)).replace(microsecond=0)
    row.next_at = row.session_time
    row.status_asked_at = None  # the fragments go on from row.next_fragment: the collars keep what they hold
    for frame in fd.queued_for_collars(session, row):
        if frame.command == "mc_class_c_session":  # a window that passed: the collar would answer StartMissed
            frame.state = downlinks.STATE_SUPERSEDED
    for collar in group:
        fd.queue_window(session, codec, row, collar.device_id)
        collar.session_answered = False  # the new window counts once the collar accepts it
        collar.setup_queued_at = now
    campaigns.record_event(session, campaign, "delivery_resumed", time=now, new_window=row.session_time.isoformat(),
                           collars=len(group), from_fragment=row.next_fragment)
    log.info("delivery resumed campaign_id=%d: a new window at %s for %d collars, from fragment %d",
             row.campaign_id, row.session_time.isoformat(), len(group), row.next_fragment,
             extra={"campaign_id": row.campaign_id})
    return len(group)


def reopen_after_stop(session: Session, campaign: UpdateCampaign, now: datetime) -> None:
    """The technician resumes a campaign its canaries stopped (the override): its delivery, ended at the
    stop, opens again so the fleet is set up in a new window through the same group (the technician's
    network server group, and on the collars a group the set-up gives them again). CampaignError (a
    step refused, as the API and the page show it) when the bridge made the group at ChirpStack for
    this campaign: it was deleted at the stop."""
    row = session.get(FuotaSession, campaign.id)
    if row is None or row.ended_at is None:
        return
    if row.group_created:
        raise campaigns.CampaignError(f"the ChirpStack multicast group the bridge made for campaign {campaign.id} "
                                      "was deleted when its canaries stopped it: start a new campaign with the same "
                                      "image for the collars still to update")
    row.ended_at = None  # the next tick sets up the released collars in a new window (_setups, _reopen)
    campaigns.record_event(session, campaign, "delivery_reopened", time=now, ended_at=None)
    log.info("delivery of campaign_id=%d opened again: its canaries' stop overridden", campaign.id,
             extra={"campaign_id": campaign.id})
