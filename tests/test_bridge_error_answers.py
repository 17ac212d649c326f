"""What the network server (or anyone who can POST to the webhook) reads when the bridge itself fails: what
to do (send it again later, or nothing: it is kept) and an error_id; never the store's own words (the
store's file, a host name, SQL and its parameters, a traceback). The operator finds those in the log, under
the same error_id, with the network and the message kind."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import bridge_builders as b
from sqlalchemy import event, text
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.adapters.webhook import APPLY_FAILED_REASON, PENDING_REASON, UNAVAILABLE_REASON

# What only the store says of itself: its SQL, the driver's name, a traceback.
STORE_WORDS = ("SQL", "INSERT", "sqlite3", "OperationalError", "IntegrityError", "Traceback", "parameters")


def _store_words_in(answer: str, store_url: str) -> list[str]:
    folder = str(Path(store_url.removeprefix("sqlite:///")).parent)
    return [word for word in (*STORE_WORDS, folder) if word in answer]


def _logged_under(caplog, error_id: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "error_id", None) == error_id]


def test_network_server_refused_by_a_read_only_store_is_told_to_send_again_with_an_error_id_not_the_sql(
        sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:

        @event.listens_for(bridge.db.write_engine, "begin")
        def read_only(connection) -> None:  # noqa: ANN001 - the disk turned read-only
            connection.exec_driver_sql("PRAGMA query_only = ON")

        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            refused = client.post("/uplinks/tts/up", content=b.tts_uplink(b.alert("mortality"), f_cnt=3),
                                  headers=b.HEADERS)

    answer = refused.json()
    assert (refused.status_code, answer["status"], answer["reason"]) == (503, "unavailable", UNAVAILABLE_REASON)
    assert _store_words_in(refused.text, sqlite_url) == []
    # the line that met the store's error and the webhook's answer, under one id
    logged = _logged_under(caplog, answer["error_id"])
    assert [(r.network, r.event) for r in logged if hasattr(r, "network")] == [("tts", "up")]
    assert all("readonly database" in r.getMessage() and "[SQL" not in r.getMessage() for r in logged)


def test_network_server_whose_body_waits_for_a_full_disk_is_told_it_is_kept_and_the_operator_finds_why(
        sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:

        @event.listens_for(bridge.db.write_engine, "before_cursor_execute")
        def disk_full(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            if statement.lstrip().upper().startswith(("INSERT INTO POSITIONS", "INSERT INTO DEVICES")):
                raise sqlite3.OperationalError("database or disk is full")

        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            kept = client.post("/uplinks/tts", content=b.tts_uplink(b.status(), f_cnt=4), headers=b.HEADERS)

    answer = kept.json()
    assert (kept.status_code, answer["status"], answer["reason"]) == (202, "pending", PENDING_REASON)
    assert _store_words_in(kept.text, sqlite_url) == []
    logged = _logged_under(caplog, answer["error_id"])  # the bridge's line of it and the webhook's answer
    assert [(r.network, r.raw_uplink_id) for r in logged if hasattr(r, "network")] == [("tts", answer["raw_uplink_id"])]
    assert all("database or disk is full" in r.getMessage() for r in logged)


def test_network_server_whose_body_the_store_refuses_reads_no_sql_and_the_operator_finds_it_by_error_id(
        sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        with bridge.db.write() as session:
            session.execute(text("CREATE TRIGGER refuse_positions BEFORE INSERT ON positions "
                                 "BEGIN SELECT RAISE(ABORT, 'value refused by the store'); END"))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            kept = client.post("/uplinks/tts", content=b.tts_uplink(b.status(), f_cnt=6), headers=b.HEADERS)
        (letter,) = bridge.dead_letters()

    answer = kept.json()
    assert (kept.status_code, answer["status"], answer["reason"]) == (200, "dead_letter", APPLY_FAILED_REASON)
    assert _store_words_in(kept.text, sqlite_url) == [] and "value refused" not in kept.text
    logged = _logged_under(caplog, answer["error_id"])  # the bridge's line of it and the webhook's answer
    assert logged and all("value refused by the store" in r.getMessage() for r in logged)
    assert "value refused by the store" in letter.reason
