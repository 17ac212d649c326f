"""session.info entries that tell what a transaction holds (its locks), forgotten when it ends.

PostgreSQL keeps a transaction's locks (row locks, transaction-level advisory locks) until it commits
or rolls back; a savepoint's end releases only what was taken inside it. An entry named here is
dropped from `session.info` at the end of the session's transaction, not of a savepoint, so a later
transaction of the same session never believes it holds a lock it lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_HELD_KEYS: set[str] = set()


def held_until_transaction_end(key: str) -> str:
    """key (a session.info key), forgotten at the end of each transaction from now on."""
    _HELD_KEYS.add(key)
    return key


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the transaction's end, not a savepoint's: its locks are gone
        for key in _HELD_KEYS:
            session.info.pop(key, None)
