"""A ranger's times read back as the same aware UTC instants on PostgreSQL as on SQLite, at the edges too
(microseconds, years 1 and 9999, other zones, naive times taken as UTC, none at all), and on
PostgreSQL each time bound or read costs the store one Python call (`store.postgres_times`)."""

from __future__ import annotations

import cProfile
import pstats
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.exc import StatementError

from lora_bridge.store import postgres_times
from lora_bridge.store.database import open_database
from lora_bridge.store.utc import UTCDateTime

HEARD = Table("collar_heard", MetaData(), Column("id", Integer, primary_key=True), Column("heard_at", UTCDateTime))

NAIROBI = timezone(timedelta(hours=3))
ALASKA = timezone(timedelta(hours=-9))
# what a collar's time is written as -> the aware UTC time read back
EDGES = [
    (datetime(2026, 12, 7, 23, 30, 15, 123456, tzinfo=UTC), datetime(2026, 12, 7, 23, 30, 15, 123456, tzinfo=UTC)),
    (datetime(2026, 12, 8, 2, 30, 15, 1, tzinfo=NAIROBI), datetime(2026, 12, 7, 23, 30, 15, 1, tzinfo=UTC)),
    (datetime(2026, 12, 7, 14, 30, tzinfo=ALASKA), datetime(2026, 12, 7, 23, 30, tzinfo=UTC)),
    (datetime(2026, 12, 7, 23, 30, 15, 999999), datetime(2026, 12, 7, 23, 30, 15, 999999, tzinfo=UTC)),
    (datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)),
    (datetime(1, 1, 1, 3, tzinfo=NAIROBI), datetime(1, 1, 1, tzinfo=UTC)),
    (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    (datetime(9999, 12, 31, 14, 59, 59, 999999, tzinfo=ALASKA), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    (None, None),
]
# times whose UTC instant lies outside Python's years 1-9999: refused when written, on both engines
OUT_OF_RANGE = [datetime(1, 1, 1, 2, tzinfo=NAIROBI), datetime(9999, 12, 31, 20, tzinfo=ALASKA)]


def _written_and_read(url: str) -> list[datetime | None]:
    db = open_database(url, create=False)
    try:
        HEARD.create(db.write_engine)
        with db.write() as session:
            session.execute(insert(HEARD), [{"id": n, "heard_at": written} for n, (written, _) in enumerate(EDGES)])
        with db.read() as session:
            read = list(session.scalars(select(HEARD.c.heard_at).order_by(HEARD.c.id)))
        for written in OUT_OF_RANGE:
            with pytest.raises(StatementError, match="out of range"), db.write() as session:
                session.execute(insert(HEARD).values(id=len(EDGES), heard_at=written))
        return read
    finally:
        db.dispose()


@pytest.mark.postgres
def test_collar_times_read_back_as_the_same_utc_instants_on_postgresql_as_on_sqlite(postgres_url, sqlite_url):
    on_postgresql, on_sqlite = _written_and_read(postgres_url), _written_and_read(sqlite_url)

    assert on_postgresql == on_sqlite == [read for _, read in EDGES]
    assert [t.tzinfo is UTC for t in on_postgresql if t] == [True] * (len(EDGES) - 1)
    assert [t.tzinfo is UTC for t in on_sqlite if t] == [True] * (len(EDGES) - 1)


@pytest.mark.postgres
def test_times_read_in_a_session_of_another_zone_are_still_utc(postgres_url):
    db = open_database(postgres_url, create=False)
    try:
        HEARD.create(db.write_engine)
        with db.write() as session:
            session.execute(insert(HEARD), [{"id": n, "heard_at": written} for n, (written, _) in enumerate(EDGES[:4])])
    finally:
        db.dispose()
    # an engine of its own, its session in Nairobi's zone: psycopg reads the times in that zone
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SET TIME ZONE 'Africa/Nairobi'"))
            assert connection.execute(text("SELECT heard_at FROM collar_heard WHERE id = 0")).scalar().utcoffset() \
                == timedelta(hours=3)
            read = list(connection.scalars(select(HEARD.c.heard_at).order_by(HEARD.c.id)))
    finally:
        engine.dispose()

    assert read == [expected for _, expected in EDGES[:4]]
    assert all(t.tzinfo is UTC for t in read)


@pytest.mark.postgres
def test_a_utc_time_costs_one_python_call_each_way_on_postgresql(postgres_url, monkeypatch):
    converted: list[datetime] = []
    as_utc = postgres_times.as_utc
    monkeypatch.setattr(postgres_times, "as_utc", lambda value: converted.append(value) or as_utc(value))
    times = [datetime(2026, 12, 7, 23, minute, tzinfo=UTC) for minute in range(40)]
    db = open_database(postgres_url, create=False)
    try:
        HEARD.create(db.write_engine)
        with db.write() as session:  # compiled and warmed once
            session.execute(insert(HEARD), [{"id": 100, "heard_at": times[0]}])
            session.scalars(select(HEARD.c.heard_at)).all()
        profile = cProfile.Profile()
        with db.write() as session:
            profile.enable()
            session.execute(insert(HEARD), [{"id": n, "heard_at": t} for n, t in enumerate(times)])
            read = session.scalars(select(HEARD.c.heard_at).where(HEARD.c.id < 100).order_by(HEARD.c.id)).all()
            profile.disable()
    finally:
        db.dispose()
    calls = {name: count for (path, _, name), (_, count, *_) in pstats.Stats(profile).stats.items()
             if path.endswith(("store/utc.py", "store/postgres_times.py"))}

    assert read == times
    assert all(t.tzinfo is UTC for t in read)
    # 40 bound and 40 read, each one call of as_utc_at_once; none converted, none the type's two steps
    assert calls == {"as_utc_at_once": 80}
    assert converted == []
