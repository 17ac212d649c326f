"""Field technicians give the bridge each collar's root key once; it sets up the fleet's multicast group
itself (TS005 McGroupSetupReq), and a collar holding another key never opens the group's frames.

The expected bytes are derived in this file from the text of the LoRa Alliance Remote Multicast Setup
specification v1.0.0, section 4.3 (as LoRaMac-node LoRaMacCrypto.c and the Rust `lorawan` crate
implement it): McRootKey = aes128_encrypt(GenAppKey, 0x00 | pad16) on LoRaWAN 1.0.x and
aes128_encrypt(AppKey, 0x20 | pad16) on 1.1; McKEKey = aes128_encrypt(McRootKey, 0x00 | pad16);
the device computes McKey = aes128_encrypt(McKEKey, McKey_encrypted), so the server sends
aes128_decrypt(McKEKey, McKey); McAppSKey = aes128_encrypt(McKey, 0x01 | McAddr | pad16) and
McNwkSKey with 0x02, McAddr little-endian. The AES block itself is pinned to FIPS-197 appendix C.1.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from collar_firmware import codec, multicast
from lora_bridge.updates import multicast_keys as mk
from simulator.hal_sim import SimClock, SimFlash, SimRadio
from simulator.lorawan_frames import secure_downlink

GEN_APP_KEY_A = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
GEN_APP_KEY_B = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
ROOT = bytes.fromhex("603deb1015ca71be2b73aef0857d7781")
EUI_A = "70b3d57ed0000001"
EUI_B = "70b3d57ed0000002"
MC_ADDR = 0x01FF0A42


def aes(key: bytes, block: bytes) -> bytes:
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def aes_inverse(key: bytes, block: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return d.update(block) + d.finalize()


def spec_ke_key(root_key: bytes, first_byte: int) -> bytes:
    mc_root = aes(root_key, bytes([first_byte]) + b"\x00" * 15)
    return aes(mc_root, b"\x00" * 16)


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "collar-keys.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def good_file(tmp_path: Path) -> Path:
    return key_file(tmp_path, f'multicast_root = "{ROOT.hex()}"\n'
                              f'[collars.{EUI_A}]\ngen_app_key = "{GEN_APP_KEY_A.hex()}"\n'
                              f'[collars.{EUI_B.upper()}]\napp_key = "{GEN_APP_KEY_B.hex()}"\n')


def test_the_aes_block_under_every_derivation_is_fips_197():
    assert aes(GEN_APP_KEY_B, bytes.fromhex("00112233445566778899aabbccddeeff")).hex() == \
        "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_a_collars_mc_ke_key_and_wrapped_group_key_match_the_spec_text(tmp_path):
    ring = mk.load(good_file(tmp_path))
    group = ring.group(MC_ADDR, "campaign-7")
    # LoRaWAN 1.0.x collar (GenAppKey) and 1.1 collar (AppKey, 0x20)
    for eui, root_key, first in ((EUI_A, GEN_APP_KEY_A, 0x00), (EUI_B, GEN_APP_KEY_B, 0x20)):
        ke_key = spec_ke_key(root_key, first)
        wrapped = ring.wrapped_for(eui, group)
        assert wrapped == aes_inverse(ke_key, group.mc_key)
        assert aes(ke_key, wrapped) == group.mc_key  # what the collar's stack computes
    addr = struct.pack("<I", MC_ADDR)
    assert group.app_s_key == aes(group.mc_key, b"\x01" + addr + bytes(11))
    assert group.nwk_s_key == aes(group.mc_key, b"\x02" + addr + bytes(11))
    assert mk.mc_root_key(GEN_APP_KEY_A) != mk.mc_root_key(GEN_APP_KEY_A, lorawan_1_1=True)


def test_the_group_key_is_the_same_after_a_restart_and_differs_per_delivery(tmp_path):
    path = good_file(tmp_path)
    first = mk.load(path).group(MC_ADDR, "campaign-7")
    assert mk.load(path).group(MC_ADDR, "campaign-7").mc_key == first.mc_key
    assert mk.load(path).group(MC_ADDR, "campaign-8").mc_key != first.mc_key
    assert mk.load(path).group(MC_ADDR + 1, "campaign-7").mc_key != first.mc_key


def test_mc_group_setup_carries_the_wrapped_key_in_the_spec_layout(tmp_path):
    ring = mk.load(good_file(tmp_path))
    group = ring.group(MC_ADDR, "campaign-7")
    wrapped = ring.wrapped_for(EUI_A, group)
    frame = codec.encode("mc_group_setup", {"group": 0, "mc_addr": MC_ADDR, **mk.key_words(wrapped),
                                            "min_mc_fcount": 0, "max_mc_fcount": 0xFFFF})
    # CID 0x02 | McGroupIDHeader | McAddr (LE) | McKey_encrypted (16) | minMcFCount (LE) | maxMcFCount (LE)
    assert frame == b"\x02" + b"\x00" + bytes([0x42, 0x0A, 0xFF, 0x01]) + wrapped + bytes(4) + b"\xff\xff\x00\x00"


def collar_radio(gen_app_key: bytes) -> tuple[multicast.Multicast, SimRadio]:
    clock = SimClock(1_772_323_200)
    radio = SimRadio(clock, gen_app_key=gen_app_key)
    return multicast.Multicast(radio, SimFlash()), radio


def test_only_the_collar_whose_key_wrapped_the_group_key_opens_the_groups_frames(tmp_path):
    ring = mk.load(good_file(tmp_path))
    group = ring.group(MC_ADDR, "campaign-7")
    setup = codec.encode("mc_group_setup", {"group": 1, "mc_addr": MC_ADDR, **mk.key_words(ring.wrapped_for(EUI_A, group)),
                                            "min_mc_fcount": 0, "max_mc_fcount": 100})
    right, right_radio = collar_radio(GEN_APP_KEY_A)
    wrong, wrong_radio = collar_radio(GEN_APP_KEY_B)  # a collar given the wrong root key
    for mc, radio in ((right, right_radio), (wrong, wrong_radio)):
        msg = codec.decode(200, setup, "down")
        assert mc.handle(msg["message"], msg, 0) == ("mc_group_setup_ans", {"status": 1})
        radio.set_class_c(869_525_000, 3)
    fragment = bytes(range(40))
    phy = secure_downlink(MC_ADDR, 5, 201, fragment, group.app_s_key, group.nwk_s_key)
    assert right_radio.hear_multicast(phy, 5) == (201, fragment, 1)  # heard on group 1, the one set up
    assert wrong_radio.hear_multicast(phy, 5) is None and wrong_radio.dropped_multicast == 1
    assert right_radio.hear_multicast(phy, 5) is None  # the same counter again: a replay
    late = secure_downlink(MC_ADDR, 101, 201, fragment, group.app_s_key, group.nwk_s_key)
    assert right_radio.hear_multicast(late, 101) is None  # beyond maxMcFCount
    tampered = bytearray(secure_downlink(MC_ADDR, 6, 201, fragment, group.app_s_key, group.nwk_s_key))
    tampered[12] ^= 1
    assert right_radio.hear_multicast(bytes(tampered), 6) is None
    right_radio.set_class_a()
    assert right_radio.hear_multicast(secure_downlink(MC_ADDR, 7, 201, fragment, group.app_s_key,
                                                      group.nwk_s_key), 7) is None  # window closed


@pytest.mark.parametrize(("text", "mode", "says"), [
    (None, 0o600, "no such"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = '{key}'\n", 0o644, "chmod 600"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = '{key}'\n", 0o640, "chmod 600"),
    ("multicast_root = '{root}\n", 0o600, "not TOML"),
    ("[collars.{eui}]\ngen_app_key = '{key}'\n", 0o600, "multicast_root"),
    ("multicast_root = '{zero}'\n[collars.{eui}]\ngen_app_key = '{key}'\n", 0o600, "all-zero"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = '{zero}'\n", 0o600, "all-zero"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = 'abcd'\n", 0o600, "16 bytes"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = 'zz{key}'\n", 0o600, "not hex"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = 12\n", 0o600, "32 hex"),
    ("multicast_root = '{root}'\n[collars.70b3]\ngen_app_key = '{key}'\n", 0o600, "DevEUI"),
    ("multicast_root = '{root}'\n[collars.{eui}]\ngen_app_key = '{key}'\napp_key = '{key}'\n", 0o600, "exactly one"),
    ("multicast_root = '{root}'\n[collars.{eui}]\nnwk_key = '{key}'\n", 0o600, "exactly one"),
    ("multicast_root = '{root}'\n", 0o600, "[collars]"),
    ("multicast_root = '{root}'\nmc_key = '{key}'\n[collars.{eui}]\ngen_app_key = '{key}'\n", 0o600, "unknown"),
])
def test_a_broken_or_exposed_key_file_is_refused_with_its_reason(tmp_path, text, mode, says):
    if text is None:
        path = tmp_path / "absent.toml"
    else:
        path = key_file(tmp_path, text.format(root=ROOT.hex(), eui=EUI_A, key=GEN_APP_KEY_A.hex(), zero="00" * 16), mode)
    with pytest.raises(mk.CollarKeyError, match=says.replace("[", r"\[").replace("]", r"\]")):
        mk.load(path)


def test_no_key_file_means_no_multicast_set_up_not_a_default_key():
    for unset in (None, ""):
        with pytest.raises(mk.CollarKeyError, match="TEMBO_COLLAR_KEYS_FILE"):
            mk.load(unset)


def test_a_collar_missing_from_the_key_file_is_named_and_bad_addresses_refused(tmp_path):
    ring = mk.load(good_file(tmp_path))
    group = ring.group(MC_ADDR, "campaign-7")
    assert ring.knows(EUI_B) and ring.knows(EUI_A.upper()) and not ring.knows("70b3d57ed00000ff") and not ring.knows(None)
    with pytest.raises(mk.CollarKeyError, match="70b3d57ed00000ff"):
        ring.wrapped_for("70b3d57ed00000ff", group)
    for addr in (0, 1 << 32, -1):
        with pytest.raises(mk.CollarKeyError, match="multicast address"):
            ring.group(addr, "campaign-7")


def test_technician_who_pasted_a_dev_eui_as_the_console_shows_it_gets_that_collar_its_group_key(tmp_path):
    spaced = " ".join(EUI_A.upper()[i:i + 2] for i in range(0, 16, 2))  # "70 B3 D5 7E D0 00 00 01"
    ring = mk.load(key_file(tmp_path, f'multicast_root = "{ROOT.hex()}"\n'
                                      f'[collars."{spaced}"]\ngen_app_key = "{GEN_APP_KEY_A.hex()}"\n'))
    group = ring.group(MC_ADDR, "campaign-7")
    assert ring.knows(EUI_A), "the collar the network server names 70b3d57ed0000001 is the one in the file"
    assert ring.wrapped_for(EUI_A, group) == mk.wrap_mc_key(spec_ke_key(GEN_APP_KEY_A, 0x00), group.mc_key)


def test_technician_whose_key_file_lists_a_collar_twice_is_told_so_not_given_one_key_of_the_two(tmp_path):
    text = (f'multicast_root = "{ROOT.hex()}"\n[collars.{EUI_A}]\ngen_app_key = "{GEN_APP_KEY_A.hex()}"\n'
            f'[collars.{EUI_A.upper()}]\ngen_app_key = "{GEN_APP_KEY_B.hex()}"\n')
    with pytest.raises(mk.CollarKeyError, match=f"collar {EUI_A.upper()}: that DevEUI is listed twice"):
        mk.load(key_file(tmp_path, text))


def test_keys_never_show_in_reprs_or_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ring = mk.load(good_file(tmp_path))
    group = ring.group(MC_ADDR, "campaign-7")
    shown = repr(ring) + repr(group) + str(ring) + str(group) + caplog.text
    for secret in (ROOT, GEN_APP_KEY_A, GEN_APP_KEY_B, group.mc_key, group.app_s_key, group.nwk_s_key):
        assert secret.hex() not in shown.lower()
    assert "collars=2" in repr(ring) and "01ff0a42" in repr(group)
