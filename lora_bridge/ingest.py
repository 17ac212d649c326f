"""Ingest: keep every delivered body first, then read it and claim it as the first copy of its uplink.

Storing comes before everything: a body is committed to `raw_uplinks` in its own transaction before
it is parsed, so nothing a network server delivers is lost, whatever happens next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lora_bridge.errors import MalformedUplink
from lora_bridge.store.database import Database
from lora_bridge.store.tables import DeadLetter, RawUplink
from lora_bridge.uplink_formats import PARSERS, Uplink

log = logging.getLogger(__name__)

STATUS_RECEIVED = "received"
STATUS_PROCESSED = "processed"
STATUS_DUPLICATE = "duplicate"
STATUS_DEAD_LETTER = "dead_letter"

STAGE_PARSE = "parse"
STAGE_DECODE = "decode"
STAGE_APPLY = "apply"


def store_raw(db: Database, body: bytes, source: str) -> int:
    """Commit body to raw_uplinks (status received) and return its id."""
    with db.write() as session:
        raw = RawUplink(source=source, body=bytes(body), status=STATUS_RECEIVED, gateways=[])
        session.add(raw)
        session.flush()
        return raw.id


def parser_for(source: str) -> Callable[[bytes], Uplink]:
    """The parser of a source name ('tts', 'chirpstack', or 'replay:tts' style)."""
    network = source.split(":")[-1]
    try:
        return PARSERS[network]
    except KeyError as error:
        raise ValueError(f"unknown uplink source {source!r}; known: {', '.join(PARSERS)}") from error


@dataclass(frozen=True)
class Claim:
    """The result of reading a raw body: the uplink and whether this copy is the first one."""

    uplink: Uplink
    duplicate_of: int | None


def read_and_claim(session: Session, raw: RawUplink) -> Claim:
    """Parse raw.body and claim its dedup key; MalformedUplink when the body is not an uplink."""
    uplink = parser_for(raw.source)(raw.body)
    raw.device_id = uplink.device_id
    raw.f_port = uplink.f_port
    raw.f_cnt = uplink.f_cnt
    raw.payload = uplink.payload
    raw.heard_at = uplink.heard_at
    raw.gateways = [
        {"gateway_id": g.gateway_id, "rssi_dbm": g.rssi_dbm, "snr_db": g.snr_db} for g in uplink.gateways
    ]
    raw.best_rssi_dbm = uplink.best_rssi_dbm
    raw.best_snr_db = uplink.best_snr_db
    raw.spreading_factor = uplink.spreading_factor
    raw.airtime_ms = uplink.airtime_ms
    if raw.dedup_key == uplink.dedup_key:
        return Claim(uplink, None)  # replaying a body that already holds its claim
    first = _first_copy(session, uplink.dedup_key)
    if first is None:
        try:
            with session.begin_nested():
                raw.dedup_key = uplink.dedup_key
                session.flush()
        except IntegrityError:
            raw.dedup_key = None  # another worker claimed it between our look and our write
            first = _first_copy(session, uplink.dedup_key)
    if first is None:
        return Claim(uplink, None)
    _merge_gateways(first, raw)
    raw.status = STATUS_DUPLICATE
    raw.duplicate_of = first.id
    log.info(
        "duplicate uplink device_id=%s f_cnt=%s of raw_uplink_id=%d",
        uplink.device_id,
        uplink.f_cnt,
        first.id,
        extra={"device_id": uplink.device_id, "f_cnt": uplink.f_cnt, "first_raw_uplink_id": first.id},
    )
    return Claim(uplink, first.id)


def _first_copy(session: Session, key: str) -> RawUplink | None:
    # FOR UPDATE (PostgreSQL; SQLite's writers are serial anyway): copies heard by several gateways
    # at once merge their gateways into the first copy one after the other, none overwrites another.
    query = select(RawUplink).where(RawUplink.dedup_key == key).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).first()


def _merge_gateways(first: RawUplink, copy: RawUplink) -> None:
    known = {g.get("gateway_id") for g in first.gateways or []}
    merged = list(first.gateways or [])
    merged.extend(g for g in copy.gateways or [] if g.get("gateway_id") not in known)
    first.gateways = merged
    rssi = [g["rssi_dbm"] for g in merged if g.get("rssi_dbm") is not None]
    snr = [g["snr_db"] for g in merged if g.get("snr_db") is not None]
    first.best_rssi_dbm = max(rssi) if rssi else first.best_rssi_dbm
    first.best_snr_db = max(snr) if snr else first.best_snr_db


def dead_letter(
    session: Session, raw: RawUplink, stage: str, reason: str, existing: DeadLetter | None = None
) -> DeadLetter:
    """Keep raw as a dead letter (or refresh the one being replayed) and mark raw accordingly."""
    raw.status = STATUS_DEAD_LETTER
    raw.error = reason
    if existing is not None:
        existing.reason = reason
        existing.stage = stage
        existing.replay_result = f"still dead: {reason}"
        letter = existing
    else:
        letter = DeadLetter(raw_uplink_id=raw.id, body=raw.body, reason=reason, stage=stage, source=raw.source)
        session.add(letter)
    log.warning(
        "dead letter device_id=%s f_cnt=%s stage=%s: %s",
        raw.device_id,
        raw.f_cnt,
        stage,
        reason,
        extra={"raw_uplink_id": raw.id, "device_id": raw.device_id, "f_cnt": raw.f_cnt, "stage": stage, "reason": reason},
    )
    return letter


__all__ = ["MalformedUplink", "store_raw", "read_and_claim", "dead_letter", "parser_for", "Claim"]
