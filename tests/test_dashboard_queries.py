"""The service calls behind the dashboard's panels: latest positions from the collar's time index,
tracks thinned by the bridge for a large herd, and alerts that say who has them and what the ranger
noted. Stores are filled through the bridge's ingest with codec-built TTS uplinks."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from sqlalchemy import event, select

from lora_bridge import queries
from lora_bridge.access import Viewer
from lora_bridge.errors import InvalidTransition
from lora_bridge.service import open_bridge
from lora_bridge.store.tables import ActivitySummary, Animal, Position


@pytest.fixture
def bridge(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        yield bridge


def ingest(bridge, message, f_cnt, device_id="collar-01"):
    result = bridge.ingest_tts_uplink(b.tts_uplink(message, device_id=device_id, f_cnt=f_cnt))
    assert result.ok, result


def test_map_shows_each_collars_newest_fix_even_when_an_older_one_arrived_last(bridge):
    bridge.register_animal("collar-01", "Amani")
    newest = ((0, -2.40, 37.40),)
    ingest(bridge, b.positions(b.T0_S + 7200, newest), 1)
    older = ((0, -2.50, 37.50), (600, -2.49, 37.49))
    ingest(bridge, b.positions(b.T0_S, older), 2)  # stored after the newest: a late store-and-forward batch
    (position,) = bridge.latest_positions(viewer=b.RANGER)
    assert (position.name, position.lat, position.lon) == (
        "Amani",
        pytest.approx(-2.40, abs=1e-4),
        pytest.approx(37.40, abs=1e-4),
    )
    assert position.time == b.T0 + timedelta(hours=2)
    (animal,) = bridge.animals(viewer=b.RANGER)
    assert (animal.lat, animal.position_time) == (pytest.approx(-2.40, abs=1e-4), b.T0 + timedelta(hours=2))


def test_latest_position_is_found_through_the_collar_time_index_not_a_scan(sqlite_url):
    bridge = open_bridge(sqlite_url)  # SQLite's query plan; PostgreSQL takes the same index
    query = select(Animal.id, Position.time).join(
        Position, Position.id == queries.newest_position_id(Animal.device_id)
    )
    with bridge.db.read() as session:
        sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        plan = " | ".join(
            str(row[-1]) for row in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
        )
        collar_time = _index_on(session, "positions", ["device_id", "time"])
    assert collar_time is not None  # the fixes' unique key (collar, time)
    assert f"{collar_time} (device_id=?)" in plan, plan
    assert "SCAN positions" not in plan, plan
    bridge.close()


def _index_on(session, table: str, columns: list[str]) -> str | None:
    """The name of table's index on exactly columns, in that order (SQLite), or None."""
    connection = session.connection()
    for row in connection.exec_driver_sql(f"PRAGMA index_list({table})"):
        name = row[1]
        if [info[2] for info in connection.exec_driver_sql(f"PRAGMA index_info('{name}')")] == columns:
            return name
    return None


def test_a_long_track_comes_thinned_evenly_keeping_its_first_and_newest_fix(bridge):
    bridge.register_animal("collar-01", "Amani")
    f_cnt = 0
    for batch in range(20):  # 100 fixes, five per positions uplink, ten minutes apart
        fixes = tuple((600 * k, -2.5 + 0.001 * (5 * batch + k), 37.5) for k in range(5))
        f_cnt += 1
        ingest(bridge, b.positions(b.T0_S + 3000 * batch, fixes), f_cnt)
    (full,) = bridge.tracks(viewer=b.RANGER).values()
    assert len(full) == 100
    (thin,) = bridge.tracks(max_points=10, viewer=b.RANGER).values()
    assert len(thin) == 10
    assert (thin[0].time, thin[-1].time) == (full[0].time, full[-1].time)
    assert [p.time for p in thin] == sorted(p.time for p in thin)
    gaps = {(later.time - earlier.time) for earlier, later in zip(thin, thin[1:], strict=False)}
    assert max(gaps) - min(gaps) <= timedelta(minutes=10)  # evenly spread, within one fix
    (window,) = bridge.tracks(since=full[10].time, until=full[19].time, viewer=b.RANGER).values()
    assert [p.time for p in window] == [p.time for p in full[10:20]]
    with pytest.raises(ValueError, match="max_points"):
        bridge.tracks(max_points=0, viewer=b.RANGER)


def test_ranger_assigns_an_alert_and_the_resolved_list_keeps_the_note(bridge):
    bridge.register_animal("collar-01", "Kito")
    ingest(bridge, b.alert("mortality"), 1)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert alert.assigned_to is None
    bridge.assign_alert(alert.alert_id, "Juma", Viewer("amina", "ranger"))
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert alert.assigned_to == "Juma"
    assert [e.action for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER)][-1] == "assigned"
    bridge.resolve_alert(alert.alert_id, Viewer("juma", "ranger"), "false_alarm", "Lying in the shade by the dam")
    (resolved,) = bridge.alerts(("resolved",), viewer=b.RANGER)
    assert (resolved.verdict, resolved.note, resolved.assigned_to) == (
        "false_alarm",
        "Lying in the shade by the dam",
        "Juma",
    )
    with pytest.raises(InvalidTransition, match="only open alerts"):
        bridge.assign_alert(alert.alert_id, "Baraka", Viewer("amina", "ranger"))


def test_a_note_left_with_only_spaces_is_no_note_in_the_resolved_list_or_the_history(bridge):
    bridge.register_animal("collar-01", "Kito")
    ingest(bridge, b.alert("mortality"), 1)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(alert.alert_id, Viewer("amina", "ranger"), "unknown", "   ")
    (resolved,) = bridge.alerts(("resolved",), viewer=b.RANGER)
    assert resolved.note is None
    assert "note" not in bridge.alert_events(alert.alert_id, viewer=b.RANGER)[-1].detail
    ingest(bridge, b.alert("mortality", seq=2, time_s=b.T0_S + 3600), 2)
    (second,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(second.alert_id, Viewer("amina", "ranger"), "true", "  carcass by the dam \n")
    assert bridge.alert(second.alert_id, viewer=b.RANGER).note == "carcass by the dam"


def test_map_as_of_a_moment_shows_each_animals_position_then_and_the_alerts_open_then(bridge):
    bridge.register_animal("collar-01", "Kito")
    fixes = tuple((3600 * h, -2.5 + 0.01 * h, 37.5) for h in range(5))  # 06:00 .. 10:00
    ingest(bridge, b.positions(b.T0_S, fixes), 1)
    ingest(bridge, b.alert("mortality", time_s=b.T0_S + 3 * 3600, lat=-2.47, lon=37.5), 2)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.acknowledge_alert(alert.alert_id, Viewer("amina", "ranger"))
    bridge.resolve_alert(alert.alert_id, Viewer("amina", "ranger"), "true", "Found by the dam")

    at_0830 = b.T0 + timedelta(hours=2, minutes=30)
    (position,) = bridge.positions_at(at_0830, viewer=b.RANGER)
    assert (position.time, position.lat) == (b.T0 + timedelta(hours=2), pytest.approx(-2.48, abs=1e-4))
    assert bridge.alerts_at(at_0830, viewer=b.RANGER) == []  # not raised yet
    (then,) = bridge.alerts_at(b.T0 + timedelta(hours=4), viewer=b.RANGER)  # raised, resolved only later
    assert (then.alert_id, then.state, then.verdict, then.resolved_by) == (alert.alert_id, "new", None, None)
    assert bridge.alerts_at(viewer=b.RANGER) == []  # now: resolved
    (track,) = bridge.tracks(since=b.T0, until=at_0830, viewer=b.RANGER).values()
    assert [p.time for p in track] == [b.T0 + timedelta(hours=h) for h in range(3)]
    (newest,) = bridge.positions_at(None, viewer=b.RANGER)
    assert newest.time == b.T0 + timedelta(hours=4)


def test_a_delayed_role_sees_no_more_of_a_moment_than_its_delay_allows(sqlite_url):
    from access_builders import NOW, exact_places, live_bridge, viewer

    with live_bridge(sqlite_url) as bridge:
        exact = exact_places(bridge)
        for username in ("rose", "kiosk"):
            who = viewer(username)
            for moment in (NOW, NOW - timedelta(hours=6), NOW - timedelta(hours=40)):
                latest = {p.animal_id: p for p in bridge.latest_positions(viewer=who)}
                at = bridge.positions_at(moment, viewer=who)
                assert at, (username, moment)
                for position in at:
                    assert position.time <= min(moment, latest[position.animal_id].time), (username, moment)
                    assert (round(position.lat, 5), round(position.lon, 5)) not in exact
                may_see = {a.alert_id for a in bridge.alerts(viewer=who)}
                for alert in bridge.alerts_at(moment, viewer=who):
                    assert alert.alert_id in may_see, (username, moment)
                    assert alert.lat is None or (round(alert.lat, 5), round(alert.lon, 5)) not in exact
        # Tusker's mortality alert was raised 30 minutes ago: a ranger sees it open now, a researcher not yet.
        assert "Tusker" in [a.name for a in bridge.alerts_at(NOW, viewer=viewer("amina"))]
        assert "Tusker" not in [a.name for a in bridge.alerts_at(NOW, viewer=viewer("rose"))]


def test_an_animals_page_reads_its_collar_alone_with_the_same_health_as_the_fleets(bridge):
    for device_id, name in (("collar-01", "Amani"), ("collar-02", "Baraka")):
        bridge.register_animal(device_id, name)
    ingest(bridge, b.positions(b.T0_S, ((0, -2.40, 37.40),)), 1, "collar-01")
    ingest(bridge, b.positions(b.T0_S + 600, ((0, -2.41, 37.41),)), 4, "collar-01")  # frames 2 and 3 lost
    ingest(bridge, b.positions(b.T0_S, ((0, -2.50, 37.50),)), 7, "collar-02")
    fleet = {d.device_id: d for d in bridge.devices()}
    (alone,) = bridge.devices(["collar-01"])
    assert alone == fleet["collar-01"]
    assert (alone.name, alone.uplinks_received, alone.uplinks_lost) == ("Amani", 2, 2)
    assert bridge.devices(["no-such-collar"]) == []


def test_one_collars_health_is_counted_through_its_own_uplinks_index_not_the_fleets(bridge):
    captured = []
    with bridge.db.read() as session:
        connection = session.connection()

        def explain(conn, cursor, statement, parameters, context, executemany):
            if "raw_uplinks" in statement and "GROUP BY" in statement:
                plan = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)  # SQLite's own cursor
                captured.append(plan.fetchall())

        event.listen(connection, "before_cursor_execute", explain)
        try:
            queries.device_views(session, ["collar-01"])
        finally:
            event.remove(connection, "before_cursor_execute", explain)
    (plan,) = captured
    details = " | ".join(str(row[-1]) for row in plan)
    # Only that collar's entries of the index, not a range over every collar's (device_id>?).
    assert "ix_raw_uplinks_device" in details and "(device_id=?)" in details, details


def test_an_alerts_evidence_reads_the_behaviour_of_its_window_alone_through_the_animals_time_index(bridge):
    amani = bridge.register_animal("collar-01", "Amani")
    for hour in range(12):  # a summary an hour for half a day
        ingest(bridge, b.activity(b.T0_S + 3600 * hour), hour + 1)
    every = bridge.activity(amani.animal_id, viewer=b.RANGER)
    since, until = every[3].time, every[7].time
    window = bridge.activity(amani.animal_id, since, viewer=b.RANGER, until=until)
    assert [s.time for s in window] == [s.time for s in every if since <= s.time <= until] and len(window) == 5
    query = select(ActivitySummary).where(
        ActivitySummary.animal_id == int(amani.animal_id), ActivitySummary.time >= since, ActivitySummary.time <= until
    ).order_by(ActivitySummary.time)
    with bridge.db.read() as session:  # SQLite's plan; PostgreSQL has the same index (revision 0014)
        sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        plan = " | ".join(str(row[-1]) for row in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_activity_animal_time" in plan and "TEMP B-TREE" not in plan, plan
