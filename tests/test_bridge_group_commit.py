"""Group commit: uplinks that arrive together are kept and applied together, in one transaction,
and each sender still gets its own answer only once its body is durable."""

from __future__ import annotations

import json
import sqlite3
import threading

import bridge_builders as b
import network_fixtures as nf
import pytest
from sqlalchemy import event, func, select

from lora_bridge import pipeline
from lora_bridge.domain import rules_engine
from lora_bridge.errors import StoreUnavailable
from lora_bridge.group_commit import GroupCommit, Submission
from lora_bridge.store.tables import ActivitySummary, Alert, Animal, DeadLetter, Device, Position, RawUplink


def up(body: bytes) -> Submission:
    return Submission("tts", "up", body, content_type="application/json")


def herd_hour(collars: tuple[str, ...] = ("collar-01", "collar-02"), hours: int = 3) -> list[bytes]:
    """Status then activity per collar-hour, collars interleaved as a network server delivers them."""
    bodies = []
    for hour in range(hours):
        for collar in collars:
            t_s = b.T0_S + 3600 * hour
            heard = b.T0 + b.timedelta(hours=hour, seconds=2)
            bodies.append(b.tts_uplink(b.status(time_s=t_s), device_id=collar, f_cnt=2 * hour + 1, received_at=heard))
            bodies.append(b.tts_uplink(b.activity(time_s=t_s), device_id=collar, f_cnt=2 * hour + 2,
                                       received_at=heard))
    return bodies


def commits_of(bridge) -> list[int]:
    commits = [0]

    def count(*_args) -> None:
        commits[0] += 1

    event.listen(bridge.db.write_engine, "commit", count)
    return commits


def test_uplinks_handed_in_together_are_applied_in_one_commit_each_answered_for_itself(store_url):
    bodies = herd_hour()
    with b.fresh_bridge(store_url) as bridge:
        commits = commits_of(bridge)

        results = bridge.ingest_batch([up(body) for body in bodies])

        assert commits[0] == 1
        assert [(r.status, r.device_id, r.f_cnt) for r in results] == [
            ("processed", collar, f_cnt)
            for hour in range(3) for collar in ("collar-01", "collar-02") for f_cnt in (2 * hour + 1, 2 * hour + 2)
        ]
        counts = bridge.counts()
        assert (counts["uplinks_stored"], counts["positions"], counts["activity_summaries"]) == (12, 6, 6)
        tracks = bridge.tracks(viewer=b.RANGER)
        assert {animal: len(fixes) for animal, fixes in tracks.items()} == {"1": 3, "2": 3}


def test_the_rules_run_once_per_collar_of_a_batch_not_once_per_uplink(store_url, monkeypatch):
    evaluated: list[str] = []
    evaluate = rules_engine.evaluate_device

    def counting(session, runtime, device_id):
        evaluated.append(device_id)
        return evaluate(session, runtime, device_id)

    monkeypatch.setattr(rules_engine, "evaluate_device", counting)
    with b.fresh_bridge(store_url) as bridge:
        bridge.ingest_batch([up(body) for body in herd_hour()])
        still = [b.tts_uplink(b.status(time_s=b.T0_S + 3600 * h), device_id="collar-03", f_cnt=h + 1,
                              received_at=b.T0 + b.timedelta(hours=h, seconds=2)) for h in range(14)]
        bridge.ingest_batch([up(body) for body in still])

        assert sorted(evaluated) == ["collar-01", "collar-02", "collar-03"]
        (mortality,) = [a for a in bridge.open_alerts(viewer=b.RANGER) if a.alert_type == "immobility"]
        assert mortality.device_id == "collar-03", "14 still hours in one batch still raise the alert"


def test_two_copies_of_one_uplink_in_one_batch_count_once_with_both_gateways(store_url):
    message = b.status()
    copies = [b.tts_uplink(message, gateways=("gw-north",)), b.tts_uplink(message, gateways=("gw-south",))]
    with b.fresh_bridge(store_url) as bridge:
        first, second = bridge.ingest_batch([up(body) for body in copies])

        assert (first.status, second.status, second.duplicate_of) == ("processed", "duplicate", first.raw_uplink_id)
        with bridge.db.read() as session:
            kept = session.get(RawUplink, first.raw_uplink_id)
            assert sorted(g["gateway_id"] for g in kept.gateways) == ["gw-north", "gw-south"]
        assert bridge.counts()["positions"] == 1


def test_copies_heard_by_a_second_gateway_in_a_later_batch_join_their_first_copies_read_with_the_batch(store_url):
    # Two workers sharing the collars: one copy reaches the owner directly, the other handed over, so
    # the second copies of a herd's uplinks come in a later batch than their first copies.
    messages = [(collar, f_cnt, b.status(time_s=b.T0_S + 600 * f_cnt))
                for collar in ("collar-01", "collar-02") for f_cnt in (1, 2)]
    first_copies = [b.tts_uplink(m, device_id=c, f_cnt=f, gateways=("gw-north",)) for c, f, m in messages]
    later_copies = [b.tts_uplink(m, device_id=c, f_cnt=f, gateways=("gw-south",)) for c, f, m in messages]
    with b.fresh_bridge(store_url) as bridge:
        kept = bridge.ingest_batch([up(body) for body in first_copies])
        said: list[str] = []
        event.listen(bridge.db.write_engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_a: said.append(" ".join(statement.split())))
        copies = bridge.ingest_batch([up(body) for body in later_copies])
        with bridge.db.read() as session:
            gateways = [sorted(g["gateway_id"] for g in session.get(RawUplink, r.raw_uplink_id).gateways) for r in kept]
        positions = bridge.counts()["positions"]

    assert [r.status for r in copies] == ["duplicate"] * 4
    assert [r.duplicate_of for r in copies] == [r.raw_uplink_id for r in kept]
    assert gateways == [["gw-north", "gw-south"]] * 4
    assert positions == 4
    first_copy_reads = [s for s in said if s.startswith("SELECT raw_uplinks.id") and "WHERE raw_uplinks.dedup_key" in s]
    assert len(first_copy_reads) == 1  # the batch's first copies in one read, not one read per copy


def test_a_collar_that_restarts_its_frame_counter_inside_a_batch_starts_a_session_not_a_duplicate(store_url):
    bodies = [
        b.tts_uplink(b.status(time_s=b.T0_S + n), f_cnt=f_cnt, received_at=b.T0 + b.timedelta(seconds=n))
        for n, f_cnt in ((500, 500), (501, 501), (502, 502), (1000, 0), (1001, 1), (1003, 3))
    ]
    replayed = b.tts_uplink(b.status(time_s=b.T0_S + 1001), f_cnt=1, received_at=b.T0 + b.timedelta(seconds=1001))
    with b.fresh_bridge(store_url) as bridge:
        results = bridge.ingest_batch([up(body) for body in bodies] + [up(replayed)])

        assert [r.status for r in results] == ["processed"] * 6 + ["duplicate"]
        (device,) = bridge.devices()
        assert (device.uplinks_received, device.uplinks_lost) == (6, 1)


def test_a_body_that_breaks_its_batch_is_a_dead_letter_and_the_rest_of_the_batch_is_applied(store_url, monkeypatch):
    apply = pipeline.apply_message

    def breaks_on_frame_two(session, *, uplink, **kwargs):
        if uplink.f_cnt == 2:
            raise RuntimeError("a bug in applying this message")
        return apply(session, uplink=uplink, **kwargs)

    monkeypatch.setattr(pipeline, "apply_message", breaks_on_frame_two)
    bodies = [b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), f_cnt=n) for n in (1, 2, 3)]
    with b.fresh_bridge(store_url) as bridge:
        results = bridge.ingest_batch([up(body) for body in bodies])

        assert [(r.status, r.stage) for r in results] == [
            ("processed", None), ("dead_letter", "apply"), ("processed", None)
        ]
        (letter,) = bridge.dead_letters()
        assert letter.raw_uplink_id == results[1].raw_uplink_id and "a bug" in letter.reason
        assert bridge.counts()["positions"] == 2


def test_a_store_that_cannot_take_a_batch_acknowledges_none_of_it_and_takes_the_retry(tmp_path):
    url = f"sqlite:///{tmp_path / 'tembo.db'}"
    bodies = [b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), f_cnt=n) for n in (1, 2, 3)]
    with b.fresh_bridge(url, sqlite_busy_timeout_ms=100) as bridge:
        other = sqlite3.connect(tmp_path / "tembo.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        with pytest.raises(StoreUnavailable):
            bridge.ingest_batch([up(body) for body in bodies])
        other.execute("ROLLBACK")
        other.close()
        with bridge.db.read() as session:
            assert session.scalar(select(func.count()).select_from(RawUplink)) == 0

        retried = bridge.ingest_batch([up(body) for body in bodies])

        assert [r.status for r in retried] == ["processed"] * 3


def test_senders_arriving_while_a_batch_is_written_are_written_together_next_each_getting_its_own_answer():
    written: list[list[bytes]] = []
    first_batch_started = threading.Event()
    let_first_batch_finish = threading.Event()

    def write_batch(batch: list[Submission]) -> None:
        written.append([s.body for s in batch])
        if len(written) == 1:
            first_batch_started.set()
            assert let_first_batch_finish.wait(10)
        for submission in batch:
            submission.result = b"kept " + submission.body

    group = GroupCommit(write_batch)
    answers: dict[bytes, bytes] = {}

    def send(body: bytes) -> None:
        answers[body] = group.submit(up(body))

    leader = threading.Thread(target=send, args=(b"first",))
    leader.start()
    assert first_batch_started.wait(10)
    followers = [threading.Thread(target=send, args=(f"body-{n}".encode(),)) for n in range(5)]
    for thread in followers:
        thread.start()
    while group.waiting() < 5:
        threading.Event().wait(0.01)
    let_first_batch_finish.set()
    for thread in [leader, *followers]:
        thread.join(10)

    assert written[0] == [b"first"]
    assert sorted(written[1]) == sorted(f"body-{n}".encode() for n in range(5)) and len(written) == 2
    assert answers == {body: b"kept " + body for body in [b"first", *(f"body-{n}".encode() for n in range(5))]}


def test_a_batch_that_fails_unexpectedly_hands_its_error_to_every_sender_in_it():
    def write_batch(batch: list[Submission]) -> None:
        raise StoreUnavailable("store unavailable: disk I/O error")

    group = GroupCommit(write_batch)

    with pytest.raises(StoreUnavailable):
        group.submit(up(b"body"))
    assert (group.batches, group.waiting()) == (1, 0)


def test_writers_of_a_sqlite_store_are_let_in_in_the_order_they_came_so_a_burst_of_batches_starves_no_one():
    from lora_bridge.store.database import WriterQueue

    queue = WriterQueue()
    entered: list[str] = []

    def writer(name: str) -> None:
        with queue:
            entered.append(name)

    with queue:  # a batch is being written
        with queue:  # the same thread may go in again (a unit of work inside another)
            pass
        outbox = threading.Thread(target=writer, args=("outbox",))
        outbox.start()
        while queue.waiting() < 1:
            threading.Event().wait(0.01)
        next_batch = threading.Thread(target=writer, args=("next batch",))
        next_batch.start()
        while queue.waiting() < 2:
            threading.Event().wait(0.01)
    outbox.join(10)
    next_batch.join(10)

    assert entered == ["outbox", "next batch"]


def test_a_batch_writes_each_body_once_in_its_final_state_and_its_fixes_and_summaries_in_one_statement_each(store_url):
    # On PostgreSQL too: the raw rows' ids come from their sequence, the rows go in at the batch's end.
    bodies = herd_hour()
    with b.fresh_bridge(store_url) as bridge:
        said = b.statements_of(bridge)

        results = bridge.ingest_batch([up(body) for body in bodies])

        assert {r.status for r in results} == {"processed"}
        assert sum(s.startswith("INSERT INTO raw_uplinks") for s in said) == 1
        assert not [s for s in said if s.startswith("UPDATE raw_uplinks")]
        assert sum(s.startswith("INSERT INTO positions") for s in said) == 1
        assert sum(s.startswith("INSERT INTO activity_summaries") for s in said) == 1
        with bridge.db.read() as session:
            rows = session.execute(
                select(RawUplink.id, RawUplink.status, RawUplink.f_cnt, RawUplink.message, RawUplink.dedup_key,
                       RawUplink.processed_at, RawUplink.received_at).order_by(RawUplink.id)
            ).all()
        assert [tuple(row[:4]) for row in rows] == [
            (r.raw_uplink_id, "processed", r.f_cnt, r.message) for r in results
        ]
        assert all(all(row[4:]) for row in rows)


def test_a_herd_first_heard_in_one_batch_is_filed_with_its_animals_and_first_alerts(store_url):
    """A new herd's first batch: every collar and the animal wearing it made once, each alert and fix
    naming them. A SQLite batch checks foreign keys at its commit, so its new collars and animals wait
    for the batch's one flush (the collars in one insert); PostgreSQL writes each as it is made (rows
    referring to it may be flushed before it otherwise)."""
    herd = tuple(f"collar-{n:02d}" for n in range(6))
    bodies = herd_hour(herd, hours=2)
    bodies += [b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 4000), device_id=c, f_cnt=9) for c in herd]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        said = b.statements_of(bridge)

        results = bridge.ingest_batch([up(body) for body in bodies])

        assert {r.status for r in results} == {"processed"}
        if store_url.startswith("sqlite"):
            assert sum(s.startswith("INSERT INTO devices") for s in said) == 1
        # The rules read the new collars' tracks (every fix of theirs is new) in one statement, not
        # three a collar (its new fixes, those around them, the judged ones before: none yet).
        assert not [s for s in said if s.startswith("SELECT positions.id, positions.time, positions.lat, positions.lon FROM")]
        assert sum(s.startswith("SELECT positions.device_id, positions.id") for s in said) == 1
        with bridge.db.read() as session:
            animals = dict(session.execute(select(Animal.device_id, Animal.id)).all())
            alerts = session.execute(select(Alert.device_id, Alert.animal_id)).all()
            fixes = session.execute(select(Position.device_id, Position.animal_id).distinct()).all()
            collars = set(session.scalars(select(Device.device_id)))
    assert collars == set(herd) and set(animals) == set(herd) and len(set(animals.values())) == len(herd)
    assert sorted(alerts) == sorted(animals.items())
    assert sorted(fixes) == sorted(animals.items())


def test_a_batch_of_every_fate_keeps_each_body_once_with_what_refers_to_it(store_url):
    # An uplink, a body that is no JSON, a payload the codec cannot read, a join and a copy of the
    # uplink from another gateway in one batch: the dead letters and the copy refer to raw rows the
    # batch writes once, at its end on SQLite, before what refers to them on PostgreSQL.
    uplink = b.tts_uplink(b.status(), f_cnt=1)
    copy = b.tts_uplink(b.status(), f_cnt=1, gateways=("gw-south",))
    undecodable = b.tts_uplink((2, b"\xff\xff"), f_cnt=2)
    join = json.dumps(nf.TTS["join_accept"].body).encode()
    with b.fresh_bridge(store_url) as bridge:
        said = b.statements_of(bridge)

        results = bridge.ingest_batch([up(uplink), up(b"{not json"), up(undecodable), up(join), up(copy)])

        assert [r.status for r in results] == ["processed", "dead_letter", "dead_letter", "recorded", "duplicate"]
        assert sum(s.startswith("INSERT INTO raw_uplinks") for s in said) == 1
        with bridge.db.read() as session:
            kept = session.execute(select(RawUplink.id, RawUplink.status, RawUplink.duplicate_of)
                                   .order_by(RawUplink.id)).all()
            letters = session.scalars(select(DeadLetter.raw_uplink_id).order_by(DeadLetter.raw_uplink_id)).all()
            gateways = session.get(RawUplink, results[0].raw_uplink_id).gateways
    assert [(row.id, row.status) for row in kept] == [(r.raw_uplink_id, r.status) for r in results]
    assert kept[4].duplicate_of == kept[0].id
    assert letters == [results[1].raw_uplink_id, results[2].raw_uplink_id]
    assert len(gateways) == 2 and "gw-south" in {g["gateway_id"] for g in gateways}  # the copy's merged in


def test_a_collar_resending_a_fix_and_a_summary_it_already_sent_keeps_the_first_and_loses_nothing_else(store_url):
    later = b.T0 + b.timedelta(hours=7)
    first = [b.tts_uplink(b.status(time_s=b.T0_S, lat=-2.5), f_cnt=1, received_at=b.T0),
             b.tts_uplink(b.activity(time_s=b.T0_S, shares_pct=(50.0, 30.0, 15.0, 5.0)), f_cnt=2, received_at=b.T0)]
    again = [b.tts_uplink(b.status(time_s=b.T0_S, lat=-2.6), f_cnt=3, received_at=later),
             b.tts_uplink(b.activity(time_s=b.T0_S, shares_pct=(5.0, 15.0, 30.0, 50.0)), f_cnt=4, received_at=later),
             b.tts_uplink(b.status(time_s=b.T0_S + 3600, lat=-2.7), f_cnt=5, received_at=later)]
    with b.fresh_bridge(store_url) as bridge:
        bridge.ingest_batch([up(body) for body in first])

        results = bridge.ingest_batch([up(body) for body in again])

        assert [r.status for r in results] == ["processed"] * 3
        counts = bridge.counts()
        assert (counts["uplinks_stored"], counts["positions"], counts["activity_summaries"]) == (5, 2, 1)
        with bridge.db.read() as session:
            lats = session.scalars(select(Position.lat).order_by(Position.time)).all()
            shares = session.scalars(select(ActivitySummary.shares_pct)).one()
        assert lats == [pytest.approx(-2.5, abs=1e-4), pytest.approx(-2.7, abs=1e-4)]
        assert list(shares.values()) == [50.0, 30.0, 15.0, 5.0], "the summary stored first is kept"


def test_a_collar_whose_rules_fail_in_a_batch_loses_none_of_the_batchs_fixes(store_url, monkeypatch):
    evaluate = rules_engine.evaluate_device

    def failing_for_one(session, runtime, device_id):
        steps = evaluate(session, runtime, device_id)  # reads (so writes) the batch's fixes in its savepoint
        if device_id == "collar-01":
            raise RuntimeError("a rule of collar-01 failed")
        return steps

    monkeypatch.setattr(rules_engine, "evaluate_device", failing_for_one)
    with b.fresh_bridge(store_url) as bridge:
        results = bridge.ingest_batch([up(body) for body in herd_hour()])

        assert {r.status for r in results} == {"processed"}
        counts = bridge.counts()
        assert (counts["uplinks_stored"], counts["positions"], counts["activity_summaries"]) == (12, 6, 6)
