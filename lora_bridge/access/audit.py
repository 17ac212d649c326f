"""The audit log: every read of positions (who, when, what, exact or coarse) and every change to
accounts and tokens, sign-in failures and lockouts. Written in the service layer, in the unit of
work of the read itself; only admins read it back (`Bridge.audit_log`). Reads are counted one row
per viewer, kind and minute; lines older than `audit_retention_days` are deleted (`prune`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lora_bridge.access import privacy
from lora_bridge.access.roles import Viewer
from lora_bridge.store.tables import AuditEntry

# At most this many animal ids are listed in one entry's detail (a big herd is summarised by its count).
MAX_LISTED_ANIMALS = 50


@dataclass(frozen=True)
class AuditView:
    """One line of the audit log."""

    entry_id: int
    at: datetime
    username: str
    role: str
    action: str
    precision: str | None
    animals: int
    detail: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    last_at: datetime | None = None


@dataclass(frozen=True)
class PositionsRead:
    """What one read of positions hands a viewer, as the audit log records it: kept with an answer
    that is handed out again (`Bridge.audit_deferred`, `Bridge.record_reads`), so every hand-out
    is logged as the read itself was."""

    viewer: Viewer
    action: str
    animal_ids: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict)


def record_positions(
    session: Session,
    viewer: Viewer,
    action: str,
    animal_ids: Iterable[str | None],
    at: datetime,
    **detail: Any,
) -> None:
    """Log that viewer saw positions of animal_ids through action (exact or coarse, by its role).

    Reads of one viewer, action and precision within one clock minute share a row: a dashboard that
    refreshes every few seconds adds one row a minute, whose `repeats` counts the reads, `last_at`
    is the last one, `animals` the most animals one read handed out and `animal_ids` the union of
    the animals listed (up to MAX_LISTED_ANIMALS)."""
    ids = sorted({str(a) for a in animal_ids if a is not None}, key=_animal_order)
    precision = privacy.label(viewer)
    minute = at.replace(second=0, microsecond=0)
    row = session.scalar(
        select(AuditEntry)
        .where(
            AuditEntry.username == viewer.username,
            AuditEntry.role == viewer.role,
            AuditEntry.action == action,
            AuditEntry.precision == precision,
            AuditEntry.at >= minute,
            AuditEntry.at < minute + timedelta(minutes=1),
        )
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    extra = {k: v for k, v in detail.items() if v is not None}
    if row is None:
        listed = {"animal_ids": ids[:MAX_LISTED_ANIMALS]} if ids else {}
        session.add(
            AuditEntry(
                at=at,
                username=viewer.username,
                role=viewer.role,
                action=action,
                precision=precision,
                animals=len(ids),
                detail={**listed, **extra},
                repeats=1,
                last_at=at,
            )
        )
        return
    merged = dict(row.detail or {})
    union = sorted(set(merged.get("animal_ids", [])) | set(ids), key=_animal_order)
    if union:
        merged["animal_ids"] = union[:MAX_LISTED_ANIMALS]
    for key, value in extra.items():  # a time range widens to cover every read; counts keep the most
        earlier = merged.get(key)
        if key == "since" and earlier is not None:
            merged[key] = min(earlier, value)
        elif isinstance(value, int) and isinstance(earlier, int):
            merged[key] = max(earlier, value)
        elif isinstance(value, list) and isinstance(earlier, list):
            merged[key] = sorted({*earlier, *value})[:MAX_LISTED_ANIMALS]
        else:
            merged[key] = value
    row.detail = merged
    row.animals = max(row.animals or 0, len(ids))
    row.repeats = (row.repeats or 1) + 1
    row.last_at = at


def _animal_order(animal_id: str) -> tuple[int, str]:
    return (len(animal_id), animal_id)


def record_change(session: Session, actor: Viewer, action: str, at: datetime, **detail: Any) -> None:
    """Log a change to accounts or tokens (user_added, token_revoked, ...) by actor."""
    session.add(
        AuditEntry(
            at=at, username=actor.username, role=actor.role, action=action, precision=None, animals=0, detail=detail
        )
    )


def record_failed_sign_in(session: Session, username: str, at: datetime, client: str | None = None) -> None:
    """Log a sign-in with a wrong password or an unknown username (the name as typed, cut to 64)."""
    session.add(
        AuditEntry(
            at=at,
            username=str(username)[:64],
            role="",
            action="sign_in_failed",
            precision=None,
            animals=0,
            detail={"client": client} if client else {},
        )
    )


def record_security(session: Session, username: str, action: str, at: datetime, **detail: Any) -> None:
    """Log a security event without a signed-in actor (a lockout, a refused API token)."""
    session.add(
        AuditEntry(
            at=at,
            username=str(username)[:64],
            role="",
            action=action,
            precision=None,
            animals=0,
            detail={k: v for k, v in detail.items() if v is not None},
        )
    )


def prune(session: Session, older_than: datetime) -> int:
    """Delete audit lines from before older_than (the retention period); how many."""
    result = session.execute(delete(AuditEntry).where(AuditEntry.at < older_than))
    return int(result.rowcount or 0)


def entries(
    session: Session,
    since: datetime | None = None,
    username: str | None = None,
    limit: int = 1000,
) -> list[AuditView]:
    """Audit lines, newest first (from since on, of username only, when given)."""
    query = select(AuditEntry)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if username is not None:
        query = query.where(AuditEntry.username == username)
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))
    return [
        AuditView(
            entry_id=row.id,
            at=row.at,
            username=row.username,
            role=row.role,
            action=row.action,
            precision=row.precision,
            animals=row.animals,
            detail=dict(row.detail or {}),
            repeats=row.repeats or 1,
            last_at=row.last_at or row.at,
        )
        for row in rows
    ]
