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
- dead letters, bodies kept for inspection and bodies not yet processed are never touched here.

Dead letters have a retention of their own (`compact_dead_letters`, since 7 December; a flood of 256 KiB
garbage bodies had kept its space forever, twice: the letter's body and its raw row's): a letter replayed
after a fix is deleted `dead_letter_retention_days` after its replay; a letter still waiting is never
deleted, but while the waiting letters' bodies pass `dead_letter_body_budget_bytes`, the largest are
trimmed to their first `TRIMMED_BODY_BYTES` (the letter, its raw row and that row's copies), and the
letter's reason says so. The bridge's timer runs it every `rules_every_s`: a run first asks both questions
in one pass over the letters (reading no body: a length comes from the row), and reads more only for work.

SQLite reuses the freed pages, so the file stops growing rather than shrinking (VACUUM shrinks it);
PostgreSQL's autovacuum does the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from lora_bridge.store.tables import DeadLetter, RawUplink
from lora_bridge.store.utc import utc_now

log = logging.getLogger(__name__)

# Statuses whose body has been applied: compacted once older than the retention time.
APPLIED_STATUSES = ("processed", "recorded")
DUPLICATE_STATUS = "duplicate"
# Statuses of bodies waiting for a fix (dead letters, kinds kept for inspection): never compacted.
WAITING_STATUSES = ("dead_letter", "kept")
# Rows per statement: short write transactions beside a live webhook.
BATCH_ROWS = 2000
# What a waiting dead letter's body keeps when the letters' bodies pass their budget: enough to tell
# what sent it (a JSON body's ids, a Protobuf message's first fields).
TRIMMED_BODY_BYTES = 4096


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


@dataclass(frozen=True)
class DeadLetterCompaction:
    """What one compaction of dead letters did."""

    letters_deleted: int
    bodies_trimmed: int
    bytes_freed: int


def compact_dead_letters(session: Session, replayed_before: datetime, body_budget_bytes: int,
                         batch_rows: int = BATCH_ROWS) -> DeadLetterCompaction:
    """Delete the dead letters replayed before replayed_before, then trim the largest bodies of the
    waiting ones to their first `TRIMMED_BODY_BYTES` until their bodies fit body_budget_bytes (at most
    batch_rows of each per call; call again while it reports work)."""
    size = func.length(DeadLetter.body)
    waiting = DeadLetter.replayed_at.is_(None)
    replayed_long_ago = DeadLetter.replayed_at < replayed_before
    # One pass over the letters says whether there is anything to do (the table has no index on these
    # columns): most runs find none replayed long ago and the waiting ones within their budget, and read
    # no more. The bodies are not read for their length (a TOAST pointer, a SQLite record header holds it).
    due, waiting_bytes = session.execute(select(
        func.count(case((replayed_long_ago, 1))), func.coalesce(func.sum(case((waiting, size))), 0))).one()
    done = []
    if due:
        done = session.execute(select(DeadLetter.id, size).where(replayed_long_ago).limit(batch_rows)).all()
        session.execute(delete(DeadLetter).where(DeadLetter.id.in_([letter_id for letter_id, _ in done])))
    freed = sum(int(length or 0) for _, length in done)
    over = int(waiting_bytes or 0) - body_budget_bytes
    trimmed = 0
    if over > 0:
        largest = session.execute(select(DeadLetter.id, DeadLetter.raw_uplink_id, size)
                                  .where(waiting, size > TRIMMED_BODY_BYTES)
                                  .order_by(size.desc(), DeadLetter.id).limit(batch_rows)).all()
        for letter_id, raw_uplink_id, length in largest:
            if over <= 0:
                break
            freed += _trim_letter(session, letter_id, raw_uplink_id, int(length), body_budget_bytes)
            over -= int(length) - TRIMMED_BODY_BYTES
            trimmed += 1
    if done or trimmed:
        log.warning(
            "dead letters compacted: %d replayed ones deleted, dead letter bodies trimmed: %d (to their first %d "
            "bytes, over a budget of %d), %d bytes",
            len(done), trimmed, TRIMMED_BODY_BYTES, body_budget_bytes, freed,
            extra={"letters_deleted": len(done), "bodies_trimmed": trimmed, "bytes_freed": freed},
        )
    return DeadLetterCompaction(letters_deleted=len(done), bodies_trimmed=trimmed, bytes_freed=freed)


def _trim_letter(session: Session, letter_id: int, raw_uplink_id: int | None, length: int, budget: int) -> int:
    """Trim a waiting letter's body, its raw row's and that row's copies' to their first bytes, and say so
    in its reason; the bytes freed."""
    note = (f" [body trimmed on {utc_now():%Y-%m-%d} to its first {TRIMMED_BODY_BYTES} of {length} bytes: "
            f"the waiting dead letters' bodies passed their budget of {budget} bytes]")
    session.execute(update(DeadLetter).where(DeadLetter.id == letter_id).values(
        body=func.substr(DeadLetter.body, 1, TRIMMED_BODY_BYTES), reason=DeadLetter.reason + note))
    freed = length - TRIMMED_BODY_BYTES
    if raw_uplink_id is not None:
        rows = or_(RawUplink.id == raw_uplink_id, RawUplink.duplicate_of == raw_uplink_id)
        raw_bytes = int(session.scalar(select(func.coalesce(func.sum(func.length(RawUplink.body)), 0)).where(
            rows, func.length(RawUplink.body) > TRIMMED_BODY_BYTES)) or 0)
        raw_rows = session.execute(update(RawUplink).where(rows, func.length(RawUplink.body) > TRIMMED_BODY_BYTES)
                                   .values(body=func.substr(RawUplink.body, 1, TRIMMED_BODY_BYTES))).rowcount
        freed += raw_bytes - raw_rows * TRIMMED_BODY_BYTES
    log.info("dead letter body trimmed dead_letter_id=%d raw_uplink_id=%s: %d of %d bytes kept", letter_id,
             raw_uplink_id, TRIMMED_BODY_BYTES, length,
             extra={"dead_letter_id": letter_id, "raw_uplink_id": raw_uplink_id, "body_bytes": length})
    return freed


def store_size(session: Session) -> dict[str, int]:
    """How big the store is: store_bytes (allocated) and used_bytes (allocated less free pages)."""
    if session.bind.dialect.name == "sqlite":
        page_size = int(session.execute(text("PRAGMA page_size")).scalar() or 0)
        pages = int(session.execute(text("PRAGMA page_count")).scalar() or 0)
        free = int(session.execute(text("PRAGMA freelist_count")).scalar() or 0)
        return {"store_bytes": page_size * pages, "used_bytes": page_size * (pages - free)}
    size = int(session.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
    return {"store_bytes": size, "used_bytes": size}
