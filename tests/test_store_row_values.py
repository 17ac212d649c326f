"""A collar's columns read at once (store.row_values.ColumnReads) are what its mapped attributes say:
the values of this unit of work's changes, the stored ones once the row is expired, and the
column defaults of a row just made."""

from __future__ import annotations

import pytest

from lora_bridge.store.database import open_database
from lora_bridge.store.row_values import ColumnReads
from lora_bridge.store.tables import Device

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
