"""How the network server took a delivery's multicast frames: what the Updates page counts, and a refusal said once.

A frame the delivery queues for the group (`fuota_delivery._queue_multicast`) is not on air until the network
server took its push (the outbox, `Outbox.flush_multicast`). A server that refuses the group's pushes (its multicast
end device deleted: 404 "entity not found"; a key without the right) leaves the collars without a fragment, so the
page counts the frames the server took apart from the ones it refused, and the campaign's history says the refusal,
with the server's own answer, once for each run of refusals (not once a frame): again only after a frame of the group
went through since it was said.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lora_bridge.domain import campaigns, downlinks
from lora_bridge.store.tables import CampaignEvent, MulticastDownlink, UpdateCampaign

log = logging.getLogger(__name__)

REFUSED_EVENT = "group_push_refused"
ANSWER_CHARS = 300  # how much of the server's answer the history keeps


def tally(session: Session, campaign_id: int) -> dict[str, Any]:
    """The delivery's group frames by what became of their push: `pushed` (the network server took them),
    `refused` (its last push was refused: failed for good, or waiting to be tried again), `waiting` (not pushed
    yet), and `refusal`: the server's last answer to a refused push (None when none was refused)."""
    counts = {"pushed": 0, "refused": 0, "waiting": 0}
    for state, refused, n in session.execute(
            select(MulticastDownlink.state, MulticastDownlink.last_error.is_not(None), func.count())
            .where(MulticastDownlink.campaign_id == campaign_id)
            .group_by(MulticastDownlink.state, MulticastDownlink.last_error.is_not(None))):
        if state == downlinks.STATE_SENT:
            counts["pushed"] += n
        elif refused or state == downlinks.STATE_FAILED:
            counts["refused"] += n
        else:
            counts["waiting"] += n
    refusal = None
    if counts["refused"]:
        refusal = session.scalar(select(MulticastDownlink.last_error)
                                 .where(MulticastDownlink.campaign_id == campaign_id,
                                        MulticastDownlink.state != downlinks.STATE_SENT,
                                        MulticastDownlink.last_error.is_not(None))
                                 .order_by(MulticastDownlink.id.desc()).limit(1))
    return {**counts, "refusal": refusal}


def record_refusal(session: Session, frame: MulticastDownlink, answer: str, status: int | None,
                   at: datetime) -> bool:
    """The network server refused frame's push with answer (its HTTP status: status, None when it did not
    answer): said in the campaign's history unless this run of refusals already is (no frame of the group
    pushed since it was said); True when said."""
    pushed = session.scalar(select(func.count()).where(MulticastDownlink.campaign_id == frame.campaign_id,
                                                        MulticastDownlink.state == downlinks.STATE_SENT))
    said = session.scalar(select(CampaignEvent.detail).where(CampaignEvent.campaign_id == frame.campaign_id,
                                                             CampaignEvent.event == REFUSED_EVENT)
                          .order_by(CampaignEvent.id.desc()).limit(1))
    if said is not None and said.get("frames_pushed_before") == pushed:
        return False
    campaign = session.get(UpdateCampaign, frame.campaign_id)
    if campaign is None:
        return False
    campaigns.record_event(session, campaign, REFUSED_EVENT, time=at, group=frame.group_id, http_status=status,
                           network_server_answered=answer[:ANSWER_CHARS], frames_pushed_before=pushed,
                           why="the network server refuses the group's frames: none goes on air to the collars "
                               "until it takes them (is the multicast end device there, and may the key push to it?)")
    log.warning("network server refused the multicast frames of campaign_id=%d group=%s (HTTP %s): said in its "
                "history", frame.campaign_id, frame.group_id, status,
                extra={"campaign_id": frame.campaign_id, "multicast_frame_id": frame.id})
    return True
