"""The collar checks a TS004 v2.0.0 data block's MIC with keys only its radio holds: AES-CMAC chained a block at a time
through the LR1110 crypto engine's AES (the simulated engine, plain Python so it also runs under MicroPython)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from collar_firmware import update_install
from simulator.crypto_engine import CryptoEngine
from simulator.hal_sim import SimClock, SimRadio

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_M = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                          "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")


def radio_with_key(key: bytes) -> SimRadio:
    radio = SimRadio(SimClock(0))
    radio._engine().set_key("k", key)
    return radio


@pytest.mark.parametrize(("length", "tag"), [
    (0, "bb1d6929e95937287fa37d129b756746"), (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"), (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_the_collars_cmac_through_the_radio_matches_rfc_4493(length, tag):
    mac = update_install.Cmac(radio_with_key(RFC4493_KEY), "k", length)
    message = RFC4493_M[:length]
    for i in range(0, length, 7):  # handed in shares, as the wake-ups do
        mac.update(message[i:i + 7])
    assert mac.mic() == int.from_bytes(bytes.fromhex(tag)[:4], "little")


def test_the_engine_enciphers_as_aes_does_and_derives_data_block_int_key_without_showing_it():
    engine = CryptoEngine()
    key, block = os.urandom(16), os.urandom(16)
    engine.set_key("app_key", key)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    assert engine.aes_encrypt("app_key", block) == enc.update(block) + enc.finalize()
    radio = SimRadio(SimClock(0))
    radio.provision_root_key(key)
    assert update_install._mic_ready(type("Agent", (), {"collar": type("C", (), {"hal": type("H", (), {"radio": radio})})})())
    data = os.urandom(1000)
    mac = update_install.Cmac(radio, "data_block_int_key", len(data))
    mac.update(data)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    derived = enc.update(bytes([0x30]) + bytes(15)) + enc.finalize()
    want = cmac.CMAC(algorithms.AES(derived))
    want.update(data)
    assert mac.mic() == int.from_bytes(want.finalize()[:4], "little")
    assert not any(derived in bytes(v) for v in vars(radio).values() if isinstance(v, (bytes, bytearray)))


@pytest.mark.parametrize("data", [b"", bytes(15), bytes(272)])
def test_the_engine_refuses_what_is_not_whole_blocks_and_a_key_it_does_not_hold(data):
    engine = CryptoEngine()
    engine.set_key("k", RFC4493_KEY)
    with pytest.raises(OSError):
        engine.aes_encrypt("k", data)
    with pytest.raises(OSError):
        engine.derive_key("absent", "x", bytes(16))
