"""Accounts, API tokens and sign-in sessions, on the store's tables (one Session per unit of work).

Secrets are never stored: passwords as scrypt hashes (`passwords.py`), API tokens and session
tokens as SHA-256 (they are 256-bit random strings, so a fast hash is enough and lets the store look
them up). A token or session is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lora_bridge.access import passwords
from lora_bridge.access.roles import VISITOR, Viewer, role
from lora_bridge.errors import AuthenticationFailed, InvalidRequest, UnknownAccount
from lora_bridge.store.tables import ApiToken, SignInSession, UserAccount
from lora_bridge.store.utc import as_utc

TOKEN_PREFIX = "tembo_"
SESSION_PREFIX = "tembo-session_"
PREFIX_CHARS = 12  # how much of a token `tokens list` shows
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
DEFAULT_SESSION_HOURS = 12


@dataclass(frozen=True)
class AccountView:
    """An account as an admin sees it (no hash)."""

    username: str
    role: str
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class TokenView:
    """An API token as its list shows it: never the token itself."""

    token_id: int
    name: str
    prefix: str
    owner: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def active(self, now: datetime) -> bool:
        """True when the token is neither revoked nor expired at now."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class NewToken:
    """A token just made: `secret` is shown this once and stored only as a hash."""

    secret: str
    view: TokenView

    def __repr__(self) -> str:
        return f"NewToken(secret='***', view={self.view!r})"


def digest(secret: str) -> str:
    """SHA-256 hex of a token or session secret, as the store keeps it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_username(username: str) -> str:
    """username when it is 2-64 lowercase letters, digits and . _ @ -; InvalidRequest otherwise."""
    if not isinstance(username, str) or not USERNAME_PATTERN.match(username):
        raise InvalidRequest(
            f"username {username!r}: use 2-64 lowercase letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return username


def _check_role(name: str) -> str:
    try:
        role(name)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    return name


# Accounts ------------------------------------------------------------------------------------


def add_user(
    session: Session, username: str, role_name: str, password: str, now: datetime | None = None
) -> AccountView:
    """A new account with the hash of password (made at now, the bridge's clock; the wall clock when
    None); InvalidRequest when the name is taken or bad."""
    check_username(username)
    _check_role(role_name)
    try:
        hashed = passwords.hash_password(password)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    if session.get(UserAccount, username) is not None:
        raise InvalidRequest(f"an account {username!r} exists already")
    account = UserAccount(username=username, role=role_name, password_hash=hashed)
    if now is not None:
        account.created_at = account.password_changed_at = now
    session.add(account)
    session.flush()
    return account_view(account)


def account_view(account: UserAccount) -> AccountView:
    """One account row as a view."""
    return AccountView(
        username=account.username,
        role=account.role,
        created_at=account.created_at,
        password_changed_at=account.password_changed_at,
    )


def list_users(session: Session) -> list[AccountView]:
    """Every account, by username."""
    return [account_view(row) for row in session.scalars(select(UserAccount).order_by(UserAccount.username))]


def get_user(session: Session, username: str) -> UserAccount:
    """The account called username; UnknownAccount otherwise."""
    account = session.get(UserAccount, username)
    if account is None:
        raise UnknownAccount(f"no account {username!r}")
    return account


def remove_user(session: Session, username: str, now: datetime) -> None:
    """Delete an account; its API tokens are revoked and its sign-in sessions ended."""
    account = get_user(session, username)
    for token in session.scalars(select(ApiToken).where(ApiToken.owner == username, ApiToken.revoked_at.is_(None))):
        token.revoked_at = now
    end_sessions_of(session, username, now, "account_removed")
    session.delete(account)


def set_role(session: Session, username: str, role_name: str, now: datetime) -> tuple[str, int]:
    """Give username another role; its open sign-ins end (they were made for the old role) and its
    tokens of the old role stop working (`token_viewer` checks the owner's role). Returns (the old
    role, how many sign-ins ended)."""
    account = get_user(session, username)
    _check_role(role_name)
    old = account.role
    if old == role_name:
        return old, 0
    account.role = role_name
    return old, end_sessions_of(session, username, now, "role_changed")


def end_sessions_of(session: Session, username: str, now: datetime, reason: str) -> int:
    """End every open sign-in session of username for reason; how many ended."""
    ended = 0
    for sign_in in session.scalars(
        select(SignInSession).where(SignInSession.username == username, SignInSession.ended_at.is_(None))
    ):
        sign_in.ended_at = now
        sign_in.end_reason = reason
        ended += 1
    return ended


def set_password(session: Session, username: str, password: str, now: datetime) -> None:
    """A new password for username; its open sign-in sessions end."""
    account = get_user(session, username)
    try:
        account.password_hash = passwords.hash_password(password)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    account.password_changed_at = now
    end_sessions_of(session, username, now, "password_changed")


def check_password(session: Session, username: str, password: str) -> Viewer:
    """The viewer of username when password is right; AuthenticationFailed otherwise (the same
    message and about the same time for an unknown name and a wrong password)."""
    account = session.get(UserAccount, username) if isinstance(username, str) else None
    if account is None:
        passwords.burn_time(str(password))
        raise AuthenticationFailed("wrong username or password")
    if not passwords.verify_password(str(password), account.password_hash):
        raise AuthenticationFailed("wrong username or password")
    return Viewer(account.username, account.role)


# Sign-in sessions ----------------------------------------------------------------------------

# How often a live session's last_seen_at is written (a dashboard checks its session on every run).
LAST_SEEN_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionView:
    """A sign-in session as an admin sees it (never its secret)."""

    session_id: int
    username: str
    role: str
    client: str | None
    created_at: datetime
    last_seen_at: datetime | None
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None

    def active(self, now: datetime) -> bool:
        """True when the session has neither ended nor expired at now."""
        return self.ended_at is None and as_utc(self.expires_at) > now


def start_session(
    session: Session,
    viewer: Viewer,
    now: datetime,
    hours: float = DEFAULT_SESSION_HOURS,
    client: str | None = None,
) -> str:
    """A new sign-in session for viewer; returns its secret (stored only as a hash)."""
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    session.add(
        SignInSession(
            token_hash=digest(secret),
            username=viewer.username,
            role=viewer.role,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=hours),
            client=client[:64] if client else None,
        )
    )
    return secret


def live_session(session: Session, secret: str, now: datetime) -> SignInSession:
    """The row of a live sign-in session; AuthenticationFailed when unknown, ended or expired, or
    when its account is gone, has a newer password or another role."""
    if not isinstance(secret, str) or not secret.startswith(SESSION_PREFIX):
        raise AuthenticationFailed("signed out: sign in again")
    row = session.scalar(select(SignInSession).where(SignInSession.token_hash == digest(secret)))
    if row is None or row.ended_at is not None or as_utc(row.expires_at) <= now:
        raise AuthenticationFailed("signed out: sign in again")
    account = session.get(UserAccount, row.username)
    if (
        account is None
        or as_utc(account.password_changed_at) > as_utc(row.created_at)
        or account.role != row.role
    ):
        raise AuthenticationFailed("signed out: sign in again")
    return row


def session_viewer(session: Session, secret: str, now: datetime) -> tuple[Viewer, bool]:
    """The viewer of a live sign-in session, and whether its last_seen_at is due to be written
    (`touch_session`, at most once a LAST_SEEN_EVERY); AuthenticationFailed otherwise."""
    row = live_session(session, secret, now)
    due = row.last_seen_at is None or now - as_utc(row.last_seen_at) >= LAST_SEEN_EVERY
    return Viewer(row.username, row.role), due


def touch_session(session: Session, secret: str, now: datetime) -> None:
    """Note that the session of secret was used at now."""
    row = session.scalar(select(SignInSession).where(SignInSession.token_hash == digest(str(secret))))
    if row is not None and row.ended_at is None:
        row.last_seen_at = now


def session_expiry(session: Session, secret: str) -> datetime | None:
    """When the session of secret expires (None when unknown)."""
    row = session.scalar(select(SignInSession).where(SignInSession.token_hash == digest(str(secret))))
    return as_utc(row.expires_at) if row is not None else None


def end_session(session: Session, secret: str, now: datetime, reason: str = "signed_out") -> str | None:
    """Sign out: the session stops working. The username it was of, None when unknown or ended."""
    row = session.scalar(select(SignInSession).where(SignInSession.token_hash == digest(str(secret))))
    if row is None or row.ended_at is not None:
        return None
    row.ended_at = now
    row.end_reason = reason
    return row.username


def prune_sessions(session: Session, older_than: datetime) -> int:
    """Delete sign-in sessions that ended or expired before older_than; how many."""
    result = session.execute(
        delete(SignInSession).where(
            (SignInSession.expires_at < older_than)
            | (SignInSession.ended_at.is_not(None) & (SignInSession.ended_at < older_than))
        )
    )
    return int(result.rowcount or 0)


def list_sessions(session: Session, now: datetime, include_ended: bool = False) -> list[SessionView]:
    """Sign-in sessions, newest first: live ones only unless include_ended."""
    query = select(SignInSession).order_by(SignInSession.id.desc())
    if not include_ended:
        query = query.where(SignInSession.ended_at.is_(None), SignInSession.expires_at > now)
    return [
        SessionView(
            session_id=row.id,
            username=row.username,
            role=row.role,
            client=row.client,
            created_at=as_utc(row.created_at),
            last_seen_at=as_utc(row.last_seen_at) if row.last_seen_at else None,
            expires_at=as_utc(row.expires_at),
            ended_at=as_utc(row.ended_at) if row.ended_at else None,
            end_reason=row.end_reason,
        )
        for row in session.scalars(query)
    ]


# API tokens ----------------------------------------------------------------------------------


def create_token(
    session: Session, owner: str, name: str, role_name: str | None, now: datetime, expires_at: datetime | None = None
) -> NewToken:
    """A new API token for account owner, in owner's role (or the visitor role, which sees least)."""
    account = get_user(session, owner)
    role_name = _check_role(role_name or account.role)
    if role_name not in (account.role, VISITOR):
        raise InvalidRequest(
            f"a token of {owner!r} acts as {account.role!r} or {VISITOR!r}, not {role_name!r}"
        )
    if expires_at is not None and as_utc(expires_at) <= now:
        raise InvalidRequest("a token's expiry must lie in the future")
    if not name or not name.strip():
        raise InvalidRequest("a token needs a name (what uses it)")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=digest(secret),
        prefix=secret[:PREFIX_CHARS],
        name=name.strip(),
        owner=owner,
        role=role_name,
        created_at=now,
        expires_at=as_utc(expires_at) if expires_at else None,
    )
    session.add(row)
    session.flush()
    return NewToken(secret=secret, view=token_view(row))


def token_view(row: ApiToken) -> TokenView:
    """One token row as a view."""
    return TokenView(
        token_id=row.id,
        name=row.name,
        prefix=row.prefix,
        owner=row.owner,
        role=row.role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def list_tokens(session: Session) -> list[TokenView]:
    """Every API token (revoked and expired ones too), oldest first."""
    return [token_view(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(session: Session, token_id: int, now: datetime) -> TokenView:
    """Revoke a token by id: it is refused from now on."""
    row = session.get(ApiToken, int(token_id))
    if row is None:
        raise UnknownAccount(f"no API token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now
    return token_view(row)


def token_viewer(session: Session, secret: str, now: datetime) -> Viewer:
    """The viewer an API token acts as; AuthenticationFailed when unknown, revoked or expired, or
    when its owner is gone or no longer holds the token's role. Only reads (`stamp_token_use` writes)."""
    if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX):
        raise AuthenticationFailed("missing or unknown API token")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(secret)))
    if row is None:
        raise AuthenticationFailed("missing or unknown API token")
    if row.revoked_at is not None:
        raise AuthenticationFailed("API token revoked")
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        raise AuthenticationFailed("API token expired")
    account = session.get(UserAccount, row.owner)
    if account is None or row.role not in (account.role, VISITOR):
        raise AuthenticationFailed("API token's owner no longer holds its role")
    return Viewer(row.owner, row.role)


def stamp_token_use(session: Session, secret: str, now: datetime) -> None:
    """Note that the API token was used at now (`tembo tokens list` shows its last use)."""
    session.execute(update(ApiToken).where(ApiToken.token_hash == digest(secret)).values(last_used_at=now))
