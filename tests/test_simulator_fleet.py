"""The herd running the real collar firmware: what the bridge receives, what the collar hears back."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from collar_firmware import codec
from simulator.animals import AnimalIdentity, Scenario, SimulatedAnimal, boundary_point_xy
from simulator.fleet import CollarBattery, CollarTemperature, Fleet, ambient_temperature_c, fence_commands
from simulator.movebank import MovebankReplay, read_movebank
from simulator.network_server import NetworkServerStandIn
from simulator.reserve import Area, demo_reserve, distance_m

START = datetime(2026, 3, 1, tzinfo=UTC)
START_S = int(START.timestamp())
HOUR_S = 3600
FIXTURE = Path(__file__).parent / "fixtures" / "movebank_tiny.csv"


def decoded(message: dict) -> dict:
    """The codec's reading of a TTS uplink message."""
    up = message["uplink_message"]
    return codec.decode(up["f_port"], base64.b64decode(up["frm_payload"]))


def one_animal_fleet(scenarios=(), home_xy=(0.0, 0.0), hours=6.0, **kwargs) -> Fleet:
    """A fleet of one simulated elephant with the given scenarios, in the demo reserve."""
    reserve = demo_reserve()
    animal = SimulatedAnimal(AnimalIdentity("tembo-collar-01", "70B3D57ED0060001", "Amani"), reserve, START_S,
                             seed=3, home_xy=home_xy, scenarios=scenarios)
    return Fleet(animals=[animal], reserve=reserve, start=START, days=hours / 24, **kwargs)


def alerts_of(messages: list[dict]) -> dict[str, float]:
    """First time (Unix s, from the payload) each alert type reached the network."""
    first: dict[str, float] = {}
    for m in messages:
        d = decoded(m)
        if d["message"] == "alert":
            first.setdefault(d["alert_type"], d["time_s"])
    return first


def test_same_seed_gives_the_same_uplinks_byte_for_byte():
    def run(seed: int) -> str:
        return json.dumps(list(Fleet(n_collars=3, seed=seed, start=START, days=0.1).uplinks()))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_fleet_yields_time_ordered_tts_uplinks_that_decode_with_the_codec():
    fleet = Fleet(n_collars=4, seed=2, start=START, days=0.25)
    messages = list(fleet.uplinks())
    times = [m["received_at"] for m in messages]
    assert times == sorted(times)
    kinds = {decoded(m)["message"] for m in messages}
    assert {"status", "activity", "positions", "ack"} <= kinds  # acks: the fences arrived over the air
    devices = {m["end_device_ids"]["device_id"] for m in messages}
    assert devices == {f"tembo-collar-0{i}" for i in range(1, 5)}
    for device in devices:
        counters = [m["uplink_message"].get("f_cnt", 0) for m in messages  # TTS leaves out a zero f_cnt
                    if m["end_device_ids"]["device_id"] == device]
        assert counters[0] == 0 and counters == sorted(counters)
    counts = fleet.counters()
    assert counts["uplinks_sent"] >= counts["uplinks_delivered"] > 0
    assert counts["messages_delivered"] == len(messages) >= counts["uplinks_delivered"]


def test_positions_on_the_wire_are_where_the_animal_is():
    fleet = one_animal_fleet(hours=4)
    messages = list(fleet.uplinks())
    positions = [decoded(m) for m in messages if decoded(m)["message"] == "positions"]
    assert len(positions) >= 3  # hourly fixes
    animal = fleet.animal("tembo-collar-01")
    for p in positions:
        for fix in p["fixes"]:
            truth = animal.state_at(p["time_s"] + fix["dt_s"])
            error_m = distance_m(fix["lon"], fix["lat"], truth.lon, truth.lat)
            assert error_m < 700.0  # GNSS noise, with now and then a bad fix


def test_chirpstack_format_carries_the_same_frames():
    tts = list(Fleet(n_collars=2, seed=4, start=START, days=0.05).uplinks("tts"))
    chirp = list(Fleet(n_collars=2, seed=4, start=START, days=0.05).uplinks("chirpstack"))
    assert [m["uplink_message"]["frm_payload"] for m in tts] == [e["data"] for e in chirp]
    assert [m["uplink_message"].get("f_cnt", 0) for m in tts] == [e.get("fCnt", 0) for e in chirp]
    assert chirp[0]["deviceInfo"]["devEui"] == chirp[0]["deviceInfo"]["devEui"].lower()
    with pytest.raises(ValueError, match="network_format"):
        next(Fleet(n_collars=1, seed=4, start=START, days=0.05).uplinks("mqtt"))


def test_manifest_lists_every_collar_for_registration_with_the_bridge():
    manifest = Fleet(n_collars=5, seed=1, start=START, days=0.1).manifest()
    assert [m["device_id"] for m in manifest] == [f"tembo-collar-0{i}" for i in range(1, 6)]
    assert all(m["species"] == "Loxodonta africana" and len(m["dev_eui"]) == 16 and m["name"] for m in manifest)


def test_every_collar_learns_the_reserve_fences_over_the_air():
    fleet = Fleet(n_collars=2, seed=1, start=START, days=0.1)
    messages = list(fleet.uplinks())
    acks = [decoded(m) for m in messages if decoded(m)["message"] == "ack"]
    fence_cmd = codec.message("fence")[2]
    assert sum(a["cmd"] == fence_cmd and a["result"] == "ok" for a in acks) == 2 * len(fence_commands(demo_reserve()))
    kinds = sorted(f.kind for f in fleet.collar("tembo-collar-01").fences())
    assert kinds == [0, 1, 1, 1]  # the park boundary and three farmland patches


def test_a_reserve_boundary_the_collar_cannot_hold_is_refused_before_any_collar_runs():
    reserve = demo_reserve()
    ring = tuple(reserve.frame.to_lonlat(9000 * math.cos(a / 40 * 2 * math.pi), 9000 * math.sin(a / 40 * 2 * math.pi))
                 for a in range(40))
    detailed = dataclasses.replace(reserve, boundary=Area("detailed boundary", ring))
    with pytest.raises(ValueError, match="'detailed boundary' has 40 vertices, a collar holds 32"):
        fence_commands(detailed)
    with pytest.raises(ValueError, match="40 vertices"):
        Fleet(n_collars=1, seed=1, start=START, days=0.05, reserve=detailed)
    assert Fleet(n_collars=1, seed=1, start=START, days=0.05, reserve=detailed, fences=False).reserve is detailed


def test_downlink_pushed_over_http_reaches_the_collar_after_its_next_uplink():
    fleet = Fleet(n_collars=2, seed=1, start=START, days=0.2, fences=False)
    stream = fleet.uplinks()
    before = [next(stream) for _ in range(3)]
    with NetworkServerStandIn(fleet, api_key="NNSXS.TEST") as server:
        command = codec.encode("tracking", {"minutes": 30})
        body = {"downlinks": [{"f_port": 32, "frm_payload": base64.b64encode(command).decode()}]}
        response = httpx.post(server.push_url("tembo-collar-02"), json=body,
                              headers={"Authorization": "Bearer NNSXS.TEST"})
        assert response.status_code == 200
        assert fleet.downlink_queue("tembo-collar-02") == [(32, command, False)]
    after = list(stream)
    ours = [m for m in after if m["end_device_ids"]["device_id"] == "tembo-collar-02"]
    acks = [(i, decoded(m)) for i, m in enumerate(ours) if decoded(m)["message"] == "ack"]
    assert len(acks) == 1
    index, ack = acks[0]
    assert (ack["on_port"], ack["cmd"], ack["result"]) == (32, codec.message("tracking")[2], "ok")
    assert index >= 1  # heard in the RX window of an uplink, acknowledged in a later one
    assert fleet.collar("tembo-collar-02").downlinks == 1 and fleet.downlink_queue("tembo-collar-02") == []
    assert fleet.counters()["downlinks_queued"] == 1
    assert all(decoded(m)["message"] != "ack" for m in before)


def test_downlinks_for_unknown_collars_or_bad_ports_are_refused():
    fleet = Fleet(n_collars=1, seed=1, start=START, days=0.05)
    with pytest.raises(KeyError, match="tembo-collar-09"):
        fleet.push_downlink("tembo-collar-09", 32, b"\x02")
    with pytest.raises(ValueError, match="port"):
        fleet.push_downlink("tembo-collar-01", 0, b"\x02")
    assert fleet.device_id_of("70b3d57ed0060001") == "tembo-collar-01"


def test_ranger_gets_a_mortality_alert_within_three_hours_of_the_death():
    fleet = one_animal_fleet([Scenario("mortality", START_S + HOUR_S)], hours=6)
    first = alerts_of(list(fleet.uplinks()))
    assert START_S + 2 * HOUR_S < first["mortality"] <= START_S + 4 * HOUR_S, "the carcass, not the 12 h rule"
    assert START_S + 4 * HOUR_S <= first["immobility"] < START_S + 6 * HOUR_S


@pytest.mark.parametrize("vigour", [None, 0.6], ids=["as_drawn", "weakest_runner"])
def test_ranger_gets_a_poaching_alert_when_the_animal_runs_at_night_near_the_boundary(vigour):
    """The weakest animal the twin draws (vigour 0.6) still flees at a gallop, at the same speed, with
    movements 0.6 times as strong: the model calls many of its windows a walk, the collar still alerts."""
    reserve = demo_reserve()
    chase_s = START_S + 19 * HOUR_S  # 22:00 East Africa Time
    chase = Scenario("poaching_chase", chase_s, duration_s=25 * 60, lead_s=3 * HOUR_S,
                     place_xy=boundary_point_xy(reserve, 0.3, 500.0),
                     run_to_xy=boundary_point_xy(reserve, 0.35, 700.0))
    fleet = one_animal_fleet([chase], home_xy=boundary_point_xy(reserve, 0.3, 3500.0), hours=20)
    if vigour is not None:
        stream = fleet.collar("tembo-collar-01").hal.imu.source.stream
        stream.profile = dataclasses.replace(stream.profile, vigour=vigour)
    first = alerts_of(list(fleet.uplinks()))
    assert chase_s <= first["poaching_risk"] < chase_s + 15 * 60


def test_ranger_gets_a_farmland_alert_when_the_animal_raids_crops():
    reserve = demo_reserve()
    farm = reserve.farmland_centres_xy()[0]
    raid_s = START_S + 21 * HOUR_S + 1800
    raid = Scenario("farmland_raid", raid_s, duration_s=150 * 60, lead_s=3 * HOUR_S, place_xy=farm)
    d = math.hypot(*farm)
    fleet = one_animal_fleet([raid], home_xy=(farm[0] - 5000 * farm[0] / d, farm[1] - 5000 * farm[1] / d),
                             hours=24)
    first = alerts_of(list(fleet.uplinks()))
    assert raid_s - 3 * HOUR_S <= first["geofence_farmland"] <= raid_s + 1800


def test_ranger_gets_a_collar_drop_alert_and_no_mortality_alert():
    fleet = one_animal_fleet([Scenario("collar_drop", START_S + 2 * HOUR_S)], hours=16)
    first = alerts_of(list(fleet.uplinks()))
    assert START_S + 2 * HOUR_S < first["collar_drop"] <= START_S + 5 * HOUR_S
    assert "mortality" not in first


def test_ranger_gets_low_then_critical_battery_alerts_when_the_pack_fails():
    fleet = one_animal_fleet([Scenario("low_battery", START_S + HOUR_S)], hours=16)
    first = alerts_of(list(fleet.uplinks()))
    # 3640 mV falls 40 mV an hour: below 3300 mV after 8.5 h, below 3100 mV after 13.5 h.
    assert START_S + 9 * HOUR_S < first["low_battery"] < START_S + 11 * HOUR_S
    assert START_S + 14 * HOUR_S < first["battery_critical"] < START_S + 16 * HOUR_S


def test_battery_is_flat_for_years_and_falls_fast_at_the_end_of_its_life():
    battery = CollarBattery(3640, START_S, end_of_life_s=START_S + 10 * 86400)
    assert battery(START_S) == 3640 and battery(START_S + 5 * 86400) == 3635
    assert battery(START_S + 10 * 86400 + 5 * HOUR_S) == 3630 - 200
    assert battery(START_S + 30 * 86400) == 2900


def test_collar_warms_on_a_live_animal_and_cools_when_dropped():
    fleet = one_animal_fleet([Scenario("collar_drop", START_S + 2 * HOUR_S)], hours=4)
    temperature = CollarTemperature(fleet.animal("tembo-collar-01"))
    worn = temperature(START_S + HOUR_S)
    assert worn / 10 == pytest.approx(ambient_temperature_c(START_S + HOUR_S) + 8.0, abs=0.1)
    temperature(START_S + 2 * HOUR_S)
    cooled = temperature(START_S + 3 * HOUR_S)
    assert cooled / 10 == pytest.approx(ambient_temperature_c(START_S + 3 * HOUR_S), abs=0.3)


def test_pace_plays_simulated_hours_in_wall_clock_seconds():
    class FakeClock:
        def __init__(self) -> None:
            self.now = 100.0
            self.slept: list[float] = []

        def monotonic(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)
            self.now += seconds

    clock = FakeClock()
    fleet = Fleet(n_collars=2, seed=1, start=START, days=0.25, pace=3600, sleep=clock.sleep,
                  monotonic=clock.monotonic)
    messages = list(fleet.uplinks())
    last_s = datetime.fromisoformat(messages[-1]["received_at"]).timestamp()
    # The last uplink of six simulated hours is handed over about six wall seconds after the start.
    assert clock.now - 100.0 == pytest.approx((last_s - START_S) / 3600, abs=1e-6)
    assert 5.5 < clock.now - 100.0 <= 6.0
    assert len(clock.slept) > 1 and all(s > 0 for s in clock.slept)
    with pytest.raises(ValueError, match="pace"):
        Fleet(n_collars=1, seed=1, start=START, days=0.1, pace=0)


def test_a_real_movebank_track_can_wear_a_simulated_collar():
    track = read_movebank(FIXTURE)["Tiny Walker"]
    replay = MovebankReplay(track, AnimalIdentity("tembo-collar-77", "70B3D57ED0069077", "Tiny Walker"), START_S,
                            demo_reserve())
    fleet = Fleet(animals=[replay], reserve=demo_reserve(), start=START, days=0.1)
    fixes = [f for m in fleet.uplinks() if decoded(m)["message"] == "positions" for f in decoded(m)["fixes"]]
    assert fixes
    assert all(abs(f["lat"] - 0.575) < 0.01 and abs(f["lon"] - 37.58) < 0.01 for f in fixes)
    assert fleet.manifest()[0]["name"] == "Tiny Walker" and fleet.ground_truth() == []


def test_a_fleet_runs_only_once():
    fleet = Fleet(n_collars=1, seed=1, start=START, days=0.02)
    list(fleet.uplinks())
    with pytest.raises(RuntimeError, match="once"):
        list(fleet.uplinks())


@pytest.mark.slow
def test_two_day_demo_herd_raises_every_scenario_alert():
    fleet = Fleet(n_collars=6, seed=1, start=START, days=2)
    messages = list(fleet.uplinks())
    raised = {(m["end_device_ids"]["device_id"], decoded(m)["alert_type"])
              for m in messages if decoded(m)["message"] == "alert"}
    for event in fleet.ground_truth():
        assert (event.device_id, event.expected_alert) in raised, event


def test_same_seed_gives_the_same_uplinks_in_another_process():
    script = (
        "import hashlib, json; from datetime import UTC, datetime; from simulator.fleet import Fleet; "
        "f = Fleet(n_collars=2, seed=9, start=datetime(2026, 3, 1, tzinfo=UTC), days=0.05); "
        "print(hashlib.sha256(json.dumps(list(f.uplinks())).encode()).hexdigest())"
    )
    here = hashlib.sha256(json.dumps(list(Fleet(n_collars=2, seed=9, start=START, days=0.05).uplinks())).encode())
    root = Path(__file__).resolve().parent.parent
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == here.hexdigest()
