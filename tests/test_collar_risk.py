"""Every on-collar alert rule, on simulated scenarios: raised, not raised on look-alikes, cleared."""

from __future__ import annotations

from collar_helpers import NIGHT_S, NOON_S, START_S, CollarWorld, fence_downlink, km, square_km

from collar_firmware import config, risk

HOUR = 3600


def _with_fences(world: CollarWorld) -> None:
    """Send the park (8 km box) and a farmland block on its east edge, and let the collar hear them."""
    world.downlink(32, fence_downlink(0, "park", square_km(-4, -4, 4, 4)))
    world.run_for(HOUR + 60)
    world.downlink(32, fence_downlink(1, "farmland", square_km(-1.5, 4.5, 2.5, 7)))
    world.run_for(HOUR + 60)
    assert len(world.collar.fences()) == 2


# ---- mortality / immobility -------------------------------------------------------------

def test_ranger_gets_mortality_alert_within_three_hours_of_death():
    world = CollarWorld()
    world.run_for(HOUR)
    died_s = world.now_s
    world.behaviour = "still"  # a carcass: the accelerometer's own noise, gravity unmoving
    world.run_for(110 * 60)
    assert world.alerts() == [], "under two hours of carcass-like windows is not yet a death"
    world.run_for(20 * 60)
    assert world.alerts() == ["mortality"]
    mortality = [a for a in world.decoded("alert") if a["alert_type"] == "mortality"][0]
    assert mortality["confirmed"] and mortality["size"] == 11
    assert mortality["sent_s"] - died_s <= 3 * HOUR


def test_elephant_asleep_for_eleven_hours_is_suspected_but_not_called_dead_before_twelve():
    world = CollarWorld()
    world.run_for(HOUR)
    world.behaviour = "sleep"  # still by VeDBA, but breathing: not a carcass
    world.run_for(11 * HOUR + 50 * 60)
    assert world.alerts() == ["immobility"], "suspicion after 4 h, no mortality before 12 h"
    world.run_for(20 * 60)
    assert world.alerts() == ["immobility", "mortality"], "twelve still hours are a death whatever the breath"


def test_carcass_rule_turned_off_leaves_the_twelve_hour_rule():
    world = CollarWorld(settings={"carcass_vedba_mg": 0})
    world.behaviour = "still"
    world.run_for(11 * HOUR + 50 * 60)
    assert world.alerts() == ["immobility"]
    world.run_for(20 * 60)
    assert world.alerts() == ["immobility", "mortality"]


def test_an_elephant_that_rests_as_calmly_as_a_carcass_teaches_its_collar_to_wait_longer():
    world = CollarWorld()
    world.behaviour = "still"  # this animal rests so calmly its collar feels its noise only
    world.run_for(70 * 60)
    world.behaviour = "forage"  # ... and gets up: it was alive
    world.run_for(HOUR)
    assert world.collar.risk.carcass_need_s() == 4 * HOUR
    world.behaviour = "still"
    world.run_for(150 * 60)
    assert world.alerts() == [], "a calm rest of two and a half hours of this animal is no death"
    world.behaviour = "forage"
    world.run_for(HOUR)
    assert world.collar.risk.carcass_need_s() == 8 * HOUR, "each calm rest it survives doubles the wait"
    died_s = world.now_s
    world.behaviour = "still"
    world.run_for(8 * HOUR + 20 * 60)
    assert world.alerts() == ["immobility", "mortality"]
    mortality = [a for a in world.decoded("alert") if a["alert_type"] == "mortality"][0]
    assert 8 * HOUR <= mortality["sent_s"] - died_s <= 8 * HOUR + 20 * 60


def test_elephant_sleeping_three_hours_raises_nothing():
    world = CollarWorld()
    for _ in range(3):
        world.behaviour = "sleep"
        world.run_for(3 * HOUR)
        world.behaviour = "forage"
        world.run_for(2 * HOUR)
    assert world.alerts() == []


def test_one_twitch_does_not_restart_the_mortality_clock():
    world = CollarWorld()
    world.behaviour = "still"
    world.run_for(6 * HOUR)
    world.behaviour = "walk"  # a scavenger nudges the carcass for one window
    world.run_for(60)
    world.behaviour = "still"
    world.run_for(6 * HOUR + 10 * 60)
    assert "mortality" in world.alerts()


def test_mortality_alert_clears_when_the_animal_walks_again_and_can_be_raised_anew():
    world = CollarWorld()
    world.behaviour = "still"
    world.run_for(13 * HOUR)
    assert world.collar.risk.active[risk.MORTALITY]
    world.behaviour = "walk"
    world.run_for(5 * 60)
    assert not world.collar.risk.active[risk.MORTALITY]
    assert not world.collar.risk.active[risk.IMMOBILITY]
    world.behaviour = "still"
    world.run_for(13 * HOUR)
    seqs = {a["seq"] for a in world.decoded("alert") if a["alert_type"] == "mortality"}
    assert len(seqs) == 2, "a second death-like spell is a second alert"


def test_still_collar_that_moved_between_fixes_is_not_called_dead():
    world = CollarWorld()
    world.behaviour = "still"
    world.run_for(10 * 60)
    world.position = km(1, 0)  # carried away (e.g. in a vehicle): not a carcass
    world.run_for(13 * HOUR)
    assert "mortality" not in world.alerts()


def test_one_bad_gnss_fix_does_not_hide_a_carcass():
    world = CollarWorld()
    died_s = world.now_s
    world.behaviour = "still"
    world.run_for(30 * 60)
    world.position = km(0.4, 0)  # one multipath fix 400 m off
    world.run_for(HOUR)
    world.position = km(0, 0)
    world.run_for(2 * HOUR)
    assert "mortality" in world.alerts()
    mortality = [a for a in world.decoded("alert") if a["alert_type"] == "mortality"][0]
    assert mortality["sent_s"] - died_s <= 3 * HOUR



def test_a_bad_first_fix_of_the_spell_does_not_hide_a_carcass():
    """The spell's first fix lands 300 m off (multipath); every later fix is where the carcass lies."""
    world = CollarWorld()
    died_s = world.now_s
    world.behaviour = "still"
    world.position = km(0.3, 0)
    fixes = world.hal.gnss.fixes
    while world.hal.gnss.fixes == fixes:
        world.run_for(60)
    world.position = km(0, 0)
    world.run_for(13 * HOUR)
    mortality = [a for a in world.decoded("alert") if a["alert_type"] == "mortality"]
    assert mortality, "two agreeing fixes near a lone first fix make them the spell's anchor"
    assert mortality[0]["sent_s"] - died_s < 12 * HOUR, "the carcass rule decides, not only the 12 h rule"


def test_a_collar_carried_beyond_any_bad_fix_after_one_fix_is_not_called_dead():
    world = CollarWorld()
    world.behaviour = "still"
    fixes = world.hal.gnss.fixes
    while world.hal.gnss.fixes == fixes:
        world.run_for(60)
    world.position = km(0.9, 0)  # farther than any bad fix lies: the collar was moved
    world.run_for(13 * HOUR)
    assert "mortality" not in world.alerts()


def test_the_collar_and_the_bridge_agree_how_far_a_bad_fix_lies():
    from lora_bridge.domain.rules_profiles import FenceProfile

    assert risk.GNSS_OUTLIER_M == FenceProfile().confirm_distance_m

# ---- poaching risk ------------------------------------------------------------------------

def test_night_flight_near_the_boundary_raises_poaching_alert_and_tracking():
    world = CollarWorld(start_s=NIGHT_S - HOUR)
    world.position = km(3.5, 0)  # 500 m inside the northern boundary
    _with_fences(world)
    fixes_before = world.hal.gnss.fixes
    world.behaviour = "run"
    world.run_for(4 * 60)
    assert world.alerts() == [], "four minutes may be play or a mock charge"
    assert world.collar.tracking()
    world.run_for(3 * 60)
    assert world.alerts() == ["poaching_risk"], "a flight sustained past six minutes"
    world.behaviour = "walk"
    world.run_for(30 * 60)
    assert world.hal.gnss.fixes - fixes_before >= 10, "GNSS every 2 minutes while tracking"
    status = world.collar.status_values(world.now_s)
    assert status["tracking"] == 1


def test_healthy_elephants_short_night_run_near_the_boundary_raises_no_alert():
    world = CollarWorld(start_s=NIGHT_S - HOUR)
    world.position = km(3.5, 0)
    _with_fences(world)
    world.behaviour = "run"
    world.run_for(4 * 60)
    world.behaviour = "forage"
    world.run_for(HOUR)
    assert world.alerts() == []


def test_short_daytime_run_mid_park_starts_tracking_but_raises_no_alert():
    world = CollarWorld(start_s=NOON_S - 2 * HOUR)
    _with_fences(world)
    world.behaviour = "run"
    world.run_for(3 * 60)
    world.behaviour = "forage"
    world.run_for(2 * HOUR)
    assert world.alerts() == []
    assert world.hal.gnss.fixes > 5


def test_poaching_risk_clears_after_calm_and_tracking_ends():
    world = CollarWorld(start_s=NIGHT_S)
    world.behaviour = "run"
    world.run_for(10 * 60)
    assert world.collar.risk.active[risk.POACHING_RISK]
    world.behaviour = "forage"
    world.run_for(2 * HOUR)
    assert not world.collar.risk.active[risk.POACHING_RISK]
    assert not world.collar.tracking()


class _Flight:
    """A bare RiskEngine fed window by window as the collar feeds it (one a minute, every 10 s in tracking)."""

    def __init__(self, start_s: int, near_boundary: bool = True) -> None:
        self.engine = risk.RiskEngine(dict(config.DEFAULTS))
        self.engine.near_boundary = near_boundary
        self.t_s = start_s
        self.alert_s: int | None = None

    def feed(self, seconds: int, run: bool = False, walk: bool = False, vedba_mg: int = 60) -> None:
        end_s = self.t_s + seconds
        while self.t_s < end_s:
            behaviour = "run" if run else "walk" if walk else "forage"
            self.engine.on_window(self.t_s, behaviour, vedba_mg, 80, -150, -975, 320)
            if self.alert_s is None and self.engine.active[risk.POACHING_RISK]:
                self.alert_s = self.t_s
            self.t_s += 10 if self.engine.tracking(self.t_s) else 60


def test_weak_runner_whose_gallop_the_model_calls_a_walk_still_raises_poaching_alert():
    """An animal with little vigour flees at a gallop the model takes for a walk two windows in three;
    its VeDBA is still far above any walk's."""
    flight = _Flight(NIGHT_S)
    chase_s = flight.t_s
    for _ in range(20):
        flight.feed(10, run=True, vedba_mg=230)
        flight.feed(20, walk=True, vedba_mg=190)
    assert flight.alert_s is not None and flight.alert_s - chase_s <= 8 * 60


def test_flight_with_short_breaks_raises_poaching_alert():
    """Runs of two minutes broken by half a minute of walking: the share of the span counts, not one run."""
    flight = _Flight(NOON_S, near_boundary=False)
    chase_s = flight.t_s
    for _ in range(6):
        flight.feed(120, run=True, vedba_mg=320)
        flight.feed(30, walk=True, vedba_mg=90)
    assert flight.alert_s is not None and flight.alert_s - chase_s <= 10 * 60


def test_healthy_elephants_play_and_brisk_walks_raise_no_poaching_alert():
    """Bursts of play (two running minutes in every six) near the boundary at night for two hours, and a
    long brisk walk of a vigorous animal (VeDBA up to 160 mg), are no flight."""
    play = _Flight(NIGHT_S)
    for _ in range(20):
        play.feed(120, run=True, vedba_mg=400)
        play.feed(240, vedba_mg=80)
    assert play.alert_s is None
    assert sum(play.engine.flight_slots) <= 3 * 60
    brisk = _Flight(NIGHT_S)
    brisk.feed(3 * HOUR, walk=True, vedba_mg=config.DEFAULTS["fast_vedba_mg"] - 10)
    assert brisk.alert_s is None and sum(brisk.engine.flight_slots) == 0
    forage = _Flight(NIGHT_S)
    forage.feed(HOUR, vedba_mg=200)  # trunk swings: vigorous, but no gait
    assert forage.alert_s is None
    longest = _Flight(NIGHT_S, near_boundary=False)  # the longest run of a calm evening (5 min), as the
    longest.feed(60, walk=True, vedba_mg=345)  # collar's smoother sees it: a window late at its start
    longest.feed(4 * 60, run=True, vedba_mg=340)
    longest.feed(10, run=True, vedba_mg=92)  # ... and one late at its end
    longest.feed(HOUR, walk=True, vedba_mg=90)
    assert longest.alert_s is None


def test_flight_span_forgets_running_older_than_ten_minutes():
    flight = _Flight(NIGHT_S, near_boundary=False)
    flight.feed(5 * 60, run=True, vedba_mg=320)
    assert 4 * 60 <= sum(flight.engine.flight_slots) <= 5 * 60 + 60
    flight.feed(11 * 60, vedba_mg=60)
    assert sum(flight.engine.flight_slots) == 0
    assert flight.alert_s is None


# ---- virtual fences ---------------------------------------------------------------------

def test_elephant_raiding_along_the_edge_of_a_field_is_in_farmland_after_three_fixes():
    """25 m into the field (half the 50 m margin) for three hours: a raid all the same."""
    world = CollarWorld()
    _with_fences(world)
    world.position = km(0, 4.525)
    world.run_for(3 * HOUR)
    assert "geofence_farmland" in world.alerts()


def test_elephant_grazing_just_outside_a_field_is_not_in_farmland():
    world = CollarWorld()
    _with_fences(world)
    world.position = km(0, 4.497)  # 3 m short of the field's line, within a fix's usual error
    world.run_for(3 * HOUR)
    assert "geofence_farmland" not in world.alerts()


def test_ranger_gets_conflict_alert_when_elephant_enters_farmland():
    world = CollarWorld()
    _with_fences(world)
    world.position = km(0, 5.5)  # in the farmland, outside the park
    world.run_for(HOUR + 60)
    assert set(world.alerts()) == {"geofence_farmland", "geofence_exit"}
    assert world.collar.tracking()
    world.position = km(0, 0)
    world.run_for(2 * HOUR)
    assert not world.collar.risk.active[risk.GEOFENCE_FARMLAND]
    assert not world.collar.risk.active[risk.GEOFENCE_EXIT]


def test_gps_jitter_across_the_fence_line_does_not_raise_an_alert():
    world = CollarWorld()
    _with_fences(world)
    for i in range(12):  # 20 m either side of the park's northern boundary
        world.position = km(4 + (0.02 if i % 2 else -0.02), 0)
        world.run_for(HOUR)
    assert world.alerts() == []


def test_one_multipath_fix_past_the_boundary_is_checked_by_the_next_fix_not_alerted():
    world = CollarWorld()
    _with_fences(world)
    fixes = world.hal.gnss.fixes
    world.position = km(4.3, 0)  # one fix 300 m outside the northern boundary: multipath
    while world.hal.gnss.fixes == fixes:
        world.run_for(60)
    world.position = km(3.0, 0)
    fixes = world.hal.gnss.fixes
    world.run_for(3 * 60)
    assert world.hal.gnss.fixes > fixes, "the doubtful fix is checked within minutes"
    world.run_for(2 * HOUR)
    assert world.alerts() == []
    world.position = km(4.3, 0)  # now it really went out
    world.run_for(HOUR + 5 * 60)
    assert world.alerts() == ["geofence_exit"]


def test_fence_rules_need_fences_from_the_bridge():
    world = CollarWorld()
    world.position = km(0, 5.5)
    world.run_for(3 * HOUR)
    assert world.alerts() == []


# ---- collar drop and tamper -------------------------------------------------------------

def test_dropped_collar_is_reported_as_drop_not_mortality():
    world = CollarWorld()
    world.run_for(HOUR)
    world.behaviour = "still"
    world.gravity_mg = (990, 40, -60)  # lying on its side
    world.run_for(20 * 60)
    world.temperature_dc = 250  # body heat gone
    world.run_for(14 * HOUR)
    assert world.alerts() == ["collar_drop"]


def test_elephant_lying_down_warm_is_not_a_dropped_collar():
    world = CollarWorld()
    world.run_for(HOUR)
    world.behaviour = "sleep"  # lying on its side, breathing
    world.gravity_mg = (990, 40, -60)
    world.run_for(3 * HOUR)
    assert world.alerts() == []


def test_watchdog_reboot_raises_unexpected_reboot_and_reset_pin_raises_tamper():
    world = CollarWorld()
    world.run_for(HOUR)
    world.reboot("watchdog")
    world.run_for(10 * 60)
    assert world.alerts() == ["unexpected_reboot"]
    world.reboot("pin")
    world.run_for(10 * 60)
    assert world.alerts() == ["unexpected_reboot", "tamper"]
    world.reboot("power_on")
    world.run_for(10 * 60)
    assert world.alerts() == ["unexpected_reboot", "tamper"]


def test_an_alert_survives_a_flash_write_that_fails_and_goes_out_at_the_next_wake_up():
    world = CollarWorld(reset_cause="pin")
    flash_write = world.flash.write
    failures = []

    def write_failing_once(key, data):
        if key == "state" and not failures:
            failures.append(key)
            raise OSError(5, "flash busy")
        flash_write(key, data)

    world.flash.write = write_failing_once
    world.run_for(10 * 60)
    assert failures == ["state"]
    assert world.collar.errors[3] == 1, "the failed write is counted as a storage error"
    assert world.alerts() == ["tamper"], "the alert is kept and sent, not lost with the failed write"


# ---- battery ----------------------------------------------------------------------------

def test_low_battery_warning_comes_before_critical():
    world = CollarWorld()
    world.battery_mv = 3250
    world.run_for(HOUR)
    assert world.alerts() == ["low_battery"]
    world.battery_mv = 3050
    world.run_for(HOUR)
    assert world.alerts() == ["low_battery", "battery_critical"]
    assert world.collar.status_values(world.now_s)["battery_low"] == 1


def test_one_low_reading_is_not_a_battery_alert_and_recovery_clears_it():
    world = CollarWorld()
    world.run_for(HOUR)
    world.battery_mv = 3200
    world.run_for(600)
    world.battery_mv = 3600
    world.run_for(2 * HOUR)
    assert world.alerts() == []
    world.battery_mv = 3200
    world.run_for(HOUR)
    assert world.collar.risk.battery_level == 1
    world.battery_mv = 3600
    world.run_for(HOUR)
    assert world.collar.risk.battery_level == 0
    assert not world.collar.risk.active[risk.LOW_BATTERY]


def test_battery_is_read_against_the_discharge_curve():
    from simulator.battery_curve import battery_percent

    assert battery_percent(3700) == 100
    assert battery_percent(3500) == 50
    assert battery_percent(2800) == 0
    assert battery_percent(3300) < battery_percent(3400) < battery_percent(3600)


def test_night_is_local_time():
    assert risk.is_night(START_S, 180)  # 03:00 local
    assert not risk.is_night(NOON_S, 180)
