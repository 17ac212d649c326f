"""Retention of raw bodies: kept for a configurable time, then compacted; the decoded facts stay.

A raw body is what the network server sent, kept so that nothing is lost before it is applied and
so that a dead letter can be replayed after a fix. Once a body has been applied and is older than
the retention time it has done its work:
- the first copy of an applied uplink or a recorded network event keeps its row (device, frame
  counter, port, payload, gateways, radio figures, message name: what frame-loss figures and
  evidence point to) and loses only its body;
- further copies of an uplink heard by other gateways (their gateways are merged into the first
  copy) or of a network event delivered again are deleted; copies of a body that waits as a dead
  letter (the network server's tries of a refused body) stay, counted as its `tries`; a copy that
  a dead letter names (replayed as a copy of an uplink applied meanwhile) keeps its row, not its body;
- dead letters, bodies kept for inspection and bodies not yet processed are never touched.

SQLite reuses the freed pages, so the file stops growing rather than shrinking (VACUUM shrinks it);
PostgreSQL's autovacuum does the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from lora_bridge.store.tables import DeadLetter, RawUplink

log = logging.getLogger(__name__)

# Statuses whose body has been applied: compacted once older than the retention time.
APPLIED_STATUSES = ("processed", "recorded")
DUPLICATE_STATUS = "duplicate"
# Statuses of bodies waiting for a fix (dead letters, kinds kept for inspection): never compacted.
WAITING_STATUSES = ("dead_letter", "kept")
# Rows per statement: short write transactions beside a live webhook.
BATCH_ROWS = 2000


@dataclass(frozen=True)
class Compaction:
    """What one compaction did."""

    bodies_cleared: int
    duplicates_deleted: int
    bytes_freed: int


def compact_raw_bodies(session: Session, older_than: datetime, batch_rows: int = BATCH_ROWS) -> Compaction:
    """Clear the bodies of applied uplinks received before older_than and delete their further copies
    (at most batch_rows of each per call; call again while it reports work)."""
    # A copy that a dead letter names (a letter replayed as a copy of the same uplink the other integration
    # delivered and the bridge applied meanwhile) keeps its row, as the letter's history, and loses its
    # body: deleting it had failed on the letter's foreign key at every try, and nothing was compacted.
    lettered = select(DeadLetter.raw_uplink_id).where(DeadLetter.raw_uplink_id.is_not(None))
    applied = select(RawUplink.id).where(
        RawUplink.received_at < older_than,
        or_(RawUplink.status.in_(APPLIED_STATUSES),
            and_(RawUplink.status == DUPLICATE_STATUS, RawUplink.id.in_(lettered))),
        RawUplink.body != b"",
    ).limit(batch_rows)
    ids = list(session.scalars(applied))
    # A copy of a body still waiting as a dead letter (a network server's tries of a refused body) stays:
    # it is what the letter's `tries` counts, and the letter itself is never touched.
    waiting = select(RawUplink.id).where(RawUplink.status.in_(WAITING_STATUSES))
    copies = select(RawUplink.id).where(
        RawUplink.received_at < older_than, RawUplink.status == DUPLICATE_STATUS,
        RawUplink.duplicate_of.not_in(waiting), RawUplink.id.not_in(lettered),
    ).limit(batch_rows)
    copy_ids = list(session.scalars(copies))
    freed = 0
    if ids or copy_ids:
        freed = int(
            session.scalar(select(func.coalesce(func.sum(func.length(RawUplink.body)), 0)).where(
                RawUplink.id.in_(ids + copy_ids)
            )) or 0
        )
    if ids:
        session.execute(update(RawUplink).where(RawUplink.id.in_(ids)).values(body=b""))
    if copy_ids:
        session.execute(delete(RawUplink).where(RawUplink.id.in_(copy_ids)))
    if ids or copy_ids:
        log.info(
            "raw bodies compacted: %d cleared, %d copies deleted, %d bytes",
            len(ids),
            len(copy_ids),
            freed,
            extra={"bodies_cleared": len(ids), "duplicates_deleted": len(copy_ids), "bytes_freed": freed},
        )
    return Compaction(bodies_cleared=len(ids), duplicates_deleted=len(copy_ids), bytes_freed=freed)


def store_size(session: Session) -> dict[str, int]:
    """How big the store is: store_bytes (allocated) and used_bytes (allocated less free pages)."""
    if session.bind.dialect.name == "sqlite":
        page_size = int(session.execute(text("PRAGMA page_size")).scalar() or 0)
        pages = int(session.execute(text("PRAGMA page_count")).scalar() or 0)
        free = int(session.execute(text("PRAGMA freelist_count")).scalar() or 0)
        return {"store_bytes": page_size * pages, "used_bytes": page_size * (pages - free)}
    size = int(session.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
    return {"store_bytes": size, "used_bytes": size}
