"""The herd register over the API: a field technician renames an animal, corrects its species or sex,
fits a new collar after a swap or moves a collar to another elephant; what each collar reported stays
with the animal that wore it then (its track, its alerts, a backlog heard after the swap); rangers and
visitors read the herd but may not change it; every change is in the audit log with who made it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import bridge_builders as b
import pytest
from access_builders import CONSOLE, NOW, PASSWORDS, live_bridge
from conftest import store_from
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.service import open_bridge
from ranger_dashboard import views as dashboard_views

# Amani's newest fix is ten minutes before NOW (access_builders); the technician moves her collar
# to Kito five minutes before NOW.
MOVED_AT = NOW - timedelta(minutes=5)
HERD_FIXES = 48 + 1  # Amani's hourly fixes and the one her fence alert carries


@dataclass(frozen=True)
class RegisteredHerd:
    """A store holding the live herd (access_builders), Kito on collar-03 and a token per account."""

    headers_of: dict[str, dict[str, str]]  # role -> the Authorization header of its account's token
    kito: str  # Kito's animal id


def register_kito_and_tokens(store_url: str) -> RegisteredHerd:
    """Make the empty store at store_url the live herd with Kito, a young bull registered on a spare collar
    never heard, and a token per account (what the `api` fixture serves)."""
    with live_bridge(store_url) as bridge:
        headers_of = {
            role: {"Authorization": f"Bearer {bridge.create_token(username, 'tests', actor=CONSOLE).secret}"}
            for username, (role, _) in PASSWORDS.items()
        }
        kito = bridge.register_animal("collar-03", "Kito", sex="male").animal_id
    return RegisteredHerd(headers_of, kito)  # the bridge closed: a SQLite WAL checkpointed, no connection left


@pytest.fixture(scope="module")
def registered_sqlite_store(tmp_path_factory) -> tuple[Path, RegisteredHerd]:
    """The registered herd on SQLite, made once for the module: each test starts on a copy of its file."""
    path = tmp_path_factory.mktemp("registered-herd") / "tembo.db"
    return path, register_kito_and_tokens(f"sqlite:///{path}")


@pytest.fixture(scope="module")
def registered_postgres_template(postgres_server, postgres_store_template) -> Iterator[tuple[str, RegisteredHerd]]:
    """The registered herd in a PostgreSQL database made once for the module (its name): each test starts
    on a database cloned from it."""
    url = postgres_server.create_database("tembo_registered_herd", template=postgres_store_template)
    herd = register_kito_and_tokens(url)
    yield url.rsplit("/", 1)[-1], herd
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registered_store(request, tmp_path) -> Iterator[tuple[str, RegisteredHerd]]:
    """A store of this test's own holding the registered herd: a copy of the module's SQLite file, then
    (second run) a PostgreSQL database cloned from the module's (dropped after the test)."""
    source, herd = request.getfixturevalue(
        "registered_sqlite_store" if request.param == "sqlite" else "registered_postgres_template")
    with store_from(request.param, request, tmp_path / "tembo.db", source) as url:
        yield url, herd


@pytest.fixture
def api(registered_store):
    """A client of the API over the live herd (Amani on collar-01, Tusker on collar-02) and Kito, a
    young bull registered on a spare collar never heard, with a token per role; the bridge opened on
    the registered store as after a restart, its clock at NOW (as `live_bridge` opens it)."""
    store_url, herd = registered_store
    with b.fresh_bridge(store_url) as bridge:
        bridge.clock = lambda: NOW
        with TestClient(create_app(bridge)) as client:
            client.headers_of = herd.headers_of
            client.bridge = bridge
            client.kito = herd.kito
            yield client


def animal_named(api, name: str) -> dict:
    herd = api.get("/api/animals", headers=api.headers_of["ranger"])
    assert herd.status_code == 200
    return next(animal for animal in herd.json() if animal["name"] == name)


def fixes_of(api, animal_id: str) -> list[dict]:
    """The fixes a ranger reads of animal_id (every animal's when empty)."""
    query = f"?animal_id={animal_id}" if animal_id else ""
    answer = api.get(f"/api/positions{query}", headers=api.headers_of["ranger"])
    assert answer.status_code == 200
    return [feature["properties"] for feature in answer.json()["features"]]


def collar_01_reports(api, fix_at, heard_at, f_cnt: int, lat: float = -2.6, lon: float = 37.6) -> None:
    """collar-01 sends one fix dated fix_at, heard at heard_at."""
    message = b.positions(time_s=int(fix_at.timestamp()), fixes=((0, lat, lon),))
    body = b.tts_uplink(message, device_id="collar-01", f_cnt=f_cnt, received_at=heard_at, dev_eui="70B3D57ED0000001")
    assert api.bridge.ingest_tts_uplink(body).ok


def move_collar_01_to_kito(api, **body) -> object:
    return api.post(f"/api/animals/{api.kito}/collar", headers=api.headers_of["field_technician"],
                    json={"device_id": "collar-01", "move": True, "fitted_at": MOVED_AT.isoformat(), **body})


def test_field_technician_moves_a_collar_to_another_elephant_and_the_old_track_stays_with_the_first(api):
    amani = animal_named(api, "Amani")
    fence_alert = next(a for a in api.get("/api/alerts?state=all", headers=api.headers_of["ranger"]).json()
                       if a["alert_type"] == "geofence_farmland")
    assert fence_alert["animal_id"] == amani["animal_id"]

    moved = move_collar_01_to_kito(api)
    assert moved.status_code == 200, moved.text
    assert moved.json()["device_id"] == "collar-01" and moved.json()["name"] == "Kito"

    # Kito shows no place until his collar reports: Amani's last fix is not his.
    assert animal_named(api, "Kito")["lat"] is None
    latest = api.get("/api/positions/latest", headers=api.headers_of["ranger"]).json()["features"]
    assert "Kito" not in {feature["properties"]["name"] for feature in latest}
    assert animal_named(api, "Amani")["device_id"] is None
    collar_01_reports(api, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), f_cnt=100)

    kito = animal_named(api, "Kito")
    assert (kito["lat"], kito["lon"]) == (pytest.approx(-2.6, abs=1e-4), pytest.approx(37.6, abs=1e-4))
    assert [fix["time"] for fix in fixes_of(api, api.kito)] == [(NOW - timedelta(minutes=2)).isoformat()]
    amanis = fixes_of(api, amani["animal_id"])
    assert len(amanis) == HERD_FIXES and {fix["device_id"] for fix in amanis} == {"collar-01"}
    assert max(fix["time"] for fix in amanis) == (NOW - timedelta(minutes=10)).isoformat()
    alert = api.get(f"/api/alerts/{fence_alert['alert_id']}", headers=api.headers_of["ranger"]).json()
    assert (alert["animal_id"], alert["name"]) == (amani["animal_id"], "Amani")
    # Kito's spare collar came off him; what he wore is his collar history.
    worn = api.get(f"/api/animals/{api.kito}/collars", headers=api.headers_of["ranger"]).json()
    assert [(w["device_id"], w["removed_at"]) for w in worn] == [("collar-03", MOVED_AT.isoformat()),
                                                                 ("collar-01", None)]


def test_a_fence_alert_the_moved_collar_raises_on_the_new_elephant_is_his_own_not_a_repeat_of_the_first(api):
    ranger = api.headers_of["ranger"]
    amanis = next(a for a in api.get("/api/alerts?state=all", headers=ranger).json()
                  if a["alert_type"] == "geofence_farmland")
    assert amanis["state"] == "new"
    assert move_collar_01_to_kito(api).status_code == 200

    alert = b.alert("geofence_farmland", seq=2, time_s=int((NOW - timedelta(minutes=2)).timestamp()), lat=-2.6, lon=37.6)
    body = b.tts_uplink(alert, device_id="collar-01", f_cnt=100, received_at=NOW - timedelta(minutes=1),
                        dev_eui="70B3D57ED0000001")
    assert api.bridge.ingest_tts_uplink(body).ok

    fence = [a for a in api.get("/api/alerts?state=all", headers=ranger).json() if a["alert_type"] == "geofence_farmland"]
    assert sorted((a["name"], a["occurrences"], a["state"]) for a in fence) == [("Amani", 1, "new"), ("Kito", 1, "new")]
    resolved = api.post(f"/api/alerts/{amanis['alert_id']}/resolve", headers=ranger, json={"verdict": "true"})
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"


def test_a_backlog_from_before_the_move_heard_after_it_stays_with_the_elephant_that_wore_the_collar(api):
    amani = animal_named(api, "Amani")
    assert move_collar_01_to_kito(api).status_code == 200

    # The collar's flash queue sends a fix from when Amani still wore it, heard after the move.
    collar_01_reports(api, NOW - timedelta(minutes=7), NOW - timedelta(minutes=1), f_cnt=100, lat=-2.45)

    assert fixes_of(api, api.kito) == []
    amanis = fixes_of(api, amani["animal_id"])
    assert len(amanis) == HERD_FIXES + 1
    assert max(fix["time"] for fix in amanis) == (NOW - timedelta(minutes=7)).isoformat()


def test_a_move_logged_after_the_collar_went_on_gives_the_new_elephant_the_fixes_since(api):
    amani = animal_named(api, "Amani")
    # The collar went on Kito at MOVED_AT and reported from him before the technician logged it.
    collar_01_reports(api, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), f_cnt=100)
    assert len(fixes_of(api, amani["animal_id"])) == HERD_FIXES + 1

    assert move_collar_01_to_kito(api).status_code == 200

    assert [fix["time"] for fix in fixes_of(api, api.kito)] == [(NOW - timedelta(minutes=2)).isoformat()]
    assert len(fixes_of(api, amani["animal_id"])) == HERD_FIXES


def test_a_collar_another_elephant_wears_is_not_taken_without_saying_move(api):
    technician = api.headers_of["field_technician"]
    refused = api.post(f"/api/animals/{api.kito}/collar", headers=technician, json={"device_id": "collar-01"})

    assert refused.status_code == 409
    assert "Amani" in refused.json()["error"] and "move" in refused.json()["error"]
    assert animal_named(api, "Amani")["device_id"] == "collar-01"
    assert animal_named(api, "Kito")["device_id"] == "collar-03"
    unknown = api.post("/api/animals/999/collar", headers=technician, json={"device_id": "collar-01"})
    assert unknown.status_code == 404
    future = api.post(f"/api/animals/{api.kito}/collar", headers=technician,
                      json={"device_id": "collar-09", "fitted_at": (NOW + timedelta(hours=1)).isoformat()})
    assert future.status_code == 400 and "future" in future.json()["error"]


def test_field_technician_fits_a_new_collar_after_a_swap_and_the_old_one_keeps_its_history(api):
    amani = animal_named(api, "Amani")
    technician = api.headers_of["field_technician"]

    fitted = api.post(f"/api/animals/{amani['animal_id']}/collar", headers=technician,
                      json={"device_id": "collar-11", "fitted_at": MOVED_AT.isoformat()})

    assert fitted.status_code == 200 and fitted.json()["device_id"] == "collar-11"
    # The old collar, lying in the workshop, sends its backlog: a fix from Amani and a test fix since.
    collar_01_reports(api, NOW - timedelta(minutes=7), NOW - timedelta(minutes=1), f_cnt=100, lat=-2.45)
    collar_01_reports(api, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), f_cnt=101, lat=-1.0)
    devices = {d["device_id"]: d for d in api.get("/api/devices", headers=api.headers_of["ranger"]).json()}
    assert devices["collar-11"]["name"] == "Amani"
    amanis = fixes_of(api, amani["animal_id"])
    assert len(amanis) == HERD_FIXES + 1 and max(fix["time"] for fix in amanis) == (NOW - timedelta(minutes=7)).isoformat()
    assert animal_named(api, "Amani")["lat"] is None  # her new collar has not reported yet
    # The old collar lies in the workshop, worn by nobody: no animal of the herd, its bench fix nobody's
    # track; the technician finds it heard under the collars.
    herd = api.get("/api/animals", headers=api.headers_of["ranger"]).json()
    assert sorted(a["name"] for a in herd) == ["Amani", "Kito", "Tusker"]
    assert (NOW - timedelta(minutes=2)).isoformat() not in [fix["time"] for fix in fixes_of(api, "")]
    assert "collar-01" in devices
    worn = api.get(f"/api/animals/{amani['animal_id']}/collars", headers=api.headers_of["ranger"]).json()
    assert [w["device_id"] for w in worn] == ["collar-01", "collar-11"]
    # The old collar is in stock: its farmland alert on Amani closed at the swap, awaiting a ranger's verdict.
    stock = api.get("/api/herd/collars-in-stock", headers=api.headers_of["ranger"]).json()
    assert [(c["device_id"], c["taken_off_name"]) for c in stock] == [("collar-01", "Amani")]
    fence = [a for a in api.get("/api/alerts?state=all", headers=api.headers_of["ranger"]).json()
             if a["device_id"] == "collar-01"]
    assert [(a["alert_type"], a["state"], a["resolved_by"], a["verdict"]) for a in fence] == [
        ("geofence_farmland", "resolved", "tembo", None)]


def test_field_technician_renames_an_elephant_and_corrects_its_sex_and_the_audit_log_says_who(api):
    amani = animal_named(api, "Amani")

    changed = api.patch(f"/api/animals/{amani['animal_id']}", headers=api.headers_of["field_technician"],
                        json={"name": "  Amani II ", "sex": "Female", "species": "Loxodonta cyclotis"})

    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["sex"], changed.json()["species"]) == (
        "Amani II", "female", "Loxodonta cyclotis")
    assert animal_named(api, "Amani II")["device_id"] == "collar-01"
    audit = api.get("/api/audit", headers=api.headers_of["admin"]).json()
    renamed = next(entry for entry in audit if entry["action"] == "animal_renamed")
    assert (renamed["username"], renamed["role"]) == ("tito", "field_technician")
    assert renamed["detail"]["name"] == {"was": "Amani", "now": "Amani II"}


@pytest.mark.parametrize("body, said", [({"name": "   "}, "name cannot be empty"), ({"species": ""}, "species"),
                                        ({"sex": "bull"}, "female, male, unknown"), ({"nick": "A"}, "nick")])
def test_an_empty_name_or_an_unknown_sex_is_refused_and_the_elephant_keeps_its_record(api, body, said):
    amani = animal_named(api, "Amani")

    refused = api.patch(f"/api/animals/{amani['animal_id']}", headers=api.headers_of["admin"], json=body)

    assert refused.status_code == 400 and said in refused.json()["error"]
    assert animal_named(api, "Amani") == amani


def test_rangers_and_visitors_read_the_herd_but_may_not_change_it_and_no_token_changes_nothing(api):
    amani = animal_named(api, "Amani")
    for role in ("ranger", "researcher", "visitor"):
        renamed = api.patch(f"/api/animals/{amani['animal_id']}", headers=api.headers_of[role], json={"name": "X"})
        fitted = api.post(f"/api/animals/{api.kito}/collar", headers=api.headers_of[role],
                          json={"device_id": "collar-01", "move": True})
        assert (renamed.status_code, fitted.status_code) == (403, 403), role
    assert api.patch(f"/api/animals/{amani['animal_id']}", json={"name": "X"}).status_code == 401
    assert api.post(f"/api/animals/{api.kito}/collar", json={"device_id": "collar-01", "move": True}).status_code == 401
    assert animal_named(api, "Amani")["name"] == "Amani" and animal_named(api, "Amani")["device_id"] == "collar-01"


def test_field_technician_lists_the_herd_moves_a_collar_and_renames_from_the_command_line(sqlite_url, capsys):
    from tembo.cli import main

    with live_bridge(sqlite_url) as bridge:
        kito = bridge.register_animal("collar-03", "Kito").animal_id
    store = ["--database-url", sqlite_url]

    assert main(["animals", "fit", "Kito", "collar-01", *store]) == 1
    assert "worn by Amani" in capsys.readouterr().err
    assert main(["animals", "fit", "Kito", "collar-01", "--move", "--at", "2026-06-01T11:55", *store]) == 0
    assert "Kito (animal " in capsys.readouterr().out
    assert main(["animals", "rename", kito, "--name", "Kito the younger", "--sex", "male", *store]) == 0
    assert main(["animals", "rename", "Amani", "--name", " ", *store]) == 1
    assert "name cannot be empty" in capsys.readouterr().err
    assert main(["animals", "list", *store]) == 0
    listed = capsys.readouterr().out
    assert main(["animals", "collars", kito, *store]) == 0
    collars = capsys.readouterr().out

    assert any("Kito the younger" in line and "collar-01" in line and "2026-06-01 11:55" in line
               for line in listed.splitlines())
    assert any("Amani" in line and "collar-01" not in line for line in listed.splitlines())
    assert [line.split()[1] for line in collars.splitlines() if "collar-" in line] == ["collar-03", "collar-01"]
    with open_bridge(sqlite_url) as bridge:
        changes = [e for e in bridge.audit_log(viewer=CONSOLE) if e.action in ("collar_fitted", "animal_renamed")]
    assert len(changes) == 2 and all(e.username.startswith("console:") for e in changes)


@pytest.mark.parametrize("empty_url", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def test_an_upgraded_store_keeps_each_elephant_on_its_collar_and_a_technician_moves_one(empty_url, request):
    from sqlalchemy import create_engine, text

    from lora_bridge.access import Viewer
    from lora_bridge.store import migrate

    store_url = request.getfixturevalue(empty_url)
    # Yesterday's store (0029): Amani on collar-01 with a fix, Kito on collar-03.
    engine = create_engine(store_url)
    try:
        migrate.upgrade(engine, "0029_notification_tries_total")
        with engine.begin() as connection:
            for device_id in ("collar-01", "collar-03"):
                connection.execute(text("INSERT INTO devices (device_id, flags, reported_settings, session) "
                                        "VALUES (:d, '{}', '{}', 0)"), {"d": device_id})
            for key, name, device_id in ((1, "Amani", "collar-01"), (2, "Kito", "collar-03")):
                connection.execute(text("INSERT INTO animals (id, name, species, device_id, created_at, high_value) "
                                        "VALUES (:i, :n, 'Loxodonta africana', :d, :t, false)"),
                                   {"i": key, "n": name, "d": device_id, "t": NOW - timedelta(days=30)})
            connection.execute(text("INSERT INTO positions (id, device_id, animal_id, time, lat, lon, message) "
                                    "VALUES (1, 'collar-01', 1, :t, -2.5, 37.5, 'status')"), {"t": NOW - timedelta(days=1)})
        assert migrate.upgrade(engine) == migrate.head_revision()
    finally:
        engine.dispose()

    technician = Viewer("tito", "field_technician")
    with open_bridge(store_url) as bridge:
        bridge.clock = lambda: NOW
        assert [w.fitted_at for w in bridge.collar_history("1", viewer=technician)] == [None]
        kito = bridge.fit_collar("2", "collar-01", viewer=technician, move=True, fitted_at=NOW - timedelta(hours=1))
        tracks = bridge.tracks(viewer=Viewer("amina", "ranger"))

    assert kito.device_id == "collar-01"
    assert [(p.animal_id, p.device_id) for p in tracks["1"]] == [("1", "collar-01")] and "2" not in tracks


@pytest.mark.parametrize("empty_url", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def test_an_upgraded_store_lists_a_collar_taken_off_and_heard_since_as_in_stock_not_as_an_animal(empty_url, request):
    from sqlalchemy import create_engine, text

    from lora_bridge.store import migrate

    store_url = request.getfixturevalue(empty_url)
    off_at = NOW - timedelta(days=2)
    # Yesterday's store (0031): collar-01 came off Amani and, heard since, is held by a record named after it.
    engine = create_engine(store_url)
    try:
        migrate.upgrade(engine, "0031_collar_taken_off")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO devices (device_id, flags, reported_settings, session, taken_off_at) "
                                    "VALUES ('collar-01', '{}', '{}', 0, :t)"), {"t": off_at})
            for key, name, device_id in ((1, "Amani", None), (2, "collar-01", "collar-01")):
                connection.execute(text("INSERT INTO animals (id, name, species, device_id, created_at, high_value, "
                                        "collar_fitted_at) VALUES (:i, :n, 'Loxodonta africana', :d, :t, false, :f)"),
                                   {"i": key, "n": name, "d": device_id, "t": NOW - timedelta(days=30),
                                    "f": off_at if device_id else None})
            connection.execute(text("INSERT INTO collar_fittings (id, animal_id, device_id, removed_at) "
                                    "VALUES (1, 1, 'collar-01', :t)"), {"t": off_at})
        assert migrate.upgrade(engine) == migrate.head_revision()
    finally:
        engine.dispose()

    with open_bridge(store_url) as bridge:
        assert [a.name for a in bridge.herd_register(viewer=CONSOLE)] == ["Amani"]
        (stock,) = bridge.collars_in_stock(viewer=CONSOLE)
    assert (stock.device_id, stock.taken_off_at, stock.taken_off_name) == ("collar-01", off_at, "Amani")


# ---------------------------------------------------------------- a collar taken off with none fitted


def take_off_amanis_collar(api, role: str = "field_technician", animal_id: str | None = None, **query) -> object:
    animal_id = animal_id or animal_named(api, "Amani")["animal_id"]
    return api.delete(f"/api/animals/{animal_id}/collar", headers=api.headers_of[role], params=query)


def stock_record_of(api, device_id: str) -> str:
    """The id of the record collar device_id in stock is filed under (no route names it: it is no animal)."""
    from sqlalchemy import select

    from lora_bridge.store.tables import Animal

    with api.bridge.db.read() as session:
        return str(session.scalar(select(Animal.id).where(Animal.device_id == device_id, Animal.holds_collar_in_stock)))


def test_rangers_and_technicians_see_a_collar_in_stock_on_the_collar_list_as_in_stock_not_as_an_animal(api):
    off_at = NOW - timedelta(minutes=5)
    assert take_off_amanis_collar(api, removed_at=off_at.isoformat()).status_code == 200
    # On the workshop bench collar-01 fixes itself: a record is kept of its time in stock.
    collar_01_reports(api, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), f_cnt=100, lat=-1.0)

    for role in ("ranger", "field_technician"):
        devices = {d["device_id"]: d for d in api.get("/api/devices", headers=api.headers_of[role]).json()}
        stock = devices["collar-01"]
        assert (stock["animal_id"], stock["name"], stock["in_stock"]) == (None, None, True), role
        assert stock["taken_off_at"] == off_at.isoformat(), role
        worn = devices["collar-02"]
        assert (worn["name"], worn["in_stock"], worn["taken_off_at"]) == ("Tusker", False, None), role
    # The fleet health page names no animal for it either: it says the collar is in stock.
    health = {c.device_id: c for c in api.bridge.fleet_health()}
    assert (health["collar-01"].name, health["collar-01"].in_stock) == (None, True)
    assert (health["collar-02"].name, health["collar-02"].in_stock) == ("Tusker", False)
    table = dashboard_views.fleet_health_table([health["collar-01"], health["collar-02"]], NOW)
    assert dict(zip(table[dashboard_views.COL_COLLAR], table[dashboard_views.COL_NAME], strict=True)) == {
        "collar-01": dashboard_views.IN_STOCK, "collar-02": "Tusker"}
    # and no uplink is due from it: its silence in the workshop is not counted overdue, it is listed last
    assert list(table[dashboard_views.COL_UPLINK_DUE]) == ["on time", dashboard_views.IN_STOCK]


def test_an_elephant_registered_on_a_collar_from_stock_wears_it_from_her_registration_not_from_its_take_off(api):
    off_at = NOW - timedelta(hours=3)
    assert take_off_amanis_collar(api, removed_at=off_at.isoformat()).status_code == 200
    # Three hours in the workshop: the collar fixed itself on the bench an hour after it came off.
    collar_01_reports(api, off_at + timedelta(hours=1), off_at + timedelta(hours=1, minutes=1), f_cnt=100, lat=-1.0)

    zawadi = api.bridge.register_animal("collar-01", "Zawadi", sex="female")  # at NOW, the bridge's clock

    herd = {a["name"]: a for a in api.get("/api/herd", headers=api.headers_of["ranger"]).json()}
    assert (herd["Zawadi"]["device_id"], herd["Zawadi"]["collar_fitted_at"]) == ("collar-01", NOW.isoformat())
    assert "collar-01" not in herd and api.get("/api/herd/collars-in-stock", headers=api.headers_of["ranger"]).json() == []
    assert fixes_of(api, zawadi.animal_id) == []  # the bench's fix is no track of hers
    devices = {d["device_id"]: d for d in api.get("/api/devices", headers=api.headers_of["field_technician"]).json()}
    assert (devices["collar-01"]["name"], devices["collar-01"]["in_stock"]) == ("Zawadi", False)


def test_field_technician_takes_amanis_collar_off_and_its_fixes_since_are_no_longer_hers(api):
    amani = animal_named(api, "Amani")
    off_at = NOW - timedelta(minutes=5)
    # The collar came off at 11:55 and reported from the workshop bench before the technician logged it.
    collar_01_reports(api, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), f_cnt=100, lat=-1.0)

    taken = take_off_amanis_collar(api, removed_at=off_at.isoformat())

    assert taken.status_code == 200, taken.text
    assert (taken.json()["name"], taken.json()["device_id"]) == ("Amani", None)
    herd = {a["name"]: a for a in api.get("/api/herd", headers=api.headers_of["ranger"]).json()}
    assert herd["Amani"]["device_id"] is None and "lat" not in herd["Amani"]
    # The bench's fix is the collar's, on nobody: a collar in stock, not an animal of the herd.
    assert "collar-01" not in herd
    stock = api.get("/api/herd/collars-in-stock", headers=api.headers_of["ranger"]).json()
    assert stock == [{"device_id": "collar-01", "taken_off_at": off_at.isoformat(),
                      "taken_off_animal_id": amani["animal_id"], "taken_off_name": "Amani"}]
    amanis = fixes_of(api, amani["animal_id"])
    assert len(amanis) == HERD_FIXES and max(f["time"] for f in amanis) == (NOW - timedelta(minutes=10)).isoformat()
    worn = api.get(f"/api/animals/{amani['animal_id']}/collars", headers=api.headers_of["ranger"]).json()
    assert [(w["device_id"], w["removed_at"]) for w in worn] == [("collar-01", off_at.isoformat())]
    audit = api.get("/api/audit", headers=api.headers_of["admin"]).json()
    entry = next(e for e in audit if e["action"] == "collar_taken_off")
    assert (entry["username"], entry["detail"]["device_id"], entry["detail"]["refiled"]) == ("tito", "collar-01", 1)


def test_a_collar_in_stock_reporting_from_the_workshop_is_no_animal_anywhere_a_ranger_or_visitor_looks(api):
    import csv
    import io

    assert take_off_amanis_collar(api, removed_at=(NOW - timedelta(minutes=5)).isoformat()).status_code == 200
    # On the workshop bench, collar-01 fixes itself there after it came off Amani.
    bench_at = (NOW - timedelta(minutes=2)).isoformat()
    collar_01_reports(api, NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), f_cnt=100, lat=-1.0)
    # The technician still finds the collar heard, under the collars and the collars in stock.
    devices = {d["device_id"]: d for d in api.get("/api/devices", headers=api.headers_of["field_technician"]).json()}
    assert "collar-01" in devices
    workshop = stock_record_of(api, "collar-01")
    stock = api.get("/api/herd/collars-in-stock", headers=api.headers_of["field_technician"]).json()
    assert [c["device_id"] for c in stock] == ["collar-01"]

    for role in ("ranger", "visitor"):
        seen = api.headers_of[role]
        herd = api.get("/api/animals", headers=seen).json()
        assert sorted(a["name"] for a in herd) == ["Amani", "Kito", "Tusker"], role
        assert workshop not in [a["animal_id"] for a in herd], role
        on_map = api.get("/api/positions/latest", headers=seen).json()["features"]
        assert workshop not in [f["properties"]["animal_id"] for f in on_map], role
        tracks = api.get("/api/tracks", headers=seen).json()["features"]
        assert workshop not in [f["properties"]["animal_id"] for f in tracks], role
        fixes = api.get(f"/api/positions?animal_id={workshop}", headers=seen)
        assert (fixes.status_code, fixes.json()["features"]) == (200, []), role
        assert api.get(f"/api/animals/{workshop}/activity", headers=seen).status_code == 404, role
    everyone = [f["properties"]["time"] for f in api.get("/api/positions", headers=api.headers_of["ranger"]).json()["features"]]
    assert bench_at not in everyone
    movebank = api.get("/api/exports/movebank.csv", headers=api.headers_of["ranger"])
    assert movebank.status_code == 200
    rows = list(csv.DictReader(io.StringIO(movebank.text)))
    assert {r["animal-nickname"] for r in rows} == {"Amani", "Tusker"}
    assert workshop not in {r["individual-local-identifier"] for r in rows}
    # Nor may anyone flag, rename or fit a collar to it as if it were an animal.
    flagged = api.post(f"/api/animals/{workshop}/high_value", headers=api.headers_of["ranger"], json={"high_value": True})
    renamed = api.patch(f"/api/animals/{workshop}", headers=api.headers_of["field_technician"], json={"name": "Ghost"})
    fitted = api.post(f"/api/animals/{workshop}/collar", headers=api.headers_of["field_technician"],
                      json={"device_id": "collar-09"})
    assert (flagged.status_code, renamed.status_code, fitted.status_code) == (404, 404, 404)


def test_a_collar_taken_off_is_refused_for_an_animal_without_one_a_wrong_time_or_an_unknown_animal(api):
    technician = api.headers_of["field_technician"]
    assert move_collar_01_to_kito(api).status_code == 200  # Amani wears none now; Kito since MOVED_AT
    kito = api.kito

    bare = take_off_amanis_collar(api)
    before = take_off_amanis_collar(api, animal_id=kito, removed_at=(MOVED_AT - timedelta(minutes=1)).isoformat())
    future = take_off_amanis_collar(api, animal_id=kito, removed_at=(NOW + timedelta(hours=1)).isoformat())
    garbled = take_off_amanis_collar(api, animal_id=kito, removed_at="yesterday")
    unknown = api.delete("/api/animals/999/collar", headers=technician)

    assert (bare.status_code, bare.json()["error"]) == (400, "Amani wears no collar to take off")
    assert before.status_code == 400 and "before it went on" in before.json()["error"]
    assert future.status_code == 400 and "future" in future.json()["error"]
    assert garbled.status_code == 400 and "ISO 8601" in garbled.json()["error"]
    assert unknown.status_code == 404
    assert animal_named(api, "Kito")["device_id"] == "collar-01"
    audit = api.get("/api/audit", headers=api.headers_of["admin"]).json()
    assert not [e for e in audit if e["action"] == "collar_taken_off"]


def test_rangers_researchers_and_visitors_may_not_take_a_collar_off_nor_may_anyone_without_a_token(api):
    for role in ("ranger", "researcher", "visitor"):
        assert take_off_amanis_collar(api, role=role).status_code == 403, role
    amani = animal_named(api, "Amani")
    assert api.delete(f"/api/animals/{amani['animal_id']}/collar").status_code == 401
    assert animal_named(api, "Amani")["device_id"] == "collar-01"
    assert take_off_amanis_collar(api, role="admin").status_code == 200


def test_a_collar_taken_off_and_driven_out_of_the_park_in_the_workshop_truck_raises_no_alert(sqlite_url):
    import rules_builders as rb

    from lora_bridge.access import Viewer

    technician = Viewer("tito", "field_technician")
    with b.fresh_bridge(sqlite_url) as bridge:
        naserian = bridge.register_animal("collar-01", "Naserian", sex="female").animal_id
        bridge.register_animal("collar-02", "Lekishon", sex="male")
        rb.park_and_farm(bridge)
        bridge.take_off_collar(naserian, viewer=technician, removed_at=b.T0 - timedelta(minutes=1))
        # Her collar, on nobody, rides the road out of the park and through the farms; Lekishon walks it.
        out_and_in = [(0, 309_000, 9_702_000), (60, 313_000, 9_702_000)]
        rb.ingest_track(bridge, out_and_in, device_id="collar-01")
        rb.ingest_track(bridge, out_and_in, device_id="collar-02")

        raised = {(a.name, a.alert_type) for a in bridge.alerts(viewer=b.RANGER)}
        assert raised == {("Lekishon", "geofence_exit"), ("Lekishon", "geofence_farmland")}

        # Fitted to Naserian again (the collar's placeholder holds it, nobody wears it: no move needed),
        # she walks out of the park: hers again, so her crossings are alerts.
        refit = bridge.fit_collar(naserian, "collar-01", viewer=technician, fitted_at=b.T0 + timedelta(hours=2))
        assert refit.device_id == "collar-01"
        rb.ingest_track(bridge, [(180, 309_000, 9_702_000), (240, 313_000, 9_702_000)], device_id="collar-01",
                        first_f_cnt=10)
        raised = {(a.name, a.alert_type) for a in bridge.alerts(viewer=b.RANGER)}
    assert ("Naserian", "geofence_exit") in raised and ("Naserian", "geofence_farmland") in raised
    assert not {name for name, _ in raised} - {"Naserian", "Lekishon"}, "no alert of the collar on nobody"


def test_field_technician_takes_a_collar_off_from_the_command_line_and_is_told_why_not_when_she_cannot(
    sqlite_url, capsys
):
    from tembo.cli import main

    with live_bridge(sqlite_url):
        pass
    store = ["--database-url", sqlite_url]

    assert main(["animals", "take-off", "Amani", "--at", "2026-06-01T11:55", *store]) == 0
    assert "Amani (animal " in (said := capsys.readouterr().out) and "collar collar-01 came off at 2026-06-01 11:55" in said
    assert main(["animals", "list", *store]) == 0
    listed = capsys.readouterr().out
    assert "Collars in stock" in listed and "2026-06-01 11:55" in listed.split("Collars in stock")[1]
    assert main(["animals", "take-off", "Amani", *store]) == 1
    assert "Amani wears no collar to take off" in capsys.readouterr().err
    assert main(["animals", "take-off", "Tusker", "--at", "2999-01-01T00:00", *store]) == 1
    assert "future" in capsys.readouterr().err
    assert main(["animals", "take-off", "Tusker", "--at", "soon", *store]) == 1
    assert "not an ISO 8601 time" in capsys.readouterr().err
    assert main(["animals", "take-off", "Nobody", *store]) == 1
    assert "no animal called 'Nobody'" in capsys.readouterr().err
    assert main(["animals", "take-off", "999", *store]) == 1
    assert "no animal" in capsys.readouterr().err
    with open_bridge(sqlite_url) as bridge:
        (entry,) = [e for e in bridge.audit_log(viewer=CONSOLE) if e.action == "collar_taken_off"]
        herd = {a.name: a.device_id for a in bridge.herd_register(viewer=CONSOLE)}
    assert entry.username.startswith("console:") and herd["Amani"] is None and herd["Tusker"] == "collar-02"
