"""A pooled PostgreSQL connection asked whether it is still alive only after a rest, not at every use.

SQLAlchemy's `pool_pre_ping` sends the server an empty statement each time a connection leaves the
pool: one round trip more for every batch of uplinks, the same for a batch of one as for a batch of
two hundred, paid while the webhook's senders wait for their answers. A connection handed back a
moment ago by the previous batch is alive as far as anything can tell; one that rested past
`IDLE_BEFORE_PING_S` may have been closed by the server (restarted, failed over to a standby, an
administrator's `pg_terminate_backend`, an idle timeout) and is pinged as before: a dead one is
dropped, with every connection pooled before it, and a new one opened in its place.

A connection that dies within that moment fails the statement that finds it out, as any connection
dying in a transaction does: SQLAlchemy then drops it and every connection pooled before it, and the
batch goes the two-step way on a new connection (`pipeline.store_and_process_batch`), so nothing
acknowledged is lost. A read (a ranger's device list, the dashboard) has no such second way: its
connection is pinged at every checkout, as with `pool_pre_ping` (`pinged_at_checkout`), or the first read
after an administrator ended the connections would be answered 503 while the store is up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# How long a connection may rest in the pool and still be used without a ping (seconds): far below
# any server's idle timeout, far above the gap between two batches of a busy bridge.
IDLE_BEFORE_PING_S = 1.0
# The connection record's note of when the connection came back to the pool (None: opened since).
RETURNED_AT = "tembo_returned_at"
# Whether the connections taken now are pinged whatever their rest (`pinged_at_checkout`).
_ALWAYS_PING: ContextVar[bool] = ContextVar("tembo_always_ping", default=False)


@contextmanager
def pinged_at_checkout() -> Iterator[None]:
    """Within it, a connection taken from the pool is pinged however briefly it rested (the store's reads)."""
    token = _ALWAYS_PING.set(True)
    try:
        yield
    finally:
        _ALWAYS_PING.reset(token)


def ping_after_rest(engine: Engine) -> None:
    """Make engine's pool ping a connection at checkout only when it rested more than
    `IDLE_BEFORE_PING_S` since it was last handed back (instead of `pool_pre_ping`, which pings at
    every checkout)."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _opened(_dbapi_connection: Any, record: Any) -> None:
        record.info[RETURNED_AT] = None  # just opened: alive

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(RETURNED_AT)
        if returned is None or (time.monotonic() - returned <= IDLE_BEFORE_PING_S and not _ALWAYS_PING.get()):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            log.info("a pooled store connection was closed while it rested; opening a new one",
                     extra={"rested_s": round(time.monotonic() - returned, 1), "error": str(error)[:200]})
            # as SQLAlchemy's own pre-ping: this connection and every one pooled before it dropped, and a
            # new one opened for this checkout
            raise exc.InvalidatePoolError() from error
