"""The downlink queue: commands for collars, queued in the store, pushed to the network server later."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import Downlink
from lora_bridge.store.utc import utc_now

log = logging.getLogger(__name__)

COMMAND_PORT = 32

STATE_QUEUED = "queued"
STATE_SENDING = "sending"
STATE_SENT = "sent"
STATE_FAILED = "failed"
STATE_ACKNOWLEDGED = "acknowledged"

# After this many failed pushes a downlink stops being retried and is marked failed.
MAX_PUSH_ATTEMPTS = 5


def queue_command(
    session: Session,
    codec: Any,
    *,
    device_id: str,
    command: str,
    values: dict[str, Any],
    alert_id: int | None = None,
) -> Downlink:
    """Encode a downlink message (port-32 command, or port-3 settings) and queue it for device_id.

    The same bytes still waiting for the same collar are not queued twice (a collar repeating an
    alert until it hears the ack gets one ack, not one per repetition); the waiting row is returned.
    Raises the codec's CodecError for a name that is not a downlink or values it cannot carry.
    """
    row = codec.message(command) if hasattr(codec, "message") else (command, COMMAND_PORT, None, "down")
    if row[3] not in ("down", "both"):
        raise codec.CodecError(f"{command} is not a downlink message")
    payload = bytes(codec.encode(command, values))
    waiting = session.scalars(
        select(Downlink).where(
            Downlink.device_id == device_id,
            Downlink.f_port == int(row[1]),
            Downlink.payload == payload,
            Downlink.state.in_((STATE_QUEUED, STATE_SENDING)),
        )
    ).first()
    if waiting is not None:
        return waiting
    downlink = Downlink(
        device_id=device_id,
        f_port=int(row[1]),
        payload=payload,
        command=command,
        seq=values.get("seq"),
        alert_id=alert_id,
        state=STATE_QUEUED,
    )
    session.add(downlink)
    session.flush()
    log.info(
        "downlink queued downlink_id=%d device_id=%s command=%s alert_id=%s",
        downlink.id,
        device_id,
        command,
        alert_id,
        extra={"device_id": device_id, "command": command, "downlink_id": downlink.id, "alert_id": alert_id},
    )
    return downlink


def queued(session: Session, limit: int = 100) -> list[Downlink]:
    """Downlinks waiting to be pushed, oldest first."""
    return list(
        session.scalars(
            select(Downlink).where(Downlink.state == STATE_QUEUED).order_by(Downlink.id).limit(limit)
        )
    )


def mark_sent(downlink: Downlink) -> None:
    """The network server accepted the downlink."""
    downlink.state = STATE_SENT
    downlink.sent_at = utc_now()
    downlink.attempts += 1
    downlink.last_error = None


def mark_push_failed(downlink: Downlink, reason: str) -> None:
    """The push failed; retried later until MAX_PUSH_ATTEMPTS."""
    downlink.attempts += 1
    downlink.last_error = reason
    if downlink.attempts >= MAX_PUSH_ATTEMPTS:
        downlink.state = STATE_FAILED


def command_name(codec: Any, f_port: int, command_id: Any) -> str | None:
    """The codec's name of the downlink with this port and command id (first payload byte)."""
    if isinstance(command_id, str):
        return command_id
    for row in getattr(codec, "MESSAGES", ()):
        if row[1] == f_port and row[2] == command_id and row[3] in ("down", "both"):
            return str(row[0])
    return None


def apply_collar_ack(session: Session, codec: Any, device_id: str, fields: dict[str, Any]) -> Downlink | None:
    """A port-31 ack from the collar: mark its oldest sent command of that kind acknowledged."""
    on_port = fields.get("on_port", COMMAND_PORT)
    command = command_name(codec, on_port if isinstance(on_port, int) else COMMAND_PORT, fields.get("cmd"))
    query = select(Downlink).where(
        Downlink.device_id == device_id, Downlink.state.in_((STATE_SENT, STATE_QUEUED, STATE_SENDING))
    )
    if command is not None:
        query = query.where(Downlink.command == command)
    seq = fields.get("seq")
    if isinstance(seq, int):
        query = query.where(Downlink.seq == seq)
    downlink = session.scalars(query.order_by(Downlink.id)).first()
    if downlink is None:
        return None
    downlink.state = STATE_ACKNOWLEDGED
    downlink.acked_at = utc_now()
    result = fields.get("result")
    downlink.ack_result = str(result) if result is not None else None
    return downlink
