"""One stored body through the layers: ingest (read, dedupe) → decode (codec) → domain (apply).

All of it in one unit of work, so an uplink is applied entirely or not at all; if anything
unexpected breaks, the body stays in raw_uplinks and a dead letter says why.
"""

from __future__ import annotations

import logging
from typing import Any

from lora_bridge import ingest
from lora_bridge.decode import decode_payload
from lora_bridge.domain.messages import apply_message
from lora_bridge.errors import MalformedUplink
from lora_bridge.settings import BridgeSettings
from lora_bridge.store.database import Database
from lora_bridge.store.tables import DeadLetter, RawUplink
from lora_bridge.store.utc import utc_now
from lora_bridge.views import IngestResult

log = logging.getLogger(__name__)


def process_raw(
    db: Database,
    raw_uplink_id: int,
    codec: Any,
    settings: BridgeSettings,
    dead_letter_id: int | None = None,
) -> IngestResult:
    """Read, dedupe, decode and apply the stored body raw_uplink_id; returns what happened."""
    try:
        with db.write() as session:
            return _process(session, raw_uplink_id, codec, settings, dead_letter_id)
    except Exception as error:
        log.exception("uplink processing failed raw_uplink_id=%d", raw_uplink_id, extra={"raw_uplink_id": raw_uplink_id})
        reason = f"processing failed: {error!r}"
        with db.write() as session:
            raw = session.get(RawUplink, raw_uplink_id)
            existing = session.get(DeadLetter, dead_letter_id) if dead_letter_id else None
            ingest.dead_letter(session, raw, ingest.STAGE_APPLY, reason, existing)
            return IngestResult(
                status=ingest.STATUS_DEAD_LETTER,
                raw_uplink_id=raw_uplink_id,
                reason=reason,
                stage=ingest.STAGE_APPLY,
            )


def _process(
    session: Any, raw_uplink_id: int, codec: Any, settings: BridgeSettings, dead_letter_id: int | None
) -> IngestResult:
    raw = session.get(RawUplink, raw_uplink_id)
    if raw is None:
        raise ValueError(f"no raw uplink {raw_uplink_id}")
    existing = session.get(DeadLetter, dead_letter_id) if dead_letter_id else None
    try:
        claim = ingest.read_and_claim(session, raw)
    except MalformedUplink as error:
        ingest.dead_letter(session, raw, ingest.STAGE_PARSE, str(error), existing)
        return IngestResult(
            status=ingest.STATUS_DEAD_LETTER, raw_uplink_id=raw.id, reason=str(error), stage=ingest.STAGE_PARSE
        )
    uplink = claim.uplink
    if claim.duplicate_of is not None:
        _close_replayed(existing, ingest.STATUS_DUPLICATE)
        return IngestResult(
            status=ingest.STATUS_DUPLICATE,
            raw_uplink_id=raw.id,
            device_id=uplink.device_id,
            f_cnt=uplink.f_cnt,
            duplicate_of=claim.duplicate_of,
        )
    decoded = decode_payload(codec, uplink.f_port, uplink.payload)
    if decoded.fields is None:
        reason = decoded.reason or "undecodable"
        ingest.dead_letter(session, raw, ingest.STAGE_DECODE, reason, existing)
        return IngestResult(
            status=ingest.STATUS_DEAD_LETTER,
            raw_uplink_id=raw.id,
            device_id=uplink.device_id,
            f_cnt=uplink.f_cnt,
            reason=reason,
            stage=ingest.STAGE_DECODE,
        )
    heard_at = uplink.heard_at or raw.received_at
    applied = apply_message(
        session, raw=raw, uplink=uplink, fields=decoded.fields, heard_at=heard_at, codec=codec, settings=settings
    )
    raw.status = ingest.STATUS_PROCESSED
    raw.message = decoded.message
    raw.processed_at = utc_now()
    raw.error = None
    _close_replayed(existing, ingest.STATUS_PROCESSED)
    log.info(
        "uplink processed device_id=%s f_cnt=%s message=%s",
        uplink.device_id,
        uplink.f_cnt,
        decoded.message,
        extra={"device_id": uplink.device_id, "f_cnt": uplink.f_cnt, "message_name": decoded.message},
    )
    return IngestResult(
        status=ingest.STATUS_PROCESSED,
        raw_uplink_id=raw.id,
        device_id=uplink.device_id,
        f_cnt=uplink.f_cnt,
        message=decoded.message,
        alert_ids=tuple(applied.alert_ids),
        downlink_ids=tuple(applied.downlink_ids),
    )


def _close_replayed(letter: DeadLetter | None, result: str) -> None:
    if letter is not None:
        letter.replayed_at = utc_now()
        letter.replay_result = result
