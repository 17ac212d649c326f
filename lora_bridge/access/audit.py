"""The audit log: every read of positions (who, when, what, exact or coarse) and every change to
accounts and tokens. Written in the service layer, in the unit of work of the read itself; only
admins read it back (`Bridge.audit_log`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
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


def record_positions(
    session: Session,
    viewer: Viewer,
    action: str,
    animal_ids: Iterable[str | None],
    at: datetime,
    **detail: Any,
) -> None:
    """Log that viewer saw positions of animal_ids through action (exact or coarse, by its role)."""
    ids = sorted({str(a) for a in animal_ids if a is not None}, key=lambda a: (len(a), a))
    listed = {"animal_ids": ids[:MAX_LISTED_ANIMALS]} if ids else {}
    session.add(
        AuditEntry(
            at=at,
            username=viewer.username,
            role=viewer.role,
            action=action,
            precision=privacy.label(viewer),
            animals=len(ids),
            detail={**listed, **{k: v for k, v in detail.items() if v is not None}},
        )
    )


def record_change(session: Session, actor: Viewer, action: str, at: datetime, **detail: Any) -> None:
    """Log a change to accounts or tokens (user_added, token_revoked, ...) by actor."""
    session.add(
        AuditEntry(
            at=at, username=actor.username, role=actor.role, action=action, precision=None, animals=0, detail=detail
        )
    )


def record_failed_sign_in(session: Session, username: str, at: datetime) -> None:
    """Log a sign-in with a wrong password or an unknown username (the name as typed, cut to 64)."""
    session.add(
        AuditEntry(at=at, username=username[:64], role="", action="sign_in_failed", precision=None, animals=0, detail={})
    )


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
        )
        for row in rows
    ]
