"""Two processes write one SQLite file (the store, the intake journal): a writer that finds the lock
taken tries it again every half millisecond, so it has it as soon as the other commits, not after one
of SQLite's own sleeps of up to 100 ms; past its busy timeout it fails as SQLite would."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from lora_bridge.store import write_lock


def connect(path, timeout_s: float = 5.0) -> sqlite3.Connection:
    connection = sqlite3.connect(str(path), isolation_level=None, timeout=timeout_s, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB)")
    return connection


def test_the_applier_takes_the_lock_at_its_first_try_after_the_webhook_commits(tmp_path):
    webhook, applier = connect(tmp_path / "journal.db"), connect(tmp_path / "journal.db")
    webhook.execute("BEGIN IMMEDIATE")
    webhook.execute("INSERT INTO bodies (body) VALUES (x'7b7d')")
    committed = threading.Event()
    # (statement, whether the webhook had surely committed when it was tried, whether the try took the lock)
    tries: list[tuple[str, bool, bool]] = []
    third_failure = threading.Event()

    def execute(statement: str):
        after_commit = committed.is_set()
        try:
            result = applier.execute(statement)
        except sqlite3.OperationalError:
            tries.append((statement, after_commit, False))
            if sum(s == "BEGIN IMMEDIATE" for s, _, _ in tries) >= 3:
                third_failure.set()
            raise
        tries.append((statement, after_commit, True))
        return result

    def webhook_commits_after_three_tries() -> None:
        third_failure.wait(10)
        webhook.execute("COMMIT")
        committed.set()

    thread = threading.Thread(target=webhook_commits_after_three_tries)
    thread.start()
    write_lock.begin_immediate(execute, busy_timeout_s=10)
    thread.join(10)
    applier.execute("DELETE FROM bodies")
    applier.execute("COMMIT")

    begins = [(after, took) for statement, after, took in tries if statement == "BEGIN IMMEDIATE"]
    # it kept trying itself while the webhook held the lock, and the one try that took it was the last
    assert len(begins) >= 4 and [took for _, took in begins] == [False] * (len(begins) - 1) + [True]
    # a try made once the commit had surely happened never failed (a try racing the commit may go either way)
    assert not any(after and not took for after, took in begins)
    assert applier.execute("PRAGMA busy_timeout").fetchone() == (10_000,)  # SQLite's own wait as before


def test_a_writer_fails_as_sqlite_would_once_its_busy_timeout_passed(tmp_path):
    holder, waiter = connect(tmp_path / "store.db"), connect(tmp_path / "store.db", timeout_s=0.05)
    holder.execute("BEGIN IMMEDIATE")

    with pytest.raises(sqlite3.OperationalError, match="database is locked") as raised:
        write_lock.begin_immediate(waiter.execute, busy_timeout_s=0.05)

    assert write_lock.is_lock_taken(raised.value)
    assert waiter.execute("PRAGMA busy_timeout").fetchone() == (50,)
    holder.execute("ROLLBACK")


def test_an_error_other_than_a_taken_lock_is_raised_at_the_first_try():
    tried = []

    def execute(statement: str):
        tried.append(statement)
        if statement == "BEGIN IMMEDIATE":
            raise sqlite3.DatabaseError("file is not a database")

    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        write_lock.begin_immediate(execute, busy_timeout_s=10)

    assert tried.count("BEGIN IMMEDIATE") == 1 and tried[-1] == "PRAGMA busy_timeout = 10000"
