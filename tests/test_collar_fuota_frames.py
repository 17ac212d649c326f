"""A collar speaks TS004 fragmentation and TS003 clock sync byte for byte as the LoRa Alliance lays them out.

Frames written from the Fragmented Data Block Transport specification v1.0.0 (TS004) and the
Application Layer Clock Synchronization specification v1.0.0 (TS003) as LoRaMac-node's
`LmhpFragmentation.c` and `LmhpClockSync.c` read and write them, little-endian:
FragSessionSetupReq (CID 2) = FragSession (RFU 2 | FragIndex 2 | McGroupBitMask 4), NbFrag (2),
FragSize (1), Control (1), Padding (1), Descriptor (4); FragSessionSetupAns = StatusBitMask
(FragIndex 7..6 | WrongDescriptor | IndexNotSupported | NotEnoughMemory (bit 1) | EncodingUnsupported);
DataFragment (CID 8) = IndexAndN (FragIndex 15..14 | N 13..0) and the data; FragSessionStatusReq
(CID 1) = RFU 5 | FragIndex 2 | Participants; FragSessionStatusAns = ReceivedAndIndex (2),
MissingFrag (1), Status (1). AppTimeReq (CID 1, uplink) = DeviceTime (4, GPS seconds) and Param
(RFU 3 | AnsRequired | TokenReq 4); AppTimeAns = TimeCorrection (4, signed) and Param (RFU 4 | TokenAns 4).
FragSessionDeleteReq (CID 3) = Param (RFU 6 | FragIndex 2); FragSessionDeleteAns = Status (RFU 5 |
SessionDoesNotExist (bit 2) | FragIndex 2). Never made with Tembo's encoder.
"""

from __future__ import annotations

import pytest

from collar_firmware import codec, update, update_install
from lora_bridge.updates import delivery
from simulator import fuota

T0 = fuota.START_S
T0_GPS_HEX = "1244ce56"  # 1772323200 - 315964800 + 18 = 1456358418
IMAGE = bytes(range(256)) * 15 + bytes(4)  # 3,844 bytes, as long as the shipped model's update image
FRAG_SETUP = "02" "01" "2300" "70" "00" "4c" "01000000"  # FragIndex 0, group 0 may carry it; 35 x 112 B, 76 B padding
CLASS_C_SESSION = "04" "00" "2252ce56" "0b" "d2ad84" "03"  # TS005: group 0 at T0 + 3600, 2**11 s, 869.525 MHz, DR3


def collar():
    c = fuota.build_fleet(1, 0.0, 13)[0]
    c.hal.radio.uplinks.clear()
    return c


def collar_with_five_fragments_on_fragindex_3():
    """A collar whose session on FragIndex 3 holds fragments 1-5, its uplinks so far taken."""
    c = collar()
    c.hear(201, setup_frame(3))
    for n in range(1, 6):
        c.hear(201, fragment(n, index=3))
    sent(c, 201)
    return c


def sent(c, port: int, seconds: int = 60) -> list[str]:
    clock = c.hal.clock
    end = clock.now_s() + seconds
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    out = [payload.hex() for _t, p, payload, _c, _h in c.hal.radio.uplinks if p == port]
    c.hal.radio.uplinks.clear()
    return out


def fragment(n: int, index: int = 0) -> bytes:
    """DataFragment n of IMAGE, laid out by hand (data fragments only: n <= 35)."""
    data = (IMAGE + bytes(76))[(n - 1) * 112:n * 112]
    return bytes([0x08]) + ((index << 14) | n).to_bytes(2, "little") + data


def test_a_fragmentation_session_setup_is_read_field_by_field_and_answered_without_error_bits():
    setup = codec.decode(201, bytes.fromhex(FRAG_SETUP), "down")
    assert (setup["frag_index"], setup["mc_group_bit_mask"], setup["nb_frag"], setup["frag_size"], setup["padding"],
            setup["descriptor"]) == (0, 0b0001, 35, 112, 76, 1)
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    assert sent(c, 201) == ["0200"]
    assert fuota._setup_frames(fuota.fragment(IMAGE, 112), T0)[1][1].hex() == FRAG_SETUP[:-8] + "00000000", \
        "the twin's set-up is the same frame (its descriptor aside)"


def test_a_session_beyond_the_collars_memory_is_answered_not_enough_memory():
    c = collar()
    c.hear(201, bytes.fromhex("02" "01" "ffff" "f0" "00" "00" "00000000"))  # 65,535 fragments of 240 B
    assert sent(c, 201)[0] == "0202"


def test_the_status_answer_says_what_the_collar_holds_and_still_misses():
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in (1, 2, 3):
        c.hear(201, fragment(n))
    c.hear(201, fragment(4, index=1))  # another session's fragment: not ours
    sent(c, 201)
    c.hear(201, bytes.fromhex("0101"))  # participants: every collar answers
    assert sent(c, 201) == ["01" "0300" "20" "00"], "3 received, 32 missing, no error"
    c.hear(201, bytes.fromhex("0100"))  # participants 0: the collars still missing fragments answer
    assert sent(c, 201) == ["01" "0300" "20" "00"]


def test_a_fragment_heard_twice_counts_once_in_what_the_collar_says_it_received():
    """TS004 NbFragReceived counts the session's fragments the collar holds: a data fragment repeated (a
    unicast repeat, a frame heard in two windows) or a parity fragment repeated is one fragment. Until
    5 December every frame counted, so the bridge saw fewer losses than the collar had."""
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in (1, 2, 3, 2, 3, 3):
        c.hear(201, fragment(n))
    parity = bytes([0x08]) + (36).to_bytes(2, "little") + bytes(112)  # parity fragment 1 (N = 36), twice
    c.hear(201, parity)
    c.hear(201, parity)
    sent(c, 201)
    c.hear(201, bytes.fromhex("0101"))
    assert sent(c, 201) == ["01" "0400" "1f" "00"], "4 distinct fragments received, 31 still needed"


def test_a_collar_holding_the_whole_image_answers_only_a_request_to_every_collar():
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in range(1, 36):
        c.hear(201, fragment(n))
    sent(c, 201)
    c.hear(201, bytes.fromhex("0100"))  # a later round asks only those still missing fragments
    assert sent(c, 201) == [], "it said so once; the fleet is not asked for an uplink each round"
    c.hear(201, bytes.fromhex("0101"))
    assert [answer[6:8] for answer in sent(c, 201)] == ["00"], "asked by all: nothing missing"


def test_every_data_fragment_heard_rebuilds_the_image_byte_for_byte():
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in range(1, 36):
        c.hear(201, fragment(n))
    assert not c.collar.update.receiving()
    slot = update_install.SlotStore(c.hal.storage, c.collar.update._inactive())  # the inactive slot in flash
    assert b"".join(bytes(slot.read(i)) for i in range(35))[:len(IMAGE)] == IMAGE
    assert c.collar.update.last_result != "ok", "not an update image: refused after the rebuild"


def test_the_collar_asks_the_time_in_gps_seconds_and_takes_the_correction_of_its_token():
    c = collar()
    c.hear(200, bytes.fromhex(CLASS_C_SESSION))
    (request,) = sent(c, 202, seconds=1)
    assert request == "01" + T0_GPS_HEX + "11", "DeviceTime T0 in GPS seconds, AnsRequired, TokenReq 1"
    before = c.hal.clock.now_s()
    c.hear(202, bytes.fromhex("01" "fbffffff" "00"))  # TokenAns 0: an answer to another request
    c.hear(202, bytes.fromhex("01" "05000000" "01"))  # 5 s later than the collar thought
    assert c.hal.clock.now_s() - before == 5
    c.hear(202, bytes.fromhex("01" "05000000" "01"))  # the same answer again: the token moved on
    assert c.hal.clock.now_s() - before == 5


@pytest.mark.parametrize(("port", "frame", "why"), [
    (201, FRAG_SETUP[:-2], "FragSessionSetupReq one byte short"),
    (201, "08", "DataFragment without IndexAndN"),
    (201, "01", "FragSessionStatusReq without its parameter"),
    (201, "7f00", "an unknown command id"),
    (202, "01050000", "AppTimeAns one byte short"),
    (202, "01" "05000000" "01" "00", "AppTimeAns one byte long"),
    (202, "02" "00", "AppTimePeriodicityReq: not implemented"),
])
def test_a_broken_frame_is_refused_counted_and_changes_nothing(port, frame, why):
    with pytest.raises(codec.CodecError):
        codec.decode(port, bytes.fromhex(frame), "down")
    c = collar()
    errors, clock = c.collar.error_total(), c.hal.clock.now_s()
    c.hear(port, bytes.fromhex(frame))
    assert c.collar.error_total() > errors, why
    assert sent(c, port) == [] and not c.collar.update.receiving(), why
    assert c.hal.clock.now_s() == clock + 60, why


def test_field_technician_aborting_a_delivery_releases_a_collar_waiting_for_fragments_with_a_session_delete():
    """Until 4 December the codec had no FragSessionDeleteReq: a collar left mid-session by an aborted campaign
    kept waiting for fragments that would never come (busy, its half image held), answering nothing."""
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in range(1, 10):
        c.hear(201, fragment(n))
    sent(c, 201)
    assert c.collar.update.receiving()
    c.hear(201, bytes.fromhex("0300"))  # FragSessionDeleteReq, FragIndex 0
    assert sent(c, 201) == ["0300"], "deleted: FragIndex 0, no error bit"
    assert not c.collar.update.receiving() and not c.collar.update.busy()
    c.hear(201, fragment(10))
    c.hear(201, bytes.fromhex("0300"))
    assert sent(c, 201) == ["0304"], "SessionDoesNotExist: nothing left to delete"
    assert c.collar.update.last_result is None, "no update outcome: nothing was installed or refused"


def test_a_collar_whose_campaign_was_dropped_with_its_delete_lost_frees_the_session_after_days_of_silence():
    """A campaign cancelled mid-delivery whose FragSessionDeleteReq never reached the collar: until 5 December
    the collar held the session (its decoder's RAM, busy) for ever and said nothing. It now waits longer than
    the bridge serves any straggler (MAX_UNICAST_DAYS), then ends the session as truncated on port 31."""
    assert update.SESSION_SILENT_S > delivery.MAX_UNICAST_DAYS * 86400
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in range(1, 10):
        c.hear(201, fragment(n))
    sent(c, 201, 6 * 86400)
    c.hear(201, fragment(10))  # a unicast fragment on day 6: the silence counts from it
    sent(c, 201, 7 * 86400)
    assert c.collar.update.receiving(), "still served within the bridge's unicast days"
    clock = c.hal.clock
    end = clock.now_s() + 2 * 86400
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    acks = [codec.decode(31, p) for _t, port, p, _c, _h in c.hal.radio.uplinks if port == 31]
    c.hal.radio.uplinks.clear()
    assert not c.collar.update.receiving() and not c.collar.update.busy() and c.collar.update.decoder is None
    assert [(a["on_port"], a["result"]) for a in acks] == [(201, "truncated")]
    assert c.collar.status_values(c.hal.clock.now_s())["update_reason"] == codec.ack_code("truncated")
    c.hear(201, bytes.fromhex("0101"))
    assert sent(c, 201) == ["01" "0000" "00" "04"], "SessionDoesNotExist: the bridge's later status request learns it"


def test_a_collar_asked_about_a_session_it_does_not_hold_says_so_and_never_that_nothing_is_missing():
    """Until 5 December a collar with no session (or another FragIndex's) answered "0 received, 0 missing",
    which the bridge read as the whole image. TS004 FragStatusReqParam = RFU 5 | FragIndex 2 | Participants;
    the answer's ReceivedAndIndex carries the FragIndex asked about, and its Status says SessionDoesNotExist
    (bit 2, as TS004 v2.0.0 and FragSessionDeleteAns place it)."""
    c = collar()
    c.hear(201, bytes.fromhex("0101"))  # FragIndex 0, every collar answers: this one holds no session
    assert sent(c, 201) == ["01" "0000" "00" "04"]
    c.hear(201, bytes.fromhex("0100"))  # only collars missing fragments: one without the session misses them all
    assert sent(c, 201) == ["01" "0000" "00" "04"]
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in (1, 2, 3):
        c.hear(201, fragment(n))
    sent(c, 201)
    c.hear(201, bytes.fromhex("0103"))  # FragIndex 1: not the session it holds
    c.hear(201, bytes.fromhex("0101"))  # FragIndex 0: its own
    assert sent(c, 201) == ["01" "0040" "00" "04", "01" "0300" "20" "00"]
    c.hear(201, bytes.fromhex("0300"))  # deleted: it holds no session any more
    c.hear(201, bytes.fromhex("0101"))
    assert sent(c, 201) == ["0300", "01" "0000" "00" "04"]


def reset(c, cause: str = "watchdog") -> None:
    """The collar's processor resets (the modem, powered on, keeps listening); the firmware boots from flash."""
    from collar_firmware.main import Collar

    c.hal.clock.cause = cause
    c.collar = Collar(c.hal, None, c.collar.trust)


def test_a_collar_reset_mid_session_says_at_once_it_lost_the_session_and_never_installs_half_an_image():
    """A watchdog reset while fragments arrive: which ones it held lived in RAM. The collar says so at once
    (SessionDoesNotExist: it would not hear the window's status request), takes no fragment of the lost
    session, reports no update outcome, and a new set-up rebuilds the image whole."""
    c = collar()
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in range(1, 20):
        c.hear(201, fragment(n))
    sent(c, 201)
    reset(c)
    assert sent(c, 201) == ["01" "0000" "00" "04"]
    for n in range(20, 36):
        c.hear(201, fragment(n))
    assert not c.collar.update.busy() and c.collar.update.last_result is None
    reset(c)
    assert sent(c, 201) == [], "said once"
    c.hear(201, bytes.fromhex(FRAG_SETUP))
    for n in range(1, 36):
        c.hear(201, fragment(n))
    slot = update_install.SlotStore(c.hal.storage, c.collar.update._inactive())
    assert b"".join(bytes(slot.read(i)) for i in range(35))[:len(IMAGE)] == IMAGE
    sent(c, 201)
    reset(c)  # after the image was whole: it still answers for the session, nothing missing
    c.hear(201, bytes.fromhex("0101"))
    assert sent(c, 201) == ["01" "2300" "00" "00"], "35 received, 0 missing"


def test_a_collar_takes_a_session_set_up_as_the_spec_lays_out_fragsession_whatever_its_index_and_groups():
    """TS004 FragSession = RFU 2 | FragIndex 2 | McGroupBitMask 4 (LoRaMac-node, LoRa Basics Modem). Until
    5 December Tembo read FragIndex from the low two bits: a standard FUOTA server's set-up for group 0
    (McGroupBitMask 0b0001, FragIndex 0) opened session 1 on the collar, whose fragments of session 0
    were all dropped as another session's."""
    c = collar()
    c.hear(201, bytes.fromhex("02" "13" + FRAG_SETUP[4:]))  # FragIndex 1, groups 0 and 1 may carry it
    assert sent(c, 201) == ["0240"], "FragIndex 1 in bits 7..6, no error bit"
    for n in range(1, 36):
        c.hear(201, fragment(n, index=0))  # another session's: not taken
    assert c.collar.update.receiving()
    for n in range(1, 36):
        c.hear(201, fragment(n, index=1))
    assert not c.collar.update.receiving()
    slot = update_install.SlotStore(c.hal.storage, c.collar.update._inactive())
    assert b"".join(bytes(slot.read(i)) for i in range(35))[:len(IMAGE)] == IMAGE
    c.hear(201, bytes.fromhex("02" "0f" "2300" "70" "08" "4c" "01000000"))  # FragAlgo 1: not TS004's code
    assert sent(c, 201) == ["0201"], "EncodingUnsupported"


# Every FragIndex, byte for byte as TS004 lays the fields out (v1.0.0 3.2-3.5 and v2.0.0 3.2-3.4, 3.6 alike):
# FragSession = RFU 7..6 | FragIndex 5..4 | McGroupBitMask 3..0; FragStatusReqParam = RFU 7..3 | FragIndex
# 2..1 | Participants 0; FragSessionDeleteReq Param = RFU 7..2 | FragIndex 1..0; Index&N = FragIndex 15..14 |
# N 13..0; FragSessionSetupAns = FragIndex 7..6 | ... | NotEnoughMemory 1 | ...; FragSessionDeleteAns =
# RFU 7..3 | SessionDoesNotExist 2 | FragIndex 1..0.
def setup_frame(index: int, groups: int = 0b0001) -> bytes:
    return bytes([0x02, index << 4 | groups]) + bytes.fromhex(FRAG_SETUP[4:])


def status_request(index: int, participants: int) -> bytes:
    return bytes([0x01, index << 1 | participants])


def status_answer(index: int, received: int, missing: int, status: int = 0) -> str:
    return "01" + (index << 14 | received).to_bytes(2, "little").hex() + f"{missing:02x}{status:02x}"


@pytest.mark.parametrize("index", range(4))
def test_field_technician_reaches_a_collar_on_any_fragindex_set_up_status_fragments_and_delete(index):
    """A FUOTA server may run its session on any FragIndex 0..3: the collar answers each request under the
    FragIndex asked, takes only that session's fragments and deletes only that session."""
    others = [i for i in range(4) if i != index]
    c = collar()
    c.hear(201, setup_frame(index))
    assert sent(c, 201) == [f"02{index << 6:02x}"], "FragIndex in 7..6, no error bit"
    for n in range(1, 11):
        for other in others:
            c.hear(201, fragment(n, index=other))  # another session's fragments: dropped
        c.hear(201, fragment(n, index=index))
    c.hear(201, status_request(index, 1))
    for other in others:
        c.hear(201, status_request(other, 0))
    assert sent(c, 201) == [status_answer(index, 10, 25)] + [status_answer(o, 0, 0, 0x04) for o in others]
    for other in others:
        c.hear(201, bytes([0x03, other]))
    c.hear(201, bytes([0x03, index]))
    assert sent(c, 201) == [f"03{other | 0x04:02x}" for other in others] + [f"03{index:02x}"]
    assert not c.collar.update.receiving()


@pytest.mark.parametrize(("held", "asked"), [(0, 1), (1, 0), (2, 3), (3, 2), (3, 0)])
def test_a_collar_filling_its_one_session_refuses_another_fragindex_and_rebuilds_the_one_it_holds(held, asked):
    """The collar holds one session at a time (its fragments fill the inactive slot). Until 6 December a
    set-up of another FragIndex silently replaced the session being received: the bridge of the first
    heard nothing, and its fragments were dropped. Now the second is refused NotEnoughMemory under its
    own FragIndex, and the first goes on to the whole image."""
    c = collar()
    c.hear(201, setup_frame(held))
    for n in range(1, 20):
        c.hear(201, fragment(n, index=held))
    c.hear(201, setup_frame(asked, groups=0b1111))
    assert sent(c, 201) == [f"02{held << 6:02x}", f"02{asked << 6 | 0x02:02x}"]
    for n in range(20, 36):
        c.hear(201, fragment(n, index=asked))  # the refused session's fragments: dropped
    assert c.collar.update.receiving() and c.collar.update.frag_index == held
    for n in range(20, 36):
        c.hear(201, fragment(n, index=held))
    slot = update_install.SlotStore(c.hal.storage, c.collar.update._inactive())
    assert b"".join(bytes(slot.read(i)) for i in range(35))[:len(IMAGE)] == IMAGE
    c.hear(201, status_request(held, 1))
    c.hear(201, status_request(asked, 1))
    assert sent(c, 201) == [status_answer(held, 35, 0), status_answer(asked, 0, 0, 0x04)]


@pytest.mark.parametrize("index", range(4))
def test_a_session_set_up_again_on_its_own_fragindex_starts_over(index):
    """TS004 v2.0.0 3.3: a set-up of a FragIndex already in use, accepted, stops that session and clears its
    context (v1.0.0 3.3 asks the server to delete it first; a repeated set-up is taken the same way)."""
    c = collar()
    c.hear(201, setup_frame(index))
    for n in range(1, 8):
        c.hear(201, fragment(n, index=index))
    c.hear(201, setup_frame(index))
    c.hear(201, status_request(index, 1))
    assert sent(c, 201) == [f"02{index << 6:02x}"] * 2 + [status_answer(index, 0, 35)]


def test_the_collar_declares_ts004_v1_in_its_fragmentation_package_version():
    """TS004 3.1: PackageVersionReq (CID 0, no payload) is answered PackageIdentifier 3, PackageVersion 1."""
    c = collar()
    c.hear(201, bytes.fromhex("00"))
    assert sent(c, 201) == ["000301"]


@pytest.mark.parametrize(("frame", "why"), [
    ("02" "31" "2300" "70" "00" "4c" "010000", "FragSessionSetupReq of FragIndex 3 one byte short"),
    ("03", "FragSessionDeleteReq without its parameter"),
    ("01", "FragSessionStatusReq without its parameter"),
    ("08" "c0", "DataFragment of FragIndex 3 with half its Index&N"),
    ("04" "03", "FragDataBlockReceivedAns: v2.0.0 only, the collar never asks"),
    ("05", "an unknown command id"),
])
def test_a_broken_fragmentation_frame_of_any_fragindex_is_refused_and_leaves_the_session_as_it_was(frame, why):
    c = collar_with_five_fragments_on_fragindex_3()
    errors = c.collar.error_total()
    c.hear(201, bytes.fromhex(frame))
    assert c.collar.error_total() == errors + 1, why
    c.hear(201, status_request(3, 1))
    assert sent(c, 201) == [status_answer(3, 5, 30)], why


@pytest.mark.parametrize("index", range(4))
def test_rfu_bits_of_a_request_are_ignored_and_never_change_the_fragindex(index):
    """TS004: RFU bits are sent as 0 and ignored on receive."""
    c = collar()
    c.hear(201, bytes([0x02, 0xC0 | index << 4 | 1]) + bytes.fromhex(FRAG_SETUP[4:]))
    c.hear(201, bytes([0x01, 0xF8 | index << 1 | 1]))
    c.hear(201, bytes([0x03, 0xFC | index]))
    assert sent(c, 201) == [f"02{index << 6:02x}", status_answer(index, 0, 35), f"03{index:02x}"]


@pytest.mark.parametrize("index", range(4))
def test_a_collar_reset_mid_session_says_so_under_the_fragindex_of_the_session_it_lost(index):
    """The session kept in flash names its FragIndex: after a watchdog reset the collar's unasked
    SessionDoesNotExist carries it, and after its image was whole it still answers for that index."""
    c = collar()
    c.hear(201, setup_frame(index))
    for n in range(1, 20):
        c.hear(201, fragment(n, index=index))
    sent(c, 201)
    reset(c)
    assert sent(c, 201) == [status_answer(index, 0, 0, 0x04)]
    c.hear(201, setup_frame(index))
    for n in range(1, 36):
        c.hear(201, fragment(n, index=index))
    sent(c, 201)
    reset(c)
    c.hear(201, status_request(index, 1))
    assert sent(c, 201) == [status_answer(index, 35, 0)]


# ---- several commands in one frame, multicast and McGroupBitMask ---------------------------------------------


def test_field_technician_asks_two_things_in_one_downlink_and_the_collar_answers_both_in_one_uplink():
    """TS004 v1.0.0 3: a message MAY carry more than one command (a DataFragment only alone); LoRaMac-node's
    LmhpFragmentation.c and LoRa Basics Modem parse each in turn and send the answers concatenated."""
    c = collar()
    c.hear(201, setup_frame(2))
    for n in range(1, 4):
        c.hear(201, fragment(n, index=2))
    sent(c, 201)
    c.hear(201, bytes.fromhex("01" "05" "00" "01" "02"))  # status of FragIndex 2 to all, PackageVersionReq,
    # status of FragIndex 1 (none held) to the collars missing fragments
    assert sent(c, 201) == [status_answer(2, 3, 32) + "000301" + status_answer(1, 0, 0, 0x04)]
    c.hear(201, bytes.fromhex("03" "02" "01" "05"))  # delete FragIndex 2, then its status
    assert sent(c, 201) == ["0302" + status_answer(2, 0, 0, 0x04)]
    assert not c.collar.update.receiving()


@pytest.mark.parametrize(("frame", "answers", "why"), [
    ("03" "02" "00", ["0306000301"], "FragSessionDeleteReq of FragIndex 2 (none held), then PackageVersionReq"),
    ("01" "07" "00", [status_answer(3, 5, 30) + "000301"], "FragSessionStatusReq of FragIndex 3, PackageVersionReq"),
    ("00" "00", ["000301000301"], "PackageVersionReq twice"),
])
def test_what_once_looked_like_a_command_too_long_is_read_as_the_commands_it_spells(frame, answers, why):
    c = collar_with_five_fragments_on_fragindex_3()
    errors = c.collar.error_total()
    c.hear(201, bytes.fromhex(frame))
    assert c.collar.error_total() == errors, why
    assert sent(c, 201) == answers, why
    assert c.collar.update.receiving() and c.collar.update.frag_index == 3, why


def test_an_unknown_command_after_a_good_one_ends_the_parse_but_the_good_one_is_answered():
    """LoRa Basics Modem's v1.0.0 parser stops at an unknown command id or one cut short (its length unknown,
    nothing after it can be found); the collar keeps the answers of the commands it already carried out (a
    deletion done must be told) and counts the frame as a downlink error."""
    c = collar()
    c.hear(201, setup_frame(1))
    sent(c, 201)
    errors = c.collar.error_total()
    c.hear(201, bytes.fromhex("01" "03" "05" "00" "03" "01" "03"))  # status (FragIndex 1), unknown 5: no more
    assert c.collar.error_total() == errors + 1
    assert sent(c, 201) == [status_answer(1, 0, 35)]
    assert c.collar.update.receiving(), "the delete after the unknown command was never read"
    c.hear(201, bytes.fromhex("00" "03"))  # PackageVersionReq, then a FragSessionDeleteReq cut short
    assert c.collar.error_total() == errors + 2
    assert sent(c, 201) == ["000301"] and c.collar.update.receiving()


# TS004 v2.0.0 3.3 (LoRa Basics Modem's lorawan_fragmentation_package_v2.0.0.c reads it so): FragSessionSetupReq
# = FragSession (1), NbFrag (2), FragSize (1), Control (1), Padding (1), Descriptor (4), SessionCnt (2), MIC (4):
# 16 bytes after its command id, where v1.0.0's are the first 10.
def v2_setup_frame(index: int, groups: int = 0b0001) -> bytes:
    return setup_frame(index, groups) + bytes.fromhex("0100" "01020304")  # SessionCnt 1, a MIC


@pytest.mark.parametrize("index", range(4))
def test_a_ts004_v2_setup_is_answered_encoding_unsupported_and_never_opens_a_session(index):
    """The collar announces PackageVersion 1 (v1.0.0's layouts); a server that sends v2.0.0's 16-byte set-up anyway
    is told EncodingUnsupported (FragSessionSetupAns bit 0) under the FragIndex it asked for, and the collar holds
    no session: its SessionCnt and MIC are never read as commands (until 6 December they were: the MIC 01020304
    spelled a status request and a FragSessionDeleteReq)."""
    assert update.SETUP_CID == codec.tag_of("frag_session_setup")
    c = collar()
    errors = c.collar.error_total()
    c.hear(201, v2_setup_frame(index))
    assert c.collar.error_total() == errors
    assert sent(c, 201) == [f"02{index << 6 | 0x01:02x}"]
    assert not c.collar.update.receiving()
    c.hear(201, status_request(index, 1))
    assert sent(c, 201) == [status_answer(index, 0, 0, 0x04)], "no session of that FragIndex"


def test_a_ts004_v2_setup_leaves_the_session_the_collar_holds_and_follows_other_commands_in_its_frame():
    c = collar_with_five_fragments_on_fragindex_3()
    c.hear(201, bytes.fromhex("00") + v2_setup_frame(3))  # PackageVersionReq, then the v2.0.0 set-up of FragIndex 3
    assert sent(c, 201) == ["000301" "02c1"]
    c.hear(201, status_request(3, 1))
    assert sent(c, 201) == [status_answer(3, 5, 30)], "the session of FragIndex 3 goes on with its five fragments"
    c.collar.fuota_downlink(201, v2_setup_frame(3), 0)  # a set-up is unicast only: on a group, not even answered
    assert sent(c, 201) == []


@pytest.mark.parametrize(("cut", "why"), [
    (-1, "the MIC one byte short: v1.0.0's set-up, then 01 00 (a status request), 01 02 (another), 03 cut short"),
    (-5, "SessionCnt and one byte of the MIC: v1.0.0's set-up, then a status request and 01 alone, cut short"),
])
def test_a_ts004_v2_setup_cut_short_reads_as_v1_commands_and_counts_as_a_broken_frame(cut, why):
    """Only the whole 16 bytes tell v2.0.0 apart; a frame cut short is what LoRa Basics Modem's v1.0.0 parser makes
    of it, and counted as a downlink error."""
    c = collar()
    errors = c.collar.error_total()
    c.hear(201, v2_setup_frame(2)[:cut])
    assert c.collar.error_total() == errors + 1, why
    assert sent(c, 201)[0].startswith("0280"), why


def test_answers_to_a_long_frame_stop_at_what_one_uplink_carries():
    """Twenty PackageVersionReq ask 60 bytes of answers: the uplink carries the 17 that fit 51 bytes (LoRa Basics
    Modem leaves out an answer past the uplink's room)."""
    c = collar()
    c.hear(201, bytes(20))
    assert sent(c, 201) == ["000301" * 17]


@pytest.mark.parametrize("command", [
    FRAG_SETUP, "00", "03" "00",
])
def test_a_setup_delete_or_version_request_heard_on_a_multicast_group_is_ignored(command):
    """TS004 v2.0.0 table 2 (v1.0.0 alike): only FragSessionStatusReq and DataFragment may come multicast;
    LmhpFragmentation.c and LoRa Basics Modem skip the others heard on a multicast address, unanswered."""
    c = collar()
    c.hear(201, setup_frame(0))
    for n in range(1, 4):
        c.hear(201, fragment(n))
    sent(c, 201)
    errors = c.collar.error_total()
    c.collar.fuota_downlink(201, bytes.fromhex(command), 0)
    c.collar.fuota_downlink(201, bytes.fromhex(command + "0101"), 0)  # the status request after it is answered
    assert c.collar.error_total() == errors
    assert sent(c, 201) == [status_answer(0, 3, 32)]
    assert c.collar.update.receiving() and c.collar.update.still_needed() == 32


@pytest.mark.parametrize(("groups", "heard_on", "taken"), [
    (0b0001, 0, True), (0b0001, 1, False), (0b0001, 3, False), (0b1010, 1, True), (0b1010, 3, True),
    (0b1010, 0, False), (0b0000, 0, False), (0b0000, None, True), (0b0100, None, True), (0b1111, 2, True),
])
def test_a_fragment_on_a_multicast_group_the_session_did_not_enable_is_silently_dropped(groups, heard_on, taken):
    """TS004 v1.0.0 (FragSessionSetupReq, DataFragment): McGroupBitMask bit X lets group X feed the session,
    unicast always can; a fragment received on a multicast address the set-up did not enable "SHALL be
    silently dropped": not counted, not an error."""
    c = collar()
    c.hear(201, setup_frame(1, groups))
    sent(c, 201)
    errors = c.collar.error_total()
    for n in range(1, 4):
        c.collar.fuota_downlink(201, fragment(n, index=1), heard_on)
    assert c.collar.error_total() == errors
    c.hear(201, status_request(1, 1))
    assert sent(c, 201) == [status_answer(1, 3, 32) if taken else status_answer(1, 0, 35)]


def test_a_status_request_heard_on_a_multicast_group_is_answered():
    """FragSessionStatusReq is U/M in TS004's table: the group asks, each collar answers by unicast."""
    c = collar()
    c.hear(201, setup_frame(0))
    sent(c, 201)
    c.collar.fuota_downlink(201, status_request(0, 0), 0)
    assert sent(c, 201) == [status_answer(0, 0, 35)]
