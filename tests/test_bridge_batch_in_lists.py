"""A batch's reads by its values (`store.bulk.in_list`): a statement per count bucket, its list padded
on SQLite and bound as one array on PostgreSQL, reads the rows an IN list of the values themselves
reads, whatever the batch's size, and is compiled once per bucket."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import CacheStats

from lora_bridge.store import bulk

_METADATA = MetaData()
_COLLARS = Table("collars", _METADATA, Column("id", BigInteger, primary_key=True), Column("eui", String(16)),
                 Column("payload", LargeBinary))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request):
    """A store of 1,500 collars (more than the largest bucket holds), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url, server = "sqlite://", None
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database()
    engine = create_engine(url)
    _METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(_COLLARS), [{"id": i, "eui": f"{i:016x}", "payload": i.to_bytes(4, "big")}
                                              for i in range(1500)])
    yield engine
    engine.dispose()
    if server is not None:
        server.drop_database(url)


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


@pytest.mark.parametrize("column, value", [("id", int), ("payload", lambda i: i.to_bytes(4, "big"))])
def test_lists_of_numbers_and_bytes_read_as_lists_of_texts_do(engine, column, value):
    """A list of the column's own type (a collar's number, a downlink's bytes), two lists in one read."""
    wanted, also = [value(i) for i in (5, 7, 1499, 2000)], [f"{i:016x}" for i in (7, 9)]
    size = bulk.in_list_size(len(wanted))
    read = (select(_COLLARS.c.id)
            .where(bulk.in_list(_COLLARS.c[column], "wanted", size) | bulk.in_list(_COLLARS.c.eui, "also", size))
            .order_by(_COLLARS.c.id))
    with engine.connect() as connection:
        found = connection.execute(read, {**bulk.in_list_values("wanted", wanted, size),
                                          **bulk.in_list_values("also", also, size)}).scalars().all()
    assert found == [5, 7, 9, 1499]


def test_a_buckets_read_is_compiled_once_and_bound_as_few_parameters_as_its_driver_keeps(engine):
    """Each execution after the first takes the compiled statement from SQLAlchemy's cache; on
    PostgreSQL it binds one parameter (psycopg keeps its own form only of statements of at most 50)."""
    size = bulk.in_list_size(10)
    contexts: list[DefaultExecutionContext] = []
    with engine.connect() as connection:
        for first in (0, 10, 20):
            read = select(_COLLARS.c.id).where(bulk.in_list(_COLLARS.c.eui, "eui", size))  # built anew each time
            euis = [f"{i:016x}" for i in range(first, first + 10)]
            result = connection.execute(read, bulk.in_list_values("eui", euis, size))
            assert sorted(result.scalars().all()) == list(range(first, first + 10))
            contexts.append(result.context)
    assert [context.cache_hit for context in contexts[1:]] == [CacheStats.CACHE_HIT, CacheStats.CACHE_HIT]
    assert len(contexts[-1].compiled.binds) == (1 if engine.dialect.name == "postgresql" else size)
