"""Sign-in lockout: repeated failures for one username, or from one client address, lock it out for
a time that doubles with each lock; an admin lifts a lock (`tembo users unlock`).

    scope "user"          the username as typed (known or not: both answer alike)
    scope "client"        the address a dashboard sign-in came from
    scope "token_client"  the address an HTTP API request with a wrong token came from

A scope's count starts again after a quiet `WINDOW`, and a username's after a right password. While
locked, an attempt is refused without looking at the password, so a lock gives nothing away; the
first lock of a run and every lift are written to the audit log by the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import SignInThrottle
from lora_bridge.store.utc import as_utc

USER = "user"
CLIENT = "client"
TOKEN_CLIENT = "token_client"
SCOPES = (USER, CLIENT, TOKEN_CLIENT)

# Failures allowed before the first lock, per scope: a client may mistype for several people (a
# shared control-room machine), a token client is a program that should not guess at all.
FREE_FAILURES = {USER: 5, CLIENT: 20, TOKEN_CLIENT: 10}
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(hours=1)
WINDOW = timedelta(minutes=15)  # failures further apart than this start a new count
MAX_KEY_CHARS = 128


@dataclass(frozen=True)
class Lock:
    """A scope's key that may not try now, until `until`."""

    scope: str
    key: str
    until: datetime

    def retry_after_s(self, now: datetime) -> int:
        """Whole seconds until the lock ends (at least 1)."""
        return max(1, int((self.until - now).total_seconds() + 0.999))


@dataclass(frozen=True)
class ThrottleView:
    """One throttled key as an admin sees it."""

    scope: str
    key: str
    failures: int
    locks: int
    last_failure_at: datetime
    locked_until: datetime | None


def lock_length(locks: int) -> timedelta:
    """How long the locks-th lock in a row lasts: 30 s, 1 min, 2 min, ... up to an hour."""
    return min(FIRST_LOCK * (2 ** max(0, locks - 1)), LONGEST_LOCK)


def _key(key: str) -> str:
    return str(key)[:MAX_KEY_CHARS]


def _row(session: Session, scope: str, key: str) -> SignInThrottle | None:
    return session.scalar(select(SignInThrottle).where(SignInThrottle.scope == scope, SignInThrottle.key == _key(key)))


def active_lock(session: Session, keys: dict[str, str | None], now: datetime) -> Lock | None:
    """The lock that lasts longest among keys ({scope: key}, None keys skipped) at now, if any."""
    found: Lock | None = None
    for scope, key in keys.items():
        if key is None:
            continue
        row = _row(session, scope, key)
        if row is None or row.locked_until is None or as_utc(row.locked_until) <= now:
            continue
        until = as_utc(row.locked_until)
        if found is None or until > found.until:
            found = Lock(scope, row.key, until)
    return found


def record_failure(session: Session, scope: str, key: str, now: datetime) -> Lock | None:
    """Count one failure of key in scope; the lock it earns now, if this failure earns one."""
    row = _row(session, scope, key)
    if row is None:
        row = SignInThrottle(scope=scope, key=_key(key), failures=0, locks=0, last_failure_at=now)
        session.add(row)
    elif now - as_utc(row.last_failure_at) > WINDOW and not _locked(row, now):
        row.failures = 0
        if row.locked_until is None or now - as_utc(row.locked_until) > WINDOW:
            row.locks = 0
    row.failures = (row.failures or 0) + 1
    row.last_failure_at = now
    if row.failures < FREE_FAILURES[scope]:
        return None
    row.failures = 0
    row.locks = (row.locks or 0) + 1
    row.locked_until = now + lock_length(row.locks)
    session.flush()
    return Lock(scope, row.key, as_utc(row.locked_until))


def _locked(row: SignInThrottle, now: datetime) -> bool:
    return row.locked_until is not None and as_utc(row.locked_until) > now


def clear(session: Session, scope: str, key: str) -> bool:
    """Forget key's failures and lock in scope (a right password, or an admin's unlock); True when
    there was something to forget."""
    result = session.execute(
        delete(SignInThrottle).where(SignInThrottle.scope == scope, SignInThrottle.key == _key(key))
    )
    return bool(result.rowcount)


def listing(session: Session, now: datetime) -> list[ThrottleView]:
    """Every key with failures or a lock, locked ones first."""
    rows = session.scalars(select(SignInThrottle).order_by(SignInThrottle.scope, SignInThrottle.key)).all()
    views = [
        ThrottleView(
            scope=row.scope,
            key=row.key,
            failures=row.failures,
            locks=row.locks,
            last_failure_at=as_utc(row.last_failure_at),
            locked_until=as_utc(row.locked_until) if _locked(row, now) else None,
        )
        for row in rows
    ]
    return sorted(views, key=lambda v: (v.locked_until is None, v.scope, v.key))


def prune(session: Session, now: datetime) -> int:
    """Drop keys whose last failure and lock are both older than WINDOW past; how many."""
    cutoff = now - WINDOW - LONGEST_LOCK
    result = session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.last_failure_at < cutoff,
            (SignInThrottle.locked_until.is_(None)) | (SignInThrottle.locked_until < cutoff),
        )
    )
    return int(result.rowcount or 0)
