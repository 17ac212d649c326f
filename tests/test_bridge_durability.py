"""Nothing acknowledged is ever lost: a bridge killed under load, a store that locks, turns read-only or
fills up. Each test counts the uplinks answered 2xx that the store does not hold applied (lost, must be
0) and the uplinks applied more than once (must be 0); a network server retries what got no 2xx."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import bridge_builders as b
import pytest
from bridge_process import (
    BridgeProcess,
    Load,
    bridge_process,
    disk_limit_with_room,
    lost_and_twice,
    post_all,
    report,
    retry_until_acknowledged,
    uplink_body,
)
from sqlalchemy import event
from starlette.testclient import TestClient

from lora_bridge.adapters.webhook import create_app
from lora_bridge.server import RulesTimer
from lora_bridge.store import write_lock

pytestmark = pytest.mark.slow

# The load a bridge is killed under: four clients posting 120 uplinks (20 collars, 6 frames each), the kill
# once a third of them were acknowledged, with 80 still to post. The story needs a bridge busy with
# concurrent requests when it dies, not a long load: the retries afterwards cover every uplink all the same.
UNDER_LOAD = 120
KILLED_AFTER = UNDER_LOAD // 3


@pytest.mark.parametrize(("ack", "applier"), [("applied", "thread"), ("durable", "thread"), ("durable", "process")])
def test_a_bridge_killed_under_load_loses_no_acknowledged_uplink_and_applies_none_twice(store_url, port, ack,
                                                                                      applier):
    # On SQLite a durable bridge keeps bodies in its journal, on PostgreSQL as raw rows `received`: the
    # bridge started again applies what the killed one kept and had not applied.
    load = Load()
    numbers = range(UNDER_LOAD)
    child = BridgeProcess(store_url, port, webhook_ack=ack, intake_applier=applier).start()
    appliers = child.applier_pids()
    stop = threading.Event()
    posting = threading.Thread(target=post_all, args=(child.url, numbers, load), kwargs={"stop": stop})
    posting.start()
    while len(load.acknowledged()) < KILLED_AFTER and posting.is_alive():
        time.sleep(0.02)
    child.kill()  # SIGKILL in the middle of the load
    stop.set()
    posting.join()
    killed_at = len(load.acknowledged())
    _wait_until_gone(appliers)  # an applier process dies with the bridge's

    # a network server retries what got no 2xx
    with bridge_process(store_url, port, webhook_ack=ack, intake_applier=applier) as again:
        retry_until_acknowledged(again.url, load, numbers)
        _wait_until_nothing_pending(store_url)
    figures = lost_and_twice(store_url, load.acknowledged())
    print(report({"killed_after_acknowledged": killed_at, **figures}))

    assert killed_at >= KILLED_AFTER
    assert figures["acknowledged"] == len(numbers)
    assert (figures["lost"], figures["applied_twice"], figures["pending"]) == (0, 0, 0)


def test_an_applier_process_killed_under_load_is_started_again_and_loses_and_repeats_nothing(store_url, port):
    load = Load()
    numbers = range(UNDER_LOAD)
    killed: list[int] = []
    with bridge_process(store_url, port, webhook_ack="durable", intake_applier="process") as child:
        # Two halves of the load, the applier process killed with SIGKILL in the middle of each; the
        # second kill waits for the applier the bridge started again (it had found none yet under a
        # loaded machine, and the test killed once instead of twice).
        middle = UNDER_LOAD // 2
        for half, share in ((numbers[:middle], middle // 2), (numbers[middle:], middle + middle // 2)):
            applier = _applier_started(child, not_one_of=killed)
            posting = threading.Thread(target=post_all, args=(child.url, half, load))
            posting.start()
            while len(load.acknowledged()) < share and posting.is_alive():
                time.sleep(0.01)
            os.kill(applier, signal.SIGKILL)
            killed.append(applier)
            posting.join()
        _applier_started(child, not_one_of=killed)
        retry_until_acknowledged(child.url, load, numbers)
        _wait_until_applied(store_url, len(numbers))
        figures = lost_and_twice(store_url, load.acknowledged())
    print(report({"applier_kills": len(killed), **figures}))

    assert len(killed) == 2
    assert figures["acknowledged"] == len(numbers)
    assert (figures["lost"], figures["applied_twice"], figures["pending"]) == (0, 0, 0)


def _applier_started(child: BridgeProcess, not_one_of: list[int], timeout_s: float = 60.0) -> int:
    """The process id of the bridge's applier process once one other than those killed runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = [pid for pid in child.applier_pids() if pid not in not_one_of]
        if fresh:
            return fresh[0]
        time.sleep(0.05)
    raise AssertionError(f"no applier process was started again after {not_one_of} were killed")


def _wait_until_gone(pids: list[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "the applier process outlived its bridge"


def _wait_until_applied(database_url: str, uplinks: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and lost_and_twice(database_url, ())["positions"] < uplinks:
        time.sleep(0.1)


def test_a_store_that_fills_up_answers_503_and_loses_nothing_it_acknowledged(sqlite_url, port):
    limit = disk_limit_with_room(sqlite_url)
    load = Load()
    numbers = range(90)  # the store fills after about 20 of them (more with larger commits): the rest meet a full disk
    with bridge_process(sqlite_url, port, file_size_limit=limit) as full:
        post_all(full.url, numbers, load, clients=2)
    refused = sorted(load.not_acknowledged())
    statuses = set(load.answers.values())

    with bridge_process(sqlite_url, port) as roomy:  # more room; the network server retries
        retry_until_acknowledged(roomy.url, load, numbers)
        _wait_until_nothing_pending(sqlite_url)
    figures = lost_and_twice(sqlite_url, load.acknowledged())
    print(report({"refused_while_full": len(refused), **figures}))

    assert refused and len(refused) < len(numbers), "the file-size limit was reached part way"
    assert statuses <= {200, 202, 503}, "a full disk is a 503 (retry), never a 5xx crash or a 200 dead letter"
    assert figures["acknowledged"] == len(numbers)
    assert (figures["lost"], figures["applied_twice"], figures["pending"]) == (0, 0, 0)


def _wait_until_nothing_pending(database_url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and lost_and_twice(database_url, ())["pending"]:
        time.sleep(0.1)


def test_a_store_locked_by_another_writer_answers_503_then_takes_the_retry(sqlite_url):
    with b.fresh_bridge(sqlite_url, sqlite_busy_timeout_ms=100) as bridge, TestClient(create_app(bridge)) as client:
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.1)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        locked = client.post("/uplinks/tts", content=uplink_body(1), headers=b.HEADERS)
        other.rollback()
        other.close()
        retried = client.post("/uplinks/tts", content=uplink_body(1), headers=b.HEADERS)
        counts = bridge.counts()

    assert locked.status_code == 503 and locked.headers["Retry-After"]
    assert retried.status_code == 200 and retried.json()["status"] == "processed"
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (1, 1, 0)


class WaitingClock:
    """The write lock's clock and sleep, on a clock that moves only while the bridge waits for the lock
    (so what the bridge waited is counted exactly, however busy the machine running the test is)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_network_server_gets_its_503_before_it_gives_up_while_another_program_holds_the_store(
        sqlite_url, monkeypatch):
    # The Things Stack ends a webhook request after 10 s (docs: integrations/webhooks/retries) and never
    # sees a later answer. With the store's busy timeout of 10 s the batch waited for the write lock,
    # then waited again to keep the body alone: 20 s, a 503 nobody received.
    clock = WaitingClock()
    monkeypatch.setattr(write_lock, "time", clock)
    with b.fresh_bridge(sqlite_url, sqlite_busy_timeout_ms=10_000, webhook_answer_within_s=8.0,
                        outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.1)
        other.execute("BEGIN IMMEDIATE")  # a backup holds the write lock
        asked_at = clock.now
        locked = client.post("/uplinks/tts", content=uplink_body(1), headers=b.HEADERS)
        waited_s = clock.now - asked_at
        other.rollback()
        other.close()
        retried = client.post("/uplinks/tts", content=uplink_body(1), headers=b.HEADERS)
        counts = bridge.counts()

    assert locked.status_code == 503 and locked.headers["Retry-After"]
    assert 7.9 <= waited_s <= 8.01, "the lock waited for until the answer was due, not two busy timeouts"
    assert retried.status_code == 200 and retried.json()["status"] == "processed"
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (1, 1, 0)


class StoreFault:
    """Makes the store fail as a disk or a lock does, for the statements that apply an uplink (the raw
    body is stored first and stays): the same sqlite3.OperationalError the driver raises."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.on = True

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if self.on and statement.lstrip().upper().startswith(("INSERT INTO POSITIONS", "INSERT INTO DEVICES")):
            raise sqlite3.OperationalError(self.message)


@pytest.mark.parametrize("message", ["database is locked", "attempt to write a readonly database",
                                     "database or disk is full"])
def test_a_store_failing_after_the_body_is_stored_answers_202_and_applies_it_by_itself_later(sqlite_url, message):
    # The timer retries bodies left `received` for retry_pending_after_s (5 s by default: 0.5 s here, as for
    # the bridge processes above, so the test does not sit out the operator's default).
    with b.fresh_bridge(sqlite_url, retry_pending_after_s=0.5) as bridge, TestClient(create_app(bridge)) as client:
        fault = StoreFault(message)
        event.listen(bridge.db.write_engine, "before_cursor_execute", fault)
        answers = [client.post("/uplinks/tts", content=uplink_body(n), headers=b.HEADERS) for n in range(3)]
        assert bridge.dead_letters() == [], "never a dead letter for a reason that passes"
        fault.on = False  # the store is back
        timer = RulesTimer(bridge, every_s=3600, retry_every_s=0.05)
        timer.start()
        try:
            deadline = time.monotonic() + 30
            while bridge.counts()["positions"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            timer.stop()
        counts = bridge.counts()

    assert [(a.status_code, a.json()["status"]) for a in answers] == [(202, "pending")] * 3
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (3, 3, 0)


def test_a_read_only_store_refuses_the_body_with_503(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:

        @event.listens_for(bridge.db.write_engine, "begin")
        def read_only(connection) -> None:  # noqa: ANN001 - the disk turned read-only
            connection.exec_driver_sql("PRAGMA query_only = ON")

        refused = client.post("/uplinks/tts", content=uplink_body(7), headers=b.HEADERS)
        event.remove(bridge.db.write_engine, "begin", read_only)
        bridge.db.write_engine.dispose()  # fresh connections: the disk is writable again
        retried = client.post("/uplinks/tts", content=uplink_body(7), headers=b.HEADERS)
        counts = bridge.counts()

    assert refused.status_code == 503
    assert retried.status_code == 200
    assert (counts["uplinks_stored"], counts["positions"]) == (1, 1)


def test_the_durability_bench_measures_full_against_normal_on_the_same_uplinks():
    from lora_bridge.durability_bench import run

    figures = run(uplinks=12)

    assert figures["uplinks"] == 12
    rates = [figures[k] for k in ("full_uplinks_per_s", "normal_uplinks_per_s", "full_raw_inserts_per_s",
                                  "normal_raw_inserts_per_s")]
    assert all(rate > 0 for rate in rates)
    assert figures["full_over_normal"] == pytest.approx(rates[0] / rates[1], rel=0.01)
