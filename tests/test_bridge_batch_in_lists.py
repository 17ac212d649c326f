"""A batch's reads by its values (`store.bulk.in_list`): a statement per count bucket, its list padded,
reads the rows an IN list of the values themselves reads, whatever the batch's size."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select

from lora_bridge.store import bulk

_METADATA = MetaData()
_COLLARS = Table("collars", _METADATA, Column("id", Integer, primary_key=True), Column("eui", String(16)))


@pytest.fixture(scope="module")
def engine():
    """A store of 1,500 collars (more than the largest bucket holds)."""
    engine = create_engine("sqlite://")
    _METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(_COLLARS), [{"id": i, "eui": f"{i:016x}"} for i in range(1500)])
    yield engine
    engine.dispose()


def test_bucket_sizes_hold_every_count():
    """Each count has a bucket at least as large, few buckets up to a batch of 256, none for no values."""
    assert bulk.in_list_size(0) == 0
    assert [bulk.in_list_size(n) for n in (1, 62, 64, 65, 256, 257, 1024, 1025)] == [
        64, 64, 64, 256, 256, 1024, 1024, 2048]


@pytest.mark.parametrize("count", [0, 1, 2, 63, 64, 65, 300, 1100])
def test_a_padded_list_reads_the_collars_a_plain_list_reads(engine, count):
    """The collars asked for (some unknown to the store) are read once each, as `IN (values)` reads them."""
    euis = [f"{i * 3:016x}" for i in range(count)]  # every third collar, past the store's last for the largest
    size = bulk.in_list_size(count)
    padded = select(_COLLARS.c.id).where(bulk.in_list(_COLLARS.c.eui, "eui", size)).order_by(_COLLARS.c.id)
    plain = select(_COLLARS.c.id).where(_COLLARS.c.eui.in_(euis)).order_by(_COLLARS.c.id)
    with engine.connect() as connection:
        found = connection.execute(padded, bulk.in_list_values("eui", euis, size)).scalars().all()
        assert found == connection.execute(plain).scalars().all()
    assert len(found) == min(count, 500)
