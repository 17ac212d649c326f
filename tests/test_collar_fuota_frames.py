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
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from collar_firmware import codec, update, update_install
from lora_bridge.updates import delivery
from simulator import fuota
from simulator.hal_sim import PowerCut, SimRadio

T0 = fuota.START_S
T0_GPS_HEX = "1244ce56"  # 1772323200 - 315964800 + 18 = 1456358418
IMAGE = bytes(range(256)) * 15 + bytes(4)  # 3,844 bytes, as long as the shipped model's update image
FRAG_SETUP = "02" "01" "2300" "70" "00" "4c" "01000000"  # FragIndex 0, group 0 may carry it; 35 x 112 B, 76 B padding
ROOT_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # the collar's GenAppKey (RFC 4493's example key)
CLASS_C_SESSION = "04" "00" "2252ce56" "0b" "d2ad84" "03"  # TS005: group 0 at T0 + 3600, 2**11 s, 869.525 MHz, DR3


def collar():
    c = fuota.build_fleet(1, 0.0, 13)[0]
    c.hal.radio.uplinks.clear()
    c.hal.radio.provision_root_key(ROOT_KEY)  # the key the collar joined with, held by the LR1110's engine
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


def test_the_collar_declares_ts004_v2_in_its_fragmentation_package_version(monkeypatch):
    """TS004 v2.0.0 3.1: PackageVersionReq (CID 0, no payload) is answered PackageIdentifier 3, PackageVersion 2 by a
    collar whose radio can check the data block's MIC (hal.Radio.derive_key); one without says 1."""
    c = collar()
    c.hear(201, bytes.fromhex("00"))
    assert sent(c, 201) == ["000302"]
    monkeypatch.delattr(SimRadio, "derive_key")
    c.hear(201, bytes.fromhex("00"))
    c.hear(201, v2_setup_frame(1))
    assert sent(c, 201) == ["000301", "0241"], "without the engine a v2.0.0 set-up is EncodingUnsupported"


@pytest.mark.parametrize(("frame", "why"), [
    ("02" "31" "2300" "70" "00" "4c" "010000", "FragSessionSetupReq of FragIndex 3 one byte short"),
    ("03", "FragSessionDeleteReq without its parameter"),
    ("01", "FragSessionStatusReq without its parameter"),
    ("08" "c0", "DataFragment of FragIndex 3 with half its Index&N"),
    ("04", "FragDataBlockReceivedAns without its parameter"),
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
    assert sent(c, 201) == [status_answer(2, 3, 32) + "000302" + status_answer(1, 0, 0, 0x04)]
    c.hear(201, bytes.fromhex("03" "02" "01" "05"))  # delete FragIndex 2, then its status
    assert sent(c, 201) == ["0302" + status_answer(2, 0, 0, 0x04)]
    assert not c.collar.update.receiving()


@pytest.mark.parametrize(("frame", "answers", "why"), [
    ("03" "02" "00", ["0306000302"], "FragSessionDeleteReq of FragIndex 2 (none held), then PackageVersionReq"),
    ("01" "07" "00", [status_answer(3, 5, 30) + "000302"], "FragSessionStatusReq of FragIndex 3, PackageVersionReq"),
    ("00" "00", ["000302000302"], "PackageVersionReq twice"),
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
    assert sent(c, 201) == ["000302"] and c.collar.update.receiving()


# ---- TS004 v2.0.0 --------------------------------------------------------------------------------------------
# TS004 v2.0.0 3.3 (LoRa Basics Modem's lorawan_fragmentation_package_v2.0.0.c reads it so): FragSessionSetupReq
# = FragSession (1), NbFrag (2), FragSize (1), Control (RFU | AckReception (bit 6) | FragAlgo 3 | BlockAckDelay 3),
# Padding (1), Descriptor (4), SessionCnt (2), MIC (4): 16 bytes after its command id, where v1.0.0's are the
# first 10. The MIC: the first 4 bytes of AES-CMAC(DataBlockIntKey, B0 | block), DataBlockIntKey =
# aes128_encrypt(root key, 0x30 | pad16), B0 = 0x49 | SessionCnt (2) | FragIndex (1) | Descriptor (4) | 0 (4) |
# block size (4), all little-endian; computed here with `cryptography`, never with the collar's code.
# FragSessionStatusAns v2 = Status (RFU 5 | SessionDoesNotExist | MICError | MemoryError), Received&index (2),
# MissingFrag (1), Status alone when the session does not exist; FragDataBlockReceivedReq (CID 4, uplink) =
# RFU 5 | MICError | FragIndex 2; FragDataBlockReceivedAns (CID 4, downlink) = RFU 6 | FragIndex 2.
def block_mic(index: int, session_cnt: int, block: bytes = IMAGE, root: bytes = ROOT_KEY) -> bytes:
    enc = Cipher(algorithms.AES(root), modes.ECB()).encryptor()
    key = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    b0 = bytes([0x49]) + session_cnt.to_bytes(2, "little") + bytes([index]) + bytes.fromhex("01000000") \
        + bytes(4) + len(block).to_bytes(4, "little")
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(b0 + block)
    return mac.finalize()[:4]


def v2_setup_frame(index: int, session_cnt: int = 1, mic: bytes | None = None, control: int = 0x40) -> bytes:
    """v2.0.0's set-up of IMAGE on FragIndex index, group 0 may carry it, 35 x 112 B, 76 B padding, descriptor 1."""
    return bytes([0x02, index << 4 | 0b0001]) + bytes.fromhex("2300" "70") + bytes([control]) \
        + bytes.fromhex("4c" "01000000") + session_cnt.to_bytes(2, "little") \
        + (block_mic(index, session_cnt) if mic is None else mic)


def status_answer_v2(index: int, received: int, missing: int, status: int = 0) -> str:
    return f"01{status:02x}" + (index << 14 | received).to_bytes(2, "little").hex() + f"{missing:02x}"


def whole_v2_session(index: int, mic: bytes | None = None) -> tuple:
    """A collar given a v2.0.0 session of FragIndex index and every data fragment; its uplinks on 201 and 31."""
    c = collar()
    c.hear(201, v2_setup_frame(index, mic=mic))
    for n in range(1, 36):
        c.hear(201, fragment(n, index=index))
    clock = c.hal.clock
    end = clock.now_s() + 600  # the loop's wake-ups: the block rebuilt, its MIC checked a share each, the image judged
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    up = [(port, p) for _t, port, p, _c, _h in c.hal.radio.uplinks]
    c.hal.radio.uplinks.clear()
    return c, [p.hex() for port, p in up if port == 201], [codec.decode(31, p)["result"] for port, p in up if port == 31]


@pytest.mark.parametrize("index", range(4))
def test_a_ts004_v2_session_tells_the_server_its_block_arrived_with_the_mic_checked(index, monkeypatch):
    """The block rebuilt, its MIC computed through the radio's crypto engine is the set-up's: FragDataBlockReceivedReq
    says so (AckReception asked for it) and the image goes on to its signature check; status answers in v2.0.0's
    layout, Status first."""
    judged = []
    monkeypatch.setattr(update_install, "_check_image", lambda agent, now: judged.append(agent.image_len))
    c, on_201, _acks = whole_v2_session(index)
    assert on_201 == [f"02{index << 6:02x}", f"04{index:02x}"]
    assert judged == [len(IMAGE)], "the MIC held: the image goes on to its own checks"
    c.collar.update.state = update.IDLE  # as the image's checks (left out here) end
    c.hear(201, status_request(index, 1))
    c.hear(201, bytes([0x04, index]))  # FragDataBlockReceivedAns: the server heard it; nothing answers, no error
    assert sent(c, 201) == [status_answer_v2(index, 35, 0)]


@pytest.mark.parametrize(("mic", "why"), [
    (bytes(4), "a MIC of zeros"),
    (None, "the MIC of another SessionCnt"),
])
def test_a_ts004_v2_block_whose_mic_is_not_the_setups_is_never_processed(mic, why, monkeypatch):
    index = 2
    judged = []
    monkeypatch.setattr(update_install, "_check_image", lambda agent, now: judged.append(agent.image_len))
    if mic is None:
        mic = block_mic(index, 2)
    c, on_201, acks = whole_v2_session(index, mic)
    assert on_201 == ["0280", f"04{0x04 | index:02x}"], why  # MICError
    assert acks == ["tampered"] and judged == [], why
    c.hear(201, status_request(index, 1))
    assert sent(c, 201) == [status_answer_v2(index, 35, 0, 0x02)], why


@pytest.mark.parametrize("cut", range(1, 6))
def test_a_ts004_v2_setup_cut_short_is_refused_and_never_read_as_v1(cut):
    """A set-up with more than v1.0.0's 10 bytes after its id but fewer than v2.0.0's 16 is v2.0.0's cut short: it is
    answered EncodingUnsupported under its FragIndex, counted as a broken frame, and no session is set up (until 6
    December its SessionCnt and MIC were read as v1.0.0 commands after a v1.0.0 set-up)."""
    c = collar()
    errors = c.collar.error_total()
    c.hear(201, v2_setup_frame(2)[:-cut])
    assert c.collar.error_total() == errors + 1
    assert sent(c, 201) == ["0281"]
    assert not c.collar.update.receiving()


def test_a_ts004_v2_setup_is_followed_by_the_other_commands_of_its_frame_and_a_v1_setup_still_works():
    c = collar()
    c.hear(201, bytes.fromhex("00") + v2_setup_frame(3) + status_request(3, 1))
    assert sent(c, 201) == ["000302" "02c0" + status_answer_v2(3, 0, 35)]
    c.hear(201, bytes.fromhex("0303") + status_request(3, 1))  # delete it: v2.0.0's answer for no session is 1 byte
    assert sent(c, 201) == ["0303" "0104"]
    c.hear(201, setup_frame(1))  # v1.0.0's set-up alone in its frame: v1.0.0's layouts again
    c.hear(201, status_request(1, 1))
    assert sent(c, 201) == ["0240", status_answer(1, 0, 35)]


@pytest.mark.parametrize(("frame", "answer", "why"), [
    (v2_setup_frame(0, control=0x48), "0201", "FragAlgo 1: an encoding the collar does not know"),
    (v2_setup_frame(0, session_cnt=0), "0210", "SessionCnt 0 after SessionCnt 5: a replay"),
    (v2_setup_frame(0, session_cnt=5), "0210", "SessionCnt 5 again"),
])
def test_a_ts004_v2_setup_of_an_unknown_encoding_or_an_old_session_counter_is_refused(frame, answer, why):
    c = collar()
    c.hear(201, v2_setup_frame(0, session_cnt=5))
    assert sent(c, 201) == ["0200"]
    c.hear(201, frame)
    assert sent(c, 201) == [answer], why
    assert c.collar.update.frag_index == 0, why


def test_a_ts004_v2_setup_on_a_multicast_group_is_not_even_answered():
    c = collar()
    c.collar.fuota_downlink(201, v2_setup_frame(3), 0)
    assert sent(c, 201) == []
    assert not c.collar.update.receiving()


def test_answers_to_a_long_frame_stop_at_what_one_uplink_carries():
    """Twenty PackageVersionReq ask 60 bytes of answers: the uplink carries the 17 that fit 51 bytes (LoRa Basics
    Modem leaves out an answer past the uplink's room)."""
    c = collar()
    c.hear(201, bytes(20))
    assert sent(c, 201) == ["000302" * 17]


@pytest.mark.parametrize("command", [
    FRAG_SETUP, v2_setup_frame(0).hex(), "00", "03" "00",
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
    if command != FRAG_SETUP:  # v1.0.0's set-up is the last command of its frame (more is v2.0.0's set-up cut short)
        c.collar.fuota_downlink(201, bytes.fromhex(command + "0101"), 0)  # the status request after it is answered
    else:
        c.collar.fuota_downlink(201, bytes.fromhex("0101"), 0)
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


def sent_at(c, port: int, seconds: int) -> list[tuple[int, str]]:
    """Run the collar's loop seconds on; return (when sent, bytes in hex) of its uplinks on port."""
    clock = c.hal.clock
    end = clock.now_s() + seconds
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    out = [(t, payload.hex()) for t, p, payload, _c, _h in c.hal.radio.uplinks if p == port]
    c.hal.radio.uplinks.clear()
    return out


def test_collars_of_one_group_answer_a_multicast_status_request_spread_over_block_ack_delay():
    """Issue 14: the bridge's FragSessionStatusReq on the group reached the fleet's collars in the same Class C window,
    and each answered at once: their uplinks collided on the air. TS004 (LoRaMac-node's LmhpFragmentation, LoRa Basics
    Modem's v2.0.0 package): the answer to a request heard on a multicast group waits rand() * 2**(BlockAckDelay + 4) s
    (Control bits 2..0 of the session's set-up). Each collar draws its own rand() as for FragDataBlockReceivedReq,
    under its own DataBlockIntKey, from the second it heard the request: in a v2.0.0 session and in a v1.0.0 one
    (SessionCnt 0) alike. Its loop wakes for the answer, which says what the collar holds then."""
    block_ack_delay = 2  # 0..64 s
    control = bytes([block_ack_delay])  # no AckReception: only the status answers go up
    heard, answered = [], []
    for i in range(6):
        root = bytes([0x11 * (i + 1)]) * 16
        c = collar()
        c.hal.radio.provision_root_key(root)
        v2 = i % 2 == 0
        setup = v2_setup_frame(0, mic=block_mic(0, 1, root=root), control=block_ack_delay) if v2 else \
            bytes.fromhex("02" "01" "2300" "70") + control + bytes.fromhex("4c" "01000000")
        c.hear(201, setup)
        for n in range(1, 4):
            c.hear(201, fragment(n))
        assert sent_at(c, 201, 600)[0][1] == "0200", "set up (its answer gone, the duty cycle free again)"
        t = c.hal.clock.now_s() + 7 * i  # the request reaches the collars in one window; each here on its own clock
        c.hal.clock.sleep_until(t)
        c.hear(201, status_request(0, 1), 0)
        due = t + drawn_delay_s(0, 1 if v2 else 0, block_ack_delay, root, t)
        answer = status_answer_v2(0, 3, 32) if v2 else status_answer(0, 3, 32)
        assert sent_at(c, 201, 120) == [(due, answer)], "sent when its drawn delay is over, not before"
        heard.append(t)
        answered.append(due - t)
    assert all(0 <= d < 64 for d in answered) and len(set(answered)) >= 5, f"spread over 64 s: {answered}"


def test_collars_still_missing_fragments_spread_their_answers_after_the_window_closes():
    """Issue 14: a collar still missing fragments when its Class C window closes tells the bridge unasked what it
    holds; every collar of the group closed its window at the same second (TS005's timeout), so their answers all
    went up then and collided on the air. Each now answers after its own draw, as for a multicast
    FragSessionStatusReq heard at that second: rand() * 2**(BlockAckDelay + 4) s, rand() under its own
    DataBlockIntKey from SessionCnt (0 in v1.0.0), FragIndex and the second the window closed."""
    block_ack_delay = 2  # 0..64 s
    closes = T0 + 3600 + 2048  # CLASS_C_SESSION: opens at T0 + 3600 for 2**11 s
    answered = []
    for i in range(5):
        root = bytes([0x21 * (i + 1)]) * 16
        c = collar()
        c.hal.radio.provision_root_key(root)
        c.hear(200, bytes.fromhex(CLASS_C_SESSION))
        c.hear(201, bytes.fromhex("02" "01" "2300" "70") + bytes([block_ack_delay]) + bytes.fromhex("4c" "01000000"))
        sent_at(c, 201, T0 + 3601 - c.hal.clock.now_s())
        assert c.hal.radio.class_c is not None, "its window is open"
        for n in range(1, 4):
            c.hear(201, fragment(n), 0)  # heard on the group in the window
        assert sent_at(c, 201, closes - c.hal.clock.now_s()) == [], "nothing said while the window is open"
        due = closes + drawn_delay_s(0, 0, block_ack_delay, root, closes)
        assert sent_at(c, 201, 70) == [(due, status_answer(0, 3, 32))], "sent when its own drawn delay is over"
        assert c.hal.radio.class_c is None, "back in Class A, its session kept for unicast"
        answered.append(due - closes)
    assert all(0 <= d < 64 for d in answered) and len(set(answered)) >= 4, f"spread over 64 s: {answered}"


def test_collar_answers_a_unicast_status_request_at_once():
    """A FragSessionStatusReq sent to the collar's own address (the bridge's question to one straggler) is answered in
    the uplink after it, whatever BlockAckDelay the set-up named (7 here: up to 2,048 s): TS004 spreads the answers
    of a group, a collar asked alone has no one to collide with."""
    c = collar()
    c.hear(201, bytes.fromhex("02" "01" "2300" "70" "07" "4c" "01000000"))
    c.hear(201, fragment(1))
    sent(c, 201, 600)
    t = c.hal.clock.now_s()
    c.hear(201, status_request(0, 0))
    assert sent_at(c, 201, 2) == [(t, status_answer(0, 1, 34))]


def rebooted(c, cause: str = "brownout"):
    """The collar's processor starts again from its flash (RAM lost), its LR1110 keeping its factory root key."""
    from collar_firmware.main import Collar

    c.hal.clock.cause = cause
    c.collar = Collar(c.hal, None, c.collar.trust)
    c.hal.radio.uplinks.clear()
    return c


def test_a_replayed_ts004_v2_setup_is_refused_after_a_reboot_even_when_the_power_tore_the_counters_write():
    """Until 6 December the last SessionCnt lived in RAM: after a reboot a replayed set-up with an old SessionCnt was
    taken as a new session. It is kept in flash now, in two copies written alternately, so a power cut tearing the
    newer copy as it is written leaves the older one, and that set-up (never answered) may still come."""
    c = collar()
    c.hear(201, v2_setup_frame(0, session_cnt=5))
    assert sent(c, 201) == ["0200"]
    rebooted(c, "power_on")
    assert sent(c, 201) == ["0104"], "the session it held is over (its fragments' bit set was in RAM)"
    c.hear(201, v2_setup_frame(1, session_cnt=5))
    assert sent(c, 201) == ["0250"], "SessionCnt 5 replayed after the reboot: SessionCnt replay (bit 4)"
    flash = c.flash
    write = flash.write

    def torn(key, data):
        if key.startswith("upd.cnt"):
            flash.records[key] = bytes(data)[:1]
            raise OSError("power cut")
        write(key, data)

    flash.write = torn
    c.hear(201, v2_setup_frame(1, session_cnt=6))  # the power goes as its SessionCnt is written: never answered
    del flash.write
    rebooted(c, "brownout")
    assert sent(c, 201) == []
    c.hear(201, v2_setup_frame(1, session_cnt=5))
    assert sent(c, 201) == ["0250"], "the older copy still holds 5"
    c.hear(201, v2_setup_frame(1, session_cnt=6))
    assert sent(c, 201) == ["0240"], "the set-up the power cut never answered is taken when it comes again"


def test_a_ts004_v2_block_that_failed_its_mic_still_says_so_after_a_reboot(monkeypatch):
    monkeypatch.setattr(update_install, "_check_image", lambda agent, now: None)
    c, _on_201, acks = whole_v2_session(2, bytes(4))
    assert acks == ["tampered"]
    rebooted(c, "watchdog")
    c.hear(201, status_request(2, 1))
    assert sent(c, 201) == [status_answer_v2(2, 35, 0, 0x02)], "MICError kept in the session's record"


def test_a_lost_block_received_report_is_sent_again_until_the_server_answers_and_never_more_than_four_times(
        monkeypatch):
    """TS004 v2.0.0 3.5: the end-device's application retransmits FragDataBlockReceivedReq until it hears
    FragDataBlockReceivedAns. The first report is lost: an hour later the collar says it again; the server's answer
    stops it. Unanswered, it stops after update_install.BLOCK_ACK_TRIES reports, an hour apart, each an uplink the
    scheduler's duty cycle paces."""
    monkeypatch.setattr(update_install, "_check_image", lambda agent, now: None)
    c, on_201, _acks = whole_v2_session(1)
    assert on_201 == ["0240", "0401"], "the first report (lost on its way)"
    assert sent(c, 201, 3000) == [], "not again before the hour"
    assert sent(c, 201, 900) == ["0401"], "said again an hour on"
    c.hear(201, bytes([0x04, 0x01]))  # FragDataBlockReceivedAns
    assert sent(c, 201, 86400) == [], "the server heard it: no more"
    c2, on_201, _acks = whole_v2_session(3)
    assert on_201 == ["02c0", "0403"]
    c2.hear(201, bytes([0x04, 0x02]))  # an answer for another FragIndex stops nothing
    later = sent(c2, 201, 2 * 86400)
    assert later == ["0403"] * (update_install.BLOCK_ACK_TRIES - 1), "bounded: four reports in all"


# TS004's BlockAckDelay (Control bits 2..0): the end-device answers after rand() * 2**(BlockAckDelay + 4) s, rand() in
# [0, 1] (LoRa Basics Modem's v2.0.0 package: a random 0..2**(BlockAckDelay + 4) s before FragDataBlockReceivedReq,
# LoRaMac-node and Zephyr's frag transport likewise). The collar's rand() is 16 bits its LR1110's engine enciphers
# under its own DataBlockIntKey: AES(key, 0x52 | SessionCnt (2) | FragIndex | t (4) | 0 (8))[0:2], little-endian, t 0
# before FragDataBlockReceivedReq, the second it heard it before the answer to a multicast FragSessionStatusReq.
def drawn_delay_s(index: int, session_cnt: int, block_ack_delay: int, root: bytes = ROOT_KEY, t: int = 0) -> int:
    enc = Cipher(algorithms.AES(root), modes.ECB()).encryptor()
    key = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    r = enc.update(bytes([0x52]) + session_cnt.to_bytes(2, "little") + bytes([index]) + t.to_bytes(4, "little")
                   + bytes(8)) + enc.finalize()
    return (int.from_bytes(r[:2], "little") << (block_ack_delay + 4)) >> 16


def rebuilt_v2_block(index: int, block_ack_delay: int, monkeypatch, root: bytes = ROOT_KEY) -> tuple:
    """A collar (radio holding root) given a v2.0.0 session asking for FragDataBlockReceivedReq with block_ack_delay
    and every data fragment, run until its MIC is checked (the image's own checks left out); return it and when."""
    checked = []
    monkeypatch.setattr(update_install, "_check_image", lambda agent, now: checked.append(now))
    c = collar()
    c.hal.radio.provision_root_key(root)
    c.hear(201, v2_setup_frame(index, mic=block_mic(index, 1, root=root), control=0x40 | block_ack_delay))
    for n in range(1, 36):
        c.hear(201, fragment(n, index=index))
    clock = c.hal.clock
    while not checked:
        clock.sleep_until(c.collar.step())
    return c, checked[0]


PACED_S = 30  # a report is queued when due and leaves when the duty cycle lets it (the set-up's answer went just before)


def at(sent_s: list[int], *due_s: int) -> bool:
    """True when each report left at its due time, or within the duty cycle's pacing after it."""
    return len(sent_s) == len(due_s) and all(d <= s <= d + PACED_S for s, d in zip(sent_s, due_s, strict=False))


def reports_sent(c, seconds: int) -> list[int]:
    """When the collar sent FragDataBlockReceivedReq over the next `seconds` of its loop."""
    clock = c.hal.clock
    end = clock.now_s() + seconds
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    out = [t for t, port, p, _c, _h in c.hal.radio.uplinks if port == 201 and p[0] == 0x04]
    c.hal.radio.uplinks.clear()
    return out


@pytest.mark.parametrize("block_ack_delay", [0, 4, 7])
def test_collar_waits_block_ack_delay_before_telling_server_block_rebuilt(block_ack_delay, monkeypatch):
    """Until 7 December the first FragDataBlockReceivedReq left as soon as the block's MIC was checked: a whole
    multicast group rebuilding the block on the same last fragment answered in the same instant. Now the collar waits
    its own random share of 2**(BlockAckDelay + 4) s (16 s for 0, 34 min for 7), then reports, an hour apart after."""
    index = 1
    window_s = 1 << (block_ack_delay + 4)
    delay = drawn_delay_s(index, 1, block_ack_delay)
    assert 0 <= delay < window_s
    c, checked_s = rebuilt_v2_block(index, block_ack_delay, monkeypatch)
    sent_s = reports_sent(c, window_s + 3600 + 60)
    assert at(sent_s, checked_s + delay, checked_s + delay + update.BLOCK_ACK_RETRY_S), \
        (sent_s, checked_s, delay, "the first report at its drawn delay (the loop wakes for it), the next an hour on")
    assert c.hal.radio.uplinks == []


def test_collars_of_one_group_draw_different_block_ack_delays(monkeypatch):
    """Each collar draws from its own key: collars rebuilding the same block together report at different times."""
    keys = [ROOT_KEY, bytes(range(16)), bytes(range(16, 32))]
    delays = {drawn_delay_s(2, 1, 7, root) for root in keys}
    assert len(delays) == len(keys)
    for root in keys[1:]:
        c, checked_s = rebuilt_v2_block(2, 7, monkeypatch, root)
        assert at(reports_sent(c, 2100), checked_s + drawn_delay_s(2, 1, 7, root))


def test_collar_still_tells_server_block_rebuilt_after_power_cut(monkeypatch):
    """Until 7 December the reports the server had not answered lived in RAM: a power cut before the first, or
    between repeats, and the collar never told the server its block arrived. What it owes is kept in flash now (two
    sealed copies written alternately), and goes on after the reboot where it was."""
    c, checked_s = rebuilt_v2_block(3, 7, monkeypatch)
    due_s = checked_s + drawn_delay_s(3, 1, 7)
    assert reports_sent(c, due_s - 5 - c.hal.clock.now_s()) == [], "still within its delay"
    rebooted(c, "power_on")  # the power goes before the first report
    assert at(reports_sent(c, 3600 + 60), due_s, due_s + update.BLOCK_ACK_RETRY_S), \
        "after the reboot, at the time it drew, then an hour on"
    rebooted(c, "brownout")  # and again between repeats: two reports owed still
    assert at(reports_sent(c, 3 * 3600), due_s + 2 * update.BLOCK_ACK_RETRY_S, due_s + 3 * update.BLOCK_ACK_RETRY_S)
    assert reports_sent(c, 86400) == [], "four in all, a reboot does not start them over"


def test_a_power_cut_tearing_the_owed_report_record_loses_no_report_and_an_answer_stays_heard(monkeypatch):
    """The power goes as the record of the first report is written (torn, the report never leaves): after the
    reboot the older copy still says four are owed, and they are sent; the server's answer is kept in flash too, so
    no reboot after it starts them again."""
    c, checked_s = rebuilt_v2_block(0, 4, monkeypatch)
    due_s = checked_s + drawn_delay_s(0, 1, 4)
    flash = c.flash
    write = flash.write

    def torn(key, data):
        if key.startswith("upd.ack"):
            flash.records[key] = bytes(data)[:3]
            raise PowerCut("power cut while writing " + key)
        write(key, data)

    flash.write = torn
    with pytest.raises(PowerCut):
        while c.hal.clock.now_s() <= due_s:
            c.hal.clock.sleep_until(c.collar.step())
    del flash.write
    assert reports_sent(c, 0) == [], "the report never left"
    rebooted(c, "power_on")
    assert len(reports_sent(c, 60)) == 1, "said at once after the reboot: it was due"
    c.hear(201, bytes([0x04, 0x00]))  # FragDataBlockReceivedAns
    rebooted(c, "watchdog")
    assert reports_sent(c, 86400) == [], "the answer was kept: nothing more is owed"
