"""A collar's columns read at once (store.row_values.ColumnReads) are what its mapped attributes say:
the values of this unit of work's changes, the stored ones once the row is expired, and the
column defaults of a row just made; a row made from its values (`new_row`) is stored as its
constructor's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from lora_bridge.store.database import open_database
from lora_bridge.store.row_values import ColumnReads, new_row, set_columns
from lora_bridge.store.tables import Alert, Device

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)

READS = ColumnReads("device_id", "label", "last_f_cnt", "network")


def test_reads_match_attributes_changed_expired_and_new(sqlite_url: str) -> None:
    db = open_database(sqlite_url)
    try:
        with db.write() as session:
            made = Device(device_id="c1", reported_settings={}, session=0)
            assert READS(made) == ("c1", None, None, None)  # unset columns: what the attributes give
            session.add(made)
        with db.write() as session:
            device = session.get(Device, "c1")
            device.label = "collar-1"
            device.last_f_cnt = 7
            assert READS(device) == ("c1", "collar-1", 7, None)
            session.flush()
            session.expire(device)  # as a commit or a refresh leaves it: read again through the attributes
            assert "label" not in device.__dict__
            assert READS(device) == (device.device_id, device.label, device.last_f_cnt, device.network)
            assert READS(device) == ("c1", "collar-1", 7, None)
    finally:
        db.dispose()


def test_one_column_is_refused() -> None:
    with pytest.raises(ValueError):
        ColumnReads("label")


def test_changes_set_together_are_the_changes_the_attributes_make_and_the_flush_writes(sqlite_url: str) -> None:
    db = open_database(sqlite_url)
    try:
        with db.write() as session:
            session.add(Device(device_id="c1", reported_settings={}, session=0, label="old"))
            session.add(Device(device_id="c2", reported_settings={}, session=0, label="old"))
        with db.write() as session:
            together, one_by_one = session.get(Device, "c1"), session.get(Device, "c2")
            set_columns(together, {"label": "new", "last_f_cnt": 9, "flags": {"moving": True}})
            one_by_one.label, one_by_one.last_f_cnt, one_by_one.flags = "new", 9, {"moving": True}
            for name in ("label", "last_f_cnt", "flags"):
                assert inspect(together).attrs[name].history == inspect(one_by_one).attrs[name].history
            assert together in session.dirty
            made = Device(device_id="c3", reported_settings={}, session=0)
            set_columns(made, {"label": "made", "last_f_cnt": 1})
            session.add(made)
        with db.read() as session:
            rows = {d.device_id: (d.label, d.last_f_cnt, d.flags) for d in session.query(Device)}
        assert rows["c1"] == rows["c2"] == ("new", 9, {"moving": True})
        assert rows["c3"][:2] == ("made", 1)
    finally:
        db.dispose()


def test_a_row_made_from_its_values_stores_what_its_constructor_stores_and_reads_the_same(store_url: str) -> None:
    db = open_database(store_url)
    try:
        with db.write() as session:
            session.add(Device(device_id="c1", reported_settings={}, session=0))
            session.flush()
            values = {"id": 7, "device_id": "c1", "alert_type": "mortality", "priority": 1, "source": "collar",
                      "dedup_key": "c1:mortality", "open_key": "c1:mortality", "time": T0, "last_time": T0,
                      "lat": None, "evidence": {"seq": 1}}
            made = new_row(Alert, values)
            built = Alert(**{**values, "id": 8, "open_key": "c1:mortality:2"})
            assert made not in session and type(made) is Alert
            # unset columns read as the constructor's object reads them, before and after the flush
            assert (made.state, made.occurrences, made.lon) == (built.state, built.occurrences, built.lon) == (
                None, None, None)
            session.add_all([made, built])
            assert made in session.new
            made.occurrences = 2  # changed before its insert: the insert writes it
            built.occurrences = 2
            session.flush()
            assert inspect(made).persistent
            made.last_time = T0 + timedelta(hours=1)  # changed once stored: an update, as for any row
            built.last_time = T0 + timedelta(hours=1)
        with db.read() as session:
            rows = {a.id: a for a in session.query(Alert)}
            columns = [c.key for c in inspect(Alert).columns if c.key not in ("id", "open_key", "created_at")]
            assert [getattr(rows[7], c) for c in columns] == [getattr(rows[8], c) for c in columns]
            assert (rows[7].state, rows[7].occurrences, rows[7].evidence) == ("new", 2, {"seq": 1})
            assert rows[7].created_at is not None and rows[7].last_time == T0 + timedelta(hours=1)
    finally:
        db.dispose()
