"""A collar alert's evidence (the collar's last fixes and its latest behaviour) reads what the store
would show at that point of the batch, the fixes and summaries its earlier uplinks brought included,
without writing those early: a herd alerting together still costs one insert of fixes per batch."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from sqlalchemy import select

from lora_bridge.domain import activity, positions
from lora_bridge.group_commit import Submission
from lora_bridge.store import bulk
from lora_bridge.store.tables import ActivitySummary, Position


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
