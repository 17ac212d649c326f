"""Builders of the access tests: a small herd whose fixes run up to a fixed "now", read by a bridge
whose clock is that now, and the set of every exact place it knows (what must never leak)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import bridge_builders as b

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
def live_bridge(sqlite_url: str, now: datetime = NOW, **settings: Any) -> Iterator[Bridge]:
    """A bridge on a fresh store whose clock stands at `now`, with the herd, its accounts, 48 hourly
    fixes per animal up to now - 10 min, an activity summary every 6 h, a mortality alert on Tusker
    raised 30 min ago and a low-battery-free geofence alert on Amani raised 30 h ago."""
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
