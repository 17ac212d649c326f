"""Helpers of the ranger dashboard tests: a small reserve, a seeded bridge, a running dashboard.

Everything goes through `lora_bridge.service` the way the real system fills it: animals are
registered, collars' uplinks arrive as The Things Stack v3 webhook bodies built with the real
codec, and the reserve geometry is loaded as GeoJSON.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bridge_builders

from collar_firmware import codec
from lora_bridge.access import Viewer
from ranger_dashboard import serving

# Latest fix of the seeded herd; every seeded time is relative to it.
SEED_END = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

# A made-up 10 km x 8 km conservancy with one farm, one waterhole, one road and one gateway.
RESERVE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"kind": "boundary", "name": "Tembo test conservancy"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[37.50, 0.50], [37.59, 0.50], [37.59, 0.57], [37.50, 0.57], [37.50, 0.50]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "farmland", "name": "Maize shamba"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[37.57, 0.55], [37.59, 0.55], [37.59, 0.57], [37.57, 0.57], [37.57, 0.55]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "water", "name": "Dam"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[37.52, 0.52], [37.53, 0.52], [37.53, 0.53], [37.52, 0.53], [37.52, 0.52]]],
            },
        },
        {
            "type": "Feature",
            "properties": {"kind": "road", "name": "Ranger track"},
            "geometry": {"type": "LineString", "coordinates": [[37.50, 0.535], [37.59, 0.535]]},
        },
        {
            "type": "Feature",
            "properties": {"kind": "gateway", "name": "HQ mast"},
            "geometry": {"type": "Point", "coordinates": [37.545, 0.535]},
        },
    ],
}


@dataclass(frozen=True)
class Collared:
    """A seeded animal: collar, name and where it walks (start, hourly step in degrees)."""

    device_id: str
    name: str
    lat: float
    lon: float
    step_lat: float
    step_lon: float
    behaviour: str


HERD = (
    Collared("collar-001", "Amani", 0.520, 37.520, 0.0010, 0.0015, "forage"),
    Collared("collar-002", "Zawadi", 0.550, 37.560, 0.0008, 0.0010, "walk"),
    Collared("collar-003", "Kito", 0.510, 37.580, 0.0, 0.0, "rest"),
)


def tts_uplink(device_id: str, f_cnt: int, name: str, values: dict, heard_at: datetime) -> bytes:
    """A The Things Stack v3 uplink webhook body carrying codec message `name`, heard by the HQ mast."""
    return bridge_builders.tts_uplink(
        (codec.port_of(name), codec.encode(name, values)),
        device_id=device_id,
        f_cnt=f_cnt,
        gateways=("hq-mast",),
        received_at=heard_at,
        dev_eui="70B3D57ED0000" + device_id[-3:],
    )


def status_values(animal: Collared, when: datetime, lat: float, lon: float, battery_mv: int) -> dict:
    """A collar status message (port 1) at `when`."""
    return {
        "time_s": int(when.timestamp()),
        "lat": lat,
        "lon": lon,
        "fix_age_s": 30,
        "battery_mv": battery_mv,
        "temperature_c": 27.5,
        "fw_version": "1.2.3",
        "model_version": bridge_builders.SHIPPED_MODEL_VERSION,
        "uptime_h": 100,
        "reset_cause": "power_on",
        "behaviour": animal.behaviour,
        "flags": {},
        "queue_depth": 0,
        "errors": 0,
    }


# The seeded store's accounts: username -> (role, password). Test passwords, never used elsewhere.
ACCOUNTS = {
    "amina": ("ranger", "amina-test-password"),
    "juma": ("ranger", "juma-test-password"),
    "rose": ("researcher", "rose-test-password"),
    "tito": ("field_technician", "tito-test-password"),
    "ada": ("admin", "ada-test-password"),
}
# Who makes the accounts: the console of the machine the store is on.
SEEDER = Viewer("console:tests", "admin")


def add_accounts(bridge) -> None:
    """The ACCOUNTS, made through the service layer (passwords stored as scrypt hashes)."""
    for username, (role, password) in ACCOUNTS.items():
        bridge.add_user(username, role, password, actor=SEEDER)


def sign_in(page, username: str = "amina") -> None:
    """Sign in through the dashboard's login form in a Playwright page (a seeded ACCOUNTS name)."""
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(ACCOUNTS[username][1])
    page.get_by_role("button", name="Sign in").click()


def signed_in_app(app, database_url: str, username: str = "amina"):
    """`app` (an AppTest) signed in as the seeded account `username` (made first when missing),
    through a session of the bridge, as the login form makes it."""
    from lora_bridge.errors import InvalidRequest
    from lora_bridge.service import open_bridge
    from ranger_dashboard.login import SESSION_KEY

    role, password = ACCOUNTS[username]
    with open_bridge(database_url) as bridge:
        try:
            bridge.add_user(username, role, password, actor=SEEDER)
        except InvalidRequest:
            pass  # made already
        app.session_state[SESSION_KEY] = bridge.sign_in(username, password)[1]
    return app


def seed(bridge, hours: int = 6, mortality_on: str | None = "Kito") -> dict[str, int]:
    """Fill `bridge` with the test reserve, the ACCOUNTS, the HERD, `hours` hourly statuses each (the
    last at SEED_END), one activity summary each, and a collar-raised mortality alert on `mortality_on`.

    Returns the f_cnt reached per device.
    """
    bridge.load_geography(RESERVE)
    add_accounts(bridge)
    f_cnts: dict[str, int] = {}
    for animal in HERD:
        bridge.register_animal(animal.device_id, animal.name)
        f_cnt = 0
        for hour in range(hours):
            when = SEED_END - timedelta(hours=hours - 1 - hour)
            lat = animal.lat + animal.step_lat * hour
            lon = animal.lon + animal.step_lon * hour
            battery_mv = 3150 if animal.name == "Zawadi" else 3600
            body = tts_uplink(
                animal.device_id, f_cnt, "status", status_values(animal, when, lat, lon, battery_mv), when
            )
            assert bridge.ingest_tts_uplink(body).ok
            f_cnt += 1
        shares = {"rest": [80, 10, 10, 0], "forage": [10, 70, 20, 0], "walk": [10, 20, 60, 10]}[
            animal.behaviour
        ]
        activity = {
            "time_s": int((SEED_END - timedelta(hours=1)).timestamp()),
            "interval_min": 60,
            "model_version": bridge_builders.SHIPPED_MODEL_VERSION,
            "vedba_mean_mg": 45,
            "vedba_max_mg": 410,
            "shares": shares,
        }
        assert bridge.ingest_tts_uplink(
            tts_uplink(animal.device_id, f_cnt, "activity", activity, SEED_END)
        ).ok
        f_cnt += 1
        if animal.name == mortality_on:
            alert = {
                "alert_type": "mortality",
                "seq": 1,
                "time_s": int(SEED_END.timestamp()),
                "lat": animal.lat,
                "lon": animal.lon,
            }
            assert bridge.ingest_tts_uplink(tts_uplink(animal.device_id, f_cnt, "alert", alert, SEED_END)).ok
            f_cnt += 1
        f_cnts[animal.device_id] = f_cnt
    return f_cnts


_SEEDED_SQLITE: dict[int, Path] = {}


def seeded_sqlite(sqlite_url: str, hours: int = 6) -> str:
    """sqlite_url, its new SQLite file a copy of a store `seed(bridge, hours)` filled once per test process
    and `hours` (seeding takes ~0.8 s of CPU, mostly the accounts' scrypt hashes; a copy, a millisecond). Each
    test gets a file of its own: nothing one test writes reaches another."""
    from lora_bridge.service import open_bridge

    if hours not in _SEEDED_SQLITE:
        folder = Path(tempfile.mkdtemp(prefix="tembo-seeded-store-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "tembo.db"
        with open_bridge(bridge_builders.migrated(f"sqlite:///{path}")) as bridge:
            seed(bridge, hours=hours)
        kept = sqlite3.connect(path)
        try:  # every page in the file itself, none left in its write-ahead log
            kept.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            kept.close()
        _SEEDED_SQLITE[hours] = path
    target = Path(sqlite_url.removeprefix("sqlite:///"))
    if target.exists():
        raise FileExistsError(f"{target} is there already: a seeded copy goes to a new file")
    shutil.copyfile(_SEEDED_SQLITE[hours], target)
    return sqlite_url


def running_dashboard(port: int, database_url: str, log_path: Path, timeout_s: float = 60.0,
                      **options: Any) -> Iterator[str]:
    """The dashboard on `port` over `database_url` (with `launch.command`'s options, e.g. `refresh_s`),
    started and stopped by the dashboard's own `serving.running` (the one that waits for Streamlit's
    health check); yields its base URL."""
    return serving.running(port, database_url, log_path, timeout_s, **options)


@contextmanager
def backup_holds_the_store(database_url: str) -> Iterator[sqlite3.Connection]:
    """Another program (a backup, `tembo bridge compact`) holding the SQLite store's write lock
    (`BEGIN IMMEDIATE`) for the `with` block; the lock is let go when the block ends, however it ends."""
    backup = sqlite3.connect(database_url.removeprefix("sqlite:///"), check_same_thread=False)  # taken where it is due
    try:
        backup.execute("BEGIN IMMEDIATE")
        yield backup
    finally:
        backup.rollback()
        backup.close()


def names_on_map(database_url: str, viewer, spec: dict, fresh: bool = True) -> set[str]:
    """The names the live map of deck `spec` shows at its first view, as `viewer`: the tiles of its
    names layer (`ranger_dashboard.name_tiles`) at the zoom it opens on, over its animals, answered
    by the names route's own function as the browser would fetch them (from a server just started
    when `fresh`, else one that kept the herds it read before)."""
    from urllib.parse import parse_qs, urlsplit

    from lora_bridge.service import open_bridge
    from ranger_dashboard import name_routes, name_tiles

    layer = next(item for item in spec["layers"] if item["id"] == "animal-names")
    query = {key: values[0] for key, values in parse_qs(urlsplit(layer["data"]).query).items()}
    zoom = round(spec["initialViewState"]["zoom"])
    animals = next(item for item in spec["layers"] if item["id"] == "animals")["data"]
    tiles = {name_tiles.tile_of(a["lat"], a["lon"], zoom) for a in animals}
    if fresh:
        name_routes._cache.clear()
    with open_bridge(database_url) as bridge:
        return {
            feature["properties"]["name"]
            for x, y in tiles
            for feature in name_routes.names_for(bridge, viewer, zoom, x, y, query)["features"]
        }


def tracks_on_map(database_url: str, viewer, spec: dict) -> list[dict]:
    """The track segments the live map of deck `spec` draws after its first frame, as `viewer`: the
    answer of the tracks route's own function (`ranger_dashboard.track_routes`) for the window in
    the URL of its tracks layer, as the browser would fetch it."""
    from urllib.parse import parse_qs, urlsplit

    from lora_bridge.service import open_bridge
    from ranger_dashboard import data, track_routes

    layer = next(item for item in spec["layers"] if item["id"] == "tracks")
    assert layer["data"].startswith(f".{track_routes.TRACKS_PATH}?")
    since, until = track_routes.window({key: values[0] for key, values in parse_qs(urlsplit(layer["data"]).query).items()})
    with open_bridge(database_url) as bridge:
        return track_routes.segments_for(bridge, viewer, since, until, data.TRACK_MAX_POINTS)


# A phone's browser, as the dashboard's phone tests open it.
PHONE_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)

# The WCAG 2 contrast of every piece of text in the page's main area against the background it is
# drawn on (the first opaque background of it or its ancestors): [contrast, text, colour, background].
TEXT_CONTRASTS_JS = """
(root) => {
  const rgba = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.9)) return c;
    }
    return rgba(getComputedStyle(document.body).backgroundColor);
  };
  const found = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || Number(style.opacity) === 0) continue;
    if (style.fontFamily.includes('Material')) continue;  // an icon, not text
    const fg = rgba(style.color), bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    found.push([(hi + 0.05) / (lo + 0.05), text.slice(0, 60), style.color, `rgb(${bg.slice(0, 3)})`]);
  }
  return found;
}
"""
# Streamlit's primary buttons ("Sign in", "Import", "Resolve", "Save"), in a form or not.
PRIMARY_BUTTONS = "[data-testid='stBaseButton-primary'], [data-testid='stBaseButton-primaryFormSubmit']"


def primary_button_contrasts(page) -> list[list]:
    """Every word on each primary button shown on page, as TEXT_CONTRASTS_JS gives it: [contrast with the
    button it is written on, text, colour, background]."""
    found = []
    for button in page.locator(PRIMARY_BUTTONS).all():
        if button.is_visible():
            found.extend(page.evaluate(TEXT_CONTRASTS_JS, button.element_handle()))
    return found


# The smallest phone the dashboard is checked on.
SMALL_PHONE = {"width": 360, "height": 740}
