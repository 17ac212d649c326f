"""What the operator's log (and the MQTT worker's, which logs the bridge's results) says of a body the bridge
failed on: the driver's first line, the collar and its frame counter and an error_id; never the SQL nor
its parameters, which carry a collar's position and ids. An admin inspecting the dead letter finds the
whole error there."""

from __future__ import annotations

import json
import logging
import sqlite3

import bridge_builders as b
import network_fixtures as nf
import pytest
from sqlalchemy import event, text
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.adapters.mqtt import MqttIngest, in_flight, parse_broker_url, route
from lora_bridge.collar_shares import CollarShare
from lora_bridge.errors import LEFT_OUT, StoreUnavailable
from lora_bridge.group_commit import Submission, write_and_settle

# What only the store's statement says: the SQL and its parameters (here a collar's position).
SQL_WORDS = ("[SQL", "[parameters", "INSERT INTO", "-2.5123")
ROUTE = {"application_id": b.APPLICATION_ID, "device_id": "collar-01"}
COLLAR_01_EUI = b.dev_eui_of("collar-01")


def _sql_in(said: str) -> list[str]:
    return [word for word in SQL_WORDS if word in said]


def fix_the_store_refuses(bridge, caplog):
    """collar-01's fix at -2.5123 (frame 6) through The Things Stack's webhook, into a store whose trigger
    refuses every position, with the bridge's log caught; the ingest's result."""
    with bridge.db.write() as session:
        session.execute(text("CREATE TRIGGER refuse_positions BEFORE INSERT ON positions "
                             "BEGIN SELECT RAISE(ABORT, 'value refused by the store'); END"))
    with caplog.at_level(logging.INFO, logger="lora_bridge"):
        return bridge.ingest_network_message("tts", "up", b.tts_uplink(b.status(lat=-2.5123), f_cnt=6),
                                             path_ids=ROUTE)


def test_operator_reads_which_collar_the_store_refused_under_an_error_id_without_its_position(sqlite_url, caplog):
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        result = fix_the_store_refuses(bridge, caplog)
        (letter,) = bridge.dead_letters()

    assert result.status == "dead_letter"
    assert _sql_in(caplog.text) == [] and _sql_in(result.reason) == [], "the log had the collar's SQL parameters"
    error_id = result.reason.rsplit("error_id=", 1)[1]
    (logged,) = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert "value refused by the store" in logged.getMessage() and "collar-01 f_cnt=6" in logged.getMessage()
    assert "value refused by the store" in letter.reason, "the admin finds the whole error with the dead letter"


def test_operators_dead_letter_line_names_the_collar_and_frame_counter_of_a_body_that_failed_at_apply(
    sqlite_url, caplog
):
    # The body was read (collar-01, frame 6) before the store refused its position: the dead letter line
    # and its record name both, not "device_id=None f_cnt=None", and still no position nor SQL.
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        result = fix_the_store_refuses(bridge, caplog)

    assert (result.status, result.stage) == ("dead_letter", "apply")
    (line,) = [r for r in caplog.records if r.getMessage().startswith("dead letter ")]
    assert (line.device_id, line.f_cnt, line.stage) == ("collar-01", 6, "apply")
    assert line.getMessage().startswith(f"dead letter device_id=collar-01 dev_eui={COLLAR_01_EUI} f_cnt=6 stage=apply: ")
    assert _sql_in(line.getMessage()) == [] and _sql_in(str(line.reason)) == []


def test_operators_dead_letter_line_names_the_collar_and_frame_counter_of_a_body_kept_before_it_was_stored(
    sqlite_url, caplog
):
    # A bug in the bridge hits collar-01's frame 6 as the MQTT worker hands it in, before anything is stored:
    # the bridge keeps the body as a dead letter, and that line names the collar and frame counter, as the
    # "ingest failed" line after it names the collar, not "device_id=None f_cnt=None".
    routed = route(f"v3/{b.APPLICATION_ID}@ttn/devices/collar-01/up")
    body = b.tts_uplink(b.status(lat=-2.5123), f_cnt=6)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        def ingest_with_a_bug(network, event, body, **kwargs) -> None:  # noqa: ANN001
            raise KeyError("rx_metadata")

        worker = MqttIngest(ingest_with_a_bug, parse_broker_url("mqtt://127.0.0.1:1"), keep=bridge.keep_failed)
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            worker._ingest(routed, body, in_flight(1, 0))
        (letter,) = bridge.dead_letters()

    assert worker.kept == 1 and "KeyError('rx_metadata')" in letter.reason
    (line,) = [r for r in caplog.records if r.getMessage().startswith("dead letter ")]
    assert (line.device_id, line.f_cnt, line.stage) == ("collar-01", 6, "apply")
    assert line.getMessage().startswith(f"dead letter device_id=collar-01 dev_eui={COLLAR_01_EUI} f_cnt=6 stage=apply: ")
    (failed,) = [r for r in caplog.records if r.getMessage().startswith("ingest failed")]
    assert failed.device == line.device_id, "both lines name the same collar"
    assert _sql_in(_all_logged(caplog.records)) == [], "no line carried the collar's position"


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


# A collar's exact position as LoRa Cloud solved it (TTS location_solved), and how the store's statement
# would show in a log: none of these may reach an operator's log, in a line, its extras or a traceback.
SOLVED_LATITUDE = "37.971555"
LEAKS = (SOLVED_LATITUDE, "[SQL", "[parameters", "INSERT INTO")


def _all_logged(records: list[logging.LogRecord]) -> str:
    """Everything a log handler could write of records: the formatted line with its traceback, and every
    attribute (a JSON handler writes the extras too)."""
    formatter = logging.Formatter()
    return "\n".join(f"{formatter.format(record)}\n{_written_of(record)}" for record in records)


# When a record was made: the clock's numbers, not the bridge's words (a `created` of 1765000037.97...
# would read as a coordinate to the checks below).
_CLOCK_ATTRIBUTES = ("created", "msecs", "relativeCreated")


def _written_of(record: logging.LogRecord) -> dict:
    """A record's attributes but the clock's (`_CLOCK_ATTRIBUTES`)."""
    return {name: value for name, value in vars(record).items() if name not in _CLOCK_ATTRIBUTES}


def _leaked(records: list[logging.LogRecord]) -> list[str]:
    logged = _all_logged(records)
    return [word for word in LEAKS if word in logged]


def test_network_server_told_503_and_operator_log_share_an_error_id_without_the_collars_position(
        sqlite_url, caplog):
    body = json.dumps(nf.TTS["location_solved"].copy()).encode()
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:

        @event.listens_for(bridge.db.write_engine, "before_cursor_execute")
        def locked(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            if statement.lstrip().upper().startswith("INSERT INTO RAW_UPLINKS"):
                raise sqlite3.OperationalError("database is locked")

        with TestClient(create_app(bridge)) as client, caplog.at_level(logging.INFO, logger="lora_bridge"):
            reply = client.post("/uplinks/tts/location-solved", content=body, headers=b.HEADERS)

    assert reply.status_code == 503
    said = reply.json()["error_id"]
    refused = [r for r in caplog.records if r.getMessage().startswith("store cannot take")]
    assert refused and all(r.error_id == said for r in refused), "the 503's error_id names the line with why"
    assert {(r.error_class, r.driver_said) for r in refused} == {("OperationalError", "database is locked")}
    assert _leaked(caplog.records) == [], "the log carried the statement and the collar's solved position"


def test_mqtt_message_the_store_refuses_is_logged_with_its_traceback_but_not_the_position_it_held(
        sqlite_url, caplog):
    routed = route("v3/reserve-collars@ttn/devices/dev1/location/solved")  # the collar the body names
    body = json.dumps(nf.TTS["location_solved"].copy()).encode()
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:

        fix = text("INSERT INTO positions (lat) VALUES (:lat)")  # no collar: the store refuses it

        def store_the_fix(network, event_name, body, **_ids) -> None:  # noqa: ANN001
            with bridge.db.write() as session:
                session.execute(fix, {"lat": float(SOLVED_LATITUDE)})

        worker = MqttIngest(store_the_fix, parse_broker_url("mqtt://127.0.0.1:1"), keep=bridge.keep_failed)
        nowhere = MqttIngest(store_the_fix, parse_broker_url("mqtt://127.0.0.1:1"))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            worker._ingest(routed, body, in_flight(1, 0))
            try:
                store_the_fix("tts", "location/solved", body)
            except Exception as error:  # noqa: BLE001 - the same refusal, for a worker with nowhere to keep it
                retried = nowhere._kept(routed, body, error)
        (letter,) = bridge.dead_letters()

    assert worker.kept == 1 and retried is not None
    logged = _all_logged(caplog.records)
    assert _leaked(caplog.records) == [], "a traceback repeated the statement and the collar's position"
    assert "in store_the_fix" in logged and "NOT NULL constraint failed" in logged, "the traceback still helps"
    acknowledged = [r for r in caplog.records if "acknowledged once kept" in r.getMessage()]
    kept_by_bridge = [r for r in caplog.records if r.getMessage().startswith("ingest failed")]
    assert [r.error_id for r in acknowledged] == [r.error_id for r in kept_by_bridge] != []
    assert SOLVED_LATITUDE in letter.reason or "NOT NULL" in letter.reason, "the admin finds the error with the letter"


def test_a_topic_naming_a_device_with_a_newline_cannot_forge_a_line_of_the_operators_log(caplog):
    # Any client allowed to publish under the tree chooses the topic's levels; a newline in one had
    # started a line of its own in the operator's log.
    forged = "collar-01\nCRITICAL lora_bridge: poaching alert cleared by admin"
    routed = route(f"v3/reserve-collars@ttn/devices/{forged}/up")

    def refused(*_args, **_ids) -> None:  # noqa: ANN002 - an ingest that fails for the message
        raise ValueError("the bridge could not read it")

    worker = MqttIngest(refused, parse_broker_url("mqtt://127.0.0.1:1"))
    with caplog.at_level(logging.INFO, logger="lora_bridge"):
        worker._kept(routed, b"{}", ValueError("the bridge could not read it"))

    (line,) = [r.getMessage() for r in caplog.records if "nowhere to keep it" in r.getMessage()]
    assert "\n" not in line and "collar-01\\nCRITICAL" in line


def test_a_group_commit_batch_the_store_refuses_is_logged_without_the_positions_it_held(sqlite_url, caplog):
    body = json.dumps(nf.TTS["location_solved"].copy()).encode()
    batch = [Submission("tts", "location_solved", body)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        fix = text("INSERT INTO positions (lat) VALUES (:lat)")  # no collar: the store refuses it

        def write_batch(submissions: list[Submission]) -> None:
            with bridge.db.write() as session:
                session.execute(fix, {"lat": float(SOLVED_LATITUDE)})

        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            write_and_settle(write_batch, batch)

    (logged,) = [r for r in caplog.records if "a batch of 1 bodies failed" in r.getMessage()]
    assert batch[0].error is not None and logged.error_class == "IntegrityError"
    assert logged.error_id in logged.getMessage() and "NOT NULL constraint failed" in logged.getMessage()
    assert _leaked(caplog.records) == [], "the batch's traceback quoted the statement and the position"


def test_rules_the_store_refuses_mid_batch_are_logged_with_a_traceback_but_without_the_sql_or_the_fix(
        sqlite_url, caplog):
    """The server rules run inside the uplink's batch over the collar's fresh fixes: when the store refuses
    their writes, the operator's log says which collar, the driver's words and an error_id, and its
    traceback keeps the frames, not the statement and its parameters."""
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        with bridge.db.write() as session:
            for when in ("INSERT", "UPDATE"):
                session.execute(text(f"CREATE TRIGGER refuse_cursor_{when.lower()} BEFORE {when} ON rule_cursors "
                                     "BEGIN SELECT RAISE(ABORT, 'rules cursor refused by the store'); END"))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            result = bridge.ingest_network_message("tts", "up", b.tts_uplink(b.status(lat=-2.5123), f_cnt=9),
                                                   path_ids=ROUTE)

    assert result.status == "processed", "the uplink is kept whatever the rules met"
    failed = [r for r in caplog.records if "server rules failed" in r.getMessage()]
    assert failed, "the rules' failure is logged"
    assert all(r.exc_info and getattr(r, "error_id", None) for r in failed), "with its traceback and error_id"
    assert any("rules cursor refused by the store" in r.getMessage() for r in failed)
    assert _sql_in(_all_logged(caplog.records)) == []


def test_a_body_the_store_refuses_is_logged_with_a_traceback_to_where_it_failed_but_not_its_statement(
        sqlite_url, caplog):
    """The dead letter's line says where the failure came from (the frames down to the statement the
    store refused), each error said by its class and the driver's words; never the statement, its
    parameters nor the collar's position."""
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        result = fix_the_store_refuses(bridge, caplog)

    assert result.status == "dead_letter"
    error_id = result.reason.rsplit("error_id=", 1)[1]
    (failed,) = [r for r in caplog.records if r.getMessage().startswith("body processing failed")]
    assert (failed.error_id, failed.error_class) == (error_id, "IntegrityError")
    assert failed.exc_info is not None, "the operator gets the traceback of the failure"
    line = logging.Formatter().format(failed)
    assert "Traceback" in line and "in process_raw" in line and "in write_queued" in line, \
        "its frames name the functions it failed in: the body's processing, down to the write the store refused"
    assert "value refused by the store" in line and "collar-01 f_cnt=6" in line
    assert _sql_in(_all_logged(caplog.records)) == [], "the traceback repeated the statement and the position"


# A store a reserve's GIS technician changed: a trigger mirroring each fix into a grid of their own, or a
# check that fixes lie north of the reserve's southern edge. PostgreSQL itself refuses the bridge's fix,
# and its error quotes the fix's coordinates in its first line (22P02: `invalid input syntax for type
# double precision: "-2.5123 37.9716"`) or in its DETAIL (23514: `Failing row contains (...)`).
REFUSED_LAT, REFUSED_LON = -2.5123, 37.9716
COORDINATES = ("2.512", "37.97")
GRID_MIRROR = """
CREATE FUNCTION mirror_fix_to_grid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM (NEW.lat::text || ' ' || NEW.lon::text)::double precision;
    RETURN NEW;
END $$;
CREATE TRIGGER mirror_fix_to_grid BEFORE INSERT ON positions FOR EACH ROW EXECUTE FUNCTION mirror_fix_to_grid();
"""
FIXES_IN_THE_RESERVE = "ALTER TABLE positions ADD CONSTRAINT fix_in_the_reserve CHECK (lat > -2.4) NOT VALID"
# The grid's table not made yet: a message that names only the schema is said as PostgreSQL wrote it.
GRID_NOT_MADE = GRID_MIRROR.replace("PERFORM (NEW.lat::text || ' ' || NEW.lon::text)::double precision;",
                                    "INSERT INTO reserve_grid VALUES (NEW.lat, NEW.lon);")


@pytest.mark.postgres
@pytest.mark.parametrize(("store_change", "said"), [
    (GRID_MIRROR, f'invalid input syntax for type double precision: "{LEFT_OUT}" (SQLSTATE 22P02)'),
    (FIXES_IN_THE_RESERVE,
     "new row for relation \"positions\" violates check constraint \"fix_in_the_reserve\" (SQLSTATE 23514)"),
    (GRID_NOT_MADE, "relation \"reserve_grid\" does not exist (SQLSTATE 42P01)"),
])
def test_postgresql_refusing_a_fix_is_logged_by_its_sqlstate_and_constraint_never_by_the_coordinates_it_quotes(
        request, tmp_path, caplog, store_change, said):
    from conftest import empty_store

    fix = b.tts_uplink(b.status(lat=REFUSED_LAT, lon=REFUSED_LON), f_cnt=1)
    with empty_store("postgres", request, tmp_path / "unused.db") as url, \
            b.fresh_bridge(url, outbox_worker=False) as bridge:
        with bridge.db.write() as session:
            session.execute(text(store_change))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            refused = bridge.ingest_network_message("tts", "up", fix, path_ids=ROUTE)
        (letter,) = bridge.dead_letters()

    logged = _all_logged(caplog.records)
    assert [c for c in COORDINATES if c in logged] == [], "the log quoted the collar's coordinates"
    assert [c for c in COORDINATES if c in refused.reason] == [], "the webhook's log quotes the result's reason"
    assert _sql_in(logged) == []
    assert refused.status == "dead_letter" and said in refused.reason
    (failed,) = [r for r in caplog.records if getattr(r, "error_id", None) == refused.reason.rsplit("=", 1)[1]
                 and r.getMessage().startswith("body processing failed")]
    assert failed.driver_said == said and failed.exc_info is not None
    assert said.split(" (SQLSTATE")[0].split(f'"{LEFT_OUT}"')[0] in letter.reason, "the admin finds the error there"


# A fix's latitude where the body holds another value, or written as a ranger would (with its hemisphere):
# the reader refuses it, or a reader's bug trips on it. The dead letter keeps it for the admins who inspect
# it; the operator's log says where and why, never the value (a ValueError's first line quotes it).
LATITUDE_TEXT = f"{SOLVED_LATITUDE} N"
LATITUDE_DIGITS = (SOLVED_LATITUDE[:5], SOLVED_LATITUDE[-6:])  # "37.97", "971555"


def _digits_logged(records: list[logging.LogRecord]) -> list[str]:
    logged = _all_logged(records)
    return [digits for digits in LATITUDE_DIGITS if digits in logged]


def _latitude_as_frame_counter(network: str) -> bytes:
    """collar-01's uplink with the fix's latitude, as text, where its frame counter goes."""
    document = json.loads(b.tts_uplink(b.status()) if network == "tts" else b.chirpstack_uplink(b.status()))
    if network == "tts":
        document["uplink_message"]["f_cnt"] = SOLVED_LATITUDE
    else:
        document["fCnt"] = SOLVED_LATITUDE
    return json.dumps(document).encode()


def _located_as_text() -> bytes:
    """LoRa Cloud's solved location of dev1 (TTS location_solved), its latitude written with its hemisphere."""
    document = json.loads(json.dumps(nf.TTS["location_solved"].copy()))
    document["location_solved"]["location"]["latitude"] = LATITUDE_TEXT
    return json.dumps(document).encode()


def _tripping_reader(monkeypatch) -> None:
    """A reader of solved locations that takes the latitude for a number (`float`), as a regression would."""
    from lora_bridge import network_messages

    monkeypatch.setattr(network_messages, "_latitude", float)


def _post_a_location_a_readers_bug_trips_on(url, caplog, monkeypatch):
    """LoRa Cloud's solved location of dev1, its latitude written with its hemisphere, posted to The Things
    Stack's webhook of a fresh bridge whose reader trips on it (`_tripping_reader`), with the bridge's log
    caught: the webhook's reply and the dead letters the bridge kept."""
    _tripping_reader(monkeypatch)
    with b.fresh_bridge(url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client, \
            caplog.at_level(logging.INFO, logger="lora_bridge"):
        reply = client.post("/uplinks/tts/location-solved", content=_located_as_text(), headers=b.HEADERS)
        return reply, bridge.dead_letters()


@pytest.mark.parametrize(("network", "webhook_ack"), [("tts", "applied"), ("chirpstack", "applied"),
                                                      ("tts", "durable")])
def test_a_latitude_posted_as_the_frame_counter_stays_with_its_dead_letter_and_out_of_the_operators_log(
        sqlite_url, caplog, network, webhook_ack):
    path = "/uplinks/tts/up" if network == "tts" else "/uplinks/chirpstack?event=up"
    with b.fresh_bridge(sqlite_url, outbox_worker=False, webhook_ack=webhook_ack) as bridge, \
            TestClient(create_app(bridge)) as client, caplog.at_level(logging.INFO, logger="lora_bridge"):
        reply = client.post(path, content=_latitude_as_frame_counter(network), headers=b.HEADERS)
        (letter,) = bridge.dead_letters()

    assert reply.status_code in (200, 202) and letter.stage == "parse"
    assert f"got '{SOLVED_LATITUDE}'" in letter.reason, "the admin finds the value the reader refused"
    assert _digits_logged(caplog.records) == [], "the operator's log quoted the collar's latitude"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter ")]
    assert f"must be a frame counter 0..4294967295, got '{LEFT_OUT}'" in line, "the log still says what was wrong"


def test_a_webhook_body_a_readers_bug_trips_on_is_logged_without_the_latitude_it_could_not_read(
        sqlite_url, caplog, monkeypatch):
    reply, (letter,) = _post_a_location_a_readers_bug_trips_on(sqlite_url, caplog, monkeypatch)

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"
    assert f"could not convert string to float: '{LATITUDE_TEXT}'" in letter.reason, "the letter keeps the value"
    assert _digits_logged(caplog.records) == [], "a ValueError's first line put the latitude in the log"
    (failed,) = [r for r in caplog.records if r.getMessage().startswith("body processing failed")]
    assert failed.driver_said == f"could not convert string to float: '{LEFT_OUT}'" and failed.exc_info is not None
    assert "in read_network_message" in logging.Formatter().format(failed), "its traceback says where it failed"


def test_an_mqtt_message_a_readers_bug_trips_on_is_kept_and_acknowledged_without_logging_its_latitude(
        sqlite_url, caplog, monkeypatch):
    from lora_bridge.network_messages import read_network_message

    _tripping_reader(monkeypatch)
    routed = route("v3/reserve-collars@ttn/devices/dev1/location/solved")  # the collar the body names
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        read_first = MqttIngest(read_network_message, parse_broker_url("mqtt://127.0.0.1:1"), keep=bridge.keep_failed)
        applied = MqttIngest(bridge.ingest_network_message, parse_broker_url("mqtt://127.0.0.1:1"))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            read_first._ingest(routed, _located_as_text(), in_flight(1, 0))
            applied._ingest(routed, _located_as_text(), in_flight(2, 0))
        letters = bridge.dead_letters()

    assert read_first.kept == 1 and len(letters) == 2
    assert all(f"could not convert string to float: '{LATITUDE_TEXT}'" in letter.reason for letter in letters)
    assert _digits_logged(caplog.records) == [], "the MQTT worker's lines or the bridge's quoted the latitude"
    (acknowledged,) = [r for r in caplog.records if "acknowledged once kept" in r.getMessage()]
    assert f"ValueError: could not convert string to float: '{LEFT_OUT}'" in acknowledged.getMessage()


def test_a_frame_the_codec_rejects_is_logged_without_its_bytes_which_hold_the_fix(sqlite_url, caplog):
    # A status frame cut short on the air: the codec refuses it. Its bytes (the fix at -2.5123, 37.9716 among
    # them) stay with the dead letter for a codec fix and a replay, not in the operator's log.
    port, frame = b.status(lat=REFUSED_LAT, lon=REFUSED_LON)
    cut = frame[:-1]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, caplog.at_level(logging.INFO, logger="lora_bridge"):
        result = bridge.ingest_network_message("tts", "up", b.tts_uplink((port, cut), f_cnt=3), path_ids=ROUTE)
        (letter,) = bridge.dead_letters()

    assert (result.status, result.stage) == ("dead_letter", "decode") and cut.hex() in letter.reason
    logged = _all_logged(caplog.records)
    assert cut.hex()[:8] not in logged and cut.hex()[-8:] not in logged, "the log carried the frame's bytes"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter ")]
    assert line.startswith(f"dead letter device_id=collar-01 dev_eui={COLLAR_01_EUI} f_cnt=3 stage=decode: "
                           "codec rejected port ")
    assert f"payload {LEFT_OUT}: status: " in line, "the log still says the codec refused a status frame"


# ---- which collar a dead letter's line names -----------------------------------------------------------
# Bodies of every kind, in the shapes The Things Stack and ChirpStack document (`network_fixtures`), each
# broken one way a network server or a broker can break it, delivered as they come (a webhook path, an MQTT
# topic). Each names its collar in its topic or its ids, so its dead letter's line names it too: the device
# id, the DevEUI when the body or topic gives one, and a frame counter only where the message has one (an
# uplink's). Until 6 December a `location_solved` that did not read was logged "device_id=None f_cnt=None".
TTS_TOPIC = "v3/reserve-collars@ttn/devices/collar-01/"
CHIRPSTACK_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/"
TTS_EUI, CHIRPSTACK_EUI = nf.TTS_END_DEVICE_IDS["dev_eui"], nf.CHIRPSTACK_DEVICE_INFO["devEui"]


def _documented(fixture: nf.Fixture, change=lambda document: None) -> bytes:  # noqa: ANN001
    """fixture's documented body with change made to it, as JSON."""
    document = fixture.copy()
    change(document)
    return json.dumps(document).encode()


def _cut_short(fixture: nf.Fixture) -> bytes:
    """fixture's body cut off mid-way, as a broker that lost the end of a message hands it on."""
    whole = json.dumps(fixture.body).encode()
    return whole[: len(whole) // 2]


COLLAR_NAMED = {  # case: (how it comes, where, body, (device_id, dev_eui, f_cnt, stage))
    "tts location_solved cut short, MQTT topic names the collar": (
        "mqtt", TTS_TOPIC + "location/solved", _cut_short(nf.TTS["location_solved"]),
        ("collar-01", None, None, "parse")),
    "tts location_solved whose message is null, webhook": (
        "webhook", "/uplinks/tts/location-solved",
        _documented(nf.TTS["location_solved"], lambda d: d.update(location_solved=None)),
        ("dev1", TTS_EUI, None, "kind")),
    "tts location_solved whose DevEUI is garbled, MQTT": (
        "mqtt", TTS_TOPIC + "location/solved",
        _documented(nf.TTS["location_solved"], lambda d: d["end_device_ids"].update(dev_eui="0004A30B-not-hex")),
        ("dev1", None, None, "parse")),
    "tts join_accept cut short, MQTT": (
        "mqtt", TTS_TOPIC + "join", _cut_short(nf.TTS["join_accept"]), ("collar-01", None, None, "parse")),
    "tts downlink_ack whose message is text, webhook": (
        "webhook", "/uplinks/tts/down-ack",
        _documented(nf.TTS["downlink_ack"], lambda d: d.update(downlink_ack="acknowledged")),
        ("dev1", TTS_EUI, None, "kind")),
    "tts downlink_failed whose message is null (its ids have no DevEUI), MQTT": (
        "mqtt", TTS_TOPIC + "down/failed",
        _documented(nf.TTS["downlink_failed"], lambda d: d.update(downlink_failed=None)),
        ("dev1", None, None, "kind")),
    "tts uplink whose port is text, webhook": (
        "webhook", "/uplinks/tts/up",
        _documented(nf.TTS["uplink_message"], lambda d: d["uplink_message"].update(f_port="one")),
        ("dev1", TTS_EUI, 1, "parse")),
    "chirpstack up whose data is not base64, HTTP": (
        "webhook", "/uplinks/chirpstack?event=up",
        _documented(nf.CHIRPSTACK["up"], lambda d: d.update(data="not base64!")),
        ("Test device", CHIRPSTACK_EUI, 4, "parse")),
    "chirpstack join cut short, MQTT topic names the DevEUI": (
        "mqtt", CHIRPSTACK_TOPIC + "join", _cut_short(nf.CHIRPSTACK["join"]),
        (CHIRPSTACK_EUI, CHIRPSTACK_EUI, None, "parse")),
    "chirpstack location whose DevEUI is garbled, HTTP": (
        "webhook", "/uplinks/chirpstack?event=location",
        _documented(nf.CHIRPSTACK["location"], lambda d: d["deviceInfo"].update(devEui="01-not-an-eui")),
        ("Test device", None, None, "parse")),
    "chirpstack ack cut short, MQTT": (
        "mqtt", CHIRPSTACK_TOPIC + "ack", _cut_short(nf.CHIRPSTACK["ack"]),
        (CHIRPSTACK_EUI, CHIRPSTACK_EUI, None, "parse")),
}


def _dead_letter_line(caplog) -> logging.LogRecord:  # noqa: ANN001
    (line,) = [r for r in caplog.records if r.getMessage().startswith("dead letter ")]
    return line


def _said_of_collar(device_id: str, dev_eui: str | None, f_cnt: int | None, stage: str) -> str:
    """How a dead letter's line begins for that collar."""
    return (f"dead letter device_id={device_id}" + (f" dev_eui={dev_eui}" if dev_eui else "")
            + (f" f_cnt={f_cnt}" if f_cnt is not None else "") + f" stage={stage}: ")


@pytest.mark.parametrize("case", list(COLLAR_NAMED))
def test_operators_dead_letter_line_names_the_collar_a_message_of_any_kind_names(store_url, caplog, case):
    how, where, body, (device_id, dev_eui, f_cnt, stage) = COLLAR_NAMED[case]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, caplog.at_level(logging.INFO, logger="lora_bridge"):
        if how == "mqtt":
            MqttIngest(bridge.ingest_network_message, parse_broker_url("mqtt://127.0.0.1:1"))._ingest(
                route(where), body, in_flight(1, 0))
        else:
            with TestClient(create_app(bridge)) as client:
                assert client.post(where, content=body, headers=b.HEADERS).status_code == 200
        (letter,) = bridge.dead_letters()

    line = _dead_letter_line(caplog)
    assert letter.stage == stage
    assert (line.device_id, line.dev_eui, line.f_cnt, line.stage) == (device_id, dev_eui, f_cnt, stage)
    assert line.getMessage().startswith(_said_of_collar(device_id, dev_eui, f_cnt, stage))


def test_a_location_solved_a_readers_bug_trips_on_is_logged_under_its_collar_without_its_latitude(
        store_url, caplog, monkeypatch):
    # LoRa Cloud's solved location of the documented collar (dev1), its latitude written with its hemisphere:
    # a reader's bug trips on it while the body is applied. The dead letter's line names the collar the
    # body's end_device_ids give, its DevEUI too, and no frame counter (a location has none).
    reply, (letter,) = _post_a_location_a_readers_bug_trips_on(store_url, caplog, monkeypatch)

    assert reply.json()["status"] == "dead_letter" and letter.stage == "apply"
    line = _dead_letter_line(caplog)
    assert (line.device_id, line.dev_eui, line.f_cnt, line.stage) == ("dev1", TTS_EUI, None, "apply")
    assert line.getMessage().startswith(f"dead letter device_id=dev1 dev_eui={TTS_EUI} stage=apply: ")
    assert _digits_logged(caplog.records) == [], "naming the collar put the latitude in the log"


def test_an_mqtt_location_solved_kept_after_a_bug_names_the_collar_of_its_topic_and_ids(sqlite_url, caplog):
    # A bug of the bridge hits a solved location as the MQTT worker hands it in, before anything is stored:
    # the bridge keeps it as a dead letter whose line names the collar, as the "ingest failed" line does.
    routed = route("v3/app1@ttn/devices/dev1/location/solved")
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        def ingest_with_a_bug(network, event, body, **kwargs) -> None:  # noqa: ANN001
            raise KeyError("location")

        worker = MqttIngest(ingest_with_a_bug, parse_broker_url("mqtt://127.0.0.1:1"), keep=bridge.keep_failed)
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            worker._ingest(routed, _documented(nf.TTS["location_solved"]), in_flight(1, 0))

    assert worker.kept == 1
    line = _dead_letter_line(caplog)
    assert (line.device_id, line.dev_eui, line.f_cnt, line.stage) == ("dev1", TTS_EUI, None, "apply")
    (failed,) = [r for r in caplog.records if r.getMessage().startswith("ingest failed")]
    assert (failed.device, failed.dev_eui) == ("dev1", TTS_EUI), "both lines name the same collar"
    assert _leaked(caplog.records) == [], "no line carried the solved position"


@pytest.mark.parametrize("status", [404, 429, 503])
def test_operator_reads_the_http_status_and_the_network_servers_reason_of_a_refused_push(
        store_url, network, caplog, status):
    # A push the network server refuses, through the outbox: the line says the HTTP status, which tells the
    # operator a 429 (wait) from a 404 (the collar is gone from the application) and a 503 (the server is
    # down), and the server's own reason (escaped and bounded: tests/test_bridge_faults_operations.py), which
    # tells a wrong API key from a device the network does not know.
    if status == 404:
        network.deleted.add("collar-01")
    elif status == 429:
        network.rate_limited, network.retry_after_s = 1, 60
    else:
        network.refuse = True
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            assert bridge.flush_downlinks() == 0
        (held,) = bridge.downlinks()

    (line,) = [r for r in caplog.records if r.getMessage().startswith("downlink push failed")]
    assert f"network server answered {status}: " in line.getMessage()
    assert str(status) in held.last_error, "the downlink itself keeps the server's whole answer"
    answered = {404: "device_not_found", 429: "rate_limit_exceeded", 503: "unavailable"}[status]
    assert answered in line.getMessage(), "the server's reason"
