"""Simulated elephants: plausible speeds per behaviour, a diel rhythm, water, borders and the demo scenarios."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from simulator import movement as mv
from simulator.animals import AnimalIdentity, Herd, Scenario, SimulatedAnimal, boundary_point_xy
from simulator.gnss_noise import GnssReceiver
from simulator.reserve import demo_reserve

START = datetime(2026, 3, 1, tzinfo=UTC)
START_S = int(START.timestamp())
DAY_S = 86400


def _animal(scenarios=(), seed=7, home_xy=(0.0, 0.0)) -> SimulatedAnimal:
    identity = AnimalIdentity("tembo-collar-99", "70B3D57ED0060099", "Test")
    return SimulatedAnimal(identity, demo_reserve(), START_S, seed, home_xy=home_xy, scenarios=scenarios)


def test_a_hand_built_straight_walk_of_600_m_in_600_s_is_one_metre_per_second():
    table = mv.straight_line_table(speed_mps=1.0, heading_deg=90.0, duration_s=600, step_s=600)
    assert table[mv.X_M].iloc[-1] == pytest.approx(600.0)
    assert table[mv.Y_M].iloc[-1] == pytest.approx(0.0, abs=1e-9)
    assert mv.step_speeds_mps(table).iloc[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("behaviour", "low_mps", "high_mps"),
    [("rest", 0.0, 0.0), ("forage", 0.05, 0.3), ("walk", 0.6, 1.5), ("run", 2.0, 5.0)],
)
def test_elephant_step_speeds_are_plausible_for_each_behaviour(behaviour, low_mps, high_mps):
    table = mv.behaviour_bout_table(behaviour, duration_s=2 * 3600, seed=3)
    mean_speed = mv.step_speeds_mps(table).mean()
    assert low_mps <= mean_speed <= high_mps


def test_walking_goes_somewhere_while_foraging_meanders():
    walk = mv.behaviour_bout_table("walk", 1800, seed=5)  # a typical walking bout
    forage = mv.behaviour_bout_table("forage", 1800, seed=5)

    def straightness(t: pd.DataFrame) -> float:
        net = math.hypot(t[mv.X_M].iloc[-1], t[mv.Y_M].iloc[-1])
        return net / mv.step_speeds_mps(t).fillna(0).mul(mv.STEP_S).sum()

    assert straightness(walk) > 0.6 > 0.3 > straightness(forage)


def test_elephants_rest_at_midday_and_move_more_at_dusk_and_night():
    herd = Herd(8, seed=11, start=START, scenarios=None)
    table = pd.concat([a.table(herd.end_s) for a in herd])
    phase = table[mv.TIME_S].map(mv.diel_phase)
    rest_share = (table[mv.BEHAVIOUR] == "rest").groupby(phase).mean()
    assert rest_share["midday"] > rest_share["dusk"] + 0.15
    assert rest_share["midday"] > rest_share["night"]


def test_same_seed_same_tracks_and_another_seed_other_tracks():
    one = Herd(3, seed=5, start=START, scenarios=None)[1].table(START_S + DAY_S)
    again = Herd(3, seed=5, start=START, scenarios=None)[1].table(START_S + DAY_S)
    other = Herd(3, seed=6, start=START, scenarios=None)[1].table(START_S + DAY_S)
    pd.testing.assert_frame_equal(one, again)
    assert not np.allclose(one[mv.X_M], other[mv.X_M])


def test_elephants_stay_inside_or_near_the_reserve_and_visit_water():
    herd = Herd(10, seed=2, start=START, scenarios=None)
    reserve = herd.reserve
    water = reserve.water_xy()
    drank = 0
    for animal in herd:
        t = animal.table(herd.end_s)
        inside = [reserve.inside_xy(x, y) for x, y in zip(t[mv.X_M], t[mv.Y_M], strict=True)]
        assert np.mean(inside) > 0.97
        outside_m = [reserve.boundary_distance_m(x, y) for (x, y), ok in
                     zip(zip(t[mv.X_M], t[mv.Y_M], strict=True), inside, strict=True) if not ok]
        assert max(outside_m, default=0.0) < 2000.0
        nearest_m = min(math.hypot(x - wx, y - wy) for wx, wy in water for x, y in zip(t[mv.X_M], t[mv.Y_M], strict=True))
        drank += nearest_m < 300.0
    assert drank >= 8


def test_state_between_grid_minutes_is_interpolated():
    animal = _animal()
    a, b = animal.state_at(START_S + 600), animal.state_at(START_S + 660)
    mid = animal.state_at(START_S + 630)
    assert mid.lat == pytest.approx((a.lat + b.lat) / 2, abs=1e-9)
    assert mid.lon == pytest.approx((a.lon + b.lon) / 2, abs=1e-9)


def test_after_mortality_the_animal_is_still_and_never_moves():
    animal = _animal([Scenario("mortality", START_S + 3600)])
    before = animal.state_at(START_S + 1800)
    dead = [animal.state_at(START_S + 3600 + k * 1800) for k in range(30)]
    assert before.alive and before.motion in ("rest", "forage", "walk", "run")
    assert {s.motion for s in dead} == {"still"} and not dead[0].alive
    assert len({(s.lat, s.lon) for s in dead}) == 1


def test_poaching_chase_runs_at_night_near_the_boundary():
    reserve = demo_reserve()
    chase_s = START_S + 19 * 3600  # 22:00 East Africa Time
    chase = Scenario("poaching_chase", chase_s, duration_s=25 * 60, lead_s=3 * 3600,
                     place_xy=boundary_point_xy(reserve, 0.3, 500.0),
                     run_to_xy=boundary_point_xy(reserve, 0.35, 700.0))
    animal = _animal([chase], home_xy=boundary_point_xy(reserve, 0.3, 3500.0))
    during = [animal.state_at(chase_s + k * 60) for k in range(25)]
    assert {s.motion for s in during} == {"run"}
    assert all(mv.is_night(s.t_s) for s in during)
    for s in during:
        assert reserve.boundary_distance_m(*reserve.frame.to_xy(s.lon, s.lat)) < 2500.0
    t = animal.table(chase_s + 25 * 60)
    run_speed = mv.step_speeds_mps(t)[t[mv.TIME_S] > chase_s].mean()
    assert run_speed > 2.0
    assert animal.state_at(chase_s + 3 * 3600).motion != "run"


def test_farmland_raid_puts_the_animal_in_farmland_at_night():
    reserve = demo_reserve()
    farm = reserve.farmland_centres_xy()[0]
    raid_s = START_S + 21 * 3600 + 1800  # 00:30 East Africa Time
    raid = Scenario("farmland_raid", raid_s, duration_s=150 * 60, lead_s=3 * 3600, place_xy=farm)
    d = math.hypot(*farm)
    animal = _animal([raid], home_xy=(farm[0] - 5000 * farm[0] / d, farm[1] - 5000 * farm[1] / d))
    assert not animal.state_at(raid_s - 4 * 3600).in_farmland
    during = [animal.state_at(raid_s + k * 600) for k in range(15)]
    assert all(s.in_farmland for s in during) and all(mv.is_night(s.t_s) for s in during)
    assert not animal.state_at(raid_s + 8 * 3600).in_farmland


def test_dropped_collar_lies_still_where_it_fell():
    animal = _animal([Scenario("collar_drop", START_S + 5 * 3600)])
    dropped = [animal.state_at(START_S + 5 * 3600 + k * 3600) for k in range(10)]
    assert {s.motion for s in dropped} == {"dropped"} and not dropped[0].collar_on
    assert len({(s.lat, s.lon) for s in dropped}) == 1


def test_demo_herd_acts_out_every_scenario_once_in_two_days():
    herd = Herd(20, seed=1, start=START)
    truth = herd.ground_truth()
    assert sorted(e.kind for e in truth) == [
        "collar_drop", "farmland_raid", "low_battery", "mortality", "poaching_chase"
    ]
    assert len({e.device_id for e in truth}) == 5
    assert all(START <= e.start < datetime(2026, 3, 3, tzinfo=UTC) for e in truth)
    expected = {e.kind: e.expected_alert for e in truth}
    assert expected["mortality"] == "mortality" and expected["farmland_raid"] == "geofence_farmland"
    manifest = herd.manifest()
    assert len(manifest) == 20 and len({m["device_id"] for m in manifest}) == 20
    assert manifest[0] == {"device_id": "tembo-collar-01", "dev_eui": "70B3D57ED0060001", "name": "Amani",
                           "species": "Loxodonta africana", "sex": manifest[0]["sex"]}
    assert {m["sex"] for m in manifest} <= {"male", "female"}


def test_a_short_run_only_schedules_what_fits():
    herd = Herd(4, seed=1, start=START, days=0.5)
    assert [e.kind for e in herd.ground_truth()] == ["mortality"]


def test_herd_refuses_naive_start_times_and_empty_herds():
    with pytest.raises(ValueError, match="timezone"):
        Herd(2, seed=1, start=datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="at least one"):
        Herd(0, seed=1, start=START)


def test_gnss_fixes_are_a_few_metres_off_with_rare_bad_fixes():
    receiver = GnssReceiver(np.random.default_rng(4))
    fixes = [receiver.acquire(0.57, 37.58, START_S + k * 600, timeout_s=90) for k in range(2000)]
    got = [f for f in fixes if f is not None]
    errors = np.array([f.error_m for f in got])
    assert 0.9 < len(got) / len(fixes) < 1.0  # a few fixes fail
    assert np.median(errors) < 6.0
    assert 0.005 < np.mean(errors > 50.0) < 0.05  # occasional bad fixes
    assert all(f.hdop >= 0.7 for f in got)


def test_gnss_hot_start_is_quick_and_a_cold_start_can_time_out():
    receiver = GnssReceiver(np.random.default_rng(9))
    cold = [GnssReceiver(np.random.default_rng(s)).acquire(0.57, 37.58, START_S, 120) for s in range(50)]
    assert all(f is None or f.ttff_s >= 26 for f in cold)
    receiver.acquire(0.57, 37.58, START_S, 120)
    hot = [receiver.acquire(0.57, 37.58, START_S + 60 * k, 120) for k in range(1, 50)]
    assert all(f is None or f.ttff_s <= 5 for f in hot)
    assert GnssReceiver(np.random.default_rng(1)).acquire(0.57, 37.58, START_S, timeout_s=10) is None
