"""What every batch asks the store before it reads its collars, whatever its size: one statement on
PostgreSQL (its raw rows' ids from the sequence with the batch's once-a-batch reads), the write lock and
one statement on SQLite. A webhook answered once applied waits on a small batch's fixed cost, and on
PostgreSQL each statement is a round trip to the server."""

from __future__ import annotations

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select

from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import RawUplink

HERD = [f"tembo-{n:02d}" for n in range(3)]


def _raw_ids(bridge) -> list[tuple[int, str, int]]:
    """The stored raw rows' (id, collar, frame counter), by id."""
    with bridge.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(RawUplink.id, RawUplink.device_id, RawUplink.f_cnt).order_by(RawUplink.id))]


def _statements_before_the_collars(said: list[str]) -> list[str]:
    """The statements of a batch before its read of its collars (`pipeline.read_batch`)."""
    first_read = next(i for i, statement in enumerate(said) if statement.startswith("SELECT devices."))
    return said[:first_read]


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_heard_collar_s_fix_costs_the_store_one_statement_before_its_collar_is_read(engine, request, tmp_path):
    # Three collars heard once, then each heard again alone, then all three in one delivery: every
    # batch asks the store once of its own before it reads its collars, whatever its size.
    earlier = [b.tts_uplink(b.status(), device_id=collar, f_cnt=1) for collar in HERD]
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([Submission("tts", None, body) for body in earlier])
        before = []
        for f_cnt, collar in enumerate(HERD, start=2):
            said = b.statements_of(bridge)
            bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S + 60 * f_cnt), device_id=collar, f_cnt=f_cnt))])
            before.append(_statements_before_the_collars(said))
        said = b.statements_of(bridge)
        bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S + 600), device_id=collar, f_cnt=9))
                             for collar in HERD])
        before.append(_statements_before_the_collars(said))
        raw_ids = _raw_ids(bridge)

    expected = ["SELECT"] if engine == "postgres" else ["BEGIN IMMEDIATE", "SELECT"]
    assert [[statement.split(" ")[0] if statement.startswith("SELECT") else statement for statement in batch]
            for batch in before] == [expected] * 4
    # the raw rows' ids one after another, in the order the bodies came
    assert raw_ids == [(n, collar, f_cnt) for n, (collar, f_cnt) in enumerate(
        [(collar, 1) for collar in HERD] + [(collar, f_cnt) for f_cnt, collar in enumerate(HERD, start=2)]
        + [(collar, 9) for collar in HERD], start=1)]


@pytest.mark.postgres
def test_a_delivery_on_postgresql_takes_its_raw_rows_ids_in_its_first_statement(request, tmp_path):
    # Twelve bodies of one delivery: their twelve ids come from the sequence with the batch's first
    # read, in no statement of their own, in the order the bodies came.
    delivery = [b.tts_uplink(b.status(), device_id=f"tembo-{n:02d}", f_cnt=1) for n in range(12)]
    with empty_store("postgres", request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        said = b.statements_of(bridge)
        bridge.ingest_batch([Submission("tts", None, body) for body in delivery])
        raw_ids = _raw_ids(bridge)

    assert [statement for statement in said if "nextval(pg_get_serial_sequence('raw_uplinks'" in statement] == [said[0]]
    assert raw_ids == [(n + 1, f"tembo-{n:02d}", 1) for n in range(12)]
