"""A role that sees the herd late (a field technician: an hour, a day for a high-value animal or a collar on
none) sees each collar up to one cutoff, whichever page asks: the collars, the fleet's health, the network
events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import bridge_builders as b

from lora_bridge.access import Viewer
from lora_bridge.store.tables import NetworkEvent as NetworkEventRow

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TECHNICIAN = Viewer("juma", "field_technician")
ADMIN = Viewer("ada", "admin")  # sees the herd as it is  # collars on an animal: an hour late; on none: a day late


def heard_every_minute(bridge, device_id: str, around: datetime, join: bool = False) -> None:
    """The collar heard once a minute from 20 minutes before `around` to 20 minutes after it (a status
    uplink, or with join a join-accept: a network event)."""
    for minute in range(41):
        heard = around + timedelta(minutes=minute - 20)
        if join:  # each join its own session
            document = json.loads(b.tts_join(device_id=device_id, received_at=heard))
            document["join_accept"]["session_key_id"] = base64.b64encode(f"{device_id}-{minute}".encode()).decode()
            document["correlation_ids"] = [f"as:up:{device_id}:join:{minute}"]
            body = json.dumps(document).encode()
        else:
            body = b.tts_uplink(b.status(time_s=int(heard.timestamp())), device_id=device_id, f_cnt=minute + 1,
                                received_at=heard)
        assert bridge.ingest_tts_uplink(body).status in ("processed", "recorded")


def test_a_technician_reads_each_collar_up_to_one_cutoff_on_the_collars_page_the_fleet_page_and_the_network_log(
        sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: NOW
        bridge.register_animal("collar-01", "Naserian")
        bridge.register_animal("collar-03", "Tusker")
        heard_every_minute(bridge, "collar-01", NOW - timedelta(hours=1))
        heard_every_minute(bridge, "collar-03", NOW - timedelta(hours=1), join=True)
        heard_every_minute(bridge, "collar-02", NOW - timedelta(hours=24), join=True)  # on no animal

        fleet = {row.device_id: row for row in bridge.fleet_health(NOW, viewer=TECHNICIAN)}
        collars = {view.device_id: view for view in bridge.devices(viewer=TECHNICIAN)}
        joins = {}
        for event in bridge.network_events(kind="join", viewer=TECHNICIAN):
            joins[event["device_id"]] = max(event["time"], joins.get(event["device_id"], event["time"]))

    hour_late, day_late = NOW - timedelta(hours=1), NOW - timedelta(hours=24)
    assert (fleet["collar-01"].as_of, fleet["collar-01"].last_seen, collars["collar-01"].last_seen) == (hour_late,) * 3
    assert (fleet["collar-03"].as_of, joins["collar-03"]) == (hour_late, hour_late)
    assert (fleet["collar-02"].as_of, joins["collar-02"]) == (day_late, day_late)


def test_the_fleet_page_of_a_technician_shows_each_collars_last_uplink_as_of_the_moment_it_names(sqlite_url):
    """The fleet page says "as of" when a late role sees each collar, and its last uplink, radio and counts are
    those heard by then. Until 5 December the page read the bridge's clock once for the collars and again for
    "as of" and the gateway: on a busy bridge whose answer took a while, the uplinks heard between the two
    readings were in "as of" and the gateway but not in the last uplink shown beside them."""
    moments = iter(NOW + timedelta(minutes=minute) for minute in range(10_000))

    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: NOW
        bridge.register_animal("collar-01", "Naserian")
        heard_every_minute(bridge, "collar-01", NOW - timedelta(hours=1))
        bridge.clock = lambda: next(moments)  # a minute passes between any two readings of the clock
        (row,) = bridge.fleet_health(NOW, viewer=TECHNICIAN)

    assert row.as_of is not None and row.last_seen == row.as_of, "the newest uplink heard by as_of (one a minute)"


def test_a_technician_sees_a_network_message_of_no_collar_a_day_late_even_when_an_animal_wears_none(sqlite_url):
    """A network event no collar is named in (kept as the network server sent it) is shown to a role with a
    delay up to its strictest cutoff. Until 6 December the look-up of each collar's animal also held the
    animals wearing none under "no collar", so such an event took the cutoff of an animal whose collar had
    come off: an hour late for a technician instead of a day."""
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: NOW - timedelta(days=3)
        naserian = bridge.register_animal("collar-01", "Naserian")
        bridge.clock = lambda: NOW
        bridge.take_off_collar(naserian.animal_id, viewer=ADMIN, removed_at=NOW - timedelta(days=2))
        with bridge.db.write() as session:
            for hours in (2, 25):
                session.add(NetworkEventRow(network="tts", kind="join", device_id=None,
                                            time=NOW - timedelta(hours=hours), detail={}))
        shown = [event["time"] for event in bridge.network_events(viewer=TECHNICIAN) if event["device_id"] is None]
        everything = [event["time"] for event in bridge.network_events(viewer=ADMIN) if event["device_id"] is None]

    assert len(everything) == 2, "both events are stored, and an admin sees them at once"
    assert shown == [NOW - timedelta(hours=25)], "a day late: the one of two hours ago is not shown yet"
