"""The Herd register page of the ranger dashboard: the control room reads which collar each animal
wears since when and the collars it wore before; a field technician or admin renames an animal,
corrects its species or sex, and fits or moves a collar there, told in plain words what was done or
why the bridge refused it; a ranger reads the register and finds no form to change it.

The page logic (`ranger_dashboard.herd_register`) is called as plain functions, over views made here
and over a seeded SQLite store through the bridge; the page itself runs in Streamlit's AppTest."""

from __future__ import annotations

import os
from dataclasses import replace as dataclasses_replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from browser_helpers import ACCOUNTS, backup_holds_the_store, seeded_sqlite
from streamlit.testing.v1 import AppTest

import ranger_dashboard
from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from lora_bridge.views import AnimalView, CollarWornView
from ranger_dashboard import data, herd_register, login, views

APP = Path(ranger_dashboard.__file__).resolve().parent / "app.py"
TIMEOUT_S = 60
TITO = Viewer("tito", "field_technician")
AMINA = Viewer("amina", "ranger")
ADA = Viewer("ada", "admin")
FITTED = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)


def animal(animal_id: str, name: str, device_id: str | None, fitted_at: datetime | None = None,
           sex: str | None = None, species: str = "Loxodonta africana") -> AnimalView:
    return AnimalView(animal_id=animal_id, name=name, species=species, device_id=device_id, last_seen=None,
                      lat=None, lon=None, battery_mv=None, behaviour=None, fw_version=None, model_version=None,
                      sex=sex, collar_fitted_at=fitted_at)


# ---------------------------------------------------------------- the page's tables, as plain functions


def test_control_room_reads_each_animals_collar_and_since_when_in_name_order():
    herd = [
        animal("12", "Zawadi", "collar-002", FITTED, sex="female"),
        animal("3", "amani", "collar-001"),  # worn since she was registered, before fittings were kept
        animal("7", "Kito", None, sex="male"),  # his collar moved to another elephant
    ]
    table = herd_register.register_table(herd)

    assert list(table.columns) == [views.COL_NAME, views.COL_COLLAR, herd_register.COL_FITTED,
                                   views.COL_SPECIES, herd_register.COL_SEX, herd_register.COL_ID]
    assert table.to_dict("records") == [
        {"Name": "amani", "Species": "Loxodonta africana", "Sex": "not recorded", "Collar": "collar-001",
         "Fitted since (UTC)": "since registered", "Id": "3"},
        {"Name": "Kito", "Species": "Loxodonta africana", "Sex": "male", "Collar": "none fitted",
         "Fitted since (UTC)": "", "Id": "7"},
        {"Name": "Zawadi", "Species": "Loxodonta africana", "Sex": "female", "Collar": "collar-002",
         "Fitted since (UTC)": "2026-11-20 07:30", "Id": "12"},
    ]
    assert herd_register.counts(herd) == {"animals": 3, "wearing": 2, "without": 1}
    assert herd_register.counts_line(herd) == "**3** animals · **2** wearing a collar · **1** without one"
    assert herd_register.counts_line(herd[:1]).startswith("**1** animal · ")


def test_one_animal_reads_in_a_line_with_its_sex_and_collar_said_in_words():
    assert herd_register.summary_line(animal("12", "Zawadi", "collar-002", FITTED, sex="female")) == (
        "Loxodonta africana · female · collar **collar-002** since 2026-11-20 07:30 UTC")
    assert herd_register.summary_line(animal("3", "Amani", "collar-001")) == (
        "Loxodonta africana · sex not recorded · collar **collar-001** since registered")
    assert herd_register.summary_line(animal("7", "Kito", None, sex="male")).endswith(" · male · no collar fitted")


def test_two_animals_of_one_name_are_listed_apart_by_their_ids_in_number_order():
    herd = [animal("10", "Tembo", "collar-010"), animal("9", "Tembo", "collar-009")]
    assert list(herd_register.register_table(herd)["Id"]) == ["9", "10"]
    assert [herd_register.label(a) for a in herd_register.in_register_order(herd)] == [
        "Tembo · collar-009", "Tembo · collar-010"]


def test_an_animal_named_in_arabic_is_set_apart_in_the_animal_list():
    najma = animal("4", "نجمة", None)
    assert herd_register.label(najma) == f"{views.FIRST_STRONG_ISOLATE}نجمة{views.POP_ISOLATE} · no collar"


def test_collar_history_reads_newest_first_with_the_collar_worn_now_still_on():
    worn = [  # as the bridge gives them: oldest first, the collar worn now last
        CollarWornView("collar-001", None, FITTED),
        CollarWornView("collar-009", FITTED, FITTED + timedelta(days=3)),
        CollarWornView("collar-014", FITTED + timedelta(days=3, hours=2), None),
    ]
    assert herd_register.history_table(worn).to_dict("records") == [
        {"Collar": "collar-014", "On (UTC)": "2026-11-23 09:30", "Off (UTC)": "still on"},
        {"Collar": "collar-009", "On (UTC)": "2026-11-20 07:30", "Off (UTC)": "2026-11-23 07:30"},
        {"Collar": "collar-001", "On (UTC)": "since registered", "Off (UTC)": "2026-11-20 07:30"},
    ]
    assert list(herd_register.history_table([]).columns) == herd_register.HISTORY_COLUMNS


def test_the_rename_form_offers_to_leave_an_unrecorded_sex_as_it_is():
    assert herd_register.sex_choices(None) == [herd_register.LEAVE_SEX, "female", "male", "unknown"]
    assert herd_register.sex_choices("female") == ["female", "male", "unknown"]


def test_a_collar_fitted_now_or_at_a_day_and_time_in_utc():
    assert herd_register.fitting_time(False, date(2026, 12, 1), time(9, 15)) is None
    assert herd_register.fitting_time(True, date(2026, 12, 1), time(9, 15)) == datetime(2026, 12, 1, 9, 15, tzinfo=UTC)
    assert herd_register.fitting_time(True, date(2026, 12, 1), None) == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="say the day the collar went on"):
        herd_register.fitting_time(True, None, time(9, 15))
    with pytest.raises(ValueError, match="say the day the collar came off"):
        herd_register.fitting_time(True, None, time(9, 15), happened="came off")


# ---------------------------------------------------------------- changes, through the bridge


@pytest.fixture(autouse=True)
def no_busy_store_left_by_an_earlier_test(monkeypatch) -> None:
    """Each test starts as a fresh dashboard server, not within a busy hold an earlier test left."""
    monkeypatch.setattr(data, "_busy_until", 0.0)
    monkeypatch.setattr(data, "_owed", [])


@pytest.fixture
def store(sqlite_url, monkeypatch) -> str:
    """The seeded reserve (Amani on collar-001, Zawadi on collar-002, Kito on collar-003) with its
    accounts, a copy of its own of the store `seed` filled for this process; the dashboard reads it
    through TEMBO_DATABASE_URL."""
    seeded_sqlite(sqlite_url)
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    return sqlite_url


def herd_of(url: str) -> dict[str, AnimalView]:
    with open_bridge(url) as bridge:
        return {a.name: a for a in bridge.animals(viewer=ADA)}


def changes_logged(url: str, action: str) -> list:
    with open_bridge(url) as bridge:
        return [entry for entry in bridge.audit_log(viewer=ADA) if entry.action == action]


def test_technician_renames_an_animal_and_corrects_her_sex_in_her_own_name(store):
    amani = herd_of(store)["Amani"]
    outcome = herd_register.rename(store, amani, TITO, "  Mama Amani ", amani.species, "female")

    assert outcome.kind == "success"
    assert outcome.message == "Amani is now called Mama Amani; sex female."
    renamed = herd_of(store)["Mama Amani"]
    assert (renamed.animal_id, renamed.sex, renamed.device_id) == (amani.animal_id, "female", "collar-001")
    (logged,) = changes_logged(store, "animal_renamed")
    assert logged.username == "tito"


def test_a_name_left_empty_is_refused_with_the_bridges_reason_and_nothing_changes(store):
    amani = herd_of(store)["Amani"]
    outcome = herd_register.rename(store, amani, TITO, "   ", amani.species, None)

    assert outcome.kind == "error"
    assert outcome.message == "Amani not changed: An animal's name cannot be empty."
    assert herd_of(store)["Amani"].name == "Amani"
    assert changes_logged(store, "animal_renamed") == []


def test_a_form_saved_unchanged_sends_nothing_to_the_store(store):
    kito = herd_of(store)["Kito"]
    outcome = herd_register.rename(store, kito, TITO, "Kito", kito.species, herd_register.LEAVE_SEX)

    assert (outcome.kind, outcome.message) == ("info", "Nothing to change: Kito is already recorded so.")
    assert changes_logged(store, "animal_renamed") == []


def test_a_ranger_who_reaches_the_rename_anyway_is_told_it_is_for_technicians_and_nothing_changes(store):
    amani = herd_of(store)["Amani"]
    outcome = herd_register.rename(store, amani, AMINA, "Mama Amani", amani.species, None)

    assert outcome.kind == "error"
    assert outcome.message == ("Amani not changed: Only field technicians and admins change the herd register; "
                               "you read it.")
    assert "Amani" in herd_of(store)


def test_a_collar_another_elephant_wears_moves_only_when_the_technician_says_so(store):
    herd = list(herd_of(store).values())
    kito = next(a for a in herd if a.name == "Kito")

    refused = herd_register.fit(store, kito, TITO, "collar-002", False, None, herd)
    assert refused.kind == "error"
    assert refused.message == ("Collar not fitted to Kito: collar collar-002 is worn by Zawadi. Tick “Take it from "
                               "the animal wearing it” to move it to Kito; Zawadi then wears none.")
    assert herd_of(store)["Zawadi"].device_id == "collar-002"

    moved = herd_register.fit(store, kito, TITO, "collar-002", True, None, herd)
    assert moved.kind == "success", moved.message
    assert moved.message.startswith("Kito wears collar collar-002 since ")
    assert moved.message.endswith(" UTC; taken from Zawadi, who now wears none and keeps its track and alerts; "
                                  "collar collar-003 came off.")
    after = herd_of(store)
    assert (after["Kito"].device_id, after["Zawadi"].device_id) == ("collar-002", None)
    with open_bridge(store) as bridge:
        zawadi_wore = bridge.collar_history(after["Zawadi"].animal_id, viewer=AMINA)
    assert [(w.device_id, w.removed_at is not None) for w in zawadi_wore] == [("collar-002", True)]
    (logged,) = changes_logged(store, "collar_fitted")
    assert logged.username == "tito"


def test_a_fitting_in_the_future_or_before_the_collars_current_fitting_is_refused_with_when(store):
    herd = list(herd_of(store).values())
    amani = next(a for a in herd if a.name == "Amani")
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    future = herd_register.fit(store, amani, TITO, "collar-009", False, tomorrow, herd)
    assert future.kind == "error"
    assert future.message.startswith("Collar not fitted to Amani: A collar cannot be fitted in the future (")

    fitted = herd_register.fit(store, amani, TITO, "collar-009", False, datetime.now(UTC) - timedelta(hours=1), herd)
    assert fitted.kind == "success", fitted.message
    amani = herd_of(store)["Amani"]
    before = herd_register.fit(store, amani, TITO, "collar-010", False, datetime.now(UTC) - timedelta(days=2), herd)
    assert before.kind == "error"
    assert "Amani wears collar collar-009 since " in before.message and "would come before it." in before.message
    assert herd_of(store)["Amani"].device_id == "collar-009"


def test_technician_takes_zawadis_collar_off_and_is_told_nobody_wears_it_now(store):
    zawadi = herd_of(store)["Zawadi"]
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)

    outcome = herd_register.take_off(store, zawadi, TITO, an_hour_ago)

    assert outcome.kind == "success", outcome.message
    assert outcome.message == (f"Collar collar-002 came off Zawadi at {an_hour_ago:%Y-%m-%d %H:%M} UTC. Nobody wears "
                               "it until it is fitted again: it is in stock, what it reports raises no alert and its "
                               "alerts still open are closed; Zawadi keeps its track and alerts.")
    assert herd_of(store)["Zawadi"].device_id is None
    (logged,) = changes_logged(store, "collar_taken_off")
    assert (logged.username, logged.detail["device_id"]) == ("tito", "collar-002")


def test_a_collar_taken_off_too_early_in_the_future_twice_or_by_a_ranger_is_refused_with_the_reason(store):
    zawadi = herd_of(store)["Zawadi"]
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    future = herd_register.take_off(store, zawadi, TITO, tomorrow)
    by_a_ranger = herd_register.take_off(store, zawadi, AMINA, None)
    assert future.message.startswith("Collar not taken off Zawadi: A collar cannot be taken off in the future (")
    assert by_a_ranger.message == f"Collar not taken off Zawadi: {herd_register._sentence(herd_register.NOT_ALLOWED)}"
    assert herd_of(store)["Zawadi"].device_id == "collar-002"

    fitted = herd_register.fit(store, zawadi, TITO, "collar-009", False, datetime.now(UTC) - timedelta(hours=1),
                               list(herd_of(store).values()))
    assert fitted.ok, fitted.message
    zawadi = herd_of(store)["Zawadi"]
    early = herd_register.take_off(store, zawadi, TITO, datetime.now(UTC) - timedelta(days=1))
    assert early.kind == "error" and "it cannot come off at" in early.message and "before it went on." in early.message
    assert herd_register.take_off(store, zawadi, TITO, None).ok
    twice = herd_register.take_off(store, zawadi, TITO, None)  # a second tap on a page not yet redrawn
    assert twice.message == "Collar not taken off Zawadi: Zawadi wears no collar to take off."
    gone = herd_register.take_off(store, dataclasses_replace(zawadi, animal_id="999"), TITO,
                                  None)
    assert gone.message == "Collar not taken off Zawadi: Animal 999 is no longer in the register (reload the page)."
    assert [c.action for c in changes_logged(store, "collar_taken_off")] == ["collar_taken_off"]


def test_a_collar_never_heard_is_fitted_with_a_word_to_check_its_id(store):
    herd = list(herd_of(store).values())
    amani = next(a for a in herd if a.name == "Amani")

    outcome = herd_register.fit(store, amani, TITO, "collar-0l4", False, None, herd)
    assert outcome.kind == "success"
    assert outcome.message.endswith("collar collar-001 came off. Tembo has not heard collar collar-0l4 yet: it was "
                                    "registered as a new collar (check the id if it should have reported).")
    assert herd_register.fit(store, amani, TITO, "  ", False, None, herd).message == (
        "Collar not fitted to Amani: name the collar (its device id or DevEUI).")


def test_a_change_asked_while_a_backup_holds_the_store_is_said_not_kept(store, monkeypatch):
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    data.bridge.clear()  # opened again with the short wait
    amani = herd_of(store)["Amani"]
    with backup_holds_the_store(store):
        outcome = herd_register.rename(store, amani, TITO, "Mama Amani", amani.species, None)
    data.bridge.clear()
    assert outcome.kind == "error"
    assert outcome.message == "Amani not changed: The Tembo store is busy and kept nothing. Try again in a moment."
    assert herd_of(store)["Amani"].name == "Amani"


# ---------------------------------------------------------------- the page, in AppTest


def open_herd_page(username: str) -> AppTest:
    """The dashboard after its first run, opened (as a link to it is) on the herd register, signed in as
    the seeded account `username`."""
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    with open_bridge(os.environ["TEMBO_DATABASE_URL"]) as bridge:
        app.session_state[login.SESSION_KEY] = bridge.sign_in(username, ACCOUNTS[username][1])[1]
    app.switch_page("screens/herd.py").run()  # the register at the first run, not the live map first
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_ranger_reads_the_register_and_a_collar_history_but_finds_no_form_to_change_them(store):
    app = open_herd_page("amina")

    assert app.title[0].value == "Herd register"
    assert any("You read the register as ranger" in c.value for c in app.caption)
    register = app.dataframe[0].value
    assert list(register["Name"]) == ["Amani", "Kito", "Zawadi"]
    assert list(register["Collar"]) == ["collar-001", "collar-003", "collar-002"]
    assert "**3** animals · **3** wearing a collar · **0** without one" in [m.value for m in app.markdown]
    history = app.dataframe[1].value
    assert history.to_dict("records") == [{"Collar": "collar-001", "On (UTC)": "since registered",
                                           "Off (UTC)": "still on"}]
    assert not app.text_input and not app.get("form")
    assert [b.key for b in app.button] == ["sign_out"], "no Save, no Fit collar"
    assert 'data-editable="false"' in app.get("html")[-1].proto.body


def test_admin_renames_kito_and_moves_zawadis_collar_to_him_on_the_page(store):
    app = open_herd_page("ada")
    kito = herd_of(store)["Kito"]
    app.selectbox(key="herd_animal").set_value(kito.animal_id).run()
    assert app.query_params["animal"] == kito.animal_id
    assert app.header[0].value == "Kito"

    app.text_input(key=f"herd_name_{kito.animal_id}").input("Kito Mdogo")
    app.selectbox(key=f"herd_sex_{kito.animal_id}").set_value("male")
    app.button(key=f"herd_save_{kito.animal_id}").click().run()
    assert [s.value for s in app.success] == ["Kito is now called Kito Mdogo; sex male."]
    assert "Kito Mdogo" in set(app.dataframe[0].value["Name"]), "the register shows the new name at once"
    assert app.header[0].value == "Kito Mdogo"

    app.text_input(key=f"herd_collar_{kito.animal_id}").input("collar-002")
    app.button(key=f"herd_fit_{kito.animal_id}").click().run()
    assert [e.value for e in app.error] == [
        "Collar not fitted to Kito Mdogo: collar collar-002 is worn by Zawadi. Tick “Take it from the animal "
        "wearing it” to move it to Kito Mdogo; Zawadi then wears none."]
    assert app.text_input(key=f"herd_collar_{kito.animal_id}").value == "collar-002", "kept to try again"

    app.checkbox(key=f"herd_move_{kito.animal_id}").check()
    app.radio(key=f"herd_when_{kito.animal_id}").set_value("Earlier (UTC)").run()
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    app.date_input(key=f"herd_day_{kito.animal_id}").set_value(an_hour_ago.date())
    app.time_input(key=f"herd_time_{kito.animal_id}").set_value(an_hour_ago.time())
    app.button(key=f"herd_fit_{kito.animal_id}").click().run()
    assert not app.error
    (done,) = [s.value for s in app.success]
    assert done.startswith(f"Kito Mdogo wears collar collar-002 since {an_hour_ago:%Y-%m-%d %H:%M} UTC; taken from "
                           "Zawadi")
    register = app.dataframe[0].value.set_index("Name")
    assert register.loc["Kito Mdogo", "Collar"] == "collar-002"
    assert register.loc["Kito Mdogo", "Fitted since (UTC)"] == f"{an_hour_ago:%Y-%m-%d %H:%M}"
    assert register.loc["Zawadi", "Collar"] == "none fitted"
    assert app.dataframe[1].value["Collar"].tolist() == ["collar-002", "collar-003"]
    assert app.text_input(key=f"herd_collar_{kito.animal_id}").value == "", "the form starts afresh"
    assert "**3** animals · **2** wearing a collar · **1** without one" in [m.value for m in app.markdown]
    assert app.checkbox(key=f"herd_move_{kito.animal_id}").value is False
    assert app.radio(key=f"herd_when_{kito.animal_id}").value == "Now"

    # Moving Amani's collar to Kito too, then choosing another animal: nothing said of Kito shows there.
    app.checkbox(key=f"herd_move_{kito.animal_id}").check()
    app.text_input(key=f"herd_collar_{kito.animal_id}").input("collar-001")
    app.button(key=f"herd_fit_{kito.animal_id}").click().run()
    assert len(app.error) == 0 and len(app.success) == 1
    app.selectbox(key="herd_animal").set_value(herd_of(store)["Zawadi"].animal_id).run()
    assert app.header[0].value == "Zawadi" and not app.success and not app.error
    app.selectbox(key="herd_animal").set_value(kito.animal_id).run()
    assert not app.success, "said once"


def herd_positions_viewed(url: str, username: str) -> int:
    """How many views of the herd's positions the audit log holds for username (each repeat counted). The
    alert count beside Alerts, read on every page, logs the alerts' places: not counted."""
    with open_bridge(url) as bridge:
        return sum(entry.repeats for entry in bridge.audit_log(viewer=ADA)
                   if entry.username == username and entry.precision is not None and entry.action != "alerts")


def test_a_ranger_opening_the_register_logs_no_view_of_where_the_animals_are(store):
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    with open_bridge(store) as bridge:
        app.session_state[login.SESSION_KEY] = bridge.sign_in("amina", ACCOUNTS["amina"][1])[1]
    app.run()  # the live map: a view of the herd's positions, logged
    seen_on_the_map = herd_positions_viewed(store, "amina")
    assert seen_on_the_map > 0

    app.switch_page("screens/herd.py").run()
    app.selectbox(key="herd_animal").set_value(herd_of(store)["Zawadi"].animal_id).run()
    app.run()

    assert not app.exception, [e.value for e in app.exception]
    assert list(app.dataframe[0].value["Name"]) == ["Amani", "Kito", "Zawadi"]
    assert herd_positions_viewed(store, "amina") == seen_on_the_map


def test_a_ranger_opening_the_register_while_a_backup_holds_the_store_reads_it_all_the_same(store, monkeypatch):
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "200")
    data.bridge.clear()  # opened again with the short wait
    app = open_herd_page("amina")
    data.forget_herd()  # nothing kept: the register is read while the backup holds the store
    with backup_holds_the_store(store):  # no view of positions to log: the register is only read
        app.run()
    data.bridge.clear()
    assert not app.exception, [e.value for e in app.exception]
    assert data.STORE_BUSY_MESSAGE not in [w.value for w in app.warning]
    assert list(app.dataframe[0].value["Collar"]) == ["collar-001", "collar-003", "collar-002"]


def test_admin_takes_zawadis_collar_off_on_the_page_and_the_register_shows_her_without_one(store):
    app = open_herd_page("ada")
    zawadi = herd_of(store)["Zawadi"]
    app.selectbox(key="herd_animal").set_value(zawadi.animal_id).run()
    assert "Collar collar-002 comes off with no other fitted" in " ".join(c.value for c in app.caption)

    # "Earlier" without a day (the field emptied) is said, not sent.
    app.radio(key=f"herd_off_when_{zawadi.animal_id}").set_value("Earlier (UTC)").run()
    app.date_input(key=f"herd_off_day_{zawadi.animal_id}").set_value(None)
    app.button(key=f"herd_take_off_{zawadi.animal_id}").click().run()
    assert [e.value for e in app.error] == [
        "Collar not taken off Zawadi: say the day the collar came off, or choose Now."]
    assert herd_of(store)["Zawadi"].device_id == "collar-002"

    app.radio(key=f"herd_off_when_{zawadi.animal_id}").set_value("Now").run()
    app.button(key=f"herd_take_off_{zawadi.animal_id}").click().run()
    assert not app.exception, [e.value for e in app.exception]
    (done,) = [s.value for s in app.success]
    assert done.startswith("Collar collar-002 came off Zawadi now. Nobody wears it until it is fitted again")
    register = app.dataframe[0].value.set_index("Name")
    assert register.loc["Zawadi", "Collar"] == "none fitted", "the register shows it at once"
    assert "Loxodonta africana · sex not recorded · no collar fitted" in [
        m.value for m in app.markdown]
    assert f"herd_take_off_{zawadi.animal_id}" not in [b.key for b in app.button], "nothing left to take off"
    assert app.dataframe[1].value["Off (UTC)"].tolist()[0] != "still on"
    stock = app.dataframe[-1].value  # her collar is in stock, not an animal of the herd
    assert (stock["Collar"].tolist(), stock["Came off"].tolist()) == (["collar-002"], ["Zawadi"])
    assert "collar-002" not in register.index
