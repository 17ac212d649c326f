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
