"""The rules' track reads of a batch's collars (`rules_engine._read_tracks`, `_read_first_tracks`) on SQLite's
driver (`store.driver_reads`): the same fixes, values and aware UTC times as SQLAlchemy's own execution of the
same statement, in one statement, the fixes' times read a column at a time (`UTCDateTime.column_reader`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, event, insert
from sqlalchemy.orm import Session
from test_bridge_batch_driver_reads import _calls  # cProfile's count of a read's Python calls

from lora_bridge.domain import rules_cursors, rules_engine
from lora_bridge.domain.rules_cursors import Cursor
from lora_bridge.store import bulk, driver_reads
from lora_bridge.store.tables import Base, Position, RuleCursor

_START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
_COLLARS = [f"collar-{n:02d}" for n in range(5)]  # of the last, no fix
_HOURS = 24


@pytest.fixture
def session():
    """An SQLite store holding 24 fixes of each collar but the last, a quarter of an hour and some
    microseconds apart (times a parse must read to the microsecond)."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as setup:
        setup.execute(insert(Position), [
            {"device_id": device_id, "time": _START + timedelta(minutes=15 * step, microseconds=n * 1001 + step),
             "lat": -1.5 - n / 100 - step / 1e4, "lon": 35.1 + n / 100, "message": "status"}
            for n, device_id in enumerate(_COLLARS[:-1]) for step in range(_HOURS)])
    with Session(engine) as opened:
        yield opened
    engine.dispose()


def _tracks_asked() -> tuple[object, dict]:
    """The batch's track read of every collar: fixes from the fourth hour on, or newer than the 30th."""
    size = bulk.in_list_size(len(_COLLARS))
    return rules_engine._tracks_read(size), {
        **bulk.in_list_values("device", _COLLARS, size), "since": _START + timedelta(hours=4), "newer_than": 30,
        "most": rules_engine.TRACKS_AT_ONCE_ROWS + 1}


def _statements(session) -> list[str]:
    """The statements the session's connection runs from now on (a list that grows)."""
    seen: list[str] = []
    event.listen(session.connection(), "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_rules_read_a_herds_tracks_at_the_driver_as_sqlalchemy_reads_them(session):
    """Every collar's fixes come back as SQLAlchemy reads them, times aware UTC to the microsecond, in one statement."""
    statement, params = _tracks_asked()
    expected = [tuple(row) for row in session.connection().execute(statement, params)]
    seen = _statements(session)
    found = [tuple(row) for row in bulk.read_column_tuples(session, statement, params, frozenset({Position.__table__}))]

    assert sorted(found) == sorted(expected)
    assert len(seen) == 1
    assert {row[0] for row in found} == set(_COLLARS[:-1])
    assert all(type(row[2]) is datetime and row[2].tzinfo is UTC for row in found)
    newest = max(row[2] for row in found if row[0] == "collar-03")
    assert newest == _START + timedelta(minutes=15 * (_HOURS - 1), microseconds=3 * 1001 + _HOURS - 1)


def test_a_herds_first_tracks_come_by_collar_in_time_order(session):
    """A new herd's first batch: each collar's every fix, in time order; the collar with none has none."""
    first_tracks = rules_engine._read_first_tracks(session, {
        device_id: (None, None, Cursor(device_id, stored=False)) for device_id in _COLLARS})

    assert first_tracks is not None
    assert [len(first_tracks[device_id]) for device_id in _COLLARS] == [_HOURS] * 4 + [0]
    times = [time for _, time, _, _ in first_tracks["collar-02"]]
    assert times == sorted(times)
    assert times[0] == _START + timedelta(microseconds=2 * 1001)
    assert all(time.tzinfo is UTC for time in times)


def test_a_herds_track_read_costs_fewer_python_calls_at_the_driver(session):
    """The batch's track read of 96 fixes: fewer Python calls at the driver than SQLAlchemy's execution of it,
    the times read as a column: not a call of the time's processor a fix."""
    statement, params = _tracks_asked()
    connection = session.connection()
    for _ in range(2):  # both ways compiled and warmed first
        driver_reads.rows_of(connection, statement, params)
        connection.execute(statement, params).all()
    at_driver = _calls(lambda: driver_reads.rows_of(connection, statement, params))
    through_sqlalchemy = _calls(lambda: connection.execute(statement, params).all())
    fixes = len(connection.execute(statement, params).all())

    # collar-00's fixes from the fourth hour on (ids 17-24), collar-01's newer than id 30 (31-48), all of the next two
    assert fixes == 8 + 18 + 24 + 24
    assert at_driver + fixes <= through_sqlalchemy
    assert at_driver < 2 * fixes  # a time through its processor alone is two calls a fix


def test_a_column_of_times_reads_as_its_processor_reads_each(session):
    """The column reader gives what the time's result processor gives, value by value, for SQLite's own
    texts and for texts it reads some other way (a None, an offset of its own, a date alone)."""
    dialect = session.connection().dialect
    time_type = Position.__table__.c.time.type.dialect_impl(dialect)
    process = time_type.result_processor(dialect, None)
    read = time_type.column_reader(dialect)
    usual = ["2026-03-01 06:00:00.000000", "2026-03-01 06:15:00.001001", "2026-12-31 23:59:59.999999"]

    assert read(usual) == [process(text) for text in usual]
    for odd in (["2026-03-01 06:00:00.000000", None], [None, None], ["2026-03-01T08:00:00+02:00"], ["2026-03-01"],
                [usual[0], None, usual[0], "2026-03-01T08:00:00+02:00", usual[2]]):
        assert read(odd) == [process(text) for text in odd]
    assert read(usual)[1] == datetime(2026, 3, 1, 6, 15, 0, 1001, tzinfo=UTC)


def test_the_rules_read_a_herds_cursors_at_the_driver(session):
    """A batch's rule cursors of a herd of forty collars (the bench's): the same values as SQLAlchemy's
    execution of their read (times aware UTC, a cursor with no status judged yet too), for fewer Python
    calls than that execution (at a handful of collars the driver's own steps cost as much as it saves)."""
    herd = [f"collar-{n:02d}" for n in range(41)]  # of the last, no cursor
    session.connection().execute(insert(RuleCursor), [
        {"device_id": device_id, "position_id": 24 * n + 24,
         "position_time": _START + timedelta(hours=n, microseconds=n), "evaluated_at": _START,
         "status_time": None if n == 3 else _START + timedelta(minutes=n)}
        for n, device_id in enumerate(herd[:-1])])
    size = bulk.in_list_size(len(herd))
    params = bulk.in_list_values("device", herd, size)
    statement = rules_cursors._cursors_read(size)
    tables = frozenset({RuleCursor.__table__})

    def through_sqlalchemy() -> dict[str, Cursor]:  # the same read by SQLAlchemy's execution
        return {row[0]: Cursor(row[0], True, row[1], row[2], row[3])
                for row in bulk.read_columns(session, statement, params, tables)}

    for _ in range(2):  # both ways compiled and warmed first
        rules_cursors.read_cursors(session, herd)
        through_sqlalchemy()
    at_driver = _calls(lambda: rules_cursors.read_cursors(session, herd))
    by_sqlalchemy = _calls(through_sqlalchemy)
    expected = through_sqlalchemy()

    found = rules_cursors.read_cursors(session, herd)
    assert found == expected
    assert sorted(found) == herd[:-1]
    assert found["collar-03"].status_time is None
    assert found["collar-02"].position_time == _START + timedelta(hours=2, microseconds=2)
    assert all(c.position_time.tzinfo is UTC for c in found.values())
    assert at_driver < by_sqlalchemy
