"""A collar's last heard time, frame counter and status, changed by a batch outside the ORM's history
(`store.plain_changes`), are what a ranger reads: in the batch's own later reads, after its commit,
and as the store holds them again when a savepoint or the transaction is rolled back; on SQLite and
on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.bench import synthetic_bodies
from lora_bridge.group_commit import Submission
from lora_bridge.store.plain_changes import change_columns, write_plain_changes
from lora_bridge.store.tables import Device

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
HEARD = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@contextmanager
def _one_collar_heard(engine: str, request: Any, tmp_path: Path) -> Iterator[Any]:
    """A bridge on an empty store of engine that has heard one collar once."""
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([Submission("tts", None, synthetic_bodies(collars=1, hours=1)[0])])
        yield bridge


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collars_changes_are_read_in_the_same_transaction_and_stored_at_its_commit(engine, request, tmp_path):
    with _one_collar_heard(engine, request, tmp_path) as bridge:
        with bridge.db.write() as session:
            device = session.scalars(select(Device)).one()
            change_columns(session, device, {"last_f_cnt": 4321, "battery_mv": 3210, "last_seen": HEARD})
            assert device.last_f_cnt == 4321  # the object says it at once
            # a read of the collars' table in the same transaction sees the changes
            assert session.execute(select(Device.last_f_cnt, Device.battery_mv)).one() == (4321, 3210)
            change_columns(session, device, {"last_f_cnt": 4322})
        with bridge.db.read() as session:
            stored = session.scalars(select(Device)).one()
            assert (stored.last_f_cnt, stored.battery_mv, stored.last_seen) == (4322, 3210, HEARD)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collar_made_in_the_same_transaction_takes_its_changes_through_the_orm(engine, request, tmp_path):
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        with bridge.db.write() as session:
            device = Device(device_id="collar-new", reported_settings={}, session=0)
            session.add(device)
            change_columns(session, device, {"last_f_cnt": 7, "last_seen": HEARD})
            assert write_plain_changes(session) == 0  # nothing noted: the ORM inserts it with its values
        with bridge.db.read() as session:
            stored = session.get(Device, "collar-new")
            assert (stored.last_f_cnt, stored.last_seen) == (7, HEARD)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collar_change_written_in_a_savepoint_rolled_back_is_read_again_from_the_store(engine, request, tmp_path):
    with _one_collar_heard(engine, request, tmp_path) as bridge:
        with bridge.db.write() as session:
            device = session.scalars(select(Device)).one()
            stored_f_cnt = device.last_f_cnt
            with pytest.raises(RuntimeError), session.begin_nested():
                change_columns(session, device, {"last_f_cnt": 999})
                assert session.scalar(select(Device.last_f_cnt)) == 999  # written inside the savepoint
                raise RuntimeError("the rules of this collar failed")
            # the savepoint's rollback took the write back: the object says what the store holds
            assert device.last_f_cnt == stored_f_cnt
            change_columns(session, device, {"last_f_cnt": 1000})
        with bridge.db.read() as session:
            assert session.scalar(select(Device.last_f_cnt)) == 1000


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collar_change_of_a_rolled_back_transaction_is_not_written_by_the_next_one(engine, request, tmp_path):
    with _one_collar_heard(engine, request, tmp_path) as bridge:
        with bridge.db.read() as session:
            stored_f_cnt = session.scalar(select(Device.last_f_cnt))
        with Session(bridge.db.write_engine) as session:  # one session, two transactions
            device = session.scalars(select(Device)).one()
            change_columns(session, device, {"last_f_cnt": 555})
            session.rollback()
            device = session.scalars(select(Device)).one()
            change_columns(session, device, {"battery_mv": 2900})
            session.commit()
        with bridge.db.read() as session:
            assert session.execute(select(Device.last_f_cnt, Device.battery_mv)).one() == (stored_f_cnt, 2900)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_collar_change_held_before_a_savepoint_outlives_the_savepoints_rollback_and_its_own_change_does_not(
        engine, request, tmp_path):
    with _one_collar_heard(engine, request, tmp_path) as bridge:
        with bridge.db.write() as session:
            device = session.scalars(select(Device)).one()
            change_columns(session, device, {"last_f_cnt": 4321, "battery_mv": 3210})  # held for the batch
            with pytest.raises(RuntimeError), session.begin_nested():
                # inside the savepoint the same collar changes through the ORM and its table is read
                change_columns(session, device, {"battery_mv": 2500, "last_seen": HEARD})
                assert session.execute(select(Device.last_f_cnt, Device.battery_mv)).one() == (4321, 2500)
                raise RuntimeError("the rules of this collar failed")
            # the rollback took back what was done inside it, not what was held before it
            assert (device.last_f_cnt, device.battery_mv) == (4321, 3210)
            assert device.last_seen != HEARD
        with bridge.db.read() as session:
            stored = session.scalars(select(Device)).one()
            assert (stored.last_f_cnt, stored.battery_mv) == (4321, 3210)
            assert stored.last_seen != HEARD
