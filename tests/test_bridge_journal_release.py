"""The applier process commits its batches without an fsync each and lets their bodies leave the
intake journal only once the store's WAL holding them is on disk (`lora_bridge.journal_release`):
a power cut at any moment loses no body the network server was answered 2xx for, and applies none
twice."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import bridge_builders as b
import pytest

from lora_bridge.durable_intake import apply_entries, left_in_journal
from lora_bridge.group_commit import Submission
from lora_bridge.intake_journal import IntakeJournal, path_for_store, store_journal_mode
from lora_bridge.journal_release import Committed, JournalRelease, releases_after_sync, sync_wal
from lora_bridge.store.utc import utc_now


class Disk:
    """What survives a power cut of the store: its files as they were at the last fsync the release
    asked for (frames written since then are in the page cache only, and a power cut takes them)."""

    def __init__(self, store: Path, folder: Path) -> None:
        self.store = store
        self.folder = folder
        folder.mkdir()
        self.syncs = 0

    def sync(self) -> None:
        sync_wal(self.store)
        for suffix in ("", "-wal"):
            source = Path(f"{self.store}{suffix}")
            if source.exists():
                shutil.copyfile(source, self.folder / f"store.db{suffix}")
        self.syncs += 1

    def bodies(self) -> list[bytes]:
        """The raw bodies a store recovered from this disk holds (read on a copy: opening recovers the WAL)."""
        look = self.folder.parent / f"look-{self.syncs}"
        shutil.copytree(self.folder, look, dirs_exist_ok=True)
        connection = sqlite3.connect(look / "store.db")
        try:
            return [bytes(body) for (body,) in connection.execute("SELECT body FROM raw_uplinks")]
        finally:
            connection.close()


def kept(journal: IntakeJournal, bodies: list[bytes]) -> list[tuple[int, Submission]]:
    """bodies answered 2xx: appended to the journal as the webhook's writer does, as the applier takes them."""
    now = utc_now()
    ids = journal.append([(now, "tts", None, "application/json", None, body) for body in bodies])
    return [(i, Submission("tts", None, body, "application/json", received_at=now)) for i, body in zip(ids, bodies, strict=True)]


def uplinks(first: int, count: int) -> list[bytes]:
    return [b.tts_uplink(b.status(time_s=b.T0_S + 600 * n), f_cnt=n) for n in range(first, first + count)]


def test_a_power_cut_after_any_batch_loses_no_uplink_the_network_server_was_answered_for(tmp_path):
    store = tmp_path / "reserve.db"
    url = f"sqlite:///{store}"
    journal_path = path_for_store(url)
    disk = Disk(store, tmp_path / "disk")
    recovered = tmp_path / "recovered"
    answered: list[bytes] = []
    removed_on_disk: list[bool] = []
    body_of: dict[int, bytes] = {}
    gate, in_sync = threading.Event(), threading.Event()
    gate.set()

    def gated_sync() -> None:
        in_sync.set()
        assert gate.wait(timeout=30)
        disk.sync()

    with b.fresh_bridge(url, sqlite_synchronous="NORMAL", outbox_worker=False) as bridge:
        journal = IntakeJournal(journal_path, "NORMAL")

        def remove(ids: list[int]) -> None:
            on_disk = set(disk.bodies())  # every body let go is in the store as its disk holds it
            removed_on_disk.append(all(body_of[i] in on_disk for i in ids))
            journal.remove(ids)

        release = JournalRelease(gated_sync, remove, lambda _batch: None)
        for round_ in range(6):
            if round_ == 5:  # the cut comes while the last batch is committed and its fsync not done
                assert release.drain()
                gate.clear()
                in_sync.clear()
            taken = kept(journal, uplinks(1 + 10 * round_, 10))
            body_of.update((i, s.body) for i, s in taken)
            answered += [s.body for _, s in taken]
            stored, refused = apply_entries(bridge, journal, taken, remove=False)
            assert refused == [] and len(stored) == 10
            release.committed(Committed(stored))
        assert in_sync.wait(timeout=30)
        # The power cut: the store as its disk holds it, the journal as it is now (its deletes all
        # kept: the worst a cut can leave of it).
        shutil.copytree(disk.folder, recovered)
        for suffix in ("", "-wal"):
            if Path(f"{journal_path}{suffix}").exists():
                shutil.copyfile(f"{journal_path}{suffix}", recovered / f"store.db-intake{suffix}")
        gate.set()
        release.close()
        journal.close()

    assert removed_on_disk and all(removed_on_disk)
    journal_after = IntakeJournal(recovered / "store.db-intake", "FULL")
    try:
        assert len(journal_after) == 10  # the last batch, committed but not on disk, waits to be applied again
        with b.fresh_bridge(f"sqlite:///{recovered / 'store.db'}", outbox_worker=False) as bridge_after:
            waiting, held = left_in_journal(bridge_after, journal_after)
            assert len(waiting) == 10 and held == []
            stored, refused = apply_entries(bridge_after, journal_after, waiting)
            assert refused == [] and len(stored) == 10
        assert len(journal_after) == 0
    finally:
        journal_after.close()
    with sqlite3.connect(recovered / "store.db") as look:
        bodies = [bytes(body) for (body,) in look.execute("SELECT body FROM raw_uplinks")]
    assert sorted(bodies) == sorted(answered)  # none lost, none applied twice


def test_a_power_cut_between_a_commit_and_its_fsync_leaves_the_body_in_the_journal_to_apply_again(tmp_path):
    store = tmp_path / "reserve.db"
    url = f"sqlite:///{store}"
    disk = Disk(store, tmp_path / "disk")
    fsync_may_start = threading.Event()
    fsync_started = threading.Event()

    def slow_disk() -> None:
        fsync_started.set()
        fsync_may_start.wait(timeout=30)
        disk.sync()

    with b.fresh_bridge(url, sqlite_synchronous="NORMAL", outbox_worker=False) as bridge:
        journal = IntakeJournal(path_for_store(url), "NORMAL")
        release = JournalRelease(slow_disk, journal.remove, lambda _batch: None)
        disk.sync()  # the empty store on disk
        taken = kept(journal, uplinks(1, 5))
        stored, _ = apply_entries(bridge, journal, taken, remove=False)
        release.committed(Committed(stored))
        assert fsync_started.wait(timeout=30)
        # the store committed the batch (the dashboard sees it), its entries still in the journal
        assert len(journal) == 5 and len(disk.bodies()) == 0
        fsync_may_start.set()
        assert release.drain()
        assert len(journal) == 0 and len(disk.bodies()) == 5
        release.close()
        journal.close()


def test_the_applier_s_reports_follow_its_commits_in_order_once_each(tmp_path):
    store = tmp_path / "reserve.db"
    url = f"sqlite:///{store}"
    reported: list[list[int]] = []
    with b.fresh_bridge(url, sqlite_synchronous="NORMAL", outbox_worker=False) as bridge:
        journal = IntakeJournal(path_for_store(url), "NORMAL")
        release = JournalRelease(lambda: sync_wal(store), journal.remove, lambda batch: reported.append(batch.intake_ids))
        committed = []
        for round_ in range(5):
            stored, _ = apply_entries(bridge, journal, kept(journal, uplinks(1 + 4 * round_, 4)), remove=False)
            committed.append(stored)
            release.committed(Committed(stored))
        assert release.drain()
        release.close()
        assert len(journal) == 0
        journal.close()
    assert reported == committed


def test_a_disk_that_fails_its_fsync_keeps_every_body_in_the_journal_and_stops_the_applier(tmp_path):
    store = tmp_path / "reserve.db"
    url = f"sqlite:///{store}"

    def failing() -> None:
        raise OSError(5, "Input/output error")

    with b.fresh_bridge(url, sqlite_synchronous="NORMAL", outbox_worker=False) as bridge:
        journal = IntakeJournal(path_for_store(url), "NORMAL")
        reported: list[Committed] = []
        release = JournalRelease(failing, journal.remove, reported.append)
        stored, _ = apply_entries(bridge, journal, kept(journal, uplinks(1, 3)), remove=False)
        release.committed(Committed(stored))
        assert not release.drain()
        with pytest.raises(OSError, match="Input/output"):
            release.committed(Committed([]))
        assert len(journal) == 3 and reported == []
        release.close()
        journal.close()


@pytest.mark.parametrize(("synchronous", "mode", "after_sync"), [
    ("FULL", "wal", True), ("extra", "WAL", True),
    ("NORMAL", "wal", False), ("OFF", "wal", False),  # the operator chose to lose the last commits
    ("FULL", "delete", False), ("FULL", "", False),  # not WAL: a suffix lost is not the rule there
])
def test_the_applier_commits_without_fsync_only_where_a_wal_and_a_durable_setting_make_it_safe(synchronous, mode,
                                                                                                 after_sync):
    assert releases_after_sync(synchronous, mode) is after_sync


def test_a_store_the_bridge_opened_is_read_as_wal_and_a_missing_file_as_unknown(tmp_path):
    url = f"sqlite:///{tmp_path / 'reserve.db'}"
    with b.fresh_bridge(url, outbox_worker=False):
        assert store_journal_mode(tmp_path / "reserve.db") == "wal"
    assert store_journal_mode(tmp_path / "none.db") == ""
    rollback = tmp_path / "rollback.db"
    sqlite3.connect(rollback).execute("CREATE TABLE t (a)").connection.close()
    assert store_journal_mode(rollback) == "delete"


def test_without_an_fsync_to_wait_for_each_batch_leaves_the_journal_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'reserve.db'}"
    reported: list[list[int]] = []
    with b.fresh_bridge(url, outbox_worker=False) as bridge:
        journal = IntakeJournal(path_for_store(url))
        release = JournalRelease(None, journal.remove, lambda batch: reported.append(batch.intake_ids))
        assert not release.asynchronous
        stored, _ = apply_entries(bridge, journal, kept(journal, uplinks(1, 3)), remove=False)
        release.committed(Committed(stored))
        assert len(journal) == 0 and reported == [stored]
        release.close()
        journal.close()
