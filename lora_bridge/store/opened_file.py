"""Whether a SQLite file is still the one a connection opened.

SQLite writes to the file it opened whatever happens to its name: a store (or the durable intake's
journal) deleted under a running bridge (a clean-up script, a mistaken `rm`) or replaced (a backup copied
over it) takes every later commit into a file no path names, and the next start finds none of it. Until
7 December each such uplink was answered 200 and lost. A commit now first checks that the path still
names the file opened (same device and inode) and raises `StoreFileGone`, a `StoreUnavailable`, when it
does not: the network server is answered 503 and retries once the operator has put the store back and
started the bridge again (`/healthz` answers 503 meanwhile).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
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
        """Raise StoreFileGone when path no longer names this file."""
        why = self.gone()
        if why is not None:
            log.error("store unavailable: %s; what it holds since is lost to the next start: put the store back "
                      "and start the bridge again (uplinks are answered 503 until then)", why,
                      extra={"database": str(self.path)})
            raise StoreFileGone(f"store unavailable: {why}")


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
