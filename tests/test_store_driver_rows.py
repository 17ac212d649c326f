"""A batch's raw rows, fixes and summaries inserted, and its collars updated, on SQLite through its driver
(store.driver_rows) are stored exactly as SQLAlchemy's own executemany stores them: every value and its
SQLite type, Nones, integers in float columns, bytes, aware times of other zones, JSON of every shape;
and each statement is one to the store's counters, as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, bindparam, insert, null, update

from lora_bridge.store import driver_rows
from lora_bridge.store.bulk import insert_ignoring_conflicts
from lora_bridge.store.database import Database, count_writes, open_database
from lora_bridge.store.tables import ActivitySummary, Device, Position, RawUplink

NAIROBI = timezone(timedelta(hours=3))


def raw_row(raw_id: int, **changes: Any) -> dict[str, Any]:
    row = {column.key: None for column in RawUplink.__table__.columns}
    row.update(id=raw_id, received_at=datetime(2026, 12, 7, 9, 30, 1, 250, tzinfo=UTC), source="tts",
               body=b'{"end_device_ids": {}}', status="received", gateways=[])
    row.update(changes)
    return row


RAW_ROWS = [
    raw_row(1),
    raw_row(2, device_id="collar-7", f_port=2, f_cnt=4_294_967_295, payload=b"\x00\x01\xff",
            dedup_key="collar-7:0:1", heard_at=datetime(2026, 12, 7, 12, 0, tzinfo=NAIROBI),
            gateways=[{"id": "gw-north", "rssi": -97, "snr": 7.25}], best_rssi_dbm=-97, best_snr_db=7.25,
            spreading_factor=9, airtime_ms=185, message="position", path_ids={"app": "herd"},
            processed_at=datetime(2026, 12, 7, 9, 30, 2), backfilled=True, session=3),
    raw_row(3, duplicate_of=2, backfilled=False, heard_at_reported=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
            error="bad frame", event="up", content_type="application/json", path_ids={}),
    # JSON bound straight to the serializer (a list, a dict) and through the processor (JSON's null, SQL's NULL)
    raw_row(4, backfilled=0, gateways=[{"id": "gw-süd", "rssi": -120.5, "tags": ["a", None, True, 1e300]}], path_ids=JSON.NULL),
    raw_row(5, gateways=[[], {}], path_ids=null()),
]
POSITIONS = [
    {"device_id": "collar-7", "animal_id": None, "time": datetime(2026, 12, 7, 6, 0, tzinfo=UTC), "lat": -1.25,
     "lon": 36, "message": "position", "raw_uplink_id": 2},
    {"device_id": "collar-7", "animal_id": None, "time": datetime(2026, 12, 7, 10, 0, tzinfo=NAIROBI), "lat": 0,
     "lon": 36.5, "message": "position", "raw_uplink_id": None},
    {"device_id": "collar-7", "animal_id": None, "time": datetime(2026, 12, 7, 6, 0, tzinfo=UTC), "lat": 5.0,
     "lon": 5.0, "message": "position", "raw_uplink_id": 3},  # a time already stored: skipped by both
]
SUMMARIES = [
    {"device_id": "collar-7", "animal_id": None, "time": datetime(2026, 12, 7, 6, 0, tzinfo=UTC), "interval_min": 10,
     "model_version": None, "vedba_mean_mg": 41, "vedba_max_mg": None, "shares_pct": {"resting": 60, "walking": 40},
     "dominant": "resting", "raw_uplink_id": 2},
    {"device_id": "collar-7", "animal_id": None, "time": datetime(2026, 12, 7, 6, 10, tzinfo=UTC), "interval_min": 10,
     "model_version": 2, "vedba_mean_mg": None, "vedba_max_mg": 900, "shares_pct": {}, "dominant": None,
     "raw_uplink_id": None},
]


def stored(db: Database, table: str) -> list[dict[str, tuple[Any, str]]]:
    """Every row of table as SQLite keeps it: each column's value with its SQLite type."""
    with db.write_engine.connect() as connection:
        columns = [row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({table})")]
        typed = ", ".join(f"{name}, typeof({name})" for name in columns)
        rows = connection.exec_driver_sql(f"SELECT {typed} FROM {table} ORDER BY 1").all()
    return [{name: (row[2 * i], row[2 * i + 1]) for i, name in enumerate(columns)} for row in rows]


def test_rows_stored_through_the_driver_are_what_sqlalchemy_stores(tmp_path: Path) -> None:
    statements = [(insert(RawUplink.__table__), RAW_ROWS),
                  (insert_ignoring_conflicts(Position.__table__, "sqlite"), POSITIONS),
                  (insert_ignoring_conflicts(ActivitySummary.__table__, "sqlite"), SUMMARIES)]
    stores = {}
    for way in ("sqlalchemy", "driver"):
        db = open_database(f"sqlite:///{tmp_path / way}.db")
        stores[way] = db
        with db.write() as session:
            session.add(Device(device_id="collar-7", reported_settings={}, session=0))
        counts = count_writes(db)
        with db.write() as session:
            connection = session.connection()
            for statement, rows in statements:
                if way == "driver":
                    driver_rows.execute_many(connection, statement, [dict(row) for row in rows])
                else:
                    connection.execute(statement, [dict(row) for row in rows])
        assert counts["statements"] == len(statements) + 1  # each insert one statement; BEGIN IMMEDIATE
    try:
        for table in ("raw_uplinks", "positions", "activity_summaries"):
            assert stored(stores["driver"], table) == stored(stores["sqlalchemy"], table), table
        positions = stored(stores["driver"], "positions")
        assert [(p["lat"], p["time"]) for p in positions] == [
            ((-1.25, "real"), ("2026-12-07 06:00:00.000000", "text")),
            ((0.0, "real"), ("2026-12-07 07:00:00.000000", "text"))]  # 10:00 in Nairobi
        first, second, _, fourth, fifth = stored(stores["driver"], "raw_uplinks")
        assert second["payload"] == (b"\x00\x01\xff", "blob") and second["best_rssi_dbm"] == (-97.0, "real")
        assert first["path_ids"] == ("null", "text") and second["backfilled"] == (1, "integer")
        assert fourth["gateways"] == ('[{"id": "gw-s\\u00fcd", "rssi": -120.5, "tags": ["a", null, true, 1e+300]}]', "text")
        assert (fourth["path_ids"], fifth["path_ids"]) == (("null", "text"), (None, "null"))
    finally:
        for db in stores.values():
            db.dispose()


def test_an_insert_sqlite_cannot_take_as_compiled_goes_sqlalchemys_way(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'store'}.db")
    try:
        with db.write() as session:
            session.add(Device(device_id="collar-7", reported_settings={}, session=0))
        without_defaults = [{key: value for key, value in row.items() if key not in ("received_at", "status")}
                            for row in RAW_ROWS[:1]]
        with db.write() as session:  # received_at and status left to their defaults, computed per row
            driver_rows.execute_many(session.connection(), insert(RawUplink.__table__), without_defaults)
        (row,) = stored(db, "raw_uplinks")
        assert row["status"] == ("received", "text") and row["received_at"][0].startswith(str(datetime.now(UTC).year))
    finally:
        db.dispose()


def test_collars_updated_through_the_driver_are_what_sqlalchemy_stores(tmp_path: Path) -> None:
    """A batch's collars' changes (`store.changed_rows`): an UPDATE by key, executed many, each row's
    changes the same columns; the rows it matched counted as SQLAlchemy counts them."""
    table = Device.__table__
    statement = update(table).where(table.c.device_id == bindparam("row_key"))
    changes = [
        {"last_seen": datetime(2026, 12, 7, 12, 0, tzinfo=NAIROBI), "last_f_cnt": 12, "last_rssi_dbm": -101,
         "flags": {"low_battery": True}, "row_key": "collar-1"},
        {"last_seen": None, "last_f_cnt": None, "last_rssi_dbm": 3.5, "flags": {}, "row_key": "collar-2"},
        {"last_seen": datetime(2026, 12, 7, 9, 0, tzinfo=UTC), "last_f_cnt": 0, "last_rssi_dbm": None,
         "flags": {}, "row_key": "no-such-collar"},
    ]
    stores, matched = {}, {}
    for way in ("sqlalchemy", "driver"):
        db = open_database(f"sqlite:///{tmp_path / way}.db")
        stores[way] = db
        with db.write() as session:
            session.add_all([Device(device_id=f"collar-{n}", reported_settings={}, session=0) for n in (1, 2)])
        with db.write() as session:
            rows = [dict(row) for row in changes]
            if way == "driver":
                matched[way] = driver_rows.execute_many(session.connection(), statement, rows).rowcount
            else:
                matched[way] = session.connection().execute(statement, rows).rowcount
    try:
        assert stored(stores["driver"], "devices") == stored(stores["sqlalchemy"], "devices")
        assert matched == {"sqlalchemy": 2, "driver": 2}
        first = stored(stores["driver"], "devices")[0]
        assert first["last_seen"] == ("2026-12-07 09:00:00.000000", "text")
        assert first["last_rssi_dbm"] == (-101.0, "real") and first["flags"] == ('{"low_battery": true}', "text")
    finally:
        for db in stores.values():
            db.dispose()


def test_rows_of_changing_columns_go_in_in_order_one_statement_a_run(tmp_path: Path) -> None:
    """A batch's held rows (`execute_runs`): consecutive rows naming the same columns go in by one
    executemany, a row naming others starts the next, and every row is stored as bound, in order."""
    db = open_database(f"sqlite:///{tmp_path / 'store'}.db")
    try:
        rows = [raw_row(1), raw_row(2), {**raw_row(3), "error": "bad frame"}, raw_row(4), raw_row(5)]
        del rows[2]["event"]  # a row naming one column fewer than its neighbours: a run of its own
        rows[3].pop("event")
        rows[4].pop("event")
        with db.write() as session:
            connection = session.connection()
            writes = count_writes(db)
            runs = list(driver_rows.execute_runs(connection, insert(RawUplink.__table__), rows))
            assert writes["statements"] == 2
        assert [count for count, _ in runs] == [2, 3]
        assert [row["id"][0] for row in stored(db, "raw_uplinks")] == [1, 2, 3, 4, 5]
        assert stored(db, "raw_uplinks")[2]["error"] == ("bad frame", "text")
    finally:
        db.dispose()
