"""A bridge's applier warms its batch path up at start: the first uplinks a ranger's herd sends after a
start are applied as fast as the rest, and the warm-up leaves nothing behind, in the store or the log."""

from __future__ import annotations

import logging

import bridge_builders as b
from sqlalchemy import event, func, select

from lora_bridge.domain import rules_engine
from lora_bridge.group_commit import Submission
from lora_bridge.store import bulk, driver_reads
from lora_bridge.store.tables import Base


def _rows_by_table(bridge) -> dict[str, int]:
    with bridge.db.read() as session:
        return {table.name: session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def _herd_batch(hour: int = 0) -> list[Submission]:
    """Three collars' status and activity summary of one hour (from hour 0 on), and in the first hour
    an alert of each."""
    bodies = []
    t_s = b.T0_S + 3600 * hour
    for n in range(3):
        collar = f"collar-{n:02d}"
        bodies += [b.tts_uplink(b.status(t_s, lat=-2.5 + hour / 100), device_id=collar, f_cnt=1 + 3 * hour),
                   b.tts_uplink(b.activity(t_s), device_id=collar, f_cnt=2 + 3 * hour)]
        if hour == 0:
            bodies.append(b.tts_uplink(b.alert("mortality", seq=1, time_s=t_s + 60), device_id=collar, f_cnt=3))
    return [Submission("tts", None, body) for body in bodies]


def _statements_compiled(bridge, batch: list[Submission]) -> list[str]:
    """The statements of the batch the bridge's engine compiled (not found in its cache)."""
    compiled = []

    def seen(_connection, _cursor, statement, _parameters, context, _many) -> None:
        if context is not None and "MISS" in str(getattr(context, "cache_hit", "")):
            compiled.append(" ".join(statement.split()))

    event.listen(bridge.db.write_engine, "before_cursor_execute", seen)
    bridge.ingest_batch(batch)
    event.remove(bridge.db.write_engine, "before_cursor_execute", seen)
    return compiled


def _track_reads(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("SELECT") and "positions" in s]


def test_a_warmed_up_bridge_compiles_almost_nothing_for_its_first_herd_batches(tmp_path):
    # The herd's first hour (new collars), then its second (collars the rules judged before: their
    # tracks and the fixes before them read together)
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'cold.db'}", outbox_worker=False) as cold:
        compiled_cold = [_statements_compiled(cold, _herd_batch(hour)) for hour in (0, 1)]
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'warm.db'}", outbox_worker=False) as warm:
        took_s = warm.warm_up()
        at_driver = driver_reads._COMPILED.get(warm.db.write_engine.dialect, {})
        warmed_context_read = at_driver.get(rules_engine._CONTEXTS_READ) is not None
        warmed_track_read = at_driver.get(rules_engine._tracks_read(bulk.in_list_size(3))) is not None
        compiled_warm = [_statements_compiled(warm, _herd_batch(hour)) for hour in (0, 1)]

    assert took_s > 0
    assert len(compiled_cold[0]) >= 15  # the batch's reads, inserts, the rules' reads and updates
    assert len(compiled_warm[0]) <= len(compiled_cold[0]) // 4
    # What only a batch of collars judged before runs: the rules' reads of their tracks and of the
    # fixes before them, warmed up too (both read at SQLite's driver, `store.driver_reads`, their
    # statements compiled once an engine outside SQLAlchemy's cache: not counted here)
    assert warmed_track_read
    assert warmed_context_read
    assert _track_reads(compiled_warm[1]) == []
    assert len(compiled_warm[1]) < len(compiled_cold[1])  # the rest of its reads are at the driver too


def test_the_warm_up_stores_nothing_and_tells_no_one(store_url, caplog):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.ingest_batch(_herd_batch()[:3])  # a collar the store holds already
        before = _rows_by_table(bridge)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            bridge.warm_up()
            logged_during = [r.getMessage() for r in caplog.records]
        after = _rows_by_table(bridge)
        results = bridge.ingest_batch(_herd_batch()[3:])  # the store takes batches as before

    assert after == before
    assert not [m for m in logged_during if "tembo-warm-up" in m or "alert raised" in m]
    assert {r.status for r in results} == {"processed"}
    # the warm-up's alert was raised and its ack queued inside it: the sample covers the alert path
    assert before["alerts"] == 1 and before["downlinks"] == 1


def test_a_warm_up_that_fails_is_a_warning_and_the_bridge_applies_its_batches(tmp_path, monkeypatch, caplog):
    def broken(session, submissions, codec, settings, *, rules_file):
        raise RuntimeError("the sample could not be applied")

    monkeypatch.setattr("lora_bridge.service.keep_and_apply", broken)
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'tembo.db'}", outbox_worker=False) as bridge:
        with caplog.at_level(logging.WARNING, logger="lora_bridge"):
            bridge.warm_up()
        monkeypatch.undo()
        results = bridge.ingest_batch(_herd_batch())

    assert any("warm-up of the batch path failed" in r.getMessage() and "RuntimeError" in r.getMessage()
               for r in caplog.records)
    assert {r.status for r in results} == {"processed"}
