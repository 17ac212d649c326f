"""A batch's reads of several collars at once (`store.parts`) on SQLite's driver (`store.driver_reads`): the
rules' context fixes and the collar alerts' newest rows read the same rows, values and types (a fix's time
aware UTC) as SQLAlchemy's own execution of the same statement, in as many statements, for fewer Python calls."""

from __future__ import annotations

import cProfile
import pstats
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, event, insert

from lora_bridge.domain import rules_engine
from lora_bridge.store import bulk, parts
from lora_bridge.store.tables import Base, Position

_START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
_COLLARS = [f"collar-{n:02d}" for n in range(11)]  # two statements: a full one and one padded


@pytest.fixture
def connection():
    """An SQLite store holding 24 hourly fixes of each of eleven collars (of the last, none)."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as setup:
        setup.execute(insert(Position), [
            {"device_id": device_id, "time": _START + timedelta(hours=hour), "lat": -1.5 - n / 100 - hour / 1e4,
             "lon": 35.1 + n / 100, "message": "status"}
            for n, device_id in enumerate(_COLLARS[:-1]) for hour in range(24)])
    with engine.connect() as opened:
        yield opened
    engine.dispose()


def _contexts_asked() -> tuple[list[dict], dict]:
    """A context read of each collar (its fixes before a time of its own, at most a few), and the padding."""
    asked = [{"device": device_id, "before": _START + timedelta(hours=3 + n), "highest": 10_000, "most": 1 + n % 4}
             for n, device_id in enumerate(_COLLARS)]
    return asked, {"device": "", "before": _START, "highest": 0, "most": 0}


def _newest_asked() -> tuple[list[dict], dict]:
    """The newest three rows of each collar, and the padding."""
    return [{"device": device_id, "most": 3} for device_id in _COLLARS], {"device": "", "most": 0}


def _statements(connection) -> list[str]:
    """The statements connection runs from now on (a list that grows)."""
    seen: list[str] = []
    event.listen(connection, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def _through_sqlalchemy(connection, statement, asked, padding) -> list[tuple]:
    """What `parts.read_in_parts` read through SQLAlchemy's execution (a session-less reader's way)."""
    rows = []
    for start in range(0, len(asked), parts.PARTS):
        chunk = asked[start:start + parts.PARTS]
        params = {f"{key}_{i}": value for i in range(parts.PARTS)
                  for key, value in (chunk[i] if i < len(chunk) else padding).items()}
        rows.extend(tuple(row) for row in connection.execute(statement, params))
    return rows


@pytest.mark.parametrize("reads", ["contexts", "newest"])
def test_rules_read_the_same_fixes_of_a_herd_at_the_driver(connection, reads):
    """Every collar's fixes come back as SQLAlchemy reads them, times aware UTC, in the same two statements."""
    if reads == "contexts":
        statement, (asked, padding) = rules_engine._CONTEXTS_READ, _contexts_asked()
    else:
        statement, (asked, padding) = bulk._newest_of_collars_read(Position, ("time", "lat", "lon")), _newest_asked()
    expected = _through_sqlalchemy(connection, statement, asked, padding)
    seen = _statements(connection)
    found = [tuple(row) for row in parts.read_in_parts(connection, statement, asked, padding)]

    assert found == expected
    assert len(seen) == 2
    assert {row[0] for row in found} == set(_COLLARS[:-1])
    times = [row[2] if reads == "contexts" else row[1] for row in found]
    assert all(type(time) is datetime and time.tzinfo is UTC for time in times)
    if reads == "contexts":  # the first collar's one fix before 09:00, the second's two before 10:00
        assert [row[2] for row in found if row[0] == "collar-00"] == [_START + timedelta(hours=2)]
        assert [row[2] for row in found if row[0] == "collar-01"] == [_START + timedelta(hours=3),
                                                                       _START + timedelta(hours=2)]


def _calls(read) -> int:
    """The Python calls read() makes (cProfile's count: the same at every run of the same code)."""
    profiler = cProfile.Profile()
    profiler.enable()
    read()
    profiler.disable()
    return pstats.Stats(profiler).total_calls


def test_a_herds_context_reads_cost_fewer_python_calls_at_the_driver(connection):
    """The rules' context reads of eleven collars: fewer Python calls than SQLAlchemy's execution of them."""
    statement, (asked, padding) = rules_engine._CONTEXTS_READ, _contexts_asked()
    for _ in range(2):  # both ways compiled and warmed first
        parts.read_in_parts(connection, statement, asked, padding)
        _through_sqlalchemy(connection, statement, asked, padding)
    at_driver = _calls(lambda: parts.read_in_parts(connection, statement, asked, padding))
    through_sqlalchemy = _calls(lambda: _through_sqlalchemy(connection, statement, asked, padding))

    assert at_driver < through_sqlalchemy
