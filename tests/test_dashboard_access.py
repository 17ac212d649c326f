"""Who gets into the dashboard and what they see: the login gate, the visitor-centre kiosk that
never shows an exact live position, navigation per role, and the launcher that honours the role."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bridge_builders as b
import pytest
from access_builders import PASSWORDS, exact_places, live_bridge
from browser_helpers import tracks_on_map
from streamlit.testing.v1 import AppTest

import ranger_dashboard
from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import launch, login, views
from tembo.cli import build_parser

# The herd's "now" for the dashboard, which measures delays on the wall clock.
WALL_NOW = datetime.now(UTC).replace(second=0, microsecond=0)
APP = Path(ranger_dashboard.__file__).resolve().parent / "app.py"
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def live_store(tmp_path_factory) -> str:
    """A store with the live herd (fixes up to ten minutes ago by the wall clock) and its accounts."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard-access') / 'tembo.db'}"
    with live_bridge(url, now=WALL_NOW):
        pass
    return url


def run_app(url: str, monkeypatch, role: str, user: str | None = None, page: str | None = None) -> AppTest:
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", role)
    monkeypatch.setenv("TEMBO_DASHBOARD_CLOCK", "wall")
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    if user is not None:
        with open_bridge(url) as bridge:
            app.session_state[login.SESSION_KEY] = bridge.sign_in(user, PASSWORDS[user][1])[1]
    app.run()
    if page is not None:
        app.switch_page(f"screens/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def shown_places(app: AppTest) -> set[tuple[float, float]]:
    """Every (lat, lon) the page sent to the browser: the map's layers and the tables."""
    places: set[tuple[float, float]] = set()
    for chart in app.get("deck_gl_json_chart"):
        for layer in json.loads(chart.proto.json)["layers"]:
            data = layer.get("data")
            for item in data if isinstance(data, list) else []:
                if "lat" in item and "lon" in item:
                    places.add((round(item["lat"], 5), round(item["lon"], 5)))
                for lon, lat in [*item.get("path", []), *(item[end] for end in ("from", "to") if end in item)]:
                    places.add((round(lat, 5), round(lon, 5)))
    return places


def track_places(url: str, viewer: Viewer, app: AppTest) -> set[tuple[float, float]]:
    """Every (lat, lon) of the tracks the live map fetches after its first frame, as `viewer`."""
    (chart,) = app.get("deck_gl_json_chart")
    segments = tracks_on_map(url, viewer, json.loads(chart.proto.json))
    return {(round(lat, 5), round(lon, 5)) for segment in segments for lon, lat in (segment["from"], segment["to"])}


def test_visitor_kiosk_opens_without_sign_in_and_never_shows_an_exact_live_position(live_store, monkeypatch):
    with open_bridge(live_store) as bridge:
        exact = exact_places(bridge)
        newest_for_visitor = max(p.time for p in bridge.latest_positions(viewer=Viewer("kiosk", "visitor")))
    app = run_app(live_store, monkeypatch, "visitor")
    assert app.get("deck_gl_json_chart"), "the kiosk opens on the live map"
    assert not any(t.key == "sign_in_username" for t in app.text_input)
    map_places = shown_places(app) | track_places(live_store, login.kiosk_viewer(), app)
    animals_page = run_app(live_store, monkeypatch, "visitor", page="animals")

    assert map_places, "the kiosk shows the herd, coarsely"
    assert not map_places & exact
    assert newest_for_visitor <= datetime.now(UTC) - timedelta(hours=24)
    assert any("Visitor centre" in c.value for c in app.caption)
    assert not shown_places(animals_page) & exact, "the animal page's track and home range are coarse too"


def test_visitor_kiosk_has_no_alert_room_and_no_admin_pages(live_store, monkeypatch):
    app = run_app(live_store, monkeypatch, "visitor")
    with pytest.raises(Exception):  # noqa: B017 - Streamlit refuses a page that is not registered
        app.switch_page("screens/alerts.py").run()
        assert not app.get("deck_gl_json_chart")


def test_only_roles_that_may_export_find_download_buttons_on_the_animal_page(live_store, monkeypatch):
    kiosk = run_app(live_store, monkeypatch, "visitor", page="animals")
    technician = run_app(live_store, monkeypatch, "any", user="tito", page="animals")
    researcher = run_app(live_store, monkeypatch, "any", user="rose", page="animals")
    for app in (kiosk, technician, researcher):
        assert app.get("deck_gl_json_chart"), "each of them sees the animal's track"
    assert not kiosk.get("download_button"), "a kiosk in the visitor centre hands out no files of fixes"
    assert not technician.get("download_button"), "the API refuses a field technician's exports too"
    assert [b.label for b in researcher.get("download_button")] == ["CSV", "GeoJSON", "GeoPackage", "Shapefile",
                                                                "Movebank CSV"]


def test_ranger_dashboard_asks_for_a_sign_in_and_refuses_other_roles(live_store, monkeypatch):
    gate = run_app(live_store, monkeypatch, "ranger")
    assert [t.value for t in gate.title] == ["Tembo"] and not gate.get("deck_gl_json_chart")
    gate.text_input(key="sign_in_username").input("rose")
    gate.text_input(key="sign_in_password").input(PASSWORDS["rose"][1])
    gate.button[0].click().run()
    assert any("for the ranger role" in e.value for e in gate.error)

    gate.text_input(key="sign_in_username").input("amina")
    gate.text_input(key="sign_in_password").input(PASSWORDS["amina"][1])
    gate.button[0].click().run()
    assert not gate.exception
    assert gate.get("deck_gl_json_chart"), "signed in: the live map"
    assert any("Signed in as **amina** (Ranger)" in c.value for c in gate.caption)


def sign_in(gate: AppTest, user: str) -> AppTest:
    gate.text_input(key="sign_in_username").input(user)
    gate.text_input(key="sign_in_password").input(PASSWORDS[user][1])
    gate.button[0].click().run()
    assert not gate.exception, [e.value for e in gate.exception]
    return gate


def test_on_a_dashboard_for_every_account_each_signs_in_and_sees_what_its_own_role_allows(live_store, monkeypatch):
    from ranger_dashboard.navigation import page_paths_for

    with open_bridge(live_store) as bridge:
        exact = exact_places(bridge)
    gate = run_app(live_store, monkeypatch, "any")
    assert any("each account sees what its role allows" in c.value for c in gate.caption)
    technician = sign_in(gate, "tito")
    assert any("Signed in as **tito** (Field technician)" in c.value for c in technician.caption)
    assert "updates" in page_paths_for(Viewer("tito", "field_technician"))
    technician.switch_page("screens/updates.py").run()
    assert not technician.exception and technician.title[0].value == "Updates"
    researcher = sign_in(run_app(live_store, monkeypatch, "any"), "rose")
    assert researcher.get("deck_gl_json_chart"), "the researcher's live map"
    assert not shown_places(researcher) & exact, "in the researcher's precision, not the dashboard's"
    ranger = sign_in(run_app(live_store, monkeypatch, "any"), "amina")
    assert shown_places(ranger) & exact, "a ranger sees exact live positions"


def test_a_dashboard_started_for_one_role_admits_that_role_and_admins_only():
    from ranger_dashboard.roles import admits

    assert admits("ranger", "ranger") and admits("ranger", "admin") and not admits("ranger", "field_technician")
    assert admits("any", "field_technician") and admits("any", "visitor") and admits("any", "admin")
    assert not admits("field_technician", "ranger")


def test_admin_finds_the_audit_log_of_who_saw_exact_positions(live_store, monkeypatch):
    live_map = run_app(live_store, monkeypatch, "ranger", user="amina")  # a ranger looks at the live map
    assert track_places(live_store, Viewer("amina", "ranger"), live_map), "and its tracks come after it"
    app = run_app(live_store, monkeypatch, "ranger", user="ada", page="audit")

    frame = app.dataframe[0].value
    assert app.title[0].value == "Audit log"
    seen = frame[(frame["Who"] == "amina") & (frame["Positions"] == "exact")]
    assert {"latest positions", "tracks"} <= set(seen["What"])


def test_each_role_sees_the_pages_it_may_use():
    from ranger_dashboard.navigation import page_paths_for

    def paths(role: str) -> list[str]:
        return page_paths_for(Viewer("someone", role))

    assert paths("visitor") == ["live", "animals"]
    assert paths("ranger")[:3] == ["live", "alerts", "animals"] and "audit" not in paths("ranger")
    assert paths("admin")[-1] == "audit"
    assert "audit" not in paths("field_technician") and "audit" not in paths("researcher")
    # The herd register for every role that reads collars; the visitor kiosk (above) has none.
    assert all("herd" in paths(role) for role in ("ranger", "researcher", "field_technician", "admin"))


def test_the_launcher_passes_the_role_it_is_given_or_the_environments(monkeypatch):
    monkeypatch.setenv("TEMBO_DASHBOARD_ROLE", "visitor")
    from_env = launch.command(8765, "sqlite://")
    given = launch.command(8765, "sqlite://", role="researcher", address="0.0.0.0")
    monkeypatch.delenv("TEMBO_DASHBOARD_ROLE")
    default = launch.command(8765, "sqlite://")

    assert from_env[from_env.index("--role") + 1] == "visitor"
    assert given[given.index("--role") + 1] == "researcher"
    assert given[given.index("--server.address") + 1] == "0.0.0.0"
    assert default[default.index("--role") + 1] == "ranger"
    with pytest.raises(ValueError):
        launch.command(8765, "sqlite://", address="every interface")
    args = build_parser().parse_args(["dashboard", "--address", "0.0.0.0", "--port", "9000", "--role", "visitor"])
    assert (args.address, args.port, args.role) == ("0.0.0.0", 9000, "visitor")


def test_repeated_wrong_passwords_at_the_gate_lock_the_name_out_with_a_clear_message(live_store, monkeypatch):
    gate = run_app(live_store, monkeypatch, "ranger")
    errors = []
    for _ in range(6):
        gate.text_input(key="sign_in_username").input("mallory")
        gate.text_input(key="sign_in_password").input("guessing-at-tusks")
        gate.button[0].click().run()
        errors.append(gate.error[0].value)
    assert errors[:5] == ["Wrong username or password."] * 5
    assert re.match(r"Too many failed sign-ins: try again in \d+ s, or ask an admin to unlock\.$", errors[5])
    assert not gate.get("deck_gl_json_chart")


def test_admin_sees_a_locked_out_name_on_the_audit_page_and_unlocks_it(live_store, monkeypatch):
    from lora_bridge.access import throttle
    from lora_bridge.errors import AuthenticationFailed

    with open_bridge(live_store) as bridge:
        for _ in range(throttle.FREE_FAILURES[throttle.USER]):
            with pytest.raises(AuthenticationFailed):
                bridge.sign_in("intruder", "guessing-at-tusks")
    app = run_app(live_store, monkeypatch, "ranger", user="ada", page="audit")
    assert any("**intruder**" in m.value for m in app.markdown)
    assert "ada" in set(app.dataframe[1].value["Who"]), "the admin's own sign-in is listed as live"

    app.button(key="unlock_user_intruder").click().run()
    assert not app.exception
    with open_bridge(live_store) as bridge:
        assert "intruder" not in {row.key for row in bridge.lockouts(viewer=Viewer("ada", "admin"))}
        unlocked = [e for e in bridge.audit_log(viewer=Viewer("ada", "admin")) if e.action == "unlocked"]
    assert unlocked[0].username == "ada" and unlocked[0].detail["username"] == "intruder"


def test_field_technician_reads_on_the_fleet_page_no_gateway_that_heard_a_collar_just_now(tmp_path, monkeypatch):
    # Tusker (high-value) walked into the farm-edge mast's range two minutes ago: the gateway that heard
    # his collar places him within its range now. The technician sees his collar as heard by the
    # delay of its view (24 h for a high-value animal), as on /api/devices: the admin reads it live.
    url = f"sqlite:///{tmp_path / 'tembo.db'}"
    heard = WALL_NOW - timedelta(minutes=2)
    with live_bridge(url, now=WALL_NOW) as bridge:
        status = b.status(time_s=int(heard.timestamp()), lat=0.0, lon=0.0)
        assert bridge.ingest_tts_uplink(b.tts_uplink(status, device_id="collar-02", f_cnt=90, received_at=heard,
                                                     gateways=("gw-farm-edge",), dev_eui="70B3D57ED0000002")).ok

    def tuskers_row(role: str, user: str) -> dict:
        app = run_app(url, monkeypatch, role, user, page="fleet")
        table = app.dataframe[0].value  # the fleet table (the versions' follows)
        return next(row for row in table.to_dict("records") if row[views.COL_NAME] == "Tusker")

    assert tuskers_row("admin", "ada")["Gateway"] == "gw-farm-edge"
    seen = tuskers_row("field_technician", "tito")
    assert seen["Gateway"] != "gw-farm-edge"
    assert seen[views.COL_HEARD].endswith(("h ago", "d ago", "never")), "nor that the collar was heard minutes ago"
