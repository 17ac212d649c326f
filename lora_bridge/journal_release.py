"""Journal entries leave only once the store's copy of them is on disk: the applier process's releases.

A body answered 2xx is durable in the intake journal (`lora_bridge.intake_journal`, fsynced before the
answer). The applier process moves it into the store and may delete it from the journal once the
store's copy would survive a power cut. Fsyncing the store's WAL at every batch's commit (SQLite's
`synchronous=FULL`) put that wait inside the applier's cycle: 3.6 ms a commit on a machine where a
batch of 62 bodies takes 30-40 ms of CPU, during which the applier applied nothing.

Here the applier process commits its batches with `synchronous=NORMAL` (a commit is atomic and in
order, but its WAL frames reach the disk later) and hands each committed batch to a release thread,
which fsyncs the store's WAL once for every batch committed since its last look, then deletes their
entries from the journal and reports them to the webhook process. The applier meanwhile applies the
next batch: the fsync no longer waits in line.

What a power cut can then do: a WAL loses at most a suffix of its frames, so the store loses its last
commits whole, never a part of one or one before another. Every entry whose commit was lost is still
in the journal (it leaves only after the fsync that made its commit durable) and is applied again at
the next start; every entry that left is on disk in the store. A kill -9 of the applier loses nothing
either: its commits are in the operating system's page cache, and the entries it had not yet let go
are found in the store at its next start (`durable_intake.left_in_journal`, which this module syncs
the store before, so that no entry leaves on the strength of a commit that is not yet on disk). The
journal's deletes need no fsync of their own: a delete lost to a power cut leaves an entry the store
holds, found there at the next start and not applied twice.

Where the store is not in WAL mode, or the bridge was configured with a weaker `sqlite_synchronous`
than FULL (its operator accepted losing the last commits), nothing changes: commits keep the setting
and entries leave at once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_bridge.errors import log_failure
from lora_bridge.os_thread_names import name_os_thread

log = logging.getLogger(__name__)

# Batches committed and not yet released before the applier waits for the release thread: the
# journal's backlog bound counts them as unapplied, so they are few by design; this only keeps a
# stuck disk from letting the applier run ahead without limit.
MOST_WAITING = 8
# The settings under which the applier's commits need no fsync of their own.
DURABLE_SETTINGS = ("FULL", "EXTRA")
# The release thread's name as the kernel shows it (`os_thread_names`).
RELEASE_THREAD = "tembo-release"


@dataclass
class Committed:
    """One batch the applier committed: its journal ids and what its report says besides them."""

    intake_ids: list[int]
    report: dict[str, Any] = field(default_factory=dict)


Remove = Callable[[list[int]], None]
Report = Callable[[Committed], None]


def releases_after_sync(synchronous: str, journal_mode: str) -> bool:
    """Whether the applier commits with NORMAL and releases after its own fsync: a store in WAL mode
    configured durable (FULL or EXTRA)."""
    return synchronous.upper() in DURABLE_SETTINGS and journal_mode.lower() == "wal"


def sync_wal(store_path: Path) -> None:
    """Make every commit of the SQLite store at store_path durable: fsync its WAL file (and the
    database file, which a checkpoint may have filled from the WAL before the WAL started over)."""
    for path in (Path(f"{store_path}-wal"), store_path):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # no WAL: every commit was checkpointed into the database file, synced next
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class JournalRelease:
    """The release thread: fsync the store, then let committed batches leave the journal and report
    them, in the order they were committed. `sync` None: each batch leaves at once (already durable)."""

    def __init__(self, sync: Callable[[], None] | None, remove: Remove, report: Report) -> None:
        self._sync = sync
        self._remove = remove
        self._report = report
        self._changed = threading.Condition()
        self._waiting: list[Committed] = []
        self._releasing = 0
        self._stopping = False
        self._failure: BaseException | None = None
        self.syncs = 0
        self.released = 0
        self._thread: threading.Thread | None = None
        if sync is not None:
            self._thread = threading.Thread(target=self._run, name="tembo-intake-release", daemon=True)
            self._thread.start()

    @property
    def asynchronous(self) -> bool:
        """Whether commits are released by the thread after its fsync (else at once, in the caller)."""
        return self._thread is not None

    def sync_now(self) -> None:
        """Make every commit so far durable before the caller lets entries go on its own (at start)."""
        if self._sync is not None:
            self._sync()
            self.syncs += 1

    def committed(self, batch: Committed) -> None:
        """A batch the store committed: released once durable (at once when already durable). Waits
        while MOST_WAITING batches wait; raises the release thread's failure, if it failed."""
        if self._thread is None:
            self._release([batch])
            return
        with self._changed:
            while len(self._waiting) >= MOST_WAITING and self._failure is None:
                self._changed.wait(timeout=1.0)
            if self._failure is not None:
                raise self._failure
            self._waiting.append(batch)
            self._changed.notify_all()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every batch handed over is released; whether they all were."""
        with self._changed:
            return self._changed.wait_for(
                lambda: (not self._waiting and not self._releasing) or self._failure is not None, timeout=timeout_s
            ) and self._failure is None

    def close(self, timeout_s: float = 30.0) -> None:
        """Release what waits, then end the thread. What is still waiting after timeout_s stays in the
        journal (applied again at the next start, found there by `left_in_journal`)."""
        self.drain(timeout_s)
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        name_os_thread(RELEASE_THREAD)
        while True:
            with self._changed:
                while not self._waiting and not self._stopping:
                    self._changed.wait()
                if not self._waiting:
                    return
                batches, self._waiting = self._waiting, []
                self._releasing = len(batches)
                self._changed.notify_all()
            try:
                self.sync_now()
                self._release(batches)
            except BaseException as error:  # noqa: BLE001 - the entries stay in the journal; the applier stops
                log_failure(log, error, "%d applied batches were not made durable; their bodies stay in the "
                            "intake journal and are applied again at the next start", len(batches))
                with self._changed:
                    self._failure = error
                    self._releasing = 0
                    self._changed.notify_all()
                return
            with self._changed:
                self._releasing = 0
                self._changed.notify_all()

    def _release(self, batches: list[Committed]) -> None:
        self._remove([i for batch in batches for i in batch.intake_ids])
        for batch in batches:
            self.released += len(batch.intake_ids)
            self._report(batch)
