"""A collar alert's evidence (the collar's last fixes and its latest behaviour) reads what the store
would show at that point of the batch, the fixes and summaries its earlier uplinks brought included,
without writing those early: a herd alerting together still costs one insert of fixes per batch."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from sqlalchemy import event, select

from lora_bridge.domain import activity, downlinks, positions, rules
from lora_bridge.group_commit import Submission
from lora_bridge.store import bulk, ids, unflushed
from lora_bridge.store.tables import ActivitySummary, Alert, AlertEvent, Downlink, Position


def _queue_fix(session, when, lat, lon=37.5, device_id="collar-01"):
    positions.add_position(session, device_id=device_id, animal_id=None, time=when, lat=lat, lon=lon,
                           message="status", raw_uplink_id=None)


def _queue_summary(session, when, dominant, device_id="collar-01"):
    bulk.queue_row(session, ActivitySummary.__table__, {
        "device_id": device_id, "animal_id": None, "time": when, "interval_min": 60, "model_version": 1,
        "vedba_mean_mg": 80, "vedba_max_mg": 600, "shares_pct": {dominant: 70.0, "rest": 30.0},
        "dominant": dominant, "raw_uplink_id": None,
    })


def _heard(bridge, *uplinks):
    """Bodies applied, each in its own batch: the store's rows before the batch under test."""
    for body in uplinks:
        bridge.ingest_batch([Submission("tts", None, body)])


def test_an_alerts_last_fixes_are_the_stores_and_its_batchs_newest_first_without_writing_the_batch_early(store_url):
    with b.fresh_bridge(store_url) as bridge:
        _heard(bridge,  # earlier batches: two fixes stored, and the other collar known
               b.tts_uplink(b.status(b.T0_S, lat=-2.50), f_cnt=1),
               b.tts_uplink(b.status(b.T0_S + 3600, lat=-2.51), f_cnt=2),
               b.tts_uplink(b.status(b.T0_S, lat=-1.10), device_id="collar-02", f_cnt=1))
        with bridge.db.write() as session:  # this batch, before its collar alert
            _queue_fix(session, b.T0 + timedelta(hours=2), -2.52)
            _queue_fix(session, b.T0 + timedelta(hours=1), -9.99)  # a time stored already: the insert skips it
            _queue_fix(session, b.T0 - timedelta(hours=1), -2.49)  # back-filled, older than the stored ones
            _queue_fix(session, b.T0 + timedelta(hours=3), -1.00, device_id="collar-02")  # another collar's

            evidence = positions.recent_fixes(session, "collar-01", 3)
            assert len(bulk.queued_rows(session, Position.__table__)) == 4  # nothing written for the read

            bulk.write_queued(session)
            as_stored = [tuple(row) for row in session.execute(
                select(Position.time, Position.lat, Position.lon).where(Position.device_id == "collar-01")
                .order_by(Position.time.desc()).limit(3))]

        assert evidence == as_stored
        assert [lat for _, lat, _ in evidence] == pytest.approx([-2.52, -2.51, -2.50], abs=1e-5)  # the codec's steps
        assert positions.recent_fixes(session, "collar-01", 0) == []


def test_an_alerts_latest_behaviour_is_the_newest_summary_stored_or_queued_in_its_batch(store_url):
    with b.fresh_bridge(store_url) as bridge:
        _heard(bridge, b.tts_uplink(b.status(b.T0_S), f_cnt=1),
               b.tts_uplink(b.status(b.T0_S), device_id="collar-02", f_cnt=1))
        with bridge.db.write() as session:
            assert activity.latest(session, "collar-01") is None
            _queue_summary(session, b.T0 + timedelta(hours=1), "forage")
        with bridge.db.write() as session:
            _queue_summary(session, b.T0 + timedelta(hours=1), "rest")  # the stored one's time: skipped
            _queue_summary(session, b.T0 + timedelta(hours=5), "walk", device_id="collar-02")
            stored_still_newest = activity.latest(session, "collar-01")
            _queue_summary(session, b.T0 + timedelta(hours=2), "walk")
            queued_newest = activity.latest(session, "collar-01")
            assert len(bulk.queued_rows(session, ActivitySummary.__table__)) == 3

            bulk.write_queued(session)
            newest = session.execute(
                select(ActivitySummary.time, ActivitySummary.dominant, ActivitySummary.shares_pct)
                .where(ActivitySummary.device_id == "collar-01").order_by(ActivitySummary.time.desc()).limit(1)
            ).one()

        assert stored_still_newest == (b.T0 + timedelta(hours=1), "forage", {"forage": 70.0, "rest": 30.0})
        assert queued_newest == (newest[0], newest[1], newest[2])
        assert queued_newest[1] == "walk"


def test_a_herd_alerting_in_one_batch_reads_its_alerts_and_evidence_once_and_writes_the_fixes_once(store_url):
    herd = [f"collar-{n:02d}" for n in range(8)]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        _heard(bridge, *(b.tts_uplink(b.status(b.T0_S), device_id=c, f_cnt=1) for c in herd))
        batch = []
        for c in herd:  # each collar: a status with a fix, then its alert (its evidence names that fix)
            batch.append(b.tts_uplink(b.status(b.T0_S + 600, lat=-2.6), device_id=c, f_cnt=2))
            batch.append(b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 660), device_id=c, f_cnt=3))
        seen: list[str] = []

        def statement(_connection, _cursor, text, *_args) -> None:
            seen.append(" ".join(text.split()))

        event.listen(bridge.db.write_engine, "before_cursor_execute", statement)
        results = bridge.ingest_batch([Submission("tts", None, body) for body in batch])
        event.remove(bridge.db.write_engine, "before_cursor_execute", statement)
        with bridge.db.read() as session:
            evidence = list(session.scalars(select(Alert.evidence).where(Alert.alert_type == "mortality")))
            collar_of_alert = dict(session.execute(select(Alert.id, Alert.device_id).where(Alert.alert_type == "mortality")).all())
            acks = session.execute(select(Downlink.id, Downlink.alert_id, Downlink.device_id, Downlink.correlation_id)
                                   .where(Downlink.command == "ack_alert")).all()
            queued = session.execute(select(AlertEvent.alert_id, AlertEvent.detail).where(AlertEvent.action == "ack_queued")).all()

    assert [len(r.alert_ids) for r in results[1::2]] == [1] * len(herd)
    assert len(evidence) == len(herd)
    # newest first: the alert's own fix, then the status's of the same batch, then the one stored before
    assert all([p["lat"] for p in e["positions"][:3]] == pytest.approx([-2.51, -2.6, -2.5], abs=1e-5)
               for e in evidence)
    # The herd's alerts (open, or heard within a second), last fixes and latest behaviour read once for
    # all of them before the batch is applied, none per alert; the downlinks with their acks' bytes read
    # once too, on both stores; the batch's fixes in one insert, not one per alert.
    assert sum(b.reads_by_one_value(s, "FROM alerts WHERE alerts.device_id") for s in seen) == 0
    assert sum(b.reads_by_a_list(s, "FROM alerts WHERE alerts.device_id") and "alerts.source = " in s for s in seen) == 1
    assert sum(s.startswith(("SELECT newest_0.device_id, newest_0.time, newest_0.lat",
                             "SELECT newest_0.device_id, newest_0.time, newest_0.dominant")) for s in seen) == 2
    assert not [s for s in seen if s.startswith(("SELECT positions.time", "SELECT activity_summaries.time"))]
    assert sum(b.reads_by_one_value(s, "FROM downlinks WHERE downlinks.device_id") for s in seen) == 0
    assert sum(b.reads_by_a_list(s, "FROM downlinks WHERE downlinks.device_id") for s in seen) == 1
    assert sum(s.startswith("INSERT INTO positions") for s in seen) == 1
    # Each alert and its ack added without a flush of their own: the herd's alerts in one insert, their
    # acks in one, with the ids taken before (the ack's correlation id and the history name them).
    assert sum(s.startswith("INSERT INTO alerts") for s in seen) == 1
    assert sum(s.startswith("INSERT INTO downlinks") for s in seen) == 1
    # Their histories (opened, ack queued: three rows an alert) go in with the batch's two flushes,
    # not a statement a row: on SQLite, whose unit of work inserts a row lacking its id alone, each
    # takes its id first; PostgreSQL inserts such rows together by itself.
    assert sum(s.startswith("INSERT INTO alert_events") for s in seen) <= 2
    assert sorted(alert_id for _, alert_id, _, _ in acks) == sorted(collar_of_alert)
    assert all(collar_of_alert[alert_id] == device_id for _, alert_id, device_id, _ in acks)
    assert all(correlation == f"{downlinks.CORRELATION_PREFIX}{ack_id}" for ack_id, _, _, correlation in acks)
    assert {(alert_id, detail["downlink_id"]) for alert_id, detail in queued} == {(a, i) for i, a, _, _ in acks}


def test_a_collar_repeating_its_alert_within_one_batch_has_one_alert_and_one_ack(store_url):
    """The collar sends its alert again before the ack could reach it, and both copies land in one
    batch: the second finds the first's alert and ack, which the batch has not written yet."""
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        _heard(bridge, b.tts_uplink(b.status(b.T0_S), f_cnt=1))
        first = b.tts_uplink(b.alert("mortality", seq=2, time_s=b.T0_S + 600), f_cnt=2)
        again = b.tts_uplink(b.alert("mortality", seq=2, time_s=b.T0_S + 600), f_cnt=3)
        other = b.tts_uplink(b.alert("low_battery", seq=3, time_s=b.T0_S + 660), f_cnt=4)
        results = bridge.ingest_batch([Submission("tts", None, body) for body in (first, again, other)])
        with bridge.db.read() as session:
            stored = session.execute(select(Alert.id, Alert.alert_type, Alert.occurrences).order_by(Alert.id)).all()
            acks = session.execute(select(Downlink.id, Downlink.alert_id, Downlink.seq).order_by(Downlink.id)).all()

    assert [(alert_type, occurrences) for _, alert_type, occurrences in stored] == [("mortality", 2), ("low_battery", 1)]
    assert list(results[0].alert_ids) == list(results[1].alert_ids) == [stored[0][0]]
    assert [(alert_id, seq) for _, alert_id, seq in acks] == [(stored[0][0], 2), (stored[1][0], 3)]
    assert list(results[1].downlink_ids) == list(results[0].downlink_ids) == [acks[0][0]]


def test_ids_taken_ahead_never_meet_a_downlink_queued_by_a_ranger_between_batches(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        _heard(bridge, b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S), f_cnt=1))
        with bridge.db.write() as session:  # a ranger's command, in a transaction of its own
            command_id = downlinks.queue_command(session, bridge.codec, device_id="collar-01", command="ack_alert",
                                                 values={"seq": 5, "alert_type": "mortality"}).id
        with pytest.raises(RuntimeError), bridge.db.write() as session:  # taken, then rolled back
            taken = ids.take_id(session, Downlink)
            raise RuntimeError("the batch failed")
        _heard(bridge, b.tts_uplink(b.alert("low_battery", seq=2, time_s=b.T0_S + 60), f_cnt=2))
        with bridge.db.read() as session:
            stored = session.execute(select(Downlink.id, Downlink.correlation_id).order_by(Downlink.id)).all()

    assert len({ack_id for ack_id, _ in stored}) == len(stored) == 3
    assert stored[-1][0] > command_id and taken > command_id
    assert [correlation for _, correlation in stored] == [f"{downlinks.CORRELATION_PREFIX}{i}" for i, _ in stored]


def test_a_read_with_the_new_objects_flushes_first_when_a_stored_row_of_its_table_changed(store_url):
    """An ack the store holds as failed, put back in the queue in this unit of work: the store's answer
    would miss it, so the read flushes first; new objects alone are added without a flush."""
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        _heard(bridge, b.tts_uplink(b.status(b.T0_S), f_cnt=1))
        with bridge.db.write() as session:
            failed = downlinks.queue_command(session, bridge.codec, device_id="collar-01", command="ack_alert",
                                             values={"seq": 1, "alert_type": "mortality"})
            failed.state = downlinks.STATE_FAILED
            failed_id = failed.id
        flushes: list[int] = []
        with bridge.db.write() as session:
            event.listen(session, "before_flush", lambda *_: flushes.append(1))
            payload = session.get(Downlink, failed_id).payload

            def acks() -> list[int]:
                found = unflushed.read_with_new(session, downlinks._same_bytes_read(),
                                                {"device_id": "collar-01", "payload": payload}, Downlink,
                                                lambda d: d.device_id == "collar-01" and d.payload == payload)
                return [d.id for d in found]

            assert acks() == []  # failed: not waiting, not on its way
            again = downlinks.queue_command(session, bridge.codec, device_id="collar-01", command="ack_alert",
                                            values={"seq": 1, "alert_type": "mortality"})
            assert acks() == [again.id] and flushes == []
            session.get(Downlink, failed_id).state = downlinks.STATE_QUEUED
            found = acks()
            assert found == [again.id, failed_id] and flushes  # flushed: the store now holds it queued


def test_a_herd_repeating_its_open_alerts_in_one_batch_updates_them_together(store_url):
    """Each collar's alert is open already and heard again: the occurrence changes the stored alert,
    and the next collar's read of its own alerts need not flush that change first."""
    herd = [f"collar-{n:02d}" for n in range(6)]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        _heard(bridge, *(b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S), device_id=c, f_cnt=1)
                         for c in herd))
        seen: list[str] = []

        def statement(_connection, _cursor, text, *_args) -> None:
            seen.append(" ".join(text.split()))

        event.listen(bridge.db.write_engine, "before_cursor_execute", statement)
        bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.alert("mortality", seq=2, time_s=b.T0_S + 900),
                                                                    device_id=c, f_cnt=2)) for c in herd])
        event.remove(bridge.db.write_engine, "before_cursor_execute", statement)
        with bridge.db.read() as session:
            occurrences = list(session.scalars(select(Alert.occurrences).order_by(Alert.id)))

    assert occurrences == [2] * len(herd)
    # the herd's occurrences in one update (the rules' corroboration of the mortalities may add its own)
    assert sum(s.startswith("UPDATE alerts SET last_time=?, occurrences=?") or
               s.startswith("UPDATE alerts SET last_time=%(last_time)s") for s in seen) == 1


def test_the_rules_track_and_battery_reads_see_what_their_batch_queued(store_url):
    """The rules read fixes and battery readings on the session's connection, past the ORM
    (`bulk.read_columns`): the batch's queued rows are written first when the read is of their
    table, as the ORM's read would have done, and stay queued when it is not."""
    with b.fresh_bridge(store_url) as bridge:
        _heard(bridge, b.tts_uplink(b.status(b.T0_S, lat=-2.50, battery_mv=3900), f_cnt=1))  # stored: a fix, a reading
        with bridge.db.write() as session:
            for hours, lat in ((1, -2.51), (2, -2.52)):
                _queue_fix(session, b.T0 + timedelta(hours=hours), lat)
            window = {"collar-01": b.T0 - timedelta(days=1)}
            stored_sums = rules.reading_sums(session, window)["collar-01"]
            fixes_queued_after_a_battery_read = len(bulk.queued_rows(session, Position.__table__))
            track = bulk.read_columns(session, select(Position.time, Position.lat)
                                      .where(Position.device_id == "collar-01").order_by(Position.time),
                                      {}, frozenset({Position.__table__}))
            for hours, millivolts in ((1, 3890), (2, 3880)):
                rules.queue_reading(session, "collar-01", b.T0 + timedelta(hours=hours), millivolts)
            sums = rules.reading_sums(session, window)["collar-01"]

        assert (stored_sums.count, stored_sums.latest_mv) == (1, 3900)
        assert fixes_queued_after_a_battery_read == 2  # a read of readings leaves the fixes queued
        assert (sums.count, sums.sum_y, sums.latest_mv) == (3, 3900 + 3890 + 3880, 3880)
        assert [when for when, _ in track] == [b.T0 + timedelta(hours=h) for h in (0, 1, 2)]
        assert [lat for _, lat in track] == pytest.approx([-2.50, -2.51, -2.52], abs=1e-5)
