"""Whether a SQLite file is still the one a connection opened.

SQLite writes to the file it opened whatever happens to its name: a store (or the durable intake's
journal) deleted under a running bridge (a clean-up script, a mistaken `rm`) or replaced (a backup copied
over it) takes every later commit into a file no path names, and the next start finds none of it. Until
7 December each such uplink was answered 200 and lost. A commit now first checks that the path still
names the file opened (same device and inode) and raises `StoreFileGone`, a `StoreUnavailable`, when it
does not: the network server is answered 503 and retries once the operator has put the store back and
started the bridge again (`/healthz` answers 503 meanwhile).

What the file held when it was deleted had been acknowledged, and lives on only while the bridge keeps it
open. It is logged once when first noticed (not at each refused commit: a flood of identical lines hid it),
and when the bridge stops (`save_lost_files`, before its connections close) the bridge copies what it still
reads of the file, every acknowledged uplink to the moment of the deletion, to a file beside the path
(`tembo.db.saved-20261207T201930Z`) and says so in one error line, with how many writes were refused since
(answered 503, never acknowledged: sent again only by a network server that retries, The Things Stack
with its webhook's Retries ticked, as `tembo demo`'s does, or an MQTT broker). Until 7 December a Ctrl-C
after such a deletion stopped the demo with no word of it, and the acknowledged uplinks went with the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, event

from lora_bridge.errors import StoreUnavailable

log = logging.getLogger(__name__)

# Where a connection keeps the identity of the file it opened (its pool record's `info`).
INFO_KEY = "tembo_opened_file"


class StoreFileGone(StoreUnavailable):
    """The store's path no longer names the file the bridge opened (deleted or replaced)."""


@dataclass(frozen=True)
class OpenedFile:
    """The file at path when it was opened: its device and inode."""

    path: Path
    device: int
    inode: int

    @classmethod
    def at(cls, path: Path | str) -> OpenedFile:
        """The file path names now."""
        found = os.stat(path)
        return cls(Path(path), found.st_dev, found.st_ino)

    def gone(self) -> str | None:
        """Why path no longer names this file (deleted, replaced), or None while it does."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return f"the file {self.path} was deleted while the bridge had it open"
        if (now.st_dev, now.st_ino) != (self.device, self.inode):
            return f"the file {self.path} was replaced while the bridge had it open"
        return None

    def check(self) -> None:
        """Raise StoreFileGone when path no longer names this file (logged the first time it is noticed)."""
        why = self.gone()
        if why is not None:
            if _notice(self.path, why):
                log.error("store unavailable: %s; uplinks are answered 503 until the store is put back and the bridge "
                          "started again; what it held is saved beside it when the bridge stops", why,
                          extra={"database": str(self.path)})
            raise StoreFileGone(f"store unavailable: {why}")


@dataclass
class LostFile:
    """A file found gone under the bridge: why, when first noticed, and how many commits it refused since."""

    path: Path
    why: str
    noticed_at: datetime
    refused: int = 0
    said: bool = False  # its closing line was logged (`save_lost_files`): later refusals are only counted


_lost: dict[Path, LostFile] = {}
_lost_lock = threading.Lock()


def _notice(path: Path, why: str) -> bool:
    """Count a commit refused because path is gone; True the first time path is found gone."""
    with _lost_lock:
        lost = _lost.get(path)
        if lost is None:
            _lost[path] = LostFile(path, why, datetime.now(UTC), refused=1)
            return True
        lost.refused += 1
        return False


def save_lost_files(engine: Engine) -> list[Path]:
    """When the store file engine opened (or its durable intake's journal) was found gone: copy what the
    bridge still reads of the store to a file beside its path, and log one error line for each file saying
    what was saved where and what was not; the copies made. Call before engine's connections close (they
    are all that is left of the file)."""
    path = _path_of(engine)
    if path is None:
        return []
    with _lost_lock:  # each file's closing line is said once, however many bridges of the process stop
        unsaid = [lost for lost in _lost.values() if not lost.said and lost.path.parent == path.parent
                  and (lost.path == path or lost.path.name.startswith(f"{path.name}-"))]
        for lost in unsaid:
            lost.said = True
    for journal in (lost for lost in unsaid if lost.path != path):  # the durable intake's journal
        log.error("%s (noticed %s UTC): %d writes since were not saved (answered 503, never acknowledged); the "
                  "bodies it had answered 202 and the store had not taken yet are saved from it as the intake stops",
                  journal.why, f"{journal.noticed_at:%Y-%m-%d %H:%M:%S}", journal.refused,
                  extra={"database": str(journal.path)})
    store = next((lost for lost in unsaid if lost.path == path), None)
    if store is None:
        return []
    noticed = f"{store.noticed_at:%Y-%m-%d %H:%M:%S} UTC"
    refused = (f"{store.refused} write{'' if store.refused == 1 else 's'} since were not saved (their uplinks were "
               "answered 503, never acknowledged: sent again only by a network server that retries them)")
    saved = saved_beside(path)
    try:
        _copy_open_store(engine, saved)
    except (sqlite3.Error, OSError) as error:
        log.error("%s (noticed %s): %s; everything acknowledged before was in that file and could not be saved "
                  "(%s: %s)", store.why, noticed, refused, type(error).__name__, str(error)[:200],
                  extra={"database": str(path)})
        return []
    log.error("%s (noticed %s): %s; everything acknowledged before was in that file and is saved to %s (move it "
              "to %s to start the bridge with it)", store.why, noticed, refused, saved, path,
              extra={"database": str(path), "saved_to": str(saved)})
    return [saved]


def _path_of(engine: Engine) -> Path | None:
    database = engine.url.database
    return Path(database) if database not in (None, "", ":memory:") else None


def _copy_open_store(engine: Engine, target: Path) -> None:
    """Copy the store engine holds open (its WAL with it: every commit) to target with SQLite's backup.
    OSError when no connection to it is left open (a new one would open an empty file at its path)."""
    pooled = getattr(engine.pool, "checkedin", None)  # a pool that keeps no connection has none to copy from
    if pooled is None or pooled() == 0:
        raise OSError("no connection to it is left open")
    raw = engine.raw_connection()
    try:
        backup_open(raw.driver_connection, target)
    finally:
        raw.close()


def saved_beside(path: Path) -> Path:
    """Where what the bridge still holds open of the deleted file at path is saved: beside it, named with
    the UTC time (`tembo.db.saved-20261207T201930Z`)."""
    return path.with_name(f"{path.name}.saved-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")


def backup_open(connection: sqlite3.Connection, target: Path) -> None:
    """Copy the SQLite file connection holds open (its WAL with it: every commit) to target with SQLite's
    backup, whether or not a path still names the file."""
    copy = sqlite3.connect(str(target))
    try:
        connection.backup(copy)
    finally:
        copy.close()


def guard(engine: Engine, path: Path, on_begin: bool) -> None:
    """Check, on each of engine's connections, that path still names the file it opened: before each
    commit, and with on_begin (an engine that only reads) at each transaction's start."""

    @event.listens_for(engine, "connect")
    def _remember(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        try:
            record.info[INFO_KEY] = OpenedFile.at(path)
        except OSError:  # a name SQLite opens that is no file of this path (a URI): nothing to compare
            log.warning("store file %s not found to watch; its deletion will not be noticed", path)

    def _check(connection) -> None:  # type: ignore[no-untyped-def]
        opened = connection.info.get(INFO_KEY)
        if opened is not None:
            opened.check()

    event.listen(engine, "begin" if on_begin else "commit", _check)
