"""The battery trend of collars with weeks of history: the store sums each collar's readings, the rules
read one row a collar (two weeks of hourly statuses were 336 rows a collar, each turned into a Python
datetime, at every status of every collar), and the line is numpy's least squares through the same
readings. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bridge_builders as b
import numpy as np
import pytest
from sqlalchemy import column, create_engine, event, insert, select, table

from lora_bridge.domain import rules
from lora_bridge.domain.rules_profiles import BatteryProfile
from lora_bridge.store import migrate
from lora_bridge.store.tables import BatteryReading, Device
from lora_bridge.store.utc import UTCDateTime

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def herd_with_history(bridge, collars: int, days: int) -> dict[str, list[tuple[datetime, int]]]:
    """Hourly readings of `collars` collars over `days` days, each pack draining at its own pace (with a
    few millivolts of noise); {collar: [(time, mV), ...]} as stored."""
    rng = np.random.default_rng(7)
    readings = {}
    for c in range(collars):
        drain = 5.0 + 3.0 * c  # mV a day
        readings[f"collar-{c:02d}"] = [
            (NOW - timedelta(hours=h), int(3950 - drain * (days * 24 - h) / 24 + rng.integers(-4, 5)))
            for h in range(days * 24)
        ]
    with bridge.db.write() as session:
        session.execute(insert(Device.__table__), [{"device_id": d, "reported_settings": {}} for d in readings])
        session.execute(insert(BatteryReading.__table__), [
            rules.reading_row(d, t, mv) for d, rows in readings.items() for t, mv in rows])
    return readings


def numpy_line(rows: list[tuple[datetime, int]], since: datetime) -> tuple[int, float, float]:
    """(readings, slope in mV a day, mV at `since`) of numpy's least-squares line through the readings
    from since on: the oracle."""
    kept = sorted((t, mv) for t, mv in rows if t >= since)
    days = np.array([(t - since).total_seconds() / 86400 for t, _ in kept])
    slope, intercept = np.polyfit(days, np.array([mv for _, mv in kept], dtype=float), 1)
    return len(kept), float(slope), float(intercept)


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_ranger_gets_the_battery_forecast_of_a_collar_with_two_weeks_of_history_from_one_row(store_url):
    with b.fresh_bridge(store_url) as bridge:
        readings = herd_with_history(bridge, collars=3, days=14)
        # windows of their own: each collar's status came at another time
        windows = {d: NOW - timedelta(days=14) + timedelta(hours=5 * i) for i, d in enumerate(readings)}
        fetched = []

        def count_reads(conn, cursor, statement, parameters, context, executemany):
            if "battery_readings" in statement:
                fetched.append(statement)

        event.listen(bridge.db.read_engine, "after_cursor_execute", count_reads)
        with bridge.db.read() as session:
            sums = rules.reading_sums(session, windows)
        event.remove(bridge.db.read_engine, "after_cursor_execute", count_reads)
    assert len(fetched) == 1, "three collars' sums in one statement"
    for device_id, since in windows.items():
        count, slope, intercept = numpy_line(readings[device_id], since)
        got = sums[device_id]
        assert got.count == count == len([t for t, _ in readings[device_id] if t >= since])
        got_slope, at_origin = got.line()  # counted from the earliest window's start
        assert got_slope == pytest.approx(slope, rel=1e-9, abs=1e-9)
        assert at_origin + got_slope * (since - got.origin).total_seconds() / 86400 == pytest.approx(intercept, rel=1e-9)
        assert got.latest_mv == readings[device_id][0][1]  # the newest reading


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_the_forecast_dates_are_those_of_the_least_squares_line_through_the_window(store_url):
    profile = BatteryProfile()
    with b.fresh_bridge(store_url) as bridge:
        readings = herd_with_history(bridge, collars=1, days=14)
        with bridge.db.read() as session:
            device = session.get(Device, "collar-00")
            trend = rules.battery_trend(session, device, NOW, profile)
    since = NOW - timedelta(days=profile.window_days)
    count, slope, intercept = numpy_line(readings["collar-00"], since)
    assert trend["readings"] == count and trend["slope_mv_per_day"] == round(slope, 2)
    empty_on = since + timedelta(days=(rules.EMPTY_MV - intercept) / slope)
    assert abs(datetime.fromisoformat(trend["empty_on"]) - empty_on) < timedelta(seconds=1)


def test_collars_past_a_statement_s_count_are_summed_in_several_and_each_counted_once(sqlite_url, monkeypatch):
    monkeypatch.setattr(rules, "SUMS_AT_ONCE", 4)
    with b.fresh_bridge(sqlite_url) as bridge:
        readings = herd_with_history(bridge, collars=7, days=3)  # summed as 4 + 3
        windows = {d: NOW - timedelta(days=2, hours=i) for i, d in enumerate(readings)}
        with bridge.db.read() as session:
            together = rules.reading_sums(session, windows)
            alone = {d: rules.reading_sums(session, {d: since})[d] for d, since in windows.items()}
    assert sorted(together) == sorted(alone) and len(together) == 7
    for device_id, sums in together.items():  # the same line, whatever origin the sums were counted from
        assert sums.count == alone[device_id].count and sums.latest_mv == alone[device_id].latest_mv
        slope, at_origin = sums.line()
        alone_slope, alone_at_origin = alone[device_id].line()
        shift = (alone[device_id].origin - sums.origin).total_seconds() / 86400
        assert slope == pytest.approx(alone_slope, rel=1e-9)
        assert at_origin + slope * shift == pytest.approx(alone_at_origin, rel=1e-9)


def test_a_collar_without_readings_in_its_window_has_no_trend(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        herd_with_history(bridge, collars=1, days=2)
        with bridge.db.read() as session:
            assert rules.reading_sums(session, {"collar-00": NOW + timedelta(days=1)}) == {}


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_readings_stored_before_the_upgrade_are_summed_as_the_ones_written_after(engine, request, tmp_path):
    """A store upgraded with two weeks of readings (some at fractions of a second): each reading gets its
    seconds since 1970 as the bridge writes them for a new one, and its trend is numpy's line."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if engine == "sqlite" else request.getfixturevalue("postgres_url")
    store = create_engine(url)
    migrate.upgrade(store, "0023_handovers_carry_bodies")
    rows = [(NOW - timedelta(hours=h, microseconds=250_001 * (h % 3)), 3900 - h // 3) for h in range(14 * 24)]
    readings = table("battery_readings", column("device_id"), column("time", UTCDateTime()), column("battery_mv"))
    with store.begin() as connection:
        connection.execute(insert(Device.__table__), [{"device_id": "collar-00", "reported_settings": {}}])
        connection.execute(insert(readings), [{"device_id": "collar-00", "time": t, "battery_mv": mv} for t, mv in rows])
    migrate.upgrade(store)
    with store.connect() as connection:
        stored = dict(connection.execute(select(BatteryReading.time, BatteryReading.epoch_s)).all())
    store.dispose()
    assert len(stored) == len(rows)
    assert all(epoch_s == pytest.approx(rules.reading_row("collar-00", t, 0)["epoch_s"], abs=1e-6)
               for t, epoch_s in stored.items())

    since = NOW - timedelta(days=7)
    with b.fresh_bridge(url) as bridge, bridge.db.read() as session:
        sums = rules.reading_sums(session, {"collar-00": since})["collar-00"]
    count, slope, intercept = numpy_line(rows, since)
    assert sums.count == count and sums.line()[0] == pytest.approx(slope, rel=1e-9)
