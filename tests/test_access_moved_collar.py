"""What a role with a delay reads of an animal whose collar was moved to it from another: when it was
last heard, its battery and where its status flags put it come from what the collar said on this animal,
never from what it said on the animal that wore it before. Over the API as in the service, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from lora_bridge.access import Viewer
from lora_bridge.adapters.api import create_app

T = b.T0
NOW = T + timedelta(hours=30)
RESEARCHER = Viewer("rose", "researcher")  # six hours late, on a 1 km grid
TECHNICIAN = Viewer("juma", "field_technician")


def heard_status(bridge, at, f_cnt: int, battery_mv: int, **flags: bool) -> None:
    status = b.status(time_s=int(at.timestamp()), battery_mv=battery_mv, flags=flags)
    assert bridge.ingest_tts_uplink(b.tts_uplink(status, f_cnt=f_cnt, received_at=at)).ok


@pytest.fixture
def bridge(store_url):
    """Naserian's collar-01 reported her out of the park two hours in; at 20 h it went on Kito, whose
    collar is heard again only at 29 h (within the researcher's six hours)."""
    with b.fresh_bridge(store_url) as bridge:
        bridge.clock = lambda: NOW
        bridge.register_animal("collar-01", "Naserian", sex="female")
        bridge.kito = bridge.register_animal("collar-02", "Kito", sex="male").animal_id
        heard_status(bridge, T + timedelta(hours=2), 1, 3900, outside_park=True)
        bridge.fit_collar(bridge.kito, "collar-01", viewer=TECHNICIAN, move=True, fitted_at=T + timedelta(hours=20))
        heard_status(bridge, T + timedelta(hours=29), 2, 3700)
        yield bridge


def test_a_researcher_does_not_read_naserians_last_report_as_kitos_after_the_collar_moved_to_him(bridge):
    kito = next(a for a in bridge.animals(viewer=RESEARCHER) if a.animal_id == bridge.kito)

    # By the researcher's cutoff (24 h) the collar had not been heard on Kito.
    assert (kito.last_seen, kito.battery_mv, kito.lat) == (None, None, None)
    (collar,) = bridge.devices(["collar-01"], viewer=RESEARCHER)
    assert (collar.animal_id, collar.last_seen, collar.flags) == (bridge.kito, None, {})


def test_the_api_tells_a_researcher_nothing_of_naserians_report_under_kitos_name(bridge):
    with TestClient(create_app(bridge)) as api:
        listed = api.get("/api/animals", headers=b.api_headers(bridge, "researcher")).json()

    kito = next(a for a in listed if str(a["animal_id"]) == bridge.kito)
    assert (kito["last_seen"], kito["battery_mv"]) == (None, None)


def test_once_past_the_cutoff_kito_reads_his_own_report(bridge):
    bridge.clock = lambda: NOW + timedelta(hours=6)
    kito = next(a for a in bridge.animals(viewer=RESEARCHER) if a.animal_id == bridge.kito)

    assert (kito.last_seen, kito.battery_mv) == (T + timedelta(hours=29), 3700)
    (collar,) = bridge.devices(["collar-01"], viewer=RESEARCHER)
    assert collar.flags.get("outside_park") is False



def test_a_ranger_does_not_read_the_collars_last_report_on_naserian_as_kitos_last_seen(store_url):
    with b.fresh_bridge(store_url) as bridge:
        bridge.clock = lambda: T + timedelta(hours=21)
        bridge.register_animal("collar-01", "Naserian", sex="female")
        kito = bridge.register_animal("collar-02", "Kito", sex="male").animal_id
        heard_status(bridge, T + timedelta(hours=2), 1, 3900)
        bridge.fit_collar(kito, "collar-01", viewer=TECHNICIAN, move=True, fitted_at=T + timedelta(hours=20))
        # An hour after the fitting the collar has not been heard on Kito yet.
        seen = next(a for a in bridge.animals(viewer=b.RANGER) if a.animal_id == kito)
        assert (seen.last_seen, seen.lat) == (None, None)

        heard_status(bridge, T + timedelta(hours=20, minutes=30), 2, 3890)
        seen = next(a for a in bridge.animals(viewer=b.RANGER) if a.animal_id == kito)
        assert seen.last_seen == T + timedelta(hours=20, minutes=30)



def test_kitos_own_status_stands_when_naserians_backlog_status_is_heard_after_it(store_url):
    with b.fresh_bridge(store_url) as bridge:
        bridge.clock = lambda: NOW  # the researcher's cutoff: 24 h
        bridge.register_animal("collar-01", "Naserian", sex="female")
        kito = bridge.register_animal("collar-02", "Kito", sex="male").animal_id
        heard_status(bridge, T + timedelta(hours=2), 1, 3900, outside_park=True)
        bridge.fit_collar(kito, "collar-01", viewer=TECHNICIAN, move=True, fitted_at=T + timedelta(hours=20))
        heard_status(bridge, T + timedelta(hours=21), 2, 3800)  # Kito's own, in the park
        # At 22 h the collar sends, from Kito's neck, a status of 10 h it kept in flash: Naserian's, out of the park.
        backlog = b.status(time_s=int((T + timedelta(hours=10)).timestamp()), battery_mv=3950,
                           flags={"outside_park": True})
        assert bridge.ingest_tts_uplink(b.tts_uplink(backlog, f_cnt=3, received_at=T + timedelta(hours=22))).ok

        seen = next(a for a in bridge.animals(viewer=RESEARCHER) if a.animal_id == kito)
        (collar,) = bridge.devices(["collar-01"], viewer=RESEARCHER)
    assert (seen.battery_mv, collar.battery_mv, collar.flags.get("outside_park")) == (3800, 3800, False)
