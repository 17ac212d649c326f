"""On PostgreSQL a batch locks its uplinks' keys (`ingest.lock_keys`) with a statement whose one column is
declared: a running bridge's batches keep its result's shape and describe no column of any result."""

from __future__ import annotations

import cProfile
import pstats

import bridge_builders as b
import psycopg
import pytest
from sqlalchemy.engine.cursor import CursorResultMetaData

from lora_bridge.group_commit import Submission

HERD = [f"tembo-{n:02d}" for n in range(4)]


def _heard(f_cnt: int) -> list[Submission]:
    """A position of each collar of HERD at frame counter f_cnt, a minute after the one before."""
    return [Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S + 60 * f_cnt), device_id=collar, f_cnt=f_cnt))
            for collar in HERD]


@pytest.mark.postgres
def test_a_warm_batch_locks_its_keys_without_describing_a_column(postgres_url):
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        bridge.ingest_batch(_heard(1))
        bridge.ingest_batch(_heard(2))  # the statements of a batch of known collars compiled
        said = b.statements_of(bridge)
        profile = cProfile.Profile()
        profile.enable()
        results = bridge.ingest_batch(_heard(3))
        profile.disable()
    made = {(path, line): count for (path, line, _), (_, count, *_) in pstats.Stats(profile).stats.items()}
    described = made.get(_where(psycopg.Column.__init__), 0)
    shaped = made.get(_where(CursorResultMetaData.__init__), 0)

    assert [result.status for result in results] == ["processed"] * len(HERD)
    assert any("pg_advisory_xact_lock" in statement for statement in said)
    # no psycopg column described, no result shape of SQLAlchemy's made anew (the locks' were, each batch)
    assert (described, shaped) == (0, 0)


def _where(function: object) -> tuple[str, int]:
    """function's file and first line, as cProfile names it."""
    code = function.__code__  # type: ignore[attr-defined]
    return code.co_filename, code.co_firstlineno
