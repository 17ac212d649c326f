"""The ranger dashboard's page logic, called as plain functions over the bridge's views."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import bridge_builders
import pytest
import rules_builders
from access_builders import NOW as ACCESS_NOW
from access_builders import live_bridge
from notify_standins import SmsGateway

from lora_bridge.access import Viewer
from lora_bridge.server import serve_app_in_thread
from lora_bridge.store.utc import utc_now
from lora_bridge.views import ActivityView, AlertView, AnimalView, PositionView
from ranger_dashboard import config, launch, logs, map_layers, name_tiles, palette, roles, views

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

RESERVE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"kind": "boundary", "name": "Reserve"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[37.0, -2.0], [37.4, -2.0], [37.4, -1.7], [37.0, -1.7], [37.0, -2.0]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "farmland", "name": "Maize fields"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[37.3, -1.8], [37.4, -1.8], [37.4, -1.7], [37.3, -1.7], [37.3, -1.8]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "water", "name": "Waterhole"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[37.1, -1.9], [37.11, -1.9], [37.11, -1.89], [37.1, -1.89], [37.1, -1.9]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "road", "name": "Main track"},
            "geometry": {"type": "LineString", "coordinates": [[37.0, -1.85], [37.4, -1.85]]},
        },
        {
            "type": "Feature",
            "properties": {"kind": "gateway", "name": "Ranger post"},
            "geometry": {"type": "Point", "coordinates": [37.2, -1.85]},
        },
    ],
}


def animal(animal_id: str, name: str, **changes) -> AnimalView:
    """An elephant heard an hour before NOW, resting, with a healthy battery."""
    fields = dict(
        animal_id=animal_id,
        name=name,
        species="Loxodonta africana",
        device_id=f"collar-{animal_id}",
        last_seen=NOW - timedelta(hours=1),
        lat=-1.9,
        lon=37.2,
        battery_mv=3600,
        behaviour="rest",
        fw_version="1.2.3",
        model_version=7,
    )
    fields.update(changes)
    return AnimalView(**fields)


def position(animal_id: str, name: str, minutes_before: int, lat: float, lon: float) -> PositionView:
    """A fix `minutes_before` NOW."""
    return PositionView(
        animal_id=animal_id,
        name=name,
        device_id=f"collar-{animal_id}",
        time=NOW - timedelta(minutes=minutes_before),
        lat=lat,
        lon=lon,
    )


def alert(alert_id: int, priority: int, hours_before: float, **changes) -> AlertView:
    """A new collar-raised alert on Tembo `hours_before` NOW."""
    fields = dict(
        alert_id=alert_id,
        animal_id="a1",
        name="Tembo",
        device_id="collar-a1",
        alert_type="mortality",
        priority=priority,
        state="new",
        time=NOW - timedelta(hours=hours_before),
        lat=-1.9,
        lon=37.2,
        source="collar",
    )
    fields.update(changes)
    return AlertView(**fields)


def test_ranger_sees_most_urgent_alert_first_then_the_one_waiting_longest():
    alerts = [alert(1, 100, 1), alert(2, 300, 5), alert(3, 300, 1), alert(4, 0, 0.1), alert(5, 200, 2)]
    assert [a.alert_id for a in views.sort_alerts(alerts)] == [2, 3, 5, 1, 4]


def test_alert_table_names_priority_type_animal_and_age():
    table = views.alert_table([alert(1, 100, 3), alert(2, 300, 0.5, alert_type="poaching_risk")], NOW)
    first = table.iloc[0]
    assert first[views.COL_PRIORITY] == "high"
    assert first[views.COL_TYPE] == "Possible poaching"
    assert first[views.COL_ANIMAL] == "Tembo"
    assert first[views.COL_AGE] == "30 min ago"
    assert first[views.COL_TIME] == "2026-11-25 11:30"
    assert first[views.COL_POSITION] == "-1.90000, 37.20000"
    assert table.iloc[1][views.COL_AGE] == "3 h ago"


def test_only_new_alerts_can_be_acknowledged_and_open_ones_resolved():
    new, acknowledged = alert(1, 300, 1), alert(2, 300, 1, state="acknowledged", acknowledged_by="Amina")
    assert views.can_acknowledge(new) and views.can_resolve(new)
    assert not views.can_acknowledge(acknowledged) and views.can_resolve(acknowledged)
    assert views.state_text(acknowledged) == "acknowledged by Amina"


def test_verdicts_are_the_three_the_bridge_stores():
    assert sorted(views.VERDICTS.values()) == ["false_alarm", "true", "unknown"]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=12), "12 min ago"),
        (timedelta(hours=5, minutes=59), "5 h ago"),
        (timedelta(days=3), "3 d ago"),
    ],
)
def test_ages_read_as_a_ranger_says_them(delta, text):
    assert views.format_age(NOW - delta, NOW) == text


def test_low_battery_is_flagged_in_volts():
    assert views.format_battery(3610) == "3.61 V"
    assert views.format_battery(3200) == "3.20 V (low)"
    assert views.format_battery(None) == ""


def test_animal_table_lists_last_seen_battery_behaviour_and_versions_by_name():
    table = views.animal_table([animal("a2", "Zawadi", behaviour="walk"), animal("a1", "Amani")], NOW)
    assert list(table[views.COL_NAME]) == ["Amani", "Zawadi"]
    row = table.iloc[1]
    assert row[views.COL_BEHAVIOUR] == "walk"
    assert row[views.COL_FIRMWARE] == "1.2.3"
    assert row[views.COL_MODEL] == "7"
    assert row[views.COL_BATTERY] == "3.60 V"
    assert row[views.COL_AGE] == "1 h ago"


def test_animal_never_heard_from_shows_never_and_blank_values():
    silent = animal(
        "a3", "Kito", last_seen=None, battery_mv=None, behaviour=None, fw_version=None, model_version=None
    )
    row = views.animal_table([silent], NOW).iloc[0]
    assert row[views.COL_AGE] == "never"
    assert row[views.COL_BATTERY] == row[views.COL_FIRMWARE] == row[views.COL_MODEL] == ""


def test_fleet_summary_counts_silent_animals_and_high_alerts():
    animals = [
        animal("a1", "Amani"),
        animal("a2", "Zawadi", last_seen=NOW - timedelta(hours=7), battery_mv=3100),
    ]
    summary = views.fleet_summary(animals, [alert(1, 300, 1), alert(2, 100, 1)], NOW)
    assert summary == {"animals": 2, "reporting": 1, "low_battery": 1, "open_alerts": 2, "high_priority": 1}


def test_a_researchers_live_map_counts_the_collars_heard_in_the_6_h_before_its_delay_not_none(sqlite_url):
    # Both collars report every few hours, up to ten minutes ago: heard by the researcher's cutoff too
    # (6 h for Amani, 24 h for the high-value Tusker), as the researcher sees them.
    with live_bridge(sqlite_url) as bridge:
        seen = bridge.animals(viewer=Viewer("rose", "researcher"))
        live = bridge.animals(viewer=Viewer("amina", "ranger"))
    assert views.fleet_summary(live, [], ACCESS_NOW)["reporting"] == 2
    assert {a.name: a.as_of for a in seen} == {"Amani": ACCESS_NOW - timedelta(hours=6),
                                               "Tusker": ACCESS_NOW - timedelta(hours=24)}
    assert views.fleet_summary(seen, [], ACCESS_NOW)["reporting"] == 2


def test_animal_points_are_coloured_by_state_and_named():
    animals = [animal("a1", "Amani", behaviour="run"), animal("a2", "Zawadi", behaviour="forage")]
    positions = [position("a2", "Zawadi", 5, -1.95, 37.25), position("a1", "Amani", 10, -1.91, 37.21)]
    points = map_layers.animal_points(positions, animals, NOW, {"a1": "alert", "a2": "normal"})
    assert [p["name"] for p in points] == ["Amani", "Zawadi"]
    assert points[0]["colour"] == palette.STATE_COLOURS["alert"]
    assert points[1]["colour"] == palette.STATE_COLOURS["normal"]
    assert points[1]["tooltip"] == "Zawadi · normal · forage · 5 min ago"
    assert points[0]["priority"] > points[1]["priority"]  # an alerting animal's label wins a collision


def test_each_animal_gets_one_state_collar_drop_before_alert_before_offline():
    animals = [
        animal("a1", "Amani"),
        animal("a2", "Zawadi"),
        animal("a3", "Kito", last_seen=NOW - timedelta(hours=7)),  # silent, but the offline rule decides
        animal("a4", "Baraka"),
        animal("a5", "Neema"),
    ]
    alerts = [
        alert(1, 300, 1, animal_id="a2", alert_type="mortality"),
        alert(2, 100, 1, animal_id="a4", alert_type="collar_drop"),
        alert(3, 300, 1, animal_id="a4", alert_type="mortality"),
        alert(4, 100, 1, animal_id="a5", alert_type="offline"),
    ]
    states = views.animal_states(animals, alerts)
    assert states == {"a1": "normal", "a2": "alert", "a3": "normal", "a4": "collar_dropped", "a5": "offline"}


def test_alert_ring_is_drawn_where_the_animal_is_now_not_where_it_was_raised():
    raised_far_away = alert(1, 300, 3, animal_id="a1", lat=-1.5, lon=37.9)
    no_fix_yet = alert(2, 200, 1, animal_id="a9", lat=-1.7, lon=37.7)
    rings = map_layers.alert_points(
        [raised_far_away, no_fix_yet], NOW, [position("a1", "Amani", 5, -1.91, 37.21)]
    )
    assert [(r["alert_id"], r["lat"], r["lon"]) for r in rings] == [("2", -1.7, 37.7), ("1", -1.91, 37.21)]


def test_tracks_run_oldest_fix_first_and_skip_single_fixes():
    tracks = {
        "a1": [position("a1", "Amani", 10, -1.91, 37.21), position("a1", "Amani", 70, -1.92, 37.22)],
        "a2": [position("a2", "Zawadi", 5, -1.95, 37.25)],
    }
    paths = map_layers.track_paths(tracks)
    assert len(paths) == 1
    assert paths[0]["path"] == [[37.22, -1.92], [37.21, -1.91]]


def test_open_alerts_are_ringed_in_priority_colour_most_urgent_on_top():
    rings = map_layers.alert_points(
        [alert(1, 300, 1), alert(2, 100, 1), alert(3, 200, 1, lat=None, lon=None)], NOW
    )
    assert [r["alert_id"] for r in rings] == ["2", "1"]
    assert rings[-1]["colour"] == palette.PRIORITY_COLOURS[300]


def test_a_priority_between_steps_reads_and_looks_like_the_step_below_it():
    for priority, label, badge, step in (
        (300, "high", "red", 300),
        (250, "medium", "orange", 200),
        (100, "low", "green", 100),
        (99, "info", "gray", 0),
        (-5, "info", "gray", 0),
    ):
        assert palette.priority_label(priority) == label
        assert palette.priority_badge_colour(priority) == badge
        assert palette.priority_colour(priority) == palette.PRIORITY_COLOURS[step]


def test_reserve_geometry_becomes_the_offline_base_layers():
    layers = map_layers.geography_layers(RESERVE)
    assert [layer.id for layer in layers] == ["reserve-areas", "reserve-boundary", "farmland", "water", "roads", "gateways"]
    areas = next(layer for layer in layers if layer.id == "reserve-areas")
    assert [(a["kind"], a["name"]) for a in areas.data] == [("farmland", "Maize fields"), ("water", "Waterhole")]
    boundary = next(layer for layer in layers if layer.id == "reserve-boundary")
    assert (boundary.data[0]["from"], boundary.data[0]["to"]) == ([37.0, -2.0], [37.4, -2.0])
    assert len(boundary.data) == 4  # the boundary's ring of five points as four straight segments
    assert map_layers.gateway_points(RESERVE) == [
        {"name": "Ranger post", "lat": -1.85, "lon": 37.2, "tooltip": "Gateway Ranger post"}
    ]


def test_waterholes_given_as_points_are_drawn_as_dots():
    reserve = dict(RESERVE)
    reserve["features"] = [
        *RESERVE["features"],
        {
            "type": "Feature",
            "properties": {"kind": "water", "name": "Kalama dam"},
            "geometry": {"type": "Point", "coordinates": [37.15, -1.95]},
        },
    ]
    layers = {layer.id: layer for layer in map_layers.geography_layers(reserve)}
    assert len(layers["water"].data) == 4  # the waterhole polygon's outline; the point is no line
    assert [37.15, -1.95] not in [end for line in layers["water"].data for end in (line["from"], line["to"])]
    assert [(d["name"], d["lat"], d["lon"], d["tooltip"]) for d in layers["waterholes"].data] == [
        ("Kalama dam", -1.95, 37.15, "Water: Kalama dam")
    ]


def test_live_map_fetches_no_online_tiles_by_default():
    points = map_layers.animal_points(
        [position("a1", "Amani", 10, -1.91, 37.21)], [animal("a1", "Amani")], NOW
    )
    spec = json.loads(map_layers.build_deck(RESERVE, points, [], []).to_json())
    assert spec["mapStyle"] == map_layers.NO_BASE_MAP
    assert "mapProvider" not in spec
    assert "cartocdn" not in json.dumps(spec)
    assert [layer["id"] for layer in spec["layers"]] == [
        "reserve-areas",
        "reserve-boundary",
        "farmland",
        "water",
        "roads",
        "gateways",
        "animals",
        "animal-names",
    ]
    names = next(layer for layer in spec["layers"] if layer["id"] == "animal-names")
    assert names["data"].startswith("./map/names/")  # the dashboard's own names route, no one else's


def test_live_map_layers_of_a_kind_share_one_drawing_pipeline():
    """A software-rendered browser compiles each distinct layer kind and attribute layout for
    seconds: every dot layer reads the same record fields, every line layer too."""
    points = map_layers.animal_points(
        [position("a1", "Amani", 10, -1.91, 37.21), position("a2", "Kito", 10, -1.8, 37.3)],
        [animal("a1", "Amani"), animal("a2", "Kito")],
        NOW,
        {"a2": "alert"},
    )
    rings = [{**points[1], "alert_id": "9", "priority": 300, "colour": palette.PRIORITY_COLOURS[300]}]
    paths = [{"animal_id": "a1", "name": "Amani", "path": [[37.2, -1.9], [37.21, -1.91]], "colour": [1, 2, 3, 255]}]
    spec = json.loads(map_layers.build_deck(RESERVE, points, paths, rings, focus_animal_id="a1").to_json())
    kinds: dict[str, set] = {}
    for layer in spec["layers"]:
        accessors = tuple(sorted((k, json.dumps(v)) for k, v in layer.items() if k.startswith("get")))
        kinds.setdefault(layer["@@type"], set()).add(accessors)
    # The names (text) come as tiles once the first frame is drawn (`name_tiles`).
    assert set(kinds) == {"SolidPolygonLayer", "LineLayer", "ScatterplotLayer", "TileLayer"}
    assert all(len(layouts) == 1 for layouts in kinds.values()), kinds


def test_online_tiles_are_a_choice():
    spec = json.loads(map_layers.build_deck(RESERVE, [], [], [], online_tiles=True).to_json())
    assert "cartocdn" in spec["mapStyle"]


def test_map_opens_on_the_whole_reserve():
    state = map_layers.view_state_for(map_layers.map_bounds(RESERVE, []))
    assert state.latitude == pytest.approx(-1.85)
    assert state.longitude == pytest.approx(37.2)
    assert 9 <= state.zoom <= 12


def test_focused_animal_is_centred_and_ringed():
    points = map_layers.animal_points(
        [position("a1", "Amani", 10, -1.91, 37.21)], [animal("a1", "Amani")], NOW
    )
    spec = json.loads(map_layers.build_deck(RESERVE, points, [], [], focus_animal_id="a1").to_json())
    assert spec["initialViewState"]["latitude"] == pytest.approx(-1.91)
    assert "focus" in [layer["id"] for layer in spec["layers"]]


def test_activity_frame_has_percent_per_behaviour_and_vedba():
    summaries = [
        ActivityView(
            "a1", "collar-a1", NOW - timedelta(hours=1), 60, 7, 40, 300, {"rest": 75.0, "walk": 25.0}, "rest"
        ),
        ActivityView(
            "a1", "collar-a1", NOW - timedelta(hours=2), 60, 7, 90, 800, {"forage": 100.0}, "forage"
        ),
    ]
    frame = views.activity_frame(summaries)
    assert list(frame.index) == [NOW - timedelta(hours=2), NOW - timedelta(hours=1)]
    assert frame.loc[NOW - timedelta(hours=2), "rest"] == 0.0
    assert frame.loc[NOW - timedelta(hours=1), views.VEDBA_MAX] == 300
    assert views.behaviour_shares(frame).to_dict() == {"forage": 50.0, "rest": 37.5, "walk": 12.5}


def test_dashboard_command_is_headless_local_and_carries_the_database():
    command = launch.command(8765, "sqlite:////tmp/tembo.db")
    assert command[1:4] == ["-m", "streamlit", "run"]
    assert command[4].endswith("ranger_dashboard/dashboard_server.py")
    flags = dict(zip(command[5::2], command[6::2], strict=False))
    assert flags["--server.headless"] == "true"
    assert flags["--server.address"] == "127.0.0.1"
    assert flags["--server.port"] == "8765"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--theme.base"] == "dark"
    script_args = command[command.index("--") + 1 :]
    assert config.options(script_args, environ={}) == config.DashboardOptions("sqlite:////tmp/tembo.db")
    with pytest.raises(ValueError):
        launch.command(0, "sqlite://")


def test_demo_dashboard_can_measure_ages_from_the_newest_report():
    command = launch.command(8765, "sqlite:////tmp/tembo.db", clock="data", refresh_s=3)
    options = config.options(command[command.index("--") + 1 :], environ={})
    assert (options.clock, options.refresh_s) == ("data", 3.0)
    with pytest.raises(ValueError):
        launch.command(8765, "sqlite://", clock="sundial")


def test_dashboard_options_fall_back_to_environment_then_defaults():
    env = {"TEMBO_DATABASE_URL": "sqlite:////srv/tembo.db", "TEMBO_DASHBOARD_CLOCK": "data"}
    assert config.options([], environ=env) == config.DashboardOptions("sqlite:////srv/tembo.db", "data")
    assert config.options(["-x", "pytest"], environ={}) == config.DashboardOptions()


def test_map_layer_settings_are_constants_and_only_accessors_read_the_data():
    points = map_layers.animal_points(
        [position("a1", "Amani", 10, -1.91, 37.21)], [animal("a1", "Amani")], NOW
    )
    paths = map_layers.track_paths(
        {"a1": [position("a1", "Amani", 10, -1.91, 37.21), position("a1", "Amani", 70, -1.92, 37.22)]}
    )
    rings = map_layers.alert_points([alert(1, 300, 1)], NOW)
    spec = json.loads(map_layers.build_deck(RESERVE, points, paths, rings, focus_animal_id="a1").to_json())
    for layer in spec["layers"]:
        for key, value in layer.items():
            if isinstance(value, str) and value.startswith("@@="):
                assert key.startswith("get"), f"{layer['id']}.{key} = {value}"
        for key in ("sizeUnits", "radiusUnits", "lineWidthUnits", "widthUnits"):
            assert layer.get(key, "pixels") == "pixels"


def test_roles_say_what_they_may_see():
    assert roles.role("ranger").exact_positions and roles.role("ranger").handles_alerts
    visitor = roles.role("visitor")
    assert not visitor.exact_positions and not visitor.handles_alerts
    assert "5 km grid, 24 h late" in visitor.describe_positions()
    with pytest.raises(ValueError):
        roles.role("poacher")
    with pytest.raises(ValueError):
        config.DashboardOptions(role="poacher")
    command = launch.command(8765, "sqlite://", role="visitor")
    assert command[command.index("--role") + 1] == "visitor"


def test_precision_per_alert_type_from_verdicts_worst_first():
    table = views.precision_table(
        {
            "mortality": {"true": 3, "false_alarm": 1, "unknown": 0, "precision": 0.75},
            "geofence_farmland": {"true": 1, "false_alarm": 3, "unknown": 2, "precision": 0.25},
            "offline": {"true": 0, "false_alarm": 0, "unknown": 4, "precision": None},
        }
    )
    assert list(table[views.COL_TYPE]) == ["Entered farmland", "Possible mortality", "Offline"]
    assert list(table["Precision (%)"])[:2] == [25.0, 75.0]
    assert table.iloc[2]["Unknown"] == 4


def test_position_views_are_logged_with_the_viewer():
    logs.configure()
    record = logging.LogRecord(
        "lora_bridge.service", logging.INFO, __file__, 1, "live positions viewed", (), None
    )
    record.viewer, record.animals = "ranger:Amina", 3
    line = logs.ContextFormatter(logs.FORMAT).format(record)
    assert line.endswith("live positions viewed viewer=ranger:Amina animals=3")
    assert logging.getLogger("lora_bridge").isEnabledFor(logging.INFO)


def test_clicking_an_animal_or_its_ring_picks_that_animal():
    assert map_layers.selected_animal_id({"animals": [{"animal_id": "7", "name": "Amani"}]}) == "7"
    assert map_layers.selected_animal_id({"open-alerts": [{"alert_id": "3", "animal_id": "9"}]}) == "9"
    assert map_layers.selected_animal_id({"gateways": [{"name": "HQ mast"}]}) is None
    assert map_layers.selected_animal_id({}) is None


def test_a_herd_of_500_gets_only_the_name_labels_that_fit_alerts_first():
    rng = __import__("random").Random(7)
    points = [
        {
            "animal_id": f"a{i}",
            "name": f"Elephant {i:03d}",
            "lat": -1.9 + rng.random() * 0.1,
            "lon": 37.2 + rng.random() * 0.1,
            "priority": 2 if i == 321 else 0,
        }
        for i in range(500)
    ]
    view = map_layers.view_state_for(map_layers.map_bounds({}, points), 640, 620)
    labels = map_layers.labels_that_fit(points, view, focus_animal_id="a007")
    assert 10 < len(labels) < 200
    names = {p["name"] for p in labels}
    assert {"Elephant 321", "Elephant 007"} <= names  # the alerting and the focused animal first
    boxes = []
    for p in labels:
        x, y = map_layers.screen_xy(p["lat"], p["lon"], view)
        half = len(p["name"]) * map_layers.LABEL_CHAR_PX / 2
        boxes.append(
            (x - half, y - map_layers.LABEL_HEIGHT_PX / 2, x + half, y + map_layers.LABEL_HEIGHT_PX / 2)
        )
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), "two labels overlap"
    apart = [
        dict(points[0], lat=-1.9, lon=37.2),
        dict(points[1], lat=-1.85, lon=37.25),
        dict(points[2], lat=-1.8, lon=37.3),
    ]
    assert len(map_layers.labels_that_fit(apart, view)) == 3  # a small herd keeps every name


def test_a_herd_of_500_at_the_whole_reserve_names_only_animals_that_need_a_look_and_stays_readable():
    rng = __import__("random").Random(11)
    points = [
        {
            "animal_id": f"a{i}",
            "name": f"Elephant {i:03d}",
            "lat": -1.9 + rng.random() * 0.3,
            "lon": 37.2 + rng.random() * 0.4,
            "state": "alert" if i % 25 == 0 else "normal",
            "priority": 1 if i % 25 == 0 else 0,
            "colour": palette.state_colour("alert" if i % 25 == 0 else "normal"),
            "tooltip": f"Elephant {i:03d}",
        }
        for i in range(500)
    ]
    spec = json.loads(map_layers.build_deck({}, points, [], [], fit_px=(640, 620)).to_json())
    layers = {layer["id"]: layer for layer in spec["layers"]}
    whole = spec["initialViewState"]["zoom"]
    named = {p["name"] for p in name_tiles.named_at_zoom(points, round(whole), whole)}
    assert named and named <= {f"Elephant {i:03d}" for i in range(0, 500, 25)}
    assert {dot["radius"] for dot in layers["animals"]["data"]} == {4}  # smaller dots for a large herd
    assert [p["state"] for p in layers["animals"]["data"]][-20:] == ["alert"] * 20  # drawn on top
    assert all(p["tooltip"] for p in layers["animals"]["data"])  # every animal named on hover

    focused = json.loads(
        map_layers.build_deck({}, points, [], [], focus_animal_id="a7", fit_px=(640, 620)).to_json()
    )
    zoom = focused["initialViewState"]["zoom"]
    names = name_tiles.named_at_zoom(points, round(zoom), zoom, focus_animal_id="a7")
    assert "focus=a7" in next(layer for layer in focused["layers"] if layer["id"] == "animal-names")["data"]
    assert "Elephant 007" in {p["name"] for p in names}  # zoomed in on it: ordinary animals are named


def test_hover_tooltip_opens_towards_the_map_centre_so_edge_animals_are_read_whole():
    points = [
        {"animal_id": str(i), "name": name, "lat": lat, "lon": lon, "state": "normal", "priority": 0,
         "colour": palette.state_colour("normal"), "tooltip": f"{name} · normal"}
        for i, (name, lat, lon) in enumerate(
            (("West", -1.85, 37.02), ("East", -1.85, 37.38), ("North", -1.72, 37.2), ("South", -1.98, 37.2))
        )
    ]
    spec = json.loads(map_layers.build_deck(RESERVE, points, [], [], fit_px=(640, 620)).to_json())
    layers = {layer["id"]: layer["data"] for layer in spec["layers"]}
    side = {p["name"]: p["tooltip_side"] for p in layers["animals"]}
    gap = f"{map_layers.TOOLTIP_GAP_PX}px"
    away = f"calc(-100% - {gap})"
    assert side["East"].startswith(f"translate:{away} ")  # right edge: the box opens to the left
    assert side["West"].startswith(f"translate:{gap} ")
    assert side["South"].endswith(f" {away}")  # bottom edge: the box opens upwards
    assert side["North"].endswith(f" {gap}")
    assert "{tooltip_side}" in map_layers.TOOLTIP["html"] and "{tooltip}" in map_layers.TOOLTIP["html"]
    assert map_layers.TOOLTIP["style"]["pointerEvents"] == "none"  # the click goes to the dot under it
    assert all("tooltip_side" in g for g in layers["gateways"])  # every record that names itself on hover


def test_animal_dots_carry_only_what_the_browser_draws_names_and_hands_back():
    points = [
        {"animal_id": str(i), "name": f"Elephant {i}", "lat": -1.8 - i / 100, "lon": 37.1, "state": state,
         "behaviour": "forage", "priority": palette.ANIMAL_STATES.index(state) if state != "normal" else 0,
         "colour": palette.state_colour(state), "tooltip": f"Elephant {i} · {state} · forage · 1 h"}
        for i, state in enumerate(("alert", "normal", "offline"))
    ]
    spec = json.loads(map_layers.build_deck(RESERVE, points, [], [], fit_px=(640, 620)).to_json())
    dots = next(layer for layer in spec["layers"] if layer["id"] == "animals")["data"]
    drawing = {"fill", "line", "radius", "line_width", "tooltip_side"}
    assert all(set(dot) == set(map_layers.ANIMAL_DOT_FIELDS) | drawing for dot in dots)
    assert [dot["name"] for dot in dots] == ["Elephant 1", "Elephant 0", "Elephant 2"]  # needing a look on top
    assert {dot["name"]: dot["fill"] for dot in dots} == {p["name"]: p["colour"] for p in points}
    assert map_layers.selected_animal_id({"animals": [dots[2]]}) == "2"  # a click still opens its animal


def test_technician_reads_the_fleet_tables_radio_figures_as_numbers_not_six_decimals():
    from lora_bridge.views import CollarHealthView

    now = datetime(2026, 3, 2, tzinfo=UTC)

    def collar(device_id: str, rssi: float | None, slope: float | None) -> CollarHealthView:
        return CollarHealthView(device_id, "1", "Amani", 3640, slope, None, None, now - timedelta(minutes=14), 21600,
                                43200, rssi, -4.75, "gw-north", 2.5, 40, "1.0.0", 1, 31.0)

    table = views.fleet_health_table([collar("collar-01", -116.0, None), collar("collar-02", -105.4, -12.34)], now)
    html = views.style_fleet_table(table).to_html()
    assert ">-116<" in html and ">-105<" in html and "-116.000000" not in html
    assert ">-4.8<" in html and ">2.5<" in html and ">-12<" in html
    assert ">—<" in html and ">None<" not in html, "no trend yet reads as a dash"
    assert table["RSSI (dBm)"].tolist() == [-116.0, -105.4], "the table itself keeps the measured values"


def test_technician_sees_a_collar_in_stock_silent_for_a_week_listed_last_as_in_stock_not_overdue():
    from dataclasses import replace

    from lora_bridge.views import CollarHealthView

    now = datetime(2026, 3, 2, tzinfo=UTC)
    worn = CollarHealthView("collar-01", "1", "Amani", 3640, None, None, None, now - timedelta(days=7), 21600,
                            43200, -110.0, -4.75, "gw-north", 2.5, 40, "1.0.0", 1, 31.0)
    in_stock = replace(worn, device_id="collar-02", animal_id=None, name=None, in_stock=True)

    table = views.fleet_health_table([in_stock, worn], now)
    assert list(table[views.COL_COLLAR]) == ["collar-01", "collar-02"]
    assert list(table[views.COL_UPLINK_DUE]) == ["overdue", views.IN_STOCK]
    assert list(table[views.COL_NAME]) == ["Amani", views.IN_STOCK]


def test_ranger_reads_in_an_alerts_history_whether_the_duty_officer_was_told_and_why_not(sqlite_url, tmp_path):
    # A poaching alert at night: the SMS gateway is down, and Amani resolves the alert as a false alarm
    # before it is back, so the duty officer's SMS is withdrawn. Opening the alert's history, a ranger
    # must read over which channel and to whom the message went, and why it never did, in sentences:
    # not "notification queued", "notification withdrawn".
    gateway = SmsGateway(token="sms-token", refuse_first=1)
    with serve_app_in_thread(gateway.app()) as sms:
        rules = tmp_path / "rules.toml"
        rules.write_text(
            f'[notify.sms]\nurl = "{sms.url}/send"\ntoken = "sms-token"\n'
            '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\nmin_priority = 300\n'
        )
        with bridge_builders.fresh_bridge(sqlite_url, rules_path=str(rules)) as bridge:
            uplink = bridge_builders.tts_uplink(bridge_builders.alert("poaching_risk", seq=1), f_cnt=1)
            (alert_id,) = bridge.ingest_tts_uplink(uplink).alert_ids
            bridge.flush_notifications(now=utc_now())  # the gateway refuses: the SMS waits
            bridge.resolve_alert(alert_id, bridge_builders.RANGER, "false_alarm", "Herd at the dam")
            bridge.flush_notifications(now=utc_now() + timedelta(seconds=120))
            history = views.alert_history_table(bridge.alert_events(alert_id, viewer=bridge_builders.RANGER))

    what = list(history["What"])
    assert gateway.messages == []
    assert what[0] == "The collar raised the alert."
    assert "SMS to +254700000001 (duty-sms) waiting to go out." in what
    assert 'Resolved by ranger.amani: a false alarm ("Herd at the dam").' in what
    assert ("SMS to +254700000001 (duty-sms) not sent: "
            "the alert was resolved by ranger.amani before this went out.") in what


def test_ranger_reads_in_an_alerts_history_why_the_collars_ack_is_unconfirmed_and_that_it_went_again(
    sqlite_url, network
):
    # A mortality alert on a network that never reports its downlinks: the collar sends three more
    # uplinks and no port-31 ack. The history must tell the ranger, at night on her phone, that the collar
    # has not confirmed hearing that its alert arrived and that Tembo tells it again: in her words, not
    # the technician's ports, uplinks and downlink numbers, which stay in the step's detail.
    b = bridge_builders
    with b.pushing_to(network, sqlite_url) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
        assert bridge.flush_downlinks() == 1
        for f_cnt in (2, 3, 4):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), f_cnt=f_cnt))
        assert bridge.flush_downlinks() == 1
        first, again = bridge.downlinks()
        events = bridge.alert_events(alert_id, viewer=b.RANGER)
        history = views.alert_history_table(events)

    (step,) = [w for w in history["What"] if "has not confirmed" in w]
    assert step == ("Tembo told the collar its alert arrived, but the collar has not confirmed "
                    "hearing it in the 3 messages it has sent since. Tembo is telling it again.")
    for jargon in ("port-31", "uplink", "downlink", "network server", "UTC"):
        assert jargon not in step
    (detail,) = [e.detail for e in events if e.action == "ack_unconfirmed"]
    assert detail["technical"] == first.last_error
    assert detail["technical"].startswith("unconfirmed: no port-31 ack from the collar in 3 uplinks since it was pushed")
    assert detail["technical"].endswith(f"pushed again as downlink {again.downlink_id}")


def test_ranger_reads_in_an_alerts_history_that_an_unconfirmed_ack_reached_the_collar_after_all(sqlite_url, network):
    # ChirpStack's `ack` event with `acknowledged: true` for the first ack comes after it went unconfirmed:
    # the history that said "unconfirmed" goes on to say the collar heard it.
    b = bridge_builders
    with b.pushing_to(network, sqlite_url) as bridge:
        uplink = b.chirpstack_uplink(b.alert("mortality", seq=1), f_cnt=1)
        (alert_id,) = bridge.ingest_chirpstack_uplink(uplink).alert_ids
        bridge.flush_downlinks()
        for f_cnt in (2, 3, 4):
            bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), f_cnt=f_cnt))
        bridge.flush_downlinks()
        ack = b.chirpstack_ack(b.dev_eui_of("collar-01"), "q-1", acknowledged=True)
        bridge.ingest_network_message("chirpstack", "ack", ack)
        history = views.alert_history_table(bridge.alert_events(alert_id, viewer=b.RANGER))

    what = list(history["What"])
    unconfirmed = [i for i, w in enumerate(what) if w.startswith("Tembo told the collar its alert arrived, but")]
    delivered = what.index("The network now reports that the collar did hear that its alert arrived.")
    assert unconfirmed and unconfirmed[0] < delivered, what
    assert not any(w.startswith("ack ") or "_" in w for w in what), "no step reads as its technical name"


def test_the_map_names_animals_it_cannot_place_without_saying_more_than_the_role_may_know():
    animals = [SimpleNamespace(animal_id=i, name=f"Elephant {i:02d}", device_id=f"c{i}") for i in range(1, 16)]
    placed = [{"animal_id": "1"}]
    ranger = views.unplaced_message(animals, placed, exact=True, as_of=None)
    assert ranger.startswith("Not on the map (no fix yet): Elephant 02, Elephant 03")
    assert ranger.endswith("and 2 more.")  # 14 not placed, 12 named
    # A delayed role is not told whether a collar has a fix it may not see yet, or none at all.
    assert views.unplaced_message(animals, placed, exact=False, as_of=None).startswith(
        "Not on the map (no position your view may show yet): "
    )
    everyone = [{"animal_id": str(a.animal_id)} for a in animals]
    assert views.unplaced_message(animals, everyone, exact=True, as_of=None) == ""


def test_every_step_the_bridge_can_record_reads_as_a_ranger_sentence(sqlite_url):
    # The bridge names every step it records once (`alerts.ACTIONS`, and refuses to record any other): a
    # step added there without a wording here fails this test, before a ranger reads "ack requeued".
    from lora_bridge.domain import alerts

    missing = [action for action in alerts.ACTIONS if action not in views.HISTORY_WORDINGS]
    assert missing == [], f"steps of an alert's history with no wording: {missing}"
    for action in alerts.ACTIONS:  # even with no detail (a step stored before its detail grew)
        sentence = views.history_step(action, {}, "ranger.amani")
        assert sentence[0].isupper() and sentence.endswith("."), (action, sentence)
        assert "_" not in sentence, (action, sentence)
        assert "_" not in action or action.replace("_", " ") not in sentence.lower(), (action, sentence)
    with bridge_builders.fresh_bridge(sqlite_url) as bridge, bridge.db.write() as session:
        (alert_id,) = bridge.ingest_tts_uplink(bridge_builders.tts_uplink(bridge_builders.alert("mortality"))).alert_ids
        with pytest.raises(ValueError, match="collar_sang"):
            alerts.record_event(session, alerts.get_alert(session, alert_id), alerts.SYSTEM_ACTOR, "collar_sang")


def test_ranger_reads_who_took_an_alert_and_that_the_collar_heard_it_arrived(sqlite_url, network):
    # Amani hands a mortality alert to Baraka; the collar later confirms it heard Tembo's ack. Each step
    # reads as a sentence with the names in it, never "assigned", "collar confirmed ack".
    b = bridge_builders
    with b.pushing_to(network, sqlite_url) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
        bridge.flush_downlinks()
        bridge.assign_alert(alert_id, "ranger.baraka", b.RANGER)
        bridge.acknowledge_alert(alert_id, b.RANGER)
        bridge.ingest_tts_uplink(b.tts_uplink(b.ack("ack_alert", "ok", time_s=b.T0_S + 600), f_cnt=2))
        bridge.assign_alert(alert_id, "", b.RANGER)
        history = views.alert_history_table(bridge.alert_events(alert_id, viewer=b.RANGER))

    what = list(history["What"])
    assert what[0] == "The collar raised the alert."
    assert {"Tembo will tell the collar that its alert arrived.",
            "Tembo's message that the alert arrived went out to the collar."} <= set(what)
    assert "Assigned to ranger.baraka by ranger.amani." in what
    assert "Acknowledged by ranger.amani." in what
    assert "The collar confirmed it heard that the alert arrived." in what
    assert what[-1] == "Assignment taken back by ranger.amani."
    assert list(history.columns) == [views.COL_TIME, "Who", "What"], "a ranger's table has no technical column"


def test_a_step_the_dashboard_does_not_know_reads_as_its_name_instead_of_breaking_the_history():
    events = [SimpleNamespace(at=NOW, actor="tembo", action="collar_sang", detail={"pitch": "high"}),
              SimpleNamespace(at=NOW - timedelta(minutes=5), actor="tembo", action="raised", detail=None)]
    history = views.alert_history_table(events)
    assert list(history["What"]) == ["Tembo raised the alert.", "Collar sang (no description yet)."]


def test_ranger_reads_when_tembo_closed_an_alert_in_the_words_the_dashboard_says_every_time(sqlite_url):
    # Naserian is 1 km out of the park at 07:00 UTC (raised), back inside at 08:00 and still inside at 09:00:
    # her 09:00 fix confirms it and Tembo closes the exit alert itself. The history says when, as every time
    # of the dashboard reads (`format_time_utc`), never the stored ISO time.
    with bridge_builders.fresh_bridge(sqlite_url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        rules_builders.park_and_farm(bridge)
        rules_builders.ingest_track(bridge, [(0, 309_000, 9_702_000), (60, 311_000, 9_702_000),
                                             (120, 309_500, 9_702_000), (180, 309_300, 9_702_000)])
        (alert,) = bridge.alerts(viewer=bridge_builders.RANGER)
        events = bridge.alert_events(alert.alert_id, viewer=bridge_builders.RANGER)

    back = bridge_builders.T0 + timedelta(minutes=180)
    (closing,) = [e for e in events if e.action == "auto_resolved"]
    assert closing.detail["cleared_at"] == back.isoformat()
    what = list(views.alert_history_table(events)["What"])
    assert what[-1] == "Tembo closed it, the condition cleared at 2026-03-01 09:00 UTC: back inside the fence."
    assert not any(back.isoformat() in w or "+00:00" in w for w in what), what


def test_ranger_reads_a_closing_stored_before_its_time_was_kept_apart_without_the_raw_time():
    # Stored before 6 December: the reason ended with the time it cleared, raw; `cleared_at` says the same
    # moment. A reason with no time of its own ("battery back at 3360 mV") keeps every word.
    at = "2026-11-25T08:40:00+00:00"
    steps = {
        "moving again at " + at: "Tembo closed it, the condition cleared at 2026-11-25 08:40 UTC: moving again.",
        "battery back at 3360 mV": "Tembo closed it, the condition cleared at 2026-11-25 08:40 UTC: battery back at 3360 mV.",
    }
    for reason, said in steps.items():
        assert views.history_step("auto_resolved", {"reason": reason, "cleared_at": at}, "tembo") == said
    assert views.history_step("auto_resolved", {}, "tembo") == "Tembo closed it, the condition cleared."
    # A time stored in another zone is said in UTC, as the history's own column is.
    eat = {"reason": "out of the fence again", "cleared_at": "2026-11-25T11:40:00+03:00"}
    assert views.history_step("auto_resolved", eat, "tembo") == (
        "Tembo closed it, the condition cleared at 2026-11-25 08:40 UTC: out of the fence again.")


def test_ranger_reads_an_unconfirmed_ack_stored_before_the_plain_words_and_a_technician_its_reason():
    # Stored before 6 December: the reason in the technician's words ("unconfirmed: no port-31 ack ..."),
    # no `technical`. The ranger reads it like a new one; the technician reads the old reason beside it.
    # The table's times stay UTC whatever zone the step carries.
    old = ("unconfirmed: no port-31 ack from the collar in 3 uplinks since it was pushed at 2026-11-25 08:40:00 UTC; "
           "the network server said nothing")
    eat = datetime(2026, 11, 25, 12, 10, tzinfo=UTC).astimezone(timezone(timedelta(hours=3)))
    events = [
        SimpleNamespace(at=eat, actor="tembo", action="ack_unconfirmed",
                        detail={"seq": 3, "downlink_id": 11, "reason": f"{old}; pushed again as downlink 12",
                                "resent_as": 12}),
        SimpleNamespace(at=eat + timedelta(minutes=30), actor="tembo", action="ack_unconfirmed",
                        detail={"seq": 3, "downlink_id": 12, "reason": f"{old}; not sent again (fair use)",
                                "resent_as": None}),
    ]
    ranger = views.alert_history_table(events)
    said = ("Tembo told the collar its alert arrived, but the collar has not confirmed hearing it in the 3 messages "
            "it has sent since.")
    assert list(ranger["What"]) == [f"{said} Tembo is telling it again.", f"{said} Tembo is not telling it again."]
    assert list(ranger[views.COL_TIME]) == ["2026-11-25 12:10", "2026-11-25 12:40"]
    assert "port-31" not in " ".join(ranger.astype(str).to_numpy().ravel())

    technician = views.alert_history_table(events, technical=True)
    assert list(technician["What"]) == list(ranger["What"])
    first = technician[views.COL_TECHNICAL][0]
    assert first.startswith(f"{old}; pushed again as downlink 12") and "downlink 11" in first


def test_only_a_technicians_role_reads_the_technical_side_of_an_alerts_history(sqlite_url, network):
    # The field technician and the admin, who send collars commands, read the downlink's reason beside the
    # ranger's sentence; the ranger, the researcher and the visitor centre read the sentence only.
    b = bridge_builders
    with b.pushing_to(network, sqlite_url) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
        bridge.flush_downlinks()
        for f_cnt in (2, 3, 4):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), f_cnt=f_cnt))
        bridge.flush_downlinks()
        first, _ = bridge.downlinks()
        events = bridge.alert_events(alert_id, viewer=b.RANGER)

    readers = {name for name, role in roles.ROLES.items() if role.may(views.TECHNICAL_DETAIL_PERMISSION)}
    assert readers == {"field_technician", "admin"}
    technician = views.alert_history_table(events, technical=True)
    (row,) = technician[technician["What"].str.contains("has not confirmed")].to_dict("records")
    assert row[views.COL_TECHNICAL].startswith(first.last_error)
    assert "has not confirmed" not in row[views.COL_TECHNICAL]
