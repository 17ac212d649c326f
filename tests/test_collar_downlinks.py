"""Downlinks the bridge sends the collar: settings, commands, fences, and what the collar answers."""

from __future__ import annotations

from collar_helpers import CollarWorld, fence_downlink, km, square_km
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collar_firmware import codec, downlink

HOUR = 3600


def _answer(world: CollarWorld, port: int, payload: bytes) -> dict:
    """Deliver one downlink (after the collar's next uplink) and return the ack it sends on port 31."""
    before = len(world.acks())
    world.downlink(port, payload)
    world.collar.request_status()  # an uplink at once opens the RX windows
    world.run_for(120)
    acks = world.acks()
    assert len(acks) == before + 1, "every downlink is acknowledged once"
    return acks[-1]


def test_settings_downlink_is_applied_acknowledged_and_kept_across_a_reboot():
    world = CollarWorld()
    world.run_for(60)
    ack = _answer(world, 3, codec.encode("settings", {"gnss_interval_s": 1800, "summary_interval_s": 1800}))
    assert (ack["on_port"], ack["result"]) == (3, "ok")
    assert world.collar.settings["gnss_interval_s"] == 1800
    world.reboot()
    assert world.collar.settings["gnss_interval_s"] == 1800
    assert world.collar.settings["summary_interval_s"] == 1800
    world.run_for(4 * HOUR)
    summaries = world.decoded("activity")
    assert summaries and all(s["interval_min"] == 30 for s in summaries[-3:])


def test_out_of_range_setting_is_refused_and_changes_nothing():
    world = CollarWorld()
    world.run_for(60)
    before = dict(world.collar.settings)
    payload = bytes([1, 4]) + (30).to_bytes(4, "little")  # gnss_interval_s = 30 s, below its 60 s floor
    payload = bytes([2, 2]) + (1800).to_bytes(2, "little") + payload  # a valid record first
    ack = _answer(world, 3, payload)
    assert ack["result"] == "out_of_range"
    assert world.collar.settings == before, "a refused TLV changes nothing, not even its valid records"


def test_unknown_setting_and_truncated_tlv_are_refused():
    world = CollarWorld()
    world.run_for(60)
    assert _answer(world, 3, bytes([200, 1, 5]))["result"] == "unknown_setting"
    assert _answer(world, 3, bytes([1, 4, 1, 2]))["result"] == "malformed"
    assert _answer(world, 3, bytes([1, 2, 16, 14]))["result"] == "malformed", "wrong length for a u32"


def test_settings_that_contradict_each_other_are_refused():
    world = CollarWorld()
    world.run_for(60)
    ack = _answer(world, 3, codec.encode("settings", {"critical_battery_mv": 3400}))  # above low (3300)
    assert ack["result"] == "out_of_range"
    assert world.collar.settings["critical_battery_mv"] == 3100


def test_unknown_and_empty_commands_are_answered_with_an_error():
    world = CollarWorld()
    world.run_for(60)
    assert _answer(world, 32, bytes([0x63]))["result"] == "unknown_command"
    assert _answer(world, 32, b"")["result"] == "malformed"
    assert _answer(world, 32, bytes([0x04, 0x01]))["result"] == "malformed", "tracking needs two bytes"
    assert _answer(world, 7, b"\x01")["result"] == "unknown_command", "nothing listens on port 7"


def test_tracking_command_switches_gnss_to_the_tracking_rate():
    world = CollarWorld()
    world.run_for(60)
    fixes = world.hal.gnss.fixes
    ack = _answer(world, 32, codec.encode("tracking", {"minutes": 30}))
    assert (ack["cmd"], ack["result"]) == (4, "ok")
    assert world.collar.tracking()
    world.run_for(20 * 60)
    assert world.hal.gnss.fixes - fixes >= 8


def test_fence_in_two_parts_is_installed_and_kept_across_a_reboot():
    world = CollarWorld()
    world.run_for(60)
    points = square_km(-4, -4, 4, 4) + [dict(zip(("lat", "lon"), km(4.5, 0), strict=True))]
    assert _answer(world, 32, fence_downlink(0, "park", points[:3], 0, 0))["result"] == "ok"
    assert world.collar.fences() == []
    assert _answer(world, 32, fence_downlink(0, "park", points[3:], 3, 1))["result"] == "ok"
    assert [f.n for f in world.collar.fences()] == [5]
    world.reboot()
    assert [f.n for f in world.collar.fences()] == [5]


def test_a_damaged_flash_record_is_ignored_at_boot_and_the_rest_is_kept():
    world = CollarWorld()
    world.run_for(60)
    _answer(world, 3, codec.encode("settings", {"gnss_interval_s": 1800}))
    _answer(world, 32, fence_downlink(0, "park", square_km(-4, -4, 4, 4)))
    world.collar.alert_seq = 5
    world.collar._save_state()
    world.reboot()
    assert world.collar.settings["gnss_interval_s"] == 1800
    assert [f.n for f in world.collar.fences()] == [4]
    assert world.collar.alert_seq == 5
    for key in ("settings", "fences", "state"):
        record = bytearray(world.flash.read(key))
        record[0] ^= 0x01  # one flipped bit: the CRC no longer matches
        world.flash.write(key, bytes(record))
    world.reboot()
    assert world.collar.settings["gnss_interval_s"] == 3600, "the default, not a damaged value"
    assert world.collar.fences() == []
    assert world.collar.alert_seq == 0
    assert world.collar.error_total() == 0, "a damaged record is not a crash"


def test_fence_part_out_of_order_is_refused_and_installs_nothing():
    world = CollarWorld()
    world.run_for(60)
    points = square_km(-4, -4, 4, 4)
    assert _answer(world, 32, fence_downlink(0, "park", points[2:], 2, 1))["result"] == "malformed"
    assert _answer(world, 32, fence_downlink(9, "park", points, 0, 1))["result"] == "out_of_range"
    assert _answer(world, 32, fence_downlink(0, "park", points[:2], 0, 1))["result"] == "malformed"
    assert world.collar.fences() == []


def test_clear_fences_forgets_them():
    world = CollarWorld()
    world.run_for(60)
    _answer(world, 32, fence_downlink(0, "park", square_km(-4, -4, 4, 4)))
    assert _answer(world, 32, codec.encode("clear_fences", {}))["result"] == "ok"
    world.reboot()
    assert world.collar.fences() == []


def test_request_settings_reports_every_setting_in_uplinks_of_at_most_51_bytes():
    world = CollarWorld()
    world.run_for(60)
    _answer(world, 32, codec.encode("request_settings", {}))
    world.run_for(60)
    reported = {}
    for d in world.decoded("settings"):
        assert d["size"] <= 51
        reported.update({k: v for k, v in d.items() if k in world.collar.settings})
    assert reported == world.collar.settings


def test_reboot_command_restarts_the_collar_which_reports_a_software_reset():
    world = CollarWorld()
    world.run_for(2 * HOUR)
    ack = _answer(world, 32, codec.encode("reboot", {}))
    assert ack["result"] == "ok"
    world.run_for(60)
    assert world.collar.boots == 2
    assert world.decoded("status")[-1]["reset_cause"] == "software"


def test_acknowledged_alert_stops_repeating():
    world = CollarWorld()
    world.battery_mv = 3200
    world.run_for(HOUR)
    alert = world.decoded("alert")[0]
    assert alert["alert_type"] == "low_battery" and alert["confirmed"]
    ack = _answer(world, 32, codec.encode("ack_alert", {"alert_type": "low_battery", "seq": alert["seq"]}))
    assert ack["result"] == "ok"
    n = len(world.decoded("alert"))
    world.run_for(6 * HOUR)
    assert len(world.decoded("alert")) == n


class _Recorder:
    """A stand-in collar that records which method a downlink reached."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        def method(*args):
            self.calls.append(name)
            return downlink.ACK_OK

        return method


def test_downlink_handler_reaches_one_method_per_command():
    target = _Recorder()
    for name in ("request_status", "reboot", "clear_fences", "request_settings"):
        assert downlink.handle(32, codec.encode(name, {}), target)[2] == 0
    assert target.calls == ["request_status", "request_reboot", "clear_fences", "request_settings"]


_TLV = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 5)).flatmap(
        lambda t: st.binary(min_size=t[1], max_size=t[1]).map(lambda v, t=t: bytes(t) + v)),
    max_size=5).map(b"".join)
_COMMAND = st.tuples(st.integers(0, 9), st.binary(max_size=50)).map(lambda t: bytes([t[0]]) + t[1])
_DOWNLINK = st.one_of(
    st.tuples(st.sampled_from([1, 2, 4, 10, 31, 200, 255]), st.binary(max_size=60)),
    st.tuples(st.just(3), st.one_of(_TLV, st.binary(max_size=60))),
    st.tuples(st.just(32), st.one_of(_COMMAND, st.binary(max_size=60))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_DOWNLINK, min_size=1, max_size=6))
def test_random_downlinks_never_crash_the_collar(downlinks):
    world = _FUZZ_WORLD
    for port, payload in downlinks:
        world.downlink(port, payload)
        world.collar.request_status()
        world.run_for(61)
    for row in codec.SETTINGS:
        assert row[3] <= world.collar.settings[row[1]] <= row[4], row[1]
    assert downlink.check_settings(world.collar.settings) == downlink.ACK_OK
    assert world.decoded("status"), "the collar kept its duty cycle"


_FUZZ_WORLD = CollarWorld()


def test_handler_answers_any_bytes_without_raising():
    target = _Recorder()
    for port in (3, 32):
        for n in range(0, 12):
            for fill in (0, 1, 0x7F, 0xFF):
                on_port, cmd, result = downlink.handle(port, bytes([fill] * n), target)
                assert on_port == port and 0 <= result < len(codec.ACK_RESULTS)


def test_window_settings_that_contradict_the_model_are_refused():
    world = CollarWorld()
    world.run_for(60)
    assert world.collar.settings["window_s"] == world.collar.model.window_s
    ack = _answer(world, 3, codec.encode("settings", {"window_s": 20}))
    assert ack["result"] == "refused"
    assert world.collar.settings["window_s"] == world.collar.model.window_s


def test_tracking_command_for_45_days_is_refused_like_the_setting_it_overrides():
    world = CollarWorld()
    world.run_for(60)
    ack = _answer(world, 32, codec.encode("tracking", {"minutes": 65535}))
    assert ack["result"] == "out_of_range"
    assert not world.collar.tracking(), "nothing changed"
    top = codec.setting("tracking_minutes")[4]
    assert _answer(world, 32, codec.encode("tracking", {"minutes": top}))["result"] == "ok"
    assert world.collar.tracking()
