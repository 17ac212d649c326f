"""The last over-the-air update each collar reports in its status (version 2): kind, version, outcome, reason.

A status carries the result of the collar's last update attempt every time it is sent, so a lost
port-31 ack still reaches the bridge: a new result (not the one already stored) about the image of
a campaign the collar is being sent moves its campaign state the way the ack would have
(`campaigns.record_ack`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import campaigns
from lora_bridge.store.tables import CampaignCollar, UpdateCampaign, UpdateResult
from lora_bridge.store.utc import utc_now

log = logging.getLogger(__name__)

NO_UPDATE = "none"


def record(session: Session, device_id: str, fields: dict[str, Any], time: datetime) -> UpdateResult | None:
    """Keep the update result of a decoded status (None when it carries none or an older one)."""
    kind = fields.get("update_kind")
    if kind is None or kind == NO_UPDATE:
        return None
    row = session.get(UpdateResult, device_id)
    if row is not None and row.time > time:
        return row  # an older status arriving late does not overwrite a newer result
    if row is None:
        row = UpdateResult(device_id=device_id)
        session.add(row)
    changed = (row.kind, row.version, row.outcome, row.reason) != (
        str(kind), str(fields.get("update_version")), str(fields.get("update_outcome")),
        str(fields.get("update_reason")))
    row.kind, row.version = str(kind), str(fields.get("update_version"))
    row.outcome, row.reason = str(fields.get("update_outcome")), str(fields.get("update_reason"))
    row.time, row.reported_at = time, utc_now()
    if changed:  # every status repeats the result: only a new one is news for campaigns
        log.info("update result device_id=%s %s %s: %s (%s)", device_id, row.kind, row.version, row.outcome,
                 row.reason, extra={"device_id": device_id, "update_outcome": row.outcome})
        _settle_campaigns(session, row)
    return row


def record_ack(session: Session, device_id: str, result: str, at: datetime) -> list[int]:
    """A collar's port-31 ack for port 201 (result: an ACK_RESULTS name) dated at (its `time_s`, the collar's
    clock, as `messages.message_time` reads it): the delivery whose session it opened is complete, and its
    campaigns move (`campaigns.record_ack`); return their ids. The one way an ack is taken, heard over the
    air or handed to the service."""
    from lora_bridge.domain import fuota_delivery

    fuota_delivery.record_result(session, device_id, result)
    return campaigns.record_ack(session, device_id, result, at=at)


def _settle_campaigns(session: Session, result: UpdateResult) -> None:
    """A collar still 'sending' in a campaign of this very image (whatever that campaign's state: one its canaries
    stopped too), failed there by the delivery's time limits (`campaigns.overdue`: its result came late), or left
    UNKNOWN there by an abort, gets its result, as from an ack."""
    steps = session.scalars(
        select(CampaignCollar)
        .join(UpdateCampaign, UpdateCampaign.id == CampaignCollar.campaign_id)
        .where(CampaignCollar.device_id == result.device_id,
               CampaignCollar.state.in_(("sending", "failed", campaigns.UNKNOWN)),
               UpdateCampaign.kind == result.kind, UpdateCampaign.version == result.version)
        .order_by(CampaignCollar.campaign_id)
    )
    steps = list(steps)
    if sending := [step for step in steps if step.state == "sending"]:
        campaigns.record_ack(session, result.device_id, result.reason, of_image=True)  # its running campaigns
        for step in sending:  # and those that stopped or ended while it was still being sent the image
            campaigns.record_after_end(session, step, result.reason)
    elif late := [step for step in steps if campaigns.overdue(step) or step.state == campaigns.UNKNOWN]:
        campaigns.record_ack(session, result.device_id, result.reason, late_in=late[-1].campaign_id, of_image=True)


def latest(session: Session) -> dict[str, dict[str, Any]]:
    """Every collar's last reported update result, by device id."""
    return {r.device_id: {"kind": r.kind, "version": r.version, "outcome": r.outcome, "reason": r.reason,
                          "time": r.time}
            for r in session.scalars(select(UpdateResult))}
