"""LoRaWAN 1.0.x downlink data frames as a network server secures them for a multicast group.

PHYPayload = MHDR (0x60, unconfirmed data down) | DevAddr (4, little-endian) | FCtrl (0x00) |
FCnt (2, the low half of the 32-bit counter) | FPort | FRMPayload | MIC (4). FRMPayload is
encrypted with AppSKey by XOR with AES blocks A_i = 0x01 | 0x00 x4 | Dir (1 = down) | DevAddr |
FCnt (4) | 0x00 | i (i from 1); MIC = AES-CMAC(NwkSKey, B0 | MHDR..FRMPayload)[:4] with
B0 = 0x49 | 0x00 x4 | Dir | DevAddr | FCnt (4) | 0x00 | len(MHDR..FRMPayload). A multicast group's
AppSKey / NwkSKey are McAppSKey / McNwkSKey. The twin's network uses these so a collar whose stack
derived other keys (a wrong McKEKey) drops the group's frames, as a real stack does.

The stack's side of TS005 v1.0.0 (a LoRaWAN 1.0.x collar's key store), written here apart from the
bridge's lora_bridge/updates/multicast_keys.py so the twin checks the bridge rather than echoing it:
McRootKey = aes128_encrypt(GenAppKey, 0x00 | pad16), McKEKey = aes128_encrypt(McRootKey, 0x00 | pad16),
McKey = aes128_encrypt(McKEKey, McKey_encrypted), McAppSKey / McNwkSKey = aes128_encrypt(McKey,
0x01 / 0x02 | McAddr (little-endian) | pad16).
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MHDR_UNCONFIRMED_DOWN = 0x60
DIR_DOWN = 1


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def stack_ke_key(gen_app_key: bytes) -> bytes:
    """Return the McKEKey a LoRaWAN 1.0.x stack derives from its GenAppKey."""
    return _aes(_aes(gen_app_key, bytes(16)), bytes(16))


def stack_group_keys(ke_key: bytes, mc_key_encrypted: bytes, mc_addr: int) -> tuple[bytes, bytes]:
    """Return (McAppSKey, McNwkSKey) a stack derives from McGroupSetupReq's McKey_encrypted and McAddr."""
    mc_key = _aes(ke_key, mc_key_encrypted)
    tail = mc_addr.to_bytes(4, "little") + bytes(11)
    return _aes(mc_key, b"\x01" + tail), _aes(mc_key, b"\x02" + tail)


def _keystream(app_s_key: bytes, dev_addr: int, f_cnt: int, n: int) -> bytes:
    enc = Cipher(algorithms.AES(app_s_key), modes.ECB()).encryptor()
    blocks = b"".join(struct.pack("<BIBIIBB", 0x01, 0, DIR_DOWN, dev_addr, f_cnt, 0, i)
                      for i in range(1, (n + 15) // 16 + 1))
    return enc.update(blocks) + enc.finalize()


def _mic(nwk_s_key: bytes, dev_addr: int, f_cnt: int, msg: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES(nwk_s_key))
    mac.update(struct.pack("<BIBIIBB", 0x49, 0, DIR_DOWN, dev_addr, f_cnt, 0, len(msg)) + msg)
    return mac.finalize()[:4]


def secure_downlink(dev_addr: int, f_cnt: int, f_port: int, payload: bytes, app_s_key: bytes,
                    nwk_s_key: bytes) -> bytes:
    """Return the PHYPayload of an unconfirmed downlink to dev_addr (a multicast group's McAddr)."""
    ks = _keystream(app_s_key, dev_addr, f_cnt, len(payload))
    body = bytes(b ^ k for b, k in zip(payload, ks, strict=False))
    msg = struct.pack("<BIBHB", MHDR_UNCONFIRMED_DOWN, dev_addr, 0, f_cnt & 0xFFFF, f_port) + body
    return msg + _mic(nwk_s_key, dev_addr, f_cnt, msg)


def open_downlink(phy: bytes, f_cnt: int, app_s_key: bytes, nwk_s_key: bytes) -> tuple[int, int, bytes] | None:
    """Return (dev_addr, f_port, payload) of a downlink whose MIC holds under nwk_s_key at the 32-bit
    counter f_cnt (its low half must match the frame's), else None."""
    if len(phy) < 13 or phy[0] != MHDR_UNCONFIRMED_DOWN or phy[5] & 0x0F:
        return None
    _mhdr, dev_addr, _fctrl, fcnt16, f_port = struct.unpack_from("<BIBHB", phy)
    if fcnt16 != f_cnt & 0xFFFF or _mic(nwk_s_key, dev_addr, f_cnt, phy[:-4]) != phy[-4:]:
        return None
    body = phy[9:-4]
    ks = _keystream(app_s_key, dev_addr, f_cnt, len(body))
    return dev_addr, f_port, bytes(b ^ k for b, k in zip(body, ks, strict=False))
