"""A collar on the real board checks a TS004 v2.0.0 data block's MIC through its LR1110's crypto engine.

The stand-in chip below reads and answers byte frames as Semtech's SWDR001 LR11xx driver lays them out
(lr11xx_crypto_engine.c, lr11xx_hal_read; lr11xx_crypto_engine_types.h), never Tembo's own code: a command is
written with NSS low (opcode u16 big-endian, its arguments), then, BUSY low, the answer is clocked out with NOPs
(0x00) in a second NSS-low transfer: Stat1, the crypto status (0x00 success, 0x03 invalid key id), the data.
DeriveKey 0x0503 = source key id, destination key id, nonce (16); AesEncrypt01 0x0507 = key id, data (16..256).
Key ids (lr11xx_crypto_keys_idx_t): APP_KEY 3, GP1 27. AES from `cryptography`.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from driver_fakes import FakeClock, FakeMachine, FakeModem, FakePin, FakeTime, FakeUart

from collar_firmware import update_install
from collar_firmware.hal.board import Lr1110CryptoModem, Lr1110Modem, make_board_hal

ROOT_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # RFC 4493's example key as the collar's root key


def aes(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


class StandInLr1110:
    """The LR1110's SPI side: NSS and BUSY pins, a key table by id, the two crypto commands."""

    def __init__(self, busy_polls: int = 0) -> None:
        self.nss = FakePin("nss", value=1)
        self.busy = FakePin("busy", value=0)
        self.busy_polls = busy_polls  # reads of BUSY that say busy before it goes low
        self.keys = {3: ROOT_KEY}
        self.frames: list[bytes] = []  # every command as written
        self.reads: list[int] = []  # the length of every answer clocked out
        self._status, self._data = 0, b""
        chip = self

        class Busy(FakePin):
            def value(self, v=None):
                if chip.busy_polls:
                    chip.busy_polls -= 1
                    return 1
                return 0

        self.busy = Busy("busy")

    def write(self, buf) -> None:
        assert self.nss.value() == 0, "a command goes with NSS low"
        frame = bytes(buf)
        self.frames.append(frame)
        opcode = frame[0] << 8 | frame[1]
        if opcode == 0x0503 and len(frame) == 20:
            if frame[2] in self.keys:
                self.keys[frame[3]] = aes(self.keys[frame[2]], frame[4:20])
                self._status, self._data = 0x00, b""
            else:
                self._status, self._data = 0x03, b""
        elif opcode == 0x0507 and (len(frame) - 3) % 16 == 0:
            key = self.keys.get(frame[2])
            self._status, self._data = (0x03, b"") if key is None else (0x00, aes(key, frame[3:]))
        else:
            self._status, self._data = 0x06, b""

    def readinto(self, buf, write: int = 0) -> None:
        assert self.nss.value() == 0 and write == 0x00, "the answer is clocked out with NOPs, NSS low"
        self.reads.append(len(buf))
        answer = bytes([0x04, self._status]) + self._data  # Stat1 (what the driver skips), status, data
        buf[:] = (answer + bytes(len(buf)))[:len(buf)]


def engine(chip: StandInLr1110) -> Lr1110CryptoModem:
    return Lr1110CryptoModem(FakeModem(), chip, chip.nss, chip.busy)


def test_the_board_derives_the_data_block_key_inside_the_lr1110_with_semtechs_derive_key_frame():
    chip = StandInLr1110()
    radio = engine(chip)
    radio.derive_key("app_key", "data_block_int_key", b"\x30" + bytes(15))
    assert chip.frames == [bytes.fromhex("0503" "03" "1b" "30" + "00" * 15)]
    assert chip.reads == [2], "Stat1 and the status"
    assert chip.keys[27] == aes(ROOT_KEY, b"\x30" + bytes(15))
    assert chip.nss.values[-1] == 1, "NSS back high"


def test_the_board_enciphers_blocks_with_semtechs_aes_encrypt_01_frame():
    chip = StandInLr1110()
    block = bytes(range(32))
    assert engine(chip).aes_encrypt("app_key", block) == aes(ROOT_KEY, block)
    assert chip.frames == [bytes.fromhex("0507" "03") + block] and chip.reads == [2 + 32]


def test_a_v2_data_block_mic_computed_through_the_board_lr1110_is_the_specs():
    """The collar's CMAC (update_install.Cmac, a block at a time through the engine) over B0 and a 300-byte block,
    against AES-CMAC computed by `cryptography` with DataBlockIntKey = AES(root, 0x30 | pad16)."""
    chip = StandInLr1110(busy_polls=3)
    radio = engine(chip)
    radio.derive_key("app_key", "data_block_int_key", b"\x30" + bytes(15))
    data = bytes(range(256)) + bytes(44)
    mac = update_install.Cmac(radio, "data_block_int_key", len(data))
    mac.update(data[:100])
    mac.update(data[100:])
    spec = cmac.CMAC(algorithms.AES(aes(ROOT_KEY, b"\x30" + bytes(15))))
    spec.update(data)
    assert mac.mic().to_bytes(4, "little") == spec.finalize()[:4]


def test_a_refused_or_stuck_crypto_command_is_an_oserror_and_bad_data_a_valueerror():
    chip = StandInLr1110()
    radio = engine(chip)
    with pytest.raises(OSError, match="status 3"):
        radio.aes_encrypt("data_block_int_key", bytes(16))  # never derived: invalid key id
    with pytest.raises(ValueError):
        radio.aes_encrypt("app_key", bytes(17))
    chip.busy_polls = 100_000
    with pytest.raises(OSError, match="busy"):
        radio.derive_key("app_key", "data_block_int_key", bytes(16))


def test_a_board_with_its_lr1110_crypto_wired_announces_ts004_v2_and_one_without_v1(tmp_path):
    clock = FakeClock()
    chip = StandInLr1110()
    machine = FakeMachine(uarts={1: FakeUart(clock)}, adc_raw_u16=32768)
    pins = {"i2c_scl": 27, "i2c_sda": 26, "gnss_tx": 6, "gnss_rx": 8, "battery_adc": 4}
    hal = make_board_hal(**pins, modem_transport=FakeModem(), storage_root=str(tmp_path / "a"), machine=machine,
                         time=FakeTime(clock), os=os, crypto_spi=chip, crypto_nss=17, crypto_busy=18)
    assert isinstance(hal.radio, Lr1110CryptoModem) and hasattr(hal.radio, "derive_key")
    assert hal.radio.bus[1].pin_id == 17 and hal.radio.bus[1].values == [1] and hal.radio.bus[2].pin_id == 18
    plain = make_board_hal(**pins, modem_transport=FakeModem(), storage_root=str(tmp_path / "b"), machine=machine,
                           time=FakeTime(clock), os=os)
    assert type(plain.radio) is Lr1110Modem and not hasattr(plain.radio, "derive_key")
