"""The webhook with `webhook_ack="durable"`: the network server is answered 202 once the body is kept
(committed), and the ranger sees what it says once the bridge's applier has run its batch; what is
not an uplink still gets its 400 and dead letter, a store that cannot take the body still a 503, and a
store that fails while applying leaves the body for the timer, never a dead letter."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time

import bridge_builders as b
import pytest
from bridge_process import uplink_body
from sqlalchemy import event
from starlette.testclient import TestClient
from test_bridge_collar_identity import abp_uplink

from lora_bridge.adapters.webhook import create_app
from lora_bridge.server import RulesTimer

# Where the journal is applied: a thread of the webhook's process, or a process of its own.
APPLIERS = pytest.mark.parametrize("applier", ["thread", "process"])


def post(client: TestClient, body: bytes):
    return client.post("/uplinks/tts", content=body, headers=b.HEADERS)


def wait_until(check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


def applier_meets_the_lock(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
                           timeout_s: float = 60.0) -> None:
    """Wait until the applier says the store did not take the bodies it tried to apply (another writer
    holds the lock): in a log record of this process (a thread of it), or on the stderr an applier
    process shares with it."""
    said = "kept bodies not taken by the store now"
    stderr: list[str] = []

    def heard() -> bool:
        stderr.append(capfd.readouterr().err)
        return any(said in r.getMessage() for r in caplog.records) or said in "".join(stderr)

    wait_until(heard, timeout_s)
    assert heard(), f"the applier did not say {said!r} within {timeout_s:.0f} s"


# The timer retries kept bodies once they waited this long (retry_pending_after_s: 5 s by default; the
# bridges of the timer's stories below take 0.5 s, as the durability tests' bridge processes do).
RETRY_PENDING_AFTER_S = 0.5


def counts_once_the_timer_applied(bridge, positions: int) -> dict:
    """Run the bridge's timer (its retry of kept bodies every 50 ms, of those kept RETRY_PENDING_AFTER_S
    ago) until the store holds `positions` fixes; the store's counts then."""
    timer = RulesTimer(bridge, every_s=3600, retry_every_s=0.05)
    timer.start()
    try:
        wait_until(lambda: bridge.counts()["positions"] >= positions)
    finally:
        timer.stop()
    return bridge.counts()


@APPLIERS
def test_network_server_gets_202_once_kept_and_ranger_sees_the_alert_once_applied(store_url, applier):
    with b.fresh_bridge(store_url, webhook_ack="durable", intake_applier=applier) as bridge, TestClient(create_app(bridge)) as client:
        bridge.register_animal("collar-01", "Tembo Kubwa")
        replies = [
            post(client, b.tts_uplink(b.status(lat=-2.5, lon=37.5), f_cnt=1)),
            post(client, b.tts_uplink(b.alert("poaching_risk", seq=2, lat=-2.51, lon=37.52), f_cnt=2)),
            *[post(client, b.tts_uplink(b.status(time_s=b.T0_S + 600), f_cnt=3, gateways=(gw,)))
              for gw in ("gw-a", "gw-b", "gw-c")],
        ]
        wait_until(lambda: bridge.durable_intake().backlog() == 0)
        (alert,) = bridge.open_alerts(viewer=b.RANGER)
        counts = bridge.counts()

    assert [r.status_code for r in replies] == [202] * 5
    assert [r.json()["status"] for r in replies] == ["received"] * 5
    assert [r.json()["f_cnt"] for r in replies] == [1, 2, 3, 3, 3]
    # On SQLite each body is kept in the intake journal (intake_id), on PostgreSQL as its raw row.
    assert len({r.json().get("intake_id") or r.json()["raw_uplink_id"] for r in replies}) == 5
    assert (alert.alert_type, alert.name) == ("poaching_risk", "Tembo Kubwa")
    assert (counts["uplinks_stored"], counts["duplicates"]) == (3, 2)


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"{not json", "not JSON"),
        (b.tts_uplink(b.status()).replace(b'"frm_payload": "', b'"frm_payload": "!!'), "not base64"),
    ],
)
@APPLIERS
def test_a_body_that_is_no_uplink_gets_its_dead_letter_and_a_2xx_as_without_durable_ack(sqlite_url, body, reason_part, applier):
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier=applier) as bridge, TestClient(create_app(bridge)) as client:
        broken = post(client, body)
        fine = post(client, uplink_body(1))
        wait_until(lambda: bridge.durable_intake().backlog() == 0)
        (letter,) = bridge.dead_letters()
        counts = bridge.counts()

    assert broken.status_code == 200 and broken.json()["status"] == "dead_letter"
    assert reason_part in broken.json()["reason"]
    assert letter.body == body and letter.stage == "parse" and reason_part in letter.reason
    assert fine.status_code == 202
    assert (counts["uplinks_stored"], counts["positions"]) == (2, 1)


@APPLIERS
def test_a_store_locked_by_another_writer_still_keeps_the_body_and_applies_it_once_the_lock_goes(
        sqlite_url, applier, caplog, capfd):
    with caplog.at_level(logging.WARNING, logger="lora_bridge.durable_intake"), \
            b.fresh_bridge(sqlite_url, webhook_ack="durable", sqlite_busy_timeout_ms=100,
                           intake_applier=applier) as bridge, \
            TestClient(create_app(bridge)) as client:
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.1)
        other.execute("BEGIN IMMEDIATE")  # another program holds the store's write lock
        kept = post(client, uplink_body(1))
        applier_meets_the_lock(caplog, capfd)
        held_back = bridge.counts()["positions"]
        other.rollback()
        other.close()
        wait_until(lambda: bridge.counts()["positions"] >= 1)
        counts = bridge.counts()

    assert kept.status_code == 202 and kept.json()["intake_id"] >= 1, "kept in the journal, beside the store"
    assert held_back == 0
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (1, 1, 0)


def test_a_journal_that_cannot_take_the_body_answers_503_and_keeps_nothing(sqlite_url):
    with b.fresh_bridge(sqlite_url, webhook_ack="durable") as bridge, TestClient(create_app(bridge)) as client:
        journal = bridge.durable_intake().journal
        journal.close()  # the journal's file is gone from under the bridge
        refused = post(client, uplink_body(1))
        counts = bridge.counts()

    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert counts["uplinks_stored"] == 0


@APPLIERS
def test_bodies_a_killed_bridge_kept_in_its_journal_are_applied_once_at_the_next_start(sqlite_url, applier):
    from lora_bridge.group_commit import Submission
    from lora_bridge.intake_journal import IntakeJournal
    from lora_bridge.store.utc import utc_now

    with b.fresh_bridge(sqlite_url) as bridge:  # one body already moved to the store, one not
        journal = IntakeJournal.for_store(sqlite_url)
        now = utc_now()
        first, second = uplink_body(1), uplink_body(2)
        journal.append([(now, "tts", "uplink_message", "application/json", None, first),
                        (now, "tts", "uplink_message", "application/json", None, second)])
        bridge.write_batch_now([Submission("tts", "uplink_message", first, "application/json", received_at=now)])
        journal.close()  # killed: the journal still holds both
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier=applier) as bridge, \
            TestClient(create_app(bridge)):
        wait_until(lambda: bridge.durable_intake().backlog() == 0 and bridge.counts()["positions"] >= 2)
        counts = bridge.counts()
        left = len(bridge.durable_intake().journal)

    assert (counts["uplinks_stored"], counts["positions"], counts["duplicates"]) == (2, 2, 0)
    assert left == 0


class ApplyFault:
    """The store failing (as a disk or a lock does) for the statements that apply an uplink; the raw
    body's own insert goes through."""

    def __init__(self) -> None:
        self.on = True

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if self.on and statement.lstrip().upper().startswith(("INSERT INTO POSITIONS", "INSERT INTO DEVICES")):
            raise sqlite3.OperationalError("database is locked")


def test_bodies_kept_while_the_store_fails_to_apply_them_are_applied_by_the_timer_never_dead_lettered(sqlite_url):
    # The fault is a hook on this process's engine: the applier is a thread of it here.
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="thread",
                        retry_pending_after_s=RETRY_PENDING_AFTER_S) as bridge, TestClient(create_app(bridge)) as client:
        fault = ApplyFault()
        event.listen(bridge.db.write_engine, "before_cursor_execute", fault)
        answers = [post(client, uplink_body(n)) for n in range(3)]
        wait_until(lambda: bridge.durable_intake().backlog() == 0)
        left_waiting = bridge.counts()["positions"]
        assert bridge.dead_letters() == [], "never a dead letter for a reason that passes"
        fault.on = False  # the store is back
        counts = counts_once_the_timer_applied(bridge, positions=3)

    assert [a.status_code for a in answers] == [202] * 3
    assert left_waiting == 0
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (3, 3, 0)


def test_bodies_a_postgresql_store_fails_to_apply_in_the_applier_process_are_applied_by_the_timer_never_dead_lettered(
        postgres_url):
    # The applier is a process of its own here: the fault is the store's (a trigger answering "disk
    # full" to the fixes' insert), not a hook in this process.
    from sqlalchemy import text

    with b.fresh_bridge(postgres_url, webhook_ack="durable", intake_applier="process",
                        retry_pending_after_s=RETRY_PENDING_AFTER_S) as bridge, \
            TestClient(create_app(bridge)) as client:
        with bridge.db.write() as session:
            session.execute(text("CREATE FUNCTION tembo_disk_full() RETURNS trigger LANGUAGE plpgsql AS "
                                 "$$ BEGIN RAISE EXCEPTION 'no space left on device' USING ERRCODE = '53100'; END $$"))
            session.execute(text("CREATE TRIGGER disk_full BEFORE INSERT ON positions "
                                 "FOR EACH ROW EXECUTE FUNCTION tembo_disk_full()"))
        answers = [post(client, uplink_body(n)) for n in range(3)]
        wait_until(lambda: bridge.durable_intake().backlog() == 0)
        backlog = bridge.durable_intake().backlog()
        left_waiting = bridge.counts()["positions"]
        assert bridge.dead_letters() == [], "never a dead letter for a reason that passes"
        with bridge.db.write() as session:  # the disk has room again
            session.execute(text("DROP TRIGGER disk_full ON positions"))
        counts = counts_once_the_timer_applied(bridge, positions=3)

    assert [a.status_code for a in answers] == [202] * 3
    assert (backlog, left_waiting) == (0, 0), "the applier let go of the rows the store failed; they wait for the timer"
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (3, 3, 0)


def test_a_postgresql_applier_whose_read_of_the_kept_rows_fails_reads_them_again_and_applies_each_once(
        postgres_url, monkeypatch, caplog):
    # The applier process's loop, run here in a thread: the webhook process's side is a pipe that says
    # which raw rows its commits kept; the store fails the first read of them.
    from sqlalchemy.exc import OperationalError

    from lora_bridge import durable_intake, ingest
    from lora_bridge.group_commit import Submission
    from lora_bridge.intake_applier import ParentLink, _apply_received_rows

    reads = []
    read_rows = durable_intake.received_rows

    def read_that_fails_once_running(*args, **kwargs):
        reads.append(kwargs)
        if len(reads) == 2:  # the first read of rows kept after the applier started
            raise OperationalError("SELECT raw_uplinks.id", {}, Exception("server closed the connection"))
        return read_rows(*args, **kwargs)

    monkeypatch.setattr(durable_intake, "received_rows", read_that_fails_once_running)
    reader, writer = os.pipe()
    applied, said = [], []
    with b.fresh_bridge(postgres_url) as bridge:
        link = ParentLink(os.fdopen(reader, "rb"))
        applier = threading.Thread(target=_apply_received_rows, daemon=True, args=(
            bridge, link, lambda ids, batch, left=None: applied.append((list(ids), left)),
            lambda message: said.append(json.loads(json.dumps(message)))))  # sent as the child sends it
        with caplog.at_level(logging.WARNING, logger="lora_bridge.intake_applier"):
            applier.start()
            try:
                wait_until(lambda: said)
                with bridge.db.write() as session:  # what the webhook's writer commits: raw rows `received`
                    kept = ingest.insert_raw_rows(session, [Submission("tts", "up", uplink_body(n), "application/json")
                                                            for n in range(3)])
                os.write(writer, f"{max(kept)}\n".encode())
                wait_until(lambda: bridge.counts()["positions"] == 3)
            finally:
                os.write(writer, b"stop\n")  # as the webhook process stops its applier
                os.close(writer)
                applier.join(30)
        counts = bridge.counts()

    assert said == [{"journal_ids": [], "through": 0}]
    assert any("kept rows not read (OperationalError); read again" in r.getMessage() for r in caplog.records)
    assert len(reads) >= 3, "read again after the failure"
    assert applied == [(kept, None)]
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (3, 3, 0)
    assert not applier.is_alive()


@APPLIERS
def test_closing_the_bridge_applies_every_body_it_answered(store_url, applier):
    with b.fresh_bridge(store_url, webhook_ack="durable", intake_applier=applier) as bridge, TestClient(create_app(bridge)) as client:
        answers = [post(client, uplink_body(n)) for n in range(40)]
    with b.fresh_bridge(store_url) as again:
        counts = again.counts()

    assert {a.status_code for a in answers} == {202}
    assert (counts["uplinks_stored"], counts["positions"]) == (40, 40)


@APPLIERS
def test_while_the_store_cannot_keep_up_the_bridge_holds_answers_instead_of_growing_its_backlog(
        sqlite_url, applier, caplog, capfd):
    from lora_bridge.group_commit import Submission

    with caplog.at_level(logging.WARNING, logger="lora_bridge.durable_intake"), \
            b.fresh_bridge(sqlite_url, webhook_ack="durable", sqlite_busy_timeout_ms=100,
                           intake_applier=applier) as bridge:
        intake = bridge.durable_intake()
        intake.max_backlog = 2
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1)
        other.execute("BEGIN IMMEDIATE")  # the applier cannot apply: the backlog fills
        answered: list[Submission] = []
        for n in range(5):
            intake.submit(Submission("tts", None, uplink_body(n)), answered.extend)
        wait_until(lambda: len(answered) >= 2, timeout_s=5)
        applier_meets_the_lock(caplog, capfd)  # the two kept wait: the writer holds the other three
        held = len(answered)
        other.rollback()
        other.close()
        wait_until(lambda: len(answered) == 5 and intake.backlog() == 0)
        counts = bridge.counts()

    assert held == 2
    assert [s.outcome().status for s in answered] == ["received"] * 5
    assert (counts["uplinks_stored"], counts["positions"]) == (5, 5)


def test_a_journal_never_names_two_bodies_alike_even_once_emptied(sqlite_url):
    from lora_bridge.intake_journal import IntakeJournal
    from lora_bridge.store.utc import utc_now

    journal = IntakeJournal.for_store(sqlite_url)
    try:
        (first,) = journal.append([(utc_now(), "tts", "uplink_message", None, None, uplink_body(1))])
        journal.remove([first])
        (second,) = journal.append([(utc_now(), "tts", "uplink_message", None, None, uplink_body(2))])
    finally:
        journal.close()

    assert second > first


def test_bodies_the_store_took_leave_the_journal_and_the_ones_between_them_stay(sqlite_url):
    """The applier lets a batch's bodies go by runs of consecutive ids: a body it could not apply, between
    two it did, stays in the journal for the next try, whatever order the ids come in."""
    from lora_bridge.intake_journal import IntakeJournal
    from lora_bridge.store.utc import utc_now

    journal = IntakeJournal.for_store(sqlite_url)
    try:
        ids = journal.append([(utc_now(), "tts", "uplink_message", None, None, uplink_body(n)) for n in range(10)])
        journal.remove([ids[4], ids[1], ids[2], ids[3], ids[7], ids[9], ids[2]])
        left = [entry.intake_id for entry in journal.entries()]
    finally:
        journal.close()

    assert left == [ids[0], ids[5], ids[6], ids[8]]


def test_each_body_of_a_kept_batch_is_answered_with_the_journal_id_that_holds_it(sqlite_url):
    """A batch goes into the journal in one statement: the ids it answers are those of its rows, in order,
    even after a batch emptied from the journal and among batches of other sizes and arrival times."""
    from datetime import timedelta

    from lora_bridge.intake_journal import IntakeJournal
    from lora_bridge.store.utc import utc_now

    now = utc_now()
    journal = IntakeJournal.for_store(sqlite_url)
    try:
        gone = journal.append([(now, "tts", "uplink_message", None, None, uplink_body(n)) for n in range(3)])
        journal.remove(gone)
        kept = {}
        for first, size in ((3, 1), (4, 5), (9, 2)):
            batch = [(now + timedelta(seconds=n % 2), "tts", None, "application/json",
                      {"application_id": "herd", "device_id": f"c{n}"} if n % 3 == 0 else None, uplink_body(n))
                     for n in range(first, first + size)]
            kept.update(zip(journal.append(batch), batch, strict=True))
        entries = journal.entries()
    finally:
        journal.close()

    assert sorted(kept) == list(range(gone[-1] + 1, gone[-1] + 9)) and gone == [gone[0], gone[0] + 1, gone[0] + 2]
    assert [(e.intake_id, e.received_at, e.network, e.event, e.content_type, e.path_ids, e.body) for e in entries] == [
        (i, *kept[i]) for i in sorted(kept)]


def test_an_applier_process_killed_mid_load_is_started_again_and_applies_every_body_once(store_url):
    # On SQLite the webhook's process keeps bodies in its journal, on PostgreSQL as raw rows `received`:
    # either way the applier that takes over applies what the killed one was told of and had not applied.
    import signal

    with b.fresh_bridge(store_url, webhook_ack="durable", intake_applier="process") as bridge, \
            TestClient(create_app(bridge)) as client:
        intake = bridge.durable_intake()
        first = intake.applier_pid()
        answers = [post(client, uplink_body(n)) for n in range(30)]
        os.kill(first, signal.SIGKILL)
        answers += [post(client, uplink_body(n)) for n in range(30, 60)]
        wait_until(lambda: intake.backlog() == 0 and bridge.counts()["positions"] >= 60)
        second = intake.applier_pid()
        counts = bridge.counts()
        left, backlog = len(intake.journal) if intake.journal is not None else 0, intake.backlog()

    assert {a.status_code for a in answers} == {202}
    assert second is not None and second != first, "a new applier process took over"
    assert (counts["uplinks_stored"], counts["positions"], counts["duplicates"]) == (60, 60, 0)
    assert (left, backlog) == (0, 0), "the webhook process counts nothing as waiting that was applied"


def test_a_second_webhook_process_on_the_same_store_refuses_its_journal(sqlite_url):
    from lora_bridge.intake_journal import IntakeJournal

    journal = IntakeJournal.for_store(sqlite_url)
    try:
        with pytest.raises(RuntimeError, match="held by another bridge process"):
            IntakeJournal.for_store(sqlite_url)
        reader = IntakeJournal.for_store(sqlite_url, owner=False)  # an applier only reads and deletes
        reader.close()
    finally:
        journal.close()


@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_a_renamed_chirpstack_collar_is_answered_by_its_deveui_and_the_name_it_is_filed_under(store_url, ack):
    eui = "70b3d57ed0000c01"
    with b.fresh_bridge(store_url, webhook_ack=ack) as bridge, TestClient(create_app(bridge)) as client:
        def post_chirpstack(device_name: str, f_cnt: int):
            body = b.chirpstack_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id=device_name, dev_eui=eui,
                                       f_cnt=f_cnt)
            return client.post("/uplinks/chirpstack?event=up", content=body, headers=b.HEADERS)

        first = post_chirpstack("collar-a", 1)
        if ack == "durable":
            wait_until(lambda: bridge.durable_intake().backlog() == 0)
        renamed = post_chirpstack("renamed-b", 2)  # the operator renamed the device in ChirpStack
        if ack == "durable":
            wait_until(lambda: bridge.durable_intake().backlog() == 0)
        (device,) = bridge.devices()

    # Devices are identified by DevEUI everywhere, names are labels: the answer names the collar, not
    # the network's label of the moment (the durable 202 had said "renamed-b").
    assert [(r.json()["dev_eui"], r.json()["device_id"]) for r in (first, renamed)] == [
        ("70B3D57ED0000C01", "collar-a"), ("70B3D57ED0000C01", "collar-a")]
    assert (device.device_id, device.dev_eui) == ("collar-a", "70B3D57ED0000C01")


def test_two_abp_collars_of_one_name_are_each_answered_by_the_name_they_are_filed_under(store_url):
    # The Things Stack ABP devices without a DevEUI, both `collar-1`, in two reserves' applications
    # (data-formats uplink_message without dev_eui): the durable 202 names each collar as the store
    # files it, as the applied answer does; it had named the southern collar `collar-1`, the northern's.
    with b.fresh_bridge(store_url, webhook_ack="durable") as bridge, TestClient(create_app(bridge)) as client:
        answers = []
        for application, f_cnt in (("park-north", 100), ("park-south", 3), ("park-north", 101), ("park-south", 4)):
            answers.append(post(client, abp_uplink(application, f_cnt, -2.5)))
            wait_until(lambda: bridge.durable_intake().backlog() == 0)
        filed = sorted(d.device_id for d in bridge.devices())

    assert [(a.status_code, a.json()["device_id"], a.json()["dev_eui"]) for a in answers] == [
        (202, "collar-1", None), (202, "park-south/collar-1", None)] * 2
    assert filed == ["collar-1", "park-south/collar-1"]


def test_a_collar_heard_all_night_is_looked_up_once_for_the_webhooks_answers(sqlite_url):
    # Each answer names the collar as the store files it; the writer reads that name from the store
    # until it finds it, then remembers it: a busy collar does not cost a read of the store per request.
    eui = "70B3D57ED0000C02"
    lookups: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if "FROM devices" in statement and "dev_eui IN" in statement:
            lookups.append(statement)

    with b.fresh_bridge(sqlite_url, webhook_ack="durable") as bridge, TestClient(create_app(bridge)) as client:
        event.listen(bridge.db.read_engine, "before_cursor_execute", seen)
        answers = []
        for f_cnt in range(1, 6):
            body = b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id="mama-collar", f_cnt=f_cnt,
                                dev_eui=eui)
            answers.append(post(client, body))
            wait_until(lambda: bridge.durable_intake().backlog() == 0)
        event.remove(bridge.db.read_engine, "before_cursor_execute", seen)
        stored = bridge.counts()["uplinks_stored"]

    assert [(a.status_code, a.json()["device_id"]) for a in answers] == [(202, "mama-collar")] * 5
    assert stored == 5
    # the first answer's read finds no collar yet (it is applied after), the second finds it
    assert len(lookups) == 2


def test_operator_who_gives_the_applier_its_own_process_sees_it_freeze_its_start_up_heap_as_the_webhook_does(
        sqlite_url, caplog):
    # The serving process leaves its start-up heap out of the garbage collector's full passes; the
    # applier process holds the same libraries and its own bridge, and its batches allocate the most.
    caplog.set_level(logging.INFO, logger="lora_bridge.intake_applier")
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="process") as bridge, \
            TestClient(create_app(bridge)) as client:
        reply = post(client, uplink_body(1))
        wait_until(lambda: bridge.durable_intake().backlog() == 0)
        counts = bridge.counts()

    (ready,) = [r.getMessage() for r in caplog.records if "applier process" in r.getMessage() and "ready" in r.getMessage()]
    frozen = int(re.search(r"ready, (\d+) objects of its start-up heap frozen", ready).group(1))
    assert frozen > 50_000  # the bridge's libraries and the opened bridge, not a heap frozen before them
    assert reply.status_code == 202 and counts["uplinks_stored"] == 1


def test_an_applier_process_asked_to_stop_ends_cleanly_though_its_parent_still_holds_the_pipe(sqlite_url):
    # The webhook process closes the pipe right after "stop", but not always before the child is done:
    # a child whose reader thread was still inside a read of stdin then aborted at the interpreter's
    # shutdown ("Fatal Python error: ... could not acquire lock for <stdin>"), about one stop in six.
    import json
    import subprocess
    import sys

    from lora_bridge.intake_applier import child_settings

    with b.fresh_bridge(sqlite_url, webhook_ack="durable") as bridge:
        settings = child_settings(bridge.settings)
    child = subprocess.Popen([sys.executable, "-m", "lora_bridge.intake_applier", str(os.getpid())],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        child.stdin.write(json.dumps({"settings": settings}).encode() + b"\n")
        child.stdin.flush()
        assert child.stdout.readline().startswith(b"ready")
        child.stdin.write(b"stop\n")
        child.stdin.flush()  # and the pipe stays open
        code = child.wait(timeout=120)
        said = child.stderr.read()
    finally:
        child.kill()
        child.stdin.close()

    assert b"Fatal Python error" not in said, said.decode(errors="replace")
    assert code == 0


@pytest.mark.parametrize(("cores", "in_process"), [(2, True), (8, True), (1, False)])
def test_operator_who_leaves_the_applier_to_the_bridge_gets_a_process_of_its_own_when_the_machine_has_cores_for_it(
        sqlite_url, monkeypatch, cores, in_process):
    from lora_bridge import settings

    monkeypatch.setattr(settings, "usable_cores", lambda: cores)
    with b.fresh_bridge(sqlite_url, webhook_ack="durable") as bridge, TestClient(create_app(bridge)) as client:
        reply = post(client, uplink_body(1))
        wait_until(lambda: bridge.durable_intake().backlog() == 0)
        applier_pid = bridge.durable_intake().applier_pid()
        counts = bridge.counts()

    assert bridge.settings.intake_applier == "auto"
    assert (applier_pid is not None) == in_process
    assert reply.status_code == 202 and counts["positions"] == 1


def test_bodies_that_came_while_a_batch_was_applied_are_taken_at_once_not_after_another_gather(sqlite_url, monkeypatch):
    """Under load the applier goes from batch to batch: what arrived meanwhile has waited already, so a
    ranger's alert is not held back a further gathering time (which also left the applier idle)."""
    from lora_bridge import durable_intake
    from lora_bridge.group_commit import Submission

    applying, release = threading.Event(), threading.Event()
    real_apply = durable_intake.apply_entries

    def first_batch_held(bridge, journal, taken):
        if not release.is_set():
            applying.set()
            release.wait(timeout=60)
        return real_apply(bridge, journal, taken)

    monkeypatch.setattr(durable_intake, "apply_entries", first_batch_held)
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="thread") as bridge:
        intake = bridge.durable_intake()
        intake.gather_s = 3600.0  # an idle applier would wait this long for more bodies
        intake.max_apply = 1  # the first body is a full batch: applied without gathering
        answered: list[Submission] = []
        intake.submit(Submission("tts", None, uplink_body(0)), answered.extend)
        assert applying.wait(timeout=30)
        intake.max_apply = durable_intake.MAX_APPLY
        intake.submit(Submission("tts", None, uplink_body(1)), answered.extend)
        wait_until(lambda: len(answered) == 2)
        release.set()
        wait_until(lambda: intake.backlog() == 0)
        backlog = intake.backlog()
        counts = bridge.counts()

    assert [s.outcome().status for s in answered] == ["received"] * 2
    assert backlog == 0
    assert (intake.batches_applied, counts["uplinks_stored"]) == (2, 2)


@APPLIERS
def test_a_body_that_comes_to_an_idle_writer_is_kept_and_answered_at_once(sqlite_url, applier, monkeypatch):
    """The network server's body is answered as soon as it is kept, not when the idle writer next looks
    (it is woken for it, beside an applier thread that waits on the same condition for written bodies)."""
    from lora_bridge import durable_intake
    from lora_bridge.group_commit import Submission

    monkeypatch.setattr(durable_intake, "WRITER_IDLE_S", 3600.0)  # a writer not woken would wait this long
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier=applier) as bridge:
        intake = bridge.durable_intake()
        answered: list[Submission] = []
        for n in range(2):
            wait_until(lambda: intake._writer_waiting)  # noqa: SLF001 - the writer idles before each body
            writer_idle = intake._writer_waiting  # noqa: SLF001
            intake.submit(Submission("tts", None, uplink_body(n)), answered.extend)
            wait_until(lambda n=n: len(answered) == n + 1)
            assert writer_idle and len(answered) == n + 1
        wait_until(lambda: intake.backlog() == 0)
        backlog = intake.backlog()

    assert [s.outcome().status for s in answered] == ["received"] * 2
    assert backlog == 0


def test_a_body_the_store_could_not_take_at_first_is_applied_from_what_the_webhook_read_not_read_again(
        sqlite_url, monkeypatch):
    # The applier a thread of the webhook's process: each body is read once there, on arrival (its
    # answer names the collar), and its batch applies that reading; a batch the store did not take is
    # tried again with it too, instead of every body being read again in the applier's busiest moments.
    from lora_bridge import durable_intake, pipeline

    reads: dict[bytes, int] = {}

    def counted(read):
        def read_counted(network, event, body, **kwargs):
            reads[body] = reads.get(body, 0) + 1
            return read(network, event, body, **kwargs)
        return read_counted

    monkeypatch.setattr(durable_intake, "read_network_message", counted(durable_intake.read_network_message))
    monkeypatch.setattr(pipeline, "read_network_message", counted(pipeline.read_network_message))
    bodies = [uplink_body(n) for n in range(1, 4)]
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="thread") as bridge, \
            TestClient(create_app(bridge)) as client:
        write_batch_now, turned_away = bridge.write_batch_now, []

        def store_busy_once(submissions):
            if not turned_away:
                turned_away.append(len(submissions))
                raise durable_intake.StoreUnavailable("the store is busy")
            write_batch_now(submissions)

        monkeypatch.setattr(bridge, "write_batch_now", store_busy_once)
        answers = [post(client, body) for body in bodies]
        wait_until(lambda: bridge.counts()["positions"] >= len(bodies))
        counts = bridge.counts()

    assert [a.status_code for a in answers] == [202] * len(bodies)
    assert turned_away, "the applier's first batch met a busy store"
    assert (counts["uplinks_stored"], counts["positions"], counts["dead_letter"]) == (len(bodies), len(bodies), 0)
    assert reads == dict.fromkeys(bodies, 1)


def test_the_applier_process_waits_for_company_at_most_the_gathering_time_from_a_bodys_commit():
    # The webhook process tells the applier process of each journal commit on a pipe. A lone body waits
    # GATHER_S from its commit for others to share its batch; a body committed while the applier applied
    # the batch before is counted from its commit too (the applier, back from that batch, waits only
    # what is left of GATHER_S), so a batch that took less than GATHER_S is not followed by a small one.
    from lora_bridge.durable_intake import GATHER_S
    from lora_bridge.intake_applier import ParentLink, _gathered

    reader, writer = os.pipe()
    link = ParentLink(os.fdopen(reader, "rb"))
    os.write(writer, b"3\n")
    with link.changed:
        assert link.changed.wait_for(lambda: link.committed_id == 3, timeout=30)
        told = link.told_since(0)
    assert told is not None
    assert _gathered(link, 0, 0) == (3, False, False)
    assert time.monotonic() - told >= GATHER_S  # it waited for company from the commit on
    # a body committed while the applier applied the batch before (told before the applier came back,
    # with nothing in hand): gathered for until GATHER_S after its commit, as a lone one is
    os.write(writer, b"7\n")
    with link.changed:
        assert link.changed.wait_for(lambda: link.committed_id == 7, timeout=30)
        later = link.told_since(3)
    assert later is not None and later > told
    assert _gathered(link, 3, 0) == (7, False, False)
    assert time.monotonic() - later >= GATHER_S
    os.close(writer)  # the parent gone: stop, and nothing left to gather
    with link.changed:
        assert link.changed.wait_for(lambda: link.parent_gone, timeout=30)
    assert _gathered(link, 7, 0) == (7, True, True)


def test_the_applier_process_stops_gathering_at_half_the_backlog_bound(monkeypatch):
    """The writer counts a batch in the backlog bound until it is released: an applier process that
    gathered the whole bound held every network server's answer while it applied. It applies once half
    the bound is committed, so the writer keeps answering the other half meanwhile."""
    from lora_bridge import durable_intake
    from lora_bridge.intake_applier import ParentLink, _gathered

    monkeypatch.setattr(durable_intake, "GATHER_S", 3600.0)  # a batch not yet enough would wait this long
    monkeypatch.setattr(durable_intake, "MAX_BACKLOG", 8)
    reader, writer = os.pipe()
    link = ParentLink(os.fdopen(reader, "rb"))
    gathered: list[tuple[int, bool, bool]] = []
    gathering = threading.Thread(target=lambda: gathered.append(_gathered(link, 0, 0)), daemon=True)
    os.write(writer, b"4\n")  # half the bound committed
    gathering.start()
    gathering.join(timeout=30)
    os.close(writer)

    assert gathered == [(4, False, False)]


def test_the_applier_thread_applies_once_half_the_backlog_bound_is_kept(sqlite_url):
    """The same with the applier a thread of the webhook's process: two bodies kept of a bound of four
    are applied together at once, not after the gathering time."""
    from lora_bridge.group_commit import Submission

    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="thread") as bridge:
        intake = bridge.durable_intake()
        intake.gather_s = 3600.0  # a batch not yet enough would wait this long
        intake.max_backlog = 4
        answered: list[Submission] = []
        for n in range(2):
            intake.submit(Submission("tts", None, uplink_body(n)), answered.extend)
        wait_until(lambda: intake.applied == 2)
        applied, batches = intake.applied, intake.batches_applied
        counts = bridge.counts()

    assert [s.outcome().status for s in answered] == ["received"] * 2
    assert (applied, batches, counts["uplinks_stored"]) == (2, 1, 2)
