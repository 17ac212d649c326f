"""The TS005 multicast groups on each collar: the bridge sets them up and records what the collars say.

Set-up (`queue_setup`): McGroupSetupReq on port 200 to one collar, the delivery's McAddr, the group's
McKey wrapped with that collar's McKEKey (lora_bridge/updates/multicast_keys.py: the key file the
technician provisioned; the wrapped key is what goes on the air, never McKey or a root key), and the
frame counters the group may use. The collar's answers are recorded per collar and group
(`collar_multicast_groups`; `queue_delete` when the delivery ends): McGroupSetupAns (IDerror bit 2: refused), McGroupDeleteAns
(McGroupUndefined bit 2), McGroupStatusAns (NbTotalGroups, AnsGroupMask and each group's McAddr;
the bridge always asks for all four groups, so a group missing from the answer is absent).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import downlinks
from lora_bridge.store.tables import CollarMulticastGroup
from lora_bridge.updates import multicast_keys

log = logging.getLogger(__name__)

GROUPS = 4  # McGroupID is 2 bits
ALL_GROUPS = 0x0F  # ReqGroupMask asking for every group
ERR_BIT = 0x04  # IDerror (McGroupSetupAns), McGroupUndefined (McGroupDeleteAns)
GROUP_MASK = 0x03
MIN_FCOUNT = 0
MAX_FCOUNT = 0xFFFFFFFF

SETUP_SENT = "setup_sent"
DEFINED = "defined"
REFUSED = "refused"
ABSENT = "absent"
DELETE_SENT = "delete_sent"


def _row(session: Session, device_id: str, group: int) -> CollarMulticastGroup:
    row = session.get(CollarMulticastGroup, (device_id, group))
    if row is None:
        row = CollarMulticastGroup(device_id=device_id, mc_group=group, state=ABSENT)
        session.add(row)
    return row


def queue_setup(session: Session, codec: Any, *, device_id: str, dev_eui: str, group: int,
                keys: multicast_keys.GroupKeys, ring: multicast_keys.CollarKeyRing, campaign_id: int | None,
                now: datetime) -> int:
    """Queue McGroupSetupReq for one collar; return the downlink's id. CollarKeyError when the key file
    holds no root key for the collar."""
    wrapped = ring.wrapped_for(dev_eui, keys)
    queued = downlinks.queue_command(session, codec, device_id=device_id, command="mc_group_setup", values={
        "group": group, "mc_addr": keys.mc_addr, **multicast_keys.key_words(wrapped),
        "min_mc_fcount": MIN_FCOUNT, "max_mc_fcount": MAX_FCOUNT})
    row = _row(session, device_id, group)
    row.state, row.mc_addr, row.campaign_id, row.updated_at = SETUP_SENT, keys.mc_addr, campaign_id, now
    log.info("multicast group set-up queued device_id=%s group=%d mc_addr=%08x", device_id, group, keys.mc_addr,
             extra={"device_id": device_id, "campaign_id": campaign_id})
    return queued.id


def queue_delete(session: Session, codec: Any, *, device_id: str, group: int, campaign_id: int | None,
                 now: datetime) -> int:
    """Queue McGroupDeleteReq for one collar's group (the delivery that set it up ended); return the
    downlink's id. Its McGroupDeleteAns makes the group absent."""
    queued = downlinks.queue_command(session, codec, device_id=device_id, command="mc_group_delete",
                                     values={"group": group})
    row = _row(session, device_id, group)
    row.state, row.campaign_id, row.updated_at = DELETE_SENT, campaign_id, now
    log.info("multicast group delete queued device_id=%s group=%d", device_id, group,
             extra={"device_id": device_id, "campaign_id": campaign_id})
    return queued.id


def forget(session: Session, device_id: str, group: int, at: datetime) -> None:
    """The collar rejoined the network: its modem's stack no longer holds the group (the set-up was for
    the session before), whatever it last said; a new McGroupSetupReq defines it again."""
    row = session.get(CollarMulticastGroup, (device_id, group))
    if row is not None and row.state in (SETUP_SENT, DEFINED):
        row.state, row.updated_at = ABSENT, at
        log.info("multicast group %d of device_id=%s lost with its rejoin", group, device_id,
                 extra={"device_id": device_id})


def request_status(session: Session, codec: Any, device_id: str) -> int:
    """Queue McGroupStatusReq for every group of one collar; return the downlink's id."""
    return downlinks.queue_command(session, codec, device_id=device_id, command="mc_group_status",
                                   values={"req_group_mask": ALL_GROUPS}).id


def record_answer(session: Session, device_id: str, fields: dict[str, Any], heard_at: datetime) -> bool:
    """Record a collar's McGroupSetupAns / McGroupDeleteAns / McGroupStatusAns; False for other messages."""
    message = fields.get("message")
    if message in ("mc_group_setup_ans", "mc_group_delete_ans"):
        status = int(fields.get("status") or 0)
        row = _row(session, device_id, status & GROUP_MASK)
        if message == "mc_group_setup_ans":
            row.state = REFUSED if status & ERR_BIT else DEFINED
        else:
            row.state, row.mc_addr = ABSENT, None
        row.updated_at = heard_at
        log.info("multicast group %d of device_id=%s: %s", status & GROUP_MASK, device_id, row.state,
                 extra={"device_id": device_id})
        return True
    if message != "mc_group_status_ans":
        return False
    listed = {int(g["group"]) & GROUP_MASK: int(g["mc_addr"]) for g in fields.get("groups") or []}
    for group in range(GROUPS):
        row = _row(session, device_id, group)
        if group in listed:
            row.state, row.mc_addr = DEFINED, listed[group] or row.mc_addr  # 0: an address only the stack holds
        elif row.state != SETUP_SENT:  # a set-up on its way is not contradicted by an older answer
            row.state, row.mc_addr = ABSENT, None
        row.updated_at = heard_at
    if int(fields.get("nb_total_groups") or 0) != len(listed):
        log.warning("device_id=%s says it holds %s groups but listed %d", device_id, fields.get("nb_total_groups"),
                    len(listed), extra={"device_id": device_id})
    return True


def view(session: Session, device_id: str) -> list[dict[str, Any]]:
    """Return the groups a collar holds as the bridge last heard (plain data)."""
    rows = session.scalars(select(CollarMulticastGroup).where(CollarMulticastGroup.device_id == device_id)
                           .order_by(CollarMulticastGroup.mc_group))
    return [{"group": r.mc_group, "state": r.state, "mc_addr": None if r.mc_addr is None else f"{r.mc_addr:08x}",
             "campaign_id": r.campaign_id, "updated_at": r.updated_at} for r in rows]
