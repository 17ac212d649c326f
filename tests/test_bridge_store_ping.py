"""A busy bridge on PostgreSQL does not ask the server before each batch whether its connection is alive
(a round trip a batch, paid while the webhook's senders wait); a connection that rested is asked, and one
the server closed meanwhile is replaced before the next uplink needs it."""

from __future__ import annotations

import logging

import bridge_builders as b
import pytest

from lora_bridge.group_commit import Submission
from lora_bridge.store import idle_ping


def _pings(bridge, monkeypatch) -> list[bool]:
    """The pings of bridge's write engine from now on (the list returned fills as they happen)."""
    dialect = bridge.db.write_engine.dialect
    asked: list[bool] = []
    ping = dialect.do_ping

    def counted(dbapi_connection) -> bool:
        asked.append(True)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return asked


def _heard(bridge, f_cnt: int) -> str:
    """Hand in one status of the collar tembo-01 as a batch of its own; the body's status."""
    body = b.tts_uplink(b.status(time_s=b.T0_S + 60 * f_cnt), device_id="tembo-01", f_cnt=f_cnt)
    return bridge.ingest_batch([Submission("tts", None, body)])[0].status


@pytest.mark.postgres
def test_a_busy_bridge_s_batches_ask_postgresql_nothing_before_they_start(postgres_url, monkeypatch):
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        _heard(bridge, 1)
        asked = _pings(bridge, monkeypatch)
        statuses = [_heard(bridge, f_cnt) for f_cnt in range(2, 12)]

    assert statuses == ["processed"] * 10
    assert asked == []


@pytest.mark.postgres
def test_a_connection_the_server_closed_while_it_rested_is_replaced_before_the_next_uplink(
        postgres_url, postgres_server, monkeypatch, caplog):
    # The server ends the bridge's sessions (a restart, a fail-over, an administrator) while the bridge
    # hears nothing; the next uplink is applied in its batch's one transaction on a new connection.
    monkeypatch.setattr(idle_ping, "IDLE_BEFORE_PING_S", 0.0)
    name = postgres_url.rsplit("/", 1)[-1]
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        _heard(bridge, 1)
        asked = _pings(bridge, monkeypatch)
        postgres_server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        with caplog.at_level(logging.INFO):
            status = _heard(bridge, 2)
        counts = bridge.counts()

    assert status == "processed"
    assert len(asked) >= 1
    said = [record.getMessage() for record in caplog.records]
    assert any("closed while it rested" in message for message in said)
    assert not any("fell back to store-then-process" in message for message in said)
    assert counts["uplinks_stored"] == 2
