"""The collar's duty cycle as a ranger's bridge sees it: status, summaries, positions, resilience."""

from __future__ import annotations

from pathlib import Path

import pytest
from collar_helpers import START_S, CollarWorld

from collar_firmware import config, main
from simulator.hal_sim import SimFlash

HOUR = 3600


def test_status_reports_versions_battery_temperature_uptime_reset_cause_and_errors():
    world = CollarWorld(reset_cause="brownout")
    world.battery_mv = 3580
    world.temperature_dc = 295
    world.run_for(7 * HOUR)
    status = world.decoded("status")
    assert [s["time_s"] for s in status] == [START_S, START_S + 6 * HOUR], "at boot, then every 6 h"
    last = status[-1]
    assert last["fw_version"] == config.FW_VERSION
    assert last["model_version"] == world.collar.model.version
    assert last["battery_mv"] == 3580 and last["temperature_c"] == 29.5
    assert last["uptime_h"] == 6 and last["reset_cause"] == "brownout"
    assert last["errors"] == 0 and last["fix_age_s"] == 0
    assert abs(last["lat"] - world.position[0]) < 2e-5


def test_activity_summary_every_fifteen_minutes_with_shares_of_the_model_classes():
    world = CollarWorld()
    world.behaviour = "walk"
    world.run_for(HOUR + 60)
    summaries = world.decoded("activity")
    assert [s["time_s"] - START_S for s in summaries] == [0, 900, 1800, 2700]
    for s in summaries:
        assert s["interval_min"] == 15
        assert abs(sum(s["shares"]) - 100) <= 2
        assert len(s["shares"]) == len(world.collar.model.classes)
        assert 100 <= s["vedba_mean_mg"] <= 200 and s["vedba_max_mg"] >= s["vedba_mean_mg"]


def test_hourly_positions_reach_the_bridge():
    world = CollarWorld()
    world.run_for(5 * HOUR + 60)
    positions = world.decoded("positions")
    assert [p["time_s"] - START_S for p in positions] == [0, 3600, 7200, 10800, 14400, 18000]
    assert all(len(p["fixes"]) == 1 for p in positions)


def test_a_fix_whose_flash_write_fails_still_reaches_the_bridge():
    world = CollarWorld()
    flash_write = world.flash.write
    failures = []

    def write_failing_once(key, data):
        if key.startswith("q") and len(data) > 2 and data[2] == 4 and not failures:  # a positions record
            failures.append(key)
            raise OSError(5, "flash busy")
        flash_write(key, data)

    world.flash.write = write_failing_once
    world.run_for(2 * HOUR + 60)
    assert len(failures) == 1
    fixes = [p["time_s"] + f["dt_s"] - START_S for p in world.decoded("positions") for f in p["fixes"]]
    assert fixes == [0, 3600, 7200], "the first fix is sent at the next wake-up, not lost"


def test_a_flash_that_refuses_every_position_holds_what_fits_and_the_collar_goes_on():
    world = CollarWorld()
    flash_write = world.flash.write

    def refuse_positions(key, data):
        if key.startswith("q") and len(data) > 2 and data[2] == 4:
            raise OSError(5, "flash worn out")
        flash_write(key, data)

    world.flash.write = refuse_positions
    world.run_for(8 * HOUR + 60)
    assert world.collar.positions.n == config.MAX_POSITIONS_PER_UPLINK
    assert world.collar.fix_s == world.now_s - world.now_s % HOUR, "fixes go on (the risk rules get them)"
    assert world.collar.errors[main.ERR_GNSS] == 0, "a full position buffer is not a GNSS fault"
    assert len(world.decoded("activity")) >= 30, "the duty cycle went on"


def test_one_window_a_minute_and_back_to_back_while_tracking():
    world = CollarWorld()
    world.run_for(HOUR)
    assert world.hal.imu.reads == 60
    world.collar.start_tracking(10)
    world.run_for(10 * 60)
    assert world.hal.imu.reads - 60 >= 55, "10 s windows back to back"


def test_failing_sensors_and_radio_are_counted_and_the_loop_goes_on():
    world = CollarWorld()
    world.hal.imu.fail_reads = 5
    world.hal.gnss.fail_fixes = 2
    world.hal.radio.fail_sends = 1
    world.run_for(6 * HOUR + 60)
    status = world.decoded("status")[-1]
    assert status["errors"] >= 6
    assert world.collar.errors[0] == 5, "imu errors counted per stage"
    assert world.collar.fix_failures == 2
    assert len(world.decoded("activity")) >= 20, "the duty cycle went on"


class BrokenUpdateReceiver:
    """A FUOTA receiver that fails on every fragment it is handed."""

    def __init__(self) -> None:
        self.fragments = 0

    def handle(self, port: int, payload: bytes) -> None:
        self.fragments += 1
        raise ValueError("fragment does not fit the session")


def test_a_failing_update_fragment_is_counted_as_a_downlink_error_and_the_wake_goes_on_sending():
    quiet = CollarWorld()
    quiet.run_for(1)
    world = CollarWorld()
    world.hal.fuota = BrokenUpdateReceiver()
    world.downlink(201, b"\x08\x00\x01")  # a fragment, heard after the first uplink
    world.run_for(1)
    assert world.hal.fuota.fragments == 1
    assert world.collar.errors[main.ERR_DOWNLINK] == 1 and world.collar.errors[main.ERR_RADIO] == 0
    assert len(world.sent) == len(quiet.sent) > 1, "the other uplinks of the wake-up still went out"


def test_watchdog_is_fed_once_per_duty_cycle():
    world = CollarWorld()
    world.run_for(2 * HOUR)
    feeds = world.hal.watchdog.feeds
    world.run_for(HOUR)
    assert 60 <= world.hal.watchdog.feeds - feeds <= 70
    assert not world.hal.watchdog.expired(120)


def test_step_returns_the_next_wake_up_within_a_minute():
    world = CollarWorld()
    for _ in range(200):
        now = world.hal.clock.now_s()
        wake = world.collar.step()
        assert now < wake <= now + 60
        world.hal.clock.sleep_until(wake)


def test_run_until_sleeps_between_duty_cycles():
    world = CollarWorld()
    world.collar.run(START_S + 2 * HOUR)
    assert world.hal.clock.now_s() == START_S + 2 * HOUR
    assert world.hal.clock.slept_s >= 2 * HOUR - 60
    assert len(world.hal.radio.uplinks) >= 8


def test_a_clock_that_stops_answering_does_not_stop_the_collar():
    world = CollarWorld()
    world.run_for(HOUR)

    def broken():
        raise OSError("rtc")

    world.hal.clock.now_s = broken
    for _ in range(5):
        world.collar.step()
    assert world.collar.errors[7] >= 5


@pytest.mark.slow
def test_a_quiet_week_wakes_the_collar_about_once_a_minute():
    from simulator.scripted import ScriptedRun

    run = ScriptedRun(events=False)
    for day in range(1, 8):
        steps, windows = run.steps, run.collar.windows
        run.advance(START_S + day * 86400)
        assert run.steps - steps <= 1.05 * (run.collar.windows - windows) + 20, f"busy wake-ups on day {day}"


def test_collar_keeps_its_rhythm_when_the_clock_is_set_back():
    world = CollarWorld(start_s=START_S + 86400)
    world.run_for(HOUR)
    world.hal.clock.t_s = START_S  # GNSS time corrects a clock that ran a day ahead
    world.wake_s = START_S
    reads = world.hal.imu.reads
    world.run_for(HOUR)
    assert world.hal.imu.reads - reads >= 58


def test_a_new_signed_model_is_verified_then_taken_up_without_a_reboot():
    from signing_helpers import collar_trust, sign_blob

    flash = SimFlash()
    world = CollarWorld(flash=flash, keys=collar_trust(flash))
    world.run_for(HOUR)
    assert world.collar.model.version == 1
    golden = sign_blob((Path(__file__).parent / "vectors" / "golden_model.bin").read_bytes())  # version 7
    world.flash.write("model", golden)
    world.collar.reload_model()
    assert world.collar.model.version == 1, "not before its signature is checked"
    world.run_for(HOUR)
    assert world.collar.model.version == 7
    assert world.decoded("activity")[-1]["model_version"] == 7
    assert world.collar.status_values(world.now_s)["model_fallback"] == 0
    world.flash.write("model", golden[:-3] + b"\x00\x00\x00")  # a corrupt update
    world.collar.reload_model()
    assert world.collar.model.version == 7, "the last good model is kept"
    assert world.collar.status_values(world.now_s)["model_fallback"] == 1


def test_a_clock_set_forward_to_gnss_time_after_boot_raises_no_false_mortality():
    boot_relative_s = 1000  # a board without a real-time clock counts from boot until its first fix
    world = CollarWorld(start_s=boot_relative_s)
    world.behaviour = "sleep"  # asleep, breathing, while the clock is still boot-relative
    world.run_for(HOUR)
    world.hal.clock.t_s = START_S  # the first GNSS fix sets the clock to Unix time
    world.wake_s = START_S
    world.run_for(2 * HOUR)  # three still hours in all: below the 4 h immobility suspicion
    assert "mortality" not in world.alerts() and "immobility" not in world.alerts()
    status = world.decoded("status")[-1]
    assert status["time_s"] >= START_S
    assert status["uptime_h"] <= 6, "uptime does not count the decades the clock skipped"
    summaries = [s for s in world.decoded("activity") if s["time_s"] >= START_S]
    assert summaries and all(s["interval_min"] <= 60 for s in summaries)
    assert world.hal.imu.reads >= 3 * 60 - 10, "the duty cycle kept its rhythm through the jump"
