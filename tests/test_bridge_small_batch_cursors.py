"""A small batch's rules judge its collars from the cursors the batch read with them: on SQLite with the
collars' rows, on PostgreSQL with the cursors' locks; the rules read neither the collar nor its cursor
again, a lone collar's neither. A webhook answered once applied waits on batches of a few bodies, whose
fixed cost sets its rate; on PostgreSQL each statement is a round trip to the server."""

from __future__ import annotations

import logging

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import func, select

from lora_bridge.domain import rules_engine
from lora_bridge.domain.rules_cursors import Cursor, keep_read, take_read, write_cursors
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Device, Position, RuleCursor

HERD = [f"tembo-{n:02d}" for n in range(4)]
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _fix(collar: str, f_cnt: int, minutes: int) -> Submission:
    """A status with its fix from collar, minutes after T0, moving a little north each time."""
    return Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S + 60 * minutes, lat=-2.5 + minutes / 10_000),
                                                device_id=collar, f_cnt=f_cnt))


def _cursors_and_newest_fixes(bridge) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """Each collar's stored cursor (fix id, fix time, status time) and its newest fix and status."""
    with bridge.db.read() as session:
        cursors = {row[0]: tuple(row[1:]) for row in session.execute(
            select(RuleCursor.device_id, RuleCursor.position_id, RuleCursor.position_time, RuleCursor.status_time))}
        newest = {row[0]: (row[1], row[2]) for row in session.execute(
            select(Position.device_id, func.max(Position.id), func.max(Position.time)).group_by(Position.device_id))}
        statuses = {row[0]: row[1] for row in session.execute(select(Device.device_id, Device.status_time))}
    return cursors, {collar: (*newest[collar], statuses[collar]) for collar in newest}


def _reads_of_collars_and_cursors(said: list[str]) -> tuple[int, int]:
    """Of a batch's statements: the reads of its collars' rows, and the reads of cursors not made with them."""
    collars = [s for s in said if s.startswith("SELECT devices.")]
    cursors = [s for s in said if s.startswith("SELECT rule_cursors.") and "FOR UPDATE" not in s]
    return len(collars), len(cursors)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_small_batch_s_rules_read_neither_its_collars_nor_their_cursors_again(engine, request, tmp_path):
    # Four collars heard once; then each heard alone, then all four in one delivery of four bodies.
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([_fix(collar, 1, 0) for collar in HERD])
        reads = []
        for f_cnt, collar in enumerate(HERD, start=2):
            said = b.statements_of(bridge)
            results = bridge.ingest_batch([_fix(collar, f_cnt, 10 * f_cnt)])
            assert [r.status for r in results] == ["processed"]
            reads.append(_reads_of_collars_and_cursors(said))
        said = b.statements_of(bridge)
        results = bridge.ingest_batch([_fix(collar, 9, 100) for collar in HERD])
        assert [r.status for r in results] == ["processed"] * len(HERD)
        reads.append(_reads_of_collars_and_cursors(said))
        cursors, newest = _cursors_and_newest_fixes(bridge)

    # one read of the batch's collars (their cursors with them on SQLite), no cursor read of its own
    assert reads == [(1, 0)] * (len(HERD) + 1)
    # every collar's cursor moved to its newest fix and status: the rules judged them all
    assert cursors == newest and set(cursors) == set(HERD)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lone_collar_whose_rules_fail_keeps_its_fix_and_its_cursor_as_before(engine, request, tmp_path, monkeypatch,
                                                                                caplog):
    # A collar heard alone, judged with the cursor its batch read: its rules fail, they are rolled back
    # and logged, and its fix is kept; its cursor stays where its last judgement left it.
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([_fix(HERD[0], 1, 0)])
        before, _ = _cursors_and_newest_fixes(bridge)
        judge = rules_engine._judge_collar

        def failing(*args, **kwargs):
            judge(*args, **kwargs)
            raise RuntimeError("a rule of the collar failed")

        monkeypatch.setattr(rules_engine, "_judge_collar", failing)
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            results = bridge.ingest_batch([_fix(HERD[0], 2, 10)])
        after, newest = _cursors_and_newest_fixes(bridge)

    assert [r.status for r in results] == ["processed"]
    assert after == before and after[HERD[0]][0] < newest[HERD[0]][0], "the failed judgement moved no cursor"
    failed = [r for r in caplog.records if "server rules failed" in r.getMessage()]
    assert len(failed) == 1 and f"device_id={HERD[0]}" in failed[0].getMessage()


def test_a_cursor_written_drops_every_cursor_kept_as_read(sqlite_url):
    # The rules judging twice in one transaction judge the second time from what the first wrote.
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.ingest_batch([_fix(HERD[0], 1, 0)])
        with bridge.db.write() as session:
            keep_read(session, {HERD[0]: Cursor(HERD[0], True, 1, b.T0, b.T0)})
            write_cursors(session, [Cursor(HERD[0], True, 1, b.T0, b.T0, b.T0)])
            assert take_read(session, [HERD[0]]) is None
            keep_read(session, {collar: Cursor(collar, False) for collar in HERD})
            assert take_read(session, HERD[:1] + ["tembo-99"]) is None, "one not kept: none taken"
            assert take_read(session, HERD[:2]) == {collar: Cursor(collar, False) for collar in HERD[:2]}
            assert take_read(session, HERD[:1]) is None, "each kept cursor is taken once"
