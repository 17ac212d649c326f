"""SQLite's write lock taken by trying it every half millisecond, for files two processes write.

The store and the intake journal are each written by two processes: the webhook's process (the journal's
appends; the store's outbox, timer and rangers' writes) and the intake applier's (the store's batches;
the journal's deletes of what a batch applied). SQLite's own wait for a taken lock (the connection's
busy timeout) sleeps between its tries for 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and 100 ms: a
writer that finds the lock held for a millisecond may sleep 8, 18, 33 or 78 ms before it takes it.
Timed by hand around the bridge bench's run at half the rate (`webhook_run`, 5 Dec; the bench prints
only its effect, `sqlite_half_rate_p99_ms`): the applier's delete of a batch's journal entries, behind
the webhook's appends of the next bodies, took 9, 19, 34 and 80 ms,
and the bodies waiting on that batch answered late. Here a writer tries `BEGIN IMMEDIATE` itself,
every POLL_S, with SQLite's wait switched off, until the connection's busy timeout has passed (then it
fails as SQLite would: "database is locked").
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

POLL_S = 0.0005
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_answer = threading.local()  # .by: the monotonic time a writer of this thread must have answered by


def clock() -> float:
    """The clock the waits here are measured on (monotonic seconds)."""
    return time.monotonic()


@contextmanager
def answering_by(deadline: float | None) -> Iterator[None]:
    """Within: this thread waits for a write lock until deadline (`clock()` time) at the latest, not
    the connection's whole busy timeout; None: no such limit. For a sender that gives up on its answer
    (The Things Stack ends a webhook request after 10 s): it gets "database is locked", its 503, in time."""
    before = getattr(_answer, "by", None)
    _answer.by = deadline
    try:
        yield
    finally:
        _answer.by = before


def begin_immediate(execute: Callable[[str], Any], busy_timeout_s: float,
                    pragma: Callable[[str], Any] | None = None) -> None:
    """Start a write transaction with `execute` (a connection's or cursor's, raw or SQLAlchemy's),
    waiting for the write lock up to busy_timeout_s (or until this thread's `answering_by` deadline,
    when sooner; tried once at least) in steps of POLL_S; the connection's busy timeout is
    busy_timeout_s again afterwards. An error other than a taken lock is raised at once.
    pragma: runs the two busy-timeout PRAGMAs on the same connection (default: execute); the store
    passes its raw sqlite3 connection's, as a PRAGMA that only sets a number needs none of SQLAlchemy's
    statement machinery (about 150 Python calls each, twice per batch)."""
    pragma = pragma or execute
    pragma("PRAGMA busy_timeout = 0")
    try:
        deadline = clock() + busy_timeout_s
        answer_by = getattr(_answer, "by", None)
        if answer_by is not None:
            deadline = min(deadline, answer_by)
        while True:
            try:
                execute("BEGIN IMMEDIATE")
                return
            except Exception as error:
                if not is_lock_taken(error) or clock() >= deadline:
                    raise
            time.sleep(POLL_S)
    finally:
        pragma(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")


def is_lock_taken(error: BaseException) -> bool:
    """error (sqlite3's, or SQLAlchemy's around it) says another connection holds the lock."""
    cause = getattr(error, "orig", None) or error
    return isinstance(cause, sqlite3.OperationalError) and getattr(cause, "sqlite_errorcode", None) in _BUSY_CODES
