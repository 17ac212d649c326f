"""The bridge's store and settings: embedded SQLite shared by webhook, demo and dashboard at once."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bridge_builders as b
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, create_engine, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator

from lora_bridge.adapters.webhook import create_app
from lora_bridge.errors import InvalidGeography, UnknownAnimal
from lora_bridge.server import serve_app_in_thread
from lora_bridge.service import open_bridge
from lora_bridge.settings import load_settings
from lora_bridge.store import Base
from lora_bridge.store.utc import UTCDateTime, as_utc, sqlite_text

RESERVE = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {"kind": "boundary", "name": "Tembo reserve"},
         "geometry": {"type": "Polygon", "coordinates": [[[37.0, -2.0], [38.0, -2.0], [38.0, -3.0], [37.0, -2.0]]]}},
        {"type": "Feature", "properties": {"kind": "farmland", "name": "Maize north"},
         "geometry": {"type": "Polygon", "coordinates": [[[37.1, -2.1], [37.2, -2.1], [37.2, -2.2], [37.1, -2.1]]]}},
        {"type": "Feature", "properties": {"kind": "gateway", "name": "gw-north"},
         "geometry": {"type": "Point", "coordinates": [37.5, -2.2]}},
    ],
}


@pytest.fixture
def bridge(store_url):
    with b.fresh_bridge(store_url) as bridge:
        yield bridge


def test_embedded_store_is_a_wal_sqlite_file_that_a_second_process_handle_reads(sqlite_url):
    with open_bridge(sqlite_url) as webhook_side:
        webhook_side.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        with webhook_side.db.read() as session:
            mode = session.execute(text("PRAGMA journal_mode")).scalar()
        with open_bridge(sqlite_url) as dashboard_side:
            positions = dashboard_side.latest_positions(viewer=b.RANGER)

    assert mode == "wal"
    assert [(p.device_id, p.time) for p in positions] == [("collar-01", b.T0)]
    assert positions[0].time.tzinfo is not None


def test_default_settings_run_embedded_and_mask_secrets(monkeypatch):
    monkeypatch.delenv("TEMBO_DATABASE_URL", raising=False)
    settings = load_settings(
        webhook_secret="s3cret-webhook", network_server_api_key="NNSXS.SECRET",
        database_url="postgresql+psycopg://tembo:hunter2@db/tembo",
    )

    shown = repr(settings)

    assert load_settings().database_url == "sqlite:///var/tembo.db"
    assert "s3cret-webhook" not in shown and "NNSXS.SECRET" not in shown and "hunter2" not in shown
    assert "postgresql+psycopg://tembo:***@db/tembo" in shown


def test_settings_come_from_toml_and_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "tembo.toml"
    config.write_text('[bridge]\nport = 8900\nwebhook_secret = "from-file"\nrules_every_s = 7200\n')
    monkeypatch.setenv("TEMBO_PORT", "8901")

    settings = load_settings(config)

    assert (settings.port, settings.rules_every_s) == (8901, 7200)
    assert settings.webhook_secret.get_secret_value() == "from-file"


def test_reserve_geography_round_trips_through_the_store(bridge):
    assert bridge.load_geography(RESERVE) == 3

    stored = bridge.geography()

    assert stored == RESERVE
    assert bridge.load_geography({"type": "FeatureCollection", "features": RESERVE["features"][:1]}) == 1
    assert [f["properties"]["kind"] for f in bridge.geography()["features"]] == ["boundary"]


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "Feature"},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                    "geometry": {"type": "Point", "coordinates": [37, -2]}}]},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "road"},
                                                    "geometry": {"type": "Circle", "coordinates": [37, -2]}}]},
    ],
)
def test_geography_without_kinds_or_geometry_is_refused_and_old_one_kept(bridge, bad):
    bridge.load_geography(RESERVE)

    with pytest.raises(InvalidGeography):
        bridge.load_geography(bad)

    assert bridge.geography() == RESERVE


def test_tracks_since_a_time_and_for_chosen_animals(bridge):
    for i, device in enumerate(("collar-01", "collar-02")):
        bridge.register_animal(device, f"Elephant {i + 1}")
        fixes = tuple((dt, -2.5 + dt / 100000, 37.5) for dt in (0, 1800, 3600))
        bridge.ingest_tts_uplink(b.tts_uplink(b.positions(fixes=fixes), device_id=device, f_cnt=1))
    first = bridge.animals(viewer=b.RANGER)[0]

    recent = bridge.tracks(since=b.T0 + timedelta(minutes=30), viewer=b.RANGER)
    chosen = bridge.tracks(animal_ids=[first.animal_id], viewer=b.RANGER)

    assert {len(track) for track in recent.values()} == {2}
    assert list(chosen) == [first.animal_id]
    assert [p.time for p in chosen[first.animal_id]] == [b.T0 + timedelta(seconds=s) for s in (0, 1800, 3600)]


def test_status_fix_age_dates_the_position_and_a_saturated_age_drops_it(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(fix_age_s=600), f_cnt=1))
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, lat=-2.9, fix_age_s=0xFFFF), f_cnt=2))

    ((position,),) = bridge.tracks(viewer=b.RANGER).values()
    assert position.time == b.T0 - timedelta(minutes=10)


def test_registering_an_animal_renames_the_collar_placeholder(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
    placeholder = bridge.animals(viewer=b.RANGER)[0]

    named = bridge.register_animal("collar-01", "Tembo Kubwa", species="Loxodonta cyclotis", sex="male")

    assert placeholder.name == "collar-01"
    assert (named.animal_id, named.name, named.species, named.sex) == (
        placeholder.animal_id, "Tembo Kubwa", "Loxodonta cyclotis", "male"
    )
    assert len(bridge.animals(viewer=b.RANGER)) == 1
    with pytest.raises(UnknownAnimal):
        bridge.activity("no-such-animal", viewer=b.RANGER)


def test_counts_name_what_the_demo_prints(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
    bridge.ingest_tts_uplink(b.tts_uplink(b.activity(), f_cnt=2))
    bridge.ingest_tts_uplink(b"nope")

    counts = bridge.counts()

    assert {k: counts[k] for k in ("uplinks_stored", "dead_letter", "animals", "positions",
                                   "activity_summaries", "alerts")} == {
        "uplinks_stored": 3, "dead_letter": 1, "animals": 1, "positions": 1, "activity_summaries": 1, "alerts": 0,
    }


def test_concurrent_webhook_posts_and_dashboard_reads_lose_nothing(bridge, port):
    collars = [f"collar-{i:02d}" for i in range(8)]
    bodies = {
        device: [
            b.tts_uplink(b.status(time_s=b.T0_S + 3600 * n, lat=-2.5 - n / 1000), device_id=device, f_cnt=n + 1,
                         gateways=("gw-a", "gw-b")[: 1 + n % 2])
            for n in range(6)
        ]
        for device in collars
    }
    errors: list[str] = []

    def network_server(device: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for body in bodies[device] + bodies[device][:2]:  # the last two are retried deliveries
                reply = client.post("/uplinks/tts", content=body, headers={"X-Tembo-Secret": b.SECRET})
                if reply.status_code != 200:
                    errors.append(f"{device}: {reply.status_code} {reply.text}")

    def dashboard() -> None:
        for _ in range(20):
            bridge.animals(viewer=b.RANGER)
            bridge.open_alerts(viewer=b.RANGER)

    with serve_app_in_thread(create_app(bridge), port=port) as server:
        threads = [threading.Thread(target=network_server, args=(d,)) for d in collars]
        threads.append(threading.Thread(target=dashboard))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    counts = bridge.counts()
    assert (counts["uplinks_stored"], counts["duplicates"], counts["positions"]) == (48, 16, 48)


def test_received_at_in_nanoseconds_is_read_as_utc(bridge):
    body = json.loads(b.tts_uplink(b.status(), f_cnt=1))
    body["uplink_message"]["received_at"] = "2026-03-01T09:00:00.123456789+03:00"

    bridge.ingest_tts_uplink(json.dumps(body).encode())

    assert bridge.animals(viewer=b.RANGER)[0].last_seen == datetime(2026, 3, 1, 6, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite"])
def test_every_table_compiles_for_both_engines(dialect_name):
    dialect = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}[dialect_name]
    ddl = [str(CreateTable(table).compile(dialect=dialect)) for table in Base.metadata.sorted_tables]
    ddl += [str(CreateIndex(index).compile(dialect=dialect))
            for table in Base.metadata.sorted_tables for index in table.indexes]

    assert {t.name for t in Base.metadata.sorted_tables} >= {
        "raw_uplinks", "dead_letters", "devices", "animals", "positions", "activity_summaries", "alerts",
        "alert_events", "downlinks", "geography_features",
    }
    if dialect_name == "postgresql":
        assert any("TIMESTAMP WITH TIME ZONE" in statement for statement in ddl)
        assert any("BYTEA" in statement for statement in ddl)


def test_technician_sees_collar_health_and_frame_loss(bridge):
    for f_cnt in (1, 2, 3, 6):  # frames 4 and 5 never arrived
        bridge.ingest_tts_uplink(
            b.tts_uplink(b.status(time_s=b.T0_S + 3600 * f_cnt, battery_mv=3700), f_cnt=f_cnt,
                         gateways=("gw-a", "gw-b"))
        )
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600 * 6, battery_mv=3700), f_cnt=6))

    (device,) = bridge.devices()

    assert (device.device_id, device.last_f_cnt, device.uplinks_received, device.frame_loss_pct) == (
        "collar-01", 6, 4, 33.3
    )
    assert (device.battery_mv, device.fw_version, device.reset_cause, device.last_rssi_dbm) == (
        3700, "1.2.3", "power_on", -100.0
    )
    assert device.flags["tracking"] is False and device.network == "tts"


def test_frame_counters_use_all_32_bits(bridge):
    result = bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=2**32 - 1))
    too_big = bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=2**32))

    assert result.status == "processed" and bridge.devices()[0].last_f_cnt == 2**32 - 1
    assert too_big.malformed and "frame counter" in too_big.reason


ODD_TIMES = [
    datetime(2026, 3, 1, 6, 0, 0, tzinfo=UTC),  # no microseconds: still six digits kept
    datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3))),  # an offset: kept as UTC
    datetime(2026, 12, 31, 23, 59, 59, 999999),  # naive: taken as UTC
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a year of three digits, padded
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


def test_a_time_is_kept_in_sqlite_exactly_as_before_and_read_back_as_the_same_utc_instant(tmp_path):
    """Every time a collar's uplink brings is written on SQLite in one step; the text kept is
    SQLAlchemy's SQLite DATETIME storage format in UTC, as stores written before hold it, and it
    reads back as the same instant, timezone-aware UTC."""
    engine = create_engine(f"sqlite:///{tmp_path / 'times.db'}")
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    table.metadata.create_all(engine)
    usual = sqlite.DATETIME().bind_processor(sqlite.dialect())
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": i, "at": at} for i, at in enumerate(ODD_TIMES)])
        connection.execute(table.insert().values(id=len(ODD_TIMES), at=None))
        kept = [row[0] for row in connection.exec_driver_sql("SELECT at FROM times ORDER BY id")]
        read = list(connection.execute(select(table.c.at).order_by(table.c.id)).scalars())

    assert kept == [usual(as_utc(at).replace(tzinfo=None)) for at in ODD_TIMES] + [None]
    assert kept[0] == "2026-03-01 06:00:00.000000" and kept[1] == "2026-03-01 06:00:00.123456"
    assert read == [as_utc(at) for at in ODD_TIMES] + [None]
    assert all(at.tzinfo is UTC for at in read[:-1])
    engine.dispose()


def test_a_time_another_program_wrote_with_an_offset_or_without_a_fraction_reads_as_utc(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'times.db'}")
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO times (id, at) VALUES (1, '2026-03-01 06:00:00'), (2, '2026-03-01T09:00:00+03:00')")
        read = list(connection.execute(select(table.c.at).order_by(table.c.id)).scalars())

    assert read == [datetime(2026, 3, 1, 6, tzinfo=UTC), datetime(2026, 3, 1, 6, tzinfo=UTC)]
    engine.dispose()


def _two_step_read(dialect) -> Any:
    """How a UTCDateTime was read before SQLite's text was read in one step: SQLAlchemy's reading of the
    dialect's DATETIME, then UTCDateTime.process_result_value."""
    return TypeDecorator.result_processor(UTCDateTime().dialect_impl(dialect), dialect, None)


def _what_reading_gives(read, text: str | None) -> tuple[Any, ...]:
    try:
        value = read(text)
    except Exception as error:  # the same refusal both ways
        return ("refused", type(error))
    return ("read", value, None if value is None else (value.tzinfo is UTC, value.fold))


OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
INSTANTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
# Every text a time column of a SQLite store may hold: the bridge's own writes, SQLAlchemy's, a date
# alone, and what another program (sqlite3's CLI, a script, a spreadsheet's import) might have written.
STORED_TIMES = st.one_of(
    st.builds(lambda at: sqlite_text(at), INSTANTS),
    st.builds(lambda at, tz: sqlite_text(at.replace(tzinfo=tz)), INSTANTS, OFFSETS),
    st.builds(lambda at: sqlite.DATETIME().bind_processor(sqlite.dialect())(at), INSTANTS),
    st.builds(lambda at, spec, sep: at.isoformat(sep, spec),
              INSTANTS, st.sampled_from(["hours", "minutes", "seconds", "milliseconds", "microseconds"]),
              st.sampled_from([" ", "T"])),
    st.builds(lambda at, tz: at.replace(tzinfo=tz).isoformat(" "), INSTANTS, OFFSETS | st.just(UTC)),
    st.builds(lambda at: at.isoformat("T", "seconds") + "Z", INSTANTS),
    st.builds(lambda at: at.date().isoformat(), INSTANTS),
    st.builds(lambda at: at.strftime("%Y%m%dT%H%M%S"), st.datetimes(min_value=datetime(1000, 1, 1))),
    st.sampled_from(["2026-03-01 06:00:00.1234", "2026-03-01 24:00:00", "yesterday", "", "2026-02-30 01:00:00"]),
)


@settings(max_examples=3_000, deadline=None)
@given(text=STORED_TIMES | st.none())
def test_every_time_a_sqlite_store_may_hold_reads_back_as_it_did_before_the_one_step_read(text):
    """Times are read from SQLite's text in one step now (the rules read about a thousand a batch); a
    researcher's store written by any version of the bridge, or touched by another program, reads back
    the same instants, aware UTC, and refuses the same texts."""
    dialect = sqlite.dialect()
    one_step = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)

    assert _what_reading_gives(one_step, text) == _what_reading_gives(_two_step_read(dialect), text)


def test_a_store_s_times_read_through_sqlalchemy_are_the_two_step_reads_of_the_text_kept(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'times.db'}")
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    table.metadata.create_all(engine)
    two_steps = _two_step_read(sqlite.dialect())

    @settings(max_examples=200, deadline=None)
    @given(texts=st.lists(STORED_TIMES.filter(lambda text: _what_reading_gives(two_steps, text)[0] == "read")
                          | st.none(), max_size=30))
    def reads_as_before(texts):
        with engine.begin() as connection:
            connection.execute(table.delete())
            for i, text in enumerate(texts):  # the text as it is, as another program writes it
                connection.exec_driver_sql("INSERT INTO times (id, at) VALUES (?, ?)", (i, text))
            read = list(connection.execute(select(table.c.at).order_by(table.c.id)).scalars())

        assert [_what_reading_gives(lambda at: at, at) for at in read] == [
            _what_reading_gives(two_steps, text) for text in texts]

    reads_as_before()
    engine.dispose()


def test_the_rules_reading_a_herds_fixes_from_sqlite_convert_each_time_in_one_python_call(tmp_path):
    """The rules of a batch read about a thousand times from SQLite; each is one Python call now (the
    parse and the zone in one C call), not SQLAlchemy's parse and then the zone added in a second
    call. Counted, not timed: the calls of reading 3,000 rows less those of reading 1,000."""
    engine = create_engine(f"sqlite:///{tmp_path / 'times.db'}")
    table = Table("times", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    table.metadata.create_all(engine)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": i, "at": start + timedelta(minutes=i)} for i in range(3_000)])
        read = select(table.c.at).where(table.c.id < bindparam("rows"))
        connection.execute(read, {"rows": 1}).all()  # compiled once before counting

        def python_calls(rows: int) -> tuple[int, list[datetime]]:
            calls = 0

            def count(frame: Any, event: str, arg: Any) -> None:
                nonlocal calls
                calls += event == "call"

            sys.setprofile(count)
            try:
                rows_read = connection.execute(read, {"rows": rows}).all()
            finally:
                sys.setprofile(None)
            return calls, [at for (at,) in rows_read]

        few, _ = python_calls(1_000)
        many, times = python_calls(3_000)

    assert times == [start + timedelta(minutes=i) for i in range(3_000)] and all(t.tzinfo is UTC for t in times)
    assert (many - few) / 2_000 < 1.5  # about one: the one-step read; 2 and more when two steps
    engine.dispose()


@settings(max_examples=2_000, deadline=None)
@given(at=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       zone=st.none() | st.just(UTC) | OFFSETS)
def test_every_time_an_uplink_brings_is_kept_in_sqlite_as_sqlalchemy_kept_it(at, zone):
    """The text a time is kept as on SQLite is formatted from its fields now; it is the text SQLAlchemy's
    SQLite DATETIME writes for the same UTC instant, so stores written before and after read alike."""
    at = at.replace(tzinfo=zone)
    usual = sqlite.DATETIME().bind_processor(sqlite.dialect())

    assert sqlite_text(at) == usual(as_utc(at).replace(tzinfo=None))
