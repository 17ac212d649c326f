"""What the operator's log (and the MQTT worker's, which logs the bridge's results) says of a body the bridge
failed on: the driver's first line, the collar and its frame counter and an error_id; never the SQL nor
its parameters, which carry a collar's position and ids. An admin inspecting the dead letter finds the
whole error there."""

from __future__ import annotations

import logging
import sqlite3

import bridge_builders as b
import pytest
from sqlalchemy import event, text

from lora_bridge.collar_shares import CollarShare
from lora_bridge.errors import StoreUnavailable

# What only the store's statement says: the SQL and its parameters (here a collar's position).
SQL_WORDS = ("[SQL", "[parameters", "INSERT INTO", "-2.5123")
ROUTE = {"application_id": b.APPLICATION_ID, "device_id": "collar-01"}


def _sql_in(said: str) -> list[str]:
    return [word for word in SQL_WORDS if word in said]


def test_operator_reads_which_collar_the_store_refused_under_an_error_id_without_its_position(sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        with bridge.db.write() as session:
            session.execute(text("CREATE TRIGGER refuse_positions BEFORE INSERT ON positions "
                                 "BEGIN SELECT RAISE(ABORT, 'value refused by the store'); END"))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            result = bridge.ingest_network_message("tts", "up", b.tts_uplink(b.status(lat=-2.5123), f_cnt=6),
                                                   path_ids=ROUTE)
        (letter,) = bridge.dead_letters()

    assert result.status == "dead_letter"
    assert _sql_in(caplog.text) == [] and _sql_in(result.reason) == [], "the log had the collar's SQL parameters"
    error_id = result.reason.rsplit("error_id=", 1)[1]
    (logged,) = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert "value refused by the store" in logged.getMessage() and "collar-01 f_cnt=6" in logged.getMessage()
    assert "value refused by the store" in letter.reason, "the admin finds the whole error with the dead letter"


def test_operator_reads_why_a_body_waits_for_a_full_disk_without_the_sql_that_found_it_full(sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:

        @event.listens_for(bridge.db.write_engine, "before_cursor_execute")
        def disk_full(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            if statement.lstrip().upper().startswith(("INSERT INTO POSITIONS", "INSERT INTO DEVICES")):
                raise sqlite3.OperationalError("database or disk is full")

        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            result = bridge.ingest_network_message("tts", "up", b.tts_uplink(b.status(lat=-2.5123), f_cnt=4),
                                                   path_ids=ROUTE)

    assert result.status == "pending"
    assert "database or disk is full" in result.reason and _sql_in(result.reason) == []
    error_id = result.reason.rsplit("error_id=", 1)[1]
    (logged,) = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert "database or disk is full" in logged.getMessage() and "collar-01 f_cnt=4" in logged.getMessage()
    assert _sql_in(caplog.text) == []


def test_a_worker_whose_lease_the_store_refuses_is_told_the_drivers_words_not_its_sql(sqlite_url):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:

        @event.listens_for(bridge.db.write_engine, "begin")
        def read_only(connection) -> None:  # noqa: ANN001 - the disk turned read-only
            connection.exec_driver_sql("PRAGMA query_only = ON")

        with pytest.raises(StoreUnavailable) as refused:
            CollarShare(bridge, "g/bridge-1").renew()
        told = str(refused.value)

    assert "readonly database" in told and "g/bridge-1" in told
    assert _sql_in(told) == [], "the lease's SQL went into the operator's log"
