"""The bridge's PostgreSQL cursor describes a result's columns only when something reads them: a running
bridge's batches, whose statements SQLAlchemy compiled before, describe none; a read that needs the names
(a first run, a plain SQL text) gets psycopg's own descriptions."""

from __future__ import annotations

import bridge_builders as b
import psycopg
import pytest
from sqlalchemy import text

from lora_bridge.group_commit import Submission
from lora_bridge.store import columns_on_read
from lora_bridge.store.columns_on_read import ColumnsOnReadCursor

HERD = [f"tembo-{n:02d}" for n in range(4)]


def _delivery(f_cnt: int) -> list[Submission]:
    """A status of each collar of HERD heard at frame counter f_cnt, a minute apart each."""
    return [Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S + 60 * f_cnt), device_id=collar, f_cnt=f_cnt))
            for collar in HERD]


@pytest.mark.postgres
def test_a_warm_bridge_s_batch_on_postgresql_describes_no_column(postgres_url, monkeypatch):
    made: list[int] = []

    class Counted(psycopg.Column):
        def __init__(self, cursor, index: int) -> None:
            made.append(index)
            super().__init__(cursor, index)

    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        bridge.ingest_batch(_delivery(1))
        bridge.ingest_batch(_delivery(2))  # the statements of a batch of known collars compiled
        monkeypatch.setattr(columns_on_read, "Column", Counted)
        results = bridge.ingest_batch(_delivery(3))
        said = b.statements_of(bridge)
        bridge.ingest_batch(_delivery(4))
        with bridge.db.read() as session:
            names = list(session.execute(text("SELECT device_id AS collar, last_f_cnt FROM devices")).keys())

    assert [result.status for result in results] == ["processed"] * len(HERD)
    assert any(statement.startswith("SELECT") for statement in said)
    # the plain SQL text's two columns described for its names; of the batches' (their collars', raw
    # rows', alerts', tracks': some 150 columns a batch) at most the one of their keys' advisory locks
    # (`ingest.lock_keys`, a plain SQL text too)
    assert (made[-2:], names) == ([0, 1], ["collar", "last_f_cnt"])
    assert len(made[:-2]) <= 2


@pytest.mark.postgres
def test_the_columns_are_psycopg_s_own_and_only_of_their_own_result(postgres_server):
    with psycopg.connect(postgres_server.url("postgres").replace("postgresql+psycopg", "postgresql"),
                         cursor_factory=ColumnsOnReadCursor) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT 1 AS collars, 'tembo-01'::text AS collar, now() AS heard")
        described = cursor.description
        plain = psycopg.Cursor(connection)
        plain.execute("SELECT 1 AS collars, 'tembo-01'::text AS collar, now() AS heard")
        assert len(described) == 3
        assert [tuple(c) for c in described] == [tuple(c) for c in plain.description]
        assert [c.type_display for c in described] == ["int4", "text", "timestamptz"]
        cursor.execute("UPDATE pg_database SET datname = datname WHERE false")
        assert cursor.description is None
        cursor.execute("SELECT 2 AS herds")
        late = cursor.description
        cursor.execute("SELECT 3 AS reserves, 4 AS rangers")
        with pytest.raises(RuntimeError, match="moved on"):
            late[0]
        assert [c.name for c in cursor.description] == ["reserves", "rangers"]
