"""What a ranger reads of a collar (last heard, frame counter, battery, versions) and how far the rules
have judged its track do not depend on the way a batch writes them: a batch writes its collars' rows
and rule cursors by Core UPDATEs (`store.changed_rows`), the body-by-body path by the ORM's unit of
work, and both leave the same rows, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select

from lora_bridge import ingest
from lora_bridge.bench import synthetic_bodies
from lora_bridge.group_commit import Submission
from lora_bridge.store.changed_rows import update_by_core
from lora_bridge.store.tables import Device, Position, RuleCursor

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def collar_rows(bridge: Any) -> dict[str, list[Any]]:
    """Every collar's row, and its rule cursor with the fix it names by (collar, time) rather than by id
    (ids follow the order fixes were inserted), without when the rules last ran (the wall clock)."""
    with bridge.db.read() as session:
        fix_of = {fix_id: (device_id, time) for fix_id, device_id, time
                  in session.execute(select(Position.id, Position.device_id, Position.time))}
        devices = [repr(sorted(row.items())) for row in session.execute(select(*Device.__table__.columns)).mappings()]
        cursors = [(c.device_id, fix_of.get(c.position_id), c.position_time, c.status_time)
                   for c in session.scalars(select(RuleCursor))]
    return {"devices": sorted(devices), "cursors": sorted(cursors, key=repr)}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_herds_collar_rows_and_cursors_written_by_its_batches_are_those_the_body_by_body_path_writes(
        engine, request, tmp_path):
    bodies = synthetic_bodies(collars=6, hours=8)

    with empty_store(engine, request, tmp_path / "batches.db") as url, b.fresh_bridge(url) as bridge:
        for first in range(0, len(bodies), 24):  # collars heard again and again, batch after batch
            results = bridge.ingest_batch([Submission("tts", None, body) for body in bodies[first:first + 24]])
            assert {r.status for r in results} <= {"processed", "duplicate"}
        assert bridge.ingest_batches()["fell_back"] == 0
        by_batches = collar_rows(bridge)

    with empty_store(engine, request, tmp_path / "one_by_one.db") as url, b.fresh_bridge(url) as bridge:
        # kept first, then each applied in a transaction of its own with its collar's rules after it
        ingest.store_raw_apart(bridge.db, [Submission("tts", "uplink_message", body) for body in bodies])
        report = bridge.process_pending()
        assert report.processed + report.duplicates == len(bodies)
        body_by_body = collar_rows(bridge)

    assert len(by_batches["devices"]) == 6 and len(by_batches["cursors"]) == 6
    assert all(fix is not None for _, fix, _, _ in by_batches["cursors"])
    assert by_batches == body_by_body


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collar_change_rolled_back_with_its_savepoint_is_read_again_from_the_store(engine, request, tmp_path):
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([Submission("tts", None, synthetic_bodies(collars=1, hours=1)[0])])
        with bridge.db.write() as session:
            update_by_core(session, Device)
            device = session.scalars(select(Device)).one()
            stored_battery = device.battery_mv
            with pytest.raises(RuntimeError), session.begin_nested():
                device.battery_mv = 1234
                session.flush()  # written by the Core UPDATE, inside the savepoint
                assert session.scalar(select(Device.battery_mv)) == 1234
                raise RuntimeError("the rules of this collar failed")
            # the savepoint's rollback took the write back: the object says what the store holds
            assert device.battery_mv == stored_battery
            device.battery_mv = 3456  # a change after it is written, as any other
        with bridge.db.read() as session:
            assert session.scalar(select(Device.battery_mv)) == 3456
