"""A batch's rule cursors as Tembo reads them with its collars on SQLite (`pipeline.read_batch`): the two
times read as SQLite's texts and parsed a column at once (`rules_cursors.keep_read_columns`), the same
aware UTC times as the cursors' own read, for a count of Python calls that does not grow with the herd;
and a new herd's first batch judges its new collars from cursors known without a read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bridge_builders as b
import pytest
from sqlalchemy import create_engine, delete, event, insert
from sqlalchemy.orm import Session
from test_bridge_batch_driver_reads import _calls  # cProfile's count of a read's Python calls
from test_bridge_small_batch_cursors import _cursors_and_newest_fixes, _fix, _reads_of_collars_and_cursors

from lora_bridge import pipeline
from lora_bridge.domain import rules_cursors
from lora_bridge.domain.rules_cursors import Cursor
from lora_bridge.store.tables import Base, Device, RuleCursor
from lora_bridge.uplink_formats import Uplink

_START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
_HERD = [f"collar-{n:02d}" for n in range(40)]  # the bench's herd of forty


def _eui(n: int) -> str:
    return f"70B3D57ED0{n:06X}"


@pytest.fixture
def session():
    """An SQLite store holding the herd's collars and the cursors of all but the last: one with no
    status judged yet, times some microseconds apart (a parse must read them to the microsecond)."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as setup:
        setup.execute(insert(Device), [{"device_id": collar, "dev_eui": _eui(n), "session": 0, "flags": {},
                                        "reported_settings": {}} for n, collar in enumerate(_HERD)])
        setup.execute(insert(RuleCursor), [
            {"device_id": collar, "position_id": 24 * n + 24, "evaluated_at": _START,
             "position_time": _START + timedelta(hours=n, microseconds=n),
             "status_time": None if n == 3 else _START + timedelta(minutes=n, microseconds=7)}
            for n, collar in enumerate(_HERD[:-1])])
    with Session(engine) as opened:
        yield opened
    engine.dispose()


def _batch() -> list[Uplink]:
    """One status of each collar of the herd, by DevEUI: a batch of forty bodies."""
    return [Uplink("tts", collar, 2, 30, b"\x01", _START, dev_eui=_eui(n)) for n, collar in enumerate(_HERD)]


def _kept_by_read_batch(session: Session) -> dict[str, Cursor]:
    """The cursors read_batch keeps for the rules of the herd (taken: a transaction's kept cursors are taken once)."""
    pipeline.read_batch(session, _batch())
    kept = rules_cursors.take_read(session, _HERD)
    session.rollback()
    assert kept is not None, "every collar's cursor kept"
    return kept


def test_a_batch_keeps_its_collars_cursors_as_their_own_read_gives_them(session):
    """The same values as `read_cursors` (times aware UTC to the microsecond, a None kept), a collar with
    no cursor stored a fresh one, all in one statement (the collars' read)."""
    expected = rules_cursors.read_cursors(session, _HERD)
    session.rollback()
    seen: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", lambda *args: seen.append(args[2]))

    kept = _kept_by_read_batch(session)

    assert kept == {**expected, _HERD[-1]: Cursor(_HERD[-1], False)}
    assert kept["collar-03"].status_time is None
    assert kept["collar-02"].position_time == _START + timedelta(hours=2, microseconds=2)
    assert kept["collar-05"].status_time == _START + timedelta(minutes=5, microseconds=7)
    assert all(c.position_time.tzinfo is UTC for c in kept.values() if c.stored)
    assert [s for s in seen if "rule_cursors" in s] == [s for s in seen if s.startswith("SELECT devices.")]
    assert len([s for s in seen if "rule_cursors" in s]) == 1


def test_a_batch_reads_its_collars_cursor_times_for_calls_that_do_not_grow_with_the_herd(session):
    """Forty cursors stored cost the batch's read fewer Python calls than one a collar more than forty
    collars with none (the ORM's processor of each time cost two calls a collar, a call a value)."""
    for _ in range(2):  # compiled and warmed first
        _kept_by_read_batch(session)
    with_cursors = _calls(lambda: _kept_by_read_batch(session))
    session.execute(delete(RuleCursor))
    session.commit()
    for _ in range(2):
        _kept_by_read_batch(session)
    without = _calls(lambda: _kept_by_read_batch(session))

    assert with_cursors - without < len(_HERD), (with_cursors, without)


def test_a_new_herds_first_batch_reads_no_cursor_of_its_own(sqlite_url):
    """Four collars first heard together: their rules judge them from cursors known without a read (a
    collar just filed has none stored), and move each to its collar's newest fix and status."""
    herd = [f"tembo-{n:02d}" for n in range(4)]
    with b.fresh_bridge(sqlite_url) as bridge:
        said = b.statements_of(bridge)
        results = bridge.ingest_batch([_fix(collar, 1, 0) for collar in herd])
        reads = _reads_of_collars_and_cursors(said)
        cursors, newest = _cursors_and_newest_fixes(bridge)

    assert [r.status for r in results] == ["processed"] * len(herd)
    assert reads == (1, 0)
    assert cursors == newest and set(cursors) == set(herd)
