"""A field technician's collars meet an unlucky or hostile world: downlinks nobody meant, values no wire carries.

Each story is one frame (or a few) a collar could hear from a confused network server, a replayed downlink or a
bridge bug; what it must do is keep its duty cycle, change nothing it cannot stand behind, and say why on port 31.
"""

from __future__ import annotations

import struct

import pytest

from collar_firmware import codec
from simulator import fuota

# McClassCSessionReq for group 0 an hour after the twin's start (2**11 s, 869.525 MHz, DR3): the collar asks the
# time (TS003 AppTimeReq) so its window opens with the fleet's (bytes as tests/test_collar_multicast.py writes them)
CLASS_C_SESSION_REQ = bytes.fromhex("04" "00" "2252ce56" "0b" "d2ad84" "03")
APP_TIME_CID = codec.tag_of("app_time_ans")


def collar() -> fuota.FleetCollar:
    c = fuota.build_fleet(1, 0.0, 11)[0]
    c.hal.radio.uplinks.clear()
    return c


def live(c: fuota.FleetCollar, seconds: int) -> list[tuple[int, bytes]]:
    """Run the collar's loop for seconds; return (port, payload) of every uplink it sent meanwhile."""
    clock = c.hal.clock
    end = clock.now_s() + seconds
    while clock.now_s() < end:
        clock.sleep_until(min(c.collar.step(), end))
    sent = [(port, payload) for _t, port, payload, _c, _h in c.hal.radio.uplinks]
    c.hal.radio.uplinks.clear()
    return sent


def app_time_ans(correction_s: int, token: int) -> bytes:
    """TS003 AppTimeAns: TimeCorrection (signed s) and Param (RFU 4 bits | TokenAns 4 bits)."""
    return bytes([APP_TIME_CID]) + struct.pack("<iB", correction_s, token)


def asked_token(c: fuota.FleetCollar) -> int:
    """Set up a Class C session; return the TokenReq of the AppTimeReq the collar sends for it."""
    c.hear(200, CLASS_C_SESSION_REQ)
    (request,) = [payload for port, payload in live(c, 60) if port == 202]
    return codec.decode(202, request, "up")["token"]


def test_a_clock_answer_to_no_request_of_the_collars_never_moves_its_clock():
    """TS003: an AppTimeAns answers the collar's last AppTimeReq. Until this check a collar that had heard any
    port-200 frame took an AppTimeAns of token 0 that it never asked for, and after an answer the next token too."""
    c = collar()
    c.hear(200, bytes([codec.tag_of("mc_package_version")]))  # the multicast package is loaded, no time asked
    before = c.hal.clock.now_s()
    c.hear(202, app_time_ans(-3600, 0))
    assert c.hal.clock.now_s() == before, "no AppTimeReq was sent: nothing to correct"
    token = asked_token(c)
    asked = c.hal.clock.now_s()
    c.hear(202, app_time_ans(5, token))
    after = c.hal.clock.now_s()
    assert after == asked + 5, "the answer to its own request sets the clock"
    for again in (token, (token + 1) & 0x0F):
        c.hear(202, app_time_ans(-3600, again))  # the same answer again, or the token the collar would ask next
        assert c.hal.clock.now_s() == after, "answered once: nothing more to correct"


def test_a_clock_correction_no_uplink_could_carry_is_refused_on_port_31_and_the_collar_keeps_reporting():
    """A correction of -2**31 s set the collar's clock to 1958: every uplink after it failed to encode its
    time (u32 Unix seconds), so the collar fell silent for good, even the AppTimeReq that could have put it right.
    The corrected time must be one the wire carries (GPS time, u32 Unix seconds): otherwise the collar's clock
    stays, the answer is refused as out_of_range on port 31, and a good answer to the same request is still taken."""
    c = collar()
    token = asked_token(c)
    before = c.hal.clock.now_s()
    for correction_s in (-2**31, codec.GPS_EPOCH_UNIX_S - before - 1):  # 1958, and a second before GPS time began
        c.hear(202, app_time_ans(correction_s, token))
    assert c.hal.clock.now_s() == before, "the clock stays where it was"
    sent = live(c, 6 * 3600)
    acks = [codec.decode(port, payload) for port, payload in sent if port == codec.port_of("ack")]
    assert [(a["on_port"], a["cmd"], a["result"]) for a in acks] == [(202, APP_TIME_CID, "out_of_range")] * 2
    assert any(codec.decode(port, payload)["message"] == "status" for port, payload in sent), "still reporting"
    now = c.hal.clock.now_s()
    c.hear(202, app_time_ans(-30, token))
    assert c.hal.clock.now_s() == now - 30, "the request still waits for its answer"


@pytest.mark.micropython
def test_a_clock_correction_to_1958_is_refused_under_micropython_and_the_collar_keeps_reporting():
    from test_collar_update_micropython import GuestCollar

    guest = GuestCollar()
    try:
        guest.hear([(200, CLASS_C_SESSION_REQ)])
        guest.live(60)
        (request,) = [m for m in guest.uplinks if m["message"] == "app_time_req"]
        before = guest.now_s()
        guest.hear([(202, app_time_ans(0, (request["token"] + 1) & 0x0F)), (202, app_time_ans(-2**31, request["token"]))])
        assert guest.now_s() == before, "neither an answer to no request nor 1958 moves the clock"
        guest.live(6 * 3600)
        acks = [(m["cmd"], m["result"]) for m in guest.uplinks if m["message"] == "ack" and m["on_port"] == 202]
        assert acks == [(APP_TIME_CID, "out_of_range")]
        assert any(m["message"] == "status" for m in guest.uplinks), "still reporting"
    finally:
        guest.close()


def setup_req(nb_frag: int, frag_size: int, padding: int) -> bytes:
    """TS004 v1.0.0 FragSessionSetupReq for FragIndex 0, group 0: FragSession, NbFrag, FragSize, Control, Padding,
    Descriptor (written byte by byte, not with Tembo's encoder)."""
    return bytes([codec.tag_of("frag_session_setup"), 0x01]) + struct.pack("<HBBBI", nb_frag, frag_size, 0, padding, 0)


@pytest.mark.parametrize(("nb_frag", "frag_size", "padding", "reason"), [
    (0, 48, 0, "malformed"),  # a file of no fragments
    (10, 0, 0, "malformed"),  # fragments of no bytes
    (10, 48, 48, "malformed"),  # padding of a whole fragment or more: the last one carries nothing
    (2000, 48, 0, "too_large"),  # 96,000 bytes in more fragments than the collar keeps track of
    (1000, 240, 0, "too_large"),  # 240,000 bytes: more than its slot holds
])
def test_a_fragmentation_set_up_the_collar_cannot_take_is_acknowledged_with_the_reason_it_was_refused(
        nb_frag, frag_size, padding, reason):
    """A set-up with nothing in it is not one too large for the collar: until this check every refused set-up was
    acknowledged `too_large`, and a technician reading "too large" for a file of no fragments looked for a size
    problem in an image that had none. TS004's answer says the collar took no session either way."""
    c = collar()
    c.hear(201, setup_req(nb_frag, frag_size, padding))
    sent = live(c, 120)
    (answer,) = [codec.decode(port, payload) for port, payload in sent if port == 201]
    assert answer["message"] == "frag_session_setup_ans" and answer["status"] & 0x0F, "no session taken"
    acks = [codec.decode(port, payload) for port, payload in sent if port == codec.port_of("ack")]
    assert [(a["on_port"], a["result"]) for a in acks] == [(201, reason)]
    assert c.collar.update.state == 0 and c.collar.error_total() == 0


KEY, KEYS_FOR = fuota.bench_keys()


def new_model_image() -> bytes:
    """The update image of the shipped model retrained as version 2, signed with a key the collars hold."""
    from collar_firmware import config
    from lora_bridge.updates import release

    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    return release.model_image(blob, KEY, config.HARDWARE_ID)


def power_fails_writing(c: fuota.FleetCollar, key: str, keep: int | None) -> None:
    """The power goes during the first write of record `key`, which keeps `keep` bytes (None: it is written whole
    and the power goes during the write after it)."""
    from simulator.hal_sim import PowerCut

    flash = c.flash
    write = flash.write
    armed = [False]

    def torn(k: str, data: bytes) -> None:
        if armed[0]:
            raise PowerCut("power cut after writing " + key)
        if k == key:
            if keep is None:
                write(k, data)
                armed[0] = True
                return
            flash.records[k] = bytes(data)[:keep]
            raise PowerCut("power cut while writing " + key)
        write(k, data)

    flash.write = torn


def update_cut_by_the_power(c: fuota.FleetCollar, image: bytes) -> None:
    """Send the whole image; the collar checks it and installs it until the power goes; then it boots again."""
    from collar_firmware.main import Collar
    from simulator.hal_sim import PowerCut

    frags = fuota.fragment(image, 112)
    with pytest.raises(PowerCut):
        for port, payload in fuota._setup_frames(frags, c.hal.clock.now_s()):
            c.hear(port, payload)
        for n in range(1, frags.nb_frag + 1):
            c.hear(201, fuota._fragment_frame(frags, n))
        c.live_until(c.hal.clock.now_s() + 6 * 3600)
    del c.flash.write  # the power is back: the flash takes writes again
    c.hal.clock.cause = "power_on"
    c.collar = Collar(c.hal, None, KEYS_FOR(c.flash))
    c.hal.radio.uplinks.clear()


@pytest.mark.parametrize("keep", [0, 9, None], ids=["empty", "torn", "whole"])
def test_a_power_cut_while_a_model_is_installed_puts_back_the_model_it_ran_and_says_so(keep):
    """The power goes while the collar writes a verified model over its own (the record left empty, torn after
    9 bytes, or written whole with the power gone before its trial). Until this check it came back saying nothing:
    a torn record left it on its shipped model flagged as a fallback for good, with no outcome acknowledged, so the
    campaign waited for a collar that would never answer; a record written whole ran the new model without its
    golden-vector trial. Now the install is named in flash before the model is written: after the boot the collar
    puts back the model it ran, acknowledges `truncated` and reports it in status, and the campaign sends it again."""
    c = fuota.build_fleet(1, 0.0, 7, KEYS_FOR)[0]
    power_fails_writing(c, "model", keep)
    update_cut_by_the_power(c, new_model_image())
    sent = live(c, 6 * 3600)
    acks = [codec.decode(port, payload) for port, payload in sent if port == codec.port_of("ack")]
    assert [a["result"] for a in acks if a["on_port"] == 201] == ["truncated"]
    assert c.collar.model.version == 1 and not c.collar.model_fallback, "the model it ran, not a fallback"
    status = c.collar.status_values(c.hal.clock.now_s())
    assert codec.ACK_RESULTS[status["update_reason"]] == "truncated"
    c.collar = type(c.collar)(c.hal, None, KEYS_FOR(c.flash))  # and again after another boot: the same, settled
    assert c.collar.model.version == 1 and not c.collar.model_fallback and c.collar.update.state == 0
    image = new_model_image()
    assert fuota.run_campaign([c], image, 1).results[c.device_id] == "ok", "sent again, it installs"
    assert c.collar.model.version == 2
