"""The ranger dashboard's pages, run by Streamlit's AppTest against a temporary SQLite store that
was filled through the bridge service (registered animals, TTS uplinks built with the codec)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bridge_builders import SHIPPED_MODEL_VERSION, migrated
from browser_helpers import (
    ACCOUNTS,
    HERD,
    RESERVE,
    SEED_END,
    add_accounts,
    backup_holds_the_store,
    names_on_map,
    seeded_sqlite,
    status_values,
    tracks_on_map,
    tts_uplink,
)
from streamlit.testing.v1 import AppTest

import ranger_dashboard
from lora_bridge import queries
from lora_bridge.access import Viewer, accounts
from lora_bridge.access.privacy import coarsen
from lora_bridge.service import Bridge, open_bridge
from lora_bridge.store.utc import utc_now
from ranger_dashboard import data, login, map_layers, palette, views

RANGER = Viewer("ranger.amani", "ranger")
TECHNICIAN = Viewer("tito", "field_technician")

APP = Path(ranger_dashboard.__file__).resolve().parent / "app.py"
TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def no_busy_store_left_by_an_earlier_test(monkeypatch) -> None:
    """The dashboard's memory of a busy store (its hold, the views it owes) is the server's: each test
    starts as a fresh server, not within the hold an earlier test's backup left."""
    monkeypatch.setattr(data, "_busy_until", 0.0)
    monkeypatch.setattr(data, "_owed", [])


@pytest.fixture
def sqlite_url(sqlite_url: str) -> str:
    """The test's own SQLite store, a copy of the migrated empty one: each test here opens it with the
    bridge first, which would have migrated it (~0.4 s of CPU a test)."""
    return migrated(sqlite_url)


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A seeded store the dashboard reads (via TEMBO_DATABASE_URL), a copy of its own of the one `seed`
    filled for this process; its URL."""
    url = seeded_sqlite(f"sqlite:///{tmp_path / 'seeded.db'}")
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    return url


def signed_in(username: str) -> str:
    """A sign-in session of one of the seeded ACCOUNTS (through the bridge, as the login form does)."""
    bridge = open_bridge(os.environ["TEMBO_DATABASE_URL"])
    try:
        return bridge.sign_in(username, ACCOUNTS[username][1])[1]
    finally:
        bridge.close()


def open_page(
    page: str | None = None, query: dict[str, str] | None = None, user: str | None = "amina"
) -> AppTest:
    """The dashboard after its first run, opened (as a link to it is) on `page` ('alerts', 'animals') or
    the live map, signed in as the seeded account `user` (None: nobody signed in)."""
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    app.query_params.update(query or {})
    if user is not None:
        app.session_state[login.SESSION_KEY] = signed_in(user)
    if page is not None:  # the page itself at the first run, not the live map first (a run of ~1 s)
        app.switch_page(f"screens/{page}.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def deck_spec(app: AppTest) -> dict:
    """The pydeck JSON the page sent to the browser."""
    charts = app.get("deck_gl_json_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.json)


def layer(spec: dict, layer_id: str) -> dict:
    """One layer of a deck spec, by id."""
    return next(item for item in spec["layers"] if item["id"] == layer_id)


def metric(app: AppTest, label: str) -> str:
    """The value of the metric with this label."""
    return next(m.value for m in app.metric if m.label == label)


def test_ranger_sees_every_collared_animal_on_the_offline_live_map(store):
    app = open_page()
    assert not app.title  # the map is the first thing on the page
    spec = deck_spec(app)
    assert spec["mapStyle"] == map_layers.NO_BASE_MAP
    assert names_on_map(store, Viewer("amina", "ranger"), spec) == {"Amani", "Kito", "Zawadi"}
    kinds = {line["kind"] for line in layer(spec, "reserve-boundary")["data"]}
    assert kinds == {"boundary"}
    assert layer(spec, "gateways")["data"][0]["name"] == "HQ mast"
    assert {"farmland", "water", "roads", "tracks"} <= {item["id"] for item in spec["layers"]}
    assert list(app.dataframe[0].value[views.COL_NAME]) == ["Amani", "Kito", "Zawadi"]
    assert metric(app, "Animals") == "3"
    assert metric(app, "Open alerts") == "2"
    assert metric(app, "High priority") == "1"


def test_live_map_colours_animals_by_state_and_rings_open_alerts(store):
    spec = deck_spec(open_page())
    colour_of = {p["name"]: p["fill"] for p in layer(spec, "animals")["data"]}
    assert colour_of["Amani"] == palette.STATE_COLOURS["normal"]
    assert colour_of["Zawadi"] == palette.STATE_COLOURS["alert"]  # low battery
    assert colour_of["Kito"] == palette.STATE_COLOURS["alert"]  # mortality
    bridge = open_bridge(store)
    bridge.run_rules()  # on today's clock the seeded herd is long silent: the offline rule says so
    bridge.close()
    data.forget_alerts()  # not a few seconds later: drop the cached answer
    silent = {p["name"]: p["state"] for p in layer(deck_spec(open_page()), "animals")["data"]}
    assert silent == {"Amani": "offline", "Kito": "alert", "Zawadi": "alert"}
    rings = layer(spec, "open-alerts")["data"]
    assert [(r["name"], r["colour"]) for r in rings] == [
        ("Zawadi", palette.PRIORITY_COLOURS[100]),
        ("Kito", palette.PRIORITY_COLOURS[300]),
    ]
    amani_id = next(p["animal_id"] for p in layer(spec, "animals")["data"] if p["name"] == "Amani")
    amani_track = [t for t in tracks_on_map(store, RANGER, spec) if t["animal_id"] == amani_id]
    assert len(amani_track) == 5  # six fixes, drawn as five segments


def test_track_length_and_focus_come_from_a_shared_link(store):
    kito = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Kito")
    app = open_page(query={"animal": kito.animal_id, "hours": "6"})
    assert app.selectbox(key="focus").value == kito.animal_id
    assert app.selectbox(key="track_hours").value == 6
    spec = deck_spec(app)
    assert spec["initialViewState"]["latitude"] == pytest.approx(HERD[2].lat, abs=1e-4)
    assert layer(spec, "focus")["data"][0]["name"] == "Kito"

    app.selectbox(key="focus").set_value("all").run()
    assert "animal" not in app.query_params
    assert app.query_params["hours"] == "6"


def test_choosing_an_animal_puts_it_in_the_link(store):
    app = open_page()
    zawadi = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Zawadi")
    app.selectbox(key="focus").set_value(zawadi.animal_id).run()
    assert app.query_params["animal"] == zawadi.animal_id


def test_ranger_sees_open_alerts_most_urgent_first_each_with_its_buttons(store):
    app = open_page("alerts")
    table = app.dataframe[0].value
    assert list(table[views.COL_TYPE]) == ["Possible mortality", "Low battery"]
    assert list(table[views.COL_ANIMAL]) == ["Kito", "Zawadi"]
    assert list(table[views.COL_PRIORITY]) == ["high", "low"]
    assert any(c.value.startswith("2 open · 1 high") for c in app.caption)
    mortality, low_battery = open_bridge(store).open_alerts(viewer=RANGER)
    cards = [m.value for m in app.markdown if "**HIGH**" in m.value or "**LOW**" in m.value]
    assert "Possible mortality" in cards[0] and "Low battery" in cards[1]
    for alert in (mortality, low_battery):
        assert app.button(key=f"acknowledge-{alert.alert_id}")
        assert app.button(key=f"open-resolve-{alert.alert_id}").label == "Resolve…"
    assert app.selectbox(key="alert").value == str(mortality.alert_id)


def test_after_a_collar_swap_the_ranger_sees_the_collars_new_animal_at_the_next_rerun_everywhere(store):
    # Kito's collar, which raised the mortality alert, now wears a buffalo the ranger names Baraka.
    # The rangers' pages, read a moment ago, must name Baraka at their next rerun, not a minute
    # later: an alert naming the wrong animal sends a team after the wrong one.
    amina = Viewer("amina", "ranger")
    kito = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Kito")
    live_map = open_page()
    alerts_page = open_page("alerts")
    animal_page = open_page("animals", query={"animal": kito.animal_id})
    assert "Kito" in names_on_map(store, amina, deck_spec(live_map))
    assert list(alerts_page.dataframe[0].value[views.COL_ANIMAL]) == ["Kito", "Zawadi"]
    assert animal_page.header[0].value == "Kito"

    with open_bridge(store) as bridge:
        bridge.register_animal("collar-003", "Baraka", species="Syncerus caffer")

    live_map.run()
    assert list(live_map.dataframe[0].value[views.COL_NAME]) == ["Amani", "Baraka", "Zawadi"]
    assert names_on_map(store, amina, deck_spec(live_map), fresh=False) == {"Amani", "Baraka", "Zawadi"}
    alerts_page.run()
    assert list(alerts_page.dataframe[0].value[views.COL_ANIMAL]) == ["Baraka", "Zawadi"]
    animal_page.run()
    assert animal_page.header[0].value == "Baraka"
    assert any(c.value.startswith("Syncerus caffer · collar collar-003") for c in animal_page.caption)


def test_zawadis_collar_taken_off_and_reporting_from_the_workshop_is_no_animal_on_the_rangers_live_map(store):
    # Tito took Zawadi's collar off; on the workshop bench it still fixes its place. The ranger's map shows
    # the herd, not a phantom animal named after the collar; the technician finds the collar in stock.
    zawadi = HERD[1]
    with open_bridge(store) as bridge:
        zawadi_id = next(a.animal_id for a in bridge.animals(viewer=RANGER) if a.name == "Zawadi")
        bridge.take_off_collar(zawadi_id, viewer=TECHNICIAN, removed_at=SEED_END + timedelta(minutes=30))
        bench = SEED_END + timedelta(hours=1)
        body = tts_uplink(zawadi.device_id, 100, "status", status_values(zawadi, bench, 0.600, 37.600, 4000), bench)
        assert bridge.ingest_tts_uplink(body).ok
        (collar,) = bridge.devices([zawadi.device_id], viewer=TECHNICIAN)
        assert (collar.animal_id, collar.in_stock) == (None, True) and collar.last_seen is not None  # heard, no animal
        with bridge.db.read() as session:  # filed under the record of its time in stock
            stock_record = queries.collar_holders(session, [zawadi.device_id])[zawadi.device_id]
        assert [c.device_id for c in bridge.collars_in_stock(viewer=TECHNICIAN)] == [zawadi.device_id]

    live_map = open_page()
    spec = deck_spec(live_map)
    assert {p["name"] for p in layer(spec, "animals")["data"]} == {"Amani", "Kito"}
    assert names_on_map(store, Viewer("amina", "ranger"), spec) == {"Amani", "Kito"}
    assert stock_record not in {t["animal_id"] for t in tracks_on_map(store, RANGER, spec)}
    assert zawadi.device_id not in list(live_map.dataframe[0].value[views.COL_NAME])


def test_after_two_collars_are_swapped_between_animals_the_animal_page_names_each_ones_new_collar_at_the_next_rerun(
        store):
    # Kito's and Amani's collars were swapped in the field and the store moved them (no animal added or
    # flagged, no collar heard since): Kito's page names collar-001 at its next rerun, not a minute later.
    from sqlalchemy import update

    from lora_bridge.store.tables import Animal

    kito = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Kito")
    animal_page = open_page("animals", query={"animal": kito.animal_id})
    assert any(c.value.endswith("· collar collar-003") for c in animal_page.caption)

    with open_bridge(store) as bridge, bridge.db.write() as session:
        session.execute(update(Animal).where(Animal.name == "Amani").values(device_id=None))
        session.execute(update(Animal).where(Animal.name == "Kito").values(device_id="collar-001"))
        session.execute(update(Animal).where(Animal.name == "Amani").values(device_id="collar-003"))

    animal_page.run()
    assert animal_page.header[0].value == "Kito"
    assert any(c.value.endswith("· collar collar-001") for c in animal_page.caption)


def test_nobody_sees_the_herd_before_signing_in(store):
    app = open_page(user=None)
    assert [t.value for t in app.title] == ["Tembo"]
    assert not app.get("deck_gl_json_chart") and not app.dataframe
    app.text_input(key="sign_in_username").input("amina")
    app.text_input(key="sign_in_password").input("not the password")
    app.button[0].click().run()
    assert any("Wrong username or password" in e.value for e in app.error)
    assert not app.get("deck_gl_json_chart")


def test_ranger_acknowledges_then_resolves_an_alert_as_false_alarm(store):
    mortality = open_bridge(store).open_alerts(viewer=RANGER)[0]
    low_battery = open_bridge(store).open_alerts(viewer=RANGER)[1]
    app = open_page("alerts", user="amina")
    ack, resolve = f"acknowledge-{mortality.alert_id}", f"resolve-{mortality.alert_id}"
    assert not app.button(key=ack).disabled
    app.button(key=ack).click().run()
    assert not app.exception
    acknowledged = open_bridge(store).alert(mortality.alert_id, viewer=RANGER)
    assert (acknowledged.state, acknowledged.acknowledged_by) == ("acknowledged", "amina")
    assert any("acknowledged by amina" in s.value for s in app.success)
    assert app.button(key=ack).disabled

    assert not app.radio, "a card opens its verdict only when asked"
    app.button(key=f"open-resolve-{mortality.alert_id}").click().run()
    assert app.radio(key=f"verdict-{mortality.alert_id}").value is None  # no verdict chosen for it yet
    assert app.button(key=resolve).disabled
    app.radio(key=f"verdict-{mortality.alert_id}").set_value("False alarm").run()
    app.text_input(key=f"note-{mortality.alert_id}").input("Asleep by the dam").run()
    app.button(key=resolve).click().run()
    assert not app.exception
    resolved = open_bridge(store).alert(mortality.alert_id, viewer=RANGER)
    assert (resolved.state, resolved.verdict, resolved.resolved_by) == ("resolved", "false_alarm", "amina")
    assert resolved.note == "Asleep by the dam"
    assert list(app.dataframe[0].value[views.COL_TYPE]) == ["Low battery"]
    app.button(key=f"open-resolve-{low_battery.alert_id}").click().run()
    assert app.radio(key=f"verdict-{low_battery.alert_id}").value is None  # the next alert starts afresh
    resolved_list = next(e for e in app.expander if e.label.startswith("Resolved alerts"))
    row = resolved_list.dataframe[0].value.iloc[0]
    assert (row["Verdict"], row["Note"], row["By"]) == ("False alarm", "Asleep by the dam", "amina")
    precision = app.expander[-1]
    assert precision.label == "Alert precision from rangers' verdicts"
    row = precision.dataframe[0].value.iloc[0]
    assert (row[views.COL_TYPE], row["False alarm"], row["True"]) == ("Possible mortality", 1, 0)
    assert row["Precision (%)"] == 0.0
    assert "alert" not in app.query_params or app.query_params["alert"] != str(mortality.alert_id)


def test_ranger_whose_tap_on_acknowledge_comes_after_anothers_sees_who_took_it_and_is_never_told_it_was_hers(store):
    mortality = open_bridge(store).open_alerts(viewer=RANGER)[0]
    app = open_page("alerts", user="amina")
    with open_bridge(store) as bridge:  # Juma, on his phone, takes the alert a moment before Amina taps
        bridge.acknowledge_alert(mortality.alert_id, Viewer("juma", "ranger"))

    app.button(key=f"acknowledge-{mortality.alert_id}").click().run()
    assert not app.exception
    for _ in range(2):  # after her tap, and at the queue's next refresh
        assert not [s.value for s in app.success if "acknowledged by amina" in s.value]
        assert any("acknowledged by juma" in m.value for m in app.markdown), [m.value for m in app.markdown][:3]
        assert app.button(key=f"acknowledge-{mortality.alert_id}").disabled
        app.run()
    assert open_bridge(store).alert(mortality.alert_id, viewer=RANGER).acknowledged_by == "juma"


def test_a_long_queue_shows_its_most_urgent_alerts_as_cards_and_every_alert_in_its_table(sqlite_url, monkeypatch):
    # The page's own numbers are read from its run, not by importing its script: an import runs the
    # page at once, on the store of the checkout's default URL (it had left var/tembo.db behind).
    from ranger_dashboard import bench

    with open_bridge(sqlite_url) as bridge:
        bench.fill_store(bridge, animals=200, days=1, activity_days=0, batch=500)  # a collar alert on 1 in 25
        bridge.add_user("amina", "ranger", ACCOUNTS["amina"][1], actor=bench.BENCH_ADMIN)
        queue = views.sort_alerts(bridge.open_alerts(viewer=RANGER))
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = open_page("alerts", user="amina")
    cards = [b.key.removeprefix("acknowledge-") for b in app.button if b.key and b.key.startswith("acknowledge-")]
    # The most urgent alerts are cards with their buttons, in the queue's order; all of them in the table.
    assert 0 < len(cards) < len(queue)
    assert cards == [str(a.alert_id) for a in queue[: len(cards)]]
    table = next(e for e in app.expander if e.label.startswith(f"All {len(queue)} open alerts"))
    assert len(table.dataframe[0].value) == len(queue)
    assert not app.radio and not [t for t in app.text_input if t.key and t.key.startswith("note-")]
    # The ranger asks for more cards: the next alerts of the queue come as cards too.
    app.button(key="more-alert-cards").click().run()
    more = [b.key.removeprefix("acknowledge-") for b in app.button if b.key and b.key.startswith("acknowledge-")]
    assert more == [str(a.alert_id) for a in queue[: 2 * len(cards)]]


def test_every_time_a_ranger_reads_on_the_alerts_and_animal_pages_says_it_is_utc(store):
    # The control room keeps East Africa Time (UTC+3); the dashboard shows UTC. The alert picker said
    # "Kito · 2026-11-20 18:00 · new" and the animal's "Last seen" tooltip "2026-11-20 18:00", with no
    # zone where every table heading and the alert's details say UTC: read as local time, 3 h off.
    alerts = open_page("alerts")
    labels = alerts.selectbox(key="alert").options
    assert len(labels) == 2 and all(re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d UTC · ", label) for label in labels), labels
    animal = open_page("animals")
    (last_seen,) = [m for m in animal.metric if m.label == "Last seen"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", last_seen.help), last_seen.help


def test_ranger_gives_a_verdict_on_an_alert_tembo_closed_itself(store):
    bridge = open_bridge(store)
    low = next(a for a in bridge.open_alerts(viewer=RANGER) if a.alert_type == "low_battery")
    zawadi = next(animal for animal in HERD if animal.device_id == low.device_id)
    when = SEED_END + timedelta(hours=1)  # a new pack: Tembo closes the alert, with no verdict
    body = tts_uplink(zawadi.device_id, 100, "status", status_values(zawadi, when, zawadi.lat, zawadi.lon, 4000), when)
    assert bridge.ingest_tts_uplink(body).ok
    assert [a.alert_id for a in bridge.alerts_awaiting_verdict(viewer=RANGER)] == [low.alert_id]

    app = open_page("alerts", user="amina")
    awaiting = next(e for e in app.expander if e.label.startswith("Closed by Tembo, awaiting your verdict"))
    assert awaiting.label.endswith("(1)")
    assert app.button(key=f"judge-{low.alert_id}").disabled  # no verdict chosen yet
    app.radio(key=f"closed-verdict-{low.alert_id}").set_value("True alert").run()
    app.button(key=f"judge-{low.alert_id}").click().run()
    assert not app.exception

    judged = open_bridge(store).alert(low.alert_id, viewer=RANGER)
    assert (judged.state, judged.verdict, judged.resolved_by) == ("resolved", "true", "amina")
    assert not any(e.label.startswith("Closed by Tembo") for e in app.expander)
    row = app.expander[-1].dataframe[0].value
    assert row.loc[row[views.COL_TYPE] == "Low battery", "Precision (%)"].tolist() == [100.0]


def test_alert_link_opens_that_alert_with_its_history(store):
    bridge = open_bridge(store)
    low_battery = next(a for a in bridge.open_alerts(viewer=RANGER) if a.alert_type == "low_battery")
    bridge.acknowledge_alert(low_battery.alert_id, Viewer("juma", "ranger"))
    app = open_page("alerts", query={"alert": str(low_battery.alert_id)})
    assert app.selectbox(key="alert").value == str(low_battery.alert_id)
    assert any(m.value == "#### Low battery" for m in app.markdown)
    assert any("acknowledged by juma" in m.value for m in app.markdown)
    history = app.dataframe[-1].value  # the history, under the alert: in sentences, no technical column for a ranger
    assert list(history.columns) == [views.COL_TIME, views.COL_WHO, views.COL_WHAT]
    assert "Acknowledged by juma." in list(history[views.COL_WHAT])


def test_ranger_sees_battery_behaviour_versions_and_activity_per_animal(store):
    app = open_page("animals")
    table = app.dataframe[-1].value  # the herd, under the animal
    zawadi = table[table[views.COL_NAME] == "Zawadi"].iloc[0]
    assert zawadi[views.COL_BATTERY] == "3.15 V (low)"
    assert zawadi[views.COL_BEHAVIOUR] == "walk"
    assert (zawadi[views.COL_FIRMWARE], zawadi[views.COL_MODEL]) == ("1.2.3", str(SHIPPED_MODEL_VERSION))
    assert app.header[0].value == "Amani"
    assert metric(app, "Behaviour") == "forage"
    assert metric(app, "Firmware") == "1.2.3"
    assert any("forage 70 %" in m.value for m in app.markdown)
    assert len(app.get("vega_lite_chart")) == 3  # speed, daily budget, VeDBA
    assert metric(app, "Temperature") == "27.5 °C"
    assert any(c.value.startswith("6 fixes in 7 d · MCP 100 %:") and "KDE 95%" in c.value for c in app.caption)
    assert any(m.value.startswith("**Speed:** median") for m in app.markdown)
    night = next(d.value for d in app.dataframe if "VeDBA mean (mg)" in d.value.columns)
    assert set(night.index) <= {"day", "night"}
    assert [b.label for b in app.get("download_button")] == ["CSV", "GeoJSON", "GeoPackage", "Shapefile",
                                                          "Movebank CSV"]
    maps = [json.loads(chart.proto.json) for chart in app.get("deck_gl_json_chart")]
    assert {"home-range-kde", "home-range-mcp", "track"} <= {layer["id"] for layer in maps[0]["layers"]}


def test_animal_link_opens_that_animal(store):
    kito = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Kito")
    app = open_page("animals", query={"animal": kito.animal_id, "days": "3"})
    assert app.header[0].value == "Kito"
    assert metric(app, "Behaviour") == "rest"
    assert app.query_params["animal"] == kito.animal_id


def test_empty_store_tells_the_ranger_what_to_do(sqlite_url, monkeypatch):
    bridge = open_bridge(sqlite_url)
    bridge.load_geography(RESERVE)
    add_accounts(bridge)
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = open_page()
    assert any("No collared animals yet" in i.value for i in app.info)
    assert "reserve-boundary" in {item["id"] for item in deck_spec(app)["layers"]}
    assert any("No open alerts" in i.value for i in open_page("alerts").info)
    assert any("No collared animals yet" in i.value for i in open_page("animals").info)


@pytest.fixture
def researcher_store(tmp_path, monkeypatch) -> str:
    """A store with 12 hourly fixes per animal (a copy of its own of the one `seed` filled for this process),
    read by a researcher dashboard on the data's clock."""
    sqlite_url = seeded_sqlite(f"sqlite:///{tmp_path / 'seeded.db'}", hours=12)
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "researcher")
    monkeypatch.setenv("TEMBO_DASHBOARD_CLOCK", "data")
    return sqlite_url


def test_researcher_sees_positions_on_a_one_km_grid(researcher_store):
    spec = deck_spec(open_page(user="rose"))
    amani = next(p for p in layer(spec, "animals")["data"] if p["name"] == "Amani")
    # The seeded fixes are days old, older than the researcher's delay: the newest, on the grid.
    coarse = coarsen(HERD[0].lat + 11 * HERD[0].step_lat, HERD[0].lon + 11 * HERD[0].step_lon, 1000)
    assert (amani["lat"], amani["lon"]) == pytest.approx(coarse, abs=1e-5)
    assert "open-alerts" not in {item["id"] for item in spec["layers"]}


def test_researcher_sees_alerts_without_positions_and_cannot_act_on_them(researcher_store):
    app = open_page("alerts", user="rose")
    assert set(app.dataframe[0].value[views.COL_POSITION]) == {"withheld"}
    assert [b.key for b in app.button] == ["sign_out"]
    assert any("rangers acknowledge and resolve" in i.value for i in app.info)
    animals = open_page("animals", user="rose").dataframe[-1].value
    assert set(animals[views.COL_POSITION]) == {"withheld"}


def test_researcher_reads_a_collars_battery_and_temperature_as_late_as_its_fixes_on_the_alert_and_animal_pages(
    researcher_store,
):
    kito = next(animal for animal in HERD if animal.name == "Kito")
    with open_bridge(researcher_store) as bridge:
        # Kito's collar, still where its mortality alert was raised days ago, reports now: hot, drained.
        heard = datetime.now(UTC).replace(microsecond=0)
        values = {**status_values(kito, heard, 0.0, 0.0, 3310), "temperature_c": 39.0}
        assert bridge.ingest_tts_uplink(tts_uplink(kito.device_id, 50, "status", values, heard)).ok
        kito_id = next(a.animal_id for a in bridge.animals(viewer=RANGER) if a.name == "Kito")
        mortality = next(a.alert_id for a in bridge.alerts(viewer=RANGER) if a.alert_type == "mortality")

    alerts = open_page("alerts", query={"alert": str(mortality)}, user="rose")
    collar = [m.value for m in alerts.markdown if m.value.startswith("**Collar")]
    assert collar and "3.60 V" in collar[0] and "27.5 °C" in collar[0], collar
    assert not [text for text in collar if "3.31 V" in text or "39.0" in text], "the collar's report of a moment ago"
    animal = open_page("animals", query={"animal": kito_id}, user="rose")
    assert (metric(animal, "Battery"), metric(animal, "Temperature")) == ("3.60 V", "27.5 °C")


def test_a_link_opened_later_in_the_session_moves_the_focus(store):
    animals = {a.name: a.animal_id for a in open_bridge(store).animals(viewer=RANGER)}
    app = open_page(query={"animal": animals["Kito"]})
    assert app.selectbox(key="focus").value == animals["Kito"]
    app.query_params["animal"] = animals["Zawadi"]
    app.run()
    assert app.selectbox(key="focus").value == animals["Zawadi"]
    assert layer(deck_spec(app), "focus")["data"][0]["name"] == "Zawadi"


def test_alert_links_to_its_animal_on_the_live_map_and_shows_its_evidence(store):
    app = open_page("alerts", user="amina")
    kito = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Kito")
    link = app.get("page_link")[0].proto
    assert link.label == "Show on the live map"
    # The live map is the default page, so its link is the dashboard's root URL.
    assert (link.page, link.query_string) == ("", f"animal={kito.animal_id}")
    assert any(e.label == "Evidence the bridge recorded" for e in app.expander)
    assert app.get("deck_gl_json_chart")  # the track before and after it
    assert any(m.value.startswith("**Collar now:** battery ") for m in app.markdown), "its collar's state"


def test_an_alerts_evidence_reads_its_own_collar_and_logs_no_view_of_the_herds_places(store):
    admin = Viewer("audit.reader", "admin")
    app = open_page(user="amina")  # the live map first: the herd's places, logged
    with open_bridge(store) as bridge:
        before = {(e.entry_id, e.repeats) for e in bridge.audit_log(viewer=admin)}  # a repeat counts in its line
    app.switch_page("screens/alerts.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(m.value.startswith("**Collar now:** battery ") for m in app.markdown)
    with open_bridge(store) as bridge:
        logged = [e for e in bridge.audit_log(viewer=admin) if (e.entry_id, e.repeats) not in before]
    herd_views = [e for e in logged if e.action == "animals"]
    assert not [e for e in herd_views if e.username == "amina"], [(e.action, e.detail) for e in herd_views]


def test_unreadable_store_is_reported_without_its_password(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file where the store's folder should be")
    monkeypatch.setenv("TEMBO_DATABASE_URL", f"sqlite:///{not_a_folder / 'tembo.db'}")
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    assert any("cannot read the Tembo store" in e.value for e in app.error)
    assert data.safe_url("postgresql://tembo:s3cret@db:5432/tembo") == "postgresql://tembo:***@db:5432/tembo"


def test_a_link_naming_no_such_animal_shows_the_whole_herd(store):
    app = open_page(query={"animal": "999", "hours": "5"})
    assert app.selectbox(key="focus").value == "all"
    assert app.selectbox(key="track_hours").value == 24
    assert "animal" not in app.query_params
    assert app.query_params["hours"] == "24"


def test_ranger_moves_the_reserve_back_in_time_and_sees_the_herd_and_alerts_as_they_were(store, monkeypatch):
    from datetime import timedelta

    from browser_helpers import SEED_END

    monkeypatch.setenv("TEMBO_DASHBOARD_CLOCK", "data")  # 'now' is the newest report, not today's date
    moment = SEED_END - timedelta(hours=3)  # Kito's mortality alert comes at SEED_END
    app = open_page(query={"at": moment.strftime("%Y-%m-%dT%H:%M")})
    assert app.slider(key="as_of_slider").value == moment.replace(tzinfo=None)
    spec = deck_spec(app)
    animals = {p["name"]: p for p in layer(spec, "animals")["data"]}
    assert animals["Kito"]["state"] == "normal"
    assert animals["Zawadi"]["state"] == "alert"  # low battery from its first report
    amani = HERD[0]
    assert (animals["Amani"]["lat"], animals["Amani"]["lon"]) == (
        pytest.approx(amani.lat + 2 * amani.step_lat, abs=1e-5),
        pytest.approx(amani.lon + 2 * amani.step_lon, abs=1e-5),
    )
    assert [r["name"] for r in layer(spec, "open-alerts")["data"]] == ["Zawadi"]
    amani_id = next(p["animal_id"] for p in layer(spec, "animals")["data"] if p["name"] == "Amani")
    amani_track = [t for t in tracks_on_map(os.environ["TEMBO_DATABASE_URL"], RANGER, spec) if t["animal_id"] == amani_id]
    assert len(amani_track) == 2  # three fixes: the track ends at the moment shown
    assert metric(app, "Open alerts") == "1"
    assert any("not live" in c.value for c in app.caption)

    alerts = app.switch_page("screens/alerts.py").run()
    assert app.query_params["at"] == moment.strftime("%Y-%m-%dT%H:%M")  # the moment follows the ranger
    assert not [b for b in alerts.button if b.label == "Acknowledge"], "the past is not acted on"
    assert any("Low battery" in m.value for m in alerts.markdown)
    assert not any("Possible mortality" in m.value for m in alerts.markdown)

    app.switch_page("screens/live_map.py").run()
    app.button(key="as_of_live").click().run()
    assert "at" not in app.query_params
    live = {p["name"]: p["state"] for p in layer(deck_spec(app), "animals")["data"]}
    assert live["Kito"] == "alert"

    app.slider(key="as_of_slider").set_value(moment.replace(tzinfo=None)).run()
    assert app.query_params["at"] == moment.strftime("%Y-%m-%dT%H:%M")
    assert {p["name"]: p["state"] for p in layer(deck_spec(app), "animals")["data"]}["Kito"] == "normal"


@pytest.mark.parametrize("hours_back", [None, 2.5], ids=["live", "as_of"])
def test_live_map_and_its_name_tiles_place_and_label_the_same_animals_at_the_same_moment(store, monkeypatch, hours_back):
    from datetime import timedelta
    from urllib.parse import parse_qs, urlsplit

    from browser_helpers import SEED_END

    from ranger_dashboard import name_routes, name_tiles, roles

    monkeypatch.setenv("TEMBO_DASHBOARD_CLOCK", "data")
    moment = None if hours_back is None else SEED_END - timedelta(hours=hours_back)
    app = open_page(query={} if moment is None else {"at": moment.strftime("%Y-%m-%dT%H:%M")})
    spec = deck_spec(app)
    drawn = layer(spec, "animals")["data"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(layer(spec, "animal-names")["data"]).query).items()}
    assert query.get("at") == (None if moment is None else moment.isoformat())
    viewer = app.session_state[roles.VIEWER_KEY]
    assert viewer == Viewer("amina", "ranger")
    with open_bridge(os.environ["TEMBO_DATABASE_URL"]) as bridge:
        # The herd the name tiles are cut from is the map's own, record for record (states, ages).
        composed = name_routes.herd_points(bridge, viewer, moment, "data")
        # The map's dots carry part of each record (`ANIMAL_DOT_FIELDS`; the state's colour as
        # `fill`): that part, and the colour, are the herd's own.
        kept = map_layers.ANIMAL_DOT_FIELDS
        assert composed and sorted(
            ({**{key: record[key] for key in kept}, "colour": record["fill"]} for record in drawn), key=lambda r: r["name"]
        ) == [{**{key: record[key] for key in kept}, "colour": record["colour"]} for record in composed]
        # Close in, every animal is named once, where the map draws its dot, for the map's moment.
        zoom = 16
        named = []
        tiles = {name_tiles.tile_of(r["lat"], r["lon"], zoom) for r in drawn}
        for x, y in tiles:
            features = name_routes.names_for(bridge, viewer, zoom, x, y, query, "data")["features"]
            named += [(f["properties"]["name"], *f["geometry"]["coordinates"]) for f in features]
    assert sorted(named) == sorted((r["name"], r["lon"], r["lat"]) for r in drawn)
    kito = next(r for r in drawn if r["name"] == "Kito")
    assert kito["state"] == ("alert" if moment is None else "normal")  # the mortality alert comes at SEED_END


def test_live_map_has_its_tracks_and_names_read_while_the_browser_is_still_loading_it(store):
    from urllib.parse import parse_qs, urlsplit

    from ranger_dashboard import name_routes, track_routes

    name_routes._cache.clear()
    spec = deck_spec(open_page())
    name_routes._warming.submit(lambda: None).result(timeout=TIMEOUT_S)  # one thread: the page's reads are done
    amina = Viewer("amina", "ranger")
    query = {key: values[0] for key, values in parse_qs(urlsplit(layer(spec, "tracks")["data"]).query).items()}
    since, until = track_routes.window(query)
    ready = list(name_routes._cache.items())
    (tracks,) = [kept for key, (_, kept) in ready if key[:4] == ("tracks", amina, since, until)]
    # The answer the map's fetch will find is the route's own for this ranger, as the browser would get it.
    assert tracks.viewer == amina and json.loads(tracks.value) == tracks_on_map(store, amina, spec)
    (herd,) = [kept for key, (_, kept) in ready if key[:3] == ("herd", amina, None)]  # live: no "as of"
    assert herd.viewer == amina and {p["name"] for p in herd.value} == {"Amani", "Kito", "Zawadi"}


def test_a_live_map_run_reads_the_herds_change_counter_once_for_its_panel_and_the_reads_ahead(store, monkeypatch):
    from ranger_dashboard import name_routes

    reads = []
    counter = Bridge.change_counter

    def counted(bridge):
        reads.append(1)
        return counter(bridge)

    monkeypatch.setattr(Bridge, "change_counter", counted)
    name_routes._cache.clear()
    app = open_page()
    name_routes._warming.submit(lambda: None).result(timeout=TIMEOUT_S)  # the tracks and names read ahead
    assert len(reads) == 1  # the whole animals table, read once for the page, its panel and the reads ahead
    assert layer(deck_spec(app), "tracks")["data"] and {p["name"] for p in layer(deck_spec(app), "animals")["data"]}


def test_every_hand_out_of_a_live_map_run_is_in_the_admins_audit_log(store, monkeypatch):
    from collections import Counter

    from ranger_dashboard import kept_answers

    handed: Counter[str] = Counter()  # reads of positions the run handed to amina, by action

    def counting_hand_out(bridge, kept, viewer):
        handed.update(read.action for read in kept.reads)
        return kept_answers.hand_out(bridge, kept, viewer)

    monkeypatch.setenv("TEMBO_DASHBOARD_CLOCK", "data")  # 'now' is read from the herd: one more hand-out
    monkeypatch.setattr(data, "hand_out", counting_hand_out)
    deck_spec(open_page())
    assert handed["animals"] >= 3 and handed["latest_positions"] >= 1 and handed["alerts"] >= 2
    with open_bridge(store) as bridge:
        lines = bridge.audit_log(viewer=Viewer("ada", "admin"), username="amina")
    logged = Counter()
    for line in lines:
        if line.action != "signed_in":  # the test's own sign-in, no view of positions
            logged[line.action] += line.repeats
    assert logged == handed  # every hand-out of the run, once each, nothing more


def test_a_live_map_whose_audit_write_fails_shows_no_position_and_logs_no_view_of_them(store, monkeypatch):
    from lora_bridge.service import Bridge

    record_reads = Bridge.record_reads

    def failing_for_positions(self, reads, at=None):
        reads = list(reads)
        if any(read.action == "latest_positions" for read in reads):
            raise RuntimeError("the audit log cannot be written")
        return record_reads(self, reads, at)

    monkeypatch.setattr(Bridge, "record_reads", failing_for_positions)
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    app.session_state[login.SESSION_KEY] = signed_in("amina")
    app.run()
    assert app.exception and "audit log cannot be written" in app.exception[0].value
    assert not app.get("deck_gl_json_chart"), "no map without its audit line"
    assert not app.metric and not app.dataframe
    with open_bridge(store) as bridge:
        lines = bridge.audit_log(viewer=Viewer("ada", "admin"), username="amina")
    assert not [line for line in lines if line.action == "latest_positions"]  # refused, so never viewed



def _store_refuses(store_error: bool):
    """A bridge whose acknowledgements and resolutions are not kept when Amina makes them: Juma's tap on
    his phone reaches the store a moment before hers (after her screen was drawn), or the store cannot
    take the write (a backup holding SQLite's lock)."""
    from sqlalchemy.exc import OperationalError

    acknowledge, resolve = Bridge.acknowledge_alert, Bridge.resolve_alert

    def refused(self):  # noqa: ANN001, ANN202
        raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))

    def acknowledged_first(self, alert_id, viewer):  # noqa: ANN001, ANN202
        if viewer.username == "amina":
            if store_error:
                refused(self)
            acknowledge(self, alert_id, Viewer("juma", "ranger"))
        return acknowledge(self, alert_id, viewer)

    def resolved_first(self, alert_id, viewer, verdict, note=None):  # noqa: ANN001, ANN202
        if viewer.username == "amina":
            if store_error:
                refused(self)
            resolve(self, alert_id, Viewer("juma", "ranger"), "true")
        return resolve(self, alert_id, viewer, verdict, note)

    return {"acknowledge_alert": acknowledged_first, "resolve_alert": resolved_first}


@pytest.mark.parametrize("store_error", [False, True], ids=["juma-first", "store-busy"])
def test_ranger_is_never_told_an_alert_is_hers_when_the_store_did_not_keep_her_acknowledgement(
    store, monkeypatch, store_error
):
    # Amina taps Acknowledge on the mortality alert at night; her tap is not kept (Juma's reached the
    # store a moment before, or the store could not take the write). Neither then nor at the queue's
    # next refresh may her phone say the alert is hers: she is told it was not kept, beside the alert.
    mortality = open_bridge(store).open_alerts(viewer=RANGER)[0]
    app = open_page("alerts", user="amina")
    for name, method in _store_refuses(store_error).items():
        monkeypatch.setattr(Bridge, name, method)
    app.button(key=f"acknowledge-{mortality.alert_id}").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(e.value.startswith("Could not acknowledge") for e in app.error), [e.value for e in app.error]
    for _ in range(2):  # after her tap, and at the queue's next refresh
        assert not [s.value for s in app.success if "acknowledged by amina" in s.value]
        assert not [m.value for m in app.markdown if "acknowledged by amina" in m.value]
        app.run()
    kept = open_bridge(store).alert(mortality.alert_id, viewer=RANGER)
    assert (kept.state, kept.acknowledged_by) == (("new", None) if store_error else ("acknowledged", "juma"))


def test_a_resolution_the_store_did_not_keep_leaves_the_rangers_verdict_and_note_in_her_form(store, monkeypatch):
    # The store cannot take Amina's resolution: she is told so, and her verdict and note wait in the open
    # form for her to send again, rather than vanish with a "resolved by amina" the store never kept.
    low_battery = open_bridge(store).open_alerts(viewer=RANGER)[1]
    app = open_page("alerts", user="amina")
    monkeypatch.setattr(Bridge, "resolve_alert", _store_refuses(True)["resolve_alert"])
    app.button(key=f"open-resolve-{low_battery.alert_id}").click().run()
    app.radio(key=f"verdict-{low_battery.alert_id}").set_value("True alert").run()
    app.text_input(key=f"note-{low_battery.alert_id}").input("Collar at 3.3 V, swap it Tuesday").run()
    app.button(key=f"resolve-{low_battery.alert_id}").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(e.value.startswith("Could not resolve") for e in app.error)
    app.run()
    assert not [s.value for s in app.success if "resolved by amina" in s.value]
    assert app.radio(key=f"verdict-{low_battery.alert_id}").value == "True alert"
    assert app.text_input(key=f"note-{low_battery.alert_id}").value == "Collar at 3.3 V, swap it Tuesday"
    assert open_bridge(store).alert(low_battery.alert_id, viewer=RANGER).state == "new"


def test_ranger_at_night_sees_a_plain_message_not_a_traceback_while_a_backup_holds_the_store(store, monkeypatch):
    # Positions leave the dashboard only with their audit line; while another program holds SQLite's
    # write lock (a backup, `tembo bridge compact`) that line waits, and the page had shown the
    # driver's traceback ("database is locked", its SQL) instead of the map. The live map keeps the
    # herd she last saw, marked not live (below); the Alerts and Animals pages, which she had not opened
    # before the backup, say the store is busy.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setattr(data, "BUSY_HOLD_S", 0.0)  # the map is live again at the first run after the backup
    app = open_page()
    told = {}
    with backup_holds_the_store(store):
        for name, script in (("live map", None), ("alerts", "alerts"), ("animals", "animals")):
            shown = app.switch_page(f"screens/{script}.py").run() if script else app.run()
            told[name] = ([e.value for e in shown.exception], [w.value for w in shown.warning],
                          [b.key for b in shown.sidebar.button])
    back = app.switch_page("screens/live_map.py").run()

    for name, (exceptions, warnings, sidebar_buttons) in told.items():
        assert exceptions == [], name
        if name == "live map":
            assert [w.startswith("**Not live: the Tembo store is busy**") for w in warnings] == [True], warnings
        else:
            assert warnings == [data.STORE_BUSY_MESSAGE], name
        assert "sign_out" in sidebar_buttons, f"{name}: still signed in, the navigation drawn"
    assert not back.exception and not back.warning and back.get("deck_gl_json_chart"), "the map once it is free"


def test_field_technician_reads_on_the_updates_page_each_collars_battery_and_link_as_late_as_the_api_gives_them(
    tmp_path, monkeypatch
):
    # Amani's collar reported 3 h ago (3600 mV) and again 5 min ago from the edge of the mast's range
    # (3333 mV, -119 dBm). Tito, a field technician, sees collars an hour late on the API; the Updates
    # page had shown him the status of 5 min ago, which says where the animal is now.
    sqlite_url = seeded_sqlite(f"sqlite:///{tmp_path / 'seeded.db'}")
    bridge = open_bridge(sqlite_url)
    amani = HERD[0]
    now = datetime.now(UTC)
    for f_cnt, (ago, battery_mv, rssi_dbm) in enumerate(((timedelta(hours=3), 3600, -100.0),
                                                          (timedelta(minutes=5), 3333, -119.0)), start=900):
        when = now - ago
        body = json.loads(tts_uplink(amani.device_id, f_cnt, "status",
                                     status_values(amani, when, amani.lat, amani.lon, battery_mv), when))
        for gateway in body["uplink_message"]["rx_metadata"]:
            gateway["rssi"] = gateway["channel_rssi"] = rssi_dbm
        assert bridge.ingest_tts_uplink(json.dumps(body).encode()).ok
    technician = Viewer("tito", "field_technician")
    (api_view,) = [v for v in bridge.fleet_versions(viewer=technician) if v["device_id"] == amani.device_id]
    bridge.close()
    assert (api_view["battery_mv"], api_view["last_rssi_dbm"]) == (3600, -100.0)
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "any")  # the field office's dashboard, every role signs in

    app = open_page("updates", user="tito")
    table = app.dataframe[0].value
    (row,) = table[table["Collar"] == amani.device_id].to_dict("records")
    assert (row["Battery (mV)"], row["RSSI (dBm)"]) == (3600, -100.0), \
        "the page says what the collar reported 5 min ago: the animal is at the edge of the mast's range now"


def views_in_audit_log(store: str, username: str, action: str) -> int:
    """How many views of `action` ('latest_positions', 'alerts') the audit log holds for `username`,
    each line's repeats counted, as an admin reads it."""
    with open_bridge(store) as bridge:
        return sum(line.repeats for line in bridge.audit_log(viewer=Viewer("ada", "admin"), username=username)
                   if line.action == action)


def _animal_dots(app: AppTest) -> dict[str, tuple[float, float]]:
    layer = next(item for item in deck_spec(app)["layers"] if item["id"] == "animals")
    return {dot["name"]: (dot["lat"], dot["lon"]) for dot in layer["data"]}


def test_while_a_backup_holds_the_store_each_viewer_keeps_only_the_map_its_own_role_was_shown(
    store, monkeypatch
):
    # The control room's dashboard (every role signs in). Amina, a ranger, and Rose, a researcher, had
    # the live map open before the backup took the store: each keeps her own last map while it runs,
    # Rose's coarse and a day late as before, never the ranger's exact one. Juma, a ranger who had not
    # opened the map, is not handed Amina's: he is told the store is busy.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "any")
    ranger, researcher = open_page(user="amina"), open_page(user="rose")
    seen = {"amina": _animal_dots(ranger), "rose": _animal_dots(researcher)}
    assert seen["amina"] != seen["rose"], "the researcher's map is coarse and late"
    juma = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    juma.session_state[login.SESSION_KEY] = signed_in("juma")
    with backup_holds_the_store(store):
        ranger.run()
        researcher.run()
        juma.run()
    for app, username in ((ranger, "amina"), (researcher, "rose")):
        assert not app.exception, [e.value for e in app.exception]
        assert any(w.value.startswith("**Not live: the Tembo store is busy**") for w in app.warning), username
        assert _animal_dots(app) == seen[username], f"{username} keeps the map her own role was shown"
    assert not juma.exception and not juma.get("deck_gl_json_chart"), "no map made for someone else"
    assert [w.value for w in juma.warning] == [data.STORE_BUSY_MESSAGE]


def test_a_ranger_signed_in_for_more_than_a_minute_keeps_her_map_not_live_while_a_backup_holds_the_store(
    store, monkeypatch
):
    # Amina signed in at the start of her shift; the dashboard notes her sign-in's last use, a write, at
    # most once a minute. Five minutes on a backup takes the store's write lock: that note could not be
    # written and the gate failed on it, so she was told "store busy" in place of the herd she last saw
    # (a page was kept during a backup only in the first minute after a sign-in).
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    app = open_page(user="amina")
    seen = _animal_dots(app)
    with open_bridge(store) as bridge, bridge.db.write() as session:
        accounts.touch_session(session, app.session_state[login.SESSION_KEY], utc_now() - timedelta(minutes=5))
    with backup_holds_the_store(store):
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert [w.value.startswith(f"**{views.NOT_LIVE_HEADLINE}**") for w in app.warning] == [True], \
        [w.value for w in app.warning]
    assert _animal_dots(app) == seen, "the herd she last saw"
    assert "sign_out" in [b.key for b in app.sidebar.button], "still signed in"


def test_a_ranger_opening_animal_after_animal_does_not_push_another_rangers_map_out_of_what_a_backup_keeps(
    store, monkeypatch
):
    # The control room's dashboard keeps, for a backup, the last answers each page showed each viewer, a
    # bounded number of them (LAST_READS_KEPT). Juma goes through the herd animal by animal while Amina
    # watches the live map; then a backup takes the store. Juma's animal pages had pushed Amina's map out
    # of what was kept, and she was told "store busy" in place of the herd she was watching.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "any")
    data._last_reads.clear()
    juma, amina = open_page(user="juma"), open_page(user="amina")
    monkeypatch.setattr(data, "LAST_READS_KEPT", 6)  # the two live maps' answers, and no more
    seen = _animal_dots(amina)
    for animal in open_bridge(store).animals(viewer=RANGER):
        juma.switch_page("screens/animals.py")
        juma.query_params["animal"] = str(animal.animal_id)
        juma.run()
        assert [h.value for h in juma.header] == [animal.name], "Juma reads each animal's page"
    with backup_holds_the_store(store):
        amina.run()
    assert not amina.exception, [e.value for e in amina.exception]
    assert [w.value.startswith(f"**{views.NOT_LIVE_HEADLINE}**") for w in amina.warning] == [True], \
        [w.value for w in amina.warning]
    assert _animal_dots(amina) == seen, "the herd she was watching"


def test_a_map_shown_again_while_the_store_was_busy_is_in_the_audit_log_once_the_backup_ends(
    store, monkeypatch
):
    # Every view of positions is in the audit log. The herd Amina keeps on her map while the backup runs
    # is a view again: its lines wait for the store and are written, at the minute she saw it, by the
    # dashboard's next read once the backup ends.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setattr(data, "BUSY_HOLD_S", 0.0)

    app = open_page(user="amina")
    before = views_in_audit_log(store, "amina", "latest_positions")
    with backup_holds_the_store(store):
        app.run()
        assert any(w.value.startswith("**Not live") for w in app.warning), ([w.value for w in app.warning], [e.value for e in app.exception])
    app.run()
    assert not app.warning, [w.value for w in app.warning]
    # Her run after the backup: the view shown during it and (at least) this run's own.
    assert views_in_audit_log(store, "amina", "latest_positions") >= before + 2


def test_ranger_is_told_which_collared_animal_the_map_cannot_place_yet(store):
    # Baraka was collared this morning; his collar has sent nothing with a fix. The map's count says
    # four animals and the map shows three: the page names the one it cannot place, and why.
    with open_bridge(store) as bridge:
        bridge.register_animal("collar-004", "Baraka")
    app = open_page()
    assert set(_animal_dots(app)) == {"Amani", "Zawadi", "Kito"}
    captions = [c.value for c in app.caption]
    assert "Not on the map (no fix yet): Baraka." in captions, captions


def _alert_cards(app: AppTest) -> list[str]:
    """The keys of the alert cards the queue shows, in order."""
    return [b.key.removeprefix("acknowledge-") for b in app.button if (b.key or "").startswith("acknowledge-")]


def test_during_a_backup_the_ranger_keeps_her_open_alerts_not_live_with_every_write_button_off(store, monkeypatch):
    # Amina is in the middle of a mortality incident at night with the Alerts page open, the Resolve form
    # of the low-battery alert half filled. A backup takes the store: the page had dropped her queue for
    # "store busy". She keeps the alerts she last saw, told they are not live and when they were read; no
    # button that writes can be pressed (each says why), and her half-written note stays in its form.
    # Once the backup ends the buttons are back.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setattr(data, "BUSY_HOLD_S", 0.0)
    mortality, low_battery = open_bridge(store).open_alerts(viewer=RANGER)
    app = open_page("alerts", user="amina")
    app.button(key=f"open-resolve-{low_battery.alert_id}").click().run()
    app.text_input(key=f"note-{low_battery.alert_id}").input("Collar at 3.3 V").run()
    live = (_alert_cards(app), app.dataframe[0].value.to_dict("records"))
    writes = [f"acknowledge-{mortality.alert_id}", f"take-{mortality.alert_id}", f"open-resolve-{mortality.alert_id}",
              f"resolve-{low_battery.alert_id}", f"assign-{low_battery.alert_id}"]
    assert not app.button(key=f"acknowledge-{mortality.alert_id}").disabled
    with backup_holds_the_store(store):
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 1 and warnings[0].startswith("**Not live: the Tembo store is busy**"), warnings
    assert "tries again every 15 s" in warnings[0] and " UTC (" in warnings[0], warnings[0]
    assert (_alert_cards(app), app.dataframe[0].value.to_dict("records")) == live, "the queue she last saw"
    for key in writes:
        button = app.button(key=key)
        assert button.disabled and button.help.startswith("Not live"), key
    assert app.text_input(key=f"note-{low_battery.alert_id}").value == "Collar at 3.3 V"
    app.run()
    assert not app.warning, [w.value for w in app.warning]
    assert not app.button(key=f"acknowledge-{mortality.alert_id}").disabled, "live again: she can act"


def test_during_a_backup_no_viewer_is_handed_alerts_another_was_shown(store, monkeypatch):
    # The control room's dashboard (every role signs in). Amina (ranger) and Rose (researcher) had the
    # Alerts page open before the backup; Juma (ranger) had only the live map open. During the backup
    # each of Amina and Rose keeps her own queue (Rose's positions withheld as before, never Amina's);
    # Juma, shown no alerts page since the dashboard started, is told the store is busy, no queue.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "any")
    amina, rose, juma = open_page("alerts", user="amina"), open_page("alerts", user="rose"), open_page(user="juma")
    seen = {name: app.dataframe[0].value.to_dict("records") for name, app in (("amina", amina), ("rose", rose))}
    assert seen["amina"] != seen["rose"], "the researcher's alerts hold no position"
    with backup_holds_the_store(store):
        amina.run()
        rose.run()
        juma.switch_page("screens/alerts.py").run()
    for app, name in ((amina, "amina"), (rose, "rose")):
        assert not app.exception, [e.value for e in app.exception]
        assert any(w.value.startswith("**Not live") for w in app.warning), name
        assert app.dataframe[0].value.to_dict("records") == seen[name], f"{name} keeps her own role's alerts"
    assert not juma.exception, [e.value for e in juma.exception]
    assert [w.value for w in juma.warning] == [data.STORE_BUSY_MESSAGE]
    assert not juma.dataframe and not _alert_cards(juma), "no alerts made for someone else"


def test_during_a_backup_the_animal_page_keeps_what_it_showed_not_live_and_offers_no_download(store, monkeypatch):
    # Amina has Kito's page open (track, battery, alerts). During a backup she keeps it, marked not live;
    # the downloads, which would hand out an out-of-date track as current, wait for the store.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setattr(data, "BUSY_HOLD_S", 0.0)
    kito = next(a for a in open_bridge(store).animals(viewer=RANGER) if a.name == "Kito")
    app = open_page("animals", {"animal": str(kito.animal_id)}, user="amina")
    before = ([m.value for m in app.metric], [d.value.to_dict("records") for d in app.dataframe])
    downloads = app.get("download_button")
    assert downloads and not any(d.proto.disabled for d in downloads)
    with backup_holds_the_store(store):
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert [h.value for h in app.header] == ["Kito"]
    assert any(w.value.startswith("**Not live: the Tembo store is busy**") for w in app.warning)
    assert ([m.value for m in app.metric], [d.value.to_dict("records") for d in app.dataframe]) == before
    assert all(d.proto.disabled for d in app.get("download_button"))
    app.run()
    assert not app.warning and not any(d.proto.disabled for d in app.get("download_button"))


def test_alerts_shown_again_while_the_store_was_busy_are_in_the_audit_log_once_the_backup_ends(store, monkeypatch):
    # The alerts Amina keeps on her Alerts page during the backup (their places among them) are a view
    # again: their audit lines wait for the store and are written by the first read after the backup.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setattr(data, "BUSY_HOLD_S", 0.0)

    app = open_page("alerts", user="amina")
    first = views_in_audit_log(store, "amina", "alerts")
    app.run()
    before = views_in_audit_log(store, "amina", "alerts")
    one_run = before - first  # what one showing of the page logs
    assert one_run > 0
    with backup_holds_the_store(store):
        app.run()
        assert any(w.value.startswith("**Not live") for w in app.warning), [w.value for w in app.warning]
        during = views_in_audit_log(store, "amina", "alerts")
        # The queue she was shown again, its places among them (the evidence, needing the store, was not).
        owed = [read for read, _ in data._owed if read.action == "alerts"]
    assert during == before, "nothing could be written while the store was held"
    app.run()
    assert not app.warning, [w.value for w in app.warning]
    assert owed and all(read.viewer == Viewer("amina", "ranger") for read in owed)
    # Her run after the backup logs its own views and, each once, those shown during it.
    assert views_in_audit_log(store, "amina", "alerts") - during == one_run + len(owed)


def test_views_owed_to_the_audit_log_are_each_written_once_when_a_second_backup_begins_while_they_are_written(
    store, monkeypatch
):
    # Amina kept her map through a backup: the views it showed her again are owed to the audit log, each
    # at its moment, written once the backup ends. A second backup took the store while they were being
    # written: those already written were kept as owed all the same and written again after it, so the
    # admin read that Amina had seen the herd's places more often than she had.
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setattr(data, "BUSY_HOLD_S", 0.0)
    app = open_page(user="amina")
    with backup_holds_the_store(store):
        app.run()
        app.run()
    moments = sorted({at for _, at in data._owed})
    assert len(moments) >= 2, "views owed at two moments"
    written: list[datetime] = []
    second_backup = ExitStack()
    record_reads = Bridge.record_reads

    def backup_begins_after_the_first_moment(self, reads, at=None):  # noqa: ANN001, ANN202
        record_reads(self, reads, at=at)
        if at is not None:
            written.append(at)
            if written == [moments[0]]:  # the first moment's views, written the first time
                second_backup.enter_context(backup_holds_the_store(store))

    monkeypatch.setattr(Bridge, "record_reads", backup_begins_after_the_first_moment)
    with second_backup:
        app.run()
    assert moments[1] not in written and data._owed, "the second backup held the rest"
    app.run()
    assert not data._owed, "every owed view written once the second backup ended"
    assert sorted(written) == sorted(set(written)), "no moment's views written twice"
    assert set(moments) <= set(written)
