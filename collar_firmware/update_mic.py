"""TS004 v2.0.0's data block MIC, checked with the keys the radio's crypto engine holds.

Loaded by update_install.py with a v2.0.0 set-up only. LoRa Basics Modem's v2.0.0 package computes it so:
  DataBlockIntKey = aes128_encrypt(root key, 0x30 | pad16)
  B0  = 0x49 | SessionCnt (u16) | FragIndex (u8) | Descriptor (u32) | 0 (u32) | block size (u32), little-endian
  MIC = the first 4 bytes of AES-CMAC(DataBlockIntKey, B0 | block), read as a little-endian u32
where the block size is NbFrag * FragSize - Padding. The root key (the LoRaWAN 1.0.x GenAppKey, the 1.1
AppKey) and the derived key never leave the LR1110: the key is derived inside it (hal.Radio.derive_key,
lr11xx_crypto_derive_key) and the CMAC is chained here one 16-byte block at a time, each block enciphered by
the engine (hal.Radio.aes_encrypt, lr11xx_crypto_aes_encrypt_01). The engine's own CMAC
(lr11xx_crypto_compute_aes_cmac) takes at most 256 bytes in one call and keeps nothing between calls, so a
block of kilobytes cannot go through it; RFC 4493's steps (subkeys, chaining, the padded last block) are the
same, and a test checks them against its vectors. Allocation: the chain, a pending block, two subkeys.
"""

import struct

from collar_firmware.compat import const

ROOT_KEY = "app_key"  # the engine's root key (LR11XX_CRYPTO_KEYS_IDX_APP_KEY's place)
DATA_BLOCK_INT_KEY = "data_block_int_key"  # the general-purpose slot the derived key goes to
_DERIVE_PREFIX = const(0x30)
_B0_PREFIX = const(0x49)


def derive(radio):
    """Derive DataBlockIntKey inside the radio's crypto engine (OSError when the engine refuses)."""
    nonce = bytearray(16)
    nonce[0] = _DERIVE_PREFIX
    radio.derive_key(ROOT_KEY, DATA_BLOCK_INT_KEY, bytes(nonce))


def b0(session_cnt, frag_index, descriptor, size):
    """Return the 16-byte block that opens the MIC's input."""
    return struct.pack("<BHBIII", _B0_PREFIX, session_cnt & 0xFFFF, frag_index & 3, descriptor & 0xFFFFFFFF,
                       0, size)


def _double(block):
    """RFC 4493's subkey step: block shifted left one bit, 0x87 folded in when its top bit fell out."""
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        v = block[i]
        out[i] = ((v << 1) | carry) & 0xFF
        carry = v >> 7
    if block[0] & 0x80:
        out[15] ^= 0x87
    return out


class Cmac:
    """AES-CMAC over total bytes handed in by update(), each block enciphered by the radio with key."""

    def __init__(self, radio, key, total):
        self.radio = radio
        self.key = key
        self.total = total
        self.done = 0  # bytes chained so far
        self.chain = bytearray(16)
        self.pending = bytearray()
        self.k1 = _double(radio.aes_encrypt(key, bytes(16)))
        self.k2 = _double(self.k1)

    def _cipher(self, block):
        chain = self.chain
        for j in range(16):
            chain[j] ^= block[j]
        self.chain = bytearray(self.radio.aes_encrypt(self.key, bytes(chain)))

    def update(self, data):
        """Take the next bytes; every block but the last is chained at once."""
        p = self.pending
        p.extend(data)
        i = 0
        while len(p) - i >= 16 and self.done + 16 < self.total:
            self._cipher(p[i:i + 16])
            i += 16
            self.done += 16
        self.pending = p[i:] if i else p

    def mic(self):
        """Return the first 4 bytes of the CMAC as a little-endian u32 (every byte must have come)."""
        last = bytearray(16)
        p = self.pending
        last[:len(p)] = p
        if len(p) == 16 and self.total:
            sub = self.k1
        else:
            last[len(p)] = 0x80
            sub = self.k2
        for j in range(16):
            last[j] ^= sub[j]
        self._cipher(last)
        c = self.chain
        return c[0] | c[1] << 8 | c[2] << 16 | c[3] << 24
