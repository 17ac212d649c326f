"""Field technicians deliver to collars that speak TS004 v2.0.0: the bridge sets each up with SessionCnt and the
image's MIC under that collar's DataBlockIntKey, each collar checks the rebuilt block against it through its radio's
crypto engine and says so unasked (FragDataBlockReceivedReq), and the bridge counts it done on that word alone.

Frames checked against TS004 v2.0.0's layouts as LoRa Basics Modem's `lorawan_fragmentation_package_v2.0.0.c`
reads them: FragSessionSetupReq = 02 | FragSession | NbFrag (2) | FragSize | Control (AckReception bit 6) | Padding |
Descriptor (4) | SessionCnt (2) | MIC (4); MIC = AES-CMAC(aes128_encrypt(GenAppKey, 0x30 | pad16), 0x49 | SessionCnt
| FragIndex | Descriptor | 0 (4) | size (4) | block)[0:4], little-endian; FragDataBlockReceivedReq = 04 | RFU 5 |
MICError | FragIndex 2, its answer 04 | FragIndex. FragSessionStatusAns v2.0.0 (3.2) = 01 | Status (RFU 5 |
SessionDoesNotExist | MICError | MemoryError), then Received&index (2) and MissingFrag only when the session exists.
The MIC here is computed with `cryptography`, not Tembo's code.
"""

from __future__ import annotations

import bridge_builders as b
import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fuota_network import gen_app_key, write_key_file
from fuota_twin import KEYS_FOR, model_image
from test_fuota_multicast_setup import SecuredReserve, open_bridge, provisioned_fleet, tts  # noqa: F401

from collar_firmware import config, update_install
from lora_bridge.domain.fuota_delivery import SESSION_INDEX
from lora_bridge.updates import frag_v2
from simulator import fuota

V2_FIRMWARE = frag_v2.V2_SINCE  # the first firmware whose collars announce TS004 v2.0.0 (on a radio with an engine)


def spec_mic(root: bytes, session_cnt: int, index: int, descriptor: int, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(root), modes.ECB()).encryptor()
    key = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(bytes([0x49]) + session_cnt.to_bytes(2, "little") + bytes([index]) + descriptor.to_bytes(4, "little")
               + bytes(4) + len(block).to_bytes(4, "little") + block)
    return mac.finalize()[:4]


def test_collars_on_v2_firmware_are_set_up_in_ts004_v2_and_counted_done_when_they_say_their_block_arrived(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(config, "FW_VERSION", V2_FIRMWARE)  # the factory image the collars boot: v2's
    image, version = model_image()
    fleet = provisioned_fleet(2)
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        reserve = SecuredReserve(fleet, tts, 4, key_file)
        campaign = reserve.start(bridge, image, version)
        opens = campaign["delivery"]["window_opens"]
        reserve.run_until(int(opens.timestamp()) + 3 * 3600, step_s=600)
        campaign = bridge.campaigns()[0]

    for i, c in enumerate(fleet):
        setup = next(p["payload"] for p in tts.unicast if p["device"] == c.device_id
                     and p["f_port"] == 201 and p["payload"][0] == 0x02)
        assert len(setup) == 17, "v2.0.0's set-up: 16 bytes after its id"
        assert setup[1] == SESSION_INDEX << 4 | 0b0001 and setup[5] & 0x40, "FragIndex 1, group 0; AckReception"
        nb_frag, frag_size, padding = int.from_bytes(setup[2:4], "little"), setup[4], setup[6]
        descriptor, session_cnt = int.from_bytes(setup[7:11], "little"), int.from_bytes(setup[11:13], "little")
        assert nb_frag * frag_size - padding == len(image)
        assert session_cnt == campaign["id"]
        assert setup[13:17] == spec_mic(gen_app_key(i), session_cnt, SESSION_INDEX, descriptor, image)
        assert c.collar.model.version == version
        told = [p["payload"].hex() for p in tts.unicast if p["device"] == c.device_id and p["f_port"] == 201
                and p["payload"][0] == 0x04]
        assert told == [f"04{SESSION_INDEX:02x}"], \
            "FragDataBlockReceivedAns: the bridge heard the collar's FragDataBlockReceivedReq (MIC held)"
        assert campaign["delivery"]["collars"][c.device_id]["missing"] == 0


@pytest.mark.parametrize(("fw_version", "v2"), [("1.1.0", True), ("1.2.3", True), ("1.0.1", False),
                                                ("1.0.0", False), (None, False), ("1.1", False)])
def test_the_bridge_speaks_ts004_v2_only_to_firmware_that_announces_it(fw_version, v2):
    assert frag_v2.speaks_v2(fw_version) is v2


# FragSessionStatusAns as TS004 v2.0.0 3.2 lays it out (and LoRa Basics Modem's
# frag_construct_frag_session_status_answer writes it), every field set in turn
V2_STATUS = [
    ("0104", {"session_does_not_exist": 1, "mic_error": 0, "memory_error": 0, "session": []}),
    ("01002340ff", {"session_does_not_exist": 0, "mic_error": 0, "memory_error": 0,
                    "session": [{"received_and_index": 1 << 14 | 35, "missing": 255}]}),
    ("0102ffff00", {"session_does_not_exist": 0, "mic_error": 1, "memory_error": 0,
                    "session": [{"received_and_index": 0xFFFF, "missing": 0}]}),
    ("0101000000", {"session_does_not_exist": 0, "mic_error": 0, "memory_error": 1,
                    "session": [{"received_and_index": 0, "missing": 0}]}),
    ("01f8010000", {"rfu": 0x1F, "session_does_not_exist": 0, "session": [{"received_and_index": 1, "missing": 0}]}),
]


@pytest.mark.parametrize(("hex_", "fields"), V2_STATUS)
def test_a_v2_collars_status_answer_is_read_in_v2s_layout(hex_, fields):
    from collar_firmware import codec

    read = codec.decode(201, bytes.fromhex(hex_), "up", 2)
    assert read["message"] == "frag_session_status_ans"
    assert {k: read[k] for k in fields} == fields


@pytest.mark.parametrize("hex_", ["01", "010023", "01002340", "010023400000", "01042340", "0104234000"])
def test_a_v2_status_answer_cut_short_or_too_long_is_refused(hex_):
    """Status alone; counts cut short; a byte too many; counts after SessionDoesNotExist (where v2.0.0 has none)."""
    from collar_firmware import codec
    from lora_bridge.decode import decode_payload

    assert decode_payload(codec, 201, bytes.fromhex(hex_), 2).fields is None


def test_v2_answers_are_told_apart_in_one_uplink_by_the_version_the_session_speaks():
    """01 04 (no session: Status alone) then 03 05 (FragSessionDeleteAns: SessionDoesNotExist | FragIndex 1): in
    v2.0.0 two answers; read as v1.0.0, the 5-byte status answer is what the bytes cannot hold."""
    from collar_firmware import codec
    from lora_bridge.decode import decode_payload

    both = bytes.fromhex("0104" "0305")
    v2 = decode_payload(codec, 201, both, 2)
    assert [a["message"] for a in v2.answers] == ["frag_session_status_ans", "frag_session_delete_ans"]
    assert (v2.answers[0]["session_does_not_exist"], v2.answers[1]["frag_index"]) == (1, 1)
    assert "frag_session_status_ans: 4 bytes, expected 5" in (decode_payload(codec, 201, both).reason or "")


def _setups(network, device_id: str) -> list[bytes]:
    """The FragSessionSetupReqs the network server sent a collar, in order (v1.0.0's: 11 bytes; v2.0.0's: 17)."""
    return [p["payload"] for p in network.unicast if p["device"] == device_id and p["f_port"] == 201
            and p["payload"][0] == 0x02]


def _deliver(sqlite_url, network, tmp_path, without_crypto: frozenset[int], n: int = 2, after=None, **settings):
    """A campaign to n collars on firmware V2_FIRMWARE (those in without_crypto on the board's radio, which has no
    crypto engine), run until the window's rounds are over; after(bridge, reserve), if given, runs then: (fleet,
    campaign view, version). settings: more of the bridge's."""
    image, version = model_image()
    fleet = fuota.build_fleet(n, 0.0, 11, KEYS_FOR, without_crypto=without_crypto)
    for i, c in enumerate(fleet):
        c.hal.radio.provision(gen_app_key(i))
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    with open_bridge(sqlite_url, network, key_file, **settings) as bridge:
        reserve = SecuredReserve(fleet, network, 4, key_file)
        campaign = reserve.start(bridge, image, version)
        reserve.run_until(int(campaign["delivery"]["window_opens"].timestamp()) + 3 * 3600, step_s=600)
        if after is not None:
            after(bridge, reserve)
        return fleet, bridge.campaign(campaign["id"]), version


def _heard(bridge, reserve, device_id: str, port: int, payload: bytes) -> None:
    """One more uplink of the collar reaches the bridge and is processed."""
    reserve.f_cnt[device_id] += 1
    bridge.ingest_tts_uplink(b.tts_uplink((port, payload), device_id=device_id, f_cnt=reserve.f_cnt[device_id]))
    bridge.process_pending()


def test_a_collar_on_v2_firmware_whose_radio_has_no_crypto_engine_is_set_up_again_in_v1_and_updated(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """After the delivery, a status answer for no session (v2.0.0's 01 04) is read as the session each collar was
    set up in: "no session" from the collar on v2.0.0, cut short (a dead letter) from the one set up in v1.0.0."""
    monkeypatch.setattr(config, "FW_VERSION", V2_FIRMWARE)
    dead = {}

    def no_session_answers(bridge, reserve):
        for c in reserve.fleet:
            before = {d.dead_letter_id for d in bridge.dead_letters()}
            _heard(bridge, reserve, c.device_id, 201, bytes.fromhex("0104"))
            reasons = [d.reason for d in bridge.dead_letters() if d.dead_letter_id not in before]
            if reasons:
                dead[c.device_id] = reasons[0]

    fleet, campaign, version = _deliver(sqlite_url, tts, tmp_path, frozenset({0}), after=no_session_answers)
    bare, engine = fleet

    assert not hasattr(bare.hal.radio, "derive_key"), "an LR1110 whose crypto engine is not wired"
    assert [len(s) for s in _setups(tts, bare.device_id)] == [17, 11], "v2.0.0's set-up refused, then v1.0.0's"
    v1 = _setups(tts, bare.device_id)[1]
    assert frag_v2.descriptor(v1) == campaign["id"] and not v1[5] & frag_v2.ACK_RECEPTION, "the same delivery"
    assert bare.collar.model.version == version, "its update completed in v1.0.0"
    assert [e["event"] for e in campaign["history"] if e["device_id"] == bare.device_id].count("collar_setup_v1") == 1

    assert {len(s) for s in _setups(tts, engine.device_id)} == {17}, "a collar with the engine stays on v2.0.0"
    assert engine.collar.model.version == version
    assert not [e for e in campaign["history"] if e["device_id"] == engine.device_id
                and e["event"] == "collar_setup_v1"]
    states = {c["device_id"]: c["state"] for c in campaign["collars"]}
    assert states[bare.device_id] == states[engine.device_id] != "failed"
    assert engine.device_id not in dead, "v2.0.0's no-session answer, read as such"
    assert "frag_session_status_ans: 2 bytes, expected 5" in dead[bare.device_id], "v1.0.0's 5-byte layout"


def test_a_collar_that_refuses_the_v1_set_up_too_is_failed_with_its_reason_not_set_up_again(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(config, "FW_VERSION", V2_FIRMWARE)
    monkeypatch.setattr(update_install, "MAX_IMAGE_BYTES", 64)  # its slot holds no image this size
    fleet, campaign, version = _deliver(sqlite_url, tts, tmp_path, frozenset({0}), n=1)
    (bare,) = fleet

    assert [len(s) for s in _setups(tts, bare.device_id)] == [17, 11], "one v1.0.0 set-up after v2.0.0's, no more"
    (collar,) = campaign["collars"]
    assert (collar["state"], collar["reason"]) == ("failed", "set-up refused: NotEnoughMemory")
    assert bare.collar.model.version != version


def test_the_real_firmware_under_micropython_on_the_boards_radio_refuses_v2_as_the_bridge_expects_and_takes_v1():
    """What the bridge's fall-back rests on, under the real MicroPython: a collar whose radio has no crypto calls
    (hal_sim.SimModem, the board's LR1110 driver) announces PackageVersion 1 (00 03 01), answers a whole TS004
    v2.0.0 set-up of FragIndex 1 EncodingUnsupported under that index (02 41), holds no session, and takes the
    v1.0.0 set-up that follows (02 40)."""
    from test_collar_update_micropython import FRAG_SIZE, GuestCollar, on_201, spec_setup, spec_setup_v2

    from lora_bridge.updates.fec import fragment

    frags = fragment(bytes(range(256)) * 4, FRAG_SIZE)
    collar = GuestCollar()
    try:
        collar.run("from simulator.hal_sim import SimModem\nr = run.hal.radio\n"
                   "run.hal.radio = SimModem(r.clock, sf=r.sf, bw_khz=r.bw_khz, coverage=r.coverage)")
        assert collar.value("hasattr(run.hal.radio, 'derive_key')") == "False"
        collar.hear([(201, b"\x00"), (201, spec_setup_v2(1, frags, 7, bytes(4)))])
        collar.live(120)
        assert collar.value("run.collar.update.receiving()") == "False"
        collar.hear([(201, spec_setup(1, frags))])
        collar.live(120)
        assert on_201(collar) == ["000301", "0241", "0240"]
        assert collar.value("run.collar.update.receiving()") == "True"
    finally:
        collar.close()
