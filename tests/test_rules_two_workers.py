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
