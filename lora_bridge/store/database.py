"""The database handle: one engine, one Session per unit of work, portable between SQLite and PostgreSQL.

SQLite (the embedded default) is opened in WAL mode with a busy timeout, and write units of work
start with BEGIN IMMEDIATE, because the webhook, the demo and the dashboard use the file at once (the
lock tried every half millisecond until the busy timeout passes, `store.write_lock`).
`synchronous=FULL` by default: every commit fsyncs the WAL, so a body answered 2xx survives a power
cut or a failing disk (with NORMAL, the last commits before a crash of the machine can be lost).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, configure_mappers, sessionmaker
from sqlalchemy.pool import StaticPool

from lora_bridge.errors import StoreNotOpened
from lora_bridge.refusal_runs import RefusalRun
from lora_bridge.settings import DATABASE_CONNECT_TIMEOUT_S, password_masked
from lora_bridge.store import idle_ping, migrate, opened_file, postgres_times, write_lock
from lora_bridge.store.json_columns import json_text, json_value

log = logging.getLogger(__name__)


@dataclass
class Database:
    """The store's engines and session factories; `write()` and `read()` are units of work."""

    url: str
    write_engine: Engine
    read_engine: Engine
    _write_sessions: sessionmaker[Session]
    _read_sessions: sessionmaker[Session]

    _writers: WriterQueue | None = None
    # The run of raw bodies this store could not take, as the ingest's log says it (`refusal_runs`): made
    # with the store, read at every body it keeps (`ingest.store_raw`) and every batch (`pipeline`).
    refused_bodies: RefusalRun = field(default_factory=lambda: RefusalRun(
        logging.getLogger("lora_bridge.ingest"), "store cannot take bodies now"), repr=False)
    # The run of stored bodies this store could not apply (`pipeline.process_raw`: each tried again later),
    # said as the refused ones are: a line a body had hidden the first error under a restart.
    unapplied_bodies: RefusalRun = field(default_factory=lambda: RefusalRun(
        logging.getLogger("lora_bridge.pipeline"), "store unavailable while applying stored bodies"), repr=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A Session whose work is committed on success and rolled back on error."""
        if self._writers is None:
            with self._write_sessions() as session, session.begin():
                yield session
            return
        with self._writers, self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A Session for queries only; nothing it does is committed. Its connection is pinged when taken
        (`idle_ping.pinged_at_checkout`): a read has no second way if the server ended it."""
        with idle_ping.pinged_at_checkout(), self._read_sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


class WriterQueue:
    """The writers of one SQLite store in this process, let in one at a time in the order they came
    (re-entrant for a thread already in). SQLite lets a waiting writer poll the lock with sleeps in
    between, so a thread that commits batch after batch (the ingest group commit) would starve the
    outbox's or a ranger's write past the busy timeout; in this queue each waits its turn."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> WriterQueue:
        me = threading.get_ident()
        with self._changed:
            if self._owner == me:
                self._depth += 1
                return self
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._changed.wait()
            self._owner = me
            self._depth = 1
        return self

    def waiting(self) -> int:
        """How many writers wait for their turn."""
        with self._changed:
            return self._next_ticket - self._serving - (1 if self._owner is not None else 0)

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._serving += 1
                self._changed.notify_all()


SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def open_database(
    url: str, busy_timeout_ms: int = 10_000, create: bool = True, synchronous: str = "FULL",
    connect_timeout_s: int = DATABASE_CONNECT_TIMEOUT_S,
) -> Database:
    """Open the store at url; by default bring its schema to the newest migration first. A PostgreSQL
    connection not opened within connect_timeout_s fails (a store that does not answer is unavailable).

    StoreNotOpened when it cannot be opened as configured, saying which part of the URL or the
    server is wrong (`store_not_opened`)."""
    parsed = parse_database_url(url)
    if synchronous.upper() not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SQLITE_SYNCHRONOUS}, got {synchronous!r}")
    engines: list[Engine] = []
    try:
        if parsed.get_backend_name() == "sqlite":
            write_engine = _sqlite_engine(url, busy_timeout_ms, writer=True, synchronous=synchronous)
            engines.append(write_engine)
            in_memory = parsed.database in (None, "", ":memory:")
            read_engine = (
                write_engine if in_memory else _sqlite_engine(url, busy_timeout_ms, writer=False, synchronous=synchronous)
            )
            engines.append(read_engine)
        else:
            write_engine = create_engine(url, connect_args=_store_connect_args(parsed, connect_timeout_s))
            # a connection pinged only after a rest, not before each batch: a round trip a batch fewer
            idle_ping.ping_after_rest(write_engine)
            # times read as datetime.UTC itself: UTCDateTime keeps them as they are (`postgres_times`)
            postgres_times.sessions_in_utc(write_engine)
            engines.append(write_engine)
            read_engine = write_engine
        # Read first, without the write lock: a store at the newest revision opens while another program
        # holds SQLite's write lock (the bridge then answers 503 until it is free; it had refused to start).
        if create and migrate.current_revision(read_engine) != migrate.head_revision():
            migrate.upgrade(write_engine)
    except Exception as error:
        for engine in set(engines):  # no connection left open to a store that was not opened
            engine.dispose()
        raise store_not_opened(error, parsed) from error
    # The ORM's mappers are set up once per process; done here, at start, rather than by the first
    # batch of uplinks, whose answers would wait for it (~0.1 s).
    configure_mappers()
    log.info("store opened", extra={"database": parsed.render_as_string(hide_password=True)})
    return Database(
        url=url,
        write_engine=write_engine,
        read_engine=read_engine,
        _write_sessions=sessionmaker(write_engine, expire_on_commit=False),
        _read_sessions=sessionmaker(read_engine, expire_on_commit=False),
        _writers=WriterQueue() if parsed.get_backend_name() == "sqlite" else None,
    )


# The URLs Tembo's store runs on, as an operator writes them.
URL_EXAMPLES = "sqlite:///var/tembo.db (a file) or postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
# What PostgreSQL says (libpq's text: a refused connection has no SQLSTATE) of a refused login, and of a
# database that does not exist.
LOGIN_REFUSED = re.compile(r"authentication failed|no password supplied|role \S+ does not exist|no pg_hba.conf entry")
NO_SUCH_DATABASE = re.compile(r"database \S+ does not exist")


def parse_database_url(url: str) -> URL:
    """The parsed store URL; StoreNotOpened when it does not read or names a database Tembo does not
    run on (its password masked in the message)."""
    shown = password_masked(url)
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise StoreNotOpened(f"the database URL {shown!r} does not read as one: write {URL_EXAMPLES}") from None
    if "@" in (parsed.host or ""):
        # The password ends at the first '@': the bridge had gone looking for a host named after the rest
        # of the password ("no PostgreSQL answers at ssword@db"), and shown that rest in the message.
        raise StoreNotOpened(f"the database URL {shown!r} holds an '@' before the one that ends the password: "
                             "percent-encode the password's special characters (@ as %40, % as %25, e.g. "
                             "python -c 'import urllib.parse; print(urllib.parse.quote(\"PASSWORD\", safe=\"\"))')")
    if parsed.get_backend_name() == "postgres":  # a hosting provider's DATABASE_URL often reads so
        raise StoreNotOpened(f"the database URL {parsed.render_as_string(hide_password=True)!r} starts with "
                             "postgres://, a name of PostgreSQL that SQLAlchemy no longer reads: write it "
                             "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE")
    if parsed.get_backend_name() == "sqlite" and parsed.host:
        # It had been told "the file 'tembo.db' cannot be used as the store": its folder read as a host.
        raise StoreNotOpened(f"the SQLite URL {shown!r} reads {parsed.host!r} as a host: a SQLite URL has three "
                             "slashes before a relative path (sqlite:///var/tembo.db), four before an absolute "
                             "one (sqlite:////srv/tembo/tembo.db)")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreNotOpened(f"the database URL {parsed.render_as_string(hide_password=True)!r} names a "
                             f"{parsed.get_backend_name()!r} database; Tembo's store is SQLite or PostgreSQL "
                             f"with PostGIS: write {URL_EXAMPLES}")
    return parsed


def store_not_opened(error: BaseException, parsed: URL) -> StoreNotOpened:
    """What went wrong opening the store at parsed, from the driver's error: which part to check."""
    if isinstance(error, StoreNotOpened):
        return error
    shown = parsed.render_as_string(hide_password=True)
    cause = getattr(error, "orig", None) or error
    said = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
    if isinstance(error, migrate.StoreFromANewerTembo):
        why = (f"a newer Tembo migrated it to revision {error.revision!r}, past this Tembo's newest "
               f"({migrate.head_revision()}): run that Tembo (or a newer one) on it, or restore the store's "
               "backup from before that upgrade; it was left as it is")
        return StoreNotOpened(f"cannot open the store {shown}: {why}")
    if isinstance(error, exc.NoSuchModuleError | ModuleNotFoundError):
        why = f"its driver {parsed.drivername!r} is not installed here (write {URL_EXAMPLES})"
    elif parsed.get_backend_name() == "sqlite" and "locked" in said:
        why = "another program holds its write lock while it must be migrated: run this again once it is done"
    elif parsed.get_backend_name() == "sqlite":
        why = f"the file {parsed.database!r} cannot be used as the store"
    elif "postgis" in said.lower() or "postgis" in str(getattr(error, "statement", "")).lower():
        why = (f"PostGIS is not in database {parsed.database!r}, and this user may not add it: a superuser "
               f"runs CREATE EXTENSION postgis; in it (the server's postgis package installed)")
    elif LOGIN_REFUSED.search(said):
        why = f"the server refused the login of user {parsed.username!r}: check the user name and password"
    elif NO_SUCH_DATABASE.search(said):
        why = f"the server has no database {parsed.database!r}: create it (createdb -O {parsed.username} ...)"
    elif isinstance(error, exc.OperationalError) and "connection" in said.lower():
        why = (f"no PostgreSQL answers at {parsed.host}:{parsed.port or 5432}: check the host and port, and "
               "that the server runs and listens there")
    else:
        why = "the store refused to open"
    return StoreNotOpened(f"cannot open the store {shown}: {why} ({said})")


def postgres_connect_args(parsed: URL, connect_timeout_s: int) -> dict[str, object]:
    """libpq's connect_timeout, unless the URL sets its own: without it a connection to a host that drops
    packets (or a port where nothing answers the start-up) waits for ever, and so does the webhook
    request behind it, past the network server's patience, while its retries pile up."""
    if parsed.get_driver_name() not in ("psycopg", "psycopg2") or "connect_timeout" in parsed.query:
        return {}
    return {"connect_timeout": int(connect_timeout_s)}


def _store_connect_args(parsed: URL, connect_timeout_s: int) -> dict[str, object]:
    """The bridge's store connections' arguments: `postgres_connect_args`, and with psycopg (3) its
    cursor that makes a result's column descriptions only when read (`columns_on_read`)."""
    args = postgres_connect_args(parsed, connect_timeout_s)
    if parsed.get_driver_name() == "psycopg":  # imported for PostgreSQL only: SQLite needs no psycopg
        from lora_bridge.store.columns_on_read import ColumnsOnReadCursor

        args["cursor_factory"] = ColumnsOnReadCursor
    return args


def _sqlite_engine(url: str, busy_timeout_ms: int, writer: bool, synchronous: str = "FULL") -> Engine:
    """An engine on the SQLite file at url; writer: its transactions take the write lock at their start
    (`BEGIN IMMEDIATE`, tried every half millisecond: `write_lock`), else they only read (`BEGIN`)."""
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    if not in_memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        poolclass=StaticPool if in_memory else None,
        json_serializer=json_text,
        json_deserializer=json_value,
    )
    if not in_memory:  # a file deleted or replaced under the bridge answers 503, not 200-and-lost
        opened_file.guard(engine, Path(parsed.database), on_begin=not writer)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event own the transaction instead of pysqlite's implicit BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        if writer:
            # BEGIN IMMEDIATE through SQLAlchemy (its errors, its events); the busy-timeout PRAGMAs
            # around it straight on the same sqlite3 connection (`write_lock.begin_immediate`)
            write_lock.begin_immediate(connection.exec_driver_sql, busy_timeout_ms / 1000,
                                       pragma=connection.connection.driver_connection.execute)
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def count_writes(db: Database) -> dict[str, int]:
    """Counters of the SQL statements and commits on db's write engine from now on (kept up to date
    in the dict returned: the bridge bench and the applier process report them)."""
    counts = {"statements": 0, "commits": 0}

    def statement(*_args: object) -> None:
        counts["statements"] += 1

    def commit(*_args: object) -> None:
        counts["commits"] += 1

    event.listen(db.write_engine, "before_cursor_execute", statement)
    event.listen(db.write_engine, "commit", commit)
    return counts
