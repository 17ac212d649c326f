"""Smart fixes: the collar's behaviour output drives its GNSS schedule, within bounds a downlink sets."""

from __future__ import annotations

from collar_firmware import codec, config, downlink
from tests.collar_helpers import CollarWorld

HOUR = 3600
ADAPTIVE = {"gnss_adaptive": 1}


def _fix_times(world: CollarWorld) -> list[int]:
    return [p["time_s"] + f["dt_s"] for p in world.decoded("positions") for f in p["fixes"]]


def test_walking_elephant_is_fixed_every_fifteen_minutes_and_a_resting_one_every_hour():
    walking = CollarWorld(settings=ADAPTIVE)
    walking.behaviour = "walk"
    walking.run_for(4 * HOUR)
    resting = CollarWorld(settings=ADAPTIVE)
    resting.behaviour = "still"
    resting.run_for(4 * HOUR)
    assert len(_fix_times(walking)) >= 4 * 4 - 1
    assert len(_fix_times(resting)) <= 5
    assert len(_fix_times(walking)) >= 3 * len(_fix_times(resting))
    fixed = CollarWorld()
    fixed.behaviour = "walk"
    fixed.run_for(4 * HOUR)
    assert len(_fix_times(fixed)) <= 5, "without smart fixes the schedule stays hourly"


def test_a_change_of_behaviour_takes_a_fix_at_once():
    world = CollarWorld(settings=ADAPTIVE)
    world.behaviour = "still"
    world.run_for(3 * HOUR)
    before = len(_fix_times(world))
    changed_s = world.now_s
    world.behaviour = "walk"
    world.run_for(5 * 60)
    after = _fix_times(world)
    assert len(after) == before + 1 and changed_s <= after[-1] <= changed_s + 5 * 60


def test_downlink_sets_the_bounds_and_refuses_inconsistent_ones():
    world = CollarWorld(settings=ADAPTIVE)
    world.downlink(codec.SETTINGS_PORT, codec.encode_settings({"gnss_move_interval_s": 1800}))
    world.run_for(HOUR)
    assert world.collar.settings["gnss_move_interval_s"] == 1800
    merged = dict(config.DEFAULTS, gnss_move_interval_s=9000, gnss_rest_interval_s=7200)
    assert downlink.check_settings(merged) == downlink.ACK_OUT_OF_RANGE


def _fenced(settings: dict | None) -> CollarWorld:
    """A collar with the park (an 8 km box) and a farmland block in it whose west edge is 2.5 km east."""
    from tests.collar_helpers import fence_downlink, square_km

    world = CollarWorld(settings=settings)
    world.downlink(32, fence_downlink(0, "park", square_km(-4, -4, 4, 4)))
    world.run_for(HOUR + 60)
    world.downlink(32, fence_downlink(1, "farmland", square_km(-1.5, 2.5, 1.5, 3.5)))
    world.run_for(HOUR + 60)
    assert len(world.collar.fences()) == 2
    return world


def _last_gaps(world: CollarWorld) -> list[int]:
    times = _fix_times(world)[-4:]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_a_resting_elephant_near_farmland_is_fixed_before_it_could_walk_in():
    from tests.collar_helpers import km

    world = _fenced(ADAPTIVE)
    world.behaviour = "sleep"  # resting: an hour between fixes far from any field
    world.position = km(0, 1.0)  # 1.5 km from the farmland's edge: no walk in under 1,000 s
    world.run_for(3 * HOUR)
    gaps = _last_gaps(world)
    assert gaps and max(gaps) <= 1000
    world.position = km(0, 2.3)  # 200 m from it: every gnss_min_gap_s
    world.run_for(HOUR)
    gaps = _last_gaps(world)
    assert max(gaps) <= config.DEFAULTS["gnss_min_gap_s"]
    far = _fenced(ADAPTIVE)
    far.behaviour = "sleep"
    far.position = km(0, -3.0)  # 5.5 km away: the rest interval
    far.run_for(3 * HOUR)
    assert len(_fix_times(far)) <= len(_fix_times(world)) // 3
    fixed = _fenced(None)
    fixed.behaviour = "sleep"
    fixed.position = km(0, 2.3)
    fixed.run_for(3 * HOUR)
    assert len(_fix_times(fixed)) <= 6, "without smart fixes the schedule stays hourly"
