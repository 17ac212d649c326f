"""Two bridge workers on one PostgreSQL store judging one collar's fixes: a fix whose transaction commits
after a later fix of the same collar (a lower id committed after a higher one) is still judged for fence
crossings, because a fix is written under its collar's rule-cursor lock, the lock the rules read under."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import bridge_builders as b
import pytest
import rules_builders as rb
from sqlalchemy import text

from lora_bridge.domain import positions, rules_engine
from lora_bridge.store import bulk

pytestmark = pytest.mark.postgres

T = b.T0
COLLAR = "collar-01"


@pytest.fixture
def postgres_url(postgres_server, postgres_store_template):
    url = postgres_server.create_database(template=postgres_store_template)
    yield url
    postgres_server.drop_database(url)


def _write_fix(session, bridge, minutes: int, x: float, y: float) -> None:
    lat, lon = rb.lat_lon(x, y)
    animal_id = bridge.animals(viewer=b.RANGER)[0].animal_id
    positions.add_position(session, device_id=COLLAR, animal_id=int(animal_id), time=T + timedelta(minutes=minutes),
                           lat=lat, lon=lon, message="positions", raw_uplink_id=None)
    bulk.write_queued(session)


def _waiting_on_a_lock(bridge) -> int:
    with bridge.db.read() as session:
        return session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock'"))


def test_a_fence_exit_in_a_fix_committed_after_a_later_fix_of_that_collar_is_still_raised(postgres_url):
    with b.fresh_bridge(postgres_url) as bridge:
        bridge.register_animal(COLLAR, "Naserian")
        rb.park_and_farm(bridge)
        rb.ingest_track(bridge, [(0, 309_000, 9_702_000)])  # inside the park, judged
        runtime = bridge.rules_runtime
        with bridge.db.write() as first:  # worker 1: the fix 1.5 km out of the park (08:00 + 60 min)
            _write_fix(first, bridge, 60, 311_500, 9_702_000)

            def second_worker() -> None:  # worker 2: the next fix, back inside (08:00 + 120 min)
                with bridge.db.write() as second:
                    _write_fix(second, bridge, 120, 309_000, 9_702_000)
                    rules_engine.evaluate_devices(second, runtime, [COLLAR])

            other = threading.Thread(target=second_worker)
            other.start()
            # Worker 2 either waits for this collar's lock (it must) or has already judged and committed.
            waited = False
            for _ in range(600):
                waited = _waiting_on_a_lock(bridge) > 0
                if waited or not other.is_alive():
                    break
                time.sleep(0.05)
            assert waited, "worker 2 judged the collar while worker 1's fix of it was still being written"
            rules_engine.evaluate_devices(first, runtime, [COLLAR])
        other.join(timeout=60)
        assert not other.is_alive()

        exits = [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "geofence_exit"]
        assert len(exits) == 1, "the fix out of the park was judged although a later fix committed first"
        assert abs((exits[0].time - (T + timedelta(minutes=24))).total_seconds()) < 60  # 1 km of 2.5 km
        with bridge.db.read() as session:
            newest = session.scalar(text("SELECT max(id) FROM positions"))
            cursor = session.scalar(text("SELECT position_id FROM rule_cursors WHERE device_id = :d"), {"d": COLLAR})
        assert cursor == newest


def _still_then_away(device_id: str) -> tuple[list[bytes], bytes]:
    """Bodies of a collar still within 15 m for 12 h 1 min (hourly fixes), and of its next fix 1.5 km away."""
    spot = (309_000, 9_702_000)
    still = [(m, spot[0] + (15 if m % 120 else -15), spot[1]) for m in range(0, 12 * 60, 60)] + [(12 * 60 + 1, *spot)]
    away = rb.fix_uplinks(device_id, T, [(13 * 60, spot[0] + 1_500, spot[1])], first_f_cnt=100)[0]
    return rb.fix_uplinks(device_id, T, still), away


def _collar_alert(device_id: str, alert_type: str, f_cnt: int, minutes: int) -> bytes:
    at = T + timedelta(minutes=minutes)
    return b.tts_uplink(b.alert(alert_type, seq=1, time_s=int(at.timestamp())), device_id=device_id, f_cnt=f_cnt,
                        received_at=at)


def test_the_timers_escalation_and_an_ingest_batch_of_the_same_collars_never_deadlock(postgres_url, caplog):
    """An ingest batch holds collar-01's collar_drop alert (the collar repeated it) and is about to close
    collar-02's immobility alert (collar-02 walked off); the timer escalates both alerts meanwhile.
    Taking rows in two orders would be a deadlock (one of them cancelled by PostgreSQL); with the
    collars' cursors first, the timer leaves the busy collars to its next round."""
    from lora_bridge.domain import rules_lifecycle
    from lora_bridge.group_commit import Submission

    with b.fresh_bridge(postgres_url) as bridge:
        bridge.register_animal("collar-01", "Naserian")
        bridge.register_animal("collar-02", "Lemayian")
        still, away = _still_then_away("collar-02")
        for body in still:
            bridge.ingest_tts_uplink(body)
        bridge.ingest_tts_uplink(_collar_alert("collar-01", "collar_drop", 1, 12 * 60 + 30))
        immobility, drop = sorted(bridge.open_alerts(viewer=b.RANGER), key=lambda a: a.alert_id)
        assert (immobility.alert_type, drop.alert_type) == ("immobility", "collar_drop")

        timer_errors: list[BaseException] = []

        def timer_round() -> None:  # the time-driven escalation, as `Bridge.run_rules` runs it, 2 h 30 on
            try:
                with bridge.db.write() as session:
                    rules_lifecycle.escalate(session, T + timedelta(hours=15), bridge._profile_of, wall_clock=False)
            except BaseException as error:  # noqa: BLE001 - the test reports it
                timer_errors.append(error)

        timer = threading.Thread(target=timer_round)
        rules_of_batch = bridge._rules_of_batch

        def rules_after_the_timer_moved(session, results):  # the batch's bodies applied, its rules next
            session.flush()  # what the rules' first read would flush
            timer.start()
            for _ in range(600):  # the timer done, or waiting on a row this batch holds
                if not timer.is_alive() or _waiting_on_a_lock(bridge) > 0:
                    break
                time.sleep(0.05)
            rules_of_batch(session, results)

        bridge._rules_of_batch = rules_after_the_timer_moved
        batch = [Submission("tts", None, _collar_alert("collar-01", "collar_drop", 2, 12 * 60 + 30),
                            content_type="application/json"),
                 Submission("tts", None, away, content_type="application/json")]
        with caplog.at_level("INFO"):
            results = bridge.ingest_batch(batch)
        timer.join(timeout=60)
        del bridge._rules_of_batch

        assert not timer.is_alive() and timer_errors == []
        assert [r.status for r in results] == ["processed", "processed"]
        assert bridge.ingest_batches()["fell_back"] == 0
        assert "server rules failed" not in caplog.text and "deadlock" not in caplog.text.lower()
        closed = bridge.alert(immobility.alert_id, viewer=b.RANGER)
        assert closed.state == "resolved"  # the batch's rules closed it: collar-02 moved 1.5 km

        with bridge.db.write() as session:  # the timer's next round escalates what the batch left open
            steps = rules_lifecycle.escalate(session, T + timedelta(hours=15), bridge._profile_of, wall_clock=False)
        assert [s.alert_id for s in steps] == [drop.alert_id]
        assert bridge.alert(drop.alert_id, viewer=b.RANGER).priority == 300
