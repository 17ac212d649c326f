"""UTC times bound and read on PostgreSQL in one step (`utc.UTCDateTime`'s processors there).

The store's times are `timestamp with time zone` columns (every migration declares them so), and psycopg
takes and gives aware datetimes for them: a time bound is the instant it names, whatever its zone, and a
time read comes in the session's time zone, as `datetime.UTC` itself when the session's zone is 'UTC'
(psycopg's own table of zones). So the store's connections set their session to UTC
(`sessions_in_utc`), and a time bound or read already in UTC passes through one Python call and
nothing more, where `UTCDateTime`'s two steps (its processor, then `process_bind_param` or
`process_result_value`, then `as_utc`, then `astimezone`) cost three to four: every fix, summary,
reading and raw row of an uplink binds several times and the rules read hundreds a batch.
Anything else (a naive time, taken as UTC; another zone; a session in another zone) is turned to
aware UTC exactly as `utc.as_utc` does, so the values are the same as the two-step way's.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from sqlalchemy import Engine, event

from lora_bridge.store.utc import as_utc

log = logging.getLogger(__name__)

# The session setting that makes psycopg read a `timestamp with time zone` as `datetime.UTC` itself.
SESSION_UTC = "SET TIME ZONE 'UTC'"


def as_utc_at_once(value: Any) -> Any:
    """A time bound to or read from a UTC time column on PostgreSQL, as aware UTC: an aware UTC datetime
    (every time the bridge makes; every time psycopg reads in a UTC session) as it is, any other as
    `as_utc` makes it (a naive one taken as UTC, another zone converted), None as None."""
    if value is None or value.tzinfo is UTC:
        return value
    return as_utc(value)


def sessions_in_utc(engine: Engine) -> None:
    """Set the session time zone of every connection engine opens to UTC (committed, so it outlives the
    pool's rollbacks): psycopg then reads the store's times as `datetime.UTC` itself and
    `as_utc_at_once` keeps them as they are. One statement a connection, when the pool opens it; no SQL
    of the store depends on the session's zone (times are compared and stored as instants)."""

    @event.listens_for(engine, "connect")
    def _in_utc(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(SESSION_UTC)
        dbapi_connection.commit()
        log.debug("store connection's session time zone set to UTC", extra={"engine": engine.url.render_as_string()})
