"""Builders of the access tests: a small herd whose fixes run up to a fixed "now", read by a bridge
whose clock is that now, and the set of every exact place it knows (what must never leak)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bridge_builders as b
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from lora_bridge.access import ADMIN, Viewer
from lora_bridge.service import Bridge

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOURS = 48  # hourly fixes, the newest ten minutes before NOW
CONSOLE = Viewer("console:tests", ADMIN)
PASSWORDS = {
    "amina": ("ranger", "amina-access-password"),
    "rose": ("researcher", "rose-access-password"),
    "tito": ("field_technician", "tito-access-password"),
    "ada": ("admin", "ada-access-password"),
    "kiosk": ("visitor", "kiosk-access-password"),
}
# Two animals: Amani an ordinary one, Tusker flagged high-value.
HERD = (
    ("collar-01", "Amani", -2.500, 37.500, False),
    ("collar-02", "Tusker", -2.300, 37.700, True),
)


def fix_time(hour: int, now: datetime = NOW) -> datetime:
    """The time of fix number `hour` (0 = oldest) of a herd whose newest fix is ten minutes before now."""
    return now - timedelta(minutes=10) - timedelta(hours=HOURS - 1 - hour)


@contextmanager
def live_bridge(store_url: str, now: datetime = NOW, **settings: Any) -> Iterator[Bridge]:
    """A bridge on a fresh store whose clock stands at `now`, with the herd, its accounts, 48 hourly
    fixes per animal up to now - 10 min, an activity summary every 6 h, a mortality alert on Tusker
    raised 30 min ago and a low-battery-free geofence alert on Amani raised 30 h ago.

    The herd goes in through the bridge's own calls and webhook (`_seeded_bridge`) once per test process
    and `now`; each test then gets a copy of that store (a SQLite file copied, a PostgreSQL database
    cloned from it) and a bridge opened on it, as after a restart. With settings, or on a store already
    there, the herd goes in again for the test."""
    if settings or not _fresh(store_url):
        with _seeded_bridge(store_url, now, **settings) as bridge:
            yield bridge
        return
    _copy_of_seeded(store_url, now)
    with b.fresh_bridge(store_url) as bridge:
        bridge.clock = lambda: now
        yield bridge


_SEEDED: dict[tuple[str, datetime], str] = {}  # (engine, now) -> the seeded store's SQLite path or database name


def _fresh(store_url: str) -> bool:
    """True for a SQLite file not there yet, or a PostgreSQL database of the fixtures (cloned empty)."""
    return make_url(store_url).get_backend_name() == "postgresql" or b._new_sqlite_file(store_url) is not None


def _copy_of_seeded(store_url: str, now: datetime) -> None:
    """Make the store at store_url a copy of the herd seeded at `now` (seeding it first, once per process)."""
    url = make_url(store_url)
    if url.get_backend_name() != "postgresql":
        key = ("sqlite", now)
        if key not in _SEEDED:
            folder = Path(tempfile.mkdtemp(prefix="tembo-live-herd-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            with _seeded_bridge(f"sqlite:///{folder / 'tembo.db'}", now):
                pass  # closed: its WAL checkpointed into the file
            _SEEDED[key] = str(folder / "tembo.db")
        shutil.copyfile(_SEEDED[key], url.database)
        return
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        key = (f"postgresql:{url.host}:{url.port}", now)
        if key not in _SEEDED:
            seeded = f"tembo_live_herd_{os.getpid()}_{len(_SEEDED)}"
            with admin.connect() as connection:  # the test's database is still the empty migrated store
                connection.execute(text(f"CREATE DATABASE {seeded} TEMPLATE {url.database} STRATEGY FILE_COPY"))
            with _seeded_bridge(url.set(database=seeded).render_as_string(hide_password=False), now):
                pass
            _SEEDED[key] = seeded
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {url.database} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {url.database} TEMPLATE {_SEEDED[key]} STRATEGY FILE_COPY"))
    finally:
        admin.dispose()


@contextmanager
def _seeded_bridge(sqlite_url: str, now: datetime = NOW, **settings: Any) -> Iterator[Bridge]:
    """A bridge on a fresh store whose clock stands at `now`, the herd put in through its own calls and
    webhook reads (what `live_bridge` describes)."""
    with b.fresh_bridge(sqlite_url, **settings) as bridge:
        bridge.clock = lambda: now
        for username, (role, password) in PASSWORDS.items():
            bridge.add_user(username, role, password, actor=CONSOLE)
        for index, (device_id, name, lat, lon, high_value) in enumerate(HERD):
            bridge.register_animal(device_id, name, high_value=high_value)
            dev_eui = f"70B3D57ED000000{index + 1}"
            f_cnt = 0
            for first in range(0, HOURS, 4):  # batches of 4 hourly fixes, as a collar sends them
                start = fix_time(first, now)
                fixes = tuple(
                    (int((fix_time(h, now) - start).total_seconds()), lat + 0.0013 * h, lon + 0.0017 * h)
                    for h in range(first, min(first + 4, HOURS))
                )
                f_cnt += 1
                message = b.positions(time_s=int(start.timestamp()), fixes=fixes)
                body = b.tts_uplink(message, device_id=device_id, f_cnt=f_cnt, received_at=fix_time(first + 3, now),
                                    dev_eui=dev_eui)
                assert bridge.ingest_tts_uplink(body).ok
            for hour in range(5, HOURS, 6):  # an activity summary of the hour before every sixth fix
                f_cnt += 1
                activity = b.activity(time_s=int((fix_time(hour, now) - timedelta(hours=1)).timestamp()))
                body = b.tts_uplink(activity, device_id=device_id, f_cnt=f_cnt, received_at=fix_time(hour, now),
                                    dev_eui=dev_eui)
                assert bridge.ingest_tts_uplink(body).ok
            f_cnt += 1
            if high_value:
                alert = b.alert("mortality", seq=1, time_s=int((now - timedelta(minutes=30)).timestamp()),
                                lat=lat + 0.01, lon=lon + 0.01)
            else:
                alert = b.alert("geofence_farmland", seq=1, time_s=int((now - timedelta(hours=30)).timestamp()),
                                lat=lat - 0.01, lon=lon - 0.01)
            body = b.tts_uplink(alert, device_id=device_id, f_cnt=f_cnt, received_at=now, dev_eui=dev_eui)
            assert bridge.ingest_tts_uplink(body).ok
        yield bridge


def viewer(username: str) -> Viewer:
    """The viewer of one of the PASSWORDS accounts."""
    return Viewer(username, PASSWORDS[username][0])


def exact_places(bridge: Bridge) -> set[tuple[float, float]]:
    """Every exact place the store knows (fixes and alert positions), rounded to 1e-5 degrees."""
    ranger = Viewer("audit.check", "ranger")
    places = {(round(p.lat, 5), round(p.lon, 5)) for t in bridge.tracks(viewer=ranger).values() for p in t}
    places |= {(round(a.lat, 5), round(a.lon, 5)) for a in bridge.alerts(viewer=ranger) if a.lat is not None}
    return places


def coordinates(document: Any) -> Iterator[tuple[float, float]]:
    """Every (lat, lon) pair in a JSON-like document: lat/lon keys and GeoJSON [lon, lat] positions."""
    if isinstance(document, dict):
        lat = document.get("lat", document.get("latitude"))
        lon = document.get("lon", document.get("longitude"))
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            yield float(lat), float(lon)
        if document.get("type") in ("Point", "LineString", "MultiPoint", "Polygon") and "coordinates" in document:
            yield from _positions(document["coordinates"])
        for value in document.values():
            yield from coordinates(value)
    elif isinstance(document, list | tuple):
        for value in document:
            yield from coordinates(value)
    elif hasattr(document, "__dataclass_fields__"):
        yield from coordinates(vars(document))


def _positions(value: Any) -> Iterator[tuple[float, float]]:
    if isinstance(value, list | tuple) and len(value) >= 2 and all(isinstance(v, int | float) for v in value[:2]):
        yield float(value[1]), float(value[0])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _positions(item)
