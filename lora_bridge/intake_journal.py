"""The durable intake's journal: webhook bodies kept in a small SQLite file of their own beside a SQLite
store (`<store>-intake`), so answering a network server never waits for the store's write lock, which
the transactions applying earlier bodies hold (SQLite lets one writer in at a time).

A body is answered 2xx once its journal row is committed (WAL, the store's `synchronous`, FULL by
default: fsynced). The applier moves journal rows into the store (raw row, decoding, rules, in one
transaction), then deletes them from the journal (the applier process: once that transaction is on
disk, `lora_bridge.journal_release`). A crash between those two commits leaves rows the
store already holds: when an applier starts, each journal row is looked up in the store by its arrival
time and body before it is applied, so none is applied twice.

Two processes may share the file (WAL, normal locking): the webhook process that writes it and,
with `intake_applier="process"`, the applier process that reads entries by id and deletes them. One
webhook process at a time writes a journal (an exclusive `flock` on `<journal>.owner`, released by
the kernel when the process dies): a second webhook process in durable mode on the same store refuses
to start. One applier at a time applies it (`<journal>.applier`, taken blocking): an applier started
while a previous one is still finishing its batch waits for it, so no entry is applied by two.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from lora_bridge.errors import JournalNotOpened, StoreUnavailable
from lora_bridge.store import write_lock
from lora_bridge.store.database import Database
from lora_bridge.store.opened_file import OpenedFile, backup_open, saved_beside
from lora_bridge.store.tables import RawUplink

log = logging.getLogger(__name__)

SUFFIX = "-intake"
# A writer (webhook process) and an applier meet on the file for a few milliseconds at a time.
BUSY_TIMEOUT_S = 10.0
# AUTOINCREMENT: an id is never given twice, even once the journal has emptied (it names the body in
# the webhook's answer and in the applier's reports).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, network TEXT NOT NULL, "
    "event TEXT, content_type TEXT, path_ids TEXT, body BLOB NOT NULL)"
)


INSERT = ("INSERT INTO bodies (received_at, network, event, content_type, path_ids, body) "
          "VALUES (?, ?, ?, ?, ?, ?)")
# The entries of ids first to last, every one of them leaving (`id_runs` makes the runs).
DELETE_RUN = "DELETE FROM bodies WHERE id BETWEEN ? AND ?"


@dataclass(frozen=True)
class JournalEntry:
    """One kept body, as the journal holds it."""

    intake_id: int
    received_at: datetime
    network: str
    event: str | None
    content_type: str | None
    path_ids: dict[str, Any] | None
    body: bytes


class IntakeJournal:
    """The journal file of one SQLite store (see the module docstring); thread-safe."""

    def __init__(self, path: Path, synchronous: str = "FULL", owner: bool = True) -> None:
        """Open the journal at path; owner: this process writes it (JournalNotOpened, a RuntimeError, when
        another live process does), else it only reads and deletes entries (an applier process)."""
        self.path = path
        self._lock = threading.Lock()
        self._owner_fd = hold_lock(Path(f"{path}.owner"), wait=False) if owner else None
        if owner and self._owner_fd is None:
            raise JournalNotOpened(
                f"the intake journal {path} is held by another bridge process: one bridge answers durably "
                "(TEMBO_WEBHOOK_ACK=durable) per SQLite store; stop the other, answer once applied "
                "(TEMBO_WEBHOOK_ACK=applied), or run several on PostgreSQL")
        self._connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                           timeout=BUSY_TIMEOUT_S)
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._connection.execute(SCHEMA)
            self._opened = OpenedFile.at(path)
        except sqlite3.OperationalError as error:
            self.close()
            raise JournalNotOpened(f"the intake journal {path} cannot be opened ({error})") from error

    @classmethod
    def for_store(cls, url: str, synchronous: str = "FULL", owner: bool = True) -> IntakeJournal | None:
        """The journal beside the SQLite store at url; None for an in-memory SQLite or another engine
        (PostgreSQL lets the intake's inserts in beside the applier's transaction)."""
        path = path_for_store(url)
        return None if path is None else cls(path, synchronous, owner)

    def append(self, entries: list[tuple[datetime, str, str | None, str | None, dict[str, Any] | None, bytes]]) -> list[int]:
        """Commit entries (received_at, network, event, content_type, path_ids, body) in one transaction;
        their ids in order. StoreUnavailable when the file cannot take them (disk full, read-only)."""
        try:
            with self._lock:
                cursor = self._connection.cursor()
                write_lock.begin_immediate(cursor.execute, BUSY_TIMEOUT_S)
                try:
                    # the bodies of a batch share their arrival time: its text is made once
                    texts = {at: at.isoformat() for at in {entry[0] for entry in entries}}
                    cursor.executemany(INSERT, [
                        (texts[received_at], network, event, content_type,
                         json.dumps(path_ids) if path_ids else None, bytes(body))
                        for received_at, network, event, content_type, path_ids, body in entries
                    ])
                    # AUTOINCREMENT gives each row one more than the largest id ever given, and this
                    # transaction is the only writer: the rows took the ids up to the last one in order.
                    last = int(cursor.execute("SELECT last_insert_rowid()").fetchone()[0])
                    ids = list(range(last - len(entries) + 1, last + 1))
                    self._opened.check()  # a journal deleted under the bridge: 503, not a 202 kept nowhere
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                return ids
        except sqlite3.Error as error:
            raise StoreUnavailable(f"store unavailable: intake journal: {str(error)[:200]}") from error

    def remove(self, intake_ids: list[int]) -> None:
        """Forget entries the store now holds: one delete per run of consecutive ids (`id_runs`; a batch
        applied whole is one run), not one per entry, each a step that let go of the interpreter lock
        while the applier's thread applied the next batch."""
        if not intake_ids:
            return
        runs = id_runs(intake_ids)
        with self._lock:
            write_lock.begin_immediate(self._connection.execute, BUSY_TIMEOUT_S)
            try:
                self._connection.executemany(DELETE_RUN, runs)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def entries(self, after_id: int = 0, limit: int | None = None) -> list[JournalEntry]:
        """The entries still in the journal with an id above after_id, oldest first (at most limit)."""
        query = "SELECT id, received_at, network, event, content_type, path_ids, body FROM bodies WHERE id > ? ORDER BY id"
        parameters: tuple[int, ...] = (after_id,)
        if limit is not None:
            query += " LIMIT ?"
            parameters = (after_id, max(0, limit))
        with self._lock:
            rows = self._connection.execute(query, parameters).fetchall()
        return [
            JournalEntry(int(i), _aware(datetime.fromisoformat(at)), network, event, content_type,
                         json.loads(path_ids) if path_ids else None, bytes(body))
            for i, at, network, event, content_type, path_ids, body in rows
        ]

    def ids(self) -> list[int]:
        """The ids of every entry still in the journal, oldest first."""
        return self.snapshot()[0]

    def snapshot(self) -> tuple[list[int], int]:
        """(the ids of the entries in the journal, the highest id it ever gave), read at one moment: an
        id up to the second and not among the first has left the journal (was applied)."""
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                ids = [int(i) for (i,) in self._connection.execute("SELECT id FROM bodies ORDER BY id")]
                row = self._connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'bodies'").fetchone()
            finally:
                self._connection.execute("COMMIT")
        return ids, int(row[0]) if row else 0

    def gone(self) -> str | None:
        """Why the journal's path no longer names the file this journal opened (deleted, replaced), else None."""
        return self._opened.gone()

    def save_copy(self, target: Path) -> None:
        """Copy what this journal holds open (every committed entry) to target, a journal file of its own."""
        with self._lock:
            backup_open(self._connection, target)

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM bodies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()
            if self._owner_fd is not None:
                os.close(self._owner_fd)  # the lock goes with the descriptor
                self._owner_fd = None


def where_refused_wait(journal: IntakeJournal) -> str:
    """Where the kept bodies the store did not take by the intake's stop wait, for its log line: in the
    journal for the next start, or, the journal's file deleted, in the copy `save_if_deleted` makes."""
    if journal.gone() is None:
        return "they wait in the journal for the next start"
    return "the journal's file is gone: they are saved from what the bridge holds open of it as the intake stops"


def save_if_deleted(journal: IntakeJournal) -> Path | None:
    """When journal's file was deleted (or replaced) under the bridge: copy the entries it still holds open
    (answered 202, not applied) beside its path and say in one error line where, and how the operator has
    the next start apply them; the copy made (None: the file is in place, or nothing waited in it)."""
    why = journal.gone()
    if why is None:
        return None
    waiting = len(journal)
    if waiting == 0:
        log.warning("intake journal: %s; every body it answered 202 was applied to the store, nothing to save",
                    why, extra={"database": str(journal.path)})
        return None
    saved = saved_beside(journal.path)
    try:
        journal.save_copy(saved)
    except (sqlite3.Error, OSError) as error:
        log.error("intake journal: %s; %d bodies it answered 202 and the store had not applied could not be saved "
                  "(%s: %s)", why, waiting, type(error).__name__, str(error)[:200], extra={"database": str(journal.path)})
        return None
    log.error("intake journal: %s; the %d bodies it answered 202 and the store had not applied are saved to %s: with "
              "the bridge stopped, move it to %s and start the bridge to apply them", why, waiting, saved,
              journal.path, extra={"database": str(journal.path), "saved_to": str(saved), "bodies": waiting})
    return saved


def id_runs(ids: list[int]) -> list[tuple[int, int]]:
    """ids as runs of consecutive ids (first, last), ascending: every id of a run is among ids, so a
    run's delete takes exactly those entries."""
    runs: list[tuple[int, int]] = []
    ordered = sorted(set(ids))
    first = last = ordered[0]
    for i in ordered[1:]:
        if i != last + 1:
            runs.append((first, last))
            first = i
        last = i
    runs.append((first, last))
    return runs


def path_for_store(url: str) -> Path | None:
    """Where the journal of the SQLite store at url lives; None for in-memory SQLite or another engine."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database + SUFFIX)


def store_journal_mode(store_path: Path) -> str:
    """The journal mode the SQLite store at store_path keeps ("wal" once a bridge opened it: SQLite keeps
    WAL mode in the file); "" when the file cannot be read so."""
    try:
        connection = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return ""
    try:
        row = connection.execute("PRAGMA journal_mode").fetchone()
    except sqlite3.Error:
        return ""
    finally:
        connection.close()
    return str(row[0]).lower() if row else ""


def hold_lock(path: Path, wait: bool = True) -> int | None:
    """An exclusive `flock` on path (created if missing), held until its descriptor is closed or the
    process dies; wait: block until it is free, else None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def already_stored(db: Database, entry: JournalEntry) -> bool:
    """Whether the store holds entry's raw row already (its batch committed, the journal's delete did not)."""
    with db.read() as session:
        found = session.scalars(
            select(RawUplink.id).where(RawUplink.received_at == entry.received_at, RawUplink.body == entry.body).limit(1)
        ).first()
    return found is not None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
